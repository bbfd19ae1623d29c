"""The results store: every measured number is one tidy row in a CSV file per notebook and profile.

Rows are appended atomically (write a temporary file, then ``os.replace``) under an exclusive
file lock, so a process killed at any point leaves either the old file or the new one, never a
half-written one. An *experiment* (one training/evaluation run: dataset × setting × shots ×
seed × method × variant …) writes all of its rows in a single append, so it is either complete
in the store or absent; :meth:`ResultsStore.run_experiment` skips experiments whose rows exist,
which is what ``run_all.py --resume`` relies on.

Nothing read is trusted blindly: every row is checked (field count, experiment id, status,
value types, timestamp). A malformed row — a file cut inside its last row, a garbage line, a
wrong type — is moved to a side file ``<name>.csv.quarantine`` (with its line number and what
was wrong) together with the other rows of its experiment, with one line on stderr; the
experiment then counts as not done, so a rerun recomputes it. A file of an older schema (without
some of :data:`RECORDED_COLUMNS` or :data:`LATER_KEY_COLUMNS`) is migrated in place (``mode`` and
``report``, once written into ``deviations``, are read from there: :func:`_legacy_markers`; a
cross-domain row that wrote its source into ``variant`` is set aside and recomputed:
:func:`_retire_legacy_source`); any other column mismatch names the
missing and unexpected columns and offers ``python -m osad_lib.results migrate FILE``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import fcntl
import functools
import hashlib
import json
import os
import platform
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from osad_lib import __version__, limits
from osad_lib.errors import CudaOutOfMemoryError, NonFiniteLossError
from osad_lib.paths import atomic_write_text, results_dir
from osad_lib.provenance import code_commit
from osad_lib.validate import notice

#: Columns identifying an experiment (the key that resume checks).
KEY_COLUMNS = (
    "notebook", "paper", "table", "dataset", "subset", "setting", "n_shots",
    "method", "variant", "source", "backbone", "seed", "profile", "manifest_id",
)
#: Every column of a results row, in file order.
COLUMNS = KEY_COLUMNS + (
    "metric", "value", "experiment_id", "status", "deviations", "mode", "report", "device",
    "wall_time_s", "osad_version", "torch_version", "git_sha", "timestamp",
)
#: How a metric that is the maximum over training epochs is named (BGAD reports it so):
#: ``auroc@max_over_epochs``; its row's ``report`` is ``max_over_epochs``.
MAX_OVER_EPOCHS_SUFFIX = "@max_over_epochs"
#: The values of a row's ``mode``: which behaviour of a method with a faithful (the official code)
#: and a clean (the paper's text) variant ran; empty for methods without one.
MODES = ("", "faithful", "clean")
_INT_COLUMNS = ("n_shots", "seed")
_FLOAT_COLUMNS = ("value", "wall_time_s")
#: Columns an older results file may lack: facts recorded beside a measurement, not part of an
#: experiment's identity. Reading such a file migrates it (the columns are filled empty).
RECORDED_COLUMNS = ("deviations", "mode", "report", "device", "wall_time_s", "osad_version", "torch_version",
                    "git_sha", "timestamp")
#: Key columns added after files were first written: a file without them is migrated when read
#: (filled empty), and an empty value stays out of :attr:`Experiment.experiment_id`, so the rows
#: such a file holds keep their ids. ``source``: the domain a cross-domain model was trained on.
LATER_KEY_COLUMNS = ("source",)
#: What the older layout wrote into ``variant`` for a cross-domain row (``source=<domain>``):
#: such rows are set aside when their file is migrated, and the next run recomputes them.
_LEGACY_SOURCE_VARIANT = "source="
#: Columns every row must fill.
_REQUIRED = ("notebook", "paper", "method", "seed", "profile", "metric", "experiment_id", "status")
_EXPERIMENT_ID = re.compile(r"[0-9a-f]{16}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}")


class ResultsSchemaError(ValueError):
    """A results file or row that does not follow the schema."""


@dataclass(frozen=True)
class Experiment:
    """What identifies one experiment; every row it produces carries these fields.

    ``deviations`` lists how the run differs from the paper's protocol (e.g.
    ``"backbone=efficientnet_lite0 (paper: resnet18); schedule=5x10 (paper: 50x20)"``);
    ``source`` the domain a cross-domain model was trained on (``subset`` is the one it is
    tested on; empty for every other experiment);
    ``mode`` which behaviour ran of a method that has a faithful (official code) and a clean
    (paper text) one (:data:`MODES`: DRA's and AHL's ``mode`` setting); ``report`` how its
    metrics are reported when the paper's tables say (BGAD: ``last_epoch``; a metric named
    ``…@max_over_epochs`` is reported as ``max_over_epochs``). These three are recorded, not part
    of the key.
    """

    notebook: str
    paper: str
    table: str
    dataset: str
    method: str
    seed: int
    profile: str
    subset: str = ""
    setting: str = ""
    n_shots: int | None = None
    variant: str = ""
    source: str = ""
    backbone: str = ""
    manifest_id: str = ""
    deviations: str = ""
    mode: str = ""
    report: str = ""
    device: str = "cpu"
    extra_key: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ResultsSchemaError(f"Experiment mode {self.mode!r}: expected one of {MODES}")

    @property
    def experiment_id(self) -> str:
        """Stable hash of the key columns (and ``extra_key``); a :data:`LATER_KEY_COLUMNS`
        column enters it only when set."""
        key = {c: getattr(self, c) for c in KEY_COLUMNS if c not in LATER_KEY_COLUMNS or getattr(self, c)}
        key["extra"] = dict(sorted(self.extra_key.items()))
        blob = json.dumps(key, sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:16]

    def rows(self, metrics: Mapping[str, float], wall_time_s: float, status: str = "ok") -> list[dict]:
        """One row per metric, with every schema column filled."""
        import torch

        base = {c: getattr(self, c) for c in KEY_COLUMNS}
        base.update(
            experiment_id=self.experiment_id, status=status, deviations=self.deviations, mode=self.mode,
            device=self.device, wall_time_s=float(wall_time_s), osad_version=__version__,
            torch_version=torch.__version__, git_sha=code_commit(),
            timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        return [{**base, "metric": m, "value": float(v), "report": self.report_of(m)} for m, v in metrics.items()]

    def report_of(self, metric: str) -> str:
        """How ``metric`` is reported: ``max_over_epochs`` for a ``…@max_over_epochs`` metric,
        else the experiment's ``report``."""
        return "max_over_epochs" if metric.endswith(MAX_OVER_EPOCHS_SUFFIX) else self.report

    def describe(self) -> str:
        parts = [self.method, self.variant, f"trained on {self.source}" if self.source else "", self.dataset,
                 self.subset, self.setting,
                 f"{self.n_shots}-shot" if self.n_shots is not None else "", f"seed {self.seed}"]
        return " · ".join(p for p in parts if p)


