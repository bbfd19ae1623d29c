"""KDAD — Salehi et al., *Multiresolution Knowledge Distillation for Anomaly Detection* (CVPR 2021).

The unsupervised baseline of DevNet Tables 2–4 and DRA Tables 1–2 (rows with ``n_shots=0``).
Written from the method as the paper publishes it, from our knowledge of the paper: neither the
paper's text nor the authors' code was at hand when this was written, so the details listed
under "choices" below are ours and are all fields of :class:`KDADConfig`.

What the paper specifies and this module follows (paper §3):

* **Source network** (teacher): VGG-16 pre-trained on ImageNet, frozen. It is built by
  :func:`osad_lib.components.backbones.build_backbone` (``"vgg16"``) under the project's weight rules:
  the ImageNet file from the torch hub cache (``vgg16-397923af.pth``) or a local state-dict
  file, downloaded only with ``OSAD_ALLOW_DOWNLOAD=1``; a missing file is a one-line error,
  never a random initialisation (``weights="random"`` only when asked for, e.g. in tests).
* **Cloner** (student): a smaller VGG-like network trained from scratch, on the training normals
  only, to reproduce the source's activations at several *critical layers* of increasing depth
  and decreasing resolution — the "multiresolution" knowledge (:class:`Cloner`).
* **Loss** over the critical layers CP_i (a^{CP_i}: the activations there, N_i their number of
  units; s = source, c = cloner):

  - value loss  L_val = Σ_i (1/N_i) Σ_j (a_s^{CP_i}(j) − a_c^{CP_i}(j))²,
  - direction loss  L_dir = Σ_i [1 − vec(a_s^{CP_i})ᵀ vec(a_c^{CP_i}) / (‖vec(a_s^{CP_i})‖ ‖vec(a_c^{CP_i})‖)],
  - total  L_total = L_val + λ · L_dir  (:func:`distillation_losses`).

* **Anomaly score**: L_total of the test image (:meth:`KDAD.forward`): the cloner only learned to
  mimic the source on normal images, so the two disagree on anomalies.
* **Localization**: the gradient of L_total with respect to the input image, smoothed with a
  Gaussian filter and a morphological opening (:func:`anomaly_maps`).

Choices (where the published description leaves a detail open or we could not verify it):

* critical layers = the outputs of VGG-16's convolution blocks 2, 3, 4 and 5, each after its max
  pooling (strides 4, 8, 16, 32; 128, 256, 512, 512 channels) — the four stages of the
  ``vgg16`` :class:`~osad_lib.components.backbones.Backbone`;
* cloner = VGG-16's block structure (2-2-3-3-3 3×3 convolutions, each followed by a ReLU, max
  pooling closing each block; no batch normalisation, like its source) with ``cloner_width`` = 16
  filters per convolution, except the last convolution of blocks 2–5, which keeps the source's
  width so that its activations compare with the source's without a projection (0.35 M
  parameters against the source's 14.7 M convolutional ones). ``cloner_batch_norm=True`` adds
  batch normalisation; the cloner then starts at unit-variance activations whatever the source's
  scale (on a random-weight source, ~30× larger than the source's, which it first has to unlearn);
* λ = 0.01; Adam, learning rate 1e-3, no weight decay, no schedule, no gradient clipping;
  batches of 64 training normals; 200 epochs of one pass over the training normals; inputs
  resized to 128 × 128, no augmentation;
* localization maps: |∂L_total/∂x| summed over colour channels and normalised as DevNet's maps
  (:func:`osad_lib.explain.saliency_maps`), a Gaussian of σ = 4 px at the input size, then a
  grey opening with a 3 × 3 window.

Training runs in the project's loop (:func:`osad_lib.training.fit`): checkpoint/resume, bf16
autocast and ``channels_last`` on CUDA, progress bars, a NaN loss stops the run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.ndimage import grey_opening
from torch import nn

from osad_lib import explain
from osad_lib.data.tensors import ImageSet
from osad_lib.components.backbones import build_backbone
from osad_lib.seeding import seed_everything
from osad_lib.training import BalancedBatchSampler, TrainConfig, fit
from osad_lib.settings import apply_overrides, require_at_least
from osad_lib.validate import ConfigError, choose

#: Source networks the cloner layout is defined for.
SOURCES = ("vgg16",)
#: VGG-16's convolutions per block (2-2-3-3-3) and the source's width at each block's last one.
VGG16_BLOCKS = (2, 2, 3, 3, 3)
VGG16_WIDTHS = (64, 128, 256, 512, 512)
#: The cloner's blocks grouped like the source's stages (blocks 1–2, 3, 4, 5): one critical layer per stage.
STAGE_BLOCKS = ((0, 1), (2,), (3,), (4,))


@dataclass(frozen=True)
class KDADConfig:
    """KDAD's settings; the defaults are those of the module docstring.

    ``backbone``/``weights``: the source network and its weights (``"imagenet"``, ``"random"`` or
    a state-dict file). ``cloner_width``: filters of the cloner's narrow convolutions;
    ``cloner_batch_norm``: batch normalisation after each of its convolutions. ``direction_weight``:
    λ of L_total. ``steps_per_epoch``: 0 = one pass over the training normals per epoch.
    ``map_sigma``: Gaussian σ (pixels at ``image_size``) and ``map_opening``: window of the grey
    opening of the localization maps (1 = none).
    """

    backbone: str = "vgg16"
    weights: str = "imagenet"
    image_size: int = 128
    cloner_width: int = 16
    cloner_batch_norm: bool = False
    direction_weight: float = 0.01
    lr: float = 1e-3
    weight_decay: float = 0.0
    epochs: int = 200
    steps_per_epoch: int = 0
    batch_size: int = 64
    eval_batch_size: int = 64
    amp: bool = True
    map_sigma: float = 4.0
    map_opening: int = 3

    def __post_init__(self) -> None:
        choose("KDAD source network", self.backbone, SOURCES)
        require_at_least(self, ("image_size", "cloner_width", "epochs", "batch_size", "eval_batch_size", "map_opening"))
        if self.image_size % 32:
            raise ConfigError(f"KDADConfig.image_size must be a multiple of 32 (five 2x2 poolings), got {self.image_size}")
        if self.steps_per_epoch < 0:
            raise ConfigError(f"KDADConfig.steps_per_epoch must be >= 0 (0: one pass over the normals), got {self.steps_per_epoch}")
        if self.direction_weight < 0:
            raise ConfigError(f"KDADConfig.direction_weight (lambda) must be >= 0, got {self.direction_weight}")

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any]) -> KDADConfig:
        """``overrides`` on the defaults (:func:`osad_lib.settings.apply_overrides`)."""
        return apply_overrides(cls, overrides, "KDAD")

    def steps_for(self, n_normals: int) -> int:
        """Optimisation steps per epoch: ``steps_per_epoch``, or one pass over ``n_normals``."""
        return self.steps_per_epoch or max(1, math.ceil(n_normals / self.batch_size))

    def train_images(self, n_normals: int) -> int:
        """Images passed forward and backward in training (for planning)."""
        return self.epochs * self.steps_for(n_normals) * self.batch_size

    def train_config(self, n_normals: int, progress: bool = True, desc: str = "kdad") -> TrainConfig:
        return TrainConfig(epochs=self.epochs, steps_per_epoch=self.steps_for(n_normals), lr=self.lr,
                           weight_decay=self.weight_decay, lr_step_size=self.epochs, lr_gamma=1.0,
                           scheduler_step_at="epoch_end", grad_clip=None, amp=self.amp, progress=progress, desc=desc)


def cloner_layout(width: int) -> tuple[tuple[int, ...], ...]:
    """Output channels of the cloner's convolutions, per VGG-16 block: ``width`` everywhere except
    the last convolution of blocks 2–5 (the critical layers), which has the source's width."""
    return tuple(
        tuple([width] * (n - 1) + [VGG16_WIDTHS[b] if b > 0 else width])
        for b, n in enumerate(VGG16_BLOCKS)
    )


