"""DevNet model, its Table 5 variants, rotation, training/resume, the experiment grid and localization."""

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from osad_lib.data.tensors import ImageSet
from osad_lib.losses.deviation import focal_loss
from osad_lib.methods.devnet.model import (
    DevNet, DevNetConfig, random_rotation, rotate, score_images, stem_features, train_devnet,
)
from osad_lib.validate import ConfigError

TINY = {"backbone": "resnet18", "weights": "random", "image_size": 64, "amp": False}


def _images(n=4, size=64, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("variant", ["mil_ds", "ds", "patch_ds", "rep"])
def test_variants_score_one_value_per_image_and_train(variant):
    torch.manual_seed(0)
    model = DevNet(DevNetConfig(variant=variant, **TINY))
    x, y = _images(), torch.tensor([0, 0, 1, 1])
    scores = model(x)
    assert scores.shape == (4,) and torch.isfinite(scores).all()
    loss = model.loss(x, y)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert model.backbone.stages[0][0].weight.grad is not None  # end-to-end fine-tuning


@pytest.mark.parametrize("backbone", ["alexnet", "resnet50"])
def test_table5_backbones_build_with_ds(backbone):
    model = DevNet(DevNetConfig(variant="ds", backbone=backbone, weights="random", image_size=128))
    assert model.eval()(_images(2, size=128)).shape == (2,)


def test_mil_ds_is_top_k_of_absolute_cell_scores_averaged_over_scales():
    torch.manual_seed(0)
    model = DevNet(DevNetConfig(n_scales=2, topk_ratio=0.25, **TINY)).eval()
    x = _images(3, size=128)
    maps = model.cell_scores(x)
    assert [tuple(m.shape) for m in maps] == [(3, 1, 4, 4), (3, 1, 2, 2)]
    by_hand = [m.abs().flatten(1).topk(k, dim=1).values.mean(1) for m, k in zip(maps, (4, 1))]
    torch.testing.assert_close(model(x), (by_hand[0] + by_hand[1]) / 2)


def test_ds_is_the_plain_spatial_mean_and_rep_the_mean_pooled_feature():
    torch.manual_seed(0)
    ds = DevNet(DevNetConfig(variant="ds", n_scales=1, **TINY)).eval()
    x = _images(2)
    torch.testing.assert_close(ds(x), ds.cell_scores(x)[0].flatten(1).mean(1))
    rep = DevNet(DevNetConfig(variant="rep", n_scales=1, **TINY)).eval()
    assert rep.head is None
    torch.testing.assert_close(rep(x), rep.backbone(x).mean(dim=(1, 2, 3)))


def test_patch_ds_applies_the_loss_to_every_cell():
    torch.manual_seed(0)
    model = DevNet(DevNetConfig(variant="patch_ds", criterion="focal", n_scales=1, **TINY))
    x, y = _images(2, size=96), torch.tensor([0.0, 1.0])
    cells = model.cell_scores(x)[0].flatten(1)  # 3x3 cells per image
    expected = focal_loss(cells.reshape(-1), y.repeat_interleave(9))
    torch.testing.assert_close(model.loss(x, y), expected)


def test_flos_is_devnet_with_the_focal_loss():
    torch.manual_seed(0)
    model = DevNet(DevNetConfig(criterion="focal", **TINY))
    x, y = _images(), torch.tensor([0.0, 1.0, 0.0, 1.0])
    torch.testing.assert_close(model.loss(x, y), focal_loss(model(x), y))


def test_config_validation_is_one_line():
    for bad in ({"variant": "mil"}, {"criterion": "hinge"}, {"variant": "rep", "criterion": "focal"},
                {"batch_size": 7}, {"topk_ratio": 0.0}, {"frozen_stages": -1}):
        with pytest.raises(ConfigError) as info:
            DevNetConfig(**bad)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="unknown DevNet setting"):
        DevNetConfig.from_overrides({"top_k": 0.1})
    assert DevNetConfig().paper_optimizer().lr == 1e-3


@pytest.mark.parametrize("angle", [90.0, -90.0, 180.0, 37.0])
def test_rotation_matches_torchvision_random_rotation(angle):
    x = _images(2, size=17)
    expected = TF.rotate(x, angle, interpolation=TF.InterpolationMode.NEAREST)
    torch.testing.assert_close(rotate(x, torch.tensor([angle, angle])), expected)


def test_random_rotation_is_seeded_and_per_image():
    x = torch.zeros(3, 3, 9, 9)
    x[:, :, 0, 4] = 1.0  # a dot at the top centre
    torch.manual_seed(1)
    a = random_rotation(x, 180.0)
    torch.manual_seed(1)
    assert torch.equal(a, random_rotation(x, 180.0))
    assert not torch.equal(a[0], a[1])
    assert random_rotation(x, 0.0) is x


