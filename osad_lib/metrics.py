"""Evaluation metrics of the five papers (``docs/official_code/shared.md`` "Evaluation code"),
anomalies positive.

=======================  ==========================================================  ==========
function                 definition                                                  used by
=======================  ==========================================================  ==========
image_auroc              sklearn ``roc_auc_score``                                   all
image_aupr               sklearn ``average_precision_score`` (label 1 positive)      all
aupr_normal              AP with ``pos_label=0`` on the same, un-negated scores      AnoOnly
pixel_auroc              AUROC over all pixels of all images pooled                  BGAD
pixel_auroc_per_image    AUROC per anomalous image, averaged                         DevNet
pro_score                area under the per-region-overlap curve up to 30 % FPR      BGAD
f1_max                   best F1 over all thresholds                                 BGAD viz
=======================  ==========================================================  ==========

Inputs may be numpy arrays, torch tensors or lists. Labels are 0/1 (or bool); masks are
(N, H, W), (N, 1, H, W) or one (H, W) image, and a pixel is anomalous where ``mask > 0.5``
(so 0/1 and 0/255 masks both work). Bad inputs raise a one-line ``ValueError``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from osad_lib.validate import choose


def _array(name: str, values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # torch tensor
        values = values.detach().float().cpu().numpy()
    array = np.asarray(values)
    if array.size == 0:
        raise ValueError(f"{name} is empty; pass at least one value")
    return array


def _finite(name: str, values: np.ndarray) -> np.ndarray:
    values = values.astype(np.float64, copy=False)
    if not np.isfinite(values).all():
        raise ValueError(f"{name} contain {int((~np.isfinite(values)).sum())} NaN/inf values; check the model output")
    return values


def _image_inputs(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    labels, scores = _array("labels", labels).ravel(), _finite("scores", _array("scores", scores).ravel())
    if labels.shape != scores.shape:
        raise ValueError(f"labels ({labels.size}) and scores ({scores.size}) must have the same length")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"labels must be 0 (normal) or 1 (anomaly), got values {np.unique(labels)[:5].tolist()}")
    labels = labels.astype(np.int64)
    if labels.min() == labels.max():
        raise ValueError(f"labels contain only class {labels[0]}; the metric needs normal and anomalous samples")
    return labels, scores


def _pixel_inputs(masks: Any, maps: Any) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) boolean masks and float maps from (N,1,H,W) / (N,H,W) / (H,W) inputs."""
    masks, maps = _array("masks", masks), _array("maps", maps)
    if masks.shape != maps.shape:
        raise ValueError(f"masks {masks.shape} and maps {maps.shape} must have the same shape (resize the maps)")
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks, maps = masks[:, 0], maps[:, 0]
    elif masks.ndim == 2:
        masks, maps = masks[None], maps[None]
    if masks.ndim != 3:
        raise ValueError(f"masks/maps must be (N, H, W), (N, 1, H, W) or (H, W), got shape {masks.shape}")
    return masks > 0.5, _finite("maps", maps)


def image_auroc(labels: Any, scores: Any) -> float:
    """Area under the ROC curve of image scores (higher = more anomalous)."""
    labels, scores = _image_inputs(labels, scores)
    return float(roc_auc_score(labels, scores))


def image_aupr(labels: Any, scores: Any) -> float:
    """Average precision with anomalies (label 1) as the positive class."""
    labels, scores = _image_inputs(labels, scores)
    return float(average_precision_score(labels, scores))


def aupr_normal(labels: Any, scores: Any) -> float:
    """AP with normals (label 0) positive, on the *same* anomaly scores (AnoOnly's ``aucpr_normal``,
    ``docs/official_code/anoonly.md`` "Evaluation").

    As in AnoOnly's code the scores are not negated, so a good detector gets a *low* value.
    """
    labels, scores = _image_inputs(labels, scores)
    return float(average_precision_score(labels, scores, pos_label=0))


def f1_max(labels: Any, scores: Any) -> float:
    """Maximum F1 over all thresholds of the precision-recall curve (anomalies positive)."""
    labels, scores = _image_inputs(labels, scores)
    precision, recall, _ = precision_recall_curve(labels, scores)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(precision),
                   where=precision + recall > 0)
    return float(f1.max())


def pixel_auroc(masks: Any, maps: Any) -> float:
    """Pixel AUROC with all pixels of all images pooled (BGAD; ``docs/official_code/shared.md``
    "Evaluation code")."""
    masks, maps = _pixel_inputs(masks, maps)
    if masks.all() or not masks.any():
        raise ValueError("pixel AUROC needs both anomalous and normal pixels in the masks")
    return float(roc_auc_score(masks.ravel(), maps.ravel()))


