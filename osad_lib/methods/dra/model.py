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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from osad_lib.data.pseudo import apply_batch
from osad_lib.data.tensors import ImageSet
from osad_lib.losses.deviation import criterion as make_criterion
from osad_lib.components.backbones import build_backbone
from osad_lib.components.stems import (
    DIHEDRAL_VIEWS, StemFeatures, dihedral_views, random_angles, random_dihedral, random_rotation, rotate, stem_outputs,
    to_float_images,
)
from osad_lib.components.stems import dihedral as dihedral_transform
from osad_lib.components.heads import TopKMILHead, average_scales, image_pyramid
from osad_lib.seeding import seed_everything, torch_generator
from osad_lib.training import BalancedBatchSampler, TrainConfig, autocast, fit
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


class HolisticHead(nn.Module):
    """Normality head (Eq. 9): GAP → Linear(C, 256) → ReLU → Linear(256, 1) → |·| → ``[B]``
    (``docs/official_code/dra.md`` "Model")."""

    def __init__(self, in_channels: int, hidden: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_channels, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(features.mean(dim=(2, 3)))[:, 0].abs()


def latent_residual(features: torch.Tensor, reference_features: torch.Tensor) -> torch.Tensor:
    """Residual feature maps (Eq. 6–7): mean over the references minus each query (the code's
    direction, item 2)."""
    return reference_features.mean(dim=0, keepdim=True) - features


class CompositeHead(nn.Module):
    """Latent-residual head (Eq. 8): residual → Conv3×3 → BN → ReLU → top-K MIL → ``[B]``
    (``docs/official_code/dra.md`` "Model").

    ``channels`` > 0 (not in the paper): a learned 1×1 projection of the backbone's features to
    that many channels first (linear, so projecting the residual or the features is the same).
    """

    def __init__(self, in_channels: int, topk_ratio: float = 0.1, channels: int = 0):
        super().__init__()
        width = channels or in_channels
        self.project = nn.Conv2d(in_channels, width, kernel_size=1, bias=False) if channels else nn.Identity()
        self.transform = nn.Sequential(
            nn.Conv2d(width, width, kernel_size=3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        self.scorer = TopKMILHead(width, topk_ratio)

    def forward(self, features: torch.Tensor, reference_features: torch.Tensor) -> torch.Tensor:
        residual = latent_residual(self.project(features), self.project(reference_features))
        return self.scorer(self.transform(residual))


class DRA(nn.Module):
    """The DRA network: a backbone, the active heads of ``heads`` and a ``n_scales`` pyramid.

    ``forward(images, references, labels)`` returns ``{head: scores}`` with scores averaged
    over scales. ``references`` (``[n_ref, 3, S, S]`` in [0, 1]) are needed by the composite
    head; as in the code they are concatenated in front of the batch and go through the
    backbone with it (so BN in training mode sees them). With ``labels`` (training) each head
    scores only its routed samples (:data:`ROUTES`, in batch order); without, every sample.

    The backbone is split into a *stem* (normalisation + the first ``frozen_stages`` stages,
    frozen and in eval mode; 0 = fine-tune everything, the paper) and a trainable *top*, as
    DevNet's (:class:`osad_lib.methods.devnet.model.DevNet`), so a frozen stem's outputs can be
    computed once and passed instead of images (a list with one tensor per pyramid scale).
    """

    def __init__(self, backbone: nn.Module, heads: Sequence[str] = HEADS, topk_ratio: float = 0.1,
                 n_scales: int = 2, frozen_stages: int = 0, composite_channels: int = 0):
        super().__init__()
        self.backbone = backbone
        self.head_names = validate_heads(heads)
        self.n_scales = int(n_scales)
        if not 0 <= frozen_stages <= len(backbone.stages):
            raise ConfigError(f"frozen_stages={frozen_stages} but the backbone has {len(backbone.stages)} stages; 0 fine-tunes all (paper)")
        self.frozen_stages = int(frozen_stages)
        for stage in backbone.stages[:frozen_stages]:
            stage.requires_grad_(False)
        channels = backbone.out_channels
        builders = {
            "holistic": lambda: HolisticHead(channels),
            "seen": lambda: TopKMILHead(channels, topk_ratio),
            "pseudo": lambda: TopKMILHead(channels, topk_ratio),
            "composite": lambda: CompositeHead(channels, topk_ratio, composite_channels),
        }
        self.heads = nn.ModuleDict({name: builders[name]() for name in self.head_names})

    @property
    def needs_references(self) -> bool:
        return "composite" in self.head_names

    def train(self, mode: bool = True) -> DRA:
        super().train(mode)
        for stage in self.backbone.stages[:self.frozen_stages]:
            stage.eval()
        return self

    def stem_pyramid(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Normalisation and the frozen stages on every pyramid scale of images in [0, 1]."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.frozen_stages == 0):
            out = []
            for x in image_pyramid(images, self.n_scales):
                x = self.backbone.normalize(x)
                for stage in self.backbone.stages[:self.frozen_stages]:
                    x = stage(x)
                out.append(x)
        return out

    def top(self, stem_out: torch.Tensor) -> torch.Tensor:
        """The trainable stages: the last feature map ``[B, C, h, w]``."""
        for stage in self.backbone.stages[self.frozen_stages:]:
            stem_out = stage(stem_out)
        return stem_out

    def as_stems(self, inputs: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per-scale stem outputs of ``inputs``: images ``[B, 3, S, S]`` in [0, 1] go through
        :meth:`stem_pyramid`; a list (one tensor per scale) is taken as stem outputs already."""
        return list(inputs) if isinstance(inputs, (list, tuple)) else self.stem_pyramid(inputs)

    def forward(self, inputs: torch.Tensor | Sequence[torch.Tensor],
                references: torch.Tensor | Sequence[torch.Tensor] | None = None,
                labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``inputs`` and ``references``: images in [0, 1] or their per-scale stem outputs."""
        if self.needs_references and (references is None or len(references) == 0):
            raise ConfigError("the composite head needs reference images; pass references=[n_ref, 3, S, S]")
        batch = self.as_stems(inputs)
        ref_stems = self.as_stems(references) if self.needs_references else [x[:0] for x in batch]
        n_ref = len(ref_stems[0])
        masks = {h: (ROUTES[h](labels) if labels is not None else None) for h in self.head_names}
        per_scale: dict[str, list[torch.Tensor]] = {h: [] for h in self.head_names}
        for ref_stem, stem in zip(ref_stems, batch):
            feats = self.top(torch.cat([ref_stem, stem]))
            ref_feats, feats = feats[:n_ref], feats[n_ref:]
            for head in self.head_names:
                routed = feats if masks[head] is None else feats[masks[head]]
                scores = self.heads[head](routed, ref_feats) if head == "composite" else self.heads[head](routed)
                per_scale[head].append(scores)
        return {head: average_scales(scores) for head, scores in per_scale.items()}


def anomaly_score(head_scores: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The final score −holistic + seen + pseudo + composite over the heads present
    (``docs/official_code/dra.md`` "Evaluation")."""
    if not head_scores:
        raise ConfigError("no head scores to combine; the model has no heads")
    return sum(SCORE_SIGNS[h] * s.float() for h, s in head_scores.items())


def head_targets(labels: torch.Tensor, heads: Sequence[str]) -> dict[str, torch.Tensor]:
    """Each head's 0/1 targets on its routed samples, in batch order
    (``docs/official_code/dra.md`` "Model")."""
    return {h: TARGETS[h](labels[ROUTES[h](labels)]).float() for h in heads}


def dra_loss(head_scores: Mapping[str, torch.Tensor], labels: torch.Tensor,
             loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum over heads of ``loss_fn(scores, targets)``: an unweighted sum of batch means, as the
    code (``docs/official_code/dra.md`` "Model").

    Returns the total and each head's value (for logging). A head with no routed sample in
    the batch contributes nothing.
    """
    targets = head_targets(labels, list(head_scores))
    parts = {h: loss_fn(s, targets[h]) for h, s in head_scores.items() if len(s)}
    total = sum(parts.values()) if parts else torch.zeros((), device=labels.device)
    return total, {h: float(v.detach()) for h, v in parts.items()}



# --------------------------------------------------------------------------------------------
# training data: batches, pseudo anomalies, references (docs/official_code/dra.md "Training pipeline")


class DRATrainingData:
    """The training side of DRA: batch sampler, pseudo anomalies and reference images.

    ``train`` is an ImageSet of the split's training images (uint8 ``[N, 3, S, S]``, labels
    0 = normal incl. contamination, 1 = labelled anomaly). ``outliers`` (an ImageSet of
    another dataset's normals, resized to S) is the pseudo-anomaly pool of
    ``pseudo_source="external"`` (outlier exposure, ``docs/official_code/dra.md``
    "Training pipeline").

    With ``stems`` (frozen-stem outputs of ``train``'s rows) and ``pseudo_stems`` (a pool of
    pseudo anomalies' stem outputs, :func:`pseudo_stem_pool`) batches and references are stem
    outputs instead of images (``config.cache_stems``): a pseudo slot takes a random pool row —
    as the code, whose pseudo anomaly is made from a *random* normal (``docs/official_code/dra.md``
    "Training pipeline") — and rotation rotates the feature maps.
    """

    def __init__(self, train: ImageSet, config: DRAConfig, seed: int, outliers: ImageSet | None = None,
                 stems: StemFeatures | None = None, pseudo_stems: StemFeatures | None = None):
        labels = np.asarray(train.labels)
        self.images = torch.as_tensor(train.images)
        self.config = config
        self.normal_idx = np.flatnonzero(labels == NORMAL)
        self.anomaly_idx = np.flatnonzero(labels == SEEN)
        if len(self.normal_idx) == 0 or len(self.anomaly_idx) == 0:
            raise ConfigError(f"DRA needs training normals and labelled anomalies; got {len(self.normal_idx)} "
                              f"normals and {len(self.anomaly_idx)} anomalies — check the split")
        if config.pseudo_source == "external" and (outliers is None or len(outliers.images) == 0):
            raise ConfigError("pseudo_source='external' needs an outlier image set (e.g. another dataset's normals); "
                              "pass outliers=ImageSet or choose cutmix/cp_scar/cp_mix")
        self.outliers = torch.as_tensor(outliers.images) if config.pseudo_source == "external" else None
        self.seed = int(seed)
        rng = np.random.default_rng(seed)
        n_fixed = min(config.n_ref, len(self.normal_idx))
        #: clean mode: ``n_ref`` un-augmented training normals, chosen once by the seed
        self.fixed_reference_idx = np.sort(rng.choice(self.normal_idx, n_fixed, replace=False))
        if (stems is None) != (pseudo_stems is None):
            raise ConfigError("pass both stems and pseudo_stems (cached training), or neither")
        if stems is not None and (len(stems) != len(train) or len(pseudo_stems) == 0):
            raise ConfigError(f"stems must have one row per training image ({len(train)}, got {len(stems)}) and "
                              "pseudo_stems at least one row")
        self.stems, self.pseudo_stems = stems, pseudo_stems

    def sampler(self) -> BalancedBatchSampler:
        """2B//3 normal slots then B − 2B//3 anomaly slots per batch (``docs/official_code/shared.md``
        "Balanced batch sampler", ``docs/official_code/dra.md`` "Training pipeline"). Cached
        training (``stems``) gives :attr:`DRAConfig.n_pseudo_slots` of the normal slots to the
        pseudo-anomaly pool, whose rows are numbered after the training rows."""
        groups = {"normal": self.normal_idx, "anomaly": self.anomaly_idx}
        slots = {"normal": self.config.n_normal_slots, "anomaly": self.config.n_anomaly_slots}
        if self.stems is not None and self.config.n_pseudo_slots:
            groups["pseudo"] = len(self.stems) + np.arange(len(self.pseudo_stems))
            slots = {"normal": self.config.n_normal_slots - self.config.n_pseudo_slots,
                     "pseudo": self.config.n_pseudo_slots, "anomaly": self.config.n_anomaly_slots}
        return BalancedBatchSampler(groups=groups, slots=slots, seed=self.seed)

    def pseudo_anomalies(self, images: torch.Tensor) -> torch.Tensor:
        """Pseudo anomalies made from normal images in [0, 1] (or drawn from the outlier pool)."""
        source = self.config.pseudo_source
        if source == "external":
            pick = torch.randint(len(self.outliers), (len(images),))
            return to_float_images(self.outliers[pick], images.device)
        return make_pseudo_anomalies(images, source)

    def augment(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The training pipeline on float images: each normal replaced by a pseudo anomaly
        (label 2) with probability ``pseudo_prob`` (only when a head learns from them), then
        (``dihedral``) a random dihedral transform and RandomRotation(``rotation_degrees``) on
        every image (as the code, pseudo anomalies before the rotation: ``docs/official_code/dra.md``
        "Training pipeline")."""
        images, labels = images.clone(), labels.clone()
        if self.config.uses_pseudo:
            chosen = (labels == NORMAL) & (torch.rand(len(labels)) < self.config.pseudo_prob)
            if chosen.any():
                images[chosen] = self.pseudo_anomalies(images[chosen])
                labels[chosen] = PSEUDO
        if self.config.dihedral:
            images = random_dihedral(images)
        return random_rotation(images, self.config.rotation_degrees), labels

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor | list[torch.Tensor], torch.Tensor]:
        """Inputs (images in [0, 1], or stem outputs per scale) and labels (0/1/2) of one
        training batch of sampler ``indices``."""
        index = torch.as_tensor(list(indices), dtype=torch.long)
        if self.stems is not None:
            return self._cached(index)
        labels = torch.as_tensor(np.isin(index.numpy(), self.anomaly_idx).astype(np.int64))
        return self.augment(to_float_images(self.images[index]), labels)

    def _cached(self, index: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The cached counterpart of :meth:`augment`: rows below ``len(stems)`` are training images
        (each drawn among its views with ``dihedral``), the others pseudo-anomaly pool rows
        (label 2); then every map is rotated by ``rotation_degrees``."""
        n = len(self.stems)
        pool = index >= n
        labels = torch.as_tensor(np.isin(index.numpy(), self.anomaly_idx).astype(np.int64))
        labels[pool] = PSEUDO
        own = index[~pool].tolist()
        feats = self.stems.sample(own) if self.config.dihedral else self.stems.take(own)
        if pool.any():
            pseudo = self.pseudo_stems.take((index[pool] - n).tolist())
            feats = [torch.empty((len(index), *f.shape[1:]), dtype=f.dtype).index_copy_(
                0, torch.nonzero(~pool).flatten(), f).index_copy_(0, torch.nonzero(pool).flatten(), p)
                for f, p in zip(feats, pseudo, strict=True)]
        if self.config.rotation_degrees > 0:
            angles = random_angles(len(labels), self.config.rotation_degrees)
            feats = [rotate(f, angles) for f in feats]
        return feats, labels

    def references(self) -> torch.Tensor | list[torch.Tensor]:
        """``n_ref`` reference images in [0, 1] (or their stem outputs) for one training step or
        test batch.

        faithful (``docs/official_code/dra.md`` "Training pipeline"; item 1): fresh random
        training normals passed through the training pipeline — about half become pseudo
        anomalies (cached: a random pool row) and all are rotated. clean: the same un-augmented
        normals every time (paper Eq. 6: "reference normal images").
        """
        if self.config.mode == "clean":
            fixed = torch.as_tensor(self.fixed_reference_idx)
            return self.stems.take(fixed) if self.stems is not None else to_float_images(self.images[fixed])
        pick = torch.as_tensor(self.normal_idx)[torch.randperm(len(self.normal_idx))[: self.config.n_ref]]
        if self.stems is not None:
            if self.config.uses_pseudo:
                swap = torch.rand(len(pick)) < self.config.pseudo_prob
                pick = torch.where(swap, len(self.stems) + torch.randint(len(self.pseudo_stems), (len(pick),)), pick)
            return self._cached(pick)[0]
        normal = torch.zeros(len(pick), dtype=torch.long)
        return self.augment(to_float_images(self.images[pick]), normal)[0]


#: ``pseudo_source`` → generator of :mod:`osad_lib.data.pseudo` (Table 4's augmentations).
PSEUDO_GENERATORS = {"cutmix": "cutpaste_same_image", "cp_scar": "cutpaste_scar", "cp_mix": "cutpaste_mix"}


def make_pseudo_anomalies(images: torch.Tensor, source: str) -> torch.Tensor:
    """Pseudo anomalies of float images ``[B, 3, S, S]`` by augmentation (paper Eq. 4, Table 4).

    ``cutmix`` is the code's same-image cut-and-paste with colour jitter
    (``docs/official_code/dra.md`` "Training pipeline"; item 5); ``cp_scar`` is CutPaste-Scar;
    ``cp_mix`` picks one of the two per image. Randomness comes from the global torch generator
    (restored by training checkpoints).
    """
    name = PSEUDO_GENERATORS[choose("pseudo_source", source, tuple(PSEUDO_GENERATORS))]
    return apply_batch(name, images, torch.default_generator)[0].to(images.dtype)


@torch.no_grad()
def pseudo_stem_pool(model: DRA, normals: torch.Tensor, source: str, seed: int, batch_size: int = 64,
                     device: str = "cpu", dihedral: bool = False) -> StemFeatures:
    """Frozen-stem outputs of one pseudo anomaly per normal of ``normals`` (uint8, in order) —
    ``cache_stems``' pool —, under a random dihedral transform each with ``dihedral``; seeded by
    ``seed``. (The notebooks use the per-image cache
    :func:`osad_lib.experiments.stem_cache.pseudo_stems` instead, shared by every run.)"""
    name = PSEUDO_GENERATORS[choose("pseudo_source", source, tuple(PSEUDO_GENERATORS))]
    generator = torch_generator(seed)
    was_training = model.training
    model.eval()
    chunks: list[list[torch.Tensor]] = []
    for start in range(0, len(normals), batch_size):
        images = apply_batch(name, to_float_images(normals[start:start + batch_size]), generator)[0]
        if dihedral:
            ks = torch.randint(DIHEDRAL_VIEWS, (len(images),), generator=generator).tolist()
            images = torch.cat([dihedral_transform(images[i:i + 1], k) for i, k in enumerate(ks)])
        chunks.append([f.half().cpu() for f in model.stem_pyramid(images.to(device))])
    model.train(was_training)
    return StemFeatures(tuple(torch.cat(level) for level in zip(*chunks)))


# --------------------------------------------------------------------------------------------
# training and scoring


@dataclass
class TrainedDRA:
    """A trained DRA with its training data (the reference source) and per-epoch losses."""

    model: DRA
    data: DRATrainingData
    config: DRAConfig
    history: list[float]
    device: str = "cpu"

    def score(self, images: torch.Tensor | StemFeatures) -> dict[str, np.ndarray]:
        """Per-head scores and the anomaly score ``"score"`` of uint8 images (:func:`score_dra`)."""
        return score_dra(self.model, self.data, images, self.config.eval_batch_size, self.device)


def train_config(config: DRAConfig, progress: bool = True, desc: str = "dra") -> TrainConfig:
    """The shared loop's settings: faithful steps StepLR at epoch start (decays at 9/19/29,
    ``docs/official_code/dra.md`` "Training pipeline"), clean at epoch end (decays at 10/20)."""
    return TrainConfig(
        epochs=config.epochs, steps_per_epoch=config.steps_per_epoch, lr=config.lr,
        weight_decay=config.weight_decay, lr_step_size=config.lr_step_size, lr_gamma=config.lr_gamma,
        scheduler_step_at="epoch_start" if config.mode == "faithful" else "epoch_end",
        grad_clip=config.grad_clip, progress=progress, desc=desc,
    )


def build_dra(config: DRAConfig) -> DRA:
    """A fresh DRA (backbone ``config.backbone``/``config.weights``, heads ``config.heads``)."""
    return DRA(build_backbone(config.backbone, config.weights), config.heads, config.topk_ratio, config.n_scales,
               config.frozen_stages, config.composite_channels)


def train_dra(train: ImageSet, config: DRAConfig, seed: int, device: str = "cpu", outliers: ImageSet | None = None,
              checkpoint: Path | None = None, progress: bool = True, desc: str = "dra",
              stems: StemFeatures | None = None, pseudo_stems: StemFeatures | None = None) -> TrainedDRA:
    """Seed everything, build DRA and train it on ``train`` (ImageSet) with :func:`osad_lib.training.fit`.

    With ``config.cache_stems`` training uses ``stems`` (rows of ``train``) and ``pseudo_stems``
    (:func:`pseudo_stem_pool` of its normals); those not given are computed here.
    """
    seed_everything(seed)
    model = build_dra(config).to(device)
    data = cached_training_data(model, train, config, seed, stems, pseudo_stems, device) if config.cache_stems \
        else DRATrainingData(train, config, seed, outliers)
    loss = make_criterion(config.loss)

    def loss_fn(net: nn.Module, indices: list[int]) -> torch.Tensor:
        inputs, labels = data.batch(indices)
        references = to_device(data.references(), device) if net.needs_references else None
        scores = net(to_device(inputs, device), references, labels.to(device))
        return dra_loss(scores, labels.to(device), loss)[0]

    history = fit(model, loss_fn, data.sampler(), train_config(config, progress, desc), device, checkpoint=checkpoint)
    return TrainedDRA(model, data, config, history, device)


def to_device(inputs: torch.Tensor | list[torch.Tensor], device: str) -> torch.Tensor | list[torch.Tensor]:
    """Images or per-scale stem outputs on ``device``."""
    return [x.to(device) for x in inputs] if isinstance(inputs, list) else inputs.to(device)


def cached_training_data(model: DRA, train: ImageSet, config: DRAConfig, seed: int,
                         stems: StemFeatures | None, pseudo_stems: StemFeatures | None,
                         device: str = "cpu") -> DRATrainingData:
    """:class:`DRATrainingData` on cached stem outputs, computing those not given."""
    if stems is None:
        was_training = model.training
        model.eval()
        anomalies = np.flatnonzero(np.asarray(train.labels) == SEEN).tolist() if config.dihedral else []
        with torch.no_grad():
            stems = StemFeatures(stem_outputs(model.stem_pyramid, train.images, config.eval_batch_size, device))
            if anomalies:
                views = dihedral_views(model.stem_pyramid, train.images[torch.as_tensor(anomalies)],
                                       config.eval_batch_size, device)
                stems = stems.with_views(dict(zip(anomalies, views, strict=True)))
        model.train(was_training)
    if pseudo_stems is None:
        normals = train.images[torch.as_tensor(np.flatnonzero(np.asarray(train.labels) == NORMAL))]
        pseudo_stems = pseudo_stem_pool(model, normals, config.pseudo_source, seed, config.eval_batch_size, device,
                                        config.dihedral)
    return DRATrainingData(train, config, seed, stems=stems, pseudo_stems=pseudo_stems)


@torch.no_grad()
def score_dra(model: DRA, data: DRATrainingData, images: torch.Tensor | StemFeatures, batch_size: int = 48,
              device: str = "cpu") -> dict[str, np.ndarray]:
    """Scores of ``images`` (uint8 or [0, 1] floats, or their cached frozen-stem features):
    each head's and ``"score"`` (−holistic + seen + pseudo + composite).

    Eval mode, all heads on all samples; references from ``data.references()`` for every batch
    (faithful: fresh random ones, as the code; clean: the fixed set, so repeated calls agree).
    """
    was_training = model.training
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(images), batch_size):
        rows = slice(start, start + batch_size)
        references = to_device(data.references(), device) if model.needs_references else None
        with autocast(str(device)):
            batch = images.take(rows, device) if isinstance(images, StemFeatures) else to_float_images(images[rows], device)
            heads = model(batch, references)
        heads = {h: s.float() for h, s in heads.items()}
        heads["score"] = anomaly_score(heads)
        for name, values in heads.items():
            parts.setdefault(name, []).append(values.cpu())
    model.train(was_training)
    return {name: torch.cat(values).numpy() for name, values in parts.items()}


__all__ = [
    "DRA", "DRAConfig", "HEADS", "LOSSES", "MODES", "NORMAL", "PSEUDO", "PSEUDO_SOURCES", "ROUTES", "SEEN",
    "SCORE_SIGNS", "TARGETS", "VARIANT_HEADS", "CompositeHead", "HolisticHead", "anomaly_score",
    "DRATrainingData", "TrainedDRA", "build_dra", "dra_loss", "head_targets", "latent_residual",
    "PSEUDO_GENERATORS", "cached_training_data", "make_pseudo_anomalies", "pseudo_stem_pool", "score_dra", "to_device", "train_config", "train_dra", "validate_heads",
]
