"""Random draws every generator shares: all from the caller's ``torch.Generator``, on CPU."""

from __future__ import annotations


import torch
from torchvision.transforms.v2 import functional as TF




Result = tuple[torch.Tensor, torch.Tensor]
MAX_TRIES = 100  # redraws before a generator gives up on producing a non-empty mask



def draw_uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def draw_int(g: torch.Generator, low: int, high: int) -> int:
    """Integer in [low, high] inclusive."""
    return int(torch.randint(low, high + 1, (), generator=g))


def check_image(image: torch.Tensor, name: str = "image") -> None:
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
    factors = [draw_uniform(g, 1 - strength, 1 + strength) for _ in range(3)] + [draw_uniform(g, -strength, strength)]
    ops = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    for index in torch.randperm(4, generator=g).tolist():
        patch = ops[index](patch, factors[index])
    return patch.clamp(0, 1)


def draw_image(stack: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """``stack`` itself ([3, H, W]) or one of its images ([N, 3, H, W]) drawn with ``g``."""
    return stack if stack.ndim == 3 else stack[draw_int(g, 0, stack.shape[0] - 1)]
