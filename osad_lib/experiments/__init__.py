"""Experiment logic of each notebook: its grid of runs, how one run executes, its tables.

Each notebook ``notebooks/NN_name.ipynb`` has one module here (``NOTEBOOK_MODULES``). The
module defines ``grid(cfg) -> list[GridItem]`` — the experiments the notebook runs under the
configuration's profile — so that ``run_all.py --plan`` can print a notebook's grid, its size
and an estimated time without executing it. Notebooks iterate over the same grid, which keeps
the plan and the run identical.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pandas as pd

from osad_lib.data.protocols import Split
from osad_lib.results import Experiment
from osad_lib.validate import ConfigError

if TYPE_CHECKING:
    from osad_lib.profiles import NotebookConfig

NOTEBOOK_MODULES = {
    "00_datasets": "datasets",
    "01_devnet": "devnet",
    "02_dra": "dra",
    "03_bgad": "bgad",
    "04_anoonly": "anoonly",
    "05_ahl": "ahl",
    "06_ablations": "ablations",
    "07_cross_domain": "cross_domain",
    "08_report": "report",
}


@dataclass(frozen=True)
class GridItem:
    """One experiment of a notebook's grid with its cost, for planning.

    ``train_images``: images (or feature vectors / table rows) passed forward and backward in
    training, all pyramid scales counted; ``eval_images``: forward-only passes in evaluation.
    """

    experiment: Experiment
    train_images: int
    eval_images: int


def module_for(notebook: str) -> ModuleType | None:
    """The experiments module of ``notebook`` (None if that notebook has none yet)."""
    name = NOTEBOOK_MODULES.get(notebook)
    if name is None:
        return None
    try:
        return importlib.import_module(f"osad_lib.experiments.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"osad_lib.experiments.{name}":
            return None
        raise


def data_names(item: GridItem) -> tuple[str, ...]:
    """Registry names of the image datasets an experiment reads (its ``extra_key`` ``name``, or
    ``source`` and ``target``); none for tabular data."""
    key = item.experiment.extra_key
    return tuple(str(key[k]) for k in ("name", "source", "target") if key.get(k))


def runnable(items: Sequence[GridItem]) -> tuple[list[GridItem], list[str]]:
    """The one rule for data that are not present: (the experiments that can run, the registry
    names of the datasets that are missing, sorted). A grid gives an experiment on image data a
    ``manifest_id`` exactly when its split could be made, i.e. its datasets are embedded or under
    the data root; the others are skipped, never started."""
    at_hand = [bool(i.experiment.manifest_id) or not data_names(i) for i in items]
    present = {n for i, ok in zip(items, at_hand) if ok for n in data_names(i)}
    missing = {n for i, ok in zip(items, at_hand) if not ok for n in data_names(i)} - present
    return [i for i, ok in zip(items, at_hand) if ok], sorted(missing)


def skipped_line(notebook: str, missing: Sequence[str], data_root: str | os.PathLike | Path | None) -> str:
    """The one line naming the datasets a notebook skips (empty when none), as notebooks print it
    and ``run_all.py`` logs it."""
    if not missing:
        return ""
    where = f"under {data_root}" if data_root else "(no data root: pass run_all.py --data-root or set OSAD_DATA)"
    return (f"{notebook}: skipped, data not found {where}: {', '.join(missing)} "
            "(python -m osad_lib.data.prepare converts a download)")


def ready_and_lines(notebook: str, items: Sequence[GridItem], data_root: str | os.PathLike | Path | None
                     ) -> tuple[list[GridItem], list[str]]:
    """(the runnable items of ``items`` (:func:`runnable`), the lines a notebook prints and
    ``run_all.py`` logs about the rest: the datasets it skips, and, when that leaves nothing, that
    only the papers' rows will show)."""
    ready, missing = runnable(items)
    lines = [skipped_line(notebook, missing, data_root)] if missing else []
    return ready, lines + ([nothing_to_run_line(notebook)] if items and not ready else [])


def with_split_note(deviations: str, split: Split | None) -> str:
    """A row's ``deviations`` with its split's note on test images identical to training images
    (:attr:`osad_lib.data.protocols.Split.duplicate_note`; nothing without one)."""
    return "; ".join(p for p in (deviations, split.duplicate_note if split is not None else "") if p)


def note_figure(text: str):
    """A small figure that only says ``text``: what a notebook shows in place of a plot of runs
    that did not happen (their data are missing)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 1))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    return fig


def grid_of(notebook: str, cfg: NotebookConfig, parameters: Mapping[str, object] | None = None
            ) -> tuple[list[GridItem], list[GridItem], list[str]] | None:
    """(the notebook's grid under ``cfg``, its runnable items (:func:`runnable`), the lines
    naming the data it skips and, when that leaves nothing, saying so); None for a notebook
    without an experiments module. Of ``parameters`` (the notebook's, e.g. ``-p`` of run_all.py),
    those its ``grid`` takes shape it (06: ``studies``)."""
    module = module_for(notebook)
    if module is None:
        return None
    shaping = inspect.signature(module.grid).parameters
    try:
        items = module.grid(cfg, **{k: v for k, v in (parameters or {}).items() if k in shaping})
    except ConfigError as exc:
        raise ConfigError(f"{notebook}: {exc}") from None
    return items, *ready_and_lines(notebook, items, cfg.data_root)


#: The columns of :func:`plan_rows`.
PLAN_COLUMNS = ("notebook", "paper", "table", "dataset", "subset", "setting", "n_shots", "method", "variant",
                "source", "mode", "seed", "train_images", "eval_images", "missing")


def plan_rows(notebook: str, items: Sequence[GridItem], ready: Sequence[GridItem]) -> pd.DataFrame:
    """One row per experiment of a notebook's grid: what it measures, its image counts, and
    ``missing`` (True when its data are not present and it is skipped when run)."""
    ready_ids = {id(i) for i in ready}
    return pd.DataFrame([
        {"notebook": notebook, "paper": e.paper, "table": e.table, "dataset": e.dataset, "subset": e.subset,
         "setting": e.setting, "n_shots": e.n_shots, "method": e.method, "variant": e.variant, "source": e.source,
         "mode": e.mode, "seed": e.seed,
         "train_images": item.train_images, "eval_images": item.eval_images, "missing": id(item) not in ready_ids}
        for item in items for e in [item.experiment]])


def plan_table(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Several notebooks' :func:`plan_rows` as one table (columns in order of appearance; an
    all-empty column of one notebook, e.g. no shots, does not decide the dtypes); an empty table
    with the plan's columns when no notebook lists anything."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=list(PLAN_COLUMNS))
    columns = list(dict.fromkeys(c for f in frames for c in f.columns))
    return pd.concat([f.dropna(axis=1, how="all") for f in frames], ignore_index=True).reindex(columns=columns)


def nothing_to_run_line(notebook: str) -> str:
    """What a notebook whose every experiment was skipped says before showing the papers' rows only."""
    return f"{notebook}: nothing to run on the data at hand; its tables show the papers' rows only"
