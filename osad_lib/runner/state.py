"""What a run remembers: each notebook's outcome, the run's lock on its output folder, the
notebooks finished with which parameters (``run_state.json``) and ``timings.csv``."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from osad_lib.paths import atomic_write_text
from osad_lib.results import ResultsStore
from osad_lib.validate import ConfigError, notice



@dataclass(frozen=True)
class NotebookOutcome:
    """One notebook of a run: status (ok | skipped | failed), wall and CPU seconds (the kernel's
    user + system time), and how many experiments it ran and found stored (reused)."""

    notebook: str
    status: str
    seconds: float
    output: Path
    message: str = ""
    cpu_seconds: float = 0.0
    experiments_run: int = 0
    experiments_reused: int = 0


def notebook_fingerprint(notebook_path: Path, parameters: dict) -> str:
    blob = notebook_path.read_bytes() + json.dumps(parameters, sort_keys=True).encode()
    return hashlib.sha1(blob).hexdigest()[:16]


@contextlib.contextmanager
def exclusive_run(folder: Path) -> Iterator[None]:
    """Refuse a second ``run_all.py`` on the same output folder (a lock file held while running)."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / ".run_all.lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ConfigError(f"another run_all.py is running on {folder}; wait for it or use another --output-dir") from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


TIMING_COLUMNS = ("notebook", "status", "wall_s", "cpu_s", "experiments_run", "experiments_reused", "this_run")


class RunState:
    """``runs/<profile>/run_state.json``: which notebooks completed with which fingerprint.

    A damaged file (empty, cut off, not JSON, not a mapping of notebooks) is named in one line and
    reconstructed from the results store beside it (``results/``): no notebook counts as
    completed, and those with stored results rerun only to assemble their tables and figures
    from them (every stored experiment is skipped), so nothing computed is lost.
    """

    def __init__(self, path: Path):
        self.path = path
        self.state = self._read()

    def _read(self) -> dict:
        if not self.path.exists():
            return {}
        try:
            state = json.loads(self.path.read_text())
            if isinstance(state, dict) and all(isinstance(v, dict) for v in state.values()):
                return state
            problem = "not a mapping of notebooks"
        except (OSError, ValueError) as exc:
            problem = f"{type(exc).__name__}: {str(exc)[:80]}"
        state = self._from_results()
        stored = ", ".join(f"{nb} ({entry['rows']} rows)" for nb, entry in state.items()) or "none"
        notice(f"{self.path} is damaged ({problem}); reconstructed from the results store: notebooks with stored "
               f"results ({stored}) rerun only to assemble their tables from them, the others run in full")
        try:
            atomic_write_text(self.path, json.dumps(state, indent=2, sort_keys=True))
        except OSError:
            pass  # rewritten by the next record()
        return state

    def _from_results(self) -> dict:
        state = {}
        for file in sorted((self.path.parent / "results").glob("*.csv")):
            rows = ResultsStore(file).read()
            if len(rows):
                state[file.stem] = {"fingerprint": "", "status": "reconstructed", "rows": len(rows),
                                    "message": f"run state reconstructed; {rows['experiment_id'].nunique()} experiments stored"}
        return state

    def is_done(self, notebook: str, fingerprint: str) -> bool:
        entry = self.state.get(notebook, {})
        return entry.get("status") == "ok" and entry.get("fingerprint") == fingerprint

    def record(self, notebook: str, fingerprint: str, outcome: NotebookOutcome) -> None:
        self.state[notebook] = {"fingerprint": fingerprint, "status": outcome.status,
                                "seconds": round(outcome.seconds, 1), "cpu_seconds": round(outcome.cpu_seconds, 1),
                                "experiments_run": outcome.experiments_run,
                                "experiments_reused": outcome.experiments_reused, "message": outcome.message}
        atomic_write_text(self.path, json.dumps(self.state, indent=2, sort_keys=True))


def write_timings(path: Path, outcomes: Sequence[NotebookOutcome], state: RunState) -> None:
    """``runs/<profile>/timings.csv``: per notebook, the wall and CPU seconds and the experiments run
    and reused of the last run that executed it (from the run state, so a resumed run or one with
    ``--only`` keeps the other notebooks' rows); ``this_run`` says whether it ran in this run."""
    ran = {o.notebook for o in outcomes if o.status != "skipped"}
    rows = []
    for notebook, entry in sorted(state.state.items()):
        if "seconds" not in entry:  # reconstructed from the results store: nothing was measured
            continue
        rows.append({"notebook": notebook, "status": entry.get("status", ""), "wall_s": entry["seconds"],
                     "cpu_s": entry.get("cpu_seconds", 0.0), "experiments_run": entry.get("experiments_run", 0),
                     "experiments_reused": entry.get("experiments_reused", 0), "this_run": notebook in ran})
    atomic_write_text(path, pd.DataFrame(rows, columns=TIMING_COLUMNS).to_csv(index=False))
