"""The image baselines of DevNet's Tables 2–4 and DRA's appendix Tables 7–8: networks, losses, training.

DevNet §6.2 compares against Deep SVDD, Deep SAD, MINNS (plus FLOS and KDAD); DRA appendix B.2
/ C.1 reports Deep SAD and MINNS; AHL §4.5.1 (Table 4) reports PatchCore
(:mod:`osad_lib.methods.baselines.patchcore`); DevNet and DRA list KDAD (:mod:`osad_lib.methods.baselines.kdad`, its own
VGG-16 source/cloner pair at its own settings) as their unsupervised baseline.
The others are built from their own papers on the profile's backbone:

* **Deep SVDD** (Ruff et al., ICML 2018; DevNet §6.2 "a deep one-class classifier … a
  one-class center-oriented hypersphere"): unsupervised, trained on the training normals only
  (labelled anomalies are ignored). Network = backbone → global average pooling → linear
  projection to ``rep_dim`` without bias (Ruff et al. §3.3: bias terms allow the trivial
  collapsed solution). Loss = mean ‖φ(x) − c‖², score = ‖φ(x) − c‖², centre ``c`` = mean of
  the untrained network's embeddings of the training normals with every coordinate of
  magnitude below 0.1 moved to ±0.1 (:func:`hypersphere_center`, the authors' code rule).
* **Deep SAD** (Ruff et al., ICLR 2020; DevNet §6.2 "adds a margin constraint into the
  original SVDD objective"): the same network and centre; unlabelled/normal samples pull to
  ``c`` (‖φ(x) − c‖²), labelled anomalies are pushed away with η / (‖φ(x) − c‖² + ε), η = 1,
  ε = 1e-6 (:func:`osad_lib.methods.anoonly.losses.deepsad_loss`; Deep SVDD is this loss without
  labelled anomalies, Ruff et al. 2020 §3). Batches are drawn uniformly from the whole training
  set, as in the authors' code (``balanced=True`` gives DevNet's half/half batches).
* **MINNS** (Wang et al., "Revisiting multiple instance neural networks", Pattern Recognition
  2018; DevNet §6.2: "applies multiple-instance-pooling layers to intermediate and last
  feature layers to learn expressive bag features … the same oversampling method as in
  DevNet"): the image is the bag and the backbone's feature-map cells are the instances.
  Default network ``mi_net_ds`` = MI-Net with deep supervision: three instance layers
  (1×1 convolutions 256 → 128 → 64, ReLU), after each a dropout (0.5), a MIL pooling over the
  cells (``max`` by default; ``mean``, ``lse`` = log-mean-exp, ``topk`` = DevNet's top-K mean)
  and a linear bag scorer; training sums the three binary cross-entropies, the score is the
  mean of the three sigmoid outputs. ``mi_net`` scores every cell (sigmoid) and pools the cell
  scores (mi-Net). Like DevNet (§6.3 "Deep SAD and MINNS use the same backbone as DevNet";
  "for FLOS and MINNS, we use the same optimization setting as DevNet") it runs on DevNet's
  image pyramid, with DevNet's optimiser, balanced batches and rotation augmentation.

Where the papers and this implementation differ (recorded in every result row's
``deviations``, :func:`osad_lib.experiments.baselines.baseline_deviations`): DevNet §6.3 keeps Deep SVDD's original LeNet-type
network — here it uses the profile's backbone like Deep SAD; Deep SVDD/SAD's autoencoder
pre-training is replaced by the ImageNet initialisation; their "recommended settings"
(Adam 1e-4, weight decay 5e-7, the authors' CIFAR-10 commands) are kept but with the profile's
schedule and batch size and no learning-rate milestone.

Their runners, profile settings and result-row ``deviations`` are in
:mod:`osad_lib.experiments.baselines` (settings: DevNet's under the profile ← the method's own
defaults :data:`METHOD_DEFAULTS` ← the profile's overrides ← explicit changes).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from osad_lib.data.tensors import ImageSet
from osad_lib.losses.deviation import bce_loss
from osad_lib.methods.anoonly.losses import deepsad_loss
from osad_lib.components.backbones import build_backbone
from osad_lib.methods.devnet.model import stems_for_training
from osad_lib.components.stems import StemFeatures, random_angles, random_dihedral, random_rotation, rotate, to_float_images
from osad_lib.components.heads import average_scales, image_pyramid, top_k_mean
from osad_lib.seeding import seed_everything
from osad_lib.training import BalancedBatchSampler, TrainConfig, fit
from osad_lib.settings import apply_overrides, require_at_least
from osad_lib.validate import ConfigError, choose

#: The trained baselines of this module (PatchCore and KDAD have their own modules).
METHODS = ("deepsvdd", "deepsad", "minns")
MIL_NETWORKS = ("mi_net_ds", "mi_net")
MIL_POOLINGS = ("max", "mean", "lse", "topk")

#: Each method's own settings where they differ from DevNet's (module docstring).
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    # Ruff et al.'s CIFAR-10 commands: Adam 1e-4, weight decay 0.5e-6; no augmentation; one scale.
    "deepsvdd": {"n_scales": 1, "lr": 1e-4, "weight_decay": 5e-7, "lr_gamma": 1.0, "rotation_degrees": 0.0,
                 "balanced": False},
    "deepsad": {"n_scales": 1, "lr": 1e-4, "weight_decay": 5e-7, "lr_gamma": 1.0, "rotation_degrees": 0.0,
                "balanced": False},
    # DevNet's optimisation, pyramid, rotation and oversampling (DevNet §6.2–6.3).
    "minns": {"balanced": True},
}
#: DevNet settings every baseline takes from the profile; MINNS also takes DevNet's optimiser and pyramid.
SHARED_WITH_DEVNET = ("backbone", "weights", "image_size", "frozen_stages", "dihedral", "epochs", "steps_per_epoch",
                      "batch_size", "eval_batch_size", "grad_clip", "amp")
MINNS_FROM_DEVNET = ("n_scales", "lr", "weight_decay", "lr_step_size", "lr_gamma", "rotation_degrees")
#: PatchCore settings that are the paper's (the others only bound memory).
PATCHCORE_PAPER_FIELDS = ("image_size", "levels", "patch_size", "coreset_ratio", "projection_dim", "sigma",
                          "sigma_reference_size")
#: How each method departs from its paper regardless of settings (goes into ``deviations``).
METHOD_NOTES: dict[str, tuple[str, ...]] = {
    "deepsvdd": ("network: backbone + bias-free linear projection (DevNet paper: the original LeNet-type network)",
                 "no autoencoder pre-training (ImageNet initialisation)", "no lr milestone"),
    "deepsad": ("no autoencoder pre-training (ImageNet initialisation)", "no lr milestone"),
    "minns": (),
    "patchcore": ("no 1024-d feature pooling, no 256->224 centre crop",),
    "kdad": (),
}


@dataclass(frozen=True)
class BaselineConfig:
    """Settings of one baseline; field defaults are the paper-profile values (ResNet-18, 448 px,
    DevNet's 50 × 20 batches of 48, Adam 2e-4) and :data:`METHOD_DEFAULTS` adjusts them per method
    (:meth:`paper_defaults`).

    ``balanced``: DevNet's half-normal/half-anomaly batches (else uniform batches over the
    training set; Deep SVDD always uses normals only). ``rep_dim``, ``center_eps``: Deep SVDD/SAD
    embedding size and centre rule; ``eta``, ``eps``: Deep SAD's anomaly weight and stabiliser.
    ``mil_*``, ``dropout``, ``topk_ratio``: MINNS (module docstring). ``dihedral``: DevNet's
    option (:class:`osad_lib.methods.devnet.model.DevNetConfig`), the 8 exact rotations/flips of the
    labelled anomalies (on cached stems: their precomputed views).
    """

    method: str
    backbone: str = "resnet18"
    weights: str = "imagenet"
    image_size: int = 448
    n_scales: int = 2
    frozen_stages: int = 0
    dihedral: bool = False
    rotation_degrees: float = 180.0
    epochs: int = 50
    steps_per_epoch: int = 20
    batch_size: int = 48
    eval_batch_size: int = 48
    lr: float = 2e-4
    weight_decay: float = 1e-5
    lr_step_size: int = 10
    lr_gamma: float = 0.1
    grad_clip: float | None = 1.0
    amp: bool = True
    balanced: bool = True
    rep_dim: int = 128
    center_eps: float = 0.1
    eta: float = 1.0
    eps: float = 1e-6
    mil_network: str = "mi_net_ds"
    mil_pooling: str = "max"
    mil_hidden: tuple[int, ...] = (256, 128, 64)
    dropout: float = 0.5
    topk_ratio: float = 0.1

    def __post_init__(self) -> None:
        choose("baseline method", self.method, METHODS)
        choose("mil_network", self.mil_network, MIL_NETWORKS)
        choose("mil_pooling", self.mil_pooling, MIL_POOLINGS)
        if self.method in ("deepsvdd", "deepsad") and self.n_scales != 1:
            raise ConfigError(f"{self.method} embeds whole images at one scale; set n_scales=1 (got {self.n_scales})")
        if self.balanced and self.method != "deepsvdd" and (self.batch_size < 2 or self.batch_size % 2):
            raise ConfigError(f"balanced batches need an even batch_size >= 2 (half normal, half anomalies), got {self.batch_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}; MINNS uses 0.5")
        if not 0.0 < self.topk_ratio <= 1.0:
            raise ConfigError(f"topk_ratio must be in (0, 1], got {self.topk_ratio}")
        if self.frozen_stages < 0:
            raise ConfigError(f"frozen_stages must be >= 0, got {self.frozen_stages}; 0 fine-tunes the whole backbone (paper)")
        require_at_least(self, ("image_size", "n_scales", "epochs", "steps_per_epoch", "batch_size", "eval_batch_size", "rep_dim"))

    @classmethod
    def paper_defaults(cls, method: str) -> BaselineConfig:
        """The method's settings at paper scale (what ``deviations`` compares against)."""
        return cls(method=method, **METHOD_DEFAULTS[choose("baseline method", method, METHODS)])

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any]) -> BaselineConfig:
        """``overrides`` (must include ``method``) on the defaults (:func:`osad_lib.settings.apply_overrides`)."""
        return apply_overrides(cls, overrides, "baseline")

    def with_(self, **changes: Any) -> BaselineConfig:
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def train_config(self, progress: bool = True, desc: str = "baseline") -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs, steps_per_epoch=self.steps_per_epoch, lr=self.lr, weight_decay=self.weight_decay,
            lr_step_size=self.lr_step_size, lr_gamma=self.lr_gamma, scheduler_step_at="epoch_end",
            grad_clip=self.grad_clip, amp=self.amp, progress=progress, desc=desc,
        )


