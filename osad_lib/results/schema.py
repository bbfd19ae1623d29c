"""What a results row is: its columns, the :class:`Experiment` that identifies it, and the
check every row passes before it is stored (:func:`validate_rows`)."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from osad_lib import __version__
from osad_lib.provenance import code_commit


#: Columns identifying an experiment (the key that resume checks).
KEY_COLUMNS = (
    "notebook", "paper", "table", "dataset", "subset", "setting", "n_shots",
    "method", "variant", "source", "backbone", "seed", "profile", "manifest_id",
)
#: Every column of a results row, in file order.
COLUMNS = KEY_COLUMNS + (
    "metric", "value", "experiment_id", "status", "deviations", "mode", "report", "params", "device",
    "wall_time_s", "osad_version", "torch_version", "git_sha", "timestamp",
)
#: How a metric that is the maximum over training epochs is named (BGAD reports it so):
#: ``auroc@max_over_epochs``; its row's ``report`` is ``max_over_epochs``.
MAX_OVER_EPOCHS_SUFFIX = "@max_over_epochs"
#: The values of a row's ``mode``: which behaviour of a method with a faithful (the official code)
#: and a clean (the paper's text) variant ran; empty for methods without one.
MODES = ("", "faithful", "clean")
INT_COLUMNS = ("n_shots", "seed")
FLOAT_COLUMNS = ("value", "wall_time_s")
#: Columns an older results file may lack: facts recorded beside a measurement, not part of an
#: experiment's identity. Reading such a file migrates it (the columns are filled empty).
RECORDED_COLUMNS = ("deviations", "mode", "report", "params", "device", "wall_time_s", "osad_version", "torch_version",
                    "git_sha", "timestamp")
#: Key columns added after files were first written: a file without them is migrated when read
#: (filled empty), and an empty value stays out of :attr:`Experiment.experiment_id`, so the rows
#: such a file holds keep their ids. ``source``: the domain a cross-domain model was trained on.
LATER_KEY_COLUMNS = ("source",)
#: Columns every row must fill.
REQUIRED_COLUMNS = ("notebook", "paper", "method", "seed", "profile", "metric", "experiment_id", "status")
EXPERIMENT_ID = re.compile(r"[0-9a-f]{16}")
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}")


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
    ``…@max_over_epochs`` is reported as ``max_over_epochs``); ``params`` the parameters that
    define the ``variant`` label, stored as a JSON object (AnoOnly: ``{"anomaly_only": true,
    "la": 0.05}``), which tables read (:func:`variant_params`) instead of parsing the label. These
    four are recorded, not part of the key (``source`` is).
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
    params: Mapping[str, Any] = field(default_factory=dict)
    extra_key: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ResultsSchemaError(f"Experiment mode {self.mode!r}: expected one of {MODES}")
        try:  # when the grid is built, not after the run that would write them
            json.dumps(dict(self.params))
        except TypeError as exc:
            raise ResultsSchemaError(f"Experiment params {dict(self.params)!r} are not JSON: {exc}") from None

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
            params=json.dumps(dict(self.params), sort_keys=True) if self.params else "", device=self.device, wall_time_s=float(wall_time_s), osad_version=__version__,
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


def variant_params(text: str) -> dict[str, Any]:
    """A row's ``params`` as a dict (``{}`` for a row without: its variant has none, or its file
    predates the column)."""
    return json.loads(text) if text else {}


def validate_rows(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Return rows as a schema-conformant DataFrame or raise ResultsSchemaError (one line)."""
    df = pd.DataFrame(list(rows))
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ResultsSchemaError(f"results rows lack columns {missing}; build rows with Experiment.rows()")
    extra = [c for c in df.columns if c not in COLUMNS]
    if extra:
        raise ResultsSchemaError(f"results rows have unknown columns {extra}; allowed: {list(COLUMNS)}")
    return coerce_columns(df[list(COLUMNS)])


def coerce_columns(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for c in COLUMNS:
        if c in INT_COLUMNS:
            df[c] = pd.to_numeric(df[c], errors="raise").astype("Int64")
        elif c in FLOAT_COLUMNS:
            df[c] = pd.to_numeric(df[c], errors="raise").astype(float)
        else:
            df[c] = df[c].fillna("").astype(str)
    return df



def empty_frame() -> pd.DataFrame:
    """A typed results frame without rows (a copy: callers may add columns)."""
    return _typed_empty().copy()


@functools.cache
def _typed_empty() -> pd.DataFrame:
    return coerce_columns(pd.DataFrame({c: [] for c in COLUMNS}))

