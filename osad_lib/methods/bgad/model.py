"""BGAD (Yao et al., CVPR 2023): frozen multi-level features, one conditional flow per level,
trained with ML + boundary-guided semi-push-pull; anomaly maps from per-level likelihoods.

What runs is the official code's procedure (``docs/official_code/bgad.md``):

* Features: three levels (strides 4/8/16) of a frozen ImageNet backbone, computed once
  per image and kept in a :class:`FeatureBank` (the backbone never changes, so every meta epoch
  reuses them).
* Flows (:mod:`osad_lib.components.flows`): per level a CFLOW-AD flow conditioned on the 2-D
  positional code; every position of a feature map is one sample; log-likelihoods are per
  dimension (``log p / C``). Option (not in the code): a fixed per-channel standardisation
  in front of each flow, part of the density (``BGADConfig.standardize``; for short CPU schedules).
* Training (:func:`fit_bgad`): ``meta_epochs × sub_epochs`` passes over shuffled
  batches of ``batch_size`` images; per batch and level the ``B·H·W`` vectors are shuffled and
  cut into chunks of ``chunk_size``, **one Adam step per chunk** (remainder dropped; a level with
  fewer vectors than one chunk trains on one chunk of all of them). Meta epoch 0 sees normals
  only with the plain ML loss (no focal weights); later meta epochs add the anomalous entries and
  the BG-SPP loss. The code clears gradients to zero rather than to ``None``, so Adam also moves
  the flows of the other levels (stale momentum) at every chunk step: ``set_to_none=False``.
  Learning rate: cosine from ``lr`` to ``lr·10⁻³`` over the meta epochs, linear warm-up from
  ``lr/10`` during the first ``warmup_epochs`` (``warmup="clean"``: the intended progress;
  ``"faithful"``: the code's counter, which counts 2 batches per pass).
* Scoring (:func:`assemble_anomaly_maps`): per level ``exp(ℓ − max ℓ over the whole test
  set)``, bilinear upsampling, sum over levels, map = max(sum) − sum; image score = map maximum.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from osad_lib import limits
from osad_lib.methods.bgad.loss import BGADLossConfig, bgad_loss
from osad_lib.components.backbones import Backbone
from osad_lib.components.flows import conditional_flow, gaussian_log_likelihood, positional_encoding_2d
from osad_lib.errors import NonFiniteLossError
from osad_lib.validate import ConfigError, choose


@dataclass(frozen=True)
class BGADConfig:
    """BGAD hyper-parameters; defaults are the official code's README run (``docs/official_code/bgad.md``)
    except β = 5 % (:class:`~osad_lib.methods.bgad.loss.BGADLossConfig`) and ``set_to_none``.

    ``real_repeats`` / ``racp_copies``: each labelled anomaly enters a pass ``real_repeats``
    times as itself and ``racp_copies`` times as a fresh RandAugmented CutPaste sample (the code);
    ``racp=False`` drops the copies (Table 6 ablation); ``racp_ops``: the paper's RandAugment
    list (§3.4) or the code's albumentations list (``osad_lib.data.pseudo.randaug_cutpaste``).
    ``foreground``: paste inside foreground masks where they can be made. ``standardize``: start
    each flow with a fixed standardisation from the training normals (:class:`BGADFlows`; not in
    the code, a recorded deviation meant for short CPU schedules, which do not converge without
    it). ``normal_only_first_epoch``: meta epoch 0 trains on normals with the plain ML loss.
    ``set_to_none``: clear gradients to ``None`` after each chunk step (default), so a step at one
    level leaves the other levels' flows alone; ``False`` = the code, which zeroes them, so Adam
    keeps moving idle flows with their stale momentum. The paper's appendix A.3 says "200 train
    epochs"; the code runs 25 meta × 8 sub epochs = 200 passes, which is what this does.
    """

    backbone: str = "efficientnet_b6"
    weights: str = "imagenet"
    image_size: int = 256
    pos_embed_dim: int = 128
    coupling_blocks: int = 8
    clamp_alpha: float = 1.9
    loss: BGADLossConfig = field(default_factory=BGADLossConfig)
    lr: float = 2e-4
    lr_min_factor: float = 1e-3
    meta_epochs: int = 25
    sub_epochs: int = 8
    batch_size: int = 32
    chunk_size: int = 4096
    warmup_epochs: int = 2
    warmup: str = "clean"
    normal_only_first_epoch: bool = True
    standardize: bool = False
    set_to_none: bool = True
    real_repeats: int = 5
    racp_copies: int = 5
    racp: bool = True
    racp_ops: str = "paper"
    foreground: bool = True
    feature_batch_size: int = 32
    progress: bool = True

    def __post_init__(self) -> None:
        choose("warmup", self.warmup, ("clean", "faithful"))
        choose("racp_ops", self.racp_ops, ("paper", "code"))
        for name in ("image_size", "meta_epochs", "sub_epochs", "batch_size", "chunk_size", "coupling_blocks"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"BGAD parameter {name!r}: {getattr(self, name)!r} must be a positive integer")
        if self.image_size % 16:
            raise ConfigError(f"BGAD parameter 'image_size': {self.image_size} must be a multiple of 16 (stride-16 level)")


# ------------------------------------------------------------------ features
@dataclass
class FeatureBank:
    """Frozen features of a set of images: per level ``[N, C, H, W]`` and anomalous positions ``[N, H, W]``."""

    levels: list[Tensor]
    anomalous: list[Tensor]

    def __len__(self) -> int:
        return int(self.levels[0].shape[0])

    def to(self, device: str | torch.device) -> FeatureBank:
        return FeatureBank([x.to(device) for x in self.levels], [m.to(device) for m in self.anomalous])

    def subset(self, indices: Sequence[int] | Tensor) -> FeatureBank:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return FeatureBank([x[idx.to(x.device)] for x in self.levels], [m[idx.to(m.device)] for m in self.anomalous])

    @staticmethod
    def concat(banks: Sequence[FeatureBank]) -> FeatureBank:
        banks = [b for b in banks if len(b)]
        n_levels = len(banks[0].levels)
        return FeatureBank([torch.cat([b.levels[i] for b in banks]) for i in range(n_levels)],
                           [torch.cat([b.anomalous[i] for b in banks]) for i in range(n_levels)])

    @property
    def nbytes(self) -> int:
        return sum(x.numel() * x.element_size() for x in self.levels + self.anomalous)


@torch.no_grad()
def extract_levels(backbone: Backbone, images: Tensor, batch_size: int, device: str, progress: bool = False) -> list[Tensor]:
    """The three frozen feature levels of ``images`` (uint8 ``[N,3,S,S]`` or float in [0,1]), on CPU."""
    backbone = backbone.to(device).eval()
    out: list[list[Tensor]] = []
    starts = range(0, len(images), batch_size)
    for start in tqdm(starts, desc="features", leave=False, disable=not progress):
        batch = images[start:start + batch_size].to(device)
        batch = batch.float() / 255 if batch.dtype == torch.uint8 else batch.float()
        out.append([level.float().cpu() for level in backbone.feature_levels(batch)])
    return [torch.cat([levels[i] for levels in out]) for i in range(len(out[0]))]


def downsample_masks(masks: Tensor | None, n: int, sizes: Sequence[tuple[int, int]]) -> list[Tensor]:
    """Defect masks ``[N,1,S,S]`` (None = all normal) to each level's grid, nearest (the code); bool ``[N,H,W]``."""
    if masks is None:
        return [torch.zeros(n, h, w, dtype=torch.bool) for h, w in sizes]
    m = masks.float()
    return [F.interpolate(m, size=size, mode="nearest")[:, 0] > 0.5 for size in sizes]


