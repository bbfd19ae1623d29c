"""Baselines of the DevNet/DRA/AHL tables: Deep SVDD, Deep SAD, MINNS and PatchCore."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from osad_lib import metrics
from osad_lib.experiments import baselines as xbaselines
from osad_lib.methods.baselines import baselines
from osad_lib.components.backbones import Backbone
from osad_lib.methods.baselines.baselines import (
    BaselineConfig, hypersphere_center, mil_pool, one_class_loss, probability_bce, squared_distances,
)
from osad_lib.methods.baselines.patchcore import (
    PatchCore, PatchCoreConfig, greedy_coreset, local_patch_features, nearest_distances,
)
from osad_lib.validate import ConfigError

# --------------------------------------------------------------------------------------------
# Deep SVDD / Deep SAD


def test_center_is_the_mean_with_small_coordinates_pushed_to_plus_minus_eps():
    embeddings = torch.tensor([[0.50, 0.02, -0.04, 0.0, -1.0],
                               [0.30, 0.04, -0.02, 0.0, -3.0]])
    c = hypersphere_center(embeddings, eps=0.1)
    # means: 0.4, 0.03, -0.03, 0, -2 -> 0.03 and -0.03 are inside (-0.1, 0.1); exact 0 stays 0
    torch.testing.assert_close(c, torch.tensor([0.4, 0.1, -0.1, 0.0, -2.0]))


def test_one_class_losses_on_hand_computed_embeddings():
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.5]])
    center = torch.tensor([1.0, 1.0])
    dist = squared_distances(embeddings, center)
    torch.testing.assert_close(dist, torch.tensor([1.0, 2.0, 0.25]))
    # Deep SVDD: no labelled anomalies -> the mean squared distance
    assert one_class_loss(embeddings, center, torch.zeros(3)).item() == pytest.approx((1 + 2 + 0.25) / 3)
    # Deep SAD: the labelled anomaly (distance 2) contributes eta / (2 + eps)
    targets = torch.tensor([0.0, 1.0, 0.0])
    expected = (1.0 + 1.0 / (2.0 + 1e-6) + 0.25) / 3
    assert one_class_loss(embeddings, center, targets).item() == pytest.approx(expected)
    assert one_class_loss(embeddings, center, targets, eta=3.0).item() == pytest.approx((1.0 + 3.0 / (2.0 + 1e-6) + 0.25) / 3)


def test_pushing_a_labelled_anomaly_away_lowers_the_deep_sad_loss():
    center = torch.zeros(2)
    near = one_class_loss(torch.tensor([[0.1, 0.0], [0.5, 0.0]]), center, torch.tensor([0.0, 1.0]))
    far = one_class_loss(torch.tensor([[0.1, 0.0], [5.0, 0.0]]), center, torch.tensor([0.0, 1.0]))
    assert far < near


def test_config_rules_are_one_line_errors():
    with pytest.raises(ConfigError, match="n_scales=1"):
        BaselineConfig(method="deepsad", n_scales=2)
    with pytest.raises(ConfigError, match="even batch_size"):
        BaselineConfig(method="minns", batch_size=7)
    with pytest.raises(ConfigError, match="unknown baseline setting"):
        BaselineConfig.from_overrides({"method": "minns", "learning_rate": 1.0})
    with pytest.raises(ConfigError):
        BaselineConfig(method="kdad")
    assert BaselineConfig.paper_defaults("deepsad").lr == 1e-4
    assert BaselineConfig.paper_defaults("minns").lr == 2e-4 and BaselineConfig.paper_defaults("minns").n_scales == 2


# --------------------------------------------------------------------------------------------
# MINNS


def test_mil_pooling_values():
    x = torch.tensor([1.0, 2.0, 3.0, 10.0]).reshape(1, 1, 2, 2).repeat(1, 2, 1, 1)
    x[:, 1] *= -1
    torch.testing.assert_close(mil_pool(x, "max"), torch.tensor([[10.0, -1.0]]))
    torch.testing.assert_close(mil_pool(x, "mean"), torch.tensor([[4.0, -4.0]]))
    lse = math.log((math.exp(1) + math.exp(2) + math.exp(3) + math.exp(10)) / 4)
    torch.testing.assert_close(mil_pool(x, "lse")[0, 0], torch.tensor(lse))
    # top-K with K = max(int(0.5 * 4), 1) = 2: mean of the two largest per channel
    torch.testing.assert_close(mil_pool(x, "topk", topk_ratio=0.5), torch.tensor([[6.5, -1.5]]))
    with pytest.raises(ConfigError):
        mil_pool(x, "median")


def test_probability_bce_matches_the_definition():
    p, y = torch.tensor([0.9, 0.2]), torch.tensor([1.0, 0.0])
    assert probability_bce(p, y).item() == pytest.approx(-(math.log(0.9) + math.log(0.8)) / 2, rel=1e-6)


@pytest.mark.parametrize("network", ["mi_net_ds", "mi_net"])
def test_minns_scores_are_probabilities_and_the_loss_trains_every_supervised_layer(network):
    config = BaselineConfig(method="minns", backbone="efficientnet_lite0", weights="imagenet", image_size=32,
                            frozen_stages=5, mil_network=network, amp=False)
    model = baselines.build_model(config).train()
    images = torch.rand(4, 3, 32, 32)
    loss = model.loss_from_stem(model.stem_pyramid(images), torch.tensor([0.0, 0.0, 1.0, 1.0]))
    loss.backward()
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trained and all(not n.startswith("backbone") for n in trained)  # frozen stem: only the MIL layers
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)
    if network == "mi_net_ds":
        assert len(model.level_outputs(model.top(model.stem_pyramid(images)[0]))) == 3
    scores = model.eval()(images)
    assert scores.shape == (4,) and bool(((scores > 0) & (scores < 1)).all())


# --------------------------------------------------------------------------------------------
# PatchCore


def test_greedy_coreset_picks_one_point_per_far_apart_cluster():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0], [100.0, 100.0]])
    points = torch.cat([c + torch.randn(25, 2, generator=g) for c in centres])
    for seed in (0, 1, 2):
        picked = greedy_coreset(points, 4, projection_dim=None, seed=seed)
        assert sorted((picked // 25).tolist()) == [0, 1, 2, 3]
    # the k-center rule: each new point is the farthest from those already selected
    picked = greedy_coreset(points, 6, projection_dim=None, seed=0)
    for k in range(1, 6):
        nearest = torch.cdist(points, points[picked[:k]]).amin(dim=1)
        assert nearest[picked[k]] == pytest.approx(nearest.max().item())
    # deterministic given the seed, also with the random projection
    wide = torch.randn(200, 300, generator=g)
    assert torch.equal(greedy_coreset(wide, 20, 128, seed=5), greedy_coreset(wide, 20, 128, seed=5))


def test_nearest_distances_in_chunks_equal_brute_force():
    g = torch.Generator().manual_seed(1)
    queries, bank = torch.randn(37, 8, generator=g), torch.randn(53, 8, generator=g)
    chunked = nearest_distances(queries, bank, query_chunk=5, bank_chunk=7)
    torch.testing.assert_close(chunked, torch.cdist(queries, bank).amin(dim=1), rtol=1e-5, atol=1e-5)


def test_local_patch_features_average_3x3_neighbourhoods_and_upsample():
    fine = torch.arange(16.0).reshape(1, 1, 4, 4)
    coarse = torch.ones(1, 2, 2, 2)
    out = local_patch_features([fine, coarse], patch_size=3)
    assert out.shape == (1, 3, 4, 4)
    assert out[0, 0, 1, 1].item() == pytest.approx(fine[0, 0, :3, :3].mean().item())
    assert out[0, 0, 0, 0].item() == pytest.approx(fine[0, 0, :2, :2].mean().item())  # border: existing cells only
    torch.testing.assert_close(out[0, 1:], torch.ones(2, 4, 4))


def _pixel_backbone() -> Backbone:
    """A backbone whose 'features' are the image's own pixels at strides 1, 2, 4 (no weights)."""
    stages = [nn.Identity(), nn.AvgPool2d(2), nn.AvgPool2d(2), nn.Identity()]
    return Backbone("pixels", "random", stages, (0, 1, 2), (3, 3, 3), 3, nn.Identity(), (0.0,) * 3, (1.0,) * 3)


