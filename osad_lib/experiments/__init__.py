"""Experiment logic of each notebook: its grid of runs, how one run executes, its tables.

Each notebook ``notebooks/NN_name.ipynb`` has one module here (``NOTEBOOK_MODULES``). The
module defines ``grid(cfg) -> list[GridItem]`` — the experiments the notebook runs under the
configuration's profile — so that ``run_all.py --plan`` can print a notebook's grid, its size
and an estimated time without executing it. Notebooks iterate over the same grid, which keeps
the plan and the run identical.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from osad_lib.results import Experiment

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
