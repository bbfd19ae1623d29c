"""The rules of the reproduction report (:mod:`osad_lib.report`, whose docstring defines them):
the tolerance, the keys of a cell, the faithful/clean and report markers of a result row and
the order that picks a cell's primary version."""

from __future__ import annotations

import numpy as np
import pandas as pd

from osad_lib import paper
from osad_lib.results import MAX_OVER_EPOCHS_SUFFIX

#: Absolute tolerance (on the [0, 1] scale) of "within tolerance" / "reproduced".
TOLERANCE = 0.02
#: Metrics that paper tables report.
TABLE_METRICS = ("auroc", "aupr", "pixel_auroc", "pro", "aupr_normal")
#: Preference order of the faithful/clean mode when choosing a cell's primary version.
MODE_ORDER = ("faithful", "", "clean")
#: Preference order of the report marker (BGAD: maximum over epochs = how the paper reports).
REPORT_ORDER = ("max_over_epochs", "", "last_epoch")
#: Table statuses, best first.
STATUSES = ("reproduced", "partial", "not reproduced", "measured on substitute settings", "not run")
#: The keys of a cell (``osad_lib.paper.DEFAULT_KEYS``).
KEYS = list(paper.DEFAULT_KEYS)
#: Keys a notebook's grid (``runner.plan``) fixes: a cell's keys without subset and metric.
PLAN_KEYS = ("paper", "dataset", "setting", "n_shots", "method", "variant")
#: What identifies a cell across the paper tables.
CELL_ID = ["table_id", *KEYS]

DEFINITIONS = (
    ("cell", "one row of a paper table: dataset, subset, setting, n_shots, method, variant, metric. "
             "Result rows match it by these keys whatever their table label; mean cells are derived per "
             "seed from the parts measured (fewer than all: marked 'mean over k/n subsets'; seeds covering "
             "fewer parts than the best-covered seed left out)."),
    ("version", "the row's mode column (faithful/clean) and report column (max_over_epochs for a metric named "
                "'<metric>@max_over_epochs'); the mode's part of the variant label ('dra1a;clean') and the metric's "
                "suffix are removed from the keys, so versions of a cell share its keys."),
    ("primary version", "the one that counts: faithful > unmarked > clean, then max_over_epochs > "
                        "unmarked > last_epoch (closest to how the published number was produced)."),
    ("within tolerance", "|measured mean − paper mean| ≤ max(2·measured std, paper std, tolerance); "
                         "std over seeds (ddof 1), 0 for one seed or no paper std."),
    ("reproduced", "within tolerance and on the paper's settings (same backbone, no deviations left)."),
    ("outside seed spread", "|delta| > max(2·measured std, paper std) (osad_lib.paper.compare), "
                            "for cells with ≥2 seeds or a paper std."),
    ("versions disagree", "primary and another version differ by more than max(2·std of either, tolerance)."),
    ("status", "not run (nothing measured; reason given) · measured on substitute settings (every measured "
               "cell has settings_differ) · otherwise, over the cells on paper settings: reproduced (all) · "
               "not reproduced (none) · partial."),
)


def as_text(v: object) -> str:
    """A cell key as text: ``""`` for missing values, else the stripped string."""
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA else str(v).strip()


def shots_key(v: object) -> str:
    """``n_shots`` as a key: ``"10"`` for 10 or 10.0, ``""`` when missing."""
    s = as_text(v)
    return "" if s == "" else str(int(float(s)))


def version_markers(variant: str, metric: str, mode: str = "", report: str = "") -> dict[str, str]:
    """A result row's cell keys and version (:mod:`osad_lib.report`, "Version"), from its ``mode``
    and ``report`` columns (:class:`osad_lib.results.Experiment`): the variant label without the
    part naming the row's mode (how a rerun of a cell in the other mode is keyed: ``dra1a;clean``
    is ``dra1a`` in mode ``clean``) and the metric without its ``@max_over_epochs`` suffix."""
    parts = [p for p in variant.split(";") if p] if mode else [variant]
    return {"variant": ";".join(p for p in parts if p != mode), "metric": metric.removesuffix(MAX_OVER_EPOCHS_SUFFIX),
            "mode": mode, "report": report}


def version_label(mode: str, report: str) -> str:
    """``"faithful"``, ``"clean; report=last_epoch"``, … (``""`` for an unmarked row)."""
    return "; ".join(p for p in (mode, f"report={report}" if report else "") if p)


__all__ = ["CELL_ID", "DEFINITIONS", "KEYS", "MODE_ORDER", "PLAN_KEYS", "REPORT_ORDER", "STATUSES",
           "TABLE_METRICS", "TOLERANCE", "as_text", "shots_key", "version_label", "version_markers"]
