"""The settings of AnoOnly's four heads (:class:`SSADConfig`): the paper's defaults, the official
code's behaviour as options (:data:`CODE_BEHAVIOUR`) and the ablations' options."""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields, replace
from typing import Any


from osad_lib.methods.anoonly.losses import (
    LOSS_FORMS,
)
from osad_lib.validate import ConfigError, choose



HEADS = ("deepsad", "devnet", "feawad", "prenet")
#: Normalisation variants (AnoOnly Table 2); ``auto`` = the head's own choice (module docstring).
NORMS = ("auto", "none", "ln", "bn_no_affine", "bn", "bn_dagger")

#: The paper's settings per head (appendix B); where the paper is silent, the official code's.
HEAD_DEFAULTS: dict[str, dict[str, Any]] = {
    # Adam 1e-3 (paper B.1); the code's MultiStepLR(milestones=[0]) makes it 1e-4 from step 1
    # (CODE_BEHAVIOUR). No AE pre-training (code; the paper does not mention one).
    "deepsad": dict(epochs=50, steps_per_epoch=None, batch_size=128, lr=1e-3, weight_decay=1e-6,
                    optimizer="adam", select_best_loss=False, pretrain_epochs=0),
    # RMSprop 2e-4, 50 epochs × 20 batches of 64 (32 unlabelled + 32 labelled), L2 0.01 on the hidden layer.
    "devnet": dict(loss_form="paper", epochs=50, steps_per_epoch=20, batch_size=64, lr=2e-4, weight_decay=0.0,
                   optimizer="rmsprop", select_best_loss=True, l2=0.01),
    # Adam 1e-4, 30 epochs × 20 batches of 512 (half labelled); AE: 100 epochs × 20 batches of 512
    # unlabelled; the one-sided loss (DEFAULT_NOT_PAPER).
    "feawad": dict(loss_form="code", epochs=30, steps_per_epoch=20, batch_size=512, lr=1e-4, weight_decay=0.0,
                   optimizer="adam", select_best_loss=True, pretrain_epochs=100),
    # RMSprop 1e-3, wd 1e-2, 30 epochs (paper B.4; code: 50) × 20 batches of 512 pairs, cosine LR
    # over the epochs (code; the paper names no schedule).
    "prenet": dict(epochs=30, steps_per_epoch=20, batch_size=512, lr=1e-3, weight_decay=1e-2,
                   optimizer="rmsprop", select_best_loss=False),
}

#: What the official code does where the paper's method is the default: SSADConfig overrides per
#: head (``docs/official_code/anoonly.md``). Deep SAD: learning rate 1e-4 from the first step
#: (MultiStepLR with a milestone at 0) and BN without affine parameters; DevNet: |5 − s| and, under
#: AnoOnly, the linear 5 − s; FEAWAD: max(0, 5 − s), BN in the base head, one batch repeated;
#: PReNet: 50 epochs, anomaly–anomaly pairs that may pair an anomaly with itself.
CODE_BEHAVIOUR: dict[str, dict[str, Any]] = {
    "deepsad": {"lr": 1e-4, "norm": "bn_no_affine"},
    "devnet": {"loss_form": "code"},
    "feawad": {"base_bn": True, "fixed_batches": True},
    "prenet": {"epochs": 50, "distinct_anomaly_pairs": False},
}
#: (head, field) → (the paper text's value, why the default differs): defaults that depart from
#: the paper's text (module docstring); :func:`osad_lib.experiments.anoonly.paper_deviations`
#: names them in every row.
DEFAULT_NOT_PAPER: dict[tuple[str, str], tuple[Any, str]] = {
    ("feawad", "loss_form"): ("paper", "Eq. 20/21's max(0, 5 − |s|) leaves an anomaly's sign free while the score "
                                      "is s, so the code's one-sided max(0, 5 − s)"),
}
#: PReNet scoring references: fresh per test row (code) or one set shared by every row.
SCORE_REFS = ("per_row", "shared")
#: Deep SAD centre c: the network's mean output over the training rows in eval mode before
#: training (code; BN uses its running statistics, initial or from pre-training) or with the
#: batch statistics of the training rows (as BN normalises during training).
CENTERS = ("eval", "batch")


