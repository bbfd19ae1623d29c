"""The paper elements notebook ``04_anoonly`` reproduces (:mod:`osad_lib.experiments.protocol`):
AnoOnly's Tables 1, 3 and 4 (one grid, three metrics) and Figs. 4 and 10. Table 2 and Figs. 5–9
are studies of ``06_ablations``."""

from __future__ import annotations

from functools import partial

import pandas as pd

from osad_lib.experiments.anoonly.config import PAPER
from osad_lib.experiments.anoonly.figures import aupr_boxplot, score_tsne
from osad_lib.experiments.anoonly.grids import grid
from osad_lib.experiments.anoonly.run import run_one
from osad_lib.experiments.anoonly.tables import comparison
from osad_lib.experiments.protocol import Grid, PaperElement, elements_by_key, runs_of
from osad_lib.profiles import NotebookConfig


def seeded_rows(cfg: NotebookConfig) -> pd.DataFrame:
    """The notebook's stored rows of the profile's seeds."""
    rows = cfg.store.read()
    return rows[rows["seed"].isin(cfg.seeds)]


def paper_comparison(cfg: NotebookConfig, table_id: str) -> pd.DataFrame:
    """:func:`comparison` of the stored rows of the profile's seeds with ``table_id``."""
    return comparison(seeded_rows(cfg), table_id)


#: Tables 1, 3 and 4 read the same runs (``table="table1"``), each a metric of them.
MAIN_RUNS: Grid = runs_of(grid, "table1")

ELEMENTS: dict[str, PaperElement] = elements_by_key(
    PaperElement(PAPER, "table1", "Table 1", "AUROC with and without AnoOnly, labelled anomaly ratio 10 %",
                 "Dropping the loss on normal data improves Deep SAD, DevNet, FEAWAD and PReNet on almost every "
                 "dataset; Deep SAD gains up to 18.5 % overall AUROC.", MAIN_RUNS, run_one,
                 partial(paper_comparison, table_id="anoonly_table1")),
    PaperElement(PAPER, "table3", "Table 3", "AUCPR w.r.t. anomalies (App. C.1)",
                 "The precision on anomalies improves too, for Deep SAD by up to 24.8 % overall.", MAIN_RUNS, run_one,
                 partial(paper_comparison, table_id="anoonly_table3")),
    PaperElement(PAPER, "table4", "Table 4", "AUCPR w.r.t. normals (App. C.1)",
                 "Without a loss on normal data the precision on normals drops, modestly, a cost the paper "
                 "accepts for the gain on anomalies.", MAIN_RUNS, run_one,
                 partial(paper_comparison, table_id="anoonly_table4")),
    PaperElement(PAPER, "fig4", "Fig. 4", "AUCPR boxplot",
                 "Every head's AUCPR distribution over the datasets moves up with AnoOnly.", MAIN_RUNS, run_one,
                 figure=lambda cfg: aupr_boxplot(seeded_rows(cfg))),
    PaperElement(PAPER, "fig10", "Fig. 10", "anomaly scores and hidden features (t-SNE)",
                 "With AnoOnly the anomalies mixed among the normals are found, and the hidden features separate "
                 "the two with a clear gap.", lambda cfg: [], run_one, figure=score_tsne),
)

__all__ = ["ELEMENTS", "MAIN_RUNS", "paper_comparison", "seeded_rows"]
