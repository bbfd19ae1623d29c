"""The CutPaste family: DRA's same-image "CutMix" (AHL's CutPaste), AHL's cross-image CutMix,
CutPaste-Scar and CutPaste-Mix."""

from __future__ import annotations

import math

import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from osad_lib.data.pseudo.draws import check_image, draw_image, draw_int, draw_uniform, color_jitter, Result


def _box_size(g: torch.Generator, height: int, width: int, area_range: tuple[float, float],
              aspect_ratio: float) -> tuple[int, int]:
    """Box with area U(area_range)·HW and aspect exp(U(ln r, ln 1/r)), clipped to the image
    (``docs/official_code/dra.md`` "Training pipeline")."""
    area = draw_uniform(g, *area_range) * height * width
    aspect = math.exp(draw_uniform(g, math.log(aspect_ratio), math.log(1 / aspect_ratio)))
    box_w = min(max(round(math.sqrt(area * aspect)), 1), width)
    box_h = min(max(round(math.sqrt(area / aspect)), 1), height)
    return box_h, box_w


def _paste_box(image: torch.Tensor, source: torch.Tensor, g: torch.Generator,
               area_range: tuple[float, float], aspect_ratio: float, jitter: float) -> Result:
    """Cut a random box of ``source``, colour-jitter it and hard-paste it at an independent
    uniformly random location of ``image``."""
    _, height, width = image.shape
    box_h, box_w = _box_size(g, height, width, area_range, aspect_ratio)
    sy, sx = draw_int(g, 0, height - box_h), draw_int(g, 0, width - box_w)
    ty, tx = draw_int(g, 0, height - box_h), draw_int(g, 0, width - box_w)
    patch = color_jitter(source[:, sy:sy + box_h, sx:sx + box_w], g, jitter)
    out, mask = image.clone(), torch.zeros(1, height, width, dtype=image.dtype, device=image.device)
    out[:, ty:ty + box_h, tx:tx + box_w] = patch
    mask[:, ty:ty + box_h, tx:tx + box_w] = 1
    return out, mask


def cutpaste_same_image(image: torch.Tensor, generator: torch.Generator, *,
                        area_range: tuple[float, float] = (0.02, 0.15), aspect_ratio: float = 0.3,
                        jitter: float = 0.1) -> Result:
    """DRA's pseudo anomaly (its code calls it "CutMix"; DRA Eq. 4; ``docs/official_code/dra.md``
    "Training pipeline"): a box of area U(0.02, 0.15)·HW and aspect ratio in [0.3, 1/0.3], cut at
    a random place, colour-jittered (0.1) and pasted without blending at an independent random
    place of the same image."""
    check_image(image)
    return _paste_box(image, image, generator, area_range, aspect_ratio, jitter)


def cutmix_cross_image(image: torch.Tensor, generator: torch.Generator, *, sources: torch.Tensor,
                       area_range: tuple[float, float] = (0.02, 0.15), aspect_ratio: float = 0.3,
                       jitter: float = 0.1) -> Result:
    """AHL's "CutMix": the DRA box, cut from another normal image (one of ``sources`` [N,3,H,W]
    or [3,H,W], picked at random) and pasted into ``image`` (``docs/official_code/ahl.md``
    "Pseudo-anomaly generators for the features")."""
    check_image(image)
    source = draw_image(sources, generator)
    check_image(source, "sources")
    if source.shape != image.shape:
        raise ValueError(f"sources must have the image's size {tuple(image.shape)}, got {tuple(source.shape)}")
    return _paste_box(image, source, generator, area_range, aspect_ratio, jitter)


def cutpaste_scar(image: torch.Tensor, generator: torch.Generator, *,
                  width_range: tuple[float, float] = (2, 16), length_range: tuple[float, float] = (10, 25),
                  max_rotation: float = 45.0, jitter: float = 0.1, reference_size: int = 256) -> Result:
    """CutPaste-Scar (Li et al., CVPR 2021, §3.1): a thin box of width U(2, 16) and length
    U(10, 25) pixels (at 256 px, scaled to the image), colour-jittered, rotated by U(-45°, 45°)
    and pasted at a random place of the same image."""
    check_image(image)
    g, (_, height, width) = generator, image.shape
    scale = min(height, width) / reference_size
    box_w = min(max(round(draw_uniform(g, *width_range) * scale), 1), width)
    box_h = min(max(round(draw_uniform(g, *length_range) * scale), 1), height)
    sy, sx = draw_int(g, 0, height - box_h), draw_int(g, 0, width - box_w)
    patch = color_jitter(image[:, sy:sy + box_h, sx:sx + box_w], g, jitter)
    angle = draw_uniform(g, -max_rotation, max_rotation)
    patch = TF.rotate(patch, angle, InterpolationMode.BILINEAR, expand=True)
    alpha = TF.rotate(torch.ones(1, box_h, box_w, dtype=image.dtype, device=image.device), angle,
                      InterpolationMode.NEAREST, expand=True)
    ph, pw = min(alpha.shape[1], height), min(alpha.shape[2], width)
    patch, alpha = patch[:, :ph, :pw], alpha[:, :ph, :pw]
    ty, tx = draw_int(g, 0, height - ph), draw_int(g, 0, width - pw)
    out, mask = image.clone(), torch.zeros(1, height, width, dtype=image.dtype, device=image.device)
    mask[:, ty:ty + ph, tx:tx + pw] = alpha
    region = out[:, ty:ty + ph, tx:tx + pw]
    out[:, ty:ty + ph, tx:tx + pw] = torch.where(alpha > 0.5, patch, region)
    return out, mask


def cutpaste_mix(image: torch.Tensor, generator: torch.Generator, **params: object) -> Result:
    """CutPaste-Mix as DRA's pseudo-anomaly ablation uses it (DRA §4.6, "utilizes both CutMix and
    CP-Scar"): per image, with probability 1/2 each, ``cutpaste_same_image`` or ``cutpaste_scar``
    (``params`` go to the one chosen)."""
    unknown = set(params) - set(cutpaste_scar.__kwdefaults__) - set(cutpaste_same_image.__kwdefaults__)
    if unknown:
        raise ValueError(f"cutpaste_mix: unknown parameters {sorted(unknown)}; see cutpaste_same_image and cutpaste_scar")
    use_scar = bool(torch.rand((), generator=generator) < 0.5)
    chosen = cutpaste_scar if use_scar else cutpaste_same_image
    return chosen(image, generator, **{k: v for k, v in params.items() if k in chosen.__kwdefaults__})
