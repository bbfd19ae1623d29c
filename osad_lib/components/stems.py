"""Image augmentations and frozen-stem features shared by DevNet, DRA, the image baselines and AHL.

* Augmentations on batched tensors: :func:`rotate` / :func:`random_rotation` (torchvision's
  ``RandomRotation``, what the official DevNet/DRA/AHL code applies to every training image) and
  :func:`dihedral` / :func:`random_dihedral` (the 8 exact rotations by multiples of 90° and their
  mirror images: a lossless subset of those rotations plus flips, the augmentation that can be
  computed once through a frozen stem and cached).
* :class:`StemFeatures`: the outputs of a frozen stem (normalisation + the first
  ``frozen_stages`` backbone stages) for N images, per pyramid scale. A row can carry extra
  *views* — the stem outputs of the row's image under other dihedral transforms —, and
  :meth:`StemFeatures.sample` draws one view per row, so cached training still sees augmented
  inputs (the CPU demo's labelled anomalies, DRA issue "fair test").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

#: The dihedral group of the square: 4 rotations by multiples of 90°, each with or without a flip.
DIHEDRAL_VIEWS = 8


def rotate(images: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each image ``[B, C, H, W]`` by its angle (degrees, counter-clockwise) about the centre.

    Nearest-neighbour sampling, zero fill, same size — torchvision's ``RandomRotation``
    defaults (no ``expand``), on batched tensors via ``affine_grid``.
    """
    theta = torch.deg2rad(degrees.to(device=images.device, dtype=torch.float32))
    cos, sin = torch.cos(theta), torch.sin(theta)
    zero = torch.zeros_like(cos)
    height, width = images.shape[-2:]
    # output pixel (x, y) samples the input at R(-θ)·(x, y); normalised coordinates are scaled
    # by the aspect ratio so non-square images rotate rigidly.
    aspect = width / height
    matrix = torch.stack([
        torch.stack([cos, -sin / aspect, zero], dim=1),
        torch.stack([sin * aspect, cos, zero], dim=1),
    ], dim=1)
    grid = F.affine_grid(matrix, list(images.shape), align_corners=False)
    rotated = F.grid_sample(images.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return rotated.to(images.dtype)


def random_angles(n: int, max_degrees: float) -> torch.Tensor:
    """``n`` angles ~ U(−max_degrees, max_degrees) from torch's global (seeded) generator."""
    return (torch.rand(n) * 2 - 1) * max_degrees


def random_rotation(images: torch.Tensor, max_degrees: float) -> torch.Tensor:
    """``RandomRotation(max_degrees)`` on a batch: each image rotated by its own random angle."""
    if max_degrees <= 0:
        return images
    return rotate(images, random_angles(images.shape[0], max_degrees))


def to_float_images(images: torch.Tensor, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 ``[B, 3, S, S]`` (as stored in ``ImageSet``) → float in [0, 1] on ``device``."""
    images = images.to(device)
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


def dihedral(images: torch.Tensor, k: int) -> torch.Tensor:
    """Transform ``k`` (0–7) of the dihedral group on ``[B, C, H, W]``: a rotation by
    ``(k % 4) × 90°`` counter-clockwise, preceded by a horizontal flip when ``k >= 4``. Exact
    (no resampling); ``k = 0`` is the identity."""
    if not 0 <= k < DIHEDRAL_VIEWS:
        raise ValueError(f"dihedral transform index must be in 0..7, got {k}")
    out = images.flip(-1) if k >= 4 else images
    return torch.rot90(out, k % 4, dims=(-2, -1))


def random_dihedral(images: torch.Tensor) -> torch.Tensor:
    """Each image of the batch under its own uniformly drawn dihedral transform (torch's global,
    seeded generator)."""
    ks = torch.randint(DIHEDRAL_VIEWS, (images.shape[0],)).tolist()
    return torch.stack([dihedral(img.unsqueeze(0), k)[0] for img, k in zip(images, ks)]) if len(ks) else images


@dataclass(frozen=True)
class StemFeatures:
    """Outputs of a frozen stem for N images, per pyramid scale (rows aligned with an ImageSet).

    Stored as float16 on the CPU; :meth:`take` returns float32 rows on a device. ``views`` maps
    a row to the stem outputs (per scale ``[V, C, h, w]``) of other exact transforms of its image
    (:func:`dihedral`); :meth:`sample` draws, per requested row, the row itself or one of its
    views uniformly.
    """

    per_scale: tuple[torch.Tensor, ...]
    views: Mapping[int, tuple[torch.Tensor, ...]] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.per_scale[0].shape[0]

    def take(self, indices: Sequence[int] | slice, device: str | torch.device = "cpu") -> list[torch.Tensor]:
        return [f[indices].to(device).float() for f in self.per_scale]

    def select(self, indices: Sequence[int]) -> StemFeatures:
        """The given rows (renumbered 0…), with their views."""
        index = torch.as_tensor(indices, dtype=torch.long)
        views = {new: self.views[old] for new, old in enumerate(index.tolist()) if old in self.views}
        return StemFeatures(tuple(f[index] for f in self.per_scale), views)

    def with_views(self, views: Mapping[int, Sequence[torch.Tensor]]) -> StemFeatures:
        """A copy whose rows ``views`` keys gain those extra views (per scale ``[V, C, h, w]``)."""
        merged = dict(self.views)
        for row, per_scale in views.items():
            if len(per_scale) != len(self.per_scale):
                raise ValueError(f"row {row}: views of {len(per_scale)} scales, the stems have {len(self.per_scale)}")
            merged[int(row)] = tuple(per_scale)
        return StemFeatures(self.per_scale, merged)

    def sample(self, indices: Sequence[int], device: str | torch.device = "cpu") -> list[torch.Tensor]:
        """Rows ``indices``, each replaced by a uniformly drawn one of its views (itself included)
        when it has views; the draw uses torch's global (seeded, checkpointed) generator."""
        rows = self.take(list(indices), device)
        if not self.views:
            return rows
        for position, row in enumerate(indices):
            extra = self.views.get(int(row))
            if extra is None:
                continue
            pick = int(torch.randint(len(extra[0]) + 1, ()))
            if pick:
                for scale, views in enumerate(extra):
                    rows[scale][position] = views[pick - 1].to(device).float()
        return rows

    def concat(self, other: StemFeatures) -> StemFeatures:
        """Rows of ``self`` then those of ``other`` (views kept, ``other``'s renumbered)."""
        views = dict(self.views) | {len(self) + r: v for r, v in other.views.items()}
        return StemFeatures(tuple(torch.cat([a, b]) for a, b in zip(self.per_scale, other.per_scale, strict=True)),
                            views)


StemFn = Callable[[torch.Tensor], list[torch.Tensor]]


@torch.no_grad()
def stem_outputs(stem_pyramid: StemFn, images: torch.Tensor, batch_size: int = 64, device: str | torch.device = "cpu",
                 transform: int = 0, progress: bool = False, desc: str = "frozen stem") -> tuple[torch.Tensor, ...]:
    """``stem_pyramid`` (a frozen model's normalisation + frozen stages on every pyramid scale) on
    ``images`` (uint8 or [0, 1] floats ``[N, 3, S, S]``) under dihedral ``transform`` → per scale
    ``[N, C, h, w]`` float16 on the CPU. The caller puts the model in eval mode.

    Every batch holds exactly ``batch_size`` images (the last one is padded with copies of its
    last image): the CPU convolution kernels pick their algorithm by batch shape, so without the
    padding an image's output would differ in the last bits with the number of images computed
    beside it, and a per-image cache would hold values that depend on what an earlier run
    happened to compute."""
    chunks: list[list[torch.Tensor]] = []
    for start in tqdm(range(0, images.shape[0], batch_size), desc=desc, leave=False, disable=not progress):
        batch = dihedral(to_float_images(images[start:start + batch_size], device), transform)
        n = batch.shape[0]
        if n < batch_size:
            batch = torch.cat([batch, batch[-1:].expand(batch_size - n, *batch.shape[1:])])
        chunks.append([f[:n].half().cpu() for f in stem_pyramid(batch)])
    if not chunks:
        raise ValueError("no images to run the frozen stem on")
    return tuple(torch.cat(level) for level in zip(*chunks, strict=True))


def dihedral_views(stem_pyramid: StemFn, images: torch.Tensor, batch_size: int = 64,
                   device: str | torch.device = "cpu") -> list[tuple[torch.Tensor, ...]]:
    """The stem outputs of each of ``images`` under the 7 non-identity dihedral transforms: one
    entry per image, per scale ``[7, C, h, w]`` (what :meth:`StemFeatures.with_views` takes).
    The 7·N transformed images go through :func:`stem_outputs` as one stream."""
    views = torch.cat([dihedral(images, k) for k in range(1, DIHEDRAL_VIEWS)])
    per_scale = stem_outputs(stem_pyramid, views, batch_size, device)
    n = images.shape[0]
    return [tuple(level[i::n] for level in per_scale) for i in range(n)]


__all__ = ["DIHEDRAL_VIEWS", "StemFeatures", "dihedral", "dihedral_views", "random_angles", "random_dihedral",
           "random_rotation", "rotate", "stem_outputs", "to_float_images"]
