"""``make gpu-check`` (osad_lib.gpucheck): its CPU fallback, its needs, its summary, and the GPU path's
orchestration with stand-in commands (this project's sessions have no GPU)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd
import pytest

from osad_lib import gpucheck

ROOT = Path(__file__).resolve().parents[2]


def test_without_a_gpu_it_says_so_lists_what_it_would_run_and_measures_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpucheck.torch.cuda, "is_available", lambda: False)
    assert gpucheck.main(["--output-dir", str(tmp_path)]) == gpucheck.EXIT_NO_GPU
    out = capsys.readouterr().out
    assert out.startswith("gpu-check: no CUDA GPU found") and "nothing was measured" in out
    for step in gpucheck.plan(tmp_path):
        assert step.shell() in out
    assert "-m pytest -m gpu" in out and "osad_lib.bench --device cuda" in out
    assert "run_all.py --profile demo --only 01_devnet --device cuda" in out
    summary = pd.read_csv(tmp_path / "runs" / "gpu-check" / "summary.csv")
    assert list(summary["name"]) == ["tests", "bench", "notebook"]
    assert (summary["status"] == gpucheck.NOT_RUN_NO_GPU).all()
    assert "Nothing was measured." in (tmp_path / "runs" / "gpu-check" / "summary.md").read_text()
    assert not (tmp_path / "runs" / "bench").exists()


def test_its_needs_are_installed_here_and_pinned_as_in_the_environment():
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "env" / "requirements.txt").read_text(), re.M))
    names = gpucheck.requirement_names()
    assert "torch" not in names and "torchvision" not in names and len(names) == 17
    for file in gpucheck.REQUIREMENTS:
        for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", file.read_text(), re.M):
            assert pins[name] == version, name
    assert gpucheck.missing_needs() == []


def test_a_missing_need_is_named_with_the_offline_install_command(tmp_path):
    file = tmp_path / "req.txt"
    file.write_text("# comment\nnumpy==2.4.6\nno-such-package-osad==1.0  # trailing comment\n\n")
    assert gpucheck.requirement_names([file]) == ["numpy", "no-such-package-osad"]
    assert gpucheck.missing_needs([file]) == ["no-such-package-osad"]
    hint = gpucheck.install_hint(["no-such-package-osad"])
    assert "\n" not in hint and "pip install --no-index --find-links WHEELS" in hint
    assert "-r env/requirements-gpu-check.txt -r env/requirements-gpu-check-nodeps.txt" in hint


def _stand_in_plan(output_root: Path, notebook: str = "01_devnet", bench_steps: int = 5) -> list[gpucheck.Step]:
    """The three steps with quick commands that write what the real ones write."""
    out = gpucheck.check_dir(output_root)
    test_file = out / "test_standin.py"
    test_file.parent.mkdir(parents=True, exist_ok=True)
    test_file.write_text("def test_one():\n    pass\n\ndef test_two():\n    pass\n")
    bench = pd.DataFrame([{"method": m, "name": s, "backbone": "resnet18", "image_size": 448, "batch_size": 48,
                           "dataset": "elpv", "device": "cuda", "model_train": 100.0, "pipeline": 5000.0,
                           "end_to_end_train": 90.0, "naive_end_to_end_train": 20.0, "model_infer": 400.0,
                           "end_to_end_vs_model": 0.9, "end_to_end_vs_naive": 4.5, "peak_memory_mb": 9000.0}
                          for m in ("devnet", "dra") for s in ("demo", "paper")])
    bench_code = (f"import pathlib, pandas; p = pathlib.Path({str(gpucheck.bench_file(output_root))!r}); "
                  f"p.parent.mkdir(parents=True, exist_ok=True); pandas.read_json({bench.to_json()!r}).to_csv(p, index=False)")
    return [
        gpucheck.Step("tests", "stand-in tests", (sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                                  str(test_file), f"--junitxml={out / 'pytest.xml'}"), 120),
        gpucheck.Step("bench", "stand-in bench", (sys.executable, "-c", bench_code), 60),
        gpucheck.Step("notebook", "stand-in notebook", (sys.executable, "-c", "import time; time.sleep(30)"), 2),
    ]


class _NoMemory:
    peak_mb = 0.0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def test_the_gpu_path_runs_each_step_and_summarises_outcomes_ratios_and_memory(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpucheck.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpucheck, "DeviceMemoryPeak", _NoMemory)
    monkeypatch.setattr(gpucheck, "device_description",
                        lambda: {"device": "NVIDIA H100 80GB HBM3", "device memory (GiB)": "79.1", "torch": "x"})
    monkeypatch.setattr(gpucheck, "plan", _stand_in_plan)
    assert gpucheck.main(["--output-dir", str(tmp_path)]) == gpucheck.EXIT_FAILED  # the notebook stand-in times out
    out = gpucheck.check_dir(tmp_path)
    summary = pd.read_csv(out / "summary.csv")
    checks = summary[summary["part"] == "check"].set_index("name")
    assert checks.loc["tests", "status"] == "ok" and checks.loc["tests", "detail"].startswith("2 passed, 0 failed")
    assert checks.loc["bench", "status"] == "ok"
    assert checks.loc["notebook", "status"].startswith("timed out after 2 s")
    bench = summary[summary["part"] == "bench"]
    assert len(bench) == 4 and (bench["device"] == "NVIDIA H100 80GB HBM3").all()
    assert bench["end_to_end_vs_naive"].tolist() == [4.5] * 4 and bench["peak_memory_mb"].tolist() == [9000.0] * 4
    md = (out / "summary.md").read_text()
    assert md.startswith("# GPU check: NVIDIA H100 80GB HBM3") and "end-to-end / naive" in md and re.search(r"\| +4\.50 \|", md)
    assert (out / "notebook.log").is_file()


@pytest.mark.parametrize("xml, expected", [
    ('<testsuites><testsuite tests="5" failures="1" errors="0" skipped="1"/></testsuites>', ("3 passed, 1 failed", True)),
    ('<testsuite tests="2" failures="0" errors="0" skipped="2"/>', ("0 passed, 0 failed, 0 errors, 2 skipped", False)),
])
def test_the_test_report_is_read_from_junit_xml(tmp_path, xml, expected):
    (tmp_path / "pytest.xml").write_text(xml)
    detail, ran = gpucheck.tests_detail(tmp_path / "pytest.xml")
    assert detail.startswith(expected[0]) and ran == expected[1]
