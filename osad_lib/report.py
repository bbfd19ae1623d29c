"""The reproduction report of a run (notebook ``08_report``): every paper table, cell by cell.

Input: the tidy result rows of one profile (:func:`osad_lib.results.read_all`) and the papers'
tables (:mod:`osad_lib.paper`). Output: a per-cell comparison (:func:`cell_table`), a per-table
scorecard (:func:`summarize`, :func:`scorecard`) and ``runs/<profile>/REPORT.md`` /
``REPORT.html`` (:func:`write_report`) linking every table and figure of the run.

Definitions (also printed at the top of the report, :data:`DEFINITIONS`):

* **Cell**: one row of a paper table, i.e. one (dataset, subset, setting, n_shots, method,
  variant, metric). Result rows match a cell by these keys whatever their ``table`` label (DRA's
  Table 7 cells are Table 1 runs, AnoOnly's Tables 3/4 the AUCPR metrics of its Table 1 runs);
  rows of another paper match only the cells a table reprints from it (``paper.SHARED_CELLS``:
  BGAD Table 3's baselines are DRA Table 1's). Mean cells (``subset`` ``mean``, ``<category>/mean``, the
  ADBench group mean ``""`` of AnoOnly) are derived per seed by the one rule of
  :mod:`osad_lib.paper.means`, which every notebook's tables use too: the mean over the parts
  measured, marked ``mean over k/n subsets`` in ``deviations`` when some are missing (a substitute
  setting), seeds covering fewer parts than the best-covered one left out.
* **Version**: a faithful/clean marker and a report marker. *Mode* = ``faithful`` or ``clean``
  from, in order, a ``variant`` token (``dra1a;clean``), a ``setting`` suffix
  (``semi_supervised_clean``) or the first standalone word ``clean``/``faithful`` in
  ``deviations`` (``mode=faithful``, ``clean protocol: …``). *Report* = ``max_over_epochs`` for a
  metric named ``<metric>@max_over_epochs`` (BGAD), else a ``report=<word>`` part of
  ``deviations``. Markers are removed from the keys; ``deviations`` parts that are nothing but a
  marker (``mode=faithful``, ``report=last_epoch``) are dropped, so they alone do not make a
  cell's settings differ. Two versions of a cell = rows equal in every key after removal.
* **Primary version** of a cell (the one that counts): the one closest to how the published
  number was produced — mode ``faithful`` before unmarked before ``clean``, then report
  ``max_over_epochs`` before unmarked before ``last_epoch``. Other versions are shown beside it.
* **Within tolerance**: ``|measured mean − paper mean| <= max(2·measured std, paper std,
  tolerance)`` (std over seeds with ddof=1, taken as 0 for one seed or a missing paper std;
  ``tolerance`` = :data:`TOLERANCE` = 0.02 on the [0, 1] scale).
* **Reproduced**: within tolerance *and* measured on the paper's settings (``settings_differ``
  false: same backbone as the paper and no remaining ``deviations``).
* **Outside seed spread**: :func:`osad_lib.paper.compare`'s ``within_spread`` is false
  (``|delta| > max(2·measured std, paper std)``, no absolute tolerance); only for cells with at
  least two seeds or a paper std.
* **Versions disagree**: the primary and another version of a cell differ by more than
  ``max(2·std of either, tolerance)``.
* **Table status**, from its measured primary cells: ``not run`` (none measured; the reason
  lists why, e.g. ``dataset not present: mvtecad (set the data_root parameter or run_all.py --data-root)``), ``measured on
  substitute settings`` (every measured cell has ``settings_differ``), else among the cells on
  paper settings ``reproduced`` (all reproduced), ``not reproduced`` (none) or ``partial``.
* **Why a cell was not measured** (first that applies; from the notebooks' grids,
  :func:`coverage`): ``not implemented`` (no notebook runs that paper yet), ``method not
  implemented`` / ``variant not implemented`` (no grid under the ``paper`` profile has it),
  ``not in any notebook's grid`` (its dataset/setting/shots), ``dataset not present`` (not
  embedded and not under the data root), ``not in the <profile> profile``, ``no results:
  notebook <nb> not run``, ``runs failed`` (a stored failed run), ``mean not computed`` (fewer
  than two parts measured), ``no result rows``.
"""

from __future__ import annotations

