"""The paper elements notebook ``02_dra`` reproduces (:mod:`osad_lib.experiments.protocol`):
DRA's Tables 1 and 2 and their appendix versions, Tables 7 and 8. Tables 3–4 and Fig. 3 are
studies of ``06_ablations``, Table 9 an element of ``07_cross_domain``."""

from __future__ import annotations

from functools import partial

from osad_lib import paper
from osad_lib.experiments import GridItem
from osad_lib.experiments.dra.config import grid_option
from osad_lib.experiments.dra.grids import grid
from osad_lib.experiments.dra.run import run_one
from osad_lib.experiments.dra.tables import comparison
from osad_lib.experiments.protocol import Grid, PaperElement, elements_by_key, runs_of
from osad_lib.profiles import NotebookConfig

PAPER = "dra"


def appendix_runs(table: str, main_table: str) -> Grid:
    """The grid of appendix ``table`` (7 or 8): the runs of ``main_table`` at the appendix shot
    count whose method the appendix table lists (:func:`~osad_lib.experiments.dra.comparison`)."""
    def items(cfg: NotebookConfig) -> list[GridItem]:
        methods = set(paper.load_table(f"{PAPER}_{table}")["method"])
        return [i for i in runs_of(grid, main_table)(cfg)
                if i.experiment.n_shots == grid_option(cfg, "appendix_n_shots") and i.experiment.method in methods]
    return items


ELEMENTS: dict[str, PaperElement] = elements_by_key(
    PaperElement(PAPER, "table1", "Table 1", "general setting, one and ten labelled anomalies",
                 "Learning seen, pseudo and latent residual abnormalities beats DevNet, SAOE and MLEP when the "
                 "few labelled anomalies come from all classes.", runs_of(grid, "table1"), run_one,
                 partial(comparison, table="table1")),
    PaperElement(PAPER, "table2", "Table 2", "hard setting: labelled anomalies of one seen class",
                 "DRA's advantage is largest when the test anomalies are of classes never seen in training.",
                 runs_of(grid, "table2"), run_one, partial(comparison, table="table2")),
    PaperElement(PAPER, "table7", "Table 7", "general setting against Deep SAD and MINNS (App. C.1)",
                 "DRA also beats the semi-supervised Deep SAD and MINNS with ten labelled anomalies.",
                 appendix_runs("table7", "table1"), run_one, partial(comparison, table="table7")),
    PaperElement(PAPER, "table8", "Table 8", "hard setting against Deep SAD and MINNS (App. C.1)",
                 "The same holds for unseen anomaly classes.",
                 appendix_runs("table8", "table2"), run_one, partial(comparison, table="table8")),
)

__all__ = ["ELEMENTS", "PAPER", "appendix_runs"]