def validate_rows(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Return rows as a schema-conformant DataFrame or raise ResultsSchemaError (one line)."""
    df = pd.DataFrame(list(rows))
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ResultsSchemaError(f"results rows lack columns {missing}; build rows with Experiment.rows()")
    extra = [c for c in df.columns if c not in COLUMNS]
    if extra:
        raise ResultsSchemaError(f"results rows have unknown columns {extra}; allowed: {list(COLUMNS)}")
    return _coerce(df[list(COLUMNS)])


def _coerce(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for c in COLUMNS:
        if c in _INT_COLUMNS:
            df[c] = pd.to_numeric(df[c], errors="raise").astype("Int64")
        elif c in _FLOAT_COLUMNS:
            df[c] = pd.to_numeric(df[c], errors="raise").astype(float)
        else:
            df[c] = df[c].fillna("").astype(str)
    return df


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


@dataclass(frozen=True)
class _Row:
    """One row of a results file as read: where it starts, its text, its fields, what is wrong."""

    line: int
    raw: str
    fields: list[str]
    problem: str = ""


def _short(value: str) -> str:
    return repr(value if len(value) <= 24 else value[:24] + "…")


def _names(columns: Sequence[str], shown: int = 6) -> str:
    """``['a', 'b', …]`` naming at most ``shown`` columns, with the count when there are more."""
    more = f", … {len(columns)} in all" if len(columns) > shown else ""
    return "[" + ", ".join(map(repr, columns[:shown])) + more + "]"


def _is_number(text: str, kind: type) -> bool:
    try:
        kind(text)
    except ValueError:
        return False
    return True


def _row_problem(row: Mapping[str, str], n_fields: int, n_columns: int, ended: bool) -> str:
    """What is wrong with one row ('' when nothing): field count, required fields, id, status,
    number columns, and the timestamp — the last column, so a row cut inside it fails here; it
    may be empty (a migrated row) only on a line that ends (``ended``: not cut after the comma)."""
    if n_fields != n_columns:
        return f"{n_fields} field(s) instead of {n_columns}: cut off or not a results row"
    empty = [c for c in _REQUIRED if not row.get(c)]
    if empty:
        return f"no {empty[0]}"
    if not _EXPERIMENT_ID.fullmatch(row["experiment_id"]):
        return f"experiment_id {_short(row['experiment_id'])} is not an experiment id"
    if row["status"] != "ok" and not row["status"].startswith("failed"):
        return f"status {_short(row['status'])} is neither ok nor failed"
    for columns, kind, name in ((_INT_COLUMNS, int, "an integer"), (_FLOAT_COLUMNS, float, "a number")):
        for c in columns:
            if row.get(c) and not _is_number(row[c], kind):
                return f"{c} {_short(row[c])} is not {name}"
    stamp = row.get("timestamp", "")
    if not _TIMESTAMP.fullmatch(stamp) and (stamp or not ended):
        return f"timestamp {_short(stamp)} is not a time (cut off?)"
    return ""


def _split_rows(lines: Sequence[str], header: Sequence[str]) -> list[_Row]:
    """Every data row of ``lines`` (``lines[0]`` is the header) with its problem. A malformed
    row that spans several lines (a stray quote swallowing what follows) is judged line by line,
    so one bad line never takes the good rows after it along."""
    rows: list[_Row] = []
    start = 1
    while start < len(lines):
        reader, consumed, restart = csv.reader(lines[start:]), 0, None
        try:
            for fields in reader:
                first, n = start + consumed, reader.line_num - consumed
                consumed = reader.line_num
                if not fields:
                    continue  # a blank line
                ended = lines[first + n - 1].endswith("\n")
                problem = _row_problem(dict(zip(header, fields)), len(fields), len(header), ended)
                if problem and n > 1:
                    rows.append(_Row(first + 1, lines[first], [], "an unbalanced quote"))
                    restart = first + 1
                    break
                rows.append(_Row(first + 1, "".join(lines[first:first + n]), fields, problem))
        except csv.Error as exc:
            first = start + consumed
            rows.append(_Row(first + 1, lines[first], [], f"unreadable ({exc})"))
            restart = first + 1
        start = len(lines) if restart is None else restart
    return rows


def _experiment_of(bad: _Row, position: int, rows: Sequence[_Row], header: Sequence[str]) -> str:
    """The experiment a malformed row belonged to ('' if none is recognisable): the experiment
    id among its fields (also when extra or missing fields shifted it), else that of the nearest
    good row before or after it whose key fields the damaged row starts with (an experiment's
    rows are written together, so a row cut short sits among its own)."""
    ids = [f for f in bad.fields if _EXPERIMENT_ID.fullmatch(f)]
    if ids:
        return ids[0]
    keys = [(c, v) for c, v in zip(header, bad.fields) if c in KEY_COLUMNS]
    if not keys or not keys[0][1]:
        return ""
    before = next((r for r in reversed(rows[:position]) if not r.problem), None)
    after = next((r for r in rows[position + 1:] if not r.problem), None)
    for neighbour in (before, after):
        theirs = dict(zip(header, neighbour.fields)) if neighbour else {}
        if theirs and all(theirs[c] == v for c, v in keys[:-1]) and theirs[keys[-1][0]].startswith(keys[-1][1]):
            return theirs["experiment_id"]
    return ""


def _retire_legacy_source(row: _Row, header: Sequence[str]) -> _Row:
    """``row`` marked to be set aside when it is a cross-domain row of the layout before the
    ``source`` column (``variant="source=<domain>"``): its experiment id hashed the old key, so
    keeping it would let the next run store the same cell a second time beside it."""
    if row.problem or not dict(zip(header, row.fields)).get("variant", "").startswith(_LEGACY_SOURCE_VARIANT):
        return row
    return replace(row, problem="a cross-domain row of the layout before the source column (recomputed)")


@dataclass
class _Loaded:
    """A results file as read: the good rows, the rows to quarantine and why, schema notes."""

    frame: pd.DataFrame
    quarantined: list[tuple[_Row, str]]
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
            return f"a damaged header {_short(''.join(lines).strip())} and no rows, rewritten (the old line kept aside)"
        missing = [c for c in COLUMNS if c not in header]
        extra = [c for c in header if c not in COLUMNS]
        if not extra and set(missing) <= {*RECORDED_COLUMNS, *LATER_KEY_COLUMNS}:
            return f"migrated from an older schema without columns {_names(missing)}" if missing else "columns reordered"
        if not migrate:
            raise ResultsSchemaError(
                f"{self.path}: columns do not match the results schema (missing {_names(missing)}, unexpected "
                f"{_names(extra)}): written by another version or tool? `python -m osad_lib.results migrate "
                f"FILE` rewrites it in this schema, keeping every row it can (the rest go to {self.quarantine_path.name})")
        return f"migrated: columns {_names(missing)} missing, {_names(extra)} dropped"

    def _load(self, migrate: bool = False) -> _Loaded:
        """Parse and check the file (``migrate``: see :meth:`migrate`)."""
        lines = self.path.read_text(errors="replace").splitlines(keepends=True)
        header = next(csv.reader(lines[:1]), [])
        schema_note = self._schema_note(header, lines, migrate)
        rows = _split_rows(lines, header)
        if header and "source" not in header:
            rows = [_retire_legacy_source(r, header) for r in rows]
        unnamed = [c for c in _REQUIRED if c not in header]
        if unnamed:
            rows = [_Row(r.line, r.raw, r.fields, f"the file has no {_names(unnamed)} column(s), so the row names no experiment")
                    for r in rows]
        ids = [dict(zip(header, r.fields)).get("experiment_id") for r in rows]
        lost = {_experiment_of(r, i, rows, header) for i, r in enumerate(rows) if r.problem} - {""}
        keep = [not r.problem and i not in lost for r, i in zip(rows, ids)]
        quarantined = [(r, r.problem or "another row of its experiment is malformed") for r, k in zip(rows, keep) if not k]
        frame = pd.DataFrame([r.fields for r, k in zip(rows, keep) if k], columns=header or None, dtype=object)
        frame = frame.reindex(columns=list(COLUMNS)).replace({"": None})
        if header and not {"mode", "report"} <= set(header):
            frame = _legacy_markers(frame)
        extra = [c for c in header if c not in COLUMNS]
        original = (f"the original file before migration (columns {extra} dropped):" if extra and rows else
                    "the damaged header line:" if schema_note.startswith("a damaged header") else "")
        return _Loaded(_coerce(frame), quarantined, lost, schema_note, original)

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
            return _Loaded(_empty_frame(), [], set())
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
            return _empty_frame()
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


#: How rows written before the ``mode`` and ``report`` columns existed said them, inside
#: ``deviations``: the first standalone word ``faithful``/``clean``, and a ``report=…`` part.
_LEGACY_MODE = re.compile(r"(?<!\w)(clean|faithful)(?!\w)")
_LEGACY_REPORT = re.compile(r"(?:^|;)\s*report=(\w+)")


def _legacy_markers(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of a file older than the ``mode``/``report`` columns with both filled from their
    ``deviations`` text as the report used to read it (:data:`_LEGACY_MODE`, :data:`_LEGACY_REPORT`)
    and the metric's name: the one place that still parses those markers out of text."""
    deviations = frame["deviations"].fillna("").astype(str)
    metric = frame["metric"].fillna("").astype(str)
    frame = frame.copy()
    frame["mode"] = deviations.str.extract(_LEGACY_MODE, expand=False).fillna("")
    report = deviations.str.extract(_LEGACY_REPORT, expand=False).fillna("")
    frame["report"] = report.where(~metric.str.endswith(MAX_OVER_EPOCHS_SUFFIX), "max_over_epochs")
    return frame


def _empty_frame() -> pd.DataFrame:
    """A typed results frame without rows (a copy: callers may add columns)."""
    return _typed_empty().copy()


@functools.cache
def _typed_empty() -> pd.DataFrame:
    return _coerce(pd.DataFrame({c: [] for c in COLUMNS}))


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


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m osad_lib.results migrate FILE...``: rewrite results files in this schema."""
    parser = argparse.ArgumentParser(prog="python -m osad_lib.results", description=main.__doc__)
    parser.add_argument("command", choices=["migrate"])
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for file in args.files:
        rows = ResultsStore(file).migrate()
        print(f"{file}: {len(rows)} rows in the current schema")
    return 0


__all__ = [
    "COLUMNS", "KEY_COLUMNS", "MAX_OVER_EPOCHS_SUFFIX", "MODES", "RECORDED_COLUMNS", "Experiment", "ResultsSchemaError",
    "ResultsStore",
    "atomic_write_text", "device_label", "read_all", "store_for", "validate_rows",
]

if __name__ == "__main__":
    raise SystemExit(main())
