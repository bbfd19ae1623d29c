"""The one experiment protocol of notebooks 01–07: a paper element, its grid, its run, its table.

A notebook reproduces elements of a paper: tables and figures. A :class:`PaperElement` declares
one: which paper and element it is (``devnet`` / ``table2``), how the paper names it and what it
claims, the experiments whose rows it reads (``grid``), how one of them runs (``run_one``), and
the table (and figure) that puts the measured numbers beside the paper's. Notebooks 01–05 and 07
declare theirs in ``ELEMENTS`` of their experiments module; ``06_ablations`` declares every
ablation and sensitivity study so (:data:`osad_lib.experiments.ablations.STUDIES`).

Every grid runs through :func:`run_grid`: the one rule for data that are not at hand
(:func:`osad_lib.experiments.runnable`, one line naming what is skipped) and the one loop that
stores rows (:func:`osad_lib.experiments.execution.run_items`). Notebooks 01–05 and 07 run their
whole grid in one call, not element by element, because their elements share runs (DRA's Table 7
reads Table 1's ten-shot runs, DevNet's Table 4 the general runs on data with masks) and the
runs of one split are kept together in one worker (``execution``'s docstring); ``06`` runs
study by study (:func:`run_element`), since each study has its own runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from osad_lib import experiments
from osad_lib.experiments import GridItem
from osad_lib.experiments.execution import RunOne, run_items
from osad_lib.profiles import NotebookConfig

#: ``cfg -> grid items``: the experiments a paper element reads.
Grid = Callable[[NotebookConfig], list[GridItem]]

PAPER_NAMES = {"devnet": "DevNet", "dra": "DRA", "bgad": "BGAD", "anoonly": "AnoOnly", "ahl": "AHL"}


@dataclass(frozen=True)
class PaperElement:
    """One table or figure of a paper, as a notebook reproduces it.

    ``paper`` / ``element`` identify it (``"devnet"``, ``"table5"`` or ``"fig6"``); ``key`` joins
    them (``devnet_table5``), the id of the paper's table in :mod:`osad_lib.paper` where it has
    one. ``reference`` is how the paper names it ("Table 5", "Fig. 6"); ``claim`` is the paper's
    conclusion from it in a sentence or two.

    ``grid(cfg)`` lists the experiments whose rows the element reads, on the data the profile
    names (two elements may read the same runs); ``run_one(cfg, item)`` trains and evaluates one
    and returns ``{metric: value}``; ``table(cfg)`` (optional for a figure) builds the table of the
    stored rows beside the paper's; ``figure(cfg)`` (optional) draws the element or returns None
    when there is nothing to draw;
    ``unavailable(cfg)`` (optional) says in one line why nothing can run on this profile's data
    ("" when it can).
    """

    paper: str
    element: str
    reference: str
    title: str
    claim: str
    grid: Grid
    run_one: RunOne
    table: Callable[[NotebookConfig], pd.DataFrame] | None = None
    figure: Callable[[NotebookConfig], Any] | None = None
    unavailable: Callable[[NotebookConfig], str] | None = None

    @property
    def key(self) -> str:
        """``<paper>_<element>``, e.g. ``devnet_table5``."""
        return f"{self.paper}_{self.element}"

    @property
    def paper_name(self) -> str:
        return PAPER_NAMES[self.paper]

    @property
    def heading(self) -> str:
        """Markdown heading and claim of the element's notebook section."""
        return f"### {self.paper_name} {self.reference} — {self.title}\n\n**Paper's claim.** {self.claim}"

    def why_not(self, cfg: NotebookConfig) -> str:
        """One line saying why nothing of the element can run on this profile's data ("" when it can)."""
        return self.unavailable(cfg) if self.unavailable is not None else ""


def elements_by_key(*elements: PaperElement) -> dict[str, PaperElement]:
    """``elements`` keyed by :attr:`PaperElement.key`, in the order given; a key declared twice is
    a programming error."""
    keyed = {e.key: e for e in elements}
    if len(keyed) != len(elements):
        raise ValueError(f"paper elements declared twice: {sorted(e.key for e in elements)}")
    return keyed


def runs_of(grid: Grid, *tables: str) -> Grid:
    """An element's grid: the items of a notebook's ``grid`` whose ``table`` is one of ``tables``
    (the label its rows are stored under)."""
    return lambda cfg: [i for i in grid(cfg) if i.experiment.table in tables]


def run_grid(cfg: NotebookConfig, items: Sequence[GridItem], run_one: RunOne, desc: str) -> list[GridItem]:
    """Run (or, with ``cfg.resume``, reuse) the items whose data are at hand, after printing the
    one line that names the datasets skipped (and, when that leaves nothing, that only the papers'
    rows will show). Returns the items run."""
    ready, lines = experiments.ready_and_lines(cfg.notebook, items, cfg.data_root)
    for line in lines:
        print(line)
    run_items(cfg, ready, run_one, desc=desc)
    return ready


def run_element(cfg: NotebookConfig, element: PaperElement) -> tuple[pd.DataFrame, Any, str]:
    """Run (or reuse) every experiment of ``element``, then build its table and figure. Returns
    ``(table, figure or None, why_not)``; ``why_not`` is the one-line reason when the element
    cannot run on this profile's data (then the table holds the paper's rows only)."""
    why_not = element.why_not(cfg)
    items = [] if why_not else run_grid(cfg, element.grid(cfg), element.run_one, desc=element.key)
    figure = element.figure(cfg) if element.figure is not None and items else None
    table = element.table(cfg) if element.table is not None else pd.DataFrame()
    return table, figure, why_not


OVERVIEW_COLUMNS = ["element", "paper", "reference", "title", "experiments", "data missing", "not runnable because"]


def overview(cfg: NotebookConfig, elements: Iterable[PaperElement]) -> pd.DataFrame:
    """One row per paper element: its key, paper and reference, title, the experiments of this
    profile whose data are at hand, the datasets missing for the others, and why none can run
    (when an element says so): a notebook's opening table."""
    rows = []
    for element in elements:
        why_not = element.why_not(cfg)
        ready, missing = experiments.runnable([] if why_not else element.grid(cfg))
        rows.append({"element": element.key, "paper": element.paper_name, "reference": element.reference,
                     "title": element.title, "experiments": len(ready), "data missing": ", ".join(missing),
                     "not runnable because": why_not})
    return pd.DataFrame(rows, columns=OVERVIEW_COLUMNS)


__all__ = ["Grid", "OVERVIEW_COLUMNS", "PAPER_NAMES", "PaperElement", "elements_by_key", "overview", "run_element",
           "run_grid", "runs_of"]