@dataclass(frozen=True)
class SSADConfig:
    """One head's settings; ``None`` fields take :data:`HEAD_DEFAULTS` (see :meth:`resolved`).

    Defaults are the paper's method; :data:`CODE_BEHAVIOUR` names the official code's values.
    ``anomaly_only``: AnoOnly on/off. ``norm``: see :data:`NORMS` (``auto``: Deep SAD's affine
    BN, the paper's Table 2 default; AnoOnly's BN for the other heads). ``base_bn``: give the base
    head (``anomaly_only=False``) AnoOnly's BN too — FEAWAD's official code does this
    unconditionally; the paper adds BN only with AnoOnly (default). ``normal_weight``: λ_n.
    ``loss_form``: ``paper`` (Eqs. 18–21: DevNet's hinge, FEAWAD's max(0, a − |s|)) | ``code``;
    default per head (:data:`HEAD_DEFAULTS`: DevNet ``paper``, FEAWAD ``code``, see
    :data:`DEFAULT_NOT_PAPER`).
    ``keras``: Keras optimiser/BN/initialiser numbers for DevNet and FEAWAD. ``fixed_batches``:
    FEAWAD's generator quirk — the code re-seeds its batch generator on every call, so every
    batch is the same (default off: the paper resamples batches). ``balanced``: DevNet/FEAWAD
    half-labelled batches (off: batches drawn uniformly from the training set).
    ``pretrain_epochs``: FEAWAD's AE pre-training (100, code) and Deep SAD's (0 = none, the
    code; Deep SAD's own paper pre-trains an autoencoder). ``center``: Deep SAD's centre
    (:data:`CENTERS`). ``n_score_refs``: PReNet's 30 + 30 scoring references, drawn per test row
    or shared (``score_refs``, :data:`SCORE_REFS`). ``distinct_anomaly_pairs``: PReNet's
    anomaly–anomaly pairs hold two different anomalies (paper) or may repeat one (code).
    """

    head: str
    anomaly_only: bool = False
    norm: str = "auto"
    base_bn: bool = False
    normal_weight: float = 1.0
    loss_form: str | None = None
    epochs: int | None = None
    steps_per_epoch: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    l2: float | None = None
    select_best_loss: bool | None = None
    keras: bool = True
    fixed_batches: bool = False
    balanced: bool = True
    pretrain_epochs: int | None = None
    n_score_refs: int = 30
    score_refs: str = "per_row"
    distinct_anomaly_pairs: bool = True
    center: str = "eval"
    margin: float = 5.0

    def __post_init__(self) -> None:
        choose("head", self.head, HEADS)
        choose("norm", self.norm, NORMS)
        if self.loss_form is not None:
            choose("loss_form", self.loss_form, LOSS_FORMS)
        choose("score_refs", self.score_refs, SCORE_REFS)
        choose("center", self.center, CENTERS)
        if self.normal_weight < 0:
            raise ConfigError(f"normal_weight (λ_n) must be ≥ 0, got {self.normal_weight}")

    def resolved(self) -> SSADConfig:
        """A copy with every ``None`` replaced by the head default and ``norm`` made explicit."""
        return _resolved(self)


@functools.lru_cache(maxsize=4096)
def _resolved(config: SSADConfig) -> SSADConfig:
    """:meth:`SSADConfig.resolved`, once per distinct config (a paper grid lists ~10^5 items)."""
    defaults = HEAD_DEFAULTS[config.head]
    filled = {f.name: defaults.get(f.name) for f in fields(config)
              if getattr(config, f.name) is None and f.name in defaults}
    out = replace(config, **filled)
    return replace(out, norm=default_norm(out) if out.norm == "auto" else out.norm)


def default_norm(cfg: SSADConfig) -> str:
    """The normalisation a head uses when ``norm="auto"``: Deep SAD's affine BN (the paper's Table 2
    default; the code's is without affine parameters), AnoOnly's BN for the other heads."""
    if cfg.head == "deepsad":
        return "bn"
    return "bn" if (cfg.anomaly_only or cfg.base_bn) else "none"