def feature_bank(backbone: Backbone, images: Tensor, masks: Tensor | None, config: BGADConfig, device: str) -> FeatureBank:
    """Features and level masks of ``images`` (masks ``None``: all positions normal)."""
    levels = extract_levels(backbone, images, config.feature_batch_size, device, config.progress)
    sizes = [tuple(x.shape[-2:]) for x in levels]
    return FeatureBank(levels, downsample_masks(masks, len(images), sizes))


# ------------------------------------------------------------------ flows and likelihoods
class BGADFlows(nn.Module):
    """One conditional flow per feature level (the CFLOW-AD design); :meth:`log_likelihood` gives ``log p / C``.

    Optionally each level starts with a fixed per-channel standardisation ``(x − μ)/σ`` from the
    training normals (:meth:`standardize`; Glow's data-dependent ActNorm initialisation, frozen).
    It is part of the density (its log-determinant ``−Σ log σ`` is added), so log-likelihoods
    keep their meaning; it only spares the flow learning the feature scale (not in the code).
    """

    def __init__(self, level_channels: Sequence[int], pos_embed_dim: int = 128, coupling_blocks: int = 8,
                 clamp_alpha: float = 1.9) -> None:
        super().__init__()
        self.level_channels = list(level_channels)
        self.pos_embed_dim = pos_embed_dim
        self.flows = nn.ModuleList(conditional_flow(c, pos_embed_dim, coupling_blocks, clamp_alpha) for c in level_channels)
        for level, c in enumerate(level_channels):
            self.register_buffer(f"mean{level}", torch.zeros(c))
            self.register_buffer(f"std{level}", torch.ones(c))

    def standardize(self, levels: Sequence[Tensor]) -> None:
        """Set each level's fixed standardisation from features ``[N, C, H, W]`` of training normals."""
        for level, feats in enumerate(levels):
            x = feats.transpose(0, 1).reshape(feats.shape[1], -1).float()
            getattr(self, f"mean{level}").copy_(x.mean(1))
            getattr(self, f"std{level}").copy_(x.std(1).clamp_min(1e-6))

    def position_codes(self, height: int, width: int) -> Tensor:
        """Condition of each position of an ``height × width`` map, row-major: ``[H·W, pos_embed_dim]``."""
        return positional_encoding_2d(self.pos_embed_dim, height, width).flatten(1).T.contiguous()

    def log_likelihood(self, level: int, vectors: Tensor, cond: Tensor) -> Tensor:
        """``log p(x) / C`` of feature vectors ``[N, C]`` at positions with codes ``cond`` ``[N, D]``."""
        mean, std = getattr(self, f"mean{level}"), getattr(self, f"std{level}")
        z, log_jac_det = self.flows[level]((vectors - mean) / std, c=[cond])
        return (gaussian_log_likelihood(z, log_jac_det) - std.log().sum()) / vectors.shape[1]