# --------------------------------------------------------------------------------------------
# building blocks


def hypersphere_center(embeddings: torch.Tensor, eps: float = 0.1) -> torch.Tensor:
    """Deep SVDD/SAD centre: the mean embedding ``[D]`` of ``embeddings`` ``[N, D]``, with every
    coordinate in (−eps, 0) set to −eps and in (0, eps) to +eps (Ruff et al.'s code: a centre
    coordinate near zero lets the network reach it with zero weights). Exact zeros stay zero.
    """
    c = embeddings.float().mean(dim=0)
    small = c.abs() < eps
    c[small & (c < 0)] = -eps
    c[small & (c > 0)] = eps
    return c


def squared_distances(embeddings: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """‖φ(x) − c‖² per row of ``embeddings`` ``[B, D]`` → ``[B]`` (the Deep SVDD/SAD anomaly score)."""
    return ((embeddings.float() - center.float()) ** 2).sum(dim=1)


def one_class_loss(embeddings: torch.Tensor, center: torch.Tensor, targets: torch.Tensor,
                   eta: float = 1.0, eps: float = 1e-6) -> torch.Tensor:
    """Deep SAD's objective (Ruff et al. 2020, "Deep SAD" §3; the weight-decay term is left to
    the optimiser): batch mean of ‖φ(x) − c‖² for targets 0 and η / (‖φ(x) − c‖² + ε) for
    labelled anomalies (targets 1). With no labelled anomaly it is Deep SVDD's one-class
    objective (Ruff et al. 2018, "One-Class Deep SVDD"): the mean squared distance to ``c``.
    """
    return deepsad_loss(squared_distances(embeddings, center), targets, eta=eta, eps=eps)


def mil_pool(instances: torch.Tensor, mode: str = "max", topk_ratio: float = 0.1) -> torch.Tensor:
    """MIL pooling of instance features ``[B, C, H, W]`` over the H·W cells → bag features ``[B, C]``.

    ``max`` and ``mean`` (MINNS), ``lse`` = log(mean(exp(x))) (MINNS' log-sum-exp pooling),
    ``topk`` = mean of the K = max(⌊ratio·HW⌋, 1) largest values per channel (DevNet's top-K).
    """
    mode = choose("mil_pooling", mode, MIL_POOLINGS)
    b, c = instances.shape[:2]
    flat = instances.flatten(2)
    if mode == "max":
        return flat.amax(dim=2)
    if mode == "mean":
        return flat.mean(dim=2)
    if mode == "lse":
        return torch.logsumexp(flat, dim=2) - math.log(flat.shape[2])
    return top_k_mean(flat.reshape(b * c, -1), topk_ratio).reshape(b, c)


class BackboneModel(nn.Module, abc.ABC):
    """A backbone split into a frozen *stem* (normalisation + ``frozen_stages`` stages, eval mode)
    and a trainable *top*, as DevNet's (so cached :class:`StemFeatures` can be used); subclasses
    define the score and the loss on the stem outputs.
    """

    def __init__(self, config: BaselineConfig):
        super().__init__()
        self.config = config
        self.backbone = build_backbone(config.backbone, config.weights)
        if config.frozen_stages > len(self.backbone.stages):
            raise ConfigError(f"frozen_stages={config.frozen_stages} but backbone {config.backbone!r} has {len(self.backbone.stages)} stages")
        for stage in self.backbone.stages[:config.frozen_stages]:
            stage.requires_grad_(False)
        self.backbone.head.requires_grad_(False)  # the ImageNet classifier is never used

    def train(self, mode: bool = True) -> BackboneModel:
        super().train(mode)
        for stage in self.backbone.stages[:self.config.frozen_stages]:
            stage.eval()
        return self

    def stem_pyramid(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Normalisation and the frozen stages on every scale of :func:`image_pyramid`."""
        out = []
        for x in image_pyramid(images, self.config.n_scales):
            x = self.backbone.normalize(x)
            for stage in self.backbone.stages[:self.config.frozen_stages]:
                x = stage(x)
            out.append(x)
        return out

    def top(self, stem_out: torch.Tensor) -> torch.Tensor:
        """The trainable stages → the last feature map ``[B, C, h, w]``."""
        for stage in self.backbone.stages[self.config.frozen_stages:]:
            stem_out = stage(stem_out)
        return stem_out

    @abc.abstractmethod
    def score_from_stem(self, stems: list[torch.Tensor]) -> torch.Tensor:
        """Anomaly scores ``[B]`` from the stem outputs (one tensor per pyramid scale)."""

    @abc.abstractmethod
    def loss_from_stem(self, stems: list[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        """Training loss from the stem outputs and targets (1 labelled anomaly, 0 normal)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Anomaly scores ``[B]`` of float images in [0, 1]."""
        return self.score_from_stem(self.stem_pyramid(images))


class OneClassNet(BackboneModel):
    """Deep SVDD / Deep SAD: backbone → GAP → bias-free projection φ(x); score ‖φ(x) − c‖²."""

    def __init__(self, config: BaselineConfig):
        super().__init__(config)
        self.projection = nn.Linear(self.backbone.out_channels, config.rep_dim, bias=False)
        self.register_buffer("center", torch.zeros(config.rep_dim))

    def embed_from_stem(self, stems: list[torch.Tensor]) -> torch.Tensor:
        """φ(x) ``[B, rep_dim]`` in float32 (the distance is not computed in bf16)."""
        pooled = self.top(stems[0]).float().mean(dim=(2, 3))
        with torch.autocast(device_type=pooled.device.type, enabled=False):
            return self.projection(pooled)

    def score_from_stem(self, stems: list[torch.Tensor]) -> torch.Tensor:
        return squared_distances(self.embed_from_stem(stems), self.center)

    def loss_from_stem(self, stems: list[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        return one_class_loss(self.embed_from_stem(stems), self.center, targets, self.config.eta, self.config.eps)


def probability_bce(probabilities: torch.Tensor, targets: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Binary cross-entropy of pooled probabilities (mi-Net's bag loss), batch mean, in float32.

    Written out because ``F.binary_cross_entropy`` refuses to run under CUDA autocast.
    """
    p = probabilities.float().clamp(eps, 1 - eps)
    y = targets.float().reshape(p.shape)
    return -(y * torch.log(p) + (1 - y) * torch.log1p(-p)).mean()


class MINNS(BackboneModel):
    """MI-Net with deep supervision (or mi-Net) on the backbone's cells (module docstring)."""

    def __init__(self, config: BaselineConfig):
        super().__init__(config)
        widths = (self.backbone.out_channels, *config.mil_hidden)
        self.instance_layers = nn.ModuleList(nn.Conv2d(a, b, kernel_size=1) for a, b in zip(widths[:-1], widths[1:]))
        self.dropout = nn.Dropout(config.dropout)
        if config.mil_network == "mi_net_ds":
            self.bag_scorers = nn.ModuleList(nn.Linear(w, 1) for w in config.mil_hidden)
        else:
            self.cell_scorer = nn.Conv2d(widths[-1], 1, kernel_size=1)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return mil_pool(x, self.config.mil_pooling, self.config.topk_ratio)

    def level_outputs(self, features: torch.Tensor) -> list[torch.Tensor]:
        """One scale: MI-Net DS → bag logits ``[B]`` per instance layer; mi-Net → ``[pooled cell probability]``."""
        x, outputs = features, []
        for k, layer in enumerate(self.instance_layers):
            x = torch.relu(layer(x))
            if self.config.mil_network == "mi_net_ds":
                outputs.append(self.bag_scorers[k](self._pool(self.dropout(x)).float()).squeeze(1))
        if self.config.mil_network == "mi_net":
            cells = torch.sigmoid(self.cell_scorer(self.dropout(x)).float())
            outputs.append(self._pool(cells).squeeze(1))
        return outputs

    def _scale_score(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        if self.config.mil_network == "mi_net":
            return outputs[0]
        return torch.stack([torch.sigmoid(o) for o in outputs]).mean(dim=0)

    def score_from_stem(self, stems: list[torch.Tensor]) -> torch.Tensor:
        """Mean sigmoid bag score over the supervised layers, averaged over scales → ``[B]``."""
        return average_scales([self._scale_score(self.level_outputs(self.top(f))) for f in stems])

    def loss_from_stem(self, stems: list[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        """Sum over supervised layers of the binary cross-entropy, averaged over scales."""
        per_scale = []
        for f in stems:
            outputs = self.level_outputs(self.top(f))
            if self.config.mil_network == "mi_net":
                per_scale.append(probability_bce(outputs[0], targets))
            else:
                per_scale.append(torch.stack([bce_loss(o, targets) for o in outputs]).sum())
        return torch.stack(per_scale).mean()


def build_model(config: BaselineConfig) -> BackboneModel:
    """The network of ``config.method``."""
    return MINNS(config) if config.method == "minns" else OneClassNet(config)


# --------------------------------------------------------------------------------------------
# training


@torch.no_grad()
def _embeddings(model: OneClassNet, inputs: torch.Tensor | StemFeatures, rows: Sequence[int], device: str) -> torch.Tensor:
    """φ(x) of ``inputs[rows]`` in eval mode, batched."""
    model.eval()
    out = []
    for start in range(0, len(rows), model.config.eval_batch_size):
        part = list(rows[start:start + model.config.eval_batch_size])
        stems = inputs.take(part, device) if isinstance(inputs, StemFeatures) else model.stem_pyramid(
            to_float_images(inputs[part], device))
        out.append(model.embed_from_stem(stems))
    return torch.cat(out)


def _sampler(config: BaselineConfig, labels: torch.Tensor, seed: int) -> BalancedBatchSampler:
    """Deep SVDD: normals only; balanced: half normal, half labelled anomalies; else uniform over all."""
    normal = torch.nonzero(labels == 0).flatten().tolist()
    anomaly = torch.nonzero(labels == 1).flatten().tolist()
    if config.method == "deepsvdd":
        return BalancedBatchSampler({"normal": normal}, {"normal": config.batch_size}, seed)
    if not anomaly:
        raise ConfigError(f"{config.method} needs labelled anomalies in the training split (n_shots >= 1); "
                          "use deepsvdd or patchcore for normal-only training")
    if config.balanced:
        half = config.batch_size // 2
        return BalancedBatchSampler({"normal": normal, "anomaly": anomaly}, {"normal": half, "anomaly": half}, seed)
    return BalancedBatchSampler({"train": list(range(len(labels)))}, {"train": config.batch_size}, seed)


def train_baseline(
    config: BaselineConfig,
    train: ImageSet,
    seed: int,
    device: str = "cpu",
    checkpoint: Path | None = None,
    progress: bool = True,
    desc: str | None = None,
    stems: StemFeatures | None = None,
) -> tuple[BackboneModel, list[float]]:
    """Build and train ``config.method`` on ``train`` (labels: 1 labelled anomaly, 0 normal).

    Seeded from ``seed`` (new layers, centre, batches, rotations, dropout). Deep SVDD/SAD set
    the centre from the untrained network's embeddings of the training normals first. With
    ``frozen_stages > 0`` the frozen stem runs once (or ``stems``, rows matching ``train``, is
    used) and rotation acts on the stem's maps, as in :func:`osad_lib.methods.devnet.model.train_devnet`.
    Training runs in :func:`osad_lib.training.fit`. Returns (model in eval mode, mean loss per epoch).
    """
    seed_everything(seed)
    model = build_model(config).to(device)
    stems = stems_for_training(model, config, train, device, stems)
    labels = train.labels.cpu()
    inputs = stems if stems is not None else train.images
    if isinstance(model, OneClassNet):
        normals = torch.nonzero(labels == 0).flatten().tolist()
        model.center.copy_(hypersphere_center(_embeddings(model, inputs, normals, device), config.center_eps))
    sampler = _sampler(config, labels, seed)
    targets = labels.float()

    def loss_fn(net: BackboneModel, indices: list[int]) -> torch.Tensor:
        y = targets[indices].to(device)
        if stems is None:
            images = random_dihedral(train.batch(indices)) if config.dihedral else train.batch(indices)
            return net.loss_from_stem(net.stem_pyramid(random_rotation(images, config.rotation_degrees).to(device)), y)
        feats = stems.sample(indices, device) if config.dihedral else stems.take(indices, device)
        if config.rotation_degrees > 0:
            angles = random_angles(len(indices), config.rotation_degrees)
            feats = [rotate(f, angles) for f in feats]
        return net.loss_from_stem(feats, y)

    history = fit(model, loss_fn, sampler, config.train_config(progress=progress, desc=desc or config.method),
                  device=device, checkpoint=checkpoint)
    return model.eval(), history


__all__ = [
    "METHODS", "METHOD_DEFAULTS", "METHOD_NOTES", "MIL_NETWORKS", "MIL_POOLINGS", "MINNS", "MINNS_FROM_DEVNET",
    "PATCHCORE_PAPER_FIELDS", "SHARED_WITH_DEVNET", "BackboneModel", "BaselineConfig", "OneClassNet", "build_model",
    "hypersphere_center", "mil_pool", "one_class_loss", "probability_bce", "squared_distances", "train_baseline",
]
