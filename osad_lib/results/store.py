"""The results store: one CSV file of rows per notebook and profile (the package docstring)."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import os
import platform
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from osad_lib import limits
from osad_lib.errors import CudaOutOfMemoryError, NonFiniteLossError
from osad_lib.paths import atomic_write_text, results_dir
from osad_lib.results.file_rows import (
    FileRow, experiment_of, legacy_markers, name_list, retire_legacy_source, shorten, split_rows, without_marker_parts,
)
from osad_lib.results.schema import (
    COLUMNS, LATER_KEY_COLUMNS, RECORDED_COLUMNS, REQUIRED_COLUMNS, Experiment, ResultsSchemaError, coerce_columns,
    empty_frame, validate_rows,
)
from osad_lib.validate import notice


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock_path = path.with_suffix(path.suffix + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)



@dataclass
class _Loaded:
    """A results file as read: the good rows, the rows to quarantine and why, schema notes."""

    frame: pd.DataFrame
    quarantined: list[tuple[FileRow, str]]
    lost: set[str]
    schema_note: str = ""
    original_note: str = ""

    @property
    def damaged(self) -> bool:
        return bool(self.quarantined or self.schema_note)


#: Per results file, (digest of its bytes, code paths of its rows): :meth:`ResultsStore.path_has_rows`'s memo.
_STORED_PATHS: dict[Path, tuple[bytes | None, set[str]]] = {}
#: Per results file, its last intact parse and the digest of the bytes it was parsed from: a grid
#: asks the store for every item (resume), and parsing thousands of rows each time made a large
#: grid's bookkeeping quadratic. Hashing the bytes is cheap next to parsing them, and unlike a
#: modification time it cannot miss an in-place rewrite of the same size.
_PARSED: dict[Path, tuple[bytes, _Loaded]] = {}


def _digest(path: Path) -> bytes | None:
    """A digest of the file's bytes; None when it does not exist."""
    try:
        return hashlib.blake2b(path.read_bytes(), digest_size=16).digest()
    except FileNotFoundError:
        return None