import html
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from osad_lib import experiments, paper, paths, viz
from osad_lib.data import registry, tabular
from osad_lib.paper.means import mean_parts, with_subset_means
from osad_lib.paths import atomic_write_text
from osad_lib.profiles import configure, get_profile
from osad_lib.results import read_all
from osad_lib.validate import ConfigError

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
#: Colour of each paper in figures: the colour of the paper's own method (``viz.METHOD_COLORS``).
PAPER_COLORS = {p: viz.METHOD_COLORS[m] for p, m in
                (("devnet", "devnet"), ("dra", "dra"), ("bgad", "bgad"), ("anoonly", "anoonly"), ("ahl", "ahl_dra"))}
#: Rows of a long section shown in REPORT.md / REPORT.html (the saved CSV has them all).
MAX_ROWS_SHOWN = 200

KEYS = list(paper.DEFAULT_KEYS)
#: Keys a notebook's grid (``runner.plan``) fixes: a cell's keys without subset and metric.
PLAN_KEYS = ("paper", "dataset", "setting", "n_shots", "method", "variant")
_CELL_ID = ["table_id", *KEYS]

_VARIANT_MODE = re.compile(r"(?:^|[;,])(clean|faithful)(?=[;,]|$)")
_SETTING_MODE = re.compile(r"_(clean|faithful)$")
_DEVIATION_MODE = re.compile(r"(?<!\w)(clean|faithful)(?!\w)")
_DEVIATION_REPORT = re.compile(r"(?:^|;)\s*report=(\w+)")
_MARKER_PART = re.compile(r"^(?:mode|protocol|report)=\w+$")
_MAX_SUFFIX = "@max_over_epochs"

