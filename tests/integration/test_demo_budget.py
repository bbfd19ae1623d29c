"""The demo-time benchmark (python -m osad_lib.demo_budget): a fresh clone, an empty cache, a report."""

from __future__ import annotations

import pathlib
import subprocess

import pandas as pd

from osad_lib import demo_budget


def test_a_fresh_clone_runs_with_an_empty_cache_and_the_report_says_whether_it_fit(tmp_path, capsys):
    code = demo_budget.main(["--profile", "smoke", "--only", "00", "--work-dir", str(tmp_path), "--budget-min", "30",
                             "--keep"])
    clone = tmp_path / "osad-companion"
    assert code == 0
    assert (clone / "run_all.py").is_file() and not (clone / ".venv").exists() and not (clone / "runs").exists()
    assert any((tmp_path / "cache").iterdir())  # the run's own cache, not this machine's
    text = (tmp_path / "demo_budget.md").read_text()
    assert "within the 30-minute budget" in text and "| 00_datasets" in text and "cores" in text
    assert "| total" in text


def test_after_the_report_the_clone_its_cache_and_the_stored_models_are_deleted(tmp_path, monkeypatch):
    real_run = subprocess.run

    def fake_run_all(command, cwd, env=None, **kwargs):  # what run_all.py leaves: outputs, models, a cache
        if command[0] == "git":  # the clone's file listing
            return real_run(command, cwd=cwd, **kwargs)
        runs = tmp_path / "out" / "runs" / "smoke"
        (runs / "models").mkdir(parents=True)
        (runs / "models" / "devnet_x.pt").write_bytes(b"weights")
        (runs / "results").mkdir()
        pd.DataFrame([{"notebook": "00_datasets", "status": "ok", "wall_s": 1.0, "cpu_s": 1.0, "experiments_run": 0,
                       "experiments_reused": 0}]).to_csv(runs / "timings.csv", index=False)
        pathlib.Path(env["OSAD_CACHE"], "features").mkdir(parents=True)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(demo_budget.subprocess, "run", fake_run_all)
    assert demo_budget.main(["--profile", "smoke", "--work-dir", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo_budget.md", "out"]
    assert sorted(p.name for p in (tmp_path / "out" / "runs" / "smoke").iterdir()) == ["results", "timings.csv"]
    assert demo_budget.main(["--work-dir", str(tmp_path)]) == 2  # an earlier run's folder is not reused


def test_over_budget_or_a_failed_notebook_is_not_ok():
    timings = pd.DataFrame([{"notebook": "01_devnet", "status": "ok", "wall_s": 1900.0, "cpu_s": 3000.0,
                             "experiments_run": 54, "experiments_reused": 0}])
    text, ok = demo_budget.report(timings, "demo", 30, 1950.0, "a new, empty folder", 0)
    assert not ok and "over the 30-minute budget by 1.7 min" in text
    assert [c.strip() for c in text.splitlines()[-2].split("|")[1:4]] == ["01_devnet", "ok", "31:40"]
    assert demo_budget.report(timings.assign(wall_s=60.0), "demo", 30, 70.0, "x", 0)[1]
    assert not demo_budget.report(timings.assign(wall_s=60.0, status="failed"), "demo", 30, 70.0, "x", 1)[1]


def test_the_report_names_the_commit_that_was_cloned():
    """The commit is taken when the clone is made: a commit made while the demo runs is not it."""
    timings = pd.DataFrame([{"notebook": "01_devnet", "status": "ok", "wall_s": 60.0, "cpu_s": 90.0,
                             "experiments_run": 54, "experiments_reused": 0}])
    assert "- commit: abc1234\n" in demo_budget.report(timings, "demo", 30, 70.0, "x", 0, code="abc1234")[0]
