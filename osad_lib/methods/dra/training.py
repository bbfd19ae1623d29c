"""Training and scoring DRA: :func:`train_dra`, :class:`TrainedDRA`, :func:`score_dra`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from osad_lib.data.tensors import ImageSet
from osad_lib.losses.deviation import criterion as make_criterion
from osad_lib.components.backbones import build_backbone
from osad_lib.components.stems import (
    StemFeatures, dihedral_views, stem_outputs,
    to_float_images,
)
from osad_lib.seeding import seed_everything
from osad_lib.training import TrainConfig, autocast, fit
from osad_lib.methods.dra.config import NORMAL, SEEN, DRAConfig
from osad_lib.methods.dra.networks import DRA, anomaly_score, dra_loss
from osad_lib.methods.dra.training_data import DRATrainingData, pseudo_stem_pool



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