def test_frozen_stem_is_fixed_and_cached_features_give_the_same_scores():
    config = DevNetConfig(backbone="efficientnet_lite0", weights="imagenet", image_size=64, frozen_stages=3, amp=False)
    model = DevNet(config).train()
    assert all(not p.requires_grad for s in model.backbone.stages[:3] for p in s.parameters())
    assert all(not s.training for s in model.backbone.stages[:3]) and model.backbone.stages[3].training
    images = (_images(5) * 255).to(torch.uint8)
    stems = stem_features(model, images, batch_size=2)
    assert [tuple(f.shape[:2]) for f in stems.per_scale] == [(5, 112), (5, 112)]
    direct = score_images(model, images, batch_size=3, amp=False)
    cached = score_images(model, stems, batch_size=3, amp=False)
    np.testing.assert_allclose(direct, cached, rtol=0.02, atol=0.02)  # float16 cache
    with pytest.raises(ConfigError):
        stem_features(DevNet(DevNetConfig(**TINY)), images)


def _toy_set(n_normal=6, n_anomaly=4, size=32):
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(n_normal + n_anomaly, 3, size, size, generator=g) * 255).to(torch.uint8)
    labels = torch.tensor([0] * n_normal + [1] * n_anomaly)
    classes = ["good"] * n_normal + ["defect"] * n_anomaly
    return ImageSet(images, labels, classes, None, [f"{i}.png" for i in range(len(labels))])


def test_training_resumes_from_a_checkpoint_to_identical_weights(tmp_path):
    train = _toy_set()
    config = DevNetConfig(batch_size=4, steps_per_epoch=2, image_size=32, backbone="resnet18", weights="random",
                          amp=False)
    straight, history = train_devnet(config.with_(epochs=2), train, seed=3, progress=False)
    ckpt = tmp_path / "devnet.pt"
    train_devnet(config.with_(epochs=1), train, seed=3, checkpoint=ckpt, progress=False)
    torch.manual_seed(999)  # disturb the global RNG: the checkpoint must restore it
    resumed, resumed_history = train_devnet(config.with_(epochs=2), train, seed=3, checkpoint=ckpt, progress=False)
    assert resumed_history == history and len(history) == 2
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), name


def test_grid_lists_the_paper_tables_without_data(monkeypatch, tmp_path):
    from osad_lib.experiments import devnet as experiments
    from osad_lib.profiles import configure

    monkeypatch.delenv("OSAD_DATA", raising=False)
    cfg = configure("01_devnet", profile="paper", check_data=False, output_dir=str(tmp_path))
    items = experiments.grid(cfg)
    frame = [(i.experiment.table, i.experiment.dataset, i.experiment.subset, i.experiment.method) for i in items]
    seeds = len(cfg.seeds)
    general = [f for f in frame if f[0] == "table2"]
    assert len(general) == 23 * seeds * len(experiments.METHODS)  # 15 MVTec categories + 8 datasets
    hard_subsets = {f[2] for f in frame if f[0] == "table3"}
    assert len(hard_subsets) == 30 and {"mono", "poly", "carpet/color", "metal_nut/flip"} <= hard_subsets
    devnets = [i for i in items if i.experiment.method in experiments.DEVNET_METHODS]
    assert all(i.experiment.n_shots == 10 and i.train_images == 50 * 20 * 48 * 2 for i in devnets)
    unsupervised = [i.experiment for i in items if i.experiment.method in experiments.UNSUPERVISED]
    assert unsupervised and all(e.n_shots == 0 and e.extra_key["split_shots"] == 10 for e in unsupervised)
    assert not [f for f in frame if f[0] == "table4"]  # MVTec AD masks: Table 4 comes from the Table 2 runs
    assert all(i.experiment.deviations == "" for i in items if i.experiment.method == "devnet")
    flos = next(i for i in items if i.experiment.method == "flos")
    assert "criterion" not in flos.experiment.deviations


def test_demo_config_records_its_deviations(tmp_path):
    from osad_lib.experiments import devnet as experiments
    from osad_lib.profiles import configure

    cfg = configure("01_devnet", profile="demo", output_dir=str(tmp_path), check_data=False)
    config = experiments.devnet_config(cfg, "flos")
    assert config.criterion == "focal" and config.backbone == "efficientnet_lite0" and config.frozen_stages > 0
    text = experiments.devnet_deviations(cfg, "elpv", config)
    assert "backbone=efficientnet_lite0 (code: resnet18)" in text and "frozen_stages" in text
    tables = {i.experiment.table for i in experiments.grid(cfg)}
    assert tables == {"table2", "table3", "table4"}  # ELPV has no masks: synthetic localization runs


