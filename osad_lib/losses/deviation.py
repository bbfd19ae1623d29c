"""Deviation loss and the alternative criteria of DevNet, DRA and AHL.

DevNet (Pang et al., "Explainable Deep Few-shot Anomaly Detection with Deviation Networks",
§3.2, Eq. (1)–(3)) learns scalar anomaly scores ``s`` by pushing them to deviate from a
Gaussian prior of normal scores: the reference scores ``r ~ N(0, 1)`` give μ_r and σ_r, the
deviation is ``dev = (s − μ_r) / σ_r``, and the loss is

    L = mean[ (1 − y)·|dev| + y·max(0, a − dev) ],    a = 5 (the "confidence margin")

so that normal scores stay close to μ_r and anomaly scores sit at least ``a`` standard deviations
above it. The official image code (``docs/official_code/shared.md`` "Deviation loss") draws a fresh
``r ∈ R^5000`` on every call and uses its sample mean and (unbiased) standard deviation; the tabular
DevNet fixes the reference once. Both are available here: ``reference=None`` draws afresh
(optionally from ``generator``), a tensor ``reference`` is used as given.

The same file of the official code offers other criteria through ``--criterion``: ``BCE``
(binary cross entropy on logits), ``focal`` (binary focal loss, α = 1, γ = 2, mean — the loss
of FLOS, the focal-loss baseline of DevNet Table 2) and, in DRA/AHL, ``CE``. :func:`criterion`
returns any of them by name.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from osad_lib.validate import ConfigError, choose

#: Names accepted by :func:`criterion`.
CRITERIA = ("deviation", "bce", "focal", "ce")


def _flat_scores(scores: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores ``[B]`` or ``[B, 1]`` and targets ``[B]`` as float vectors of equal length."""
    if scores.dim() == 2 and scores.shape[1] == 1:
        scores = scores[:, 0]
    if scores.dim() != 1:
        raise ConfigError(f"scores must have shape [B] or [B, 1], got {tuple(scores.shape)}; pass one score per image")
    targets = targets.reshape(-1).to(dtype=scores.dtype, device=scores.device)
    if targets.shape[0] != scores.shape[0]:
        raise ConfigError(f"{scores.shape[0]} scores but {targets.shape[0]} targets; pass one target (0/1) per score")
    return scores, targets


def draw_reference(n_reference: int = 5000, generator: torch.Generator | None = None,
                   device: str | torch.device = "cpu") -> torch.Tensor:
    """``n_reference`` reference scores r ~ N(0, 1) (DevNet §3.2, Eq. (1); the code:
    ``docs/official_code/shared.md`` "Deviation loss")."""
    gen_device = generator.device if generator is not None else "cpu"
    return torch.randn(n_reference, generator=generator, device=gen_device).to(device)