def pixel_auroc_per_image(masks: Any, maps: Any) -> float:
    """Mean over anomalous images of each image's pixel AUROC (DevNet's localisation,
    ``docs/official_code/devnet.md`` "Localisation (Table 4)").

    Images whose mask is empty (normals) or covers every pixel are skipped.
    """
    masks, maps = _pixel_inputs(masks, maps)
    scored = [roc_auc_score(m.ravel(), s.ravel()) for m, s in zip(masks, maps) if m.any() and not m.all()]
    if not scored:
        raise ValueError("per-image pixel AUROC needs an image with both anomalous and normal pixels")
    return float(np.mean(scored))


def pro_curve(masks: Any, maps: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact per-region-overlap curve at every distinct map value, highest threshold first.

    PRO(t) = mean over connected ground-truth regions R (8-connectivity, per image) of
    |{p in R: map(p) >= t}| / |R|; FPR(t) = fraction of all defect-free pixels with map >= t
    (Bergmann et al., MVTec AD IJCV 2021). Returns (thresholds, fpr, pro); both curves start at
    (0, 0) above the maximum (threshold +inf) and end at (1, 1).
    """
    masks, maps = _pixel_inputs(masks, maps)
    region_weight = np.zeros(masks.shape, dtype=np.float64)
    sizes = []
    for index, mask in enumerate(masks):
        labelled, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=int))
        if count:
            pixels = np.bincount(labelled.ravel())  # [0] = background
            sizes.extend(pixels[1:].tolist())
            region_weight[index] = np.where(labelled > 0, 1.0 / pixels[labelled], 0.0)
    if not sizes:
        raise ValueError("PRO needs at least one anomalous region in the masks")
    negatives = ~masks
    if not negatives.any():
        raise ValueError("PRO needs defect-free pixels (masks cover every pixel)")
    order = np.argsort(-maps.ravel(), kind="stable")
    scores = maps.ravel()[order]
    pro = np.cumsum(region_weight.ravel()[order]) / len(sizes)
    fpr = np.cumsum(negatives.ravel()[order]) / negatives.sum()
    last_of_tie = np.r_[scores[1:] != scores[:-1], True]  # one point per distinct threshold
    thresholds = np.r_[np.inf, scores[last_of_tie]]
    return thresholds, np.r_[0.0, fpr[last_of_tie]], np.r_[0.0, pro[last_of_tie]]


def _area_up_to(fpr: np.ndarray, pro: np.ndarray, limit: float) -> float:
    """Trapezoid area under pro(fpr) on [0, limit], interpolating linearly at the limit."""
    inside = int(np.searchsorted(fpr, limit, side="right"))  # fpr is non-decreasing
    x, y = fpr[:inside], pro[:inside]
    if inside < len(fpr) and x[-1] < limit:
        weight = (limit - fpr[inside - 1]) / (fpr[inside] - fpr[inside - 1])
        x = np.r_[x, limit]
        y = np.r_[y, pro[inside - 1] + weight * (pro[inside] - pro[inside - 1])]
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def pro_score(
    masks: Any,
    maps: Any,
    fpr_limit: float = 0.3,
    num_thresholds: int | None = None,
    integration: str = "mvtec",
) -> float:
    """AU-PRO: area under the PRO curve for FPR in [0, ``fpr_limit``], normalised to [0, 1].

    Args:
        masks, maps: ground truth and anomaly maps of the *whole* test set (normals included:
            their pixels count as negatives). Any real-valued map range works.
        fpr_limit: 0.3 in MVTec AD and BGAD.
        num_thresholds: ``None`` = exact curve at every distinct map value; an int = that many
            thresholds evenly spaced from the maps' max to min (BGAD's code uses 1000:
            ``docs/official_code/bgad.md`` "Pipeline").
        integration: ``"mvtec"`` = trapezoid on [0, limit] with the curve interpolated at the
            limit, divided by the limit (MVTec AD definition, the default); ``"bgad"`` = BGAD's
            code: keep thresholds with FPR <= limit, min-max rescale those FPRs to [0, 1],
            trapezoid (``docs/official_code/bgad.md`` "Pipeline").
    """
    integration = choose("integration", integration, ("mvtec", "bgad"))
    if not 0 < fpr_limit <= 1:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    thresholds, fpr, pro = pro_curve(masks, maps)
    if num_thresholds is not None:
        if num_thresholds < 2:
            raise ValueError(f"num_thresholds must be >= 2 (or None for the exact curve), got {num_thresholds}")
        sampled = np.linspace(thresholds[1], thresholds[-1], num_thresholds)  # max -> min
        # the state at threshold t is the exact state at the smallest distinct value >= t
        index = np.searchsorted(-thresholds, -sampled, side="right") - 1
        fpr, pro = np.r_[0.0, fpr[index]], np.r_[0.0, pro[index]]
    if integration == "mvtec":
        return _area_up_to(fpr, pro, fpr_limit) / fpr_limit
    fpr, pro = fpr[1:], pro[1:]  # BGAD's curve starts at its highest threshold, not at (0, 0)
    keep = fpr <= fpr_limit
    x, y = fpr[keep], pro[keep]
    if x.size < 2 or x.max() == x.min():
        return 0.0
    x = (x - x.min()) / (x.max() - x.min())
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))
