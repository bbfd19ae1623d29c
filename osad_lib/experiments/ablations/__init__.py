"""Notebook ``06_ablations``: every ablation and sensitivity study of the five papers.

Each study is a :class:`~osad_lib.experiments.ablations.base.Study` declared by the module of
its paper (``ablations/devnet.py``, ``dra.py``, ``bgad.py``, ``anoonly.py``, ``ahl.py``) from the
options the method modules already expose; :data:`STUDIES` collects them in paper order. The
notebook's ``studies`` parameter picks which run (keys such as ``devnet_table5``, or a paper
name for all of its studies); empty means the profile's selection,
``METHOD_OVERRIDES["ablations"][profile]["studies"]`` (every study when the profile names none).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from osad_lib.experiments import GridItem
from osad_lib.experiments.execution import run_items
from osad_lib.experiments.ablations import ahl, anoonly, bgad, devnet, dra
from osad_lib.experiments.ablations.base import NOTEBOOK, Study
from osad_lib.profiles import NotebookConfig
from osad_lib.validate import ConfigError, choose

#: Every study, in paper order (DevNet, DRA, BGAD, AnoOnly, AHL), keyed by ``Study.key``.
STUDIES: dict[str, Study] = {s.key: s for module in (devnet, dra, bgad, anoonly, ahl) for s in module.STUDIES}

__all__ = ["NOTEBOOK", "STUDIES", "Study", "grid", "overview", "run_one", "run_study", "select"]


def select(cfg: NotebookConfig, studies: str = "") -> list[Study]:
    """The studies named by ``studies`` (comma-separated study keys or paper names; empty: the
    profile's selection), in paper order. Unknown names raise a one-line :class:`ConfigError`
    with the closest match."""
    settings = cfg.profile.method("ablations")
    unknown = sorted(set(settings.parts) - set(STUDIES))
    if unknown:
        raise ConfigError(f"ablations settings: options of unknown stud(ies) {unknown}; 'options' holds settings per "
                          f"study key ({', '.join(STUDIES)})")
    names = [n.strip() for n in studies.split(",") if n.strip()] if studies else None
    if names is None:
        names = list(settings.grid.get("studies", ())) or list(STUDIES)
    papers = {s.paper for s in STUDIES.values()}
    wanted: set[str] = set()
    for name in names:
        if name in papers:
            wanted |= {k for k, s in STUDIES.items() if s.paper == name}
        else:
            wanted.add(choose("studies", name, [*STUDIES, *sorted(papers)]))
    return [s for k, s in STUDIES.items() if k in wanted]


def grid(cfg: NotebookConfig, studies: str = "") -> list[GridItem]:
    """The experiments of the selected studies (see :func:`select`), study by study."""
    return [item for study in select(cfg, studies) for item in study.grid(cfg)]


def study_of(item: GridItem) -> Study:
    """The study an experiment belongs to (by its ``paper`` and ``table`` fields)."""
    key = f"{item.experiment.paper}_{item.experiment.table}"
    if key not in STUDIES:
        raise ConfigError(f"experiment {item.experiment.describe()} belongs to no ablation study ({key!r})")
    return STUDIES[key]


def run_one(cfg: NotebookConfig, item: GridItem) -> dict[str, float]:
    """Train and evaluate one experiment of any study."""
    return study_of(item).run_one(cfg, item)


def run_study(cfg: NotebookConfig, study: Study) -> tuple[pd.DataFrame, Any, str]:
    """Run (or, with ``cfg.resume``, reuse) every experiment of ``study``, then build its table and
    figure. Returns ``(table, figure or None, why_not)``; ``why_not`` is the one-line reason when
    the study cannot run on this profile's data (then the table holds the paper's rows only)."""
    why_not = study.unavailable(cfg) if study.unavailable is not None else ""
    items = [] if why_not else study.grid(cfg)
    run_items(cfg, items, run_one, desc=study.key)
    figure = study.figure(cfg) if study.figure is not None and items else None
    return study.table(cfg), figure, why_not


def overview(cfg: NotebookConfig, studies: list[Study]) -> pd.DataFrame:
    """One row per selected study: key, paper element, title, experiments this profile runs (or
    why none), for the notebook's opening table."""
    rows = []
    for study in studies:
        why_not = study.unavailable(cfg) if study.unavailable is not None else ""
        rows.append({"study": study.key, "paper": study.paper_name, "element": study.reference, "title": study.title,
                     "experiments": 0 if why_not else len(study.grid(cfg)), "not runnable because": why_not})
    return pd.DataFrame(rows, columns=["study", "paper", "element", "title", "experiments", "not runnable because"])