def deviation(scores: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Z-score of ``scores`` against the reference scores: (s − μ_r) / σ_r (DevNet Eq. (2))."""
    reference = reference.to(device=scores.device, dtype=torch.float32)
    return (scores.float() - reference.mean()) / reference.std()


def deviation_loss(
    scores: torch.Tensor,
    targets: torch.Tensor,
    margin: float = 5.0,
    n_reference: int = 5000,
    reference: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DevNet's deviation loss (Eq. (3); ``docs/official_code/shared.md`` "Deviation loss"), a batch
    mean.

    ``targets``: 1 = anomaly, 0 = normal. ``reference=None`` draws ``n_reference`` fresh
    N(0, 1) scores on this call (as the official code does), from ``generator`` if given;
    otherwise the given reference scores are used (a fixed prior, as in tabular DevNet).
    """
    scores, targets = _flat_scores(scores, targets)
    if reference is None:
        reference = draw_reference(n_reference, generator, scores.device)
    dev = deviation(scores, reference)
    targets = targets.float()
    inlier = (1.0 - targets) * dev.abs()
    outlier = targets * torch.clamp(margin - dev, min=0.0)
    return (inlier + outlier).mean()


def representation_deviation_loss(
    features: torch.Tensor,
    targets: torch.Tensor,
    margin: float = 5.0,
    n_reference: int = 5000,
    reference: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Deviation loss on representations ``[B, C]`` (DevNet Table 5 "Rep", §6.8.1).

    Rep has no scoring layer: "the reference is drawn from a multivariate Gaussian rather than
    a univariate Gaussian". We read this entry-wise: ``n_reference`` vectors r ~ N(0, I_C)
    give per-dimension μ_R and σ_R, every entry of ``features`` gets its z-score, and the
    deviation loss of Eq. (8) is averaged over entries and batch (a normal image's features are
    pulled to μ_R, an anomaly's pushed ≥ ``margin`` σ_R above it in every dimension). The
    matching image score is the mean z-score of its entries (:func:`representation_score`).
    """
    if features.dim() != 2:
        raise ConfigError(f"features must be [B, C], got {tuple(features.shape)}; pool the feature map first")
    targets = targets.reshape(-1, 1).to(device=features.device, dtype=torch.float32)
    if reference is None:
        gen_device = generator.device if generator is not None else "cpu"
        reference = torch.randn(n_reference, features.shape[1], generator=generator, device=gen_device)
    reference = reference.to(device=features.device, dtype=torch.float32)
    dev = (features.float() - reference.mean(dim=0)) / reference.std(dim=0)
    return ((1.0 - targets) * dev.abs() + targets * torch.clamp(margin - dev, min=0.0)).mean()


def representation_score(features: torch.Tensor) -> torch.Tensor:
    """Image score of Rep: mean z-score of ``features`` ``[B, C]`` under the prior N(0, I) → ``[B]``."""
    return features.float().mean(dim=1)


def bce_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross entropy on logits, batch mean (the code's ``--criterion BCE``)."""
    logits, targets = _flat_scores(logits, targets)
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float())


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 1.0, gamma: float = 2.0) -> torch.Tensor:
    """Binary focal loss on logits, batch mean: α·(1 − p_t)^γ·BCE (the code's ``focal``; FLOS)."""
    logits, targets = _flat_scores(logits, targets)
    bce = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
    p_t = torch.exp(-bce)
    return (alpha * (1.0 - p_t) ** gamma * bce).mean()


def cross_entropy_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Two-class cross entropy (the DRA/AHL code's ``--criterion CE``), batch mean.

    ``logits`` ``[B, 2]`` are (normal, anomaly) logits. A scalar-score head (``[B]`` or
    ``[B, 1]``) is read as the logits ``(0, s)``: the anomaly logit is ``s`` and the normal one
    is fixed at 0, so that softmax(0, s)[1] = sigmoid(s) and this loss equals
    :func:`bce_loss` on ``s``. That is the only way a one-output head can be trained with a
    two-class criterion without adding parameters; it is documented wherever CE is chosen.
    """
    if logits.dim() == 2 and logits.shape[1] == 2:
        return F.cross_entropy(logits.float(), targets.reshape(-1).long().to(logits.device))
    scores, targets = _flat_scores(logits, targets)
    two = torch.stack([torch.zeros_like(scores), scores], dim=1).float()
    return F.cross_entropy(two, targets.long())


def criterion(name: str, margin: float = 5.0, n_reference: int = 5000,
              generator: torch.Generator | None = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss ``(scores, targets) -> scalar`` called ``name``: deviation | bce | focal | ce.

    ``margin``, ``n_reference`` and ``generator`` apply to the deviation loss only.
    """
    name = choose("criterion", name, CRITERIA)
    if name == "deviation":
        return lambda s, y: deviation_loss(s, y, margin=margin, n_reference=n_reference, generator=generator)
    return {"bce": bce_loss, "focal": focal_loss, "ce": cross_entropy_loss}[name]


__all__ = [
    "CRITERIA", "bce_loss", "criterion", "cross_entropy_loss", "deviation", "deviation_loss",
    "draw_reference", "focal_loss", "representation_deviation_loss", "representation_score",
]