DEFINITIONS = (
    ("cell", "one row of a paper table: dataset, subset, setting, n_shots, method, variant, metric. "
             "Result rows match it by these keys whatever their table label; mean cells are derived per "
             "seed from the parts measured (fewer than all: marked 'mean over k/n subsets'; seeds covering "
             "fewer parts than the best-covered seed left out)."),
    ("version", "faithful/clean marker (variant token, setting suffix, or the first standalone word "
                "'clean'/'faithful' in deviations) and report marker (metric '@max_over_epochs' or "
                "'report=…' in deviations); removed from the keys, so versions of a cell share its keys."),
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


# --------------------------------------------------------------------------------------------
# what the notebooks plan (for the reasons of unmeasured cells)


@dataclass(frozen=True)
class Coverage:
    """What the notebooks would run: ``planned`` = the grids under the run's profile,
    ``paper_planned`` = under the ``paper`` profile (what is implemented at all), both in the
    columns of :func:`osad_lib.runner.plan`; ``notes``: notebooks whose grid could not be listed."""

    profile: str
    planned: pd.DataFrame
    paper_planned: pd.DataFrame
    data_root: Path | None = None
    notes: tuple[str, ...] = field(default=())


def coverage(profile: str, data_root: str | os.PathLike | None = None) -> Coverage:
    """The grids of every notebook (:func:`osad_lib.experiments.grid_of`, as ``run_all.py
    --plan`` lists them) under ``profile`` and under ``paper``.

    A notebook whose grid cannot be listed (a :class:`ConfigError`, e.g. a missing ADBench
    folder) contributes nothing and is named in ``notes``.
    """
    root = paths.data_root(data_root)
    notes: list[str] = []

    def plan_of(name: str) -> pd.DataFrame:
        frames = []
        for notebook in sorted(experiments.NOTEBOOK_MODULES):
            try:
                listed = experiments.grid_of(notebook, configure(notebook, profile=name, data_root=str(root or ""),
                                                                    check_data=False))
            except ConfigError as exc:
                notes.append(f"{notebook} ({name} profile): grid not listed: {exc}")
                continue
            if listed is not None:
                frames.append(experiments.plan_rows(notebook, *listed[:2]))
        return experiments.plan_table(frames)

    here = plan_of(profile)
    full = here if profile == "paper" else plan_of("paper")
    return Coverage(profile, here, full, root, tuple(notes))


def dataset_presence(paper_id: str, dataset: str, data_root: str | os.PathLike | None = None) -> str:
    """``""`` when ``dataset`` is at hand (embedded or under the data root), else the reason,
    e.g. ``"dataset not present: mvtecad (set the data_root parameter or run_all.py --data-root)"``,
    phrased for notebook and command-line users alike. Datasets the project does not
    know (AnoOnly's ``overall``) count as present: there is nothing to fetch."""
    if paper_id == "anoonly" and dataset in tabular.GROUPS:
        try:
            found = tabular.group_files(dataset, tabular.user_adbench_dir(data_root=data_root))
        except ConfigError as exc:
            return f"dataset not present: {dataset} ({exc})"
        return "" if found else (f"dataset not present: {dataset} (no ADBench files of it; set the adbench_dir parameter "
                                 f"of 04_anoonly or {tabular.ADBENCH_ENV})")
    info = registry.DATASETS.get(dataset)
    if info is None or info.embedded:
        return ""
    root = paths.data_root(data_root)
    if root is None:
        return f"dataset not present: {dataset} (set the data_root parameter or run_all.py --data-root)"
    if not any(registry.local_folder(name, root).is_dir() for name in info.names):
        return f"dataset not present: {dataset} (not found under {root})"
    return ""


# --------------------------------------------------------------------------------------------
# result rows → cells


def _as_text(v: object) -> str:
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA else str(v).strip()


def _shots(v: object) -> str:
    s = _as_text(v)
    return "" if s == "" else str(int(float(s)))


def version_markers(variant: str, setting: str, metric: str, deviations: str) -> dict[str, str]:
    """The faithful/clean mode and the report marker of one result row, and its keys and
    ``deviations`` with the markers removed (module docstring, "Version")."""
    mode = ""
    found = _VARIANT_MODE.search(variant)
    if found:
        mode, variant = found.group(1), _VARIANT_MODE.sub("", variant).strip(";,")
    found = _SETTING_MODE.search(setting)
    if found:
        mode, setting = mode or found.group(1), _SETTING_MODE.sub("", setting)
    if not mode:
        found = _DEVIATION_MODE.search(deviations)
        mode = found.group(1) if found else ""
    report = ""
    if metric.endswith(_MAX_SUFFIX):
        report, metric = "max_over_epochs", metric.removesuffix(_MAX_SUFFIX)
    else:
        found = _DEVIATION_REPORT.search(deviations)
        report = found.group(1) if found else ""
    kept = [p.strip() for p in deviations.split(";") if p.strip() and not _MARKER_PART.match(p.strip())]
    return {"variant": variant, "setting": setting, "metric": metric, "deviations": "; ".join(kept),
            "mode": mode, "report": report}


def version_label(mode: str, report: str) -> str:
    """``"faithful"``, ``"clean; report=last_epoch"``, … (``""`` for an unmarked row)."""
    return "; ".join(p for p in (mode, f"report={report}" if report else "") if p)


def canonical_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Result rows as cell measurements: successful rows of table metrics, version markers moved
    into ``mode``/``report``/``version``, one value per key, seed and version (duplicates from
    several notebooks averaged), plus the derived mean cells
    (:func:`osad_lib.paper.means.with_subset_means`)."""
    ok = rows[(rows["status"] == "ok") & np.isfinite(pd.to_numeric(rows["value"], errors="coerce"))]
    base = ok["metric"].str.removesuffix(_MAX_SUFFIX)
    ok = ok[base.isin(TABLE_METRICS) & (~ok["metric"].str.contains("@") | ok["metric"].str.endswith(_MAX_SUFFIX))]
    if ok.empty:
        return _empty_canonical()
    cols = ["variant", "setting", "metric", "deviations"]
    raw = list(zip(*(ok[c].map(_as_text) for c in cols)))
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


# --------------------------------------------------------------------------------------------
# cells of the paper tables


def _key_tuples(frame: pd.DataFrame, keys: Sequence[str]) -> list[tuple[str, ...]]:
    cols = [frame[k].map(_shots if k == "n_shots" else _as_text) for k in keys]
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
    """Tolerance, within tolerance, reproduced, outside spread (module docstring)."""
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
    first = ~order.duplicated([c for c in _CELL_ID], keep="first")
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
    explainer = _Explainer(rows, cover) if cover is not None else None
    frames = []
    for table_id in ids:
        p_id = index.loc[table_id, "paper"]
        measured = _measured_cells(canon[canon["paper"].isin((p_id, *paper.SHARED_CELLS.get(table_id, ())))],
                                   table_id)
        ref = paper.compare(canon.iloc[:0], table_id)
        done = set(_key_tuples(measured, KEYS)) if len(measured) else set()
        todo = ref[[k not in done for k in _key_tuples(ref, KEYS)]].assign(mode="", report="")
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


class _PlanKeys:
    """The canonical keys (:data:`PLAN_KEYS`, markers removed) of a grid, the notebooks that
    plan each, and the papers, methods and variants it covers."""

    def __init__(self, frame: pd.DataFrame):
        self.notebooks: dict[tuple[str, ...], set[str]] = defaultdict(set)
        for r in frame.drop_duplicates(["notebook", *PLAN_KEYS]).itertuples(index=False):
            m = version_markers(_as_text(r.variant), _as_text(r.setting), "", "")
            key = (_as_text(r.paper), _as_text(r.dataset), m["setting"], _shots(r.n_shots), _as_text(r.method),
                   m["variant"])
            self.notebooks[key].add(r.notebook)
        self.papers = {k[0] for k in self.notebooks}
        self.methods = {(k[0], k[4]) for k in self.notebooks}
        self.variants = {(k[0], k[4], k[5]) for k in self.notebooks}


class _Explainer:
    """Why a paper cell has no measurement (module docstring, "Why a cell was not measured"),
    for one set of result rows and one :class:`Coverage`."""

    def __init__(self, rows: pd.DataFrame, cover: Coverage):
        self.cover = cover
        self.here, self.full = _PlanKeys(cover.planned), _PlanKeys(cover.paper_planned)
        self.with_rows = set(rows.loc[rows["status"] == "ok", "notebook"])
        self.failed: dict[tuple[str, ...], str] = {}
        for r in rows[rows["status"] != "ok"].itertuples(index=False):
            m = version_markers(_as_text(r.variant), _as_text(r.setting), "", _as_text(r.deviations))
            self.failed.setdefault((r.paper, r.dataset, m["setting"], _shots(r.n_shots), r.method, m["variant"]),
                                   str(r.status))
        self.presence: dict[tuple[str, str], str] = {}

    def absent(self, paper_id: str, dataset: str) -> str:
        if (paper_id, dataset) not in self.presence:
            self.presence[paper_id, dataset] = dataset_presence(paper_id, dataset, self.cover.data_root)
        return self.presence[paper_id, dataset]

    def reason(self, paper_id: str, cell: Any) -> str:
        """The first reason that applies to ``cell`` (a paper-table row with the key columns)."""
        key = (paper_id, cell.dataset, cell.setting, _shots(cell.n_shots), cell.method, cell.variant)
        if paper_id not in self.full.papers:
            return f"not implemented: no notebook runs {paper_id} experiments yet"
        if (paper_id, cell.method) not in self.full.methods:
            return f"method not implemented: {cell.method}"
        if (paper_id, cell.method, cell.variant) not in self.full.variants:
            return f"variant not implemented: {cell.method} {cell.variant}"
        if key not in self.full.notebooks:
            shots = f"{key[3]}-shot " if key[3] else ""
            return f"not in any notebook's grid: {cell.dataset} {shots}{cell.setting}"
        absent = self.absent(paper_id, cell.dataset)
        if key not in self.here.notebooks:
            return absent or f"not in the {self.cover.profile} profile"
        if absent:
            return absent
        notebooks = sorted(self.here.notebooks[key])
        not_run = [nb for nb in notebooks if nb not in self.with_rows]
        if not_run:
            return f"no results: notebook {', '.join(not_run)} not run"
        if key in self.failed:
            return f"runs failed: {self.failed[key]}"
        if cell.subset == "mean" or cell.subset.endswith("/mean"):
            return "mean not computed: fewer than two of its parts measured"
        return f"no result rows in {', '.join(notebooks)}"


# --------------------------------------------------------------------------------------------
# per-table scorecard


def table_status(cells: pd.DataFrame) -> tuple[str, str]:
    """Status and reason of one table from its cells (:func:`cell_table` rows of one table_id).

    ``not run`` (reason: the most frequent reasons of its cells), ``measured on substitute
    settings``, ``reproduced``, ``not reproduced`` or ``partial`` (module docstring).
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
            "with_versions": int(mine[_CELL_ID].drop_duplicates().shape[0]) if len(mine) else 0,
            "versions_disagree": int(mine.loc[mine["disagree"], _CELL_ID].drop_duplicates().shape[0]) if len(mine) else 0,
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
    multi = measured[measured.duplicated(_CELL_ID, keep=False)]
    columns = [*_CELL_ID, "paper_mean", "primary_version", "primary_mean", "primary_std", "other_version",
               "other_mean", "other_std", "difference", "disagree", "primary_within_tolerance",
               "other_within_tolerance"]
    if multi.empty:
        return pd.DataFrame({c: pd.Series(dtype=bool if c == "disagree" else object) for c in columns})
    primary = multi[multi["primary"]]
    pairs = multi[~multi["primary"]].merge(primary, on=_CELL_ID, suffixes=("", "_p"))
    difference = pairs["measured_mean"] - pairs["measured_mean_p"]
    limit = np.maximum.reduce([2 * pairs["measured_std"].fillna(0.0).to_numpy(),  # one seed: no spread
                               2 * pairs["measured_std_p"].fillna(0.0).to_numpy(), np.full(len(pairs), tolerance)])
    return pd.DataFrame({
        **{c: pairs[c] for c in _CELL_ID}, "paper_mean": pairs["paper_mean"],
        "primary_version": pairs["version_p"], "primary_mean": pairs["measured_mean_p"],
        "primary_std": pairs["measured_std_p"], "other_version": pairs["version"],
        "other_mean": pairs["measured_mean"], "other_std": pairs["measured_std"], "difference": difference,
        "disagree": (difference.abs().to_numpy() > limit), "primary_within_tolerance": pairs["within_tolerance_p"],
        "other_within_tolerance": pairs["within_tolerance"],
    })[columns].reset_index(drop=True)


def cell_verdict(n_seeds: int, delta: float, within_tolerance: Any, settings_differ: Any) -> str:
    """A cell's outcome in a few words, from its :func:`cell_table` flags (module docstring):
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
        "paper": [paper.format_mean_std(a, b) for a, b in zip(m["paper_mean"], m["paper_std"])],
        "measured": [paper.format_mean_std(a, b) for a, b in zip(m["measured_mean"], m["measured_std"])],
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
    known = set(_key_tuples(paper.load_all(), ["paper", *KEYS]))
    means = {(r.paper, r.dataset, r.setting, member): label
             for r in canon[["paper", "dataset", "setting"]].drop_duplicates().itertuples(index=False)
             for label, members in mean_parts(r.paper, r.dataset, r.setting).items() for member in members}
    keys = _key_tuples(canon, ["paper", *KEYS])
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


# --------------------------------------------------------------------------------------------
# figures


def delta_figure(cells: pd.DataFrame, tolerance: float = TOLERANCE):
    """Strip plot of measured − paper per paper (primary versions): filled = paper settings,
    hollow = substitute settings; the band is ±``tolerance``."""
    import matplotlib.pyplot as plt

    m = cells[cells["primary"] & (cells["n_seeds"] > 0)]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.axhspan(-tolerance, tolerance, color="0.9", zorder=0, label=f"±{tolerance:g} tolerance")
    ax.axhline(0, color="0.4", lw=0.8)
    rng = np.random.default_rng(0)
    for i, p_id in enumerate(paper.PAPERS):
        mine = m[m["paper"] == p_id]
        differ = mine["settings_differ"].astype("boolean").fillna(False).to_numpy()
        x = i + rng.uniform(-0.25, 0.25, len(mine))
        color = PAPER_COLORS[p_id]
        ax.scatter(x[~differ], mine["delta"].to_numpy()[~differ], s=14, color=color, alpha=0.8)
        ax.scatter(x[differ], mine["delta"].to_numpy()[differ], s=14, facecolors="none", edgecolors=color, alpha=0.8)
    ax.scatter([], [], s=14, color="0.3", label="paper settings")
    ax.scatter([], [], s=14, facecolors="none", edgecolors="0.3", label="substitute settings")
    counts = m.groupby("paper").size()
    ax.set_xticks(range(len(paper.PAPERS)),
                  [f"{p}\n({int(counts.get(p, 0))} cells)" for p in paper.PAPERS])
    ax.set_xlim(-0.6, len(paper.PAPERS) - 0.4)
    ax.set_xlabel("paper")
    ax.set_ylabel("measured − paper (AUC, [0, 1] scale)")
    ax.set_title("Measured minus published value per table cell (primary version)")
    if m.empty:
        ax.set_ylim(-0.1, 0.1)
        ax.text(0.5, 0.5, "no measured cell yet: run notebooks 01–07 first", transform=ax.transAxes,
                ha="center", va="center", color="0.3")
    ax.legend(loc="upper right", fontsize=7, frameon=True)
    fig.tight_layout()
    return fig


_STATUS_PARTS = (("reproduced", "#2ca02c"), ("within tolerance, substitute settings", "#98df8a"),
                 ("outside tolerance", "#d62728"), ("not measured", "#dddddd"))


def status_figure(card: pd.DataFrame):
    """Per table, the share of its cells reproduced / within tolerance on substitute settings /
    outside tolerance / not measured (horizontal stacked bars, tables in index order)."""
    import matplotlib.pyplot as plt

    shares = pd.DataFrame({
        "reproduced": card["reproduced"],
        "within tolerance, substitute settings": card["within_tolerance"] - card["reproduced"],
        "outside tolerance": card["measured"] - card["within_tolerance"],
        "not measured": card["cells"] - card["measured"],
    }).div(card["cells"].clip(lower=1), axis=0)
    fig, ax = plt.subplots(figsize=(8, 0.8 + 0.22 * len(card)))
    left = np.zeros(len(card))
    y = np.arange(len(card))
    for name, color in _STATUS_PARTS:
        ax.barh(y, shares[name], left=left, color=color, label=name, height=0.8)
        left += shares[name].to_numpy()
    ax.set_yticks(y, [f"{t} ({s})" for t, s in zip(card["table_id"], card["status"])], fontsize=6)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the table's cells")
    ax.set_ylabel("paper table (status)")
    ax.set_title("Reproduction scorecard: cells per paper table")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# REPORT.md / REPORT.html


def report_tables(rows: pd.DataFrame, cells: pd.DataFrame, tolerance: float = TOLERANCE) -> dict[str, pd.DataFrame]:
    """The report's tables by file name (saved under ``tables/``), in report order."""
    card = summarize(cells, tolerance)
    return {
        "report_results": results_overview(rows),
        "report_scorecard": scorecard_display(card),
        "report_measured_cells": measured_cells(cells),
        "report_outside_spread": outside_spread(cells),
        "report_substitute_settings": substitute_settings(cells),
        "report_versions": version_pairs(cells, tolerance).round(4),
        "report_missing": missing_cells(cells),
        "report_unmatched": unmatched_rows(rows),
    }


_SECTIONS = (
    ("report_results", "Results found", "Result rows stored per notebook under this profile."),
    ("report_scorecard", "Scorecard",
     "One row per paper table. measured = measured/paper cells; reproduced = reproduced/measured on paper "
     "settings; within tol. = within tolerance/measured (any settings); versions disagree = cells whose "
     "faithful/clean (or report) versions disagree / cells with several versions."),
    ("report_outside_spread", "Cells outside their seed spread",
     "Primary cells with |delta| > max(2·measured std, paper std), largest first."),
    ("report_substitute_settings", "Cells measured on substitute settings",
     "Measured primary cells whose backbone or settings differ from the paper, grouped by the recorded deviations."),
    ("report_versions", "Faithful vs clean (and report) versions",
     "Cells measured in several versions: the primary beside each other one; disagree = the difference exceeds "
     "max(2·std of either, tolerance)."),
    ("report_missing", "Why cells are not measured", "Unmeasured cells per table and reason."),
    ("report_unmatched", "Measurements without a paper cell",
     "Keys no paper table has (synthetic data, extra metrics, companion protocols or variants)."),
    ("report_measured_cells", "Every measured cell", "All measured cell versions (primary and others)."),
)


_HEADLINE_CAPTION = ("One row per paper: its main claim, the paper's number, ours and the verdict the project's rules "
                     "give (a level: the report's tolerance rule on the cell; a gain: paired differences over seeds, "
                     "beyond 2 standard errors or not). Mean ± std (or ± s.e. for a paired difference) over the seeds.")


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def _artifacts(profile: str, output: str | os.PathLike | None) -> dict[str, dict[str, list[Path]]]:
    """Tables (CSV/MD), figures (PNG/PDF) and executed notebooks of the run, grouped by file stem."""
    folders = {
        "tables": (paths.tables_dir(profile, output), (".csv", ".md")),
        "figures": (paths.figures_dir(profile, output), (".png", ".pdf")),
        "notebooks": (paths.runs_dir(profile, output), (".ipynb",)),
    }
    out: dict[str, dict[str, list[Path]]] = {}
    for kind, (folder, suffixes) in folders.items():
        groups: dict[str, list[Path]] = defaultdict(list)
        for f in sorted(folder.iterdir()):
            if f.is_file() and f.suffix in suffixes and not f.name.startswith("."):
                groups[f.stem].append(f)
        out[kind] = dict(groups)
    return out


def _md_table(df: pd.DataFrame) -> str:
    """The first :data:`MAX_ROWS_SHOWN` rows as Markdown, deviations as numbered footnotes."""
    if df.empty:
        return "_none_"
    note = f"\n\n_First {MAX_ROWS_SHOWN} of {len(df)} rows; the linked CSV has all._" if len(df) > MAX_ROWS_SHOWN else ""
    return viz.markdown_table(df.head(MAX_ROWS_SHOWN), missing="—") + note


def _html_table(df: pd.DataFrame) -> str:
    """The first :data:`MAX_ROWS_SHOWN` rows as HTML, deviations as a numbered list under it."""
    if df.empty:
        return "<p><em>none</em></p>"
    note = (f"<p><em>First {MAX_ROWS_SHOWN} of {len(df)} rows; the linked CSV has all.</em></p>"
            if len(df) > MAX_ROWS_SHOWN else "")
    shown, notes = viz.footnoted(df.head(MAX_ROWS_SHOWN))
    footnotes = ""
    if notes:
        footnotes = (f"<p><em>Deviations ({viz.NOTE_COLUMN}):</em></p><ol>"
                     + "".join(f"<li>{html.escape(text)}</li>" for text in notes) + "</ol>")
    return shown.to_html(index=False, na_rep="—", float_format=lambda v: f"{v:.3f}", border=0,
                         classes="data") + footnotes + note


def _summary_line(card: pd.DataFrame) -> str:
    counts = card["status"].value_counts()
    parts = [f"{counts.get(s, 0)} {s}" for s in STATUSES if counts.get(s, 0)]
    return (f"{len(card)} paper tables: {', '.join(parts)}. Cells: {int(card['measured'].sum())} of "
            f"{int(card['cells'].sum())} measured, {int(card['on_paper_settings'].sum())} on the paper's settings, "
            f"{int(card['reproduced'].sum())} reproduced, {int(card['within_tolerance'].sum())} within tolerance "
            f"on any settings.")


def write_report(
    profile: str,
    output: str | os.PathLike | None = None,
    *,
    data_root: str | os.PathLike | None = None,
    tolerance: float = TOLERANCE,
    cover: Coverage | None = None,
    rows: pd.DataFrame | None = None,
    cells: pd.DataFrame | None = None,
    headline: pd.DataFrame | None = None,
) -> dict[str, Path | list[Path]]:
    """Save the report's tables (``viz.save_table``) and figures (``viz.savefig``) and write
    ``runs/<profile>/REPORT.md`` and ``REPORT.html`` linking every table, figure and executed
    notebook of the run (relative links). ``rows``/``cells`` reuse what the caller computed;
    ``headline`` (:func:`osad_lib.headline.headline_table`), when given, is saved as
    ``tables/headline`` and opens both reports.

    Returns ``{"markdown", "html", "tables", "figures"}`` (the last two: files written here).
    """
    import matplotlib.pyplot as plt

    rows = rows if rows is not None else read_all(profile, output)
    if cells is None:
        cells = cell_table(rows, cover if cover is not None else coverage(profile, data_root), tolerance)
    card = summarize(cells, tolerance)
    tables = report_tables(rows, cells, tolerance)
    tables_dir, figures_dir, runs = (paths.tables_dir(profile, output), paths.figures_dir(profile, output),
                                     paths.runs_dir(profile, output))
    if headline is not None:
        tables = {"headline": headline, **tables}
    written_tables = [p for name, df in tables.items() for p in viz.save_table(df, name, tables_dir)]
    written_figures = []
    for name, fig in (("report_deltas", delta_figure(cells, tolerance)), ("report_status", status_figure(card))):
        written_figures += viz.savefig(fig, name, figures_dir)
        plt.close(fig)
    artifacts = _artifacts(profile, output)
    md_path, html_path = runs / "REPORT.md", runs / "REPORT.html"
    atomic_write_text(md_path, _markdown(profile, card, tables, artifacts, runs, tolerance))
    atomic_write_text(html_path, _html(profile, card, tables, artifacts, runs, tolerance))
    return {"markdown": md_path, "html": html_path, "tables": written_tables, "figures": written_figures}


def _intro(profile: str, tolerance: float) -> str:
    prof = get_profile(profile)
    return (f"Profile `{profile}`: {prof.description}. Absolute tolerance: {tolerance:g} (values on the [0, 1] "
            "scale). Paper numbers come from `osad_lib.paper`; measured numbers from the results stores under "
            "`results/`.")


def _markdown(profile: str, card: pd.DataFrame, tables: Mapping[str, pd.DataFrame],
              artifacts: Mapping[str, Mapping[str, list[Path]]], runs: Path, tolerance: float) -> str:
    figures = artifacts["figures"]
    out = [f"# Reproduction report — profile `{profile}`", ""]
    if "headline" in tables:
        out += ["## Headline", "", _HEADLINE_CAPTION + f" ([csv]({_relative(runs / 'tables' / 'headline.csv', runs)}))",
                "", _md_table(tables["headline"]), ""]
    out += [_intro(profile, tolerance), "", f"**{_summary_line(card)}**", "", "## Definitions", ""]
    out += [f"- **{term}**: {text}" for term, text in DEFINITIONS]
    for name, title, caption in _SECTIONS:
        out += ["", f"## {title}", "", caption + f" ([csv]({_relative(runs / 'tables' / (name + '.csv'), runs)}))", "",
                _md_table(tables[name])]
        if name == "report_scorecard":
            for fig, text in (("report_status", "Share of each table's cells by outcome."),
                              ("report_deltas", "Measured − paper per cell; grey band: the tolerance.")):
                if fig in figures:
                    png = next(p for p in figures[fig] if p.suffix == ".png")
                    out += ["", f"![{text}]({_relative(png, runs)})", "", f"_{text}_"]
    out += ["", "## Files of this run", ""]
    for kind, groups in artifacts.items():
        out += [f"### {kind.capitalize()}", ""]
        out += [f"- {stem}: " + " · ".join(f"[{p.suffix[1:]}]({_relative(p, runs)})" for p in files)
                for stem, files in groups.items()] or ["_none_"]
        out.append("")
    return "\n".join(out)


_CSS = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
        "table.data{border-collapse:collapse;font-size:12px;margin:0.5em 0}"
        "table.data th,table.data td{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}"
        "table.data th{background:#f0f0f0}img{max-width:100%}code{background:#f4f4f4}")


