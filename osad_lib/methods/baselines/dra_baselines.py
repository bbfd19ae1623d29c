"""Baselines of the DRA tables on DRA's backbone and pipeline: SAOE and MLEP (DRA §4.1, App. B.2).

Both reuse DRA's body (:class:`BackboneOnly`: backbone, frozen-stem/top split, image pyramid),
its training data (:class:`osad_lib.methods.dra.training_data.DRATrainingData`: balanced 2B//3 + B − 2B//3
batches, rotation, cached stems), its schedule and optimiser
(:func:`osad_lib.methods.dra.training.train_config`) and one scoring loop (:class:`TrainedBaseline`).

**SAOE** — "synthetic anomalies + outlier exposure": one *multi-class* head (normal, seen
anomaly, pseudo anomaly) on the plain feature map, trained with cross entropy, plus Hendrycks
et al.'s outlier-exposure term when an external image set is given (the paper uses MVTec AD or
LAG with the target's classes removed). It is also Fig. 3's *non-disentangled* model (three
classes in one head, no outlier exposure). The head scores every feature-map cell with a 1×1
convolution (3 logits per cell, DRA's "plain feature learning") and pools each class's cell
logits with the top-K mean (K = 10 %), averaged over the pyramid scales. Outlier exposure:
λ · mean over outliers of the cross entropy to the uniform distribution, λ = 0.5 (Hendrycks
et al. 2019). Anomaly score: 1 − p(normal). Pseudo anomalies are DRA's (same-image CutPaste);
implementation details beyond App. B.2 (pooling, λ, the score) are ours and documented here.

**MLEP** — margin-learning embedded prediction (Liu et al., IJCAI 2019, DRA ref. [30]).
*From the DRA paper:* MLEP and DevNet "address the same open-set AD problem" as
DRA; MLEP's original is for video and DRA "adapt[s] it to image tasks by modifying the
backbone network and training settings to be consistent with DRA" (§4.1, App. B.2): ResNet-18,
DRA's schedule, batches and data. Nothing more is published about the adaptation
(the official repository has none: ``docs/official_code/dra.md``
"Entry points and defaults of the code"). *From the MLEP paper (video)* — its text
is not among the project's paper files, so this summary of the published method was not
checked against it here: an encoder → ConvLSTM → decoder predicts the next frame; the
prediction (intensity) loss is applied to normal clips only — a larger error is never enforced on anomalies —, and a margin (triplet)
loss on the encoder's latent features of anchor/positive normal clips and negative abnormal
clips pulls normals together and pushes the labelled anomalies at least a margin away; the
test score is the prediction error (PSNR-based regularity). *Our image adaptation* (every
choice below is ours): there is no time axis, so "prediction" becomes reconstruction of the
trainable part's input — the (normalised) image when the whole backbone is fine-tuned (the
paper's setting), the frozen stem's feature map when ``frozen_stages`` > 0 —; the encoder is
DRA's trainable backbone followed by a 1×1 convolution to ``embed_dim`` = 128 channels
(+ ReLU); the decoder is log2(stride) × (nearest 2× upsampling, 3×3 convolution, ReLU),
halving the channels down to 16, then a convolution to the target's channels. The margin
loss is the batch-all triplet loss on the L2-normalised, spatially averaged latent map
(averaged over pyramid scales), anchors and positives the batch's normals, negatives its
labelled anomalies: mean over (a ≠ p, n) of max(0, ‖f_a − f_p‖² − ‖f_a − f_n‖² + m),
m = 1.0 (squared distances of unit vectors lie in [0, 4]); total loss = mean squared
reconstruction error of the batch's normals + λ · margin loss, λ = 1.0. No pseudo anomalies
(MLEP has none), no gradient or adversarial prediction losses. Score = the image's mean
squared reconstruction error, averaged over pyramid scales (for one image this ranks like
−PSNR; MLEP's per-video normalisation has no image counterpart).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from osad_lib.data.tensors import ImageSet
from osad_lib.components.backbones import build_backbone
from osad_lib.components.stems import StemFeatures, random_rotation, to_float_images
from osad_lib.methods.dra import (
    DRA, NORMAL, SEEN, DRAConfig, DRATrainingData, cached_training_data, to_device, train_config,
)
from osad_lib.components.heads import average_scales, top_k_mean
from osad_lib.seeding import seed_everything
from osad_lib.training import autocast, fit
from osad_lib.validate import ConfigError

#: Classes of the SAOE head, in logit order (= DRA's labels 0, 1, 2).
SAOE_CLASSES = ("normal", "seen", "pseudo")
#: Weight of the outlier-exposure term (Hendrycks et al. 2019, λ = 0.5).
OE_WEIGHT = 0.5
#: MLEP adaptation (ours, module docstring): latent channels, triplet margin, margin-loss weight.
MLEP_EMBED_DIM = 128
MLEP_MARGIN = 1.0
MLEP_MARGIN_WEIGHT = 1.0


class BackboneOnly(DRA):
    """DRA's backbone, frozen-stem/top split and image pyramid without DRA's heads (the
    baselines' shared body; subclasses add their own head and ``forward`` → ``{"score": …}``)."""

    def __init__(self, backbone: nn.Module, n_scales: int = 2, frozen_stages: int = 0):
        super().__init__(backbone, heads=("seen",), n_scales=n_scales, frozen_stages=frozen_stages)
        self.heads, self.head_names = nn.ModuleDict(), ()

    @property
    def needs_references(self) -> bool:
        return False


# --------------------------------------------------------------------------------------------
# SAOE


class SAOE(BackboneOnly):
    """DRA's backbone/stem/top with one three-class top-K MIL head instead of DRA's heads."""

    def __init__(self, backbone: nn.Module, topk_ratio: float = 0.1, n_scales: int = 2, frozen_stages: int = 0):
        super().__init__(backbone, n_scales=n_scales, frozen_stages=frozen_stages)
        self.topk_ratio = float(topk_ratio)
        self.classifier = nn.Conv2d(backbone.out_channels, len(SAOE_CLASSES), kernel_size=1)

    def logits(self, inputs: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Class logits ``[B, 3]`` of images (or per-scale stem outputs): per class, the top-K
        mean of its cell logits, averaged over scales."""
        per_scale = []
        for stem in self.as_stems(inputs):
            cells = self.classifier(self.top(stem))  # [B, 3, h, w]
            b, k = cells.shape[:2]
            per_scale.append(top_k_mean(cells.reshape(b * k, -1), self.topk_ratio).reshape(b, k))
        return average_scales(per_scale)

    def forward(self, inputs: torch.Tensor | Sequence[torch.Tensor], references: Any = None,
                labels: Any = None) -> dict[str, torch.Tensor]:
        """``{"score": 1 − p(normal)}`` (the interface of :class:`DRA`)."""
        return {"score": 1.0 - self.logits(inputs).float().softmax(dim=1)[:, 0]}


def outlier_exposure_loss(logits: torch.Tensor) -> torch.Tensor:
    """Cross entropy of outlier logits ``[B, K]`` to the uniform distribution (OE), batch mean."""
    return -logits.float().log_softmax(dim=1).mean(dim=1).mean()


def saoe_loss(model: SAOE, images: torch.Tensor | list[torch.Tensor], labels: torch.Tensor,
              outliers: torch.Tensor | None = None, oe_weight: float = OE_WEIGHT) -> torch.Tensor:
    """Three-class cross entropy on the batch (+ λ · OE on ``outliers`` when given; batch and
    outliers go through the network together, as in Hendrycks et al.'s code)."""
    n = len(labels)
    if outliers is not None and isinstance(images, list):
        raise ConfigError("outlier exposure needs image batches; use cache_stems=False with outliers")
    logits = model.logits(torch.cat([images, outliers]) if outliers is not None else images)
    loss = F.cross_entropy(logits[:n].float(), labels.long())
    if outliers is not None and len(outliers):
        loss = loss + oe_weight * outlier_exposure_loss(logits[n:])
    return loss


# --------------------------------------------------------------------------------------------
# MLEP (our image adaptation; module docstring)


class MLEP(BackboneOnly):
    """Encoder (DRA's trainable backbone + 1×1 conv to ``embed_dim``) and decoder that
    reconstructs the trainable part's input at every pyramid scale (module docstring)."""

    def __init__(self, backbone: nn.Module, n_scales: int = 2, frozen_stages: int = 0,
                 embed_dim: int = MLEP_EMBED_DIM):
        super().__init__(backbone, n_scales=n_scales, frozen_stages=frozen_stages)
        self.bottleneck = nn.Sequential(nn.Conv2d(backbone.out_channels, embed_dim, kernel_size=1), nn.ReLU())
        channels, stride = self._target_shape()
        layers: list[nn.Module] = []
        width = embed_dim
        for _ in range(round(math.log2(stride))):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, max(width // 2, 16), 3, padding=1),
                       nn.ReLU()]
            width = max(width // 2, 16)
        layers.append(nn.Conv2d(width, channels, kernel_size=3 if layers else 1, padding=1 if layers else 0))
        self.decoder = nn.Sequential(*layers)

    @torch.no_grad()
    def _target_shape(self, size: int = 64) -> tuple[int, int]:
        """(channels, stride of the top's output relative to it) of the reconstruction target."""
        was_training = self.training
        self.eval()
        stem = self.stem_pyramid(torch.zeros(1, 3, size, size))[0]
        top = self.top(stem)
        self.train(was_training)
        return stem.shape[1], max(stem.shape[-1] // top.shape[-1], 1)

    def encode(self, inputs: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(embeddings [B, embed_dim], errors [B])``: the L2-normalised spatial mean of the
        latent map and the mean squared reconstruction error, each averaged over scales."""
        pooled, errors = [], []
        for stem in self.as_stems(inputs):
            latent = self.bottleneck(self.top(stem))
            recon = self.decoder(latent)
            if recon.shape[-2:] != stem.shape[-2:]:
                recon = F.interpolate(recon, size=stem.shape[-2:], mode="bilinear", align_corners=False)
            pooled.append(latent.float().mean(dim=(2, 3)))
            errors.append((recon.float() - stem.detach().float()).pow(2).flatten(1).mean(dim=1))
        return F.normalize(average_scales(pooled), dim=1), average_scales(errors)

    def forward(self, inputs: torch.Tensor | Sequence[torch.Tensor], references: Any = None,
                labels: Any = None) -> dict[str, torch.Tensor]:
        """``{"score": reconstruction error}`` (the interface of :class:`DRA`)."""
        return {"score": self.encode(inputs)[1]}


def triplet_margin_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = MLEP_MARGIN) -> torch.Tensor:
    """Batch-all triplet loss on unit ``embeddings`` ``[B, D]``: mean over anchors a and
    positives p ≠ a among the normals (label 0) and negatives n among the labelled anomalies
    (label 1) of max(0, ‖f_a − f_p‖² − ‖f_a − f_n‖² + margin); 0 without such a triplet."""
    normal, anomalies = embeddings[labels == NORMAL], embeddings[labels == SEEN]
    if len(normal) < 2 or len(anomalies) == 0:
        return embeddings.sum() * 0.0
    positive = 2.0 - 2.0 * normal @ normal.T  # squared distances of unit vectors
    negative = 2.0 - 2.0 * normal @ anomalies.T
    hinge = F.relu(positive[:, :, None] - negative[:, None, :] + margin)  # [a, p, n]
    off_diagonal = ~torch.eye(len(normal), dtype=torch.bool, device=embeddings.device)
    return hinge[off_diagonal].mean()


def mlep_loss(model: MLEP, inputs: torch.Tensor | list[torch.Tensor], labels: torch.Tensor,
              margin: float = MLEP_MARGIN, margin_weight: float = MLEP_MARGIN_WEIGHT) -> torch.Tensor:
    """Reconstruction error of the batch's normals (never of anomalies, as MLEP) + λ · triplet margin loss."""
    embeddings, errors = model.encode(inputs)
    normal = labels == NORMAL
    prediction = errors[normal].mean() if normal.any() else errors.sum() * 0.0
    return prediction + margin_weight * triplet_margin_loss(embeddings, labels, margin)


# --------------------------------------------------------------------------------------------
# shared training and scoring


@dataclass
class TrainedBaseline:
    """A trained baseline (SAOE or MLEP) with its config and per-epoch losses."""

    model: BackboneOnly
    config: DRAConfig
    history: list[float]
    device: str = "cpu"

    @torch.no_grad()
    def score(self, images: torch.Tensor | StemFeatures) -> dict[str, np.ndarray]:
        """``{"score": …}`` of uint8 images or cached stem features (the model's ``forward``)."""
        self.model.eval()
        out = []
        for start in range(0, len(images), self.config.eval_batch_size):
            rows = slice(start, start + self.config.eval_batch_size)
            batch = (images.take(rows, self.device) if isinstance(images, StemFeatures)
                     else to_float_images(images[rows], self.device))
            with autocast(str(self.device)):
                scores = self.model(batch)["score"]
            out.append(scores.float().cpu())
        return {"score": torch.cat(out).numpy()}


def _train(model: BackboneOnly, step_loss: Callable[[nn.Module, Any, torch.Tensor], torch.Tensor],
           train: ImageSet, config: DRAConfig, seed: int, device: str, checkpoint: Path | None, progress: bool,
           desc: str, stems: StemFeatures | None, pseudo_stems: StemFeatures | None) -> TrainedBaseline:
    """DRA's batches (cached stems with ``config.cache_stems``) and schedule for ``model``;
    ``step_loss(net, inputs on device, labels on device)`` is the method's loss."""
    model = model.to(device)
    data = cached_training_data(model, train, config, seed, stems, pseudo_stems, device) if config.cache_stems \
        else DRATrainingData(train, config, seed)

    def loss_fn(net: nn.Module, indices: list[int]) -> torch.Tensor:
        inputs, labels = data.batch(indices)
        return step_loss(net, to_device(inputs, device), labels.to(device))

    history = fit(model, loss_fn, data.sampler(), train_config(config, progress, desc), device, checkpoint=checkpoint)
    return TrainedBaseline(model, config, history, device)


def train_saoe(train: ImageSet, config: DRAConfig, seed: int, device: str = "cpu", outliers: ImageSet | None = None,
               checkpoint: Path | None = None, progress: bool = True, desc: str = "saoe",
               stems: StemFeatures | None = None, pseudo_stems: StemFeatures | None = None,
               oe_weight: float = OE_WEIGHT) -> TrainedBaseline:
    """Train SAOE with DRA's batches (normal/pseudo slots + seen slots, rotation) and schedule.

    ``outliers`` (an ImageSet of external normals, e.g. another dataset's) adds outlier
    exposure: each step draws as many outliers as the batch has seen-anomaly slots (rotated
    like the training images). ``config.pseudo_source`` must be an augmentation (the external
    set is used for OE here, not as pseudo anomalies). ``stems``/``pseudo_stems``: as
    :func:`osad_lib.methods.dra.training.train_dra` with ``config.cache_stems``.
    """
    seed_everything(seed)
    model = SAOE(build_backbone(config.backbone, config.weights), config.topk_ratio, config.n_scales,
                 config.frozen_stages)
    pool = torch.as_tensor(outliers.images) if outliers is not None else None

    def step_loss(net: nn.Module, inputs: Any, labels: torch.Tensor) -> torch.Tensor:
        extra = None
        if pool is not None:
            pick = torch.randint(len(pool), (config.n_anomaly_slots,))
            extra = random_rotation(to_float_images(pool[pick]), config.rotation_degrees).to(device)
        return saoe_loss(net, inputs, labels, extra, oe_weight)

    return _train(model, step_loss, train, config, seed, device, checkpoint, progress, desc, stems, pseudo_stems)


def train_mlep(train: ImageSet, config: DRAConfig, seed: int, device: str = "cpu", outliers: ImageSet | None = None,
               checkpoint: Path | None = None, progress: bool = True, desc: str = "mlep",
               stems: StemFeatures | None = None, pseudo_stems: StemFeatures | None = None,
               margin: float = MLEP_MARGIN, margin_weight: float = MLEP_MARGIN_WEIGHT) -> TrainedBaseline:
    """Train MLEP (our image adaptation, module docstring) with DRA's batches, rotation and
    schedule, without pseudo anomalies (``pseudo_prob`` set to 0). ``outliers`` is not used by
    MLEP (it is in the signature shared with :func:`train_saoe`); ``stems``/``pseudo_stems``:
    as :func:`osad_lib.methods.dra.training.train_dra` with ``config.cache_stems``."""
    if outliers is not None:
        raise ConfigError("MLEP uses no outlier set; pass outliers=None")
    config = replace(config, pseudo_prob=0.0)
    seed_everything(seed)
    model = MLEP(build_backbone(config.backbone, config.weights), config.n_scales, config.frozen_stages)

    def step_loss(net: nn.Module, inputs: Any, labels: torch.Tensor) -> torch.Tensor:
        return mlep_loss(net, inputs, labels, margin, margin_weight)

    return _train(model, step_loss, train, config, seed, device, checkpoint, progress, desc, stems, pseudo_stems)


__all__ = [
    "MLEP", "MLEP_EMBED_DIM", "MLEP_MARGIN", "MLEP_MARGIN_WEIGHT", "OE_WEIGHT", "SAOE", "SAOE_CLASSES",
    "BackboneOnly", "TrainedBaseline", "mlep_loss", "outlier_exposure_loss", "saoe_loss", "train_mlep", "train_saoe",
    "triplet_margin_loss",
]
