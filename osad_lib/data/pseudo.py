"""Pseudo-anomaly generators of DRA, AHL and BGAD, on float images in [0, 1].

Every generator has the signature ``fn(image [3,H,W], generator: torch.Generator, **params)
-> (image [3,H,W], mask [1,H,W])``: the mask is float 0/1 and never empty, pixels outside the
mask are unchanged, and all randomness comes from ``generator`` (same seed, same output).
``apply_batch(name, images, seed)`` runs one on a batch; ``GENERATORS`` lists them for
galleries and widgets.

===================  =========================================================================
name                 what it does (source)
===================  =========================================================================
cutpaste_same_image  DRA's code "CutMix": a colour-jittered box of the same image pasted
                     elsewhere (DRA Eq. 4; ``docs/official_code/dra.md`` "Training pipeline");
                     AHL's "CutPaste"
cutmix_cross_image   the same box cut from *another* normal image (AHL's "CutMix",
                     ``docs/official_code/ahl.md`` "Pseudo-anomaly generators for the features")
cutpaste_scar        a thin, long, rotated box of the same image (CutPaste-Scar, Li et al. 2021)
cutpaste_mix         per image one of the two above, p = 1/2 (DRA §4.6: "CutPaste-Mix utilizes
                     both CutMix and CP-Scar")
draem_perlin         thresholded, rotated Perlin noise blended with a texture (DRAEM;
                     ``docs/official_code/ahl.md`` "Pseudo-anomaly generators for the features")
randaug_cutpaste     a real defect, RandAugmented jointly with its mask, pasted into a normal
                     image (BGAD §3.4; ``docs/official_code/bgad.md``
                     "Data and RandAugmented CutPaste")
===================  =========================================================================

Augmentations that the official pipelines apply to the whole image afterwards (DRA/AHL's
RandomRotation(180), DRAEM's rotation of the base image with p = 0.3) are not part of these
generators: they would change pixels outside the mask. Apply them in the data pipeline.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from osad_lib.data.images import is_image_file, load_rgb
from osad_lib.seeding import torch_generator
from osad_lib.validate import ConfigError, choose

Result = tuple[torch.Tensor, torch.Tensor]
MAX_TRIES = 100  # redraws before a generator gives up on producing a non-empty mask

# --------------------------------------------------------------------------------------------
# random draws (all from the caller's generator, on CPU)


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def _randint(g: torch.Generator, low: int, high: int) -> int:
    """Integer in [low, high] inclusive."""
    return int(torch.randint(low, high + 1, (), generator=g))


def _check_image(image: torch.Tensor, name: str = "image") -> None:
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"{name} must be a float tensor of shape (3, H, W) in [0, 1], got {shape}")
    if not image.is_floating_point():
        raise ValueError(f"{name} must be a float tensor in [0, 1], got dtype {image.dtype}; divide uint8 images by 255")
    low, high = image.aminmax()
    if low < 0 or high > 1:
        raise ValueError(f"{name} must lie in [0, 1] (got [{low:.3g}, {high:.3g}]); pass images before normalisation")


def color_jitter(patch: torch.Tensor, g: torch.Generator, strength: float = 0.1) -> torch.Tensor:
    """torchvision ``ColorJitter(s, s, s, s)``: brightness, contrast, saturation factors U(1-s, 1+s)
    and hue shift U(-s, s), applied in a random order (DRA/AHL use s = 0.1:
    ``docs/official_code/dra.md`` "Training pipeline")."""
    if strength == 0:
        return patch
    factors = [_uniform(g, 1 - strength, 1 + strength) for _ in range(3)] + [_uniform(g, -strength, strength)]
    ops = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    for index in torch.randperm(4, generator=g).tolist():
        patch = ops[index](patch, factors[index])
    return patch.clamp(0, 1)


# --------------------------------------------------------------------------------------------
# CutPaste family


def _box_size(g: torch.Generator, height: int, width: int, area_range: tuple[float, float],
              aspect_ratio: float) -> tuple[int, int]:
    """Box with area U(area_range)·HW and aspect exp(U(ln r, ln 1/r)), clipped to the image
    (``docs/official_code/dra.md`` "Training pipeline")."""
    area = _uniform(g, *area_range) * height * width
    aspect = math.exp(_uniform(g, math.log(aspect_ratio), math.log(1 / aspect_ratio)))
    box_w = min(max(round(math.sqrt(area * aspect)), 1), width)
    box_h = min(max(round(math.sqrt(area / aspect)), 1), height)
    return box_h, box_w


def _paste_box(image: torch.Tensor, source: torch.Tensor, g: torch.Generator,
               area_range: tuple[float, float], aspect_ratio: float, jitter: float) -> Result:
    """Cut a random box of ``source``, colour-jitter it and hard-paste it at an independent
    uniformly random location of ``image``."""
    _, height, width = image.shape
    box_h, box_w = _box_size(g, height, width, area_range, aspect_ratio)
    sy, sx = _randint(g, 0, height - box_h), _randint(g, 0, width - box_w)
    ty, tx = _randint(g, 0, height - box_h), _randint(g, 0, width - box_w)
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
    _check_image(image)
    return _paste_box(image, image, generator, area_range, aspect_ratio, jitter)


def _pick(stack: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return stack if stack.ndim == 3 else stack[_randint(g, 0, stack.shape[0] - 1)]


def cutmix_cross_image(image: torch.Tensor, generator: torch.Generator, *, sources: torch.Tensor,
                       area_range: tuple[float, float] = (0.02, 0.15), aspect_ratio: float = 0.3,
                       jitter: float = 0.1) -> Result:
    """AHL's "CutMix": the DRA box, cut from another normal image (one of ``sources`` [N,3,H,W]
    or [3,H,W], picked at random) and pasted into ``image`` (``docs/official_code/ahl.md``
    "Pseudo-anomaly generators for the features")."""
    _check_image(image)
    source = _pick(sources, generator)
    _check_image(source, "sources")
    if source.shape != image.shape:
        raise ValueError(f"sources must have the image's size {tuple(image.shape)}, got {tuple(source.shape)}")
    return _paste_box(image, source, generator, area_range, aspect_ratio, jitter)


def cutpaste_scar(image: torch.Tensor, generator: torch.Generator, *,
                  width_range: tuple[float, float] = (2, 16), length_range: tuple[float, float] = (10, 25),
                  max_rotation: float = 45.0, jitter: float = 0.1, reference_size: int = 256) -> Result:
    """CutPaste-Scar (Li et al., CVPR 2021, §3.1): a thin box of width U(2, 16) and length
    U(10, 25) pixels (at 256 px, scaled to the image), colour-jittered, rotated by U(-45°, 45°)
    and pasted at a random place of the same image."""
    _check_image(image)
    g, (_, height, width) = generator, image.shape
    scale = min(height, width) / reference_size
    box_w = min(max(round(_uniform(g, *width_range) * scale), 1), width)
    box_h = min(max(round(_uniform(g, *length_range) * scale), 1), height)
    sy, sx = _randint(g, 0, height - box_h), _randint(g, 0, width - box_w)
    patch = color_jitter(image[:, sy:sy + box_h, sx:sx + box_w], g, jitter)
    angle = _uniform(g, -max_rotation, max_rotation)
    patch = TF.rotate(patch, angle, InterpolationMode.BILINEAR, expand=True)
    alpha = TF.rotate(torch.ones(1, box_h, box_w, dtype=image.dtype, device=image.device), angle,
                      InterpolationMode.NEAREST, expand=True)
    ph, pw = min(alpha.shape[1], height), min(alpha.shape[2], width)
    patch, alpha = patch[:, :ph, :pw], alpha[:, :ph, :pw]
    ty, tx = _randint(g, 0, height - ph), _randint(g, 0, width - pw)
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


# --------------------------------------------------------------------------------------------
# DRAEM-style Perlin-noise anomalies


def perlin_noise(height: int, width: int, cells_y: int, cells_x: int, g: torch.Generator) -> torch.Tensor:
    """2-D gradient (Perlin) noise on a lattice of ``cells_y`` x ``cells_x`` cells, scaled by √2 to
    about [-1, 1] as in the Perlin code DRAEM uses (so that the 0.5 threshold keeps blobs)."""
    angles = 2 * math.pi * torch.rand(cells_y + 1, cells_x + 1, generator=g)
    gradients = torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)
    y = (torch.arange(height) + 0.5) * cells_y / height
    x = (torch.arange(width) + 0.5) * cells_x / width
    y0, x0 = y.floor().long().clamp(max=cells_y - 1), x.floor().long().clamp(max=cells_x - 1)
    fy, fx = (y - y0)[:, None], (x - x0)[None, :]

    def corner(dy: int, dx: int) -> torch.Tensor:
        index = ((y0 + dy)[:, None] * (cells_x + 1) + (x0 + dx)[None, :]).flatten()
        grad = gradients.reshape(-1, 2).index_select(0, index).view(height, width, 2)
        return grad[..., 0] * (fx - dx) + grad[..., 1] * (fy - dy)

    def fade(t: torch.Tensor) -> torch.Tensor:
        return t * t * t * (t * (t * 6 - 15) + 10)

    wy, wx = fade(fy), fade(fx)
    top = corner(0, 0) * (1 - wx) + corner(0, 1) * wx
    bottom = corner(1, 0) * (1 - wx) + corner(1, 1) * wx
    return math.sqrt(2) * (top * (1 - wy) + bottom * wy)


def perlin_mask(height: int, width: int, g: torch.Generator, *, threshold: float = 0.5,
                max_scale_exp: int = 5, max_rotation: float = 90.0) -> torch.Tensor:
    """DRAEM's anomaly shape: Perlin noise with 2^U{0..5} cells per axis, rotated by U(-90°, 90°),
    thresholded at 0.5; redrawn until non-empty. Float 0/1 mask [1, H, W]. The code's:
    ``docs/official_code/ahl.md`` "Pseudo-anomaly generators for the features"."""
    for _ in range(MAX_TRIES):
        cells_y, cells_x = 2 ** _randint(g, 0, max_scale_exp), 2 ** _randint(g, 0, max_scale_exp)
        noise = perlin_noise(height, width, cells_y, cells_x, g)[None]
        noise = TF.rotate(noise, _uniform(g, -max_rotation, max_rotation), InterpolationMode.BILINEAR)
        mask = (noise > threshold).float()
        if mask.any():
            return mask
    raise RuntimeError(f"no Perlin region above threshold {threshold} in {MAX_TRIES} draws; lower the threshold")


def generated_texture(height: int, width: int, g: torch.Generator) -> torch.Tensor:
    """A procedural colour texture [3, H, W] in [0, 1] (used when no DTD/other images are given):
    per channel, two octaves of Perlin noise plus an oriented sinusoidal grating, min-max scaled."""
    channels = []
    angle, frequency = _uniform(g, 0, math.pi), _uniform(g, 2, 24)
    y, x = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    grating = torch.sin(2 * math.pi * frequency * (x * math.cos(angle) + y * math.sin(angle)))
    for _ in range(3):
        cells = 2 ** _randint(g, 1, 4)
        value = perlin_noise(height, width, cells, cells, g) + 0.5 * perlin_noise(height, width, 2 * cells, 2 * cells, g)
        value = value + _uniform(g, 0, 0.5) * grating
        channels.append((value - value.min()) / (value.max() - value.min() + 1e-8))
    return torch.stack(channels)


def _draem_texture_ops() -> list[Callable[[torch.Tensor, torch.Generator], torch.Tensor]]:
    """DRAEM's 10 texture augmenters (imgaug in the original) on float tensors
    (``docs/official_code/ahl.md`` "Pseudo-anomaly generators for the features")."""
    return [
        lambda t, g: torch.stack([TF.adjust_gamma(c[None], _uniform(g, 0.5, 2.0))[0] for c in t]),
        lambda t, g: (t * _uniform(g, 0.8, 1.2) + _uniform(g, -30, 30) / 255).clamp(0, 1),
        lambda t, g: TF.adjust_sharpness(t, _uniform(g, 0.0, 2.0)),
        lambda t, g: TF.adjust_saturation(TF.adjust_hue(t, _uniform(g, -50, 50) / 360), _uniform(g, 0.5, 1.5)),
        lambda t, g: TF.solarize(t, _uniform(g, 32, 128) / 255),
        lambda t, g: TF.posterize((t * 255).round().to(torch.uint8), _randint(g, 4, 8)).float() / 255,
        lambda t, g: TF.invert(t),
        lambda t, g: TF.autocontrast(t),
        lambda t, g: TF.equalize(t),
        lambda t, g: TF.rotate(t, _uniform(g, -45, 45), InterpolationMode.BILINEAR),
    ]


def augment_texture(texture: torch.Tensor, g: torch.Generator, n_ops: int = 3) -> torch.Tensor:
    """Apply ``n_ops`` distinct random DRAEM texture augmenters
    (``docs/official_code/ahl.md`` "Pseudo-anomaly generators for the features")."""
    ops = _draem_texture_ops()
    for index in torch.randperm(len(ops), generator=g)[:n_ops].tolist():
        texture = ops[index](texture, g)
    return texture.clamp(0, 1)


def draem_perlin(image: torch.Tensor, generator: torch.Generator, *, textures: torch.Tensor | None = None,
                 beta_max: float = 0.8, threshold: float = 0.5, max_scale_exp: int = 5,
                 max_rotation: float = 90.0, augment: bool = True) -> Result:
    """DRAEM-style anomaly (Zavrtanik et al. 2021): out = img·(1−M) + (1−β)·tex·M + β·img·M with M
    a Perlin mask (``perlin_mask``) and β = U(0, beta_max), as AHL's code makes them
    (``docs/official_code/ahl.md`` "Pseudo-anomaly generators for the features").

    Texture source, in order of preference: ``textures`` [N,3,H',W'] or [3,H',W'] (one picked at
    random, resized to the image) — DTD images from :func:`load_textures` as in DRAEM/AHL, or
    images of another dataset; if None, a :func:`generated_texture`. With ``augment`` the texture
    gets 3 random DRAEM augmenters. (AHL drew one DTD texture for the whole run: pass just that one.)
    """
    _check_image(image)
    g, (_, height, width) = generator, image.shape
    if textures is None:
        texture = generated_texture(height, width, g)
    else:
        texture = _pick(textures, g)
        _check_image(texture, "textures")
        texture = TF.resize(texture, [height, width], antialias=True).clamp(0, 1)
    if augment:
        texture = augment_texture(texture, g)
    mask = perlin_mask(height, width, g, threshold=threshold, max_scale_exp=max_scale_exp,
                       max_rotation=max_rotation).to(image.device, image.dtype)
    beta = _uniform(g, 0, beta_max)
    texture = texture.to(image.device, image.dtype)
    out = image * (1 - mask) + (1 - beta) * texture * mask + beta * image * mask
    return out, mask


def load_textures(folder: str | os.PathLike, size: int, limit: int | None = None) -> torch.Tensor:
    """Texture images [N,3,size,size] in [0, 1] from every image file under ``folder`` (sorted;
    for DTD pass ``dtd/images``), the first ``limit`` of them if given."""
    root = Path(folder).expanduser()
    files = sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p.name)) if root.is_dir() else []
    if not files:
        raise ConfigError(f"no texture images found under {root}; pass the DTD folder 'dtd/images' or leave textures unset")
    images = []
    for path in files[:limit]:
        array = np.asarray(load_rgb(path).resize((size, size)), dtype=np.float32) / 255
        images.append(torch.from_numpy(array).permute(2, 0, 1))
    return torch.stack(images)


# --------------------------------------------------------------------------------------------
# BGAD: RandAugmented CutPaste and foreground masks

Op = Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def _affine(image: torch.Tensor, mask: torch.Tensor, angle: float = 0.0, translate: Sequence[float] = (0, 0),
            scale: float = 1.0, shear: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The same affine warp of the image (bilinear) and its mask (nearest); translate in pixels."""
    params = dict(angle=angle, translate=[round(t) for t in translate], scale=scale, shear=[shear, 0.0])
    return (TF.affine(image, interpolation=InterpolationMode.BILINEAR, **params),
            TF.affine(mask, interpolation=InterpolationMode.NEAREST, **params))