class ResultsStore:
    """Tidy result rows of one notebook under one profile: ``<runs>/<profile>/results/<notebook>.csv``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def quarantine_path(self) -> Path:
        """Where malformed rows go: ``<name>.csv.quarantine`` (not read as results)."""
        return self.path.with_name(self.path.name + ".quarantine")

    def _schema_note(self, header: list[str], lines: list[str], migrate: bool) -> str:
        """'' for the current schema, else what reading the file migrates; refuses (one line
        naming the missing and unexpected columns) what only :meth:`migrate` may change."""
        if header == list(COLUMNS):
            return ""
        if len(lines) <= 1:
            if not lines:
                return "an empty file, rewritten with the header"
            return f"a damaged header {shorten(''.join(lines).strip())} and no rows, rewritten (the old line kept aside)"
        missing = [c for c in COLUMNS if c not in header]
        extra = [c for c in header if c not in COLUMNS]
        if not extra and set(missing) <= {*RECORDED_COLUMNS, *LATER_KEY_COLUMNS}:
            return f"migrated from an older schema without columns {name_list(missing)}" if missing else "columns reordered"
        if not migrate:
            raise ResultsSchemaError(
                f"{self.path}: columns do not match the results schema (missing {name_list(missing)}, unexpected "
                f"{name_list(extra)}): written by another version or tool? `python -m osad_lib.results migrate "
                f"FILE` rewrites it in this schema, keeping every row it can (the rest go to {self.quarantine_path.name})")
        return f"migrated: columns {name_list(missing)} missing, {name_list(extra)} dropped"

    def _load(self, migrate: bool = False) -> _Loaded:
        """Parse and check the file (``migrate``: see :meth:`migrate`)."""
        lines = self.path.read_text(errors="replace").splitlines(keepends=True)
        header = next(csv.reader(lines[:1]), [])
        schema_note = self._schema_note(header, lines, migrate)
        rows = split_rows(lines, header)
        if header and "source" not in header:
            rows = [retire_legacy_source(r, header) for r in rows]
        unnamed = [c for c in REQUIRED_COLUMNS if c not in header]
        if unnamed:
            rows = [FileRow(r.line, r.raw, r.fields, f"the file has no {name_list(unnamed)} column(s), so the row names no experiment")
                    for r in rows]
        ids = [dict(zip(header, r.fields)).get("experiment_id") for r in rows]
        lost = {experiment_of(r, i, rows, header) for i, r in enumerate(rows) if r.problem} - {""}
        keep = [not r.problem and i not in lost for r, i in zip(rows, ids)]
        quarantined = [(r, r.problem or "another row of its experiment is malformed") for r, k in zip(rows, keep) if not k]
        frame = pd.DataFrame([r.fields for r, k in zip(rows, keep) if k], columns=header or None, dtype=object)
        frame = frame.reindex(columns=list(COLUMNS)).replace({"": None})
        if header and not {"mode", "report"} <= set(header):
            frame = legacy_markers(frame)
        frame = without_marker_parts(frame)
        extra = [c for c in header if c not in COLUMNS]
        original = (f"the original file before migration (columns {extra} dropped):" if extra and rows else
                    "the damaged header line:" if schema_note.startswith("a damaged header") else "")
        return _Loaded(coerce_columns(frame), quarantined, lost, schema_note, original)

    def _heal(self, loaded: _Loaded) -> None:
        """Move quarantined rows to the side file and rewrite the file in the current schema,
        with one line on stderr; if the folder cannot be written, say so and read on."""
        side = self.quarantine_path
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        entries = [f"# {now} {self.path.name} line {row.line}: {why}\n{row.raw.rstrip(chr(10))}\n"
                   for row, why in loaded.quarantined]
        if loaded.original_note:
            entries.insert(0, f"# {now} {loaded.original_note}\n{self.path.read_text(errors='replace')}")
        bad = [r for r, _ in loaded.quarantined if r.problem]
        shown = "; ".join(f"line {r.line}: {r.problem}" for r in bad[:3]) + ("; …" if len(bad) > 3 else "")
        parts = [loaded.schema_note] if loaded.schema_note else []
        if bad:
            parts.append(f"{len(bad)} malformed row(s) moved to {side.name} ({shown})")
            along = len(loaded.quarantined) - len(bad)
            parts.append(f"the {len(loaded.lost)} experiment(s) they belong to ({along} more row(s) moved along) count "
                         "as not done and are recomputed by the next run" if loaded.lost else "no stored experiment is affected")
        try:
            if entries:
                old = side.read_text() if side.exists() else ""
                atomic_write_text(side, old + "".join(entries))
            atomic_write_text(self.path, loaded.frame.to_csv(index=False))
        except OSError as exc:
            parts.append(f"the file could not be rewritten ({exc.strerror}), so this repeats until it can")
        notice(f"{self.path}: " + "; ".join(parts))

    def read(self) -> pd.DataFrame:
        """All good rows (validated); an empty, typed frame if the file does not exist yet.

        A damaged file is healed first (module docstring): malformed rows quarantined, an
        older schema migrated, one line on stderr.
        """
        return self._read(lock=True).frame

    def damaged_experiments(self) -> set[str]:
        """Heal the file as :meth:`read` does; return the ids of the experiments whose rows were
        found damaged and moved aside (empty when the file is intact). A notebook marked
        completed must rerun when this is not empty."""
        return self._read(lock=True).lost

    def _read(self, lock: bool) -> _Loaded:
        version = _digest(self.path)
        if version is None:
            return _Loaded(empty_frame(), [], set())
        cached = _PARSED.get(self.path)
        if cached is not None and cached[0] == version:
            return replace(cached[1], frame=cached[1].frame.copy())
        loaded = self._load()
        if not loaded.damaged:
            _PARSED[self.path] = (version, loaded)
            return replace(loaded, frame=loaded.frame.copy())
        try:
            guard = _locked(self.path) if lock else contextlib.nullcontext()
            with guard:
                loaded = self._load()  # another process may have healed it meanwhile
                if loaded.damaged:
                    self._heal(loaded)
        except OSError:  # no lock file in a read-only folder: heal without it
            self._heal(loaded)
        return loaded

    def migrate(self) -> pd.DataFrame:
        """Rewrite a file of another schema in the current one: unexpected columns dropped (the
        original kept in the quarantine file), rows without an experiment id quarantined."""
        with _locked(self.path):
            loaded = self._load(migrate=True)
            if loaded.damaged:
                self._heal(loaded)
        return loaded.frame

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append rows atomically; refuses to append to a file that fails validation."""
        new = validate_rows(rows)
        with _locked(self.path):
            old = self._read(lock=False).frame
            merged = pd.concat([old, new], ignore_index=True) if len(old) else new
            atomic_write_text(self.path, merged.to_csv(index=False))

    def path_has_rows(self, experiment: Experiment) -> bool:
        """Whether a stored experiment took ``experiment``'s code path (:func:`osad_lib.limits.path_key`).

        The stored paths are read once per version of the file (a grid asks for every item)."""
        fields = ("notebook", "paper", "method", "backbone")
        version = _digest(self.path)
        cached = _STORED_PATHS.get(self.path)
        if cached is None or cached[0] != version:
            rows = self.read()[list(fields)].itertuples(index=False)
            _STORED_PATHS[self.path] = (version, {limits.path_key(*row) for row in rows})
        return limits.path_key(*(getattr(experiment, f) for f in fields)) in _STORED_PATHS[self.path][1]

    def completed(self) -> set[str]:
        """Experiment ids that already have their rows."""
        return set(self.read()["experiment_id"])

    def run_experiment(
        self,
        experiment: Experiment,
        run: Callable[[], Mapping[str, float]],
        resume: bool = True,
    ) -> pd.DataFrame:
        """Run ``experiment`` unless its rows exist (with ``resume``), store its rows, return them.

        ``run`` returns ``{metric: value}``. A run that fails with a non-finite loss
        (:class:`osad_lib.errors.NonFiniteLossError`) is recorded as one ``status=failed`` row
        and the caller's grid continues; CUDA out of memory raises
        :class:`osad_lib.errors.CudaOutOfMemoryError` naming the experiment and the setting to
        lower; any other exception propagates and writes nothing. Under a CI-sized dry run
        (:attr:`osad_lib.limits.RunLimits.one_run_per_path`) an experiment whose code path already
        has rows is skipped (no rows).
        """
        import torch

        if limits.active().one_run_per_path and self.path_has_rows(experiment):
            return empty_frame()
        if resume:
            done = self.read()
            mine = done[done["experiment_id"] == experiment.experiment_id]
            if len(mine):
                return mine.reset_index(drop=True)
        start = time.perf_counter()
        try:
            metrics = run()
            status = "ok"
        except NonFiniteLossError as exc:
            metrics, status = {"failed": float("nan")}, f"failed: {exc}"
        except (CudaOutOfMemoryError, torch.OutOfMemoryError) as exc:
            advice = str(exc) if isinstance(exc, CudaOutOfMemoryError) else (
                "CUDA ran out of memory outside osad_lib.training.fit (evaluation, feature extraction or a method's "
                "own loop); lower the method's batch_size, eval_batch_size or chunk_size in its profile overrides "
                "(osad_lib.profiles.METHOD_OVERRIDES) or run with device='cpu'")
            raise CudaOutOfMemoryError(
                f"{experiment.describe()}: {advice}. Nothing was stored for this experiment; the {len(self.read())} "
                "rows stored earlier are kept and a rerun with resume continues from here"
            ) from None
        rows = experiment.rows(metrics, time.perf_counter() - start, status=status)
        if limits.active().active:  # a dry run says so in every row it writes
            rows = [{**r, "deviations": "; ".join(p for p in (r["deviations"], limits.active().describe()) if p)}
                    for r in rows]
        self.append(rows)
        return validate_rows(rows)



def store_for(notebook: str, profile: str, output: str | os.PathLike | None = None) -> ResultsStore:
    """The store of ``notebook`` under ``profile`` (see :mod:`osad_lib.paths`)."""
    return ResultsStore(results_dir(profile, output) / f"{notebook}.csv")


def read_all(profile: str, output: str | os.PathLike | None = None) -> pd.DataFrame:
    """Rows of every notebook's store under ``profile`` (validated)."""
    frames = [ResultsStore(p).read() for p in sorted(results_dir(profile, output).glob("*.csv"))]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else ResultsStore(Path("/nonexistent")).read()


def device_label(device: str) -> str:
    """A short label of the device for results rows (``cpu`` / ``cuda:<name>``)."""
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(torch.device(device))}"
    return f"cpu:{platform.machine()}"

