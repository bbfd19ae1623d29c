"""Result rows → the cells of the paper tables (:mod:`osad_lib.report`, "Cell", "Version",
"Primary version", "Within tolerance", "Reproduced")."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from osad_lib import paper
from osad_lib.paper.means import with_subset_means
from osad_lib.report.planned import Coverage, Explainer
from osad_lib.results import MAX_OVER_EPOCHS_SUFFIX
from osad_lib.report.rules import (
    CELL_ID, KEYS, MODE_ORDER, REPORT_ORDER, TABLE_METRICS, TOLERANCE, as_text, shots_key, version_label,
    version_markers,
)


def canonical_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Result rows as cell measurements: successful rows of table metrics, keyed without their
    version (:func:`version_markers`; ``version`` from ``mode`` and ``report``), one value per key,
    seed and version (duplicates from several notebooks averaged), plus the derived mean cells
    (:func:`osad_lib.paper.means.with_subset_means`)."""
    ok = rows[(rows["status"] == "ok") & np.isfinite(pd.to_numeric(rows["value"], errors="coerce"))]
    base = ok["metric"].str.removesuffix(MAX_OVER_EPOCHS_SUFFIX)
    ok = ok[base.isin(TABLE_METRICS) & (~ok["metric"].str.contains("@")
                                        | ok["metric"].str.endswith(MAX_OVER_EPOCHS_SUFFIX))]
    if ok.empty:
        return _empty_canonical()
    cols = ["variant", "metric", "mode", "report"]
    raw = list(zip(*(ok[c].map(as_text) for c in cols)))
    parsed = {r: version_markers(*r) for r in set(raw)}
    out = pd.concat([ok.drop(columns=cols), pd.DataFrame([parsed[r] for r in raw], index=ok.index)], axis=1)
    out["value"] = out["value"].astype(float)
    out = _dedupe(out)
    out = with_subset_means(out)
    out["version"] = [version_label(m, r) for m, r in zip(out["mode"], out["report"])]
    return out.reset_index(drop=True)


_GROUP = ["paper", *KEYS, "backbone", "seed", "profile", "mode", "report"]


def _dedupe(rows: pd.DataFrame) -> pd.DataFrame:
    return (rows.groupby(_GROUP, dropna=False, sort=False)
            .agg(value=("value", "mean"), deviations=("deviations", paper.join_notes),
                 notebook=("notebook", paper.join_notes))
            .reset_index())


def _empty_canonical() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype=object) for c in [*_GROUP, "deviations", "notebook", "version"]})
    frame["value"] = pd.Series(dtype=float)
    return frame


def key_tuples(frame: pd.DataFrame, keys: Sequence[str]) -> list[tuple[str, ...]]:
    cols = [frame[k].map(shots_key if k == "n_shots" else as_text) for k in keys]
    return list(zip(*cols)) if len(frame) else []


