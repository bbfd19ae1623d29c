"""The :class:`Study` record every ablation of notebook ``06_ablations`` is described by.

A study is one table or figure of a paper's ablation / sensitivity analysis. It knows its grid
of experiments (rows of ``runs/<profile>/results/06_ablations.csv`` with ``paper`` and ``table``
naming the study, e.g. ``devnet`` / ``table5`` or ``devnet`` / ``fig6``), how to run one of them,
and how to show the result: a table beside the paper's numbers with deltas where the paper printed
numbers (:func:`beside_paper`), measured values only where the paper drew a figure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from osad_lib import paper as paper_tables
from osad_lib.data.registry import present_and_missing
from osad_lib.experiments import GridItem
from osad_lib.profiles import NotebookConfig

NOTEBOOK = "06_ablations"


@dataclass(frozen=True)
class Study:
    """One ablation or sensitivity study of one paper.

    ``paper`` / ``element`` identify it (``"devnet"``, ``"table5"`` or ``"fig6"``): every result
    row of the study carries them as its ``paper`` / ``table`` columns, which is how
    :func:`osad_lib.experiments.ablations.run_one` routes an experiment back to its study and how
    the report joins rows with the paper's table. ``reference`` is how the paper names it
    ("Table 5", "Fig. 6"); ``claim`` is the paper's conclusion from it in a sentence or two.

    ``grid(cfg)`` lists the experiments the profile runs on the data at hand
    (:func:`present_datasets`; a study may list its whole protocol when planning a profile that
    needs user data without any, as the AHL studies do);
    ``run_one(cfg, item)`` trains and evaluates one and returns ``{metric: value}``;
    ``table(cfg)`` builds the display table from the stored rows; ``figure(cfg)`` (optional)
    draws the study's figure or returns None when there is nothing to draw; ``unavailable(cfg)``
    (optional) says in one line why nothing can run on this profile's data ("" when it can).
    """

    paper: str
    element: str
    reference: str
    title: str
    claim: str
    grid: Callable[[NotebookConfig], list[GridItem]]
    run_one: Callable[[NotebookConfig, GridItem], dict[str, float]]
    table: Callable[[NotebookConfig], pd.DataFrame]
    figure: Callable[[NotebookConfig], Any] | None = None
    unavailable: Callable[[NotebookConfig], str] | None = None

    @property
    def key(self) -> str:
        """``<paper>_<element>``, e.g. ``devnet_table5``: the notebook's ``studies`` parameter value."""
        return f"{self.paper}_{self.element}"

    @property
    def heading(self) -> str:
        """Markdown heading and claim of the study's notebook section."""
        return f"### {self.paper_name} {self.reference} — {self.title}\n\n**Paper's claim.** {self.claim}"

    @property
    def paper_name(self) -> str:
        return {"devnet": "DevNet", "dra": "DRA", "bgad": "BGAD", "anoonly": "AnoOnly", "ahl": "AHL"}[self.paper]


def study_options(cfg: NotebookConfig, key: str) -> dict[str, Any]:
    """The profile's options of study ``key``: the grid of the ablations' part ``key`` (an empty
    dict when the profile sets none)."""
    return dict(cfg.profile.method("ablations").part(key).grid)


def study_seeds(cfg: NotebookConfig, opts: dict[str, Any]) -> tuple[int, ...]:
    """The profile's seeds, the first ``opts["max_seeds"]`` of them when that option is set."""
    return tuple(cfg.seeds[:opts["max_seeds"]]) if opts.get("max_seeds") else tuple(cfg.seeds)


def present_datasets(cfg: NotebookConfig, names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(registry names whose data are at hand — embedded or under ``data_root`` —, missing names):
    :func:`osad_lib.data.registry.present_and_missing`, the rule of every notebook."""
    return present_and_missing(names, cfg.data_root)


def study_rows(cfg: NotebookConfig, paper: str, element: str) -> pd.DataFrame:
    """The stored rows of one study (successful runs only)."""
    rows = cfg.store.read()
    return rows[(rows["paper"] == paper) & (rows["table"] == element) & (rows["status"] == "ok")].reset_index(drop=True)


def beside_paper(cfg: NotebookConfig, paper: str, element: str, keys: Sequence[str] = paper_tables.DEFAULT_KEYS,
                 measured: pd.DataFrame | None = None) -> pd.DataFrame:
    """The study's measured rows (mean ± std over seeds) joined with the paper's table
    ``<paper>_<element>`` on ``keys`` (:func:`osad_lib.paper.compare`), measured rows first so
    the reader sees what ran; paper rows not run here follow with empty measured columns."""
    rows = study_rows(cfg, paper, element) if measured is None else measured
    out = paper_tables.compare(rows, f"{paper}_{element}", keys=keys)
    ran = out["n_seeds"].fillna(0) > 0
    return pd.concat([out[ran], out[~ran]], ignore_index=True)


def measured_summary(rows: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Mean, std (ddof=1) and seed count of ``value`` per ``by`` group: the table of a study the
    paper only drew as a figure."""
    if rows.empty:
        return pd.DataFrame(columns=[*by, "measured_mean", "measured_std", "n_seeds"])
    grouped = rows.groupby(list(by), dropna=False)["value"]
    return grouped.agg(measured_mean="mean", measured_std="std", n_seeds="size").reset_index()
