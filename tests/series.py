"""The smoke run of the whole series that several test files check, run once per test session.

``make test`` runs two pytest-xdist workers; a session fixture would run once *per worker*. Here
the first worker that asks runs the series under a file lock in the session's shared temporary
folder and records how it ended; a worker that asks later waits for the lock and reads the record
(``tests/conftest.py`` hands the files that only read the run out last, so by then it is done).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

from osad_lib.demo_budget import clone_environment, fresh_clone

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class SeriesRun:
    """Where a run of the series wrote (``out``: its ``--output-dir``) and how ``run_all.py`` ended."""

    out: Path
    returncode: int
    stdout: str
    stderr: str


def run_smoke_series(work: Path) -> SeriesRun:
    """The smoke profile of the whole series from a fresh clone in ``work`` (issue: the demo must
    not depend on anything outside the repository): its own ``osad_lib`` first on the path of
    run_all.py and of the kernels, no data or output locations from the environment."""
    clone, out = fresh_clone(work), work / "out"
    env = clone_environment(clone, cache=None)  # the machine's cache: cold or warm, as CI's is
    where = subprocess.run([sys.executable, "-c", "import osad_lib; print(osad_lib.__file__)"], env=env, cwd=clone,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(clone), where
    proc = subprocess.run([sys.executable, str(clone / "run_all.py"), "--profile", "smoke", "--output-dir", str(out)],
                          capture_output=True, text=True, cwd=clone, env=env, timeout=1500)
    return SeriesRun(out, proc.returncode, proc.stdout, proc.stderr)


def shared_smoke_series(tmp_path_factory: pytest.TempPathFactory) -> SeriesRun:
    """:func:`run_smoke_series`, once for all workers of this test session (see the module's docstring)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    work, record = shared / "smoke-series", shared / "smoke-series.json"
    with FileLock(str(shared / "smoke-series.lock")):
        if not record.is_file():
            shutil.rmtree(work, ignore_errors=True)  # what an interrupted attempt left
            work.mkdir()
            run = run_smoke_series(work)
            record.write_text(json.dumps({"returncode": run.returncode, "stdout": run.stdout, "stderr": run.stderr}))
    return SeriesRun(work / "out", **json.loads(record.read_text()))


def results_copy(run: SeriesRun, dest: Path, profile: str = "smoke") -> Path:
    """An output folder ``dest`` holding a copy of ``run``'s stored result rows: a test that calls
    the notebooks' functions on it reuses every stored experiment (``resume``) and writes nothing
    into the run that other tests read."""
    shutil.copytree(run.out / "runs" / profile / "results", dest / "runs" / profile / "results")
    return dest
