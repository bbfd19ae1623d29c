"""The benchmark runs end to end at a tiny size (a smoke test, not a timed assertion)."""

import pandas as pd

from osad_lib import bench


def test_tiny_benchmark_writes_every_measurement(tmp_path):
    assert bench.main(["--tiny", "--device", "cpu", "--steps", "1", "--workers", "0", "--output-dir", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "runs" / "bench" / "bench_tiny.csv")
    for column in ("model_train", "model_infer", "pipeline", "end_to_end_train", "naive_end_to_end_train", "peak_memory_mb"):
        assert (table[column] > 0).all(), column
    assert (tmp_path / "runs" / "bench" / "bench_tiny.md").read_text().startswith("|")
