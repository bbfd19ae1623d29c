"""PatchCore-style unsupervised anomaly detection: nearest-neighbour distances of frozen patch features.

PatchCore (Roth et al., CVPR 2022) is an unsupervised baseline of AHL's Table 4 (AHL §4.5.1
"Utility of few-shot samples": "… KDAD and PatchCore for UAD"); it learns nothing and uses the
training normals only (labelled anomalies of a split are ignored). Steps, as in its paper (§3):

1. **Locally aware patch features** (§3.1): a frozen ImageNet backbone (eval mode, no
   gradients); the maps of two intermediate levels (``levels``: indices into
   :meth:`~osad_lib.components.backbones.Backbone.feature_levels`, default 1 and 2 = strides 8
   and 16, PatchCore's "layer 2 and 3"); each cell is replaced by the average of its
   ``patch_size × patch_size`` neighbourhood (p = 3, stride 1, zero padding not counted); the
   coarser map is upsampled bilinearly to the finer one and the channels are concatenated.
2. **Memory bank with greedy coreset subsampling** (§3.2, Alg. 1): all patch features of the
   training normals, reduced to ``coreset_ratio`` of them (10 % by default) by greedy k-center
   selection on a seeded Johnson–Lindenstrauss random projection to ``projection_dim`` = 128
   dimensions. The selection is the exact greedy rule (every step takes the patch farthest
   from the selected set), not the paper's faster approximate variant.
3. **Scoring** (§3.3): each test patch's Euclidean distance to its nearest memory-bank
   feature; image score = the maximum over the image's patches; anomaly map = the patch
   distances upsampled bilinearly to the image size and smoothed with a Gaussian of σ = 4 px
   at 224 px (scaled with the image size; :func:`osad_lib.explain.smoothing_sigma`).

Left out (paper options not needed for the comparison): the re-weighting of the image score by
the neighbourhood density (Eq. 7, off by default in the official release), the adaptive
average pooling of features to 1024 dimensions (the backbones here give 152–384 dimensions),
WideResNet-50 (not among :mod:`osad_lib.components.backbones`; the profile's backbone is used)
and the 256→224 centre crop (images are resized to ``image_size``, 224 by default).

Everything is batched and memory-bounded: features are computed ``batch_size`` images at a
time, nearest neighbours with :func:`torch.cdist` on ``query_chunk × bank_chunk`` blocks.
Results depend only on the seed (projection matrix and first coreset point).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from tqdm.auto import tqdm

from osad_lib.explain import smoothing_sigma
from osad_lib.components.backbones import Backbone, build_backbone
from osad_lib.seeding import torch_generator
from osad_lib.settings import apply_overrides, require_at_least
from osad_lib.validate import ConfigError


@dataclass(frozen=True)
class PatchCoreConfig:
    """PatchCore's settings; defaults are the paper's (224-px inputs, layers 2 + 3, p = 3, 10 %
    coreset, 128-d projection, σ = 4) except the backbone (module docstring). ``batch_size``,
    ``query_chunk`` and ``bank_chunk`` only bound memory. ``max_train_images`` (0 = all, the
    paper) builds the memory bank from a seeded subset of the training normals, for CPU budgets:
    the exact greedy selection costs O(patches × selected).
    """

    backbone: str = "resnet18"
    weights: str = "imagenet"
    image_size: int = 224
    levels: tuple[int, ...] = (1, 2)
    patch_size: int = 3
    coreset_ratio: float = 0.1
    projection_dim: int = 128
    max_train_images: int = 0
    batch_size: int = 32
    query_chunk: int = 4096
    bank_chunk: int = 65536
    sigma: float = 4.0
    sigma_reference_size: int = 224

    def __post_init__(self) -> None:
        if not 0.0 < self.coreset_ratio <= 1.0:
            raise ConfigError(f"coreset_ratio must be in (0, 1], got {self.coreset_ratio}; the paper uses 0.1 (1.0 keeps every patch)")
        if not self.levels or any(level not in (0, 1, 2) for level in self.levels) or len(set(self.levels)) != len(self.levels):
            raise ConfigError(f"levels must be distinct indices of the backbone's feature levels 0, 1, 2, got {self.levels}; PatchCore uses (1, 2)")
        if self.patch_size < 1 or self.patch_size % 2 == 0:
            raise ConfigError(f"patch_size must be an odd number >= 1, got {self.patch_size}; the paper uses 3")
        require_at_least(self, ("image_size", "projection_dim", "batch_size", "query_chunk", "bank_chunk"))
        if self.max_train_images < 0:
            raise ConfigError(f"max_train_images must be >= 0 (0 = every training normal), got {self.max_train_images}")

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any]) -> PatchCoreConfig:
        """Defaults with ``overrides`` applied (:func:`osad_lib.settings.apply_overrides`)."""
        return apply_overrides(cls, overrides, "PatchCore")

    def with_(self, **changes: Any) -> PatchCoreConfig:
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# the three steps as functions on tensors


def local_patch_features(levels: Sequence[torch.Tensor], patch_size: int = 3) -> torch.Tensor:
    """PatchCore §3.1: neighbourhood-averaged, upsampled, concatenated features ``[B, D, h, w]``.

    ``levels`` are feature maps ``[B, C_l, h_l, w_l]``, finest first; every map is averaged over
    ``patch_size × patch_size`` neighbourhoods (stride 1; border cells average the cells that
    exist) and resized bilinearly to the first map's ``h × w``.
    """
    size = levels[0].shape[-2:]
    out = []
    for level in levels:
        pooled = F.avg_pool2d(level.float(), patch_size, stride=1, padding=patch_size // 2, count_include_pad=False)
        if pooled.shape[-2:] != size:
            pooled = F.interpolate(pooled, size=size, mode="bilinear", align_corners=False)
        out.append(pooled)
    return torch.cat(out, dim=1)


def greedy_coreset(features: torch.Tensor, n_select: int, projection_dim: int | None = 128,
                   seed: int = 0, progress: bool = False) -> torch.Tensor:
    """Indices of ``n_select`` rows of ``features`` ``[N, D]`` chosen by greedy k-center (PatchCore Alg. 1).

    Rows are first projected to ``projection_dim`` dimensions with a seeded Gaussian matrix
    (skipped when ``D`` is not larger or ``projection_dim`` is None). The first index is drawn
    with the seed; every further step adds the row whose distance to its nearest selected row
    is largest, and updates those distances exactly. Runs on ``features``' device.
    """
    n, dim = features.shape
    if not 1 <= n_select <= n:
        raise ConfigError(f"n_select must be between 1 and the number of features ({n}), got {n_select}")
    generator = torch_generator(seed)
    x = features.float()
    if projection_dim and dim > projection_dim:
        projection = torch.randn(dim, projection_dim, generator=generator) / math.sqrt(projection_dim)
        x = x @ projection.to(x.device)
    squared_norms = (x * x).sum(dim=1)
    first = int(torch.randint(n, (1,), generator=generator))
    selected = torch.empty(n_select, dtype=torch.long, device=x.device)
    selected[0] = first
    nearest = (squared_norms - 2 * x @ x[first] + squared_norms[first]).clamp_min(0)
    for k in tqdm(range(1, n_select), desc="coreset", leave=False, disable=not progress):
        pick = nearest.argmax()
        selected[k] = pick
        centre = x[pick]
        nearest = torch.minimum(nearest, (squared_norms - 2 * x @ centre + (centre * centre).sum()).clamp_min(0))
    return selected


def nearest_distances(queries: torch.Tensor, bank: torch.Tensor, query_chunk: int = 4096,
                      bank_chunk: int = 65536) -> torch.Tensor:
    """Euclidean distance of every row of ``queries`` ``[M, D]`` to its nearest row of ``bank`` ``[K, D]``.

    Computed on ``bank``'s device in blocks of at most ``query_chunk × bank_chunk`` distances
    (:func:`torch.cdist`) → ``[M]`` on that device.
    """
    if bank.numel() == 0:
        raise ConfigError("the memory bank is empty; fit PatchCore on at least one normal image first")
    out = []
    for start in range(0, queries.shape[0], query_chunk):
        q = queries[start:start + query_chunk].to(bank.device).float()
        best = torch.full((q.shape[0],), float("inf"), device=bank.device)
        for b in range(0, bank.shape[0], bank_chunk):
            best = torch.minimum(best, torch.cdist(q, bank[b:b + bank_chunk].float()).amin(dim=1))
        out.append(best)
    return torch.cat(out) if out else torch.zeros(0, device=bank.device)


def anomaly_maps(patch_scores: torch.Tensor, image_size: int, sigma: float) -> np.ndarray:
    """Patch distances ``[N, h, w]`` → maps ``[N, S, S]``: bilinear upsampling, Gaussian blur σ (px)."""
    up = F.interpolate(patch_scores[:, None].float().cpu(), size=(image_size, image_size), mode="bilinear",
                       align_corners=False)[:, 0].numpy()
    if sigma > 0:
        up = np.stack([gaussian_filter(m, sigma=sigma) for m in up]) if len(up) else up
    return up.astype(np.float32)


# --------------------------------------------------------------------------------------------
# the model


class PatchCore:
    """Frozen backbone + coreset memory bank (module docstring). ``fit`` then ``predict``.

    ``memory_bank`` (``[K, D]``, on the fitting device) is set by :meth:`fit`.
    """

    def __init__(self, config: PatchCoreConfig, backbone: Backbone | None = None):
        self.config = config
        self.backbone = (backbone if backbone is not None else build_backbone(config.backbone, config.weights)).freeze()
        self.memory_bank: torch.Tensor | None = None

    def describe(self) -> str:
        return self.backbone.describe()

    @torch.no_grad()
    def patch_features(self, images: torch.Tensor, device: str | torch.device = "cpu",
                       progress: bool = False) -> torch.Tensor:
        """Locally aware patch features of ``images`` (uint8 or float in [0, 1]) → ``[N, h, w, D]`` on CPU."""
        backbone = self.backbone.to(device).eval()
        out = []
        starts = range(0, images.shape[0], self.config.batch_size)
        for start in tqdm(starts, desc="patch features", leave=False, disable=not progress):
            batch = images[start:start + self.config.batch_size].to(device)
            batch = batch.float() / 255.0 if batch.dtype == torch.uint8 else batch.float()
            levels = backbone.feature_levels(batch)
            features = local_patch_features([levels[i] for i in sorted(self.config.levels)], self.config.patch_size)
            out.append(features.permute(0, 2, 3, 1).cpu())
        if not out:
            raise ConfigError("no images given; PatchCore needs at least one image")
        return torch.cat(out)

    @torch.no_grad()
    def fit(self, normals: torch.Tensor, seed: int = 0, device: str | torch.device = "cpu",
            progress: bool = False) -> PatchCore:
        """Build the memory bank from normal images: all patch features, greedy-coreset subsampled."""
        features = self.patch_features(normals, device, progress)
        bank = features.reshape(-1, features.shape[-1]).to(device)
        n_select = max(1, int(self.config.coreset_ratio * bank.shape[0]))
        if n_select < bank.shape[0]:
            bank = bank[greedy_coreset(bank, n_select, self.config.projection_dim, seed, progress)]
        self.memory_bank = bank.contiguous()
        return self

    @torch.no_grad()
    def patch_scores(self, images: torch.Tensor, device: str | torch.device = "cpu",
                     progress: bool = False) -> torch.Tensor:
        """Nearest-neighbour distance of every patch of ``images`` → ``[N, h, w]`` on CPU."""
        if self.memory_bank is None:
            raise ConfigError("PatchCore has no memory bank yet; call fit(normal_images) first")
        features = self.patch_features(images, device, progress)
        n, h, w, dim = features.shape
        distances = nearest_distances(features.reshape(-1, dim), self.memory_bank,
                                      self.config.query_chunk, self.config.bank_chunk)
        return distances.reshape(n, h, w).cpu()

    def predict(self, images: torch.Tensor, device: str | torch.device = "cpu", maps: bool = True,
                progress: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Image scores ``[N]`` (max patch distance) and, with ``maps``, anomaly maps ``[N, S, S]``."""
        patches = self.patch_scores(images, device, progress)
        scores = patches.flatten(1).amax(dim=1).numpy()
        if not maps:
            return scores, None
        sigma = smoothing_sigma(images.shape[-1], self.config.sigma, self.config.sigma_reference_size)
        return scores, anomaly_maps(patches, images.shape[-1], sigma)


__all__ = ["PatchCore", "PatchCoreConfig", "anomaly_maps", "greedy_coreset", "local_patch_features", "nearest_distances"]
