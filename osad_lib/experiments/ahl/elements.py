"""The paper elements notebook ``05_ahl`` reproduces (:mod:`osad_lib.experiments.protocol`):
AHL's Tables 1, 2 and 4 and their appendix versions, Tables 7 and 8. Table 3 is an element of
``07_cross_domain``; Tables 5, 9, 10 and Figs. 3–4 are studies of ``06_ablations``."""

from __future__ import annotations

from functools import partial

from osad_lib.experiments import GridItem
from osad_lib.experiments.ahl.config import PAPER
from osad_lib.experiments.ahl.grids import grid
from osad_lib.experiments.ahl.run import run_one
from osad_lib.experiments.ahl.tables import comparison, table4
from osad_lib.experiments.protocol import PaperElement, elements_by_key, runs_of
from osad_lib.profiles import NotebookConfig


def table4_runs(cfg: NotebookConfig) -> list[GridItem]:
    """The runs of AHL (DRA) that Table 4 reads: general setting, ten labelled anomalies (the
    unsupervised and fully supervised columns come from other notebooks' rows)."""
    return [i for i in runs_of(grid, "table1")(cfg) if i.experiment.method == "ahl_dra" and i.experiment.n_shots == 10]


ELEMENTS: dict[str, PaperElement] = elements_by_key(
    PaperElement(PAPER, "table1", "Table 1", "general setting, ten and one labelled anomalies",
                 "Learning from simulated heterogeneous anomaly distributions improves both base detectors, "
                 "DevNet and DRA, on nine datasets.", runs_of(grid, "table1"), run_one,
                 partial(comparison, table="table1")),
    PaperElement(PAPER, "table2", "Table 2", "hard setting: labelled anomalies of one seen class",
                 "The gains hold in the hard setting, where the test anomalies are mostly of unseen classes.",
                 runs_of(grid, "table2"), run_one, partial(comparison, table="table2")),
    PaperElement(PAPER, "table4", "Table 4", "against unsupervised KDAD and PatchCore and fully supervised FS-DRA",
                 "AHL (DRA) clearly beats the unsupervised detectors and comes close to a detector trained on "
                 "every anomaly class.", table4_runs, run_one, table4),
    PaperElement(PAPER, "table7", "Table 7", "general setting with MVTec AD per category (App. C.1)",
                 "The gains of Table 1 hold per MVTec AD category.", runs_of(grid, "table1"), run_one,
                 partial(comparison, table="table7")),
    PaperElement(PAPER, "table8", "Table 8", "hard setting per seen class (App. C.2)",
                 "The gains of Table 2 hold per seen class.", runs_of(grid, "table2"), run_one,
                 partial(comparison, table="table8")),
)

__all__ = ["ELEMENTS", "table4_runs"]