def test_patchcore_scores_a_planted_outlier_patch_highest_and_its_map_peaks_there():
    g = torch.Generator().manual_seed(0)
    normals = 0.5 + 0.05 * torch.rand(6, 3, 32, 32, generator=g)
    test = 0.5 + 0.05 * torch.rand(3, 3, 32, 32, generator=g)
    test[1, :, 20:24, 8:12] = 1.0  # a bright square in image 1
    config = PatchCoreConfig(image_size=32, coreset_ratio=0.25, sigma=1.0)
    model = PatchCore(config, backbone=_pixel_backbone()).fit(normals, seed=0)
    assert model.memory_bank.shape == (int(0.25 * 6 * 16 * 16), 6)  # stride-2 grid, two 3-channel levels
    scores, maps = model.predict(test)
    assert scores.argmax() == 1 and scores[1] > 3 * max(scores[0], scores[2])
    row, col = np.unravel_index(maps[1].argmax(), maps[1].shape)
    assert 18 <= row <= 25 and 6 <= col <= 13
    again = PatchCore(config, backbone=_pixel_backbone()).fit(normals, seed=0)
    assert torch.equal(again.memory_bank, model.memory_bank)


def test_patchcore_config_errors():
    with pytest.raises(ConfigError, match="coreset_ratio"):
        PatchCoreConfig(coreset_ratio=0.0)
    with pytest.raises(ConfigError, match="levels"):
        PatchCoreConfig(levels=(1, 3))
    with pytest.raises(ConfigError, match="max_train_images"):
        PatchCoreConfig(max_train_images=-1)
    with pytest.raises(ConfigError, match="memory bank"):
        PatchCore(PatchCoreConfig(), backbone=_pixel_backbone()).patch_scores(torch.rand(1, 3, 8, 8))