def test_devnet_explanations_find_synthetic_defects():
    """A briefly trained DevNet (frozen ImageNet features, 64 px) localizes the masked defects."""
    from osad_lib import explain, metrics
    from osad_lib.data.mvtec import read_mvtec_layout
    from osad_lib.data.protocols import general_split
    from osad_lib.data.registry import resolve
    from osad_lib.data.tensors import load_split

    root = resolve("synthetic/weave")
    train, test = load_split(general_split(read_mvtec_layout(root), 10, 0), root, 64)
    config = DevNetConfig(backbone="efficientnet_lite0", weights="imagenet", image_size=64, frozen_stages=4,
                          rotation_degrees=0.0, lr=1e-3, epochs=4, steps_per_epoch=5, batch_size=16, amp=False)
    model, history = train_devnet(config, train, seed=0, progress=False)
    assert history[-1] < history[0]
    assert metrics.image_auroc(test.labels, score_images(model, test.images, amp=False)) > 0.8
    anomalous = test.labels == 1
    maps = explain.saliency_maps(model, test.images[anomalous])
    assert explain.localization_metrics(maps, test.masks[anomalous])["pixel_auroc"] > 0.7


# --------------------------------------------------------------------------------------------
# the baselines in notebook 01_devnet


@pytest.mark.parametrize("profile", ["smoke", "demo", "paper"])
def test_profiles_run_the_baselines_with_their_own_deviations(profile, tmp_path):
    from osad_lib.experiments import devnet as experiments
    from osad_lib.experiments import baselines
    from osad_lib.profiles import configure

    cfg = configure("01_devnet", profile=profile, output_dir=str(tmp_path), check_data=False)
    items = experiments.grid(cfg)
    methods = {i.experiment.method for i in items}
    run_baselines = methods & set(baselines.RUNNERS)
    if profile == "smoke":
        assert methods >= {"devnet", "flos"} and len(run_baselines) <= 1  # CI budget: one cheap baseline
    elif profile == "demo":  # KDAD needs VGG-16's ImageNet weights, which are not available offline
        assert run_baselines == set(baselines.RUNNERS) - {"kdad"}
    else:
        assert run_baselines == set(baselines.RUNNERS)
    for item in items:
        e = item.experiment
        if e.method in baselines.RUNNERS:
            config = baselines.method_config(cfg, e.method)
            assert e.deviations == baselines.baseline_deviations(e.method, e.dataset, config)
            assert e.backbone == config.backbone and experiments.METHODS[e.method] is baselines.RUNNERS[e.method]
    runs_on = experiments.methods_table(cfg).set_index("method")["runs on"]
    assert runs_on["devnet"].startswith("table2, table3")
    assert (runs_on["kdad"] == "not run") == (profile != "paper")
    if profile == "demo":  # PatchCore (AHL Table 4's reference) only in the general setting
        assert runs_on["patchcore"] == "table2"
        assert {i.experiment.table for i in items if i.experiment.method == "patchcore"} == {"table2"}


def _store_fake_rows(cfg, experiments):
    """Rows for every ELPV Table 2/3 grid item: AUROC 0.6 + (0.02 + 0.005·seed)·(method position)."""
    methods = list(experiments.grid_option(cfg, "methods"))
    for item in experiments.grid(cfg):
        e = item.experiment
        if e.dataset == "elpv":
            value = 0.6 + (0.02 + 0.005 * e.seed) * methods.index(e.method)
            cfg.store.run_experiment(e, lambda v=value: {"auroc": v})


def test_baseline_rows_join_the_paper_tables_and_methods_not_run_are_paper_only(tmp_path):
    from osad_lib.experiments import devnet as experiments
    from osad_lib.profiles import configure

    cfg = configure("01_devnet", profile="demo", output_dir=str(tmp_path), check_data=False)
    _store_fake_rows(cfg, experiments)
    table2 = experiments.paper_table(cfg, "table2").set_index("method")
    seeds_of = experiments.grid_option(cfg, "method_seeds")
    for method in ("deepsvdd", "deepsad", "minns", "flos", "devnet"):  # the paper's Table 2 ELPV row
        row = table2.loc[method]
        assert row["n_seeds"] == seeds_of.get(method, len(cfg.seeds)) and not np.isnan(row["paper_mean"]) and row["note"] == "", method
        assert row["delta"] == pytest.approx(row["measured_mean"] - row["paper_mean"])
    assert table2.loc["deepsvdd", "n_shots"] == 0 and table2.loc["deepsad", "n_shots"] == 10
    assert table2.loc["deepsvdd", "paper_mean"] == pytest.approx(0.75)  # DevNet Table 2, ELPV
    kdad = table2.loc["kdad"]
    assert kdad["n_seeds"] == 0 and kdad["measured"] == "—" and np.isnan(kdad["measured_mean"])
    assert kdad["note"] == "paper only: not run under this profile" and kdad["paper"] != "—"
    assert table2.loc["patchcore", "note"] == "measured only: no paper row"
    table3 = experiments.paper_table(cfg, "table3")
    minns_mean = table3[(table3["method"] == "minns") & (table3["subset"] == "mean")].iloc[0]
    assert minns_mean["n_seeds"] == seeds_of["minns"] and minns_mean["paper_mean"] == pytest.approx(0.663)
    assert table3[table3["method"] == "kdad"]["note"].str.startswith("paper only").all()