def _warp(image: torch.Tensor, mask: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample image (bilinear) and mask (nearest) at identity + ``flow`` [H, W, 2] (normalised)."""
    height, width = image.shape[1:]
    y, x = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    grid = (torch.stack([x, y], dim=-1) + flow)[None].to(image)
    warped = F.grid_sample(image[None], grid, mode="bilinear", padding_mode="reflection", align_corners=True)[0]
    warped_mask = F.grid_sample(mask[None], grid, mode="nearest", padding_mode="zeros", align_corners=True)[0]
    return warped, warped_mask


def _grid_distortion(image: torch.Tensor, mask: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth random displacement field (stand-in for Grid/Elastic/PiecewiseAffine distortions)."""
    cells = _randint(g, 3, 6)
    coarse = (torch.rand(1, 2, cells, cells, generator=g) - 0.5) * 2 * _uniform(g, 0.02, 0.08)
    flow = F.interpolate(coarse, size=image.shape[1:], mode="bicubic", align_corners=True)[0].permute(1, 2, 0)
    return _warp(image, mask, flow)


def _optical_distortion(image: torch.Tensor, mask: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Radial (barrel/pincushion) distortion r -> r·(1 + k·r²), k = U(-0.5, 0.5) (approximates
    albumentations' OpticalDistortion)."""
    height, width = image.shape[1:]
    k = _uniform(g, -0.5, 0.5)
    y, x = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    radius2 = x * x + y * y
    return _warp(image, mask, torch.stack([x * k * radius2, y * k * radius2], dim=-1))


def _photometric(fn: Callable[[torch.Tensor, torch.Generator], torch.Tensor]) -> Op:
    return lambda image, mask, g: (fn(image, g).clamp(0, 1), mask)


def _rot90(image: torch.Tensor, mask: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    k = _randint(g, 1, 3) if image.shape[1] == image.shape[2] else 2  # non-square: 180° only
    return torch.rot90(image, k, (1, 2)), torch.rot90(mask, k, (1, 2))


def _flip(image: torch.Tensor, mask: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    dims = [(1,), (2,), (1, 2)][_randint(g, 0, 2)]
    return image.flip(dims), mask.flip(dims)


def _transpose(image: torch.Tensor, mask: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    if image.shape[1] != image.shape[2]:
        return _flip(image, mask, g)
    return image.transpose(1, 2), mask.transpose(1, 2)


def _with_probability(p: float, op: Op) -> Op:
    def maybe(image: torch.Tensor, mask: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return op(image, mask, g) if _uniform(g, 0, 1) < p else (image, mask)

    return maybe


def _one_of(*ops: Op) -> Op:
    return lambda image, mask, g: ops[_randint(g, 0, len(ops) - 1)](image, mask, g)


def _shift_scale_rotate(image: torch.Tensor, mask: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    height, width = image.shape[1:]
    shift = (_uniform(g, -0.0625, 0.0625) * width, _uniform(g, -0.0625, 0.0625) * height)
    return _affine(image, mask, _uniform(g, -45, 45), shift, _uniform(g, 0.8, 1.2))


def _median3(t: torch.Tensor) -> torch.Tensor:
    """3x3 median filter with replicated borders."""
    padded = F.pad(t[None], (1, 1, 1, 1), mode="replicate")[0]
    return padded.unfold(1, 3, 1).unfold(2, 3, 1).flatten(-2).median(-1).values


def _code_ops() -> list[Op]:
    """BGAD code's 11-op albumentations list, same probabilities, torch re-implementations
    (``docs/official_code/bgad.md`` "Data and RandAugmented CutPaste")."""
    noise = _photometric(lambda t, g: t + torch.randn(t.shape, generator=g).to(t) * math.sqrt(_uniform(g, 10, 50)) / 255)
    blur = _photometric(lambda t, g: TF.gaussian_blur(t, [3, 3]))
    median = _photometric(lambda t, g: _median3(t))
    return [
        _rot90, _flip, _transpose, _optical_distortion,
        _with_probability(0.2, noise),
        _with_probability(0.2, _one_of(blur, median, blur)),
        _with_probability(0.2, _shift_scale_rotate),
        _with_probability(0.2, _one_of(_optical_distortion, _grid_distortion)),
        _with_probability(0.3, _one_of(
            _photometric(lambda t, g: TF.autocontrast(t)),  # stand-in for CLAHE
            _photometric(lambda t, g: TF.adjust_sharpness(t, _uniform(g, 1.5, 3.0))),
            _photometric(lambda t, g: TF.adjust_sharpness(TF.adjust_contrast(t, 1.5), 2.0)),  # emboss-like
            _photometric(lambda t, g: TF.adjust_contrast(TF.adjust_brightness(t, _uniform(g, 0.8, 1.2)),
                                                         _uniform(g, 0.8, 1.2))),
        )),
        _with_probability(0.3, _photometric(lambda t, g: TF.adjust_hue(
            TF.adjust_saturation(TF.adjust_brightness(t, _uniform(g, 0.92, 1.08)), _uniform(g, 0.88, 1.12)),
            _uniform(g, -20, 20) / 180))),
    ]


def _paper_ops() -> list[Op]:
    """BGAD paper's list (§3.4): AutoContrast, Equalize, Rotate, Posterize, Solarize, Brightness,
    Sharpness, Translate, Shear. Magnitudes: the code's where it has one (rotate 45°, shift
    6.25 %, brightness 0.2), else RandAugment's maxima (posterize 4 bits, shear 0.3 ≈ 17°)."""
    def translate(image: torch.Tensor, mask: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = image.shape[1:]
        return _affine(image, mask, translate=(_uniform(g, -0.0625, 0.0625) * width, _uniform(g, -0.0625, 0.0625) * height))

    return [
        _photometric(lambda t, g: TF.autocontrast(t)),
        _photometric(lambda t, g: TF.equalize(t)),
        lambda image, mask, g: _affine(image, mask, angle=_uniform(g, -45, 45)),
        _photometric(lambda t, g: TF.posterize((t * 255).round().to(torch.uint8), _randint(g, 4, 8)).float() / 255),
        _photometric(lambda t, g: TF.solarize(t, _uniform(g, 0.5, 1.0))),
        _photometric(lambda t, g: TF.adjust_brightness(t, _uniform(g, 0.8, 1.2))),
        _photometric(lambda t, g: TF.adjust_sharpness(t, _uniform(g, 0.1, 1.9))),
        translate,
        lambda image, mask, g: _affine(image, mask, shear=math.degrees(_uniform(g, -0.3, 0.3))),
    ]


RANDAUG_OP_SETS = {"paper": _paper_ops, "code": _code_ops}


def _shift(tensor: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Translate by (dy, dx) pixels; what leaves the image is dropped, the rest is zero."""
    out = torch.zeros_like(tensor)
    height, width = tensor.shape[1:]
    ys, yd = slice(max(-dy, 0), min(height - dy, height)), slice(max(dy, 0), min(height + dy, height))
    xs, xd = slice(max(-dx, 0), min(width - dx, width)), slice(max(dx, 0), min(width + dx, width))
    if ys.start < ys.stop and xs.start < xs.stop:
        out[:, yd, xd] = tensor[:, ys, xs]
    return out


def _target_point(mask: torch.Tensor, allowed: torch.Tensor, g: torch.Generator) -> tuple[int, int]:
    """A random ``allowed`` pixel inside the centre band that keeps half the defect's bounding
    box off each border (BGAD's code: ``docs/official_code/bgad.md``
    "Data and RandAugmented CutPaste"); any allowed pixel if the band has none."""
    ys, xs = torch.nonzero(mask[0] > 0.5, as_tuple=True)
    half_h, half_w = int(ys.max() - ys.min()) // 2, int(xs.max() - xs.min()) // 2
    height, width = mask.shape[1:]
    band = torch.zeros_like(allowed)
    band[half_h:height - half_h, half_w:width - half_w] = True
    candidates = torch.nonzero(allowed & band) if (allowed & band).any() else torch.nonzero(allowed)
    y, x = candidates[_randint(g, 0, len(candidates) - 1)].tolist()
    return y, x


def _place(mask: torch.Tensor, foreground: torch.Tensor | None, random_location: bool,
           g: torch.Generator) -> tuple[int, int]:
    """Shift (dy, dx) for the defect: BGAD's foreground rule, or random / in place without one."""
    if foreground is not None:
        fg = foreground[0] > 0.5
        inside = float((mask[0] > 0.5)[fg].sum()) / float((mask[0] > 0.5).sum())
        if inside > 2 / 3 or not fg.any():
            return 0, 0
        allowed = fg
    elif random_location:
        allowed = torch.ones(mask.shape[1:], dtype=torch.bool)
    else:
        return 0, 0
    ys, xs = torch.nonzero(mask[0] > 0.5, as_tuple=True)
    y, x = _target_point(mask, allowed, g)
    return round(y - ys.float().mean().item()), round(x - xs.float().mean().item())


def randaug_cutpaste(image: torch.Tensor, generator: torch.Generator, *, anomalies: torch.Tensor,
                     anomaly_masks: torch.Tensor, foreground: torch.Tensor | None = None, n_ops: int = 3,
                     op_set: str = "paper", random_location: bool = True) -> Result:
    """BGAD's RandAugmented CutPaste (BGAD §3.4, ``docs/official_code/bgad.md``
    "Data and RandAugmented CutPaste").

    A real anomaly (one of ``anomalies`` [N,3,H,W] with ``anomaly_masks`` [N,1,H,W], picked at
    random) gets ``n_ops`` = 3 distinct random ops, geometric ones applied jointly to image and
    mask; its defect pixels are pasted into the normal ``image``. ``op_set``: "paper" (the
    paper's RandAugment list, default) or "code" (the code's albumentations list, re-implemented).
    Placement: with a ``foreground`` mask [1,H,W] (see :func:`foreground_mask`) as BGAD's code:
    in place if > 2/3 of the defect lies on the foreground, else the defect is translated so its
    centroid lands on a random foreground point (the code moves each contour separately; we
    move the defect as a whole). Without one: a random location (paper) or, with
    ``random_location=False``, in place (the code's behaviour on BTAD).
    """
    _check_image(image)
    ops = RANDAUG_OP_SETS[choose("op_set", op_set, tuple(RANDAUG_OP_SETS))]()
    g = generator
    for _ in range(MAX_TRIES):
        index = _randint(g, 0, anomalies.shape[0] - 1) if anomalies.ndim == 4 else None
        anomaly = anomalies if index is None else anomalies[index]
        mask = (anomaly_masks if index is None else anomaly_masks[index]).to(image.dtype)
        if anomaly.shape != image.shape or mask.shape != (1, *image.shape[1:]):
            raise ValueError(f"anomaly {tuple(anomaly.shape)} and mask {tuple(mask.shape)} must match the image {tuple(image.shape)}")
        for op_index in torch.randperm(len(ops), generator=g)[:n_ops].tolist():
            anomaly, mask = ops[op_index](anomaly, mask, g)
        mask = (mask > 0.5).to(image.dtype)
        if not mask.any():
            continue
        dy, dx = _place(mask, foreground, random_location, g)
        anomaly, mask = _shift(anomaly, dy, dx), _shift(mask, dy, dx)
        if mask.any():
            return image * (1 - mask) + anomaly * mask, mask
    raise RuntimeError(f"RandAugmented CutPaste produced an empty defect {MAX_TRIES} times; check anomaly_masks")


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold (maximal between-class variance) of values in [0, 1]."""
    hist, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(hist)
    weight_high = weight_low[-1] - weight_low
    mean_low = np.cumsum(hist * centres) / np.maximum(weight_low, 1)
    mean_high = (np.sum(hist * centres) - np.cumsum(hist * centres)) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(edges[int(np.argmax(between)) + 1])


def foreground_mask(image: torch.Tensor, min_fraction: float = 0.02, max_fraction: float = 0.98) -> torch.Tensor:
    """Object foreground [1,H,W] (float 0/1) by grayscale Otsu thresholding, as BGAD's authors made
    their ``fg_mask`` files (issue #8; ``docs/official_code/bgad.md`` "Data and RandAugmented CutPaste").

    The side of the threshold that covers most of the image border is background; the result
    is cleaned with a 3x3 opening and hole filling. Textures (no object: the foreground would
    cover less than ``min_fraction`` or more than ``max_fraction`` of the image) get an all-ones
    mask, i.e. defects may go anywhere.
    """
    _check_image(image)
    gray = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]).cpu().numpy()
    fg = gray > otsu_threshold(gray)
    border = np.concatenate([fg[0], fg[-1], fg[:, 0], fg[:, -1]])
    if border.mean() > 0.5:
        fg = ~fg
    fg = ndimage.binary_fill_holes(ndimage.binary_opening(fg, structure=np.ones((3, 3))))
    if not min_fraction <= fg.mean() <= max_fraction:
        fg = np.ones_like(fg)
    return torch.from_numpy(fg.astype(np.float32))[None].to(image.device, image.dtype)


# --------------------------------------------------------------------------------------------
# registry and batches


@dataclass(frozen=True)
class PseudoGenerator:
    """A generator in ``GENERATORS``: its function, a one-line description, the keyword inputs it
    needs, and those that ``apply_batch`` indexes per image."""

    fn: Callable[..., Result]
    description: str
    needs: tuple[str, ...] = ()
    per_image: tuple[str, ...] = ()


GENERATORS: dict[str, PseudoGenerator] = {
    "cutpaste_same_image": PseudoGenerator(
        cutpaste_same_image, "DRA 'CutMix' / AHL 'CutPaste': jittered box pasted within the same image"),
    "cutmix_cross_image": PseudoGenerator(
        cutmix_cross_image, "AHL 'CutMix': jittered box from another normal image", needs=("sources",)),
    "cutpaste_scar": PseudoGenerator(cutpaste_scar, "CutPaste-Scar: thin rotated box of the same image"),
    "cutpaste_mix": PseudoGenerator(cutpaste_mix, "DRA CP-Mix: same-image box or scar, 50/50 per image"),
    "draem_perlin": PseudoGenerator(draem_perlin, "DRAEM: Perlin-shaped region blended with a texture"),
    "randaug_cutpaste": PseudoGenerator(
        randaug_cutpaste, "BGAD: a real defect RandAugmented and pasted into a normal image",
        needs=("anomalies", "anomaly_masks"), per_image=("foreground",)),
}


def apply_batch(name: str, images: torch.Tensor, seed: int | torch.Generator, **params: object) -> Result:
    """Run generator ``name`` on every image of ``images`` [B,3,H,W] -> (images, masks [B,1,H,W]).

    ``seed``: an int (a fresh generator, so the result depends only on it) or a torch Generator.
    ``cutmix_cross_image`` without ``sources`` takes each image's patch from another image of
    the batch; parameters listed in ``per_image`` (e.g. ``foreground`` [B,1,H,W]) are indexed.
    """
    spec = GENERATORS[choose("generator", name, tuple(GENERATORS))]
    if images.ndim != 4:
        raise ValueError(f"images must be a batch (B, 3, H, W), got shape {tuple(images.shape)}")
    cross_batch = name == "cutmix_cross_image" and "sources" not in params
    if cross_batch and images.shape[0] < 2:
        raise ValueError("cutmix_cross_image needs sources= or a batch of at least 2 images")
    missing = [key for key in spec.needs if key not in params and not (cross_batch and key == "sources")]
    if missing:
        raise ValueError(f"generator {name!r} needs {', '.join(missing)}=")
    generator = torch_generator(seed) if isinstance(seed, int) else seed
    outputs, masks = [], []
    for index, image in enumerate(images):
        kwargs = {k: (v[index] if k in spec.per_image and v is not None else v) for k, v in params.items()}
        if cross_batch:
            kwargs["sources"] = torch.cat([images[:index], images[index + 1:]])
        out, mask = spec.fn(image, generator, **kwargs)
        outputs.append(out)
        masks.append(mask)
    return torch.stack(outputs), torch.stack(masks)
