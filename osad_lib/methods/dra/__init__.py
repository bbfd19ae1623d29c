"""DRA — disentangled representations of abnormalities (Ding, Pang & Shen, CVPR 2022).

A shared, fine-tuned backbone feeds four independent heads (paper §3, Fig. 2; code:
``docs/official_code/dra.md`` "Model", "Where the code departs from the paper"; the items cited
below are that section's):

* **holistic normality head** (Eq. 9): GAP → Linear(C, 256) → ReLU → Linear(256, 1) → |·|,
  trained to give *large* scores to normal images (target 1[label = 0]) and subtracted at
  inference (item 8: the code keeps the |·|);
* **seen-abnormality head** (Eq. 2–3) and **pseudo-abnormality head** (Eq. 5): top-K MIL
  heads (:class:`~osad_lib.components.heads.TopKMILHead`, K = 10 % of the cells) with separate
  weights;
* **composite latent-residual head** (Eq. 6–8): residual = mean of the ``n_ref`` reference
  feature maps − the query's feature map (the code's direction, item 2), then
  Conv3×3(C, C, pad 1) → BN → ReLU → top-K MIL scoring.

Every head scores each pyramid scale (:func:`~osad_lib.components.heads.image_pyramid`, two scales,
nearest resize) and its scores are averaged over scales (item 3). In training each head sees only
the samples the code routes to it (:data:`ROUTES`, :data:`TARGETS`); at evaluation all heads see all
samples. Labels: 0 normal, 1 seen (real) anomaly, 2 pseudo anomaly. The anomaly score is
−holistic + seen + pseudo + composite (``docs/official_code/dra.md`` "Evaluation"; paper §3.2
"Training and Inference"); the per-head deviation losses are summed.

Training and scoring (:class:`DRATrainingData`, :func:`train_dra`, :func:`score_dra`): batches of 32
normal + 16 seen-anomaly slots, each normal slot replaced by a pseudo anomaly (label 2) with
p = 0.5, RandomRotation(180) on every training image (``docs/official_code/dra.md``
"Training pipeline"), ``n_ref`` reference images per step and per test batch; which references
depends on ``mode`` (:class:`DRAConfig`). Randomness uses the global torch RNG (seeded by
:func:`~osad_lib.seeding.seed_everything`), so :func:`osad_lib.training.fit` checkpoints restore it
exactly.

Modules: :mod:`.config` (settings, heads, routes), :mod:`.networks` (heads, model, score, loss),
:mod:`.training_data` (batches, pseudo anomalies, references), :mod:`.training` (train and
score); everything is re-exported here. Equations → functions: ``README.md``.
"""

from osad_lib.methods.dra.config import (
    HEADS, LOSSES, MODES, NORMAL, PSEUDO, PSEUDO_SOURCES, ROUTES, SCORE_SIGNS, SEEN, TARGETS, VARIANT_HEADS,
    DRAConfig, validate_heads,
)
from osad_lib.methods.dra.networks import (
    DRA, anomaly_score, CompositeHead, dra_loss, head_targets, HolisticHead, latent_residual,
)
from osad_lib.methods.dra.training_data import (
    PSEUDO_GENERATORS, DRATrainingData, make_pseudo_anomalies, pseudo_stem_pool,
)
from osad_lib.methods.dra.training import (
    build_dra, cached_training_data, score_dra, to_device, train_config, train_dra, TrainedDRA,
)

__all__ = [
    "CompositeHead", "DRA", "DRAConfig", "DRATrainingData", "HEADS", "HolisticHead", "LOSSES", "MODES", "NORMAL",
    "PSEUDO", "PSEUDO_GENERATORS", "PSEUDO_SOURCES", "ROUTES", "SCORE_SIGNS", "SEEN", "TARGETS", "TrainedDRA",
    "VARIANT_HEADS", "anomaly_score", "build_dra", "cached_training_data", "dra_loss", "head_targets",
    "latent_residual", "make_pseudo_anomalies", "pseudo_stem_pool", "score_dra", "to_device", "train_config",
    "train_dra", "validate_heads",
]
