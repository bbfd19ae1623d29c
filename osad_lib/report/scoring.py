"""The scorecard of the paper tables and the report's detail tables, from the cells of
:func:`osad_lib.report.cells.cell_table` (:mod:`osad_lib.report`, "Table status", "Versions disagree")."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from osad_lib import paper
from osad_lib.paper.means import mean_parts
from osad_lib.report.cells import canonical_rows, cell_table, key_tuples
from osad_lib.report.planned import Coverage, coverage
from osad_lib.report.rules import CELL_ID, KEYS, TOLERANCE
from osad_lib.results import read_all


def table_status(cells: pd.DataFrame) -> tuple[str, str]:
    """Status and reason of one table from its cells (:func:`cell_table` rows of one table_id).

    ``not run`` (reason: the most frequent reasons of its cells), ``measured on substitute
    settings``, ``reproduced``, ``not reproduced`` or ``partial`` (:mod:`osad_lib.report`).
    """
    primary = cells[cells["primary"]]
    measured = primary[primary["n_seeds"] > 0]
    missing = _reason_summary(primary.loc[primary["n_seeds"] == 0, "reason"])
    if measured.empty:
        return "not run", missing
    on_paper = measured[~measured["settings_differ"].astype(bool)]
    n_within = int(measured["within_tolerance"].sum())
    coverage_note = f"{len(measured)}/{len(primary)} cells measured" + (f"; unmeasured: {missing}" if missing else "")
    if on_paper.empty:
        return ("measured on substitute settings",
                f"{n_within}/{len(measured)} within tolerance on substitute settings; {coverage_note}")
    n_rep = int(on_paper["reproduced"].sum())
    status = "reproduced" if n_rep == len(on_paper) else "not reproduced" if n_rep == 0 else "partial"
    return status, f"{n_rep}/{len(on_paper)} cells on paper settings reproduced; {coverage_note}"


def _reason_summary(reasons: pd.Series, top: int = 4) -> str:
    counts = Counter(r for r in reasons if r)
    parts = [f"{reason} ({n} cell{'s' if n > 1 else ''})" for reason, n in counts.most_common(top)]
    if len(counts) > top:
        parts.append(f"{len(counts) - top} more reasons")
    return "; ".join(parts)


def summarize(cells: pd.DataFrame, tolerance: float = TOLERANCE) -> pd.DataFrame:
    """The scorecard: one row per paper table (in :func:`paper.list_tables` order) with counts of
    its primary cells (``cells``, ``measured``, ``on_paper_settings``, ``reproduced``,
    ``within_tolerance``, ``outside_spread``, ``substitute``), its cells with several versions
    (``with_versions``, ``versions_disagree``), the median delta, ``status`` and ``reason``."""
    index = paper.list_tables().set_index("table_id")
    pairs = version_pairs(cells, tolerance)
    records = []
    for table_id, part in cells.groupby("table_id", sort=False):
        primary = part[part["primary"]]
        measured = primary[primary["n_seeds"] > 0]
        differ = measured["settings_differ"].astype(bool)
        mine = pairs[pairs["table_id"] == table_id]
        status, reason = table_status(part)
        records.append({
            "table_id": table_id, "paper": index.loc[table_id, "paper"], "kind": index.loc[table_id, "kind"],
            "title": index.loc[table_id, "title"], "status": status, "cells": len(primary),
            "measured": len(measured), "on_paper_settings": int((~differ).sum()),
            "reproduced": int(measured["reproduced"].sum()), "within_tolerance": int(measured["within_tolerance"].sum()),
            "outside_spread": int(measured["outside_spread"].fillna(False).sum()), "substitute": int(differ.sum()),
            "with_versions": int(mine[CELL_ID].drop_duplicates().shape[0]) if len(mine) else 0,
            "versions_disagree": int(mine.loc[mine["disagree"], CELL_ID].drop_duplicates().shape[0]) if len(mine) else 0,
            "median_delta": float(measured["delta"].median()) if len(measured) else np.nan,
            "reason": reason,
        })
    return pd.DataFrame(records)


def scorecard(
    profile: str,
    output: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    tolerance: float = TOLERANCE,
    cover: Coverage | None = None,
) -> pd.DataFrame:
    """The scorecard (:func:`summarize`) of the results stored under ``profile``/``output``.

    ``cover`` defaults to :func:`coverage` (``profile``, ``data_root``), which lists every
    notebook's grid (seconds)."""
    cover = cover if cover is not None else coverage(profile, data_root)
    return summarize(cell_table(read_all(profile, output), cover, tolerance), tolerance)


