"""Notebook ``05_ahl``: AHL (DevNet) and AHL (DRA) beside their base models, paired (Tables 1/2/4/7/8).

For every dataset, setting (general with each shot count; hard with every seen class), seed and
base model (DevNet, DRA) the grid holds two kinds of rows on the same split:

* the **base model** (``method="devnet"|"dra"``, ``variant="ahl_base"``): trained with the
  base notebooks' functions and settings (:func:`osad_lib.experiments.devnet.devnet_config`,
  :func:`osad_lib.experiments.dra.dra_config`), then scored by its own heads on its frozen
  features — the features AHL trains on;
* **AHL** (``method="ahl_devnet"|"ahl_dra"``): the unified model trained by
  :func:`osad_lib.methods.ahl.ensembles.train_ahl` on the cached :class:`~osad_lib.components.features.FeatureBank`
  of that base model; further variants (Table 5/10, Fig. 3/4 options) are listed in the
  profile's ``variants``.

Both rows score the same test features, so ``AHL − base`` per seed is a paired difference
(:func:`paired_differences`). A base model is trained once per split and base (checkpoint under
``checkpoints/05_ahl``) and its features are extracted once (``cache_dir()/features``); the
base row and every AHL row of that split reuse them. The DRA base is scored with its fixed
reference normals (DRA's clean-mode evaluation) so that base and AHL see the same references.

Rows: ``paper="ahl"``, ``table="table1"`` (general) / ``"table2"`` (hard, ``subset`` = seen
class). Tables 7/8 are the per-subset versions; Table 4 sets AHL (DRA) beside PatchCore, KDAD
and FS-DRA, whose values come from other notebooks' stores when present and are otherwise
shown from the paper only.

Modules: :mod:`.elements` (the paper elements, :data:`ELEMENTS`),
:mod:`.config`, :mod:`.grids`, :mod:`.bases`, :mod:`.run`, :mod:`.tables`; everything is
re-exported here.
"""

from osad_lib.experiments.ahl.config import (
    BASE_VARIANT, NOTEBOOK, PAPER, PAPER_VARIANTS, TABLES, ahl_config, base_config, deviations,
    grid_option, variant_options,
)
from osad_lib.experiments.ahl.grids import grid, make_dataset_split, split_item
from osad_lib.experiments.ahl.bases import base_run, BaseRun, draem_textures
from osad_lib.experiments.ahl.run import explorer_frame, explorer_run, history_file, run_one, scores_file
from osad_lib.experiments.ahl.tables import (
    adaptation_table, comparison, display_table, paired_differences, table4, weight_histories, weights_figure,
)
from osad_lib.experiments.ahl.elements import ELEMENTS

__all__ = [
    "ELEMENTS", "BASE_VARIANT", "BaseRun", "NOTEBOOK", "PAPER", "PAPER_VARIANTS", "TABLES", "adaptation_table",
    "ahl_config", "base_config", "base_run", "comparison", "deviations", "display_table", "draem_textures",
    "explorer_frame", "explorer_run", "grid", "grid_option", "history_file", "make_dataset_split",
    "paired_differences", "run_one", "scores_file", "split_item", "table4", "variant_options",
    "weight_histories", "weights_figure",
]
