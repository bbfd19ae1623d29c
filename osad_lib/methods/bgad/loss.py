"""BGAD's objective: maximum likelihood on normal features plus the boundary-guided semi-push-pull loss.

All functions take ``loglik``: per-position log-likelihoods divided by the feature dimension
(``log p / C``, the code's "logp/dim", ``docs/official_code/bgad.md``) for one chunk of
feature vectors, and ``is_anomaly``: a bool tensor of the same shape (the defect mask
downsampled with nearest interpolation to the feature level).

* ML loss: the code's ``−log σ(ℓ)`` (default) or the paper's negative log-likelihood (Eq. 5).
* Boundaries (§3.2): ``b_n`` = the β-quantile of the chunk's normal ``ℓ`` (ascending sort, index
  ⌊β·N⌋), divided by the normalizer κ; ``b_a = b_n − τ``.
* BG-SPP loss, the L1 form of Eq. 10 on ``ℓ' = ℓ/κ`` with means (as the code):
  ``L_n = mean_{normal, ℓ' ≤ b_n}(b_n − ℓ')``, ``L_a = mean_{anomalous, ℓ' ≥ b_a}(ℓ' − b_a)``.
  An empty selection contributes 0 (the code's NaN mean passes no gradient either).
* Asymmetric focal weights (appendix A.5, Eq. 17–19) multiply the ML and ``L_n`` terms of
  normal positions and the ``L_a`` terms of anomalous positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from osad_lib.validate import choose


@dataclass(frozen=True)
class FocalConstants:
    """Constants of the asymmetric focal weights, on ``x = ℓ / scale`` (A.5 Eq. 17–18).

    Normal (truncated focal): ``w = 1`` if ``x > normal_threshold`` else
    ``alpha_n·(1 − eˣ)^gamma_n·|x|``. Anomalous (reversed focal): ``w = 1`` if
    ``x ≤ anomaly_threshold`` else ``alpha_a·(1 + eˣ)^gamma_a / |x|``.
    """

    scale: float
    normal_threshold: float
    alpha_n: float
    gamma_n: float
    anomaly_threshold: float
    alpha_a: float
    gamma_a: float


#: The official code's constants (``docs/official_code/bgad.md``): continuous at both thresholds.
CODE_FOCAL = FocalConstants(scale=10.0, normal_threshold=-0.2, alpha_n=11.7, gamma_n=0.5,
                            anomaly_threshold=-1.0, alpha_a=0.53, gamma_a=2.0)
#: The constants printed in appendix A.5 (log p_n = −2, α_n = 15, γ_n = 1; log p_a = −20,
#: α_a = 0.53, γ_a = 2), read on ``ℓ`` itself; unlike the code's, they jump at the thresholds.
PAPER_FOCAL = FocalConstants(scale=1.0, normal_threshold=-2.0, alpha_n=15.0, gamma_n=1.0,
                             anomaly_threshold=-20.0, alpha_a=0.53, gamma_a=2.0)
FOCAL_CONSTANTS = {"code": CODE_FOCAL, "paper": PAPER_FOCAL}


@dataclass(frozen=True)
class BGADLossConfig:
    """Loss hyper-parameters (``docs/official_code/bgad.md``).

    ``beta`` is a fraction: 0.05 = the 5th percentile, the paper's text (§3.2, "β = 5") and the
    code's ``config.py`` default, and the Table 4 row (β = 5 %, τ = 0.1: 0.9896 image AUROC) that
    matches Table 1's 0.988; the README command and Table 4's best use 1 %. Focal weighting and
    the rest are the README command's. ``pull_in_normal_chunks``: apply ``L_n`` in chunks
    without anomalous positions — False in BGAD-FAS (the code uses ML only there), True for
    unsupervised BGAD (ML + normal boundary).
    """

    beta: float = 0.05
    tau: float = 0.1
    normalizer: float = 10.0
    bgspp_lambda: float = 1.0
    focal_weighting: bool = True
    focal_constants: str = "code"
    ml_loss: str = "logsigmoid"
    pull_in_normal_chunks: bool = False

    def __post_init__(self) -> None:
        choose("focal_constants", self.focal_constants, FOCAL_CONSTANTS)
        choose("ml_loss", self.ml_loss, ("logsigmoid", "nll"))


def boundaries(normal_loglik: Tensor, beta: float, tau: float, normalizer: float) -> tuple[Tensor, Tensor]:
    """``(b_n, b_a)`` from detached normal log-likelihoods (§3.2; the code takes index ⌊β·N⌋ of the ascending sort)."""
    if normal_loglik.numel() == 0:
        raise ValueError("the normal boundary needs at least one normal position in the chunk")
    ordered = torch.sort(normal_loglik.detach().flatten()).values
    index = min(int(math.floor(beta * ordered.numel())), ordered.numel() - 1)
    b_n = ordered[index] / normalizer
    return b_n, b_n - tau


def focal_weights(loglik: Tensor, is_anomaly: Tensor, constants: FocalConstants = CODE_FOCAL) -> Tensor:
    """Asymmetric focal weights of every position (A.5 Eq. 17 for normal, Eq. 18 for anomalous; detached)."""
    x = loglik.detach() / constants.scale
    c = constants
    hard_normal = c.alpha_n * (1 - torch.exp(x)).clamp_min(0).pow(c.gamma_n) * x.abs()
    normal_w = torch.where(x > c.normal_threshold, torch.ones_like(x), hard_normal)
    hard_anomaly = c.alpha_a * (1 + torch.exp(x)).pow(c.gamma_a) / x.abs().clamp_min(1e-12)
    anomaly_w = torch.where(x <= c.anomaly_threshold, torch.ones_like(x), hard_anomaly)
    return torch.where(is_anomaly, anomaly_w, normal_w)


def ml_loss(normal_loglik: Tensor, weights: Tensor | None = None, kind: str = "logsigmoid") -> Tensor:
    """Mean maximum-likelihood loss of normal positions: ``−log σ(ℓ)`` (code) or ``−ℓ`` (Eq. 5 per dim)."""
    terms = -F.logsigmoid(normal_loglik) if kind == "logsigmoid" else -normal_loglik
    if weights is not None:
        terms = terms * weights
    return terms.mean()


def _masked_mean(values: Tensor, keep: Tensor) -> Tensor:
    return values[keep].mean() if bool(keep.any()) else values.sum() * 0.0


def bgspp_loss(
    loglik: Tensor, is_anomaly: Tensor, b_n: Tensor, b_a: Tensor, normalizer: float,
    weights: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """``(L_n, L_a)``: the L1 boundary-guided semi-push-pull loss (Eq. 10) as means, on ``ℓ/κ``.

    Semi-pull: normal positions below ``b_n`` are pulled up to it; semi-push: anomalous positions
    above ``b_a`` are pushed below it. ``weights`` (focal, per position) multiply the terms.
    """
    scaled = loglik / normalizer
    w = torch.ones_like(scaled) if weights is None else weights
    pull = w * (b_n - scaled)
    push = w * (scaled - b_a)
    normal, anomalous = ~is_anomaly, is_anomaly
    return _masked_mean(pull, normal & (scaled <= b_n)), _masked_mean(push, anomalous & (scaled >= b_a))


def bgad_loss(loglik: Tensor, is_anomaly: Tensor, config: BGADLossConfig, boundary_stage: bool) -> Tensor:
    """The training loss of one chunk (Eq. 9 with the L1 form of Eq. 10; focal form Eq. 19).

    ``boundary_stage`` False: the first (normal-only) phase, the plain ML loss without focal
    weights (Fig. 2; the code's normal-only meta epoch). True: ML + λ·(L_n + L_a), focal-weighted
    when ``config.focal_weighting``, with ``L_n`` only in chunks that hold anomalous positions
    unless ``config.pull_in_normal_chunks``.
    """
    is_anomaly = is_anomaly.bool()
    normal = ~is_anomaly
    if not bool(normal.any()):
        raise ValueError("a training chunk has no normal position; BGAD needs normal features in every chunk")
    focal = config.focal_weighting and boundary_stage
    weights = focal_weights(loglik, is_anomaly, FOCAL_CONSTANTS[config.focal_constants]) if focal else None
    loss = ml_loss(loglik[normal], None if weights is None else weights[normal], config.ml_loss)
    has_anomalies = bool(is_anomaly.any())
    if not boundary_stage or not (has_anomalies or config.pull_in_normal_chunks):
        return loss
    b_n, b_a = boundaries(loglik[normal], config.beta, config.tau, config.normalizer)
    pull, push = bgspp_loss(loglik, is_anomaly, b_n, b_a, config.normalizer, weights)
    return loss + config.bgspp_lambda * (pull + push)
