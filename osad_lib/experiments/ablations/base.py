"""What the ablation studies of notebook ``06_ablations`` share.

A study is one table or figure of a paper's ablation / sensitivity analysis, declared as a
:class:`~osad_lib.experiments.protocol.PaperElement` like every element of notebooks 01–07. It knows its grid
of experiments (rows of ``runs/<profile>/results/06_ablations.csv`` with ``paper`` and ``table``
naming the study, e.g. ``devnet`` / ``table5`` or ``devnet`` / ``fig6``), how to run one of them,
and how to show the result: a table beside the paper's numbers with deltas where the paper printed
numbers (:func:`beside_paper`), measured values only where the paper drew a figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from osad_lib import paper as paper_tables
from osad_lib.data.registry import present_and_missing
from osad_lib.profiles import NotebookConfig

NOTEBOOK = "06_ablations"


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
