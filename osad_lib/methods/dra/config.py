"""DRA's settings (:class:`DRAConfig`), its heads and variants, and which samples each head sees
(:data:`ROUTES`, :data:`TARGETS`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from osad_lib.settings import apply_overrides
from osad_lib.validate import ConfigError, choose



#: Label of a normal image, a labelled (seen) anomaly and a pseudo anomaly
#: (``docs/official_code/dra.md`` "Training pipeline", "Model").
NORMAL, SEEN, PSEUDO = 0, 1, 2
#: The four heads of the full model, in the paper's order.
HEADS = ("holistic", "seen", "pseudo", "composite")
#: Heads of the ablation variants of Table 3 (paper §4.5); "" is the full DRA.
VARIANT_HEADS: dict[str, tuple[str, ...]] = {
    "": HEADS,
    "dra1a": ("seen",),
    "dra2a": ("seen", "pseudo"),
    "dra3ar": ("seen", "pseudo", "composite"),
    "dra3an": ("holistic", "seen", "pseudo"),
}
#: Which training samples each head sees, a boolean mask over the batch labels
#: (``docs/official_code/dra.md`` "Model").
ROUTES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "holistic": lambda y: torch.ones_like(y, dtype=torch.bool),
    "seen": lambda y: y != PSEUDO,
    "pseudo": lambda y: y != SEEN,
    "composite": lambda y: torch.ones_like(y, dtype=torch.bool),
}
#: Each head's binary target on the samples it sees, 1 = "positive" for that head
#: (``docs/official_code/dra.md`` "Model").
TARGETS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "holistic": lambda y: y == NORMAL,
    "seen": lambda y: y == SEEN,
    "pseudo": lambda y: y == PSEUDO,
    "composite": lambda y: y != NORMAL,
}
#: Sign of each head in the anomaly score −holistic + seen + pseudo + composite
#: (``docs/official_code/dra.md`` "Evaluation").
SCORE_SIGNS = {"holistic": -1.0, "seen": 1.0, "pseudo": 1.0, "composite": 1.0}
#: Pseudo-anomaly sources (paper Table 4): the code's same-image "CutMix" (= CutPaste with
#: colour jitter), CutPaste-Scar, CutPaste-Mix (either of the two per image) and outlier
#: exposure with an external image set (the medical datasets' LAG). The code's "CutMix" and
#: outlier folder: ``docs/official_code/dra.md`` "Training pipeline".
PSEUDO_SOURCES = ("cutmix", "cp_scar", "cp_mix", "external")
MODES = ("faithful", "clean")
LOSSES = ("deviation", "bce", "focal", "ce")


@dataclass(frozen=True)
class DRAConfig:
    """DRA's settings; defaults are the official code's (``docs/official_code/dra.md``
    "Entry points and defaults of the code", "Training pipeline").

    ``mode="faithful"`` (default) reproduces the code where it changes numbers: reference
    images are drawn through the training pipeline (≈ half of them pseudo anomalies, all
    randomly rotated; the paper's App. B.1 says so too), re-drawn at every training step and
    for every test batch, and the LR decays at epochs 9/19/29 (``scheduler.step()`` at the
    start of each epoch; ``docs/official_code/dra.md`` "Training pipeline", items 1 and 4).
    ``mode="clean"`` is the paper's text: a fixed set of ``n_ref`` un-augmented training normals
    chosen once by the seed, evaluation that is deterministic (same weights → same scores), and
    LR decays at epochs 10/20.

    ``heads``: any subset of :data:`HEADS` (Table 3: :data:`VARIANT_HEADS`). ``pseudo_source``:
    one of :data:`PSEUDO_SOURCES` ("external" needs an outlier image set at training time;
    ``outlier_name`` labels it, e.g. "lag"). ``loss``: deviation | bce | focal | ce (App. C.2).
    ``batch_size`` B is split as the code does: 2B//3 normal slots (each replaced by a pseudo
    anomaly with probability ``pseudo_prob``) and B − 2B//3 seen-anomaly slots
    (``docs/official_code/shared.md`` "Balanced batch sampler", ``docs/official_code/dra.md``
    "Training pipeline").
    ``frozen_stages`` is not in the paper (0 = everything fine-tuned): the first backbone stages
    stay fixed, so the test images' stem outputs are computed once (CPU demo profile only;
    recorded in ``deviations``). The training pipeline is unchanged: pseudo anomalies and
    rotation act on images, which then pass the frozen stem. ``cache_stems`` (also not in the
    paper, needs ``frozen_stages`` > 0) trains on cached stem outputs instead: those of every
    training image, and of one pseudo anomaly made once from each training normal
    (:func:`pseudo_stem_pool`); a batch then holds a fixed ``round(pseudo_prob × 2B//3)`` pseudo
    slots drawn without repetition until every pseudo anomaly was used (the code: each normal
    slot replaced with probability ``pseudo_prob`` by a fresh one); rotation acts on the stem's
    feature maps.

    ``dihedral`` (not in the paper): each training image, reference and pseudo anomaly under one
    of the 8 exact rotations by multiples of 90° and mirror images; with ``cache_stems`` the
    rows' precomputed views are drawn instead (:meth:`~osad_lib.components.stems.StemFeatures.sample`;
    the demo has them for the labelled anomalies, and its pseudo anomalies are made under a random
    transform). ``composite_channels`` (not in the paper; 0 = the backbone's width): a learned
    1×1 projection to that many channels in front of the composite head, whose 3×3 convolution on
    a 1280-channel map (EfficientNet-Lite0) would cost 15 M parameters.
    """

    mode: str = "faithful"
    heads: tuple[str, ...] = HEADS
    pseudo_source: str = "cutmix"
    outlier_name: str = ""
    n_ref: int = 5
    loss: str = "deviation"
    topk_ratio: float = 0.1
    n_scales: int = 2
    image_size: int = 448
    backbone: str = "resnet18"
    weights: str = "imagenet"
    frozen_stages: int = 0
    cache_stems: bool = False
    dihedral: bool = False
    composite_channels: int = 0
    epochs: int = 30
    steps_per_epoch: int = 20
    batch_size: int = 48
    eval_batch_size: int = 48
    pseudo_prob: float = 0.5
    rotation_degrees: float = 180.0
    lr: float = 2e-4
    weight_decay: float = 1e-5
    lr_step_size: int = 10
    lr_gamma: float = 0.1
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        choose("mode", self.mode, MODES)
        choose("pseudo_source", self.pseudo_source, PSEUDO_SOURCES)
        choose("loss", self.loss, LOSSES)
        object.__setattr__(self, "heads", validate_heads(self.heads))
        if self.n_ref < 1 and "composite" in self.heads:
            raise ConfigError(f"n_ref must be >= 1 for the composite head, got {self.n_ref}; the paper uses 5")
        if self.batch_size < 3:
            raise ConfigError(f"batch_size must be >= 3 (2/3 normal slots, 1/3 anomaly slots), got {self.batch_size}")
        if self.cache_stems and (self.frozen_stages < 1 or self.pseudo_source == "external"):
            raise ConfigError("cache_stems needs frozen_stages >= 1 and an augmentation pseudo_source; "
                              "set frozen_stages or cache_stems=False")
        if not 0.0 <= self.pseudo_prob <= 1.0:
            raise ConfigError(f"pseudo_prob must be in [0, 1], got {self.pseudo_prob}; the code uses 0.5")
        if self.composite_channels < 0:
            raise ConfigError(f"composite_channels must be >= 0 (0 = the backbone's width), got {self.composite_channels}")

    @property
    def n_normal_slots(self) -> int:
        """Normal/pseudo slots per batch: 2B//3, 32 of 48 as in the code
        (``docs/official_code/shared.md`` "Balanced batch sampler")."""
        return 2 * self.batch_size // 3

    @property
    def n_anomaly_slots(self) -> int:
        """Seen-anomaly slots per batch: B − 2B//3 (16 of 48)."""
        return self.batch_size - self.n_normal_slots

    @property
    def n_pseudo_slots(self) -> int:
        """Pseudo slots of a cached batch (``cache_stems``): round(pseudo_prob × 2B//3), 16 of 48."""
        return round(self.pseudo_prob * self.n_normal_slots) if self.uses_pseudo else 0

    @property
    def uses_pseudo(self) -> bool:
        """Pseudo anomalies are made only when a head learns from them (pseudo or composite)."""
        return bool({"pseudo", "composite"} & set(self.heads)) and self.pseudo_prob > 0

    @property
    def variant(self) -> str:
        """The paper-table variant label: "" for DRA as published, else what differs
        (``dra1a`` … of Table 3, ``pseudo=<source>`` of Table 4, ``nref=<n>``, ``loss=<name>``)."""
        parts = [name for name, heads in VARIANT_HEADS.items() if name and heads == self.heads]
        if not parts and self.heads != HEADS:
            parts.append("heads=" + "+".join(self.heads))
        if self.pseudo_source != "cutmix":
            parts.append(f"pseudo={self.outlier_name or 'external'}" if self.pseudo_source == "external"
                         else f"pseudo={self.pseudo_source}")
        if self.n_ref != 5:
            parts.append(f"nref={self.n_ref}")
        if self.loss != "deviation":
            parts.append(f"loss={self.loss}")
        return ";".join(parts)

    def with_overrides(self, overrides: Mapping[str, Any]) -> DRAConfig:
        """A copy with ``overrides`` applied (:func:`osad_lib.settings.apply_overrides`)."""
        return apply_overrides(self, overrides, "DRA")


def validate_heads(heads: Sequence[str] | str) -> tuple[str, ...]:
    """Heads in canonical order; a variant name of Table 3 (``"dra2a"``) is accepted too."""
    if isinstance(heads, str):
        return VARIANT_HEADS[choose("heads", heads, [k for k in VARIANT_HEADS if k])]
    heads = tuple(heads)
    for head in heads:
        choose("heads", head, HEADS)
    if not heads:
        raise ConfigError("heads is empty; pass a subset of " + ", ".join(HEADS))
    return tuple(h for h in HEADS if h in heads)
