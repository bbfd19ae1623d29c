"""DevNet for images (Pang et al., "Explainable Deep Few-shot Anomaly Detection with Deviation
Networks") and its ablation variants, one class with options.

Architecture (paper §4.1, §6.3; ``docs/official_code/devnet.md`` "Model and training"): an ImageNet
backbone (ResNet-18 up to layer4, fine-tuned end to end) gives a feature map; a 1×1 convolution
scores every cell (a patch of the image, Eq. (1)–(3)); the image score is the mean of the top-K
absolute cell scores, K = 10 % of the cells (Eq. (6)). The code runs this on a two-scale image
pyramid (448 px and a nearest-resized 224 px, shared weights) and averages the two scores. Training
minimises the deviation loss (Eq. (7)–(8), :func:`osad_lib.losses.deviation.deviation_loss`) on
batches of 24 normal + 24 labelled anomalous images, randomly rotated (RandomRotation(180)).

Options (``DevNetConfig``):

* ``variant`` — the ablation of Table 5 (§6.8.1): ``mil_ds`` (default DevNet: top-K MIL),
  ``ds`` (scalar output without MIL: plain spatial mean of the cell scores — the code's
  ``topk=0`` branch, equal to a linear unit on the average-pooled features), ``patch_ds``
  (the deviation loss on every cell with the image's label; image score = mean cell score),
  ``rep`` (no scoring layer: the loss acts on the pooled representation entry-wise with a
  multivariate N(0, I) reference; score = mean z-score, see
  :func:`~osad_lib.losses.deviation.representation_deviation_loss`).
  AlexNet + DS and ResNet-50 + DS are ``variant="ds"`` with ``backbone="alexnet"|"resnet50"``.
* ``criterion`` — ``deviation`` (DevNet) or ``focal`` (FLOS: "exactly the same implementation as
  DevNet except the loss", §6.3; the code's ``--criterion focal`` on the same |·|-top-K score,
  which is ≥ 0, so a normal image's focal probability is at least 0.5 — as in the code) or ``bce``.
* ``topk_ratio`` — K of Fig. 6; ``n_scales``; ``backbone``/``weights``.
* ``frozen_stages`` — not in the paper (0 = everything fine-tuned, as published): the first
  stages of the backbone stay fixed so their outputs can be computed once per image
  (:func:`stem_features`) and the rotation augmentation is then applied to those feature maps.
  Used only by the CPU demo profile, where it is recorded in the result rows' ``deviations``.
* ``dihedral`` — not in the paper: each training image under a random one of the 8 exact
  rotations by multiples of 90° and mirror images (:func:`osad_lib.components.stems.dihedral`). On
  cached stems (``frozen_stages > 0``) the rows' precomputed views are drawn instead
  (:meth:`~osad_lib.components.stems.StemFeatures.sample`; the demo computes them for the labelled
  anomalies), so the augmentation stays exact where ``rotation_degrees`` would rotate feature maps.
* ``anomaly_only`` — not in the DevNet paper: AnoOnly (Zhou et al., §3.2–3.3, Fig. 3) carried
  over to the image DevNet. The deviation loss keeps only its anomaly term
  (:func:`osad_lib.methods.anoonly.losses.image_deviation_loss_anomaly_only`) and a batch normalisation
  (BatchNorm2d, affine) goes on the feature map before the 1×1 scoring layer, as AnoOnly puts a
  BN before the scoring layer of the tabular DevNet. Deviation criterion, ``mil_ds``/``ds`` only.

Paper vs code: §6.3 of the paper states Adam lr 1e-3, weight decay 1e-2; the official code uses
lr 2e-4, weight decay 1e-5 (``docs/official_code/devnet.md``
"Entry points and defaults of the code"). The defaults are the code's; ``paper_optimizer()``
gives the paper's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from osad_lib.data.tensors import ImageSet
from osad_lib.losses.deviation import criterion as make_criterion
from osad_lib.losses.deviation import representation_deviation_loss, representation_score
from osad_lib.methods.anoonly.losses import image_deviation_loss_anomaly_only
from osad_lib.components.backbones import Backbone, build_backbone
from osad_lib.components.heads import TopKMILHead, average_scales, image_pyramid
from osad_lib.components.stems import (
    StemFeatures, dihedral_views, random_angles, random_dihedral, random_rotation, rotate, stem_outputs, to_float_images,
)
from osad_lib.seeding import seed_everything
from osad_lib.training import BalancedBatchSampler, TrainConfig, autocast, fit
from osad_lib.settings import apply_overrides, require_at_least
from osad_lib.validate import ConfigError, choose

#: Table 5 variants (``mil_ds`` is DevNet itself).
VARIANTS = ("mil_ds", "ds", "patch_ds", "rep")
#: Training criteria a DevNet can use (``focal`` = FLOS).
DEVNET_CRITERIA = ("deviation", "focal", "bce")


@dataclass(frozen=True)
class DevNetConfig:
    """DevNet's settings; defaults are the official code's (``docs/official_code/devnet.md``
    "Entry points and defaults of the code")."""

    variant: str = "mil_ds"
    criterion: str = "deviation"
    backbone: str = "resnet18"
    weights: str = "imagenet"
    image_size: int = 448
    n_scales: int = 2
    topk_ratio: float = 0.1
    margin: float = 5.0
    n_reference: int = 5000
    epochs: int = 50
    steps_per_epoch: int = 20
    # Half normal, half labelled anomalies (docs/official_code/shared.md "Balanced batch sampler").
    batch_size: int = 48
    eval_batch_size: int = 48
    lr: float = 2e-4
    weight_decay: float = 1e-5
    lr_step_size: int = 10
    lr_gamma: float = 0.1
    grad_clip: float | None = 1.0
    rotation_degrees: float = 180.0
    dihedral: bool = False  # also the 8 exact 90° rotations/flips (not in the paper; module docstring)
    frozen_stages: int = 0  # backbone stages kept frozen (paper/code: 0, all fine-tuned)
    amp: bool = True
    anomaly_only: bool = False  # AnoOnly's loss and BN (not in the DevNet paper; module docstring)

    def __post_init__(self) -> None:
        choose("variant", self.variant, VARIANTS)
        choose("criterion", self.criterion, DEVNET_CRITERIA)
        if self.anomaly_only and (self.criterion != "deviation" or self.variant not in ("mil_ds", "ds")):
            raise ConfigError("anomaly_only drops the normal term of the deviation loss: use criterion='deviation' "
                              f"with variant 'mil_ds' or 'ds' (got {self.criterion!r}, {self.variant!r})")
        if self.variant == "rep" and self.criterion != "deviation":
            raise ConfigError("variant 'rep' learns representations with the deviation loss only; use criterion='deviation'")
        if not 0.0 < self.topk_ratio <= 1.0:
            raise ConfigError(f"topk_ratio must be in (0, 1], got {self.topk_ratio}; the paper's K is 0.1 (use variant='ds' for no top-K)")
        if self.batch_size < 2 or self.batch_size % 2:
            raise ConfigError(f"batch_size must be an even number >= 2 (half normal, half anomalies), got {self.batch_size}")
        if self.frozen_stages < 0:
            raise ConfigError(f"frozen_stages must be >= 0, got {self.frozen_stages}; 0 fine-tunes the whole backbone (paper)")
        require_at_least(self, ("image_size", "n_scales", "epochs", "steps_per_epoch", "eval_batch_size", "n_reference"))

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any]) -> DevNetConfig:
        """Defaults with ``overrides`` applied (:func:`osad_lib.settings.apply_overrides`)."""
        return apply_overrides(cls, overrides, "DevNet")

    def with_(self, **changes: Any) -> DevNetConfig:
        """A copy with ``changes`` (validated)."""
        return replace(self, **changes)

    def paper_optimizer(self) -> DevNetConfig:
        """The optimiser stated in the paper (§6.3: Adam lr 1e-3, weight decay 1e-2)."""
        return replace(self, lr=1e-3, weight_decay=1e-2)

    def train_config(self, progress: bool = True, desc: str = "devnet") -> TrainConfig:
        """The shared loop's settings (StepLR stepped at epoch end, as in DevNet's code)."""
        return TrainConfig(
            epochs=self.epochs, steps_per_epoch=self.steps_per_epoch, lr=self.lr,
            weight_decay=self.weight_decay, lr_step_size=self.lr_step_size, lr_gamma=self.lr_gamma,
            scheduler_step_at="epoch_end", grad_clip=self.grad_clip, amp=self.amp,
            progress=progress, desc=desc,
        )


class DevNet(nn.Module):
    """Backbone → per-cell scores → image score, on an ``n_scales`` image pyramid (module docstring).

    ``forward(images)`` takes float images in [0, 1], ``[B, 3, S, S]``, and returns scores ``[B]``.
    The network is split into a *stem* (input normalisation + the first ``frozen_stages``
    backbone stages, frozen, always in eval mode) and a trainable *top* (the remaining stages and
    the head); with ``frozen_stages=0`` (the paper) the stem only normalises. The ``*_from_stem``
    methods take the stem's outputs per pyramid scale, so a frozen stem can be computed once
    (:func:`stem_features`).
    """

    def __init__(self, config: DevNetConfig, backbone: Backbone | None = None):
        super().__init__()
        self.config = config
        self.backbone = backbone if backbone is not None else build_backbone(config.backbone, config.weights)
        n_stages = len(self.backbone.stages)
        if config.frozen_stages > n_stages:
            raise ConfigError(f"frozen_stages={config.frozen_stages} but backbone {config.backbone!r} has {n_stages} stages")
        if config.variant == "rep" and config.frozen_stages == n_stages:
            raise ConfigError("variant 'rep' with every backbone stage frozen has nothing to train; lower frozen_stages")
        for stage in self.backbone.stages[:config.frozen_stages]:
            stage.requires_grad_(False)
        self.head = None
        if config.variant != "rep":
            ratio = config.topk_ratio if config.variant == "mil_ds" else 0.0
            self.head = TopKMILHead(self.backbone.out_channels, topk_ratio=ratio)
        self._criterion = None if config.variant == "rep" else make_criterion(
            config.criterion, margin=config.margin, n_reference=config.n_reference)
        # AnoOnly: BN before the scoring layer and the anomaly term of the loss only
        self.score_norm = nn.BatchNorm2d(self.backbone.out_channels) if config.anomaly_only else nn.Identity()
        if config.anomaly_only:
            self._criterion = lambda s, y: image_deviation_loss_anomaly_only(s, y, config.margin, config.n_reference)

    def train(self, mode: bool = True) -> DevNet:
        super().train(mode)
        for stage in self.backbone.stages[:self.config.frozen_stages]:
            stage.eval()
        return self

    def stem(self, images: torch.Tensor) -> torch.Tensor:
        """Normalisation and the frozen stages of images in [0, 1]."""
        x = self.backbone.normalize(images)
        for stage in self.backbone.stages[:self.config.frozen_stages]:
            x = stage(x)
        return x

    def stem_pyramid(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The stem applied to every scale of :func:`image_pyramid`."""
        return [self.stem(x) for x in image_pyramid(images, self.config.n_scales)]

    def top(self, stem_out: torch.Tensor) -> torch.Tensor:
        """The trainable stages: the last feature map ``[B, C, h, w]``."""
        x = stem_out
        for stage in self.backbone.stages[self.config.frozen_stages:]:
            x = stage(x)
        return x

    def cell_scores_from_stem(self, stems: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per-scale cell-score maps ``[B, 1, h_s, w_s]`` (not for ``rep``)."""
        if self.head is None:
            raise ConfigError("variant 'rep' has no cell scores; it scores pooled representations")
        return [self.head.score_map(self.score_norm(self.top(f))) for f in stems]

    def representations_from_stem(self, stems: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per-scale average-pooled features ``[B, C]`` (the representation Rep learns)."""
        return [self.top(f).mean(dim=(2, 3)) for f in stems]

    def score_from_stem(self, stems: list[torch.Tensor]) -> torch.Tensor:
        """Image scores ``[B]`` averaged over scales."""
        if self.head is None:
            return average_scales([representation_score(q) for q in self.representations_from_stem(stems)])
        return average_scales([self.head.pool(m) for m in self.cell_scores_from_stem(stems)])

    def loss_from_stem(self, stems: list[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        """Training loss of the configured variant (targets: 1 anomaly, 0 normal).

        ``patch_ds`` applies the criterion to every cell (each cell carries its image's label)
        and averages the per-scale losses; ``rep`` applies the representation deviation loss
        per scale and averages; the others apply the criterion to the image scores.
        """
        c = self.config
        if c.variant == "rep":
            return torch.stack([
                representation_deviation_loss(q, targets, margin=c.margin, n_reference=c.n_reference)
                for q in self.representations_from_stem(stems)
            ]).mean()
        if c.variant == "patch_ds":
            per_scale = []
            for m in self.cell_scores_from_stem(stems):
                cells = m.flatten(1)
                per_scale.append(self._criterion(cells.reshape(-1), targets.repeat_interleave(cells.shape[1])))
            return torch.stack(per_scale).mean()
        return self._criterion(self.score_from_stem(stems), targets)

    def cell_scores(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Per-scale cell-score maps of images in [0, 1]."""
        return self.cell_scores_from_stem(self.stem_pyramid(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.score_from_stem(self.stem_pyramid(images))

    def loss(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Training loss on images in [0, 1] (see :meth:`loss_from_stem`)."""
        return self.loss_from_stem(self.stem_pyramid(images), targets)


# --------------------------------------------------------------------------------------------
# augmentation and batched inference


@torch.no_grad()
def stem_features(model: DevNet, images: torch.Tensor, batch_size: int = 64,
                  device: str | torch.device = "cpu", progress: bool = False,
                  view_rows: Sequence[int] = ()) -> StemFeatures:
    """The frozen stem of ``model`` on every scale of ``images`` (uint8), computed once; the rows
    ``view_rows`` also get their 7 other dihedral views (:func:`osad_lib.components.stems.dihedral_views`).

    Only meaningful with ``frozen_stages > 0``: the stem's weights never change, so training and
    evaluation can start from these features (what makes the demo profile fit on a CPU).
    """
    if model.config.frozen_stages == 0:
        raise ConfigError("stem_features needs frozen_stages > 0; with a trainable backbone there is nothing to cache")
    model.eval()
    stems = StemFeatures(stem_outputs(model.stem_pyramid, images, batch_size, device, progress=progress))
    if not len(view_rows):
        return stems
    rows = [int(r) for r in view_rows]
    views = dihedral_views(model.stem_pyramid, images[torch.as_tensor(rows)], batch_size, device)
    return stems.with_views(dict(zip(rows, views, strict=True)))


@torch.no_grad()
def score_images(model: DevNet, images: torch.Tensor | StemFeatures, batch_size: int = 48,
                 device: str | torch.device = "cpu", amp: bool = True) -> np.ndarray:
    """Anomaly scores of images (uint8 or [0, 1] floats) or of their cached stem features.

    Batched, eval mode, no gradients → numpy ``[N]``.
    """
    was_training = model.training
    model.eval()
    out = []
    n = len(images) if isinstance(images, StemFeatures) else images.shape[0]
    for start in range(0, n, batch_size):
        rows = slice(start, start + batch_size)
        with autocast(str(device), amp):
            if isinstance(images, StemFeatures):
                scores = model.score_from_stem(images.take(rows, device))
            else:
                scores = model(to_float_images(images[rows], device))
        out.append(scores.float().reshape(-1).cpu())
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)


def stems_for_training(model: nn.Module, config: Any, train: ImageSet, device: str | torch.device,
                       stems: StemFeatures | None = None) -> StemFeatures | None:
    """The frozen stem's features of ``train`` for a training run with ``config`` (its
    ``frozen_stages``, ``dihedral`` and ``eval_batch_size``): ``stems`` when given (their rows must
    match ``train``), else computed once by :func:`stem_features` with the labelled anomalies'
    dihedral views when ``dihedral``; None when nothing is frozen. DevNet and the image baselines
    share it."""
    if config.frozen_stages and stems is None:
        anomalies = torch.nonzero(train.labels.cpu() == 1).flatten().tolist() if config.dihedral else ()
        stems = stem_features(model, train.images, config.eval_batch_size, device, view_rows=anomalies)
    if stems is not None and len(stems) != len(train):
        raise ConfigError(f"stems has {len(stems)} rows but the training set {len(train)}; compute them for this ImageSet")
    return stems


def train_devnet(
    config: DevNetConfig,
    train: ImageSet,
    seed: int,
    device: str = "cpu",
    checkpoint: Path | None = None,
    progress: bool = True,
    desc: str = "devnet",
    stems: StemFeatures | None = None,
) -> tuple[DevNet, list[float]]:
    """Build and train a DevNet on ``train`` (labels 0 normal/contamination, 1 labelled anomaly).

    Everything is seeded from ``seed`` (the new layers' weights, batch sampling, rotations,
    reference draws); batches hold ``batch_size/2`` normals then ``batch_size/2`` anomalies
    (``docs/official_code/shared.md`` "Balanced batch sampler"), each image rotated by
    U(−``rotation_degrees``, +``rotation_degrees``). Training runs in
    :func:`osad_lib.training.fit` (checkpoint/resume, NaN check).

    With ``frozen_stages > 0`` the frozen stem runs once over ``train`` (or ``stems`` is used:
    precomputed :func:`stem_features` whose rows match ``train``), a rotation is applied to the
    stem's feature maps (nearest, same angle at every scale) instead of the images, and
    ``dihedral`` draws among the rows' precomputed dihedral views (computed here for the labelled
    anomalies when ``stems`` is not given).
    Returns (model in eval mode, mean loss per epoch).
    """
    seed_everything(seed)
    model = DevNet(config).to(device)
    stems = stems_for_training(model, config, train, device, stems)
    labels = train.labels.cpu()
    sampler = BalancedBatchSampler(
        groups={"normal": torch.nonzero(labels == 0).flatten().tolist(),
                "anomaly": torch.nonzero(labels == 1).flatten().tolist()},
        slots={"normal": config.batch_size // 2, "anomaly": config.batch_size // 2},
        seed=seed,
    )
    targets = labels.float()

    def loss_fn(net: DevNet, indices: list[int]) -> torch.Tensor:
        y = targets[indices].to(device)
        if stems is None:
            images = to_float_images(train.images[indices], device)  # uint8 to the device, then augment there
            if config.dihedral:
                images = random_dihedral(images)
            return net.loss(random_rotation(images, config.rotation_degrees), y)
        angles = random_angles(len(indices), config.rotation_degrees)
        feats = stems.sample(indices, device) if config.dihedral else stems.take(indices, device)
        if config.rotation_degrees > 0:
            feats = [rotate(f, angles) for f in feats]
        return net.loss_from_stem(feats, y)

    history = fit(model, loss_fn, sampler, config.train_config(progress=progress, desc=desc),
                  device=device, checkpoint=checkpoint)
    return model.eval(), history


__all__ = [
    "DEVNET_CRITERIA", "VARIANTS", "DevNet", "DevNetConfig", "score_images", "stem_features", "train_devnet",
]