def _html(profile: str, card: pd.DataFrame, tables: Mapping[str, pd.DataFrame],
          artifacts: Mapping[str, Mapping[str, list[Path]]], runs: Path, tolerance: float) -> str:
    esc = html.escape
    figures = artifacts["figures"]
    intro = esc(_intro(profile, tolerance)).replace("`", "")
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>Reproduction report — {esc(profile)}</title><style>{_CSS}</style></head><body>",
           f"<h1>Reproduction report — profile <code>{esc(profile)}</code></h1>"]
    if "headline" in tables:
        out += ["<h2>Headline</h2>", f'<p>{esc(_HEADLINE_CAPTION)} (<a href="tables/headline.csv">csv</a>)</p>',
                _html_table(tables["headline"])]
    out += [f"<p>{intro}</p>",
            f"<p><strong>{esc(_summary_line(card))}</strong></p>", "<h2>Definitions</h2><ul>"]
    out += [f"<li><strong>{esc(term)}</strong>: {esc(text)}</li>" for term, text in DEFINITIONS]
    out.append("</ul>")
    for name, title, caption in _SECTIONS:
        link = esc(_relative(runs / "tables" / f"{name}.csv", runs))
        out += [f"<h2>{esc(title)}</h2>", f'<p>{esc(caption)} (<a href="{link}">csv</a>)</p>', _html_table(tables[name])]
        if name == "report_scorecard":
            for fig, text in (("report_status", "Share of each table's cells by outcome."),
                              ("report_deltas", "Measured − paper per cell; grey band: the tolerance.")):
                if fig in figures:
                    png = esc(_relative(next(p for p in figures[fig] if p.suffix == ".png"), runs))
                    out.append(f'<figure><img src="{png}" alt="{esc(text)}"><figcaption>{esc(text)}</figcaption></figure>')
    out.append("<h2>Files of this run</h2>")
    for kind, groups in artifacts.items():
        out.append(f"<h3>{esc(kind.capitalize())}</h3><ul>")
        out += [f"<li>{esc(stem)}: " + " · ".join(f'<a href="{esc(_relative(p, runs))}">{esc(p.suffix[1:])}</a>'
                                                  for p in files) + "</li>" for stem, files in groups.items()]
        out.append("</ul>" if groups else "<li><em>none</em></li></ul>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


__all__ = [
    "Coverage", "DEFINITIONS", "STATUSES", "TOLERANCE", "canonical_rows", "cell_table", "cell_verdict", "coverage",
    "dataset_presence", "delta_figure", "measured_cells", "missing_cells",
    "outside_spread", "report_tables", "results_overview", "scorecard", "scorecard_display", "status_figure",
    "substitute_settings", "summarize", "table_status", "unmatched_rows", "version_label", "version_markers",
    "version_pairs", "write_report",
]
