"""Conditional normalizing flow parts: the CFLOW-AD design that BGAD uses (BGAD paper §3.1, A.3).

Each feature vector of a frozen feature map is one flow sample; a 2-D sinusoidal positional code is
the condition (``docs/official_code/bgad.md`` "Flows and positional code"). A flow is a chain of
FrEIA ``AllInOneBlock`` s: affine coupling with soft-clamped scales (Real-NVP clamping, α = 1.9), a
fixed random orthogonal ("soft") permutation and a global affine scaling (SOFTPLUS), the coupling
coefficients predicted by ``Linear(d_in, 2·d_in) → ReLU → Linear(2·d_in, d_out)``.

The pieces are usable on their own::

    flow = conditional_flow(channels=24, cond_dim=128)
    cond = positional_encoding_2d(128, 8, 8).flatten(1).T      # [64, 128], one row per position
    z, log_jac_det = flow(x, c=[cond])                          # x: [64, 24]
    loglik = gaussian_log_likelihood(z, log_jac_det) / 24       # BGAD's "logp / dim"
"""

from __future__ import annotations

import math

import torch
from FrEIA.framework import SequenceINN
from FrEIA.modules import AllInOneBlock
from torch import Tensor, nn

#: −½·ln(2π): the per-dimension constant of the standard normal log-density.
HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


def positional_encoding_2d(dim: int, height: int, width: int) -> Tensor:
    """Sinusoidal 2-D position code ``[dim, height, width]`` (``docs/official_code/bgad.md``
    "Flows and positional code").

    The first ``dim/2`` channels encode the column index, the second half the row index; within
    each half, even channels hold ``sin(pos·f_i)`` and odd channels ``cos(pos·f_i)`` with
    ``f_i = exp(−ln(10⁴)·2i/(dim/2))``, ``i = 0 … dim/4 − 1``. ``dim`` must be a multiple of 4.
    """
    if dim % 4:
        raise ValueError(f"positional code dimension must be a multiple of 4, got {dim}")
    half = dim // 2
    freqs = torch.exp(torch.arange(0, half, 2, dtype=torch.float32) * (-math.log(1e4) / half))
    cols = torch.arange(width, dtype=torch.float32)[:, None] * freqs        # [W, half/2]
    rows = torch.arange(height, dtype=torch.float32)[:, None] * freqs       # [H, half/2]
    code = torch.zeros(dim, height, width)
    code[0:half:2] = torch.sin(cols).T[:, None, :].expand(-1, height, -1)
    code[1:half:2] = torch.cos(cols).T[:, None, :].expand(-1, height, -1)
    code[half::2] = torch.sin(rows).T[:, :, None].expand(-1, -1, width)
    code[half + 1::2] = torch.cos(rows).T[:, :, None].expand(-1, -1, width)
    return code


def coupling_subnet(dim_in: int, dim_out: int) -> nn.Sequential:
    """The coupling coefficient network ``Linear(d_in, 2·d_in) → ReLU → Linear(2·d_in, d_out)``
    (``docs/official_code/bgad.md`` "Flows and positional code")."""
    return nn.Sequential(nn.Linear(dim_in, 2 * dim_in), nn.ReLU(), nn.Linear(2 * dim_in, dim_out))


def conditional_flow(channels: int, cond_dim: int = 128, n_blocks: int = 8, clamp: float = 1.9) -> SequenceINN:
    """A conditional flow on ``channels``-d vectors: ``n_blocks`` FrEIA ``AllInOneBlock`` s
    (``docs/official_code/bgad.md`` "Flows and positional code").

    Call as ``z, log_jac_det = flow(x, c=[cond])`` (``rev=True`` inverts). ``cond_dim = 0`` gives
    the unconditional flow. The soft permutations are drawn from numpy's global RNG: seed it
    (``osad_lib.seeding.seed_everything``) before building.
    """
    flow = SequenceINN(channels)
    cond = {"cond": 0, "cond_shape": (cond_dim,)} if cond_dim else {}
    for _ in range(n_blocks):
        flow.append(
            AllInOneBlock, subnet_constructor=coupling_subnet, affine_clamping=clamp,
            global_affine_type="SOFTPLUS", permute_soft=True, **cond,
        )
    return flow


def gaussian_log_likelihood(z: Tensor, log_jac_det: Tensor) -> Tensor:
    """``log p(x) = −(C/2)·ln(2π) − ½‖z‖² + log|det J|`` per row of ``z`` ``[N, C]`` (BGAD Eq. 6)."""
    return -z.shape[1] * HALF_LOG_TWO_PI - 0.5 * z.pow(2).sum(1) + log_jac_det