def _flatten_level(features: Tensor) -> Tensor:
    """``[B, C, H, W]`` → ``[B·H·W, C]`` (image-major, then row-major positions)."""
    return features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])


@torch.no_grad()
def loglik_maps(flows: BGADFlows, bank: FeatureBank, device: str, images_per_batch: int = 32) -> list[Tensor]:
    """Per level, the ``log p / C`` map ``[N, H, W]`` of every image in ``bank`` (CPU)."""
    flows.eval()
    out = []
    for level, feats in enumerate(bank.levels):
        n, _, h, w = feats.shape
        codes = flows.position_codes(h, w).to(device)
        maps = []
        for start in range(0, n, images_per_batch):
            x = _flatten_level(feats[start:start + images_per_batch].to(device))
            cond = codes.repeat(x.shape[0] // (h * w), 1)
            maps.append(flows.log_likelihood(level, x, cond).view(-1, h, w).cpu())
        out.append(torch.cat(maps))
    return out


def assemble_anomaly_maps(level_logliks: Sequence[Tensor], size: int) -> Tensor:
    """Anomaly maps ``[N, size, size]`` from per-level ``log p / C`` maps of a whole test set (Eq. 7).

    Per level: ``exp(ℓ − max ℓ)`` (max over all images and positions), bilinear upsampling
    (``align_corners=True``) to ``size``; sum over levels; anomaly map = max(sum) − sum.
    """
    total = None
    for ll in level_logliks:
        prob = torch.exp(ll - ll.max())
        up = F.interpolate(prob[:, None], size=(size, size), mode="bilinear", align_corners=True)[:, 0]
        total = up if total is None else total + up
    return total.max() - total


def image_scores(maps: Tensor) -> Tensor:
    """Image anomaly score = maximum of its anomaly map (the code's scoring)."""
    return maps.flatten(1).max(1).values


# ------------------------------------------------------------------ schedule
def cosine_lr(config: BGADConfig, epoch: float) -> float:
    """Cosine annealing per meta epoch from ``lr`` to ``lr·lr_min_factor`` (appendix A.3)."""
    lr_min = config.lr * config.lr_min_factor
    return lr_min + (config.lr - lr_min) * (1 + math.cos(math.pi * epoch / config.meta_epochs)) / 2


def warmup_lr(config: BGADConfig, epoch: int, sub_epoch: int, batch: int, batches_per_pass: int) -> float:
    """Warm-up learning rate at ``batch`` of pass ``sub_epoch`` of meta epoch ``epoch < warmup_epochs``.

    Linear from ``lr/10`` to the cosine value at ``warmup_epochs`` with progress
    ``p = (batch + sub_epoch·I + epoch·I·S) / (warmup_epochs·I·S)``; ``I`` = batches per pass
    (``clean``) or 2 (``faithful``: the code's ``len`` of its two-loader list, so ``p`` overshoots 1).
    """
    per_pass = batches_per_pass if config.warmup == "clean" else 2
    total = per_pass * config.sub_epochs
    progress = (batch + sub_epoch * per_pass + epoch * total) / (config.warmup_epochs * total)
    start, end = config.lr / 10, cosine_lr(config, config.warmup_epochs)
    return start + progress * (end - start)


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


# ------------------------------------------------------------------ training
def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[Tensor]:
    """Shuffled batches of ``range(n)``, last partial batch dropped (one batch if ``n < batch_size``)."""
    perm = torch.randperm(n, generator=generator)
    if n < batch_size:
        return [perm]
    return list(perm[: n - n % batch_size].split(batch_size))


def _chunks(n: int, chunk_size: int, generator: torch.Generator) -> list[Tensor]:
    """Shuffled chunks of ``range(n)`` of ``chunk_size``, remainder dropped (one chunk if ``n < chunk_size``)."""
    perm = torch.randperm(n, generator=generator)
    if n < chunk_size:
        return [perm]
    return list(perm[: n - n % chunk_size].split(chunk_size))


def _gather(banks: Sequence[FeatureBank], level: int, indices: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Vectors ``[B·H·W, C]``, anomalous flags and position ids of entries ``indices`` of the concatenated banks."""
    feats, flags = [], []
    offset = 0
    for bank in banks:
        mine = indices[(indices >= offset) & (indices < offset + len(bank))] - offset
        if len(mine):
            feats.append(bank.levels[level][mine.to(bank.levels[level].device)])
            flags.append(bank.anomalous[level][mine.to(bank.anomalous[level].device)])
        offset += len(bank)
    x, m = torch.cat(feats), torch.cat(flags)
    h, w = x.shape[-2:]
    positions = torch.arange(h * w, device=x.device).repeat(x.shape[0])
    return _flatten_level(x), m.reshape(-1), positions


def fit_bgad(
    flows: BGADFlows,
    normal: FeatureBank,
    anomalies: Callable[[], FeatureBank] | None,
    config: BGADConfig,
    device: str,
    seed: int,
    on_epoch_end: Callable[[int], dict[str, float]] | None = None,
) -> list[dict[str, float]]:
    """Train ``flows`` (§3, appendix A.3); return one record per meta epoch (``epoch``, ``loss``, ``lr``, callback's).

    ``anomalies()`` returns the anomalous entries of one pass (real repeats and fresh RACP
    copies); it is called once per pass of every boundary-stage meta epoch. ``None`` = no
    anomalies (unsupervised BGAD: the boundary stage then uses ML + the normal boundary if
    ``config.loss.pull_in_normal_chunks``).
    """
    if config.standardize:
        flows.standardize(normal.levels)
    flows.to(device)
    optimizer = torch.optim.Adam(flows.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(seed)
    sizes = [tuple(x.shape[-2:]) for x in normal.levels]
    codes = [flows.position_codes(h, w).to(device) for h, w in sizes]
    history = []
    # a dry run (osad_lib.limits): the normal-only first epoch and one boundary epoch, one batch each
    meta_epochs = limits.epochs(config.meta_epochs, phases=2 if config.normal_only_first_epoch else 1)
    for epoch in range(meta_epochs):
        flows.train()
        boundary_stage = epoch > 0 or not config.normal_only_first_epoch
        _set_lr(optimizer, cosine_lr(config, epoch))
        losses = []
        passes = tqdm(range(limits.steps(config.sub_epochs)), desc=f"BGAD meta epoch {epoch + 1}/{meta_epochs}",
                      leave=False, disable=not config.progress)
        for sub_epoch in passes:
            banks = [normal] + ([anomalies()] if boundary_stage and anomalies is not None else [])
            batches = _batches(sum(len(b) for b in banks), config.batch_size, generator)
            for b, indices in enumerate(limits.take(batches)):
                if epoch < config.warmup_epochs:
                    _set_lr(optimizer, warmup_lr(config, epoch, sub_epoch, b, len(batches)))
                for level in range(len(sizes)):
                    losses += _train_level(flows, optimizer, banks, level, indices, codes[level], config,
                                           boundary_stage, generator, device)
        record = {"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else math.nan,
                  "lr": optimizer.param_groups[0]["lr"]}
        if on_epoch_end is not None:
            record.update(on_epoch_end(epoch))
        history.append(record)
    return history


def _train_level(flows, optimizer, banks, level, indices, codes, config, boundary_stage, generator, device) -> list[float]:
    """One Adam step per chunk of the batch's vectors at ``level`` (a dry run: the first
    ``max_steps`` chunks, :func:`osad_lib.limits.take`); returns the chunk losses."""
    x, anomalous, positions = _gather(banks, level, indices)
    losses = []
    for chunk in limits.take(_chunks(len(x), config.chunk_size, generator)):
        flags = anomalous[chunk.to(anomalous.device)].to(device)
        if bool(flags.all()):
            continue  # no normal position: neither ML nor a boundary is defined
        vectors = x[chunk.to(x.device)].to(device)
        ll = flows.log_likelihood(level, vectors, codes[positions[chunk.to(positions.device)].to(device)])
        loss = bgad_loss(ll, flags, config.loss, boundary_stage)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"BGAD loss is {loss.item()} at level {level}; lower the learning rate or check the features")
        optimizer.zero_grad(set_to_none=config.set_to_none)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses
