"""Notebook ``07_cross_domain``: AHL Table 3 and DRA Table 9 (App. C.3) — transfer to new domains.

Protocol (AHL §4.4, following DRA App. C.3): DRA and AHL (DRA) are trained on one *source*
domain with its labelled anomalies, then "fine-tuned for 10 epochs using only normal samples"
of another, *target* domain, and tested on the target. AHL Table 3 prints the source × target
AUROC matrix of both (row = target, column = source; the diagonal, in grey, is the same-domain
result); DRA Table 9 prints DRA's off-diagonal cells beside KDAD trained on the target. The
papers use the five MVTec AD textures (:data:`PAPER_DOMAINS`); on the embedded data the
synthetic subsets play the domains (rows ``dataset="synthetic"``, no paper value).

What runs here (the papers do not say more; every choice is listed):

* **Source models**: the source's general split with ``n_shots`` labelled anomalies (10; the
  papers do not state the number), DRA trained by the 05_ahl notebook's functions with the
  02_dra settings of the profile (:func:`osad_lib.experiments.ahl.base_run`: checkpoint and
  feature bank shared with 05_ahl), and AHL (DRA) trained on that DRA's frozen features with the
  05_ahl settings and this notebook's ``ahl`` overrides (:func:`osad_lib.methods.ahl.ensembles.train_ahl`).
  One source model per source and seed serves every target.
* **Fine-tuning on target normals** (:func:`finetune_dra`, :func:`finetune_ahl`): "normal
  samples only" cannot train DRA's losses without anomalies, so the fine-tuning data are the
  target's training normals and pseudo anomalies made from them (DRA's own training pipeline,
  :class:`NormalOnlyData`: every batch slot a normal, each replaced by a pseudo anomaly with
  probability ``pseudo_prob``; the seen-abnormality head then sees normals only). The target's
  labelled anomalies are never used. DRA fine-tunes what it trains (the whole network, or its
  heads on a frozen stem in the CPU demo); AHL (DRA) keeps the source DRA's backbone frozen, as
  AHL always does, and fine-tunes its unified heads g on the target's features (normals and
  pseudo anomalies by AHL's generators) with DRA's loss. Both use the same schedule:
  ``finetune_epochs`` (10) × ``finetune_steps`` (DRA's steps per epoch by default), DRA's batch
  size and learning rate.
  The composite head's reference normals come from the target.
* **Test set** of a target: its general split's test set (the one its same-domain cell is
  tested on), so all cells of a row score the same images.

Rows: ``setting="cross_domain"``, ``subset`` = target, ``source`` = the source,
``n_shots`` empty (as in the paper tables; the source's shots are in the experiment key).
AHL (DRA) rows are ``paper="ahl"``, ``table="table3"``. DRA cells are stored twice from one
run: as AHL Table 3 rows (``paper="ahl"``, with the diagonal) and, off the diagonal, as DRA
Table 9 rows (``paper="dra"``), so that each paper's table finds them.

Modules: :mod:`.elements` (the paper elements, :data:`ELEMENTS`),
:mod:`.config`, :mod:`.grids`, :mod:`.run`, :mod:`.tables`; everything is re-exported here.
"""

from osad_lib.experiments.cross_domain.config import (
    DEFAULTS, METHOD_LABELS, METHODS, NOTEBOOK, PAPER_DOMAINS, PAPER_FINETUNE_EPOCHS, SETTING, TABLES, ahl_config,
    domain_label, finetune_config, grid_seeds, methods, option,
)
from osad_lib.experiments.cross_domain.grids import deviations, grid, pairs
from osad_lib.experiments.cross_domain.run import (
    domain_data, finetune_ahl, finetune_dra, model_inputs, normal_only_data, NormalOnlyData, run_one, source_ahl,
    source_run, target_bank, transfer,
)
from osad_lib.experiments.cross_domain.tables import comparison, display_table, heatmap_figure, matrices, verdict
from osad_lib.experiments.cross_domain.elements import ELEMENTS

__all__ = [
    "ELEMENTS", "DEFAULTS", "METHODS", "METHOD_LABELS", "NOTEBOOK", "NormalOnlyData", "PAPER_DOMAINS",
    "PAPER_FINETUNE_EPOCHS",
    "SETTING", "TABLES", "ahl_config", "comparison", "deviations", "display_table", "domain_data", "domain_label",
    "finetune_ahl", "finetune_config", "finetune_dra", "grid", "grid_seeds", "heatmap_figure", "matrices",
    "methods", "model_inputs", "normal_only_data", "option", "pairs", "run_one", "source_ahl",
    "source_run", "target_bank", "transfer", "verdict",
]
