"""What the notebooks plan, and why a paper cell has no measurement (:mod:`osad_lib.report`,
"Why a cell was not measured")."""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from osad_lib import experiments, paths
from osad_lib.data import registry, tabular
from osad_lib.profiles import configure
from osad_lib.report.rules import PLAN_KEYS, as_text, shots_key, version_markers
from osad_lib.validate import ConfigError


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


class PlanKeys:
    """The canonical keys (:data:`PLAN_KEYS`, markers removed) of a grid, the notebooks that
    plan each, and the papers, methods and variants it covers."""

    def __init__(self, frame: pd.DataFrame):
        self.notebooks: dict[tuple[str, ...], set[str]] = defaultdict(set)
        for r in frame.drop_duplicates(["notebook", *PLAN_KEYS]).itertuples(index=False):
            m = version_markers(as_text(r.variant), "", as_text(getattr(r, "mode", "")))
            key = (as_text(r.paper), as_text(r.dataset), as_text(r.setting), shots_key(r.n_shots), as_text(r.method),
                   m["variant"])
            self.notebooks[key].add(r.notebook)
        self.papers = {k[0] for k in self.notebooks}
        self.methods = {(k[0], k[4]) for k in self.notebooks}
        self.variants = {(k[0], k[4], k[5]) for k in self.notebooks}


class Explainer:
    """Why a paper cell has no measurement (:mod:`osad_lib.report`, "Why a cell was not measured"),
    for one set of result rows and one :class:`Coverage`."""

    def __init__(self, rows: pd.DataFrame, cover: Coverage):
        self.cover = cover
        self.here, self.full = PlanKeys(cover.planned), PlanKeys(cover.paper_planned)
        self.with_rows = set(rows.loc[rows["status"] == "ok", "notebook"])
        self.failed: dict[tuple[str, ...], str] = {}
        for r in rows[rows["status"] != "ok"].itertuples(index=False):
            m = version_markers(as_text(r.variant), "", as_text(r.mode))
            self.failed.setdefault((r.paper, r.dataset, as_text(r.setting), shots_key(r.n_shots), r.method,
                                    m["variant"]), str(r.status))
        self.presence: dict[tuple[str, str], str] = {}

    def absent(self, paper_id: str, dataset: str) -> str:
        if (paper_id, dataset) not in self.presence:
            self.presence[paper_id, dataset] = dataset_presence(paper_id, dataset, self.cover.data_root)
        return self.presence[paper_id, dataset]

    def reason(self, paper_id: str, cell: Any) -> str:
        """The first reason that applies to ``cell`` (a paper-table row with the key columns)."""
        key = (paper_id, cell.dataset, cell.setting, shots_key(cell.n_shots), cell.method, cell.variant)
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


__all__ = ["Coverage", "Explainer", "PlanKeys", "coverage", "dataset_presence"]
