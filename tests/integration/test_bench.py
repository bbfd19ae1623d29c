"""The benchmark runs end to end at a tiny size (a smoke test, not a timed assertion)."""

import pandas as pd

from osad_lib import bench


def test_tiny_benchmark_writes_every_measurement(tmp_path):
    assert bench.main(["--tiny", "--device", "cpu", "--steps", "1", "--workers", "0", "--output-dir", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "runs" / "bench" / "bench_tiny.csv")
    for column in ("model_train", "model_infer", "pipeline", "end_to_end_train", "naive_end_to_end_train", "peak_memory_mb"):
        assert (table[column] > 0).all(), column
    assert (tmp_path / "runs" / "bench" / "bench_tiny.md").read_text().startswith("|")
    assert set(table["method"]) == set(bench.METHODS)


def test_unknown_method_is_a_one_line_error(tmp_path):
    import pytest

    from osad_lib.validate import ConfigError

    with pytest.raises(ConfigError, match="did you mean 'dra'"):
        bench.main(["--tiny", "--methods", "dar", "--output-dir", str(tmp_path)])
