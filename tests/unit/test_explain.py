"""Gradient explanation maps and localization metrics (DevNet §4.4 Eq. (9), Fig. 4; docs/official_code/devnet.md "Localisation (Table 4)")."""

import matplotlib
import numpy as np
import pytest
import torch

from osad_lib import explain
from osad_lib.validate import ConfigError


def test_normalisation_uses_min_and_99th_percentile_and_clips():
    raw = np.arange(101, dtype=np.float32).reshape(1, 101)  # min 0, P99 = 99
    out = explain.normalize_saliency(raw)
    assert out.min() == 0.0 and out.max() == 1.0
    assert out[0, 50] == pytest.approx(50 / 99)
    assert out[0, 100] == 1.0  # above the percentile: clipped
    assert not explain.normalize_saliency(np.full((4, 4), 3.0)).any()


def test_sigma_scales_with_image_size():
    assert explain.smoothing_sigma(448) == 4.0
    assert explain.smoothing_sigma(224) == 2.0
    assert explain.smoothing_sigma(224, sigma_reference_size=None) == 4.0


def _region_score(x: torch.Tensor) -> torch.Tensor:
    """A 'model' whose score depends only on the pixels in rows 20:28, columns 36:44."""
    return (x[:, :, 20:28, 36:44] ** 2).sum(dim=(1, 2, 3))


def test_saliency_peaks_where_the_score_depends_on_the_input():
    images = (torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    maps = explain.saliency_maps(_region_score, images, batch_size=2)
    assert maps.shape == (3, 64, 64) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    inside = np.zeros((64, 64), bool)
    inside[20:28, 36:44] = True
    for m in maps:
        row, col = np.unravel_index(m.argmax(), m.shape)
        assert inside[row, col]
        assert m[inside].mean() > 10 * m[~inside].mean()


def test_saliency_scores_images_independently():
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    def score(x):
        return x[:, 0, 3, 3] ** 2 + x[:, 1, 10:20, 5:9].mean(dim=(1, 2))

    together = explain.saliency_maps(score, images, batch_size=4)
    alone = np.concatenate([explain.saliency_maps(score, images[i:i + 1]) for i in range(4)])
    np.testing.assert_allclose(together, alone, atol=1e-6)


def test_per_image_and_pooled_pixel_auroc():
    masks = np.zeros((3, 1, 8, 8), np.uint8)
    masks[0, 0, :2] = 1
    masks[1, 0, 4:] = 1
    maps = np.zeros((3, 8, 8), np.float32)
    maps[0, :2] = 1.0          # perfect
    maps[1, :4] = 1.0          # inverted
    per_image = explain.per_image_pixel_auroc(maps, masks)
    assert per_image[0] == 1.0 and per_image[1] == 0.0 and np.isnan(per_image[2])  # empty mask skipped
    result = explain.localization_metrics(maps, masks)
    assert result["pixel_auroc"] == pytest.approx(0.5)
    assert 0.0 <= result["pixel_auroc_pooled"] <= 1.0
    with pytest.raises(ConfigError):
        explain.per_image_pixel_auroc(maps[:, :4], masks)


def test_auroc_f1_curve_by_hand():
    scores = np.array([0.1, 0.2, 0.8, 0.9])
    labels = np.array([0, 0, 1, 1])
    pixel = np.array([np.nan, np.nan, 0.6, 1.0])
    curve = explain.auroc_f1_curve(scores, labels, pixel, n_thresholds=4)
    by_threshold = curve.set_index("threshold")
    # t = 0.9: only the last anomaly detected: F1 = 2·1/(2·1 + 0 + 1), its pixel AUROC 1.0
    assert by_threshold.loc[0.9, "f1"] == pytest.approx(2 / 3)
    assert by_threshold.loc[0.9, "pixel_auroc"] == 1.0
    # lowest threshold: everything detected, F1 = 2·2/(2·2 + 2), mean pixel AUROC of both anomalies
    assert curve.iloc[0]["f1"] == pytest.approx(4 / 6) and curve.iloc[0]["pixel_auroc"] == pytest.approx(0.8)
    assert curve["quantile"].is_monotonic_increasing


def test_overlay_figure_has_image_mask_and_map_rows():
    matplotlib.use("Agg")
    images = torch.zeros(2, 3, 16, 16, dtype=torch.uint8)
    masks = torch.zeros(2, 1, 16, 16, dtype=torch.uint8)
    fig = explain.overlay_figure(images, masks, np.zeros((2, 16, 16), np.float32), titles=["a", "b"])
    assert len(fig.axes) == 6
    assert [fig.axes[i].get_ylabel() for i in (0, 2, 4)] == ["image", "mask", "explanation"]
    wrapped = explain.overlay_figure(images[[0, 1, 0]], masks[[0, 1, 0]], np.zeros((3, 16, 16)), columns=2)
    assert len(wrapped.axes) == 12 and wrapped.axes[6].get_ylabel() == "image"  # two blocks of 3 rows
