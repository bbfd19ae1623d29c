"""The paper elements notebook ``03_bgad`` reproduces (:mod:`osad_lib.experiments.protocol`):
BGAD's Tables 1–3 and Figs. 3–4. Tables 4–6 are studies of ``06_ablations``."""

from __future__ import annotations

from functools import partial

import pandas as pd

from osad_lib import experiments
from osad_lib.experiments.bgad.grids import grid
from osad_lib.experiments.bgad.run import run_one
from osad_lib.experiments.bgad.tables import (
    comparison, localization_maps, plot_epoch_curves, plot_localization, with_shared_rows,
)
from osad_lib.experiments.protocol import PaperElement, elements_by_key, runs_of
from osad_lib.profiles import NotebookConfig

PAPER = "bgad"


def profile_rows(cfg: NotebookConfig) -> pd.DataFrame:
    """The notebook's stored rows of this profile."""
    rows = cfg.store.read()
    return rows[rows["profile"] == cfg.profile.name]


def paper_comparison(cfg: NotebookConfig, table: str) -> pd.DataFrame:
    """``bgad_<table>`` beside the measured rows (:func:`comparison`), with the rows of the papers
    whose cells it reprints (:func:`with_shared_rows`)."""
    return comparison(with_shared_rows(cfg, profile_rows(cfg), table), table)


def fig3(cfg: NotebookConfig):
    """Fig. 3: test AUROC (and pixel AUROC) after each meta epoch, from the stored rows."""
    fig = plot_epoch_curves(profile_rows(cfg))
    fig.suptitle("BGAD: test AUROC after each meta epoch", y=1.04)
    return fig


def fig4(cfg: NotebookConfig):
    """Fig. 4: ground truth, BGAD's and BGAD-FAS's anomaly maps of the first dataset with masks."""
    fig = plot_localization(localization_maps(cfg, experiments.runnable(grid(cfg))[0]))
    fig.suptitle("BGAD anomaly maps: ground truth, BGAD, BGAD-FAS", y=1.02)
    return fig


ELEMENTS: dict[str, PaperElement] = elements_by_key(
    PaperElement(PAPER, "table1", "Table 1", "MVTec AD: image AUROC, pixel AUROC, PRO",
                 "Guided by an explicit boundary, BGAD and BGAD-FAS localise defects better than the unsupervised "
                 "flows and the supervised detectors.", runs_of(grid, "table1"), run_one,
                 partial(paper_comparison, table="table1")),
    PaperElement(PAPER, "table2", "Table 2", "BTAD: pixel AUROC and PRO",
                 "The same holds on BTAD.", runs_of(grid, "table2"), run_one,
                 partial(paper_comparison, table="table2")),
    PaperElement(PAPER, "table3", "Table 3", "one labelled anomaly: image AUROC on AITEX, ELPV, BrainMRI, HeadCT",
                 "With a single labelled anomaly BGAD-FAS beats DevNet, DRA and MLEP on four datasets.",
                 runs_of(grid, "table3"), run_one, partial(paper_comparison, table="table3")),
    PaperElement(PAPER, "fig3", "Fig. 3", "AUROC vs. epoch",
                 "With FAS the pixel AUROC converges quickly: about one meta epoch after the boundary-guided loss is "
                 "added, the AUROC has risen by a large margin (cable, MVTec AD).",
                 grid, run_one, figure=fig3),
    PaperElement(PAPER, "fig4", "Fig. 4", "localization",
                 "Guided by the explicit boundary, BGAD-FAS draws more accurate anomaly maps than the unsupervised "
                 "flow model (MSFD).",
                 runs_of(grid, "table1", "table2"), run_one, figure=fig4),
)

__all__ = ["ELEMENTS", "PAPER", "fig3", "fig4", "paper_comparison", "profile_rows"]