def test_patchcore_with_imagenet_lite0_finds_synthetic_defects():
    from osad_lib.data.mvtec import read_mvtec_layout
    from osad_lib.data.protocols import general_split
    from osad_lib.data.registry import resolve
    from osad_lib.data.tensors import load_split
    from osad_lib.explain import localization_metrics

    root = resolve("synthetic/weave")
    train, test = load_split(general_split(read_mvtec_layout(root), 5, 0), root, 64)
    model = PatchCore(PatchCoreConfig(backbone="efficientnet_lite0", weights="imagenet", image_size=64))
    scores, maps = model.fit(train.images[train.labels == 0], seed=0).predict(test.images)
    assert metrics.image_auroc(test.labels, scores) > 0.9
    anomalous = (test.labels == 1).numpy()
    assert localization_metrics(maps[anomalous], test.masks[anomalous])["pixel_auroc"] > 0.85


# --------------------------------------------------------------------------------------------
# runners: DevNet's signature and return, on the smoke profile


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    from osad_lib.experiments.devnet import make_dataset_split
    from osad_lib.profiles import configure

    out = tmp_path_factory.mktemp("baselines")
    cfg = configure("01_devnet", profile="smoke", device="cpu", output_dir=str(out), check_data=False)
    split, root = make_dataset_split(cfg, "synthetic/weave", "general", 5, 0)
    return cfg, split, root, out


# KDAD runs at its own settings (VGG-16 source, 128 px): tests/unit/test_kdad.py runs it end to end
@pytest.mark.parametrize("method", sorted(set(xbaselines.RUNNERS) - {"kdad"}))
def test_runners_run_end_to_end_and_return_metrics_in_unit_interval(smoke, method):
    cfg, split, root, out = smoke
    config = xbaselines.method_config(cfg, method)
    assert config.image_size == 64 and config.backbone == cfg.profile.backbone
    artifact = out / f"{method}.npz"
    result = xbaselines.RUNNERS[method](cfg, split, root, max_test_images=16, localize=method in ("minns", "patchcore"),
                                       artifact=artifact, checkpoint=out / f"{method}.pt")
    expected = {"auroc", "aupr"} | ({"pixel_auroc"} if method in ("minns", "patchcore") else set())
    assert set(result) == expected and all(0.0 <= v <= 1.0 for v in result.values())
    with np.load(artifact) as data:
        assert len(data["scores"]) == len(data["labels"]) == 16 and np.isfinite(data["scores"]).all()
    deviations = xbaselines.baseline_deviations(method, "synthetic", config)
    assert deviations.startswith("synthetic data") and "image_size=64 (paper: " in deviations


def test_minns_and_deepsad_follow_devnet_settings_but_keep_their_own(smoke):
    cfg = smoke[0]
    minns, deepsad = xbaselines.baseline_config(cfg, "minns"), xbaselines.baseline_config(cfg, "deepsad")
    assert (minns.epochs, minns.batch_size, minns.n_scales) == (cfg.profile.epochs, cfg.profile.batch_size, 2)
    assert (deepsad.n_scales, deepsad.lr, deepsad.rotation_degrees, deepsad.balanced) == (1, 1e-4, 0.0, False)
    assert xbaselines.baseline_config(cfg, "minns", mil_pooling="topk").mil_pooling == "topk"


def test_demo_patchcore_uses_a_smaller_coreset_and_says_so(tmp_path):
    from osad_lib.profiles import configure

    cfg = configure("01_devnet", profile="demo", output_dir=str(tmp_path), check_data=False)
    config = xbaselines.patchcore_config(cfg)
    assert (config.coreset_ratio, config.image_size, config.backbone) == (0.01, 160, "efficientnet_lite0")
    text = xbaselines.baseline_deviations("patchcore", "elpv", config)
    assert "coreset_ratio=0.01 (paper: 0.1)" in text and "image_size=160 (paper: 224)" in text
    assert "at most 200 training normals (paper: all)" in text
    assert "batch_size" not in text  # memory-only settings are not deviations
