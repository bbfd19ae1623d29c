"""Notebook ``03_bgad``: BGAD's Tables 1–3 and Figures 3–4 beside the paper; options for Tables 4–6.

The grid (``paper`` profile): Table 1 = every MVTec AD category with unsupervised BGAD
(``setting="unsupervised"``, ``n_shots=0``) and BGAD-FAS with 5 anomalies; Table 2 = the same on
BTAD; Table 3 = BGAD-FAS with one anomaly on AITEX, ELPV, BrainMRI and HeadCT; all × seeds.
Smaller profiles replace the datasets (``METHOD_OVERRIDES["bgad"]``: ``table1_datasets``,
``table2_datasets``, ``table3_datasets``) and the schedule.

Protocol (the official code, ``docs/official_code/bgad.md``): labelled anomalies are drawn **stratified per
defect class** (⌊N/T⌋ per class, the remainder at random from the leftovers) and leave the test
set; each enters every pass 5× as itself and 5× as a fresh RandAugmented CutPaste sample pasted
into a random training normal (inside its foreground mask where one can be made). Datasets
without pixel masks (ELPV, BrainMRI, HeadCT) mark the whole labelled image anomalous — the
official code has no such datasets; this is our choice, recorded in the rows.

Reporting (``docs/official_code/bgad.md``): the official numbers are the **maximum over meta epochs of each
metric separately, on the test set**. Rows hold the honest last-epoch values under the canonical
metric names (``auroc``, ``pixel_auroc``, ``pro``), the faithful values as
``<metric>@max_over_epochs`` and every epoch's values as ``<metric>@epoch<k>`` (Fig. 3), all in
[0, 1]; the run's details (loss per epoch, training/evaluation time, peak memory) go to a JSON
file next to the results (:func:`run_files`). :func:`report_view` turns either report into
canonical rows whose ``report`` column says which (``last_epoch`` / ``max_over_epochs``).

Options the ablation notebook uses through :func:`bgad_config` and :func:`run_bgad`: β, τ
(Table 4), ``racp`` and ``focal_weighting`` (Table 6), and :func:`bgad_split` with
``train_classes``/``test_classes`` from :data:`HARD_CLASSES` (Table 5, :func:`table5_split`).

Modules: :mod:`.elements` (the paper elements, :data:`ELEMENTS`),
:mod:`.config`, :mod:`.protocol`, :mod:`.grids`, :mod:`.features`, :mod:`.run`,
:mod:`.tables`; everything is re-exported here.
"""

from osad_lib.experiments.bgad.config import (
    GRID_DEFAULTS, HARD_CLASSES, IMAGE_METRICS, METHODS, NOTEBOOK, OPTION_NOTES,
    PIXEL_METRICS, REPORTS, ablation_variant, available_backbone, bgad_config, config_deviations, grid_option,
    method_config,
)
from osad_lib.experiments.bgad.protocol import bgad_split, dataset_split, table5_split
from osad_lib.experiments.bgad.grids import grid, item_cost
from osad_lib.experiments.bgad.features import AnomalyEntries, dataset_features
from osad_lib.experiments.bgad.run import (
    bank_channels, epoch_metrics, evaluate_maps, run_bgad, run_details, run_files, run_one, save_maps,
)
from osad_lib.experiments.bgad.tables import (
    comparison, cost_table, display_table, epoch_curves, explorer_inputs, explorer_run, localization_maps,
    plot_epoch_curves, plot_localization, report_view, run_cost, with_shared_rows,
)
from osad_lib.experiments.bgad.elements import ELEMENTS, paper_comparison, profile_rows

__all__ = [
    "ELEMENTS", "paper_comparison", "profile_rows", "AnomalyEntries", "GRID_DEFAULTS", "HARD_CLASSES",
    "IMAGE_METRICS", "METHODS",
    "NOTEBOOK", "OPTION_NOTES", "PIXEL_METRICS", "REPORTS", "ablation_variant", "available_backbone",
    "bank_channels", "bgad_config", "bgad_split", "comparison", "config_deviations",
    "cost_table", "dataset_features", "dataset_split", "display_table", "epoch_curves", "epoch_metrics",
    "evaluate_maps", "explorer_inputs", "explorer_run", "grid", "grid_option", "item_cost", "localization_maps",
    "method_config", "plot_epoch_curves", "plot_localization", "report_view", "run_bgad", "run_cost", "run_details",
    "run_files", "run_one", "save_maps", "table5_split", "with_shared_rows",
]