def _measured_cells(canon: pd.DataFrame, table_id: str) -> pd.DataFrame:
    """``paper.compare`` of each version of ``canon`` with one table, paper cells only."""
    parts = []
    for (mode, report), rows in canon.groupby(["mode", "report"], sort=False):
        comp = paper.compare(rows.assign(table=""), table_id)
        comp = comp[comp["paper_mean"].notna() & (comp["n_seeds"] > 0)]
        if len(comp):
            parts.append(comp.assign(mode=mode, report=report))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _flags(cells: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """Tolerance, within tolerance, reproduced, outside spread (:mod:`osad_lib.report`)."""
    measured = cells["n_seeds"] > 0
    spread = np.maximum(2 * cells["measured_std"].fillna(0.0), cells["paper_std"].fillna(0.0))
    cells["tolerance"] = np.where(measured, np.maximum(spread, tolerance), np.nan)
    within = cells["delta"].abs() <= cells["tolerance"]
    differ = cells["settings_differ"].astype("boolean").fillna(False)
    cells["within_tolerance"] = pd.array(np.where(measured, within, pd.NA), dtype="boolean")
    cells["reproduced"] = pd.array(np.where(measured, within & ~differ, pd.NA), dtype="boolean")
    informative = (cells["n_seeds"] >= 2) | cells["paper_std"].notna()
    outside = ~cells["within_spread"].astype("boolean").fillna(True)
    cells["outside_spread"] = pd.array(np.where(measured & informative, outside, pd.NA), dtype="boolean")
    return cells


def _mark_primary(cells: pd.DataFrame) -> pd.DataFrame:
    rank = (cells["mode"].map(lambda m: MODE_ORDER.index(m) if m in MODE_ORDER else len(MODE_ORDER)) * 10
            + cells["report"].map(lambda r: REPORT_ORDER.index(r) if r in REPORT_ORDER else len(REPORT_ORDER)))
    order = cells.assign(_rank=rank, _pos=np.arange(len(cells))).sort_values(["_rank", "_pos"], kind="stable")
    first = ~order.duplicated([c for c in CELL_ID], keep="first")
    cells["primary"] = first.reindex(cells.index).to_numpy()
    return cells


def cell_table(
    rows: pd.DataFrame,
    cover: Coverage | None = None,
    tolerance: float = TOLERANCE,
    table_ids: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Every cell of every paper table (``table_ids``: default all of :func:`paper.list_tables`)
    with its measured versions (one row each) or, unmeasured, one row with the ``reason``.

    Columns: ``table_id``, ``paper``, ``table``, ``kind``, the keys, ``version``/``mode``/
    ``report``, ``primary``, ``paper_mean``, ``paper_std``, ``measured_mean``, ``measured_std``,
    ``n_seeds``, ``delta``, ``tolerance``, ``within_tolerance``, ``reproduced``,
    ``within_spread``, ``outside_spread``, ``settings_differ``, ``deviations``, ``reason``.
    ``cover`` (:func:`coverage`) explains unmeasured cells; without it their reason is
    ``"not measured"``.
    """
    index = paper.list_tables().set_index("table_id")
    ids = list(table_ids) if table_ids is not None else list(index.index)
    canon = canonical_rows(rows)
    explainer = Explainer(rows, cover) if cover is not None else None
    frames = []
    for table_id in ids:
        p_id = index.loc[table_id, "paper"]
        measured = _measured_cells(canon[canon["paper"].isin((p_id, *paper.SHARED_CELLS.get(table_id, ())))],
                                   table_id)
        ref = paper.compare(canon.iloc[:0], table_id)
        done = set(key_tuples(measured, KEYS)) if len(measured) else set()
        todo = ref[[k not in done for k in key_tuples(ref, KEYS)]].assign(mode="", report="")
        todo["reason"] = [explainer.reason(p_id, cell) if explainer else "not measured"
                          for cell in todo.itertuples(index=False)]
        cells = pd.concat([f for f in (measured, todo) if len(f)], ignore_index=True)
        cells.insert(0, "table_id", table_id)
        cells.insert(1, "paper", p_id)
        cells.insert(2, "table", index.loc[table_id, "table"])
        cells.insert(3, "kind", index.loc[table_id, "kind"])
        frames.append(cells)
    cells = pd.concat(frames, ignore_index=True)
    cells["reason"] = cells["reason"].fillna("") if "reason" in cells else ""
    cells["version"] = [version_label(m, r) for m, r in zip(cells["mode"], cells["report"])]
    cells = _mark_primary(_flags(cells, tolerance))
    columns = ["table_id", "paper", "table", "kind", *KEYS, "version", "mode", "report", "primary", "paper_mean",
               "paper_std", "measured_mean", "measured_std", "n_seeds", "delta", "tolerance", "within_tolerance",
               "reproduced", "within_spread", "outside_spread", "settings_differ", "deviations", "reason"]
    return cells[columns]


__all__ = ["canonical_rows", "cell_table", "key_tuples"]
