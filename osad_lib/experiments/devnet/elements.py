"""The paper elements notebook ``01_devnet`` reproduces (:mod:`osad_lib.experiments.protocol`):
DevNet's Tables 2–4 and Figs. 4–5. Table 5 and Figs. 6–8 are studies of ``06_ablations``."""

from __future__ import annotations

from functools import partial

from osad_lib.data.registry import subset_info
from osad_lib.experiments import GridItem
from osad_lib.experiments.devnet.config import PAPER
from osad_lib.experiments.devnet.grids import grid
from osad_lib.experiments.devnet.run import run_one
from osad_lib.experiments.devnet.tables import fig4_curve, fig4_figure, fig5_overlays, paper_table
from osad_lib.experiments.protocol import PaperElement, elements_by_key, runs_of
from osad_lib.profiles import NotebookConfig


def localization_runs(cfg: NotebookConfig) -> list[GridItem]:
    """The runs that compute explanation maps: general-setting runs on data with masks (Table 2's,
    or the synthetic fallback of ``table4``)."""
    return [i for i in grid(cfg) if i.experiment.setting == "general"
            and (i.experiment.table == "table4" or subset_info(str(i.experiment.extra_key["name"])).has_masks)]


def fig4(cfg: NotebookConfig):
    """Fig. 4 drawn from the stored localization runs (:func:`fig4_curve`, :func:`fig4_figure`)."""
    return fig4_figure(fig4_curve(cfg))


ELEMENTS: dict[str, PaperElement] = elements_by_key(
    PaperElement(PAPER, "table2", "Table 2", "general setting: ten labelled anomalies drawn from all classes",
                 "With ten labelled anomalies DevNet beats unsupervised, semi-supervised and focal-loss detectors on "
                 "nine real image datasets.", runs_of(grid, "table2"), run_one, partial(paper_table, table="table2")),
    PaperElement(PAPER, "table3", "Table 3", "open-set (hard) setting: labelled anomalies of one seen class",
                 "Trained on anomalies of a single class, DevNet still detects the unseen classes better than the "
                 "other detectors.", runs_of(grid, "table3"), run_one, partial(paper_table, table="table3")),
    PaperElement(PAPER, "table4", "Table 4", "anomaly localization, pixel AUROC",
                 "The gradient explanation maps of DevNet's score localise the defects of MVTec AD.",
                 localization_runs, run_one, partial(paper_table, table="table4")),
    PaperElement(PAPER, "fig4", "Fig. 4", "localization vs detection",
                 "The anomalies DevNet detects are also well localised (F1 about 0.9 at pixel AUROC about 0.95).",
                 localization_runs, run_one, fig4_curve, fig4),
    PaperElement(PAPER, "fig5", "Fig. 5", "explanation maps",
                 "The explanation maps highlight the defective regions of the test anomalies.",
                 localization_runs, run_one, figure=fig5_overlays),
)

__all__ = ["ELEMENTS", "fig4", "localization_runs"]
