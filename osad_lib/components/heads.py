"""Scoring heads shared by DevNet, DRA and AHL: top-K multiple-instance scoring and the image pyramid.

* :class:`TopKMILHead` — DevNet's head (Eq. (5), "top-K MIL"): a 1×1 convolution scores every cell of
  the backbone's feature map, the image score is the mean of the K largest absolute cell scores,
  K = max(⌊ratio·H·W⌋, 1) (ratio 0.1 → K = 19 on 14×14, 4 on 7×7; ``docs/official_code/devnet.md``
  "Model and training"). With ``topk_ratio=0`` it is the code's plain spatial mean of the raw cell
  scores (no |·|). DRA's seen/pseudo-abnormality ``PlainHead`` is the same head
  (``docs/official_code/dra.md`` "Model").
* :func:`image_pyramid` — the code's two-scale input pyramid (the same two sections): scale ``s`` is
  the input resized with nearest-neighbour ``F.interpolate`` to ``size // 2**s``; a backbone and
  head are shared across scales and the per-scale scores are averaged (:func:`average_scales`,
  :func:`pyramid_score`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from osad_lib.validate import ConfigError


def top_k_count(n_cells: int, ratio: float) -> int:
    """K = max(⌊ratio·n_cells⌋, 1) as the official code computes it (``int(n·ratio)``)."""
    return max(int(n_cells * ratio), 1)


def top_k_mean(score_map: torch.Tensor, ratio: float = 0.1) -> torch.Tensor:
    """Mean of the K largest values of each sample's map, K = max(⌊ratio·HW⌋, 1) → ``[B]``.

    ``score_map`` is ``[B, 1, H, W]`` or ``[B, H·W]``. Values are used as given (the head
    applies |·| before calling this).
    """
    if score_map.dim() == 4:
        if score_map.shape[1] != 1:
            raise ConfigError(f"score_map must have one channel, got shape {tuple(score_map.shape)}")
        flat = score_map.flatten(1)
    elif score_map.dim() == 2:
        flat = score_map
    else:
        raise ConfigError(f"score_map must be [B, 1, H, W] or [B, H*W], got shape {tuple(score_map.shape)}")
    k = top_k_count(flat.shape[1], ratio)
    return flat.topk(k, dim=1).values.mean(dim=1)


class TopKMILHead(nn.Module):
    """1×1 conv → |·| → top-K mean (DevNet Eq. (5); DRA's ``PlainHead``) → scores ``[B]``.

    As in the official code (``docs/official_code/devnet.md`` "Model and training",
    ``docs/official_code/dra.md`` "Model"). ``topk_ratio=0`` replaces |·| + top-K by
    the plain spatial mean of the cell scores (the code's ``topk=0`` branch; DevNet's
    "DS" ablation).
    """

    def __init__(self, in_channels: int, topk_ratio: float = 0.1):
        super().__init__()
        if not 0.0 <= topk_ratio <= 1.0:
            raise ConfigError(f"topk_ratio must be in [0, 1], got {topk_ratio}; 0.1 is the paper's K = 10%")
        self.topk_ratio = float(topk_ratio)
        self.conv = nn.Conv2d(in_channels, 1, kernel_size=1)

    def score_map(self, features: torch.Tensor) -> torch.Tensor:
        """The raw per-cell anomaly scores ``[B, 1, H, W]`` (before |·| and pooling)."""
        return self.conv(features)

    def pool(self, cell_scores: torch.Tensor) -> torch.Tensor:
        """Image scores ``[B]`` from per-cell scores ``[B, 1, H, W]``."""
        if self.topk_ratio > 0:
            return top_k_mean(cell_scores.abs(), self.topk_ratio)
        return cell_scores.flatten(1).mean(dim=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.pool(self.score_map(features))


def image_pyramid(images: torch.Tensor, n_scales: int) -> list[torch.Tensor]:
    """``n_scales`` versions of ``images`` ``[B, C, H, W]``: scale s resized (nearest) to size // 2**s.

    Scale 0 is the input itself; scale s ≥ 1 is ``F.interpolate(images, size=(H // 2**s,
    W // 2**s))`` with the default nearest mode, as in the official code
    (``docs/official_code/dra.md`` "Model"; ``docs/official_code/devnet.md`` "Model and training").
    """
    if n_scales < 1:
        raise ConfigError(f"n_scales must be >= 1, got {n_scales}; the paper uses 2")
    height, width = images.shape[-2:]
    if min(height, width) // 2 ** (n_scales - 1) < 1:
        raise ConfigError(f"{n_scales} scales of a {height}x{width} image leave no pixels; use fewer scales")
    out = [images]
    for s in range(1, n_scales):
        out.append(F.interpolate(images, size=(height // 2**s, width // 2**s), mode="nearest"))
    return out


def average_scales(per_scale: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over scales of per-scale scores (each ``[B]``) → ``[B]``, as the code averages them
    (``docs/official_code/dra.md`` "Model")."""
    return torch.stack(list(per_scale), dim=0).mean(dim=0)


def pyramid_score(score_fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                  n_scales: int) -> torch.Tensor:
    """``score_fn`` applied to every scale of :func:`image_pyramid`, averaged → ``[B]``."""
    return average_scales([score_fn(x).reshape(x.shape[0]) for x in image_pyramid(images, n_scales)])


__all__ = ["TopKMILHead", "average_scales", "image_pyramid", "pyramid_score", "top_k_count", "top_k_mean"]