# --------------------------------------------------------------------------------------------
# detail tables


def version_pairs(cells: pd.DataFrame, tolerance: float = TOLERANCE) -> pd.DataFrame:
    """Cells measured in several versions: the primary beside each other version, with the
    ``difference`` (other − primary) and ``disagree`` (``|difference| > max(2·std of either,
    tolerance)``)."""
    measured = cells[cells["n_seeds"] > 0]
    multi = measured[measured.duplicated(CELL_ID, keep=False)]
    columns = [*CELL_ID, "paper_mean", "primary_version", "primary_mean", "primary_std", "other_version",
               "other_mean", "other_std", "difference", "disagree", "primary_within_tolerance",
               "other_within_tolerance"]
    if multi.empty:
        return pd.DataFrame({c: pd.Series(dtype=bool if c == "disagree" else object) for c in columns})
    primary = multi[multi["primary"]]
    pairs = multi[~multi["primary"]].merge(primary, on=CELL_ID, suffixes=("", "_p"))
    difference = pairs["measured_mean"] - pairs["measured_mean_p"]
    limit = np.maximum.reduce([2 * pairs["measured_std"].fillna(0.0).to_numpy(),  # one seed: no spread
                               2 * pairs["measured_std_p"].fillna(0.0).to_numpy(), np.full(len(pairs), tolerance)])
    return pd.DataFrame({
        **{c: pairs[c] for c in CELL_ID}, "paper_mean": pairs["paper_mean"],
        "primary_version": pairs["version_p"], "primary_mean": pairs["measured_mean_p"],
        "primary_std": pairs["measured_std_p"], "other_version": pairs["version"],
        "other_mean": pairs["measured_mean"], "other_std": pairs["measured_std"], "difference": difference,
        "disagree": (difference.abs().to_numpy() > limit), "primary_within_tolerance": pairs["within_tolerance_p"],
        "other_within_tolerance": pairs["within_tolerance"],
    })[columns].reset_index(drop=True)


def cell_verdict(n_seeds: int, delta: float, within_tolerance: Any, settings_differ: Any) -> str:
    """A cell's outcome in a few words, from its :func:`cell_table` flags (:mod:`osad_lib.report`):
    ``reproduced``; ``within tolerance, substitute settings``; ``below the paper by 0.034``
    (outside tolerance; ``, substitute settings`` appended when the settings differ);
    ``not measured``; ``no paper number``."""
    if not n_seeds:
        return "not measured"
    if pd.isna(delta):
        return "no paper number"
    differ = bool(settings_differ) if not pd.isna(settings_differ) else False
    if bool(within_tolerance):
        return "within tolerance, substitute settings" if differ else "reproduced"
    side = "above" if delta > 0 else "below"
    return f"{side} the paper by {abs(delta):.3f}" + (", substitute settings" if differ else "")


def measured_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """Every measured cell version, for reading: keys, version, paper and measured ``mean ± std``,
    delta, seeds, the :func:`cell_verdict`, outside-spread flag and deviations."""
    m = cells[cells["n_seeds"] > 0]
    return pd.DataFrame({
        **{c: m[c] for c in ["table_id", *KEYS, "version", "primary"]},
        "paper": paper.mean_std_text(m, "paper"), "measured": paper.mean_std_text(m, "measured"),
        "n_seeds": m["n_seeds"], "delta": m["delta"].round(3),
        "verdict": [cell_verdict(*r) for r in zip(m["n_seeds"], m["delta"], m["within_tolerance"],
                                                   m["settings_differ"])],
        "outside_spread": m["outside_spread"], "deviations": m["deviations"],
    }).reset_index(drop=True)


def outside_spread(cells: pd.DataFrame) -> pd.DataFrame:
    """Primary cells outside their seed spread (:func:`measured_cells` columns), largest |delta| first."""
    table = measured_cells(cells[cells["primary"] & cells["outside_spread"].fillna(False).astype(bool)])
    return table.reindex(table["delta"].abs().sort_values(ascending=False, kind="stable").index).reset_index(drop=True)


