"""One seeding helper for python, numpy and torch (``docs/conventions.md`` "Reproducibility")."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = False) -> np.random.Generator:
    """Seed python, numpy and torch (all devices); return a numpy Generator for explicit use.

    With ``deterministic`` the cuDNN autotuner is off and torch raises on non-deterministic
    kernels (``CUBLAS_WORKSPACE_CONFIG`` is set for CUDA). Slower; CPU runs are bitwise
    repeatable either way on the same machine.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)
    return np.random.default_rng(seed)


def torch_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch Generator seeded with ``seed`` (for samplers and augmentations)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen
