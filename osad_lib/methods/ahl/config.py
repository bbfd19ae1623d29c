"""AHL's settings (Zhu, Ding, Tian & Pang, CVPR 2024): :class:`AHLConfig` and the constants of its options.

``mode="clean"`` (default) is the paper. ``mode="faithful"`` reproduces the official code where
it changes what is trained (``docs/official_code/ahl.md`` "Heterogeneous tasks (HADG)",
"Collaborative differentiable learning (CDL) and ψ" and "Where the code departs from the paper",
items 2–6): clusters are *prefixes* of the normal list with the k-means cluster sizes (index
bug), the support and query anomaly halves are drawn independently (query = 2 of an independent
half + its complement), support and query share one generator, only the six cluster-pair tasks
are trained, the meta-gradient of epoch e is applied at the start of epoch e + 1 (the last one
never), the query losses are averaged over tasks until the weights start (epoch K + 1) and then
summed with factors 0.5 + 0.5·w_t, and the inner loop is second-order only in its first step.
:meth:`AHLConfig.faithful` also sets the code's numbers and heads (outer Adam 0.002, ψ Adam
0.002 with weight decay 1e-3, ψ hidden size = number of tasks and no extra FC layer, the code's
DRA heads: holistic without |·|, stride-3 composite with a zero-initialised affine;
``docs/official_code/ahl.md`` "Heads of g").
Not reproduced: the code's random initial LSTM states, its mismatched reference sets across
scales, its exact inner schedule (one second-order step from the *last* support batch, then
2 × 20 first-order steps) — ``second_order="first"`` with ``inner_steps`` steps stands for it.

The Table 5 ablations are options of the same config (``variant``): ``hadg`` (an ensemble of
base heads trained on the HADG task data, no CDL), ``ramhadg`` (the same on random normal
subsets), ``ramfull`` (an ensemble on the full data with different seeds), ``ramhadg+devnet``
(RamHADG members alternating DRA and DevNet heads), ``cdl_minus`` (CDL with weights from the
members' detection AUROC on the data outside their support instead of ψ). Table 10's
support/query overlaps are ``overlap``; Fig. 4's "wo. aug" is ``pseudo=False``; Fig. 3 sweeps
``n_clusters`` and ``sequence_length``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from osad_lib.components.features import PSEUDO_GENERATORS
from osad_lib.methods import dra as dra_method
from osad_lib.settings import apply_overrides
from osad_lib.validate import ConfigError, choose

#: Base models AHL plugs into (§4.1).
BASES = ("devnet", "dra")
MODES = ("clean", "faithful")
#: Table 5 / Table 9 variants; "" is the full AHL (HADG + CDL with ψ).
VARIANTS = ("", "hadg", "ramhadg", "ramfull", "ramhadg+devnet", "cdl_minus")
#: Table 10: which set is added to the other ("s_to_q": D^s also in D^q, ...).
OVERLAPS = ("none", "s_to_q", "q_to_s", "both")
#: Inner-loop differentiation: through every step, only the first (code), or none (first-order).
SECOND_ORDER = ("all", "first", "none")
INITS = ("fresh", "base")
#: How the base models learn on their support sets (Eq. 1): the paper's Adam or the code's SGD fast weights.
INNER_OPTIMIZERS = ("adam", "sgd")
#: What ψ and Eq. 6 see: per-task min–max standardised scores, or the raw deviation-scale scores (code).
PSI_INPUTS = ("standardized", "raw")
#: DRA heads of g: the base model's ("base", paper) or the AHL code's cheaper variant ("code",
#: ``docs/official_code/ahl.md`` "Heads of g").
HEAD_STYLES = ("base", "code")
#: Pseudo-anomaly generators (App. B.1): CutMix across images, CutPaste within an image, DRAEM.
GENERATORS = tuple(PSEUDO_GENERATORS)
NORMAL, SEEN, PSEUDO = dra_method.NORMAL, dra_method.SEEN, dra_method.PSEUDO


# ============================================================================ configuration
@dataclass(frozen=True)
class AHLConfig:
    """AHL's settings. Defaults are the paper's (§4.1, App. B.1) and, where it is silent, the code's.

    Paper: C = 3 clusters, T = 7 tasks, K = 5, base-model lr 2e-4, unified-model lr 5e-3 (Adam),
    ψ = 2-layer BiLSTM with hidden size 7 followed by a 14-unit FC layer, ψ lr 0.02, c_j = 1.0 /
    0.5. Code (``docs/official_code/ahl.md`` "Defaults of the code" and
    "Collaborative differentiable learning (CDL) and ψ"): 30 epochs, batches of 48 split
    16/16/16 over normal / pseudo / seen slots, 20 support and 20 query batches per task and
    epoch, inner SGD (the base models' lr is the inner step size), outer weight decay 1e-4 with
    StepLR(10, 0.1), gradient clipping 1.0, pseudo replacement probability 0.5, top-k 10 %.
    ``psi_steps``: Adam steps of ψ per epoch (the code takes one per query set, i.e. six).
    ``psi_pool_size``: at most this many training samples are scored for ψ each epoch (0 = all;
    the real anomalies are always kept).
    ``init``: a copy of the trained base model's heads (``base``, the default: g starts where
    its base model ended and CDL refines it) or ``fresh`` heads (the code's Kaiming
    initialisation; with the code's few outer steps a fresh g lags its base model).
    ``inner_optimizer``: how the base models φ_i learn on their support sets — ``adam`` (§4.1:
    "Adam is used as the optimizer", lr ``base_lr``; first-order, so the meta-gradient is the
    query gradient at the adapted weights) or ``sgd`` (the code: fast weights θ − lr·∇L, second
    order as ``second_order`` says; at lr 2e-4 it moves the heads by ~0.2 %, so every φ_i is
    nearly g and there is no heterogeneity to weigh). ``psi_input``: ``standardized`` (default)
    maps each base model's pool scores to [0, 1] (min–max over the pool, per epoch) before ψ and
    Eq. 6, so r_i measures how well φ_i separates the labels; ``raw`` uses deviation-scale scores
    as the code does, whose squared gap to the 0/1 labels is dominated by the score scale and
    drives softmax(−r) to one-hot weights. ``composite_channels``: DRA's composite-head
    projection (:class:`osad_lib.methods.dra.networks.CompositeHead`), as the base model's.
    ``head_style`` (DRA only): ``base`` = DRA's heads (paper: g has the base
    model's architecture), ``code`` = the AHL code's holistic (no |·|) and stride-3 composite
    heads (``docs/official_code/ahl.md`` "Heads of g"), which the CPU demo uses for speed.
    """

    base: str = "dra"
    mode: str = "clean"
    variant: str = ""
    n_clusters: int = 3
    sequence_length: int = 5
    pseudo: bool = True
    pseudo_prob: float = 0.5
    overlap: str = "none"
    init: str = "base"
    head_style: str = "base"
    composite_channels: int = 0
    inner_optimizer: str = "adam"
    psi_input: str = "standardized"
    epochs: int = 30
    inner_steps: int = 20
    query_steps: int = 20
    batch_size: int = 48
    base_lr: float = 2e-4
    unified_lr: float = 5e-3
    unified_weight_decay: float = 1e-4
    lr_step_size: int = 10
    lr_gamma: float = 0.1
    grad_clip: float = 1.0
    second_order: str = "all"
    psi_hidden: int = 7
    psi_fc: int = 14
    psi_lr: float = 0.02
    psi_weight_decay: float = 0.0
    psi_steps: int = 6
    psi_pool_size: int = 0
    unseen_weight: float = 1.0
    seen_weight: float = 0.5
    topk_ratio: float = 0.1
    n_ref: int = 5
    ensemble_members: int = 7

    def __post_init__(self) -> None:
        choose("base", self.base, BASES)
        choose("mode", self.mode, MODES)
        choose("variant", self.variant, VARIANTS)
        choose("overlap", self.overlap, OVERLAPS)
        choose("second_order", self.second_order, SECOND_ORDER)
        choose("init", self.init, INITS)
        choose("head_style", self.head_style, HEAD_STYLES)
        choose("inner_optimizer", self.inner_optimizer, INNER_OPTIMIZERS)
        choose("psi_input", self.psi_input, PSI_INPUTS)
        if self.init == "base" and self.head_style == "code" and self.base == "dra":
            raise ConfigError("init='base' copies DRA's heads, which head_style='code' does not have; "
                              "use head_style='base'")
        if self.n_clusters < 2:
            raise ConfigError(f"n_clusters must be >= 2 (support and query need different clusters), "
                              f"got {self.n_clusters}")
        if self.sequence_length < 1:
            raise ConfigError(f"sequence_length must be >= 1, got {self.sequence_length}; the paper uses K = 5")
        if self.batch_size < 3:
            raise ConfigError(f"batch_size must be >= 3 (normal, pseudo and seen slots), got {self.batch_size}")
        if not 0.0 <= self.pseudo_prob <= 1.0:
            raise ConfigError(f"pseudo_prob must be in [0, 1], got {self.pseudo_prob}; the code uses 0.5")
        if self.variant == "ramhadg+devnet" and self.base != "dra":
            raise ConfigError("variant 'ramhadg+devnet' mixes DRA and DevNet members; use base='dra'")

    @classmethod
    def faithful(cls, **overrides: Any) -> AHLConfig:
        """The official code's behaviour and numbers, then ``overrides``.

        The code: ``docs/official_code/ahl.md`` "Defaults of the code", "Heads of g" and
        "Collaborative differentiable learning (CDL) and ψ".
        """
        code = dict(mode="faithful", unified_lr=2e-3, second_order="first", psi_hidden=0, psi_fc=0,
                    psi_lr=2e-3, psi_weight_decay=1e-3, head_style="code", init="fresh", inner_optimizer="sgd",
                    psi_input="raw")
        code.update(overrides)
        return cls(**code)

    def with_overrides(self, overrides: Mapping[str, Any]) -> AHLConfig:
        """A copy with ``overrides`` applied (:func:`osad_lib.settings.apply_overrides`)."""
        return apply_overrides(self, overrides, "AHL")

    @property
    def faithful_mode(self) -> bool:
        return self.mode == "faithful"

    def scorer_options(self) -> dict[str, Any]:
        """The head options of :func:`~osad_lib.methods.ahl.heads.build_scorer` under this config."""
        return {"head_style": self.head_style, "composite_channels": self.composite_channels,
                "faithful": self.faithful_mode}

    @property
    def include_all_normal_task(self) -> bool:
        """The 7th, all-normal task (App. B.1); the code builds it but never trains it
        (``docs/official_code/ahl.md`` "Where the code departs from the paper" item 2)."""
        return not self.faithful_mode

    @property
    def variant_label(self) -> str:
        """Paper-table variant of this run: Table 5 names, ``overlap=…`` (Table 10), ``wo_aug``
        (Fig. 4), ``C=…`` / ``K=…`` (Fig. 3), ``init=fresh``; ``""`` for AHL as published."""
        parts = [self.variant] if self.variant else []
        if self.overlap != "none":
            parts.append(f"overlap={self.overlap}")
        if not self.pseudo:
            parts.append("wo_aug")
        if self.n_clusters != 3:
            parts.append(f"C={self.n_clusters}")
        if self.sequence_length != 5:
            parts.append(f"K={self.sequence_length}")
        if self.init != "base":
            parts.append(f"init={self.init}")
        return ";".join(parts)
