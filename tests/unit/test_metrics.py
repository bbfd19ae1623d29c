"""Metrics against hand-computed values, sklearn and a slow reference AU-PRO (``docs/conventions.md``
"Metric reference tests")."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from osad_lib.metrics import (
    aupr_normal,
    f1_max,
    image_aupr,
    image_auroc,
    pixel_auroc,
    pixel_auroc_per_image,
    pro_curve,
    pro_score,
)
from osad_lib.validate import ConfigError


def two_region_case() -> tuple[np.ndarray, np.ndarray]:
    """4x4 map; regions A = {(0,0), (0,1)} and B = {(2,3)}; 13 negatives.

    Descending thresholds: 0.9 -> PRO (1/2 + 0)/2 = .25, FPR 0; 0.8 (negative) -> FPR 1/13;
    0.7 (B) -> PRO (1/2 + 1)/2 = .75; 0.6 (negative) -> FPR 2/13; 0.5 (A complete) -> PRO 1;
    0.1 (11 negatives) -> FPR 1.
    AU-PRO@0.3 = [.25 * 1/13 + .75 * 1/13 + 1 * (.3 - 2/13)] / .3 = 1 - 1/3.9.
    AU-PRO@0.1 = [.25 * 1/13 + .75 * (.1 - 1/13)] / .1 = .75 - 5/13 (interpolated at the limit).
    """
    mask = np.zeros((4, 4))
    mask[0, 0] = mask[0, 1] = mask[2, 3] = 1
    score = np.full((4, 4), 0.1)
    score[0, 0], score[0, 1], score[2, 3], score[1, 2], score[3, 0] = 0.9, 0.5, 0.7, 0.8, 0.6
    return mask, score


def reference_au_pro(masks: np.ndarray, maps: np.ndarray, limit: float) -> float:
    """Slow AU-PRO: threshold by threshold, region by region, segment-wise clipped trapezoid."""
    negatives = masks == 0
    points = [(0.0, 0.0)]
    for t in sorted(np.unique(maps), reverse=True):
        predicted = maps >= t
        overlaps = []
        for image_index, mask in enumerate(masks):
            labelled, count = ndimage.label(mask, structure=np.ones((3, 3)))
            for r in range(1, count + 1):
                region = labelled == r
                overlaps.append(predicted[image_index][region].mean())
        points.append(((predicted & negatives).sum() / negatives.sum(), float(np.mean(overlaps))))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
        if x0 >= limit:
            break
        if x1 > limit:
            y1 = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            x1 = limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / limit


def test_auroc_hand_computed():
    assert image_auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert image_auroc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert image_auroc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
    assert image_auroc([0, 1], [0.5, 0.5]) == 0.5  # ties count one half


def test_average_precision_hand_computed():
    # ranking 0.8(+) 0.4(-) 0.35(+) 0.1(-): AP = (1/1 + 2/3) / 2
    assert image_aupr([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(5 / 6)
    # normals positive on the same scores, ranked 0.8(-) 0.4(+) 0.35(-) 0.1(+): (1/2 + 2/4) / 2
    assert aupr_normal([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.5)
    # a perfect detector has AP(normal) = mean over normals of precision at their ranks from the top
    assert aupr_normal([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_f1_max_hand_computed():
    # thresholds: >=0.8 -> P 1, R .5, F1 2/3; >=0.35 -> P 2/3, R 1, F1 .8; >=0.1 -> F1 2/3
    assert f1_max([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.8)


def test_image_metrics_agree_with_sklearn_on_random_data():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = rng.normal(size=300) + labels
    assert image_auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    assert image_aupr(labels, scores) == pytest.approx(average_precision_score(labels, scores))
    assert aupr_normal(labels, scores) == pytest.approx(average_precision_score(labels, scores, pos_label=0))
    best = max(f1_score(labels, scores >= t) for t in np.unique(scores))
    assert f1_max(labels, scores) == pytest.approx(best)
    as_tensors = image_auroc(torch.tensor(labels), torch.tensor(scores, dtype=torch.float32))
    assert as_tensors == pytest.approx(roc_auc_score(labels, scores), abs=1e-6)


def test_image_metric_inputs_are_validated():
    with pytest.raises(ValueError, match="only class 0"):
        image_auroc([0, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="same length"):
        image_auroc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="0 \\(normal\\) or 1"):
        image_aupr([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN/inf"):
        image_auroc([0, 1], [0.1, float("nan")])


def test_pixel_auroc_pooled_and_per_image():
    masks = np.zeros((3, 1, 2, 2))
    masks[0, 0, 0, 0] = 1
    masks[1, 0, 1, :] = 1
    maps = np.zeros((3, 1, 2, 2))
    maps[0, 0] = [[0.9, 0.1], [0.2, 0.3]]  # image AUROC 1
    maps[1, 0] = [[0.5, 0.6], [0.4, 0.7]]  # anomalies 0.4, 0.7 vs 0.5, 0.6 -> 2/4
    maps[2, 0] = [[0.8, 0.0], [0.0, 0.0]]  # a normal image, skipped per image
    assert pixel_auroc_per_image(masks, maps) == pytest.approx(0.75)
    assert pixel_auroc(masks, maps) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()))
    assert pixel_auroc(masks * 255, maps) == pixel_auroc(masks, maps)  # 0/255 masks
    with pytest.raises(ValueError, match="same shape"):
        pixel_auroc(masks, maps[:, :, :1])
    with pytest.raises(ValueError, match="both anomalous and normal"):
        pixel_auroc(np.zeros((1, 2, 2)), maps[0])


def test_pro_hand_computed_two_regions():
    mask, score = two_region_case()
    thresholds, fpr, pro = pro_curve(mask, score)
    np.testing.assert_allclose(thresholds[1:], [0.9, 0.8, 0.7, 0.6, 0.5, 0.1])
    np.testing.assert_allclose(fpr, [0, 0, 1 / 13, 1 / 13, 2 / 13, 2 / 13, 1])
    np.testing.assert_allclose(pro, [0, 0.25, 0.25, 0.75, 0.75, 1, 1])
    assert pro_score(mask, score) == pytest.approx(1 - 1 / 3.9)
    assert pro_score(mask, score, fpr_limit=0.1) == pytest.approx(0.75 - 5 / 13)


def test_pro_perfect_inverted_and_shift_invariant():
    mask, score = two_region_case()
    assert pro_score(mask, mask) == pytest.approx(1.0)
    assert pro_score(mask, 1 - mask) == pytest.approx(0.0)
    assert pro_score(mask, score * 100 - 50) == pytest.approx(pro_score(mask, score))  # maps outside [0,1]


def test_pro_regions_are_8_connected_and_equally_weighted():
    # a diagonal pair is ONE region under 8-connectivity; covering one of its two pixels gives .5
    mask = np.zeros((1, 4, 4))
    mask[0, 0, 0] = mask[0, 1, 1] = 1
    score = np.zeros((1, 4, 4))
    score[0, 0, 0] = 1
    _, fpr, pro = pro_curve(mask, score)
    assert pro[1] == pytest.approx(0.5) and fpr[1] == 0
    # a big and a small region count equally: covering the single-pixel one alone gives .5
    mask = np.zeros((2, 4, 4))
    mask[0, :2, :2] = 1
    mask[1, 3, 3] = 1
    score = np.zeros((2, 4, 4))
    score[1, 3, 3] = 1
    assert pro_curve(mask, score)[2][1] == pytest.approx(0.5)


def test_pro_single_region_ties_and_fpr_jumping_past_the_limit():
    # one region; its pixel ties with all 15 negatives at the only value: one point (1, 1)
    mask = np.zeros((4, 4))
    mask[1, 1] = 1
    flat = np.ones((4, 4))
    _, fpr, pro = pro_curve(mask, flat)
    np.testing.assert_allclose(fpr, [0, 1])
    np.testing.assert_allclose(pro, [0, 1])
    # the curve is the diagonal, interpolated at 0.3: area .3 * .3 / 2 / .3 = .15
    assert pro_score(mask, flat) == pytest.approx(0.15)


def test_pro_images_without_defects_only_add_negatives():
    mask, score = two_region_case()
    normal_image = np.zeros((1, 4, 4))
    masks = np.concatenate([mask[None], normal_image])
    quiet = np.concatenate([score[None], np.zeros((1, 4, 4))])
    loud = np.concatenate([score[None], np.ones((1, 4, 4))])
    assert pro_score(masks, quiet) == pytest.approx(reference_au_pro(masks, quiet, 0.3))
    assert pro_score(masks, loud) < pro_score(masks, quiet)


def test_pro_matches_slow_reference_on_random_maps():
    rng = np.random.default_rng(1)
    masks = np.zeros((3, 12, 12))
    masks[0, 2:5, 2:6] = 1
    masks[0, 8:10, 8:11] = 1
    masks[1, 0:3, 9:12] = 1
    maps = rng.random((3, 12, 12)).round(2) + 0.6 * masks  # rounding creates ties
    for limit in (0.05, 0.3, 1.0):
        assert pro_score(masks, maps, fpr_limit=limit) == pytest.approx(reference_au_pro(masks, maps, limit))


def test_pro_sampled_thresholds_and_bgad_integration():
    mask, score = two_region_case()
    # 9 thresholds 0.9, 0.8, ..., 0.1 hit every distinct value: the exact curve
    assert pro_score(mask, score, num_thresholds=9) == pytest.approx(pro_score(mask, score))
    # BGAD's code stretches the kept FPRs [0, 2/13] to [0, 1]: (.25 + .75) / 2 + 0 = .5
    assert pro_score(mask, score, integration="bgad") == pytest.approx(0.5)
    rng = np.random.default_rng(2)
    masks = (rng.random((4, 16, 16)) > 0.9).astype(float)
    maps = rng.random((4, 16, 16)) + masks
    exact = pro_score(masks, maps)
    assert pro_score(masks, maps, num_thresholds=1000) == pytest.approx(exact, abs=0.01)
    with pytest.raises(ConfigError, match="integration"):
        pro_score(masks, maps, integration="trapz")


def test_pro_inputs_are_validated():
    with pytest.raises(ValueError, match="at least one anomalous region"):
        pro_score(np.zeros((2, 4, 4)), np.random.rand(2, 4, 4))
    with pytest.raises(ValueError, match="defect-free pixels"):
        pro_score(np.ones((1, 4, 4)), np.random.rand(1, 4, 4))
    with pytest.raises(ValueError, match="fpr_limit"):
        pro_score(*two_region_case(), fpr_limit=0)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        pro_score(np.zeros((2, 2, 4, 4)), np.zeros((2, 2, 4, 4)))
