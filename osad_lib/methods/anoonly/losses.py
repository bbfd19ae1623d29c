"""Losses of the four semi-supervised heads of AnoOnly, each with its ``anomaly_only`` form.

AnoOnly (Zhou et al., Eq. (1)/(3)) writes every SSAD loss as ``L_N(normal) + L_A(anomaly) +
λR(θ)`` and drops ``L_N``. Here every loss takes per-sample labels (1 = labelled anomaly,
0 = unlabelled/normal) and:

* ``anomaly_only=False``: the head's standard loss, with the normal term scaled by
  ``normal_weight`` = λ_n (paper Fig. 7; λ_n = 1 is the standard loss);
* ``anomaly_only=True``: the AnoOnly loss, Eq. (3): the standard loss without its normal term
  (appendix B, Eqs. 17, 19, 21, 23). Normal samples still go through the network, so their
  batch-normalisation statistics act (the paper's weak supervision, §3.3).

Where the official code computes a loss differently from appendix B (DevNet, FEAWAD), both
forms exist (``form``: ``paper``, the default, or ``code``; ``docs/official_code/anoonly.md``).

:func:`bn_cluster_loss` is the explicit L_BN of Eq. (5) (``BN†`` in Table 2).
:func:`image_deviation_loss_anomaly_only` carries AnoOnly beyond the paper, to the image DevNet
(:class:`osad_lib.methods.devnet.model.DevNetConfig` ``anomaly_only``).
"""

from __future__ import annotations

import torch

from osad_lib.losses.deviation import deviation, draw_reference
from osad_lib.validate import choose

#: Loss forms of the DevNet/FEAWAD heads: ``paper`` = appendix B (default), ``code`` = AnoOnly's official code.
LOSS_FORMS = ("paper", "code")


def _split_terms(normal: torch.Tensor, anomaly: torch.Tensor, labels: torch.Tensor,
                 anomaly_only: bool, normal_weight: float) -> torch.Tensor:
    """Batch mean of ``(1 − y)·λ_n·normal + y·anomaly``; with ``anomaly_only`` the normal term is 0."""
    y = labels.to(anomaly.dtype).reshape(anomaly.shape)
    weight = 0.0 if anomaly_only else normal_weight
    return ((1.0 - y) * weight * normal + y * anomaly).mean()


def deepsad_loss(
    dist: torch.Tensor,
    labels: torch.Tensor,
    anomaly_only: bool = False,
    eta: float = 1.0,
    eps: float = 1e-6,
    normal_weight: float = 1.0,
) -> torch.Tensor:
    """Deep SAD (appendix B.1, Eq. (16)/(17)) on squared distances ``dist = ‖φ(x) − c‖²``.

    Standard: batch mean of ``λ_n·dist`` (unlabelled) and ``η / (dist + eps)`` (labelled
    anomalies). AnoOnly: the mean of ``η / (dist + eps)`` over the labelled anomalies of the
    batch only (as in the code). A batch without labelled anomalies then has an empty mean:
    the code's loss is NaN but its gradient is zero; here the value is 0 with the same zero
    gradient, so the optimiser still takes its (momentum-only) step, as in the code.
    """
    y = labels.reshape(dist.shape).bool()
    anomaly = eta / (dist + eps)
    if not anomaly_only:
        return _split_terms(dist, anomaly, y, False, normal_weight)
    if not y.any():
        return dist.sum() * 0.0
    return anomaly[y].mean()


def devnet_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    anomaly_only: bool = False,
    margin: float = 5.0,
    form: str = "paper",
    normal_weight: float = 1.0,
) -> torch.Tensor:
    """Tabular DevNet (appendix B.2, Eq. (18)/(19)), batch mean over all samples.

    ``form="paper"`` (Eq. 18/19, the default): normal ``|s|``, anomaly ``max(0, a − s)``; AnoOnly
    keeps the hinge. ``form="code"`` (AnoOnly's official code): the score is used as the
    deviation directly; normal ``|s|``, anomaly ``|a − s|`` (absolute, no hinge); AnoOnly:
    anomaly ``a − s`` (linear, unbounded below), normals 0.
    """
    form = choose("loss form", form, LOSS_FORMS)
    s = scores.reshape(-1)
    if form == "paper":
        anomaly = torch.clamp(margin - s, min=0.0)
    else:
        anomaly = (margin - s) if anomaly_only else (margin - s).abs()
    return _split_terms(s.abs(), anomaly, labels.reshape(-1), anomaly_only, normal_weight)


