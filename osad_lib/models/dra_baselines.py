"""Baselines of the DRA tables on DRA's backbone and pipeline: SAOE (DRA App. B.2).

**SAOE** — "synthetic anomalies + outlier exposure": one *multi-class* head (normal, seen
anomaly, pseudo anomaly) on the plain feature map, trained with cross entropy, plus Hendrycks
et al.'s outlier-exposure term when an external image set is given (the paper uses MVTec AD or
LAG with the target's classes removed). It is also Fig. 3's *non-disentangled* model (three
classes in one head, no outlier exposure). The head scores every feature-map cell with a 1×1
convolution (3 logits per cell, DRA's "plain feature learning") and pools each class's cell
logits with the top-K mean (K = 10 %), averaged over the pyramid scales. Outlier exposure:
λ · mean over outliers of the cross entropy to the uniform distribution, λ = 0.5 (Hendrycks
et al. 2019). Anomaly score: 1 − p(normal). Batches, pseudo anomalies (same-image CutPaste),
rotation, schedule and optimiser are DRA's (:class:`osad_lib.models.dra.DRATrainingData`,
:func:`osad_lib.models.dra.train_config`); implementation details beyond App. B.2 (pooling,
λ, the score) are ours and documented here.

MLEP (margin-learning embedded prediction, adapted from video) is not implemented.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from osad_lib.data.tensors import ImageSet
from osad_lib.models.backbones import build_backbone
from osad_lib.models.devnet import StemFeatures, random_rotation, to_float_images
from osad_lib.models.dra import DRA, DRAConfig, DRATrainingData, cached_training_data, to_device, train_config
from osad_lib.models.heads import average_scales, top_k_mean
from osad_lib.seeding import seed_everything
from osad_lib.training import autocast, fit
from osad_lib.validate import ConfigError

#: Classes of the SAOE head, in logit order (= DRA's labels 0, 1, 2).
SAOE_CLASSES = ("normal", "seen", "pseudo")
#: Weight of the outlier-exposure term (Hendrycks et al. 2019, λ = 0.5).
OE_WEIGHT = 0.5


class SAOE(DRA):
    """DRA's backbone/stem/top with one three-class top-K MIL head instead of DRA's heads."""

    def __init__(self, backbone: nn.Module, topk_ratio: float = 0.1, n_scales: int = 2, frozen_stages: int = 0):
        super().__init__(backbone, heads=("seen",), topk_ratio=topk_ratio, n_scales=n_scales,
                         frozen_stages=frozen_stages)
        self.heads, self.head_names = nn.ModuleDict(), ()
        self.topk_ratio = float(topk_ratio)
        self.classifier = nn.Conv2d(backbone.out_channels, len(SAOE_CLASSES), kernel_size=1)

    @property
    def needs_references(self) -> bool:
        return False

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


@dataclass
class TrainedSAOE:
    model: SAOE
    config: DRAConfig
    history: list[float]
    device: str = "cpu"

    @torch.no_grad()
    def score(self, images: torch.Tensor | StemFeatures) -> dict[str, np.ndarray]:
        """``{"score": 1 − p(normal)}`` of uint8 images or cached stem features."""
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


def train_saoe(train: ImageSet, config: DRAConfig, seed: int, device: str = "cpu", outliers: ImageSet | None = None,
               checkpoint: Path | None = None, progress: bool = True, desc: str = "saoe",
               stems: StemFeatures | None = None, pseudo_stems: StemFeatures | None = None,
               oe_weight: float = OE_WEIGHT) -> TrainedSAOE:
    """Train SAOE with DRA's batches (normal/pseudo slots + seen slots, rotation) and schedule.

    ``outliers`` (an ImageSet of external normals, e.g. another dataset's) adds outlier
    exposure: each step draws as many outliers as the batch has seen-anomaly slots (rotated
    like the training images). ``config.pseudo_source`` must be an augmentation (the external
    set is used for OE here, not as pseudo anomalies). ``stems``/``pseudo_stems``: as
    :func:`osad_lib.models.dra.train_dra` with ``config.cache_stems``.
    """
    seed_everything(seed)
    model = SAOE(build_backbone(config.backbone, config.weights), config.topk_ratio, config.n_scales,
                 config.frozen_stages).to(device)
    data = cached_training_data(model, train, config, seed, stems, pseudo_stems, device) if config.cache_stems \
        else DRATrainingData(train, config, seed)
    pool = torch.as_tensor(outliers.images) if outliers is not None else None

    def loss_fn(net: nn.Module, indices: list[int]) -> torch.Tensor:
        inputs, labels = data.batch(indices)
        extra = None
        if pool is not None:
            pick = torch.randint(len(pool), (config.n_anomaly_slots,))
            extra = random_rotation(to_float_images(pool[pick]), config.rotation_degrees).to(device)
        return saoe_loss(net, to_device(inputs, device), labels.to(device), extra, oe_weight)

    history = fit(model, loss_fn, data.sampler(), train_config(config, progress, desc), device, checkpoint=checkpoint)
    return TrainedSAOE(model, config, history, device)


__all__ = ["OE_WEIGHT", "SAOE", "SAOE_CLASSES", "TrainedSAOE", "outlier_exposure_loss", "saoe_loss", "train_saoe"]
