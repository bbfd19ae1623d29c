"""DRAEM-style anomalies: thresholded, rotated Perlin noise blended with a texture (the user's
DTD-like textures, or generated ones)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from osad_lib.data.images import is_image_file, load_rgb
from osad_lib.validate import ConfigError
from osad_lib.data.pseudo.draws import MAX_TRIES, check_image, draw_image, draw_int, draw_uniform, Result



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
        cells_y, cells_x = 2 ** draw_int(g, 0, max_scale_exp), 2 ** draw_int(g, 0, max_scale_exp)
        noise = perlin_noise(height, width, cells_y, cells_x, g)[None]
        noise = TF.rotate(noise, draw_uniform(g, -max_rotation, max_rotation), InterpolationMode.BILINEAR)
        mask = (noise > threshold).float()
        if mask.any():
            return mask
    raise RuntimeError(f"no Perlin region above threshold {threshold} in {MAX_TRIES} draws; lower the threshold")


def generated_texture(height: int, width: int, g: torch.Generator) -> torch.Tensor:
    """A procedural colour texture [3, H, W] in [0, 1] (used when no DTD/other images are given):
    per channel, two octaves of Perlin noise plus an oriented sinusoidal grating, min-max scaled."""
    channels = []
    angle, frequency = draw_uniform(g, 0, math.pi), draw_uniform(g, 2, 24)
    y, x = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    grating = torch.sin(2 * math.pi * frequency * (x * math.cos(angle) + y * math.sin(angle)))
    for _ in range(3):
        cells = 2 ** draw_int(g, 1, 4)
        value = perlin_noise(height, width, cells, cells, g) + 0.5 * perlin_noise(height, width, 2 * cells, 2 * cells, g)
        value = value + draw_uniform(g, 0, 0.5) * grating
        channels.append((value - value.min()) / (value.max() - value.min() + 1e-8))
    return torch.stack(channels)


def _draem_texture_ops() -> list[Callable[[torch.Tensor, torch.Generator], torch.Tensor]]:
    """DRAEM's 10 texture augmenters (imgaug in the original) on float tensors
    (``docs/official_code/ahl.md`` "Pseudo-anomaly generators for the features")."""
    return [
        lambda t, g: torch.stack([TF.adjust_gamma(c[None], draw_uniform(g, 0.5, 2.0))[0] for c in t]),
        lambda t, g: (t * draw_uniform(g, 0.8, 1.2) + draw_uniform(g, -30, 30) / 255).clamp(0, 1),
        lambda t, g: TF.adjust_sharpness(t, draw_uniform(g, 0.0, 2.0)),
        lambda t, g: TF.adjust_saturation(TF.adjust_hue(t, draw_uniform(g, -50, 50) / 360), draw_uniform(g, 0.5, 1.5)),
        lambda t, g: TF.solarize(t, draw_uniform(g, 32, 128) / 255),
        lambda t, g: TF.posterize((t * 255).round().to(torch.uint8), draw_int(g, 4, 8)).float() / 255,
        lambda t, g: TF.invert(t),
        lambda t, g: TF.autocontrast(t),
        lambda t, g: TF.equalize(t),
        lambda t, g: TF.rotate(t, draw_uniform(g, -45, 45), InterpolationMode.BILINEAR),
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
    check_image(image)
    g, (_, height, width) = generator, image.shape
    if textures is None:
        texture = generated_texture(height, width, g)
    else:
        texture = draw_image(textures, g)
        check_image(texture, "textures")
        texture = TF.resize(texture, [height, width], antialias=True).clamp(0, 1)
    if augment:
        texture = augment_texture(texture, g)
    mask = perlin_mask(height, width, g, threshold=threshold, max_scale_exp=max_scale_exp,
                       max_rotation=max_rotation).to(image.device, image.dtype)
    beta = draw_uniform(g, 0, beta_max)
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
