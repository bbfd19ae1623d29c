"""Notebook ``02_dra``: DRA's general (Tables 1/7) and hard (Tables 2/8) settings beside the paper.

The grid: for every dataset of the profile, the general setting with each shot count (one-shot drawn
from the ten-shot draw, DRA App. A.2) and the hard setting with every seen class of the dataset
(``registry.DATASETS[..].hard_seen_classes``, ``docs/official_code/dra.md`` "Data protocol"), for
each seed; DRA and, on the same splits, the comparisons of Tables 1/2 (DevNet, SAOE, MLEP) and, at
the appendix shot count (ten), those of Tables 7/8 (Deep SAD, MINNS from
:mod:`osad_lib.methods.baselines.baselines`); the unsupervised KDAD of Tables 1/2
(:data:`UNSUPERVISED_METHODS`, rows with ``n_shots=0``) once per split test set; where
``clean_runs`` says so, DRA also in ``clean`` mode (``variant="clean"``) beside the faithful default
(:func:`mode_comparison`). :func:`dra_vs_devnet` is the paired verdict on the paper's claim.
Rows: ``paper="dra"``, ``table="table1"`` (general) / ``"table2"`` (hard); hard-setting rows
name the seen class in ``subset`` (``mono``, ``carpet/color``) and per-dataset means are added
when the tables are built. Every row's ``deviations`` lists how the run's settings differ from
the official code's (backbone, image size, schedule, …) and the mode (``faithful``/``clean``).

Functions the ablation notebook reuses: :func:`dra_config` (profile settings + overrides),
:func:`make_dataset_split`, :func:`run_dra` (train + evaluate one configuration on one split →
metrics, optionally writing per-image head scores).

Modules: :mod:`.elements` (the paper elements, :data:`ELEMENTS`),
:mod:`.config`, :mod:`.grids`, :mod:`.run`, :mod:`.tables`; everything is re-exported here.
"""

from osad_lib.experiments.dra.config import (
    APPENDIX_METHODS, EXTRA_HARD_METHODS, METHODS, NOTEBOOK, TABLES, TRAINERS, UNSUPERVISED_METHODS,
    available_methods, config_deviations, devnet_comparison_deviations, dra_config, grid_option, other_mode,
    run_config, variant_label, with_subsample,
)
from osad_lib.experiments.dra.grids import grid, make_dataset_split, run_seeds, split_if_present, split_runs
from osad_lib.experiments.dra.run import (
    run_devnet_comparison, run_dra, run_one, scores_file, scoring_inputs, trained_method,
    training_stems_of,
)
from osad_lib.experiments.dra.tables import (
    GROUP_COLORS, SCORE_COLUMNS, comparison, display_table, dra_vs_devnet, explorer_frame, explorer_run,
    head_detection_table, head_score_histograms, mode_comparison, mode_differences, score_runs,
)
from osad_lib.experiments.dra.elements import ELEMENTS

__all__ = [
    "ELEMENTS", "APPENDIX_METHODS", "EXTRA_HARD_METHODS", "GROUP_COLORS", "METHODS", "NOTEBOOK", "SCORE_COLUMNS",
    "TABLES", "TRAINERS", "UNSUPERVISED_METHODS", "available_methods", "comparison", "config_deviations",
    "devnet_comparison_deviations", "display_table", "dra_config", "dra_vs_devnet", "explorer_frame",
    "explorer_run", "grid", "grid_option", "head_detection_table", "head_score_histograms", "make_dataset_split",
    "mode_comparison", "mode_differences", "other_mode", "run_config", "run_devnet_comparison", "run_dra",
    "run_one", "run_seeds", "score_runs", "scores_file", "scoring_inputs", "split_if_present",
    "split_runs", "trained_method", "training_stems_of", "variant_label", "with_subsample",
]
