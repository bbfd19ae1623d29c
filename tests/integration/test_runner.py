"""run_all.py: headless execution, failure reporting, plan, locking, and crash-safe resume."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from osad_lib import runner
from osad_lib.validate import ConfigError

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "notebooks"


def run_all(*args, **kw):
    return subprocess.run([sys.executable, str(ROOT / "run_all.py"), "--notebooks-dir", str(FIXTURES), *args],
                          capture_output=True, text=True, cwd=ROOT, **kw)


def stored_rows(out: Path) -> pd.DataFrame:
    rows = pd.read_csv(out / "runs" / "smoke" / "results" / "01_toy.csv")
    return rows.drop(columns=["wall_time_s", "timestamp"]).sort_values(["seed", "variant", "metric"]).reset_index(drop=True)


def test_failing_notebook_is_reported_and_the_others_still_run(tmp_path):
    proc = run_all("--profile", "smoke", "--output-dir", str(tmp_path), "--only", "01,02,03")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "02_fails: failed" in proc.stdout and "ValueError: deliberate failure" in proc.stdout
    assert "cell 2" in proc.stdout or "cell" in proc.stdout
    assert "03_silent: failed" in proc.stdout and "without writing any table or figure" in proc.stdout
    assert "01_toy: ok" in proc.stdout
    assert (tmp_path / "runs" / "smoke" / "02_fails.ipynb").exists()  # the partial notebook
    assert len(stored_rows(tmp_path)) == 12


def test_relative_folders_are_the_callers_not_the_notebooks(tmp_path):
    """The notebooks run in notebooks/; --output-dir and OSAD_CACHE given relative to the caller's
    folder still name folders there (make lock-smoke passes --output-dir runs-lock)."""
    env = {**os.environ, "OSAD_CACHE": "cache"}
    proc = subprocess.run([sys.executable, str(ROOT / "run_all.py"), "--notebooks-dir", str(FIXTURES), "--profile",
                           "smoke", "--output-dir", "out", "--only", "01"], capture_output=True, text=True,
                          cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(stored_rows(tmp_path / "out")) == 12 and (tmp_path / "out" / "runs" / "smoke" / "01_toy.kernel.log").exists()
    assert (tmp_path / "cache").is_dir() and not (FIXTURES / "out").exists()


def test_timings_closing_summary_and_a_second_run_skips_finished_notebooks(tmp_path):
    """runs/<profile>/timings.csv has wall and CPU seconds and the experiments run/reused per
    notebook; the terminal ends with the totals and where the outputs are; a rerun skips a
    finished notebook and keeps its row."""
    first = run_all("--profile", "smoke", "--output-dir", str(tmp_path), "--only", "01")
    timings = pd.read_csv(tmp_path / "runs" / "smoke" / "timings.csv").set_index("notebook")
    row = timings.loc["01_toy"]
    assert row["status"] == "ok" and row["experiments_run"] == 6 and row["experiments_reused"] == 0
    assert row["wall_s"] > 6 * 0.4 and row["cpu_s"] > 0  # the kernel's CPU time (imports at least)
    assert "1 notebooks in" in first.stdout and "all ok" in first.stdout
    assert f"tables: {tmp_path / 'runs' / 'smoke' / 'tables'}" in first.stdout
    (tmp_path / "runs" / "smoke" / "run_state.json").unlink()  # the notebook reruns, its experiments are stored
    again = run_all("--profile", "smoke", "--output-dir", str(tmp_path), "--only", "01")
    row = pd.read_csv(tmp_path / "runs" / "smoke" / "timings.csv").set_index("notebook").loc["01_toy"]
    assert again.returncode == 0 and row["experiments_run"] == 0 and row["experiments_reused"] == 6
    # a resumed run that skips the notebook keeps its measured row (not a zeroed one)
    third = run_all("--profile", "smoke", "--output-dir", str(tmp_path), "--only", "01")
    kept = pd.read_csv(tmp_path / "runs" / "smoke" / "timings.csv").set_index("notebook").loc["01_toy"]
    assert third.returncode == 0 and "01_toy: skipped" in third.stdout and not kept["this_run"]
    assert kept["wall_s"] == row["wall_s"] and kept["cpu_s"] == row["cpu_s"] and kept["experiments_reused"] == 6


@pytest.mark.parametrize("args, message", [
    (["--profile", "dmeo"], "did you mean 'demo'"),
    (["--only", "01_tyo"], "did you mean '01_toy'"),
    (["--device", "tpu"], "--device"),
    (["--seeds", "one"], "--seeds"),
])
def test_bad_options_exit_2_with_one_line(args, message, tmp_path):
    proc = run_all(*args, "--output-dir", str(tmp_path))
    assert proc.returncode == 2 and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_two_runs_on_one_output_folder_are_refused(tmp_path):
    with runner.exclusive_run(tmp_path):
        with pytest.raises(ConfigError, match="another run_all.py is running"):
            with runner.exclusive_run(tmp_path):
                pass


def test_plan_runs_nothing(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "run_all.py"), "--plan", "--profile", "paper",
                           "--output-dir", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "runs" / "paper" / "results").exists() or not any((tmp_path / "runs" / "paper" / "results").iterdir())
    assert "estimated time on cpu (2 cores)" in proc.stdout


def test_plan_hours_follow_this_machines_benchmark(tmp_path):
    bench = tmp_path / "runs" / "bench"
    bench.mkdir(parents=True)
    pd.DataFrame([{"method": m, "name": "paper", "device": "cuda", "end_to_end_train": rate, "model_infer": 4 * rate}
                  for m, rate in (("devnet", 90.0), ("dra", 30.0))]).to_csv(bench / "bench.csv", index=False)
    rates = runner.measured_throughput(tmp_path)
    assert list(rates.values()) == [(60.0, 240.0)] and next(iter(rates)).startswith("cuda (measured")
    grid = pd.DataFrame({"train_images": [60 * 3600], "eval_images": [240 * 3600]})
    (seconds, basis), = runner.estimate_seconds(grid, 448, rates).values()
    assert seconds == pytest.approx(2 * 3600) and "60 train" in basis


@pytest.mark.slow
def test_kill_and_rerun_gives_exactly_the_rows_of_an_uninterrupted_run(tmp_path):
    """kill -9 run_all.py (and its kernel) at random points, rerun, compare with a clean run."""
    clean, crashed = tmp_path / "clean", tmp_path / "crashed"
    assert run_all("--profile", "smoke", "--output-dir", str(clean), "--only", "01").returncode == 0
    rng = random.Random(0)
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, str(ROOT / "run_all.py"), "--notebooks-dir", str(FIXTURES),
                                 "--profile", "smoke", "--output-dir", str(crashed), "--only", "01"],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        time.sleep(rng.uniform(2.0, 5.0))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    final = run_all("--profile", "smoke", "--output-dir", str(crashed), "--only", "01")
    assert final.returncode == 0, final.stdout + final.stderr
    pd.testing.assert_frame_equal(stored_rows(crashed), stored_rows(clean))


@pytest.mark.slow
def test_slurm_fan_out_through_submitit_local_backend_merges_results(tmp_path):
    """--executor slurm (submitit's local backend here): one job per seed, rows merged, no duplicates."""
    proc = run_all("--profile", "smoke", "--output-dir", str(tmp_path), "--only", "01", "--seeds", "0,1,2",
                   "--executor", "slurm", "--submitit-cluster", "local")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("job 01_toy__seeds-") == 3
    rows = stored_rows(tmp_path)
    assert len(rows) == 3 * 6 * 2 and not rows.duplicated(["seed", "variant", "metric"]).any()
    assert sorted((tmp_path / "runs" / "smoke" / "jobs").glob("01_toy__seeds-*.ipynb"))
    assert "01_toy: ok" in proc.stdout  # the assembly pass, which found every experiment stored


def test_notebook_client_error_lines_stay_off_the_terminal_during_a_run(caplog):
    """papermill hands nbclient its "papermill" logger; nbclient logs "Kernel died while waiting for
    execute reply." there when Ctrl-C reaches the kernel first. The runner prints its own one line."""
    import logging

    caplog.set_level(logging.INFO)
    with runner.execute._client_log_quiet():
        logging.getLogger("papermill").error("Kernel died while waiting for execute reply.")
        logging.getLogger("traitlets").error("kernel restarted")
        logging.getLogger("papermill").warning("a warning still shows")
    logging.getLogger("papermill").error("after the run errors show again")
    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["a warning still shows", "after the run errors show again"]
