"""The results store: every measured number is one tidy row in a CSV file per notebook and profile.

Rows are appended atomically (write a temporary file, then ``os.replace``) under an exclusive
file lock, so a process killed at any point leaves either the old file or the new one, never a
half-written one. An *experiment* (one training/evaluation run: dataset × setting × shots ×
seed × method × variant …) writes all of its rows in a single append, so it is either complete
in the store or absent; :meth:`ResultsStore.run_experiment` skips experiments whose rows exist,
which is what ``run_all.py --resume`` relies on.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from osad_lib import __version__, limits

#: Columns identifying an experiment (the key that resume checks).
KEY_COLUMNS = (
    "notebook", "paper", "table", "dataset", "subset", "setting", "n_shots",
    "method", "variant", "backbone", "seed", "profile", "manifest_id",
)
#: Every column of a results row, in file order.
COLUMNS = KEY_COLUMNS + (
    "metric", "value", "experiment_id", "status", "deviations", "device",
    "wall_time_s", "osad_version", "torch_version", "timestamp",
)
_INT_COLUMNS = ("n_shots", "seed")
_FLOAT_COLUMNS = ("value", "wall_time_s")


class ResultsSchemaError(ValueError):
    """A results file or row that does not follow the schema."""


@dataclass(frozen=True)
class Experiment:
    """What identifies one experiment; every row it produces carries these fields.

    ``deviations`` lists how the run differs from the paper's protocol (e.g.
    ``"backbone=efficientnet_lite0 (paper: resnet18); schedule=5x10 (paper: 50x20)"``);
    it is recorded, not part of the key.
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
    backbone: str = ""
    manifest_id: str = ""
    deviations: str = ""
    device: str = "cpu"
    extra_key: Mapping[str, Any] = field(default_factory=dict)

    @property
    def experiment_id(self) -> str:
        """Stable hash of the key columns (and ``extra_key``)."""
        key = {c: getattr(self, c) for c in KEY_COLUMNS}
        key["extra"] = dict(sorted(self.extra_key.items()))
        blob = json.dumps(key, sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:16]

    def rows(self, metrics: Mapping[str, float], wall_time_s: float, status: str = "ok") -> list[dict]:
        """One row per metric, with every schema column filled."""
        import torch

        base = {c: getattr(self, c) for c in KEY_COLUMNS}
        base.update(
            experiment_id=self.experiment_id, status=status, deviations=self.deviations,
            device=self.device, wall_time_s=float(wall_time_s), osad_version=__version__,
            torch_version=torch.__version__,
            timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        return [{**base, "metric": m, "value": float(v)} for m, v in metrics.items()]

    def describe(self) -> str:
        parts = [self.method, self.variant, self.dataset, self.subset, self.setting,
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


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


#: Per results file, (file version, code paths of its rows): :meth:`ResultsStore.path_has_rows`'s memo.
_STORED_PATHS: dict[Path, tuple[tuple[int, int, int] | None, set[str]]] = {}


class ResultsStore:
    """Tidy result rows of one notebook under one profile: ``<runs>/<profile>/results/<notebook>.csv``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def read(self) -> pd.DataFrame:
        """All rows (validated); an empty, typed frame if the file does not exist yet."""
        if not self.path.exists():
            return _coerce(pd.DataFrame({c: [] for c in COLUMNS}))
        try:
            df = pd.read_csv(self.path, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise ResultsSchemaError(f"{self.path}: unreadable results file ({exc}); move it aside to start over") from None
        if list(df.columns) != list(COLUMNS):
            raise ResultsSchemaError(
                f"{self.path}: columns {list(df.columns)} do not match the results schema; "
                "move the file aside (it was written by another version) and rerun"
            )
        df = df.replace({"": None}).astype(object)
        try:
            return _coerce(df)
        except (ValueError, TypeError) as exc:
            raise ResultsSchemaError(f"{self.path}: a value does not fit the schema ({exc}); fix or move the file aside") from None

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append rows atomically; refuses to append to a file that fails validation."""
        new = validate_rows(rows)
        with _locked(self.path):
            old = self.read()
            merged = pd.concat([old, new], ignore_index=True) if len(old) else new
            atomic_write_text(self.path, merged.to_csv(index=False))

    def path_has_rows(self, experiment: Experiment) -> bool:
        """Whether a stored experiment took ``experiment``'s code path (:func:`osad_lib.limits.path_key`).

        The stored paths are read once per version of the file (a grid asks for every item)."""
        fields = ("notebook", "paper", "method", "backbone")
        stat = self.path.stat() if self.path.exists() else None
        version = (stat.st_ino, stat.st_mtime_ns, stat.st_size) if stat else None
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
        (:class:`osad_lib.training.NonFiniteLossError`) is recorded as one ``status=failed`` row
        and the caller's grid continues; CUDA out of memory raises
        :class:`osad_lib.training.CudaOutOfMemoryError` naming the experiment and the setting to
        lower; any other exception propagates and writes nothing. Under a CI-sized dry run
        (:attr:`osad_lib.limits.RunLimits.one_run_per_path`) an experiment whose code path already
        has rows is skipped (no rows).
        """
        import torch

        from osad_lib.training import CudaOutOfMemoryError, NonFiniteLossError

        if limits.active().one_run_per_path and self.path_has_rows(experiment):
            return self.read().iloc[0:0]
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
    from osad_lib.paths import results_dir

    return ResultsStore(results_dir(profile, output) / f"{notebook}.csv")


def read_all(profile: str, output: str | os.PathLike | None = None) -> pd.DataFrame:
    """Rows of every notebook's store under ``profile`` (validated)."""
    from osad_lib.paths import results_dir

    frames = [ResultsStore(p).read() for p in sorted(results_dir(profile, output).glob("*.csv"))]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else ResultsStore(Path("/nonexistent")).read()


def device_label(device: str) -> str:
    """A short label of the device for results rows (``cpu`` / ``cuda:<name>``)."""
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(torch.device(device))}"
    return f"cpu:{platform.machine()}"


__all__ = [
    "COLUMNS", "KEY_COLUMNS", "Experiment", "ResultsSchemaError", "ResultsStore",
    "atomic_write_text", "device_label", "read_all", "store_for", "validate_rows",
]
