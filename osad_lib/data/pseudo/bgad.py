"""BGAD's RandAugmented CutPaste (a real defect, augmented jointly with its mask, pasted into a
normal image) and the Otsu foreground masks it pastes inside."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from osad_lib.validate import choose
from osad_lib.data.pseudo.draws import MAX_TRIES, check_image, draw_int, draw_uniform, Result



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
    cells = draw_int(g, 3, 6)
    coarse = (torch.rand(1, 2, cells, cells, generator=g) - 0.5) * 2 * draw_uniform(g, 0.02, 0.08)
    flow = F.interpolate(coarse, size=image.shape[1:], mode="bicubic", align_corners=True)[0].permute(1, 2, 0)
    return _warp(image, mask, flow)


def _optical_distortion(image: torch.Tensor, mask: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Radial (barrel/pincushion) distortion r -> r·(1 + k·r²), k = U(-0.5, 0.5) (approximates
    albumentations' OpticalDistortion)."""
    height, width = image.shape[1:]
    k = draw_uniform(g, -0.5, 0.5)
    y, x = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    radius2 = x * x + y * y
    return _warp(image, mask, torch.stack([x * k * radius2, y * k * radius2], dim=-1))


def _photometric(fn: Callable[[torch.Tensor, torch.Generator], torch.Tensor]) -> Op:
    return lambda image, mask, g: (fn(image, g).clamp(0, 1), mask)


def _rot90(image: torch.Tensor, mask: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    k = draw_int(g, 1, 3) if image.shape[1] == image.shape[2] else 2  # non-square: 180° only
    return torch.rot90(image, k, (1, 2)), torch.rot90(mask, k, (1, 2))


def _flip(image: torch.Tensor, mask: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    dims = [(1,), (2,), (1, 2)][draw_int(g, 0, 2)]
    return image.flip(dims), mask.flip(dims)


def _transpose(image: torch.Tensor, mask: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    if image.shape[1] != image.shape[2]:
        return _flip(image, mask, g)
    return image.transpose(1, 2), mask.transpose(1, 2)


def _with_probability(p: float, op: Op) -> Op:
    def maybe(image: torch.Tensor, mask: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return op(image, mask, g) if draw_uniform(g, 0, 1) < p else (image, mask)

    return maybe


def _one_of(*ops: Op) -> Op:
    return lambda image, mask, g: ops[draw_int(g, 0, len(ops) - 1)](image, mask, g)


def _shift_scale_rotate(image: torch.Tensor, mask: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    height, width = image.shape[1:]
    shift = (draw_uniform(g, -0.0625, 0.0625) * width, draw_uniform(g, -0.0625, 0.0625) * height)
    return _affine(image, mask, draw_uniform(g, -45, 45), shift, draw_uniform(g, 0.8, 1.2))


def _median3(t: torch.Tensor) -> torch.Tensor:
    """3x3 median filter with replicated borders."""
    padded = F.pad(t[None], (1, 1, 1, 1), mode="replicate")[0]
    return padded.unfold(1, 3, 1).unfold(2, 3, 1).flatten(-2).median(-1).values


def _code_ops() -> list[Op]:
    """BGAD code's 11-op albumentations list, same probabilities, torch re-implementations
    (``docs/official_code/bgad.md`` "Data and RandAugmented CutPaste")."""
    noise = _photometric(lambda t, g: t + torch.randn(t.shape, generator=g).to(t) * math.sqrt(draw_uniform(g, 10, 50)) / 255)
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
            _photometric(lambda t, g: TF.adjust_sharpness(t, draw_uniform(g, 1.5, 3.0))),
            _photometric(lambda t, g: TF.adjust_sharpness(TF.adjust_contrast(t, 1.5), 2.0)),  # emboss-like
            _photometric(lambda t, g: TF.adjust_contrast(TF.adjust_brightness(t, draw_uniform(g, 0.8, 1.2)),
                                                         draw_uniform(g, 0.8, 1.2))),
        )),
        _with_probability(0.3, _photometric(lambda t, g: TF.adjust_hue(
            TF.adjust_saturation(TF.adjust_brightness(t, draw_uniform(g, 0.92, 1.08)), draw_uniform(g, 0.88, 1.12)),
            draw_uniform(g, -20, 20) / 180))),
    ]


def _paper_ops() -> list[Op]:
    """BGAD paper's list (§3.4): AutoContrast, Equalize, Rotate, Posterize, Solarize, Brightness,
    Sharpness, Translate, Shear. Magnitudes: the code's where it has one (rotate 45°, shift
    6.25 %, brightness 0.2), else RandAugment's maxima (posterize 4 bits, shear 0.3 ≈ 17°)."""
    def translate(image: torch.Tensor, mask: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = image.shape[1:]
        return _affine(image, mask, translate=(draw_uniform(g, -0.0625, 0.0625) * width, draw_uniform(g, -0.0625, 0.0625) * height))

    return [
        _photometric(lambda t, g: TF.autocontrast(t)),
        _photometric(lambda t, g: TF.equalize(t)),
        lambda image, mask, g: _affine(image, mask, angle=draw_uniform(g, -45, 45)),
        _photometric(lambda t, g: TF.posterize((t * 255).round().to(torch.uint8), draw_int(g, 4, 8)).float() / 255),
        _photometric(lambda t, g: TF.solarize(t, draw_uniform(g, 0.5, 1.0))),
        _photometric(lambda t, g: TF.adjust_brightness(t, draw_uniform(g, 0.8, 1.2))),
        _photometric(lambda t, g: TF.adjust_sharpness(t, draw_uniform(g, 0.1, 1.9))),
        translate,
        lambda image, mask, g: _affine(image, mask, shear=math.degrees(draw_uniform(g, -0.3, 0.3))),
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
    y, x = candidates[draw_int(g, 0, len(candidates) - 1)].tolist()
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
    check_image(image)
    ops = RANDAUG_OP_SETS[choose("op_set", op_set, tuple(RANDAUG_OP_SETS))]()
    g = generator
    for _ in range(MAX_TRIES):
        index = draw_int(g, 0, anomalies.shape[0] - 1) if anomalies.ndim == 4 else None
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
    check_image(image)
    gray = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]).cpu().numpy()
    fg = gray > otsu_threshold(gray)
    border = np.concatenate([fg[0], fg[-1], fg[:, 0], fg[:, -1]])
    if border.mean() > 0.5:
        fg = ~fg
    fg = ndimage.binary_fill_holes(ndimage.binary_opening(fg, structure=np.ones((3, 3))))
    if not min_fraction <= fg.mean() <= max_fraction:
        fg = np.ones_like(fg)
    return torch.from_numpy(fg.astype(np.float32))[None].to(image.device, image.dtype)
