"""AnoOnly (Zhou et al.): four semi-supervised heads on embeddings, and the one loop that trains them.

AnoOnly (Zhou et al., §4.3, appendix B) trains anomaly-detection *heads* on frozen ADBench
embeddings: Deep SAD, DevNet, FEAWAD and PReNet, each with and without AnoOnly. AnoOnly drops
the normal loss (:mod:`osad_lib.methods.anoonly.losses`) and puts a batch normalisation before the final
layer where the head has none (§3.3, Fig. 3). Where BN goes, per head (the official code's
layout, ``docs/official_code/anoonly.md``):

=========  ====================================================  ===============================
head       network                                               AnoOnly BN
=========  ====================================================  ===============================
deepsad    x→100→20 (Linear no bias, BN(eps 1e-4), LeakyReLU)     none added: BN is already in
           → Linear 20→10 (no bias)                               every hidden block
devnet     Dense 20 (ReLU, L2 0.01) → Dense 1                     after the hidden layer, before
                                                                 the scoring layer
feawad     AE d→d→128→64→128→d; scorer [r/‖r‖, code, ‖r‖] →       before the scoring layer (the
           256 → ⊕‖r‖ → 32 → ⊕‖r‖ → Dense 1                        code adds it to the base too:
                                                                 ``base_bn=True``)
prenet     shared Linear d→20 + ReLU per side; Linear 40→1        after the ReLU of the shared
           on the concatenated pair                              feature layer
=========  ====================================================  ===============================

Defaults are the paper's method (appendix B); where the official code does otherwise, its
behaviour is an option of :class:`SSADConfig` (:data:`CODE_BEHAVIOUR` lists the code's values):
DevNet's loss (``loss_form``), PReNet's 50 epochs (paper: 30) and anomaly pairs
that may repeat an anomaly (paper: "two different abnormal instances"), FEAWAD's BN in the base
head and its repeated batch, Deep SAD's effective learning rate 1e-4 (paper: 1e-3) and its BN
without affine parameters (paper Table 2: the affine BN is Deep SAD's default). Where the paper is
silent the code's behaviour is the default: PReNet's cosine learning rate (over the run's epochs)
and its scoring against fresh references per test row, Deep SAD without pre-training and with its
centre from the untrained network in eval mode (``pretrain_epochs``, ``center`` are options), the
Keras numbers of the heads from Keras code (DevNet, FEAWAD; ``keras=True``: Glorot
initialisation, RMSprop/Adam with ρ = 0.9 / ε = 1e-7, BN momentum 0.99 and ε = 1e-3, and the
weights of the epoch with the lowest *training* loss, the code's ModelCheckpoint). The PyTorch
heads (Deep SAD, PReNet) keep PyTorch's defaults and the last epoch.

One default departs from the paper's text because the text does not define a detector
(:data:`DEFAULT_NOT_PAPER`, named in every row's ``deviations``): FEAWAD's Eq. 20/21 push
anomalies to ``|s| ≥ 5`` while the score is ``s`` itself, so without the normal term (AnoOnly)
the sign an anomaly lands on is arbitrary and the ranking can invert; the default is the
one-sided ``max(0, 5 − s)`` of the code (and of FEAWAD's own deviation loss), ``loss_form="paper"``
the text.

The ablations of the paper are options of :class:`SSADConfig`: ``norm`` (Table 2: ``none``,
``ln``, ``bn_no_affine`` = BN*, ``bn``, ``bn_dagger`` = no BN + the explicit L_BN of Eq. (5)),
``normal_weight`` (λ_n, Fig. 7), ``batch_size`` (Fig. 9); the data options (γ_la, γ_n, label
noise) live in :func:`osad_lib.data.tabular.adbench_split`.

Modules: :mod:`.config` (settings), :mod:`.networks`, :mod:`.training` (the loop, each head's
training), :mod:`.losses`; everything is re-exported here. Equations → functions: ``README.md``.
"""

from osad_lib.methods.anoonly.config import (
    CENTERS, CODE_BEHAVIOUR, DEFAULT_NOT_PAPER, HEAD_DEFAULTS, HEADS, NORMS, SCORE_REFS, default_norm, SSADConfig,
)
from osad_lib.methods.anoonly.networks import DeepSADNet, DevNetNet, FEAWADNet, keras_dense, Norm, PReNetNet
from osad_lib.methods.anoonly.training import deepsad_center, prenet_pairs, run_stage, Stage, train_head, TrainedHead
from osad_lib.methods.anoonly.losses import (
    LOSS_FORMS, bn_cluster_loss, deepsad_loss, devnet_loss, feawad_loss, image_deviation_loss_anomaly_only,
    prenet_loss,
)

__all__ = [
    "CENTERS", "CODE_BEHAVIOUR", "DEFAULT_NOT_PAPER", "DeepSADNet", "DevNetNet", "FEAWADNet", "HEADS",
    "HEAD_DEFAULTS", "LOSS_FORMS", "NORMS", "Norm", "PReNetNet", "SCORE_REFS", "SSADConfig", "Stage", "TrainedHead",
    "bn_cluster_loss", "deepsad_center", "deepsad_loss", "default_norm", "devnet_loss", "feawad_loss",
    "image_deviation_loss_anomaly_only", "keras_dense", "prenet_loss", "prenet_pairs", "run_stage", "train_head",
]