def substitute_settings(cells: pd.DataFrame) -> pd.DataFrame:
    """Measured primary cells whose settings differ from the paper's, grouped by table and
    ``deviations`` text: how many cells, how many within tolerance, the median delta."""
    m = cells[cells["primary"] & (cells["n_seeds"] > 0) & cells["settings_differ"].astype("boolean").fillna(False)]
    columns = ["table_id", "deviations", "cells", "within_tolerance", "median_delta"]
    if m.empty:
        return pd.DataFrame(columns=columns)
    out = (m.assign(deviations=m["deviations"].replace("", "(backbone differs from the paper's)"))
           .groupby(["table_id", "deviations"], sort=False)
           .agg(cells=("delta", "size"), within_tolerance=("within_tolerance", "sum"), median_delta=("delta", "median"))
           .reset_index())
    out["within_tolerance"] = out["within_tolerance"].astype(int)
    return out[columns]


def missing_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """Unmeasured cells counted per table and reason."""
    m = cells[cells["primary"] & (cells["n_seeds"] == 0)]
    if m.empty:
        return pd.DataFrame(columns=["table_id", "reason", "cells"])
    return (m.groupby(["table_id", "reason"], sort=False).size().rename("cells").reset_index()
            .sort_values(["table_id", "cells"], ascending=[True, False], kind="stable").reset_index(drop=True))


def unmatched_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Measurements that no paper cell asks for (synthetic data, extra metrics, protocols or
    variants of the companion), per notebook: how many keys, their datasets and metrics. Parts of
    a mean the paper reports (an AnoOnly file, an MVTec category the table only averages) count
    as matched through their mean."""
    canon = canonical_rows(rows)
    columns = ["notebook", "keys", "datasets", "metrics"]
    known = set(key_tuples(paper.load_all(), ["paper", *KEYS]))
    means = {(r.paper, r.dataset, r.setting, member): label
             for r in canon[["paper", "dataset", "setting"]].drop_duplicates().itertuples(index=False)
             for label, members in mean_parts(r.paper, r.dataset, r.setting).items() for member in members}
    keys = key_tuples(canon, ["paper", *KEYS])
    as_mean = [(k[0], k[1], means.get((k[0], k[1], k[3], k[2]), k[2]), *k[3:]) for k in keys]
    loose = canon[[k not in known and m not in known for k, m in zip(keys, as_mean)]]
    loose = loose.drop_duplicates(["notebook", "paper", *KEYS, "version"])
    if loose.empty:
        return pd.DataFrame(columns=columns)
    return (loose.groupby("notebook", sort=True)
            .agg(keys=("metric", "size"), datasets=("dataset", _join_comma), metrics=("metric", _join_comma))
            .reset_index()[columns])


def _join_comma(values: Iterable[str]) -> str:
    return ", ".join(sorted({v for v in values if v}))


def results_overview(rows: pd.DataFrame) -> pd.DataFrame:
    """Per notebook with stored rows: rows, experiments (ok / failed), seeds, datasets."""
    columns = ["notebook", "rows", "experiments", "failed_experiments", "seeds", "datasets"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    failed = rows[rows["status"] != "ok"].groupby("notebook")["experiment_id"].nunique()
    out = (rows.groupby("notebook", sort=True)
           .agg(rows=("value", "size"), experiments=("experiment_id", "nunique"),
                seeds=("seed", lambda s: ", ".join(str(int(x)) for x in sorted(s.dropna().unique()))),
                datasets=("dataset", _join_comma))
           .reset_index())
    out["failed_experiments"] = out["notebook"].map(failed).fillna(0).astype(int)
    return out[columns]


def scorecard_display(card: pd.DataFrame) -> pd.DataFrame:
    """The scorecard for reading (rounded delta, counts as ``k/n``)."""
    return pd.DataFrame({
        "table": card["table_id"], "kind": card["kind"], "status": card["status"],
        "measured": card["measured"].astype(str) + "/" + card["cells"].astype(str),
        "reproduced": card["reproduced"].astype(str) + "/" + card["on_paper_settings"].astype(str),
        "within tol.": card["within_tolerance"].astype(str) + "/" + card["measured"].astype(str),
        "outside spread": card["outside_spread"], "substitute": card["substitute"],
        "versions disagree": card["versions_disagree"].astype(str) + "/" + card["with_versions"].astype(str),
        "median Δ": card["median_delta"].round(3), "reason": card["reason"], "title": card["title"],
    })


__all__ = ["cell_verdict", "measured_cells", "missing_cells", "outside_spread", "results_overview", "scorecard",
           "scorecard_display", "substitute_settings", "summarize", "table_status", "unmatched_rows", "version_pairs"]
