"""Notebook ``01_devnet``: DevNet's main results (Tables 2, 3, 4; Figs. 4, 5) beside the paper.

The grid (``grid(cfg)``), per profile dataset and seed, each method of :data:`METHODS`:

* **Table 2** — general setting (§6.5): ten labelled anomalies drawn from all classes
  (the profile's largest shot count when it allows fewer, e.g. smoke);
* **Table 3** — open-set = hard setting (§6.6): labelled anomalies from one seen class, for
  every seen class the registry lists for the dataset (``hard_seen_classes``: Carpet, Metal nut,
  AITEX, Hyper-Kvasir, ELPV, Mastcam in the paper — 30 seen classes);
* **Table 4** — pixel AUROC (§6.7): every general-setting run on a dataset with masks also
  computes explanation maps (:mod:`osad_lib.explain`); Table 4 shows those rows. When no
  dataset of the profile has masks (demo: ELPV), general runs on ``synthetic/weave`` are added
  for localization.

Rows: ``paper="devnet"``, ``table`` ``table2`` / ``table3`` / ``table4``; hard rows name the seen
class in ``subset`` (``mono``, ``carpet/color``). Each row's ``deviations`` lists how the run's
settings differ from the official code (:func:`devnet_deviations`).

Methods are runners in :data:`METHODS` (name → ``(cfg, split, root, *, localize, artifact,
checkpoint) -> metrics``): DevNet and FLOS (:data:`osad_lib.experiments.devnet_settings.DEVNET_METHODS`), and the baselines of the
DevNet tables from :data:`osad_lib.experiments.baselines.RUNNERS` — Deep SVDD, Deep SAD, MINNS, KDAD
§6.2, and PatchCore (not in DevNet's tables; the unsupervised reference of AHL Table 4, whose
``table4`` reads its rows from any notebook). Baseline rows' ``deviations`` come from
:func:`osad_lib.experiments.baselines.baseline_deviations`. Unsupervised methods
(:data:`UNSUPERVISED`) run on the same split as the others (same test set, labelled anomalies
ignored) and their rows carry ``n_shots=0``, as the paper's tables list them.
:func:`register_method` adds further runners. ``METHOD_OVERRIDES
["devnet"][profile]["methods"]`` chooses the methods a profile runs.
Ablations (Table 5, Figs. 6–8) use :func:`devnet_config` with :data:`TABLE5_VARIANTS` or
``topk_ratio`` and :func:`run_devnet` on splits with other shot counts or contamination.

Modules: :mod:`.elements` (the paper elements, :data:`ELEMENTS`),
:mod:`.config`, :mod:`.grids`, :mod:`.run`, :mod:`.tables`; everything is re-exported here.
"""

from osad_lib.experiments.devnet_settings import DEVNET_METHODS, devnet_config  # DevNet's settings, re-exported
from osad_lib.experiments.devnet.config import (
    LOCALIZATION_FALLBACK, METHODS, N_OVERLAYS, NOTEBOOK, PAPER, PAPER_SHOTS, TABLE5_VARIANTS, UNSUPERVISED,
    config_deviations, config_table, devnet_deviations, grid_option, method_config, method_deviations, method_seeds,
    method_tables, row_shots, table_shots,
)
from osad_lib.experiments.devnet.grids import grid, grid_frame, make_dataset_split, table_runs
from osad_lib.experiments.devnet.run import (
    artifact_file, artifact_path, register_method, registry_name, run_devnet, run_one, trained_devnet,
)
from osad_lib.experiments.devnet.tables import (
    PAPER_TABLE_COLUMNS, fig4_curve, fig4_figure, fig5_overlays, methods_table, paper_table, row_note,
    score_explorer_inputs, score_frame, wilcoxon_table,
)
from osad_lib.experiments.devnet.elements import ELEMENTS

__all__ = [
    "ELEMENTS", "DEVNET_METHODS", "devnet_config",
    "LOCALIZATION_FALLBACK", "METHODS", "NOTEBOOK", "N_OVERLAYS", "PAPER", "PAPER_SHOTS", "PAPER_TABLE_COLUMNS",
    "TABLE5_VARIANTS", "UNSUPERVISED", "artifact_file", "artifact_path", "config_deviations", "config_table",
    "devnet_deviations", "fig4_curve", "fig4_figure", "fig5_overlays", "grid", "grid_frame", "grid_option",
    "make_dataset_split", "method_config", "method_deviations", "method_seeds", "method_tables", "methods_table",
    "paper_table", "register_method", "registry_name", "row_note", "row_shots", "run_devnet", "run_one",
    "score_explorer_inputs", "score_frame", "table_runs", "table_shots", "trained_devnet", "wilcoxon_table",
]
