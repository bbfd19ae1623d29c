"""Explanation maps by gradient back-propagation, and how well they localise anomalies.

DevNet §4.4, Eq. (9), and the official ``localization.py`` (``docs/official_code/devnet.md``
"Localisation (Table 4)"): the saliency of pixel (i, j) is Σ_channels |∂s/∂x_cij| of the image's
anomaly score s; each map is normalised by its minimum and 99th percentile and clipped to [0, 1],
then smoothed with a Gaussian filter of σ = 4 px (scipy's ``gaussian_filter``, as the code). σ = 4
was chosen for 448-px inputs; at other sizes it is scaled to ``4 · size / 448`` so that the blur
covers the same fraction of the image (``sigma_reference_size``; pass ``sigma_reference_size=None``
for a fixed σ).

Localization quality:

* :func:`per_image_pixel_auroc` — pixel AUROC of each anomalous image against its mask; their
  mean is the code's "Pixel-level AUC-ROC" (Table 4).
* :func:`pooled_pixel_auroc` — one AUROC over all pixels of all anomalous images.
* :func:`auroc_f1_curve` — Fig. 4: for many image-score thresholds, the detection F1 and the
  mean pixel AUROC of the anomalies *detected* at that threshold (true positives).

:func:`saliency_maps` takes any ``score_fn`` that maps float images in [0, 1] ``[B, 3, H, W]`` to
scores ``[B]`` and scores each image independently (a model in eval mode), so DRA and the other
methods reuse it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.ndimage import gaussian_filter
from tqdm.auto import tqdm

from osad_lib import metrics
from osad_lib.validate import ConfigError


def normalize_saliency(raw: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """(m − min) / (P_percentile − min), clipped to [0, 1] (``docs/official_code/devnet.md``
    "Localisation (Table 4)"); a flat map becomes zeros."""
    low, high = float(raw.min()), float(np.percentile(raw, percentile))
    if high <= low:
        return np.zeros_like(raw, dtype=np.float32)
    return np.clip((raw - low) / (high - low), 0.0, 1.0).astype(np.float32)


def smoothing_sigma(image_size: int, sigma: float = 4.0, sigma_reference_size: int | None = 448) -> float:
    """σ of the Gaussian filter at ``image_size``: ``sigma`` at the reference size, scaled linearly."""
    return sigma if sigma_reference_size is None else sigma * image_size / sigma_reference_size


def saliency_maps(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    sigma: float = 4.0,
    sigma_reference_size: int | None = 448,
    percentile: float = 99.0,
    progress: bool = False,
) -> np.ndarray:
    """Gradient saliency maps ``[N, H, W]`` in [0, 1] of ``images`` (uint8 or float in [0, 1]).

    DevNet Eq. (9): |∂s/∂x| summed over colour channels, normalised (:func:`normalize_saliency`),
    Gaussian-smoothed with σ = :func:`smoothing_sigma`. Gradients are taken in float32.
    """
    if images.dim() != 4:
        raise ConfigError(f"images must be [N, C, H, W], got {tuple(images.shape)}")
    s = smoothing_sigma(images.shape[-1], sigma, sigma_reference_size)
    out = []
    starts = range(0, images.shape[0], batch_size)
    for start in tqdm(starts, desc="saliency", leave=False, disable=not progress):
        batch = images[start:start + batch_size].to(device)
        x = (batch.float() / 255.0 if batch.dtype == torch.uint8 else batch.float()).requires_grad_(True)
        scores = score_fn(x).reshape(-1)
        (grad,) = torch.autograd.grad(scores.sum(), x)
        raw = grad.abs().sum(dim=1).detach().cpu().numpy()
        for m in raw:
            m = normalize_saliency(m, percentile)
            out.append(gaussian_filter(m, sigma=s) if s > 0 else m)
    return np.stack(out).astype(np.float32) if out else np.zeros((0, *images.shape[-2:]), np.float32)


def _mask_array(masks: np.ndarray | torch.Tensor) -> np.ndarray:
    masks = masks.cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    if masks.ndim == 4:
        masks = masks[:, 0]
    return masks > 0


def per_image_pixel_auroc(maps: np.ndarray, masks: np.ndarray | torch.Tensor) -> np.ndarray:
    """Pixel AUROC of every map against its mask ``[N, (1,) H, W]``; NaN where the mask is empty or full."""
    masks = _mask_array(masks)
    if masks.shape != maps.shape:
        raise ConfigError(f"maps {maps.shape} and masks {masks.shape} differ in shape; compute maps at the mask size")
    out = np.full(len(maps), np.nan)
    for i, (m, gt) in enumerate(zip(maps, masks)):
        if 0 < gt.sum() < gt.size:
            out[i] = metrics.pixel_auroc(gt, m)
    return out


def pooled_pixel_auroc(maps: np.ndarray, masks: np.ndarray | torch.Tensor) -> float:
    """One pixel AUROC over all pixels of all given maps."""
    masks = _mask_array(masks)
    return float(metrics.pixel_auroc(masks, maps))


def localization_metrics(maps: np.ndarray, masks: np.ndarray | torch.Tensor) -> dict[str, float]:
    """``pixel_auroc`` (mean per anomalous image, as the code) and ``pixel_auroc_pooled``."""
    per_image = per_image_pixel_auroc(maps, masks)
    if np.isnan(per_image).all():
        raise ConfigError("no anomalous image has a non-empty mask; pixel AUROC needs masks with defect pixels")
    return {"pixel_auroc": float(np.nanmean(per_image)), "pixel_auroc_pooled": pooled_pixel_auroc(maps, masks)}


def auroc_f1_curve(
    image_scores: np.ndarray,
    labels: np.ndarray,
    anomaly_pixel_auroc: np.ndarray,
    n_thresholds: int = 100,
) -> pd.DataFrame:
    """DevNet Fig. 4: pixel AUROC of the detected anomalies vs detection F1, over thresholds.

    ``image_scores``/``labels``: every test image. ``anomaly_pixel_auroc``: for each test image,
    its per-image pixel AUROC (NaN for normals or images without a usable mask). The thresholds
    are the scores' quantiles at ``n_thresholds`` evenly spaced levels (column ``quantile``;
    repeated thresholds are kept once); images with score ≥ t are detected, ``f1`` is that
    detection's F1 and ``pixel_auroc`` the mean pixel AUROC over the detected true anomalies.
    Levels at which no true anomaly with a mask is detected are dropped.
    """
    scores, labels = np.asarray(image_scores, float), np.asarray(labels).astype(bool)
    pix = np.asarray(anomaly_pixel_auroc, float)
    if not (len(scores) == len(labels) == len(pix)):
        raise ConfigError("image_scores, labels and anomaly_pixel_auroc need one entry per test image")
    levels = np.linspace(0, 1, n_thresholds)
    rows, previous = [], None
    for level, t in zip(levels, np.quantile(scores, levels)):
        if t == previous:
            continue
        previous = t
        detected = scores >= t
        tp = int((detected & labels).sum())
        fp, fn = int((detected & ~labels).sum()), int((~detected & labels).sum())
        usable = detected & labels & ~np.isnan(pix)
        if not usable.any():
            continue
        rows.append({"quantile": round(float(level), 6), "threshold": float(t), "f1": 2 * tp / (2 * tp + fp + fn),
                     "pixel_auroc": float(pix[usable].mean()), "n_detected": tp})
    return pd.DataFrame(rows, columns=["quantile", "threshold", "f1", "pixel_auroc", "n_detected"])


def overlay_figure(
    images: torch.Tensor | np.ndarray,
    masks: torch.Tensor | np.ndarray,
    maps: np.ndarray,
    titles: Sequence[str] | None = None,
    alpha: float = 0.5,
    columns: int = 6,
):
    """Fig. 5: image / ground-truth mask / explanation map over the image, ``columns`` examples per block."""
    import matplotlib.pyplot as plt

    imgs = images.cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if imgs.dtype == np.uint8:
        imgs = imgs.astype(np.float32) / 255.0
    imgs = np.transpose(imgs, (0, 2, 3, 1))
    gts = _mask_array(masks)
    n = len(imgs)
    ncols = min(n, columns)
    blocks = -(-n // ncols)
    fig, axes = plt.subplots(3 * blocks, ncols, figsize=(1.6 * ncols, 5.0 * blocks), squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
    for i in range(n):
        top, col = 3 * (i // ncols), i % ncols
        axes[top, col].imshow(imgs[i])
        axes[top + 1, col].imshow(gts[i], cmap="gray", vmin=0, vmax=1)
        axes[top + 2, col].imshow(imgs[i])
        axes[top + 2, col].imshow(maps[i], cmap="jet", alpha=alpha, vmin=0, vmax=1)
        if titles is not None:
            axes[top, col].set_title(titles[i], fontsize=7)
    for block in range(blocks):
        for row, label in enumerate(("image", "mask", "explanation")):
            axes[3 * block + row, 0].set_ylabel(label)
    fig.tight_layout()
    return fig


__all__ = [
    "auroc_f1_curve", "localization_metrics", "normalize_saliency", "overlay_figure",
    "per_image_pixel_auroc", "pooled_pixel_auroc", "saliency_maps", "smoothing_sigma",
]