def feawad_loss(
    scores: torch.Tensor,
    residual_norm: torch.Tensor,
    labels: torch.Tensor,
    anomaly_only: bool = False,
    margin: float = 5.0,
    recon_weight: float = 1.0,
    form: str = "paper",
    normal_weight: float = 1.0,
) -> torch.Tensor:
    """FEAWAD (appendix B.3, Eq. (20)/(21)), batch mean over all samples.

    Normal: ``|s| + λ_R·‖r‖``; anomaly: ``max(0, a − |s|) + λ_R·max(0, a − ‖r‖)`` with ``r`` the
    autoencoder residual (``form="paper"``, Eq. 20, the default); the official code writes
    ``max(0, a − s)`` (``form="code"``). AnoOnly keeps only the anomaly terms.
    """
    form = choose("loss form", form, LOSS_FORMS)
    s, r = scores.reshape(-1), residual_norm.reshape(-1)
    pushed = s.abs() if form == "paper" else s
    anomaly = torch.clamp(margin - pushed, min=0.0) + recon_weight * torch.clamp(margin - r, min=0.0)
    normal = s.abs() + recon_weight * r
    return _split_terms(normal, anomaly, labels.reshape(-1), anomaly_only, normal_weight)


def prenet_loss(
    pair_scores: torch.Tensor,
    pair_targets: torch.Tensor,
    anomaly_only: bool = False,
    normal_weight: float = 1.0,
) -> torch.Tensor:
    """PReNet's pairwise L1 regression (appendix B.4, Eq. (22)/(23)).

    Pair targets: 8 (anomaly, anomaly), 4 (anomaly, unlabelled), 0 (unlabelled, unlabelled).
    Standard: mean ``|t − f(x_i, x_j)|`` over all pairs, the (u, u) pairs weighted by λ_n.
    AnoOnly: the (u, u) pairs are dropped from the loss after the forward pass (their BN
    statistics still count) and the mean runs over the pairs that contain an anomaly (Eq. 23).
    """
    s, t = pair_scores.reshape(-1), pair_targets.reshape(-1).to(pair_scores.dtype)
    err = (t - s).abs()
    normal_pair = t == 0
    if anomaly_only:
        return err[~normal_pair].mean()
    return torch.where(normal_pair, normal_weight * err, err).mean()


def image_deviation_loss_anomaly_only(
    scores: torch.Tensor,
    targets: torch.Tensor,
    margin: float = 5.0,
    n_reference: int = 5000,
) -> torch.Tensor:
    """The image DevNet's deviation loss (DevNet Eq. (3)) with
    its normal term dropped, as AnoOnly drops ``L_N`` (Eq. (3) of AnoOnly): the batch mean of
    ``y·max(0, a − dev)`` with ``dev = (s − μ_r)/σ_r`` against a fresh N(0, 1) reference of
    ``n_reference`` draws. Normals contribute 0 to the loss (they still shape the BN statistics).
    Not in the AnoOnly paper, which applies AnoOnly to tabular heads only.
    """
    s = scores.reshape(-1)
    dev = deviation(s, draw_reference(n_reference, device=s.device))
    y = targets.reshape(-1).to(dev.dtype)
    return (y * torch.clamp(margin - dev, min=0.0)).mean()


def bn_cluster_loss(hidden: torch.Tensor) -> torch.Tensor:
    """L_BN of AnoOnly Eq. (5) for one batch of features ``h`` ``[b, d]`` (``BN†``, Table 2).

    ``‖(1/b) Σ_i h_i‖₂ + ‖(1/(b − 1)) Σ_i h_i² − 1‖₂``: it pulls the batch mean of the
    features to 0 and their second moment to 1 — the statistics BN would impose — as an
    explicit loss on un-normalised features (BN itself is removed).
    """
    b = hidden.shape[0]
    mean_term = torch.linalg.vector_norm(hidden.mean(dim=0))
    var_term = torch.linalg.vector_norm((hidden ** 2).sum(dim=0) / max(b - 1, 1) - 1.0)
    return mean_term + var_term


__all__ = ["LOSS_FORMS", "bn_cluster_loss", "deepsad_loss", "devnet_loss", "feawad_loss",
           "image_deviation_loss_anomaly_only", "prenet_loss"]
