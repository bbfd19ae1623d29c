"""The rules of the reproduction report (:mod:`osad_lib.report`, whose docstring defines them):
the tolerance, the keys of a cell, the faithful/clean and report markers of a result row and
the order that picks a cell's primary version."""

from __future__ import annotations

import re

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

_VARIANT_MODE = re.compile(r"(?:^|[;,])(clean|faithful)(?=[;,]|$)")
_SETTING_MODE = re.compile(r"_(clean|faithful)$")
_MARKER_PART = re.compile(r"^(?:mode|protocol|report)=\w+$")

DEFINITIONS = (
    ("cell", "one row of a paper table: dataset, subset, setting, n_shots, method, variant, metric. "
             "Result rows match it by these keys whatever their table label; mean cells are derived per "
             "seed from the parts measured (fewer than all: marked 'mean over k/n subsets'; seeds covering "
             "fewer parts than the best-covered seed left out)."),
    ("version", "faithful/clean marker (a variant token or setting suffix, else the row's mode column) and "
                "report marker (metric '@max_over_epochs', else the row's report column); removed from the keys, "
                "so versions of a cell share its keys."),
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


def version_markers(variant: str, setting: str, metric: str, deviations: str, mode: str = "",
                    report: str = "") -> dict[str, str]:
    """The faithful/clean mode and the report marker of one result row, and its keys and
    ``deviations`` with the markers removed (:mod:`osad_lib.report`, "Version"). ``mode`` and
    ``report`` are the row's columns (:class:`osad_lib.results.Experiment`); a ``clean`` or
    ``faithful`` token of the variant or suffix of the setting (how a rerun of a cell in the other
    mode is keyed) comes first, and a ``…@max_over_epochs`` metric is reported so."""
    found = _VARIANT_MODE.search(variant)
    if found:
        mode, variant = found.group(1), _VARIANT_MODE.sub("", variant).strip(";,")
    else:
        found = _SETTING_MODE.search(setting)
        if found:
            mode, setting = found.group(1), _SETTING_MODE.sub("", setting)
    if metric.endswith(MAX_OVER_EPOCHS_SUFFIX):
        report, metric = "max_over_epochs", metric.removesuffix(MAX_OVER_EPOCHS_SUFFIX)
    kept = [p.strip() for p in deviations.split(";") if p.strip() and not _MARKER_PART.match(p.strip())]
    return {"variant": variant, "setting": setting, "metric": metric, "deviations": "; ".join(kept),
            "mode": mode, "report": report}


def version_label(mode: str, report: str) -> str:
    """``"faithful"``, ``"clean; report=last_epoch"``, … (``""`` for an unmarked row)."""
    return "; ".join(p for p in (mode, f"report={report}" if report else "") if p)


__all__ = ["CELL_ID", "DEFINITIONS", "KEYS", "MODE_ORDER", "PLAN_KEYS", "REPORT_ORDER", "STATUSES",
           "TABLE_METRICS", "TOLERANCE", "as_text", "shots_key", "version_label", "version_markers"]