class Cloner(nn.Module):
    """The cloner: VGG-16's blocks with narrow convolutions (module docstring); ``forward`` returns
    the output of each stage (blocks 1–2, 3, 4, 5), i.e. its activations at the critical layers."""

    def __init__(self, width: int = 16, batch_norm: bool = False):
        super().__init__()
        layout, stages, channels = cloner_layout(width), [], 3
        for blocks in STAGE_BLOCKS:
            layers: list[nn.Module] = []
            for block in blocks:
                for out in layout[block]:
                    layers.append(nn.Conv2d(channels, out, kernel_size=3, padding=1))
                    if batch_norm:
                        layers.append(nn.BatchNorm2d(out))
                    layers.append(nn.ReLU(inplace=True))
                    channels = out
                layers.append(nn.MaxPool2d(2))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


def distillation_losses(source: Sequence[torch.Tensor], cloner: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the value loss L_val and the direction loss L_dir summed over the critical
    layers (module docstring), in float32 → two tensors ``[B]``."""
    if len(source) != len(cloner):
        raise ValueError(f"{len(source)} source layers but {len(cloner)} cloner layers")
    value = direction = 0.0
    for s, c in zip(source, cloner):
        if s.shape != c.shape:
            raise ValueError(f"critical layer shapes differ: source {tuple(s.shape)}, cloner {tuple(c.shape)}")
        s, c = s.float().flatten(1), c.float().flatten(1)
        value = value + ((s - c) ** 2).mean(dim=1)
        direction = direction + 1.0 - nn.functional.cosine_similarity(s, c, dim=1, eps=1e-8)
    return value, direction


class KDAD(nn.Module):
    """Frozen source + trainable cloner; ``forward(images in [0, 1])`` = L_total per image (the score)."""

    def __init__(self, config: KDADConfig):
        super().__init__()
        self.config = config
        self.source = build_backbone(config.backbone, config.weights).freeze()
        self.cloner = Cloner(config.cloner_width, config.cloner_batch_norm)

    def activations(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(source, cloner) activations at the critical layers; both see the source's input
        normalisation. No ``no_grad`` on the source: localization differentiates through it."""
        x = self.source.normalize(images)
        source, h = [], x
        for stage in self.source.stages:
            h = stage(h)
            source.append(h)
        return source, self.cloner(x)

    def losses(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(L_val, L_dir) per image."""
        return distillation_losses(*self.activations(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Anomaly scores ``[B]`` = L_total = L_val + λ L_dir of each image."""
        value, direction = self.losses(images)
        return value + self.config.direction_weight * direction


def train_kdad(
    config: KDADConfig,
    train: ImageSet,
    seed: int,
    device: str = "cpu",
    checkpoint: Path | None = None,
    progress: bool = True,
    desc: str = "kdad",
) -> tuple[KDAD, list[float]]:
    """Train the cloner on the normals of ``train`` (label 0; labelled anomalies are ignored:
    KDAD is unsupervised); return (model in eval mode, mean L_total per epoch). Seeded from ``seed``."""
    seed_everything(seed)
    model = KDAD(config).to(device)
    normals = torch.nonzero(train.labels == 0).flatten().tolist()
    if not normals:
        raise ConfigError("KDAD trains on normal images; the training split has none")
    sampler = BalancedBatchSampler({"normal": normals}, {"normal": config.batch_size}, seed)

    def loss_fn(net: KDAD, indices: list[int]) -> torch.Tensor:
        return net(train.batch(indices).to(device)).mean()

    history = fit(model, loss_fn, sampler, config.train_config(len(normals), progress, desc), device=device,
                  checkpoint=checkpoint)
    return model.eval(), history


def anomaly_maps(model: KDAD, images: torch.Tensor, device: str | torch.device = "cpu") -> np.ndarray:
    """Localization maps ``[N, H, W]`` in [0, 1]: gradient maps of L_total
    (:func:`osad_lib.explain.saliency_maps`, Gaussian σ = ``map_sigma`` px at the input size),
    then a grey opening with a ``map_opening``² window (module docstring)."""
    config = model.config
    maps = explain.saliency_maps(model.eval(), images, config.eval_batch_size, device, sigma=config.map_sigma,
                                 sigma_reference_size=None)
    if config.map_opening > 1:
        maps = np.stack([grey_opening(m, size=(config.map_opening, config.map_opening)) for m in maps]) if len(maps) else maps
    return maps.astype(np.float32)


__all__ = [
    "Cloner", "KDAD", "KDADConfig", "SOURCES", "anomaly_maps", "cloner_layout", "distillation_losses", "train_kdad",
]