def test_wilcoxon_pairs_devnet_with_every_measured_baseline(tmp_path):
    from osad_lib.experiments import devnet as experiments
    from osad_lib.profiles import configure

    cfg = configure("01_devnet", profile="demo", output_dir=str(tmp_path), check_data=False)
    _store_fake_rows(cfg, experiments)
    tests = experiments.wilcoxon_table(cfg, "table2").set_index("method")
    assert set(tests.index) == set(experiments.grid_option(cfg, "methods")) - {"devnet"}
    seeds_of = experiments.grid_option(cfg, "method_seeds")  # pairs only where both ran
    assert tests["n_runs"].to_dict() == {m: seeds_of.get(m, len(cfg.seeds)) for m in tests.index}
    assert (tests["n_datasets"] == 1).all() and tests.loc["flos", "n_runs"] == 3
    methods = list(experiments.grid_option(cfg, "methods"))
    gap = 0.025 * (methods.index("devnet") - methods.index("flos"))  # mean over seeds 0, 1, 2
    assert tests.loc["flos", "devnet_minus_method"] == pytest.approx(gap)
    assert tests.loc["flos", "p_value_runs"] == pytest.approx(0.25)  # 3 pairs, all of one sign


def test_score_frame_kinds_and_map_positions():
    from osad_lib import plots
    from osad_lib.experiments.devnet import score_frame

    data = {"scores": np.array([0.1, 2.0, 1.5, 0.3]), "labels": np.array([0, 1, 1, 0]),
            "classes": np.array(["good", "crack", "scratch", "good"]), "paths": np.array(["a", "b", "c", "d"]),
            "overlay_index": np.array([2, 1])}
    frame = plots.check_score_frame(score_frame(data, ["crack"]))
    assert frame["kind"].tolist() == ["normal", "seen", "unseen", "normal"]
    assert frame["map_index"].tolist() == [-1, 1, 0, -1]


def test_score_explorer_inputs_of_a_stored_smoke_run(tmp_path):
    from osad_lib import plots, widgets
    from osad_lib.experiments import devnet as experiments, protocol
    from osad_lib.profiles import configure

    cfg = configure("01_devnet", profile="smoke", device="cpu", output_dir=str(tmp_path), check_data=False)
    item = next(i for i in experiments.grid(cfg) if i.experiment.method == "devnet" and i.experiment.table == "table2")
    protocol.run_grid(cfg, [item], experiments.run_one, desc="test")
    inputs = experiments.score_explorer_inputs(cfg)
    frame = plots.check_score_frame(inputs["scores"])
    assert len(frame) == item.eval_images // 2 and set(frame["kind"]) <= {"normal", "seen", "unseen"}
    mapped = frame[frame["map_index"] >= 0]
    assert len(mapped) == len(inputs["maps"]) == len(inputs["images"]) == len(inputs["masks"]) > 0
    assert (mapped["label"] == 1).all()
    assert inputs["maps"].shape[-1] == inputs["images"].shape[-1] == cfg.profile.image_size
    fig = widgets.static_score_explorer(**inputs)
    assert fig.axes and "devnet" in fig._suptitle.get_text()
    with pytest.raises(ConfigError, match="no stored run of 'minns'"):
        experiments.score_explorer_inputs(cfg, "minns")


def test_batched_rotation_matches_the_reference_transform_in_distribution():
    """The tensor pipeline's rotation (one angle per image, on the batch) against torchvision's
    per-sample ``RandomRotation(180)`` on PIL images, as the official repositories apply it:
    over many draws, the mean, spread and share of black (rotated-in) pixels agree."""
    from PIL import Image
    from torchvision import transforms

    from osad_lib.components.stems import random_rotation

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    image = (torch.rand(3, 32, 32, generator=g) * 200 + 55).to(torch.uint8)  # no black pixel of its own
    batch = random_rotation(image.float().div(255).expand(400, -1, -1, -1).contiguous(), 180.0)
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    reference = torch.stack([transforms.functional.to_tensor(transforms.RandomRotation(180)(pil)) for _ in range(400)])
    for stat in (lambda x: x.mean(), lambda x: x.std(), lambda x: (x.amax(dim=1) < 1 / 255).float().mean()):
        assert stat(batch).item() == pytest.approx(stat(reference).item(), abs=0.02)
