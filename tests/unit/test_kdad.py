"""KDAD (Salehi et al., CVPR 2021): the cloner, the value + direction loss, training on normals,
the anomaly score and maps, and its rows in the DevNet and DRA grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from osad_lib.data.tensors import ImageSet
from osad_lib.metrics import image_auroc
from osad_lib.methods.devnet.model import score_images
from osad_lib.methods.baselines.kdad import KDAD, Cloner, KDADConfig, cloner_layout, distillation_losses, train_kdad
from osad_lib.validate import ConfigError

SIZE = 32


def _images(n: int, seed: int, defect: bool) -> torch.Tensor:
    """uint8 [n, 3, 32, 32]: smooth colour fields with a slight ramp and noise; ``defect`` pastes an
    8x8 square of a random colour at a random place."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 1, 1, generator=g) * 0.5 + 0.25
    x = x + torch.linspace(-0.1, 0.1, SIZE).view(1, 1, 1, -1) * torch.rand(n, 3, 1, 1, generator=g)
    x = x + 0.02 * torch.randn(n, 3, SIZE, SIZE, generator=g)
    if defect:
        for i in range(n):
            r, c = torch.randint(0, SIZE - SIZE // 4, (2,), generator=g).tolist()
            x[i, :, r:r + SIZE // 4, c:c + SIZE // 4] = torch.rand(3, 1, 1, generator=g)
    return (x.clamp(0, 1) * 255).to(torch.uint8)


def _image_set(images: torch.Tensor, labels: list[int]) -> ImageSet:
    return ImageSet(images, torch.tensor(labels), ["good" if y == 0 else "square" for y in labels], None,
                    [f"{i:03d}.png" for i in range(len(labels))])


def test_cloner_is_small_and_matches_the_source_at_every_critical_layer():
    assert cloner_layout(16) == ((16, 16), (16, 128), (16, 16, 256), (16, 16, 512), (16, 16, 512))
    cloner = Cloner(16)
    assert sum(p.numel() for p in cloner.parameters()) == 345_280
    model = KDAD(KDADConfig(weights="random", image_size=64))
    assert all(not p.requires_grad for p in model.source.parameters())
    source, clone = model.activations(torch.rand(2, 3, 64, 64))
    assert [tuple(a.shape) for a in source] == [tuple(a.shape) for a in clone] == [
        (2, 128, 16, 16), (2, 256, 8, 8), (2, 512, 4, 4), (2, 512, 2, 2)]
    model.train()
    assert not model.source.training and model.cloner.training  # the source stays frozen in eval mode


def test_value_and_direction_losses_on_hand_computed_activations():
    a = torch.tensor([[1.0, 2.0, 0.0, 2.0]])
    value, direction = distillation_losses([a], [a])
    assert value.item() == 0.0 and direction.item() == pytest.approx(0.0, abs=1e-6)
    value, direction = distillation_losses([a], [2 * a])  # same direction, twice the values
    assert value.item() == pytest.approx((1 + 4 + 0 + 4) / 4) and direction.item() == pytest.approx(0.0, abs=1e-6)
    b = torch.tensor([[0.0, 0.0, 3.0, 0.0]])  # orthogonal: direction loss 1; two layers add up
    value, direction = distillation_losses([a, a], [b, a])
    assert value.item() == pytest.approx((1 + 4 + 9 + 4) / 4) and direction.item() == pytest.approx(1.0)
    model = KDAD(KDADConfig(weights="random", image_size=32, direction_weight=0.5))
    x = torch.rand(3, 3, 32, 32)
    v, d = model.losses(x)
    torch.testing.assert_close(model(x), v + 0.5 * d)


def test_the_cloner_learns_to_mimic_the_source_and_scores_separate_defects():
    """Random-weight VGG-16 source, 32 px: 24 steps of 8 normals (lr 3e-3 to keep the test short)."""
    train = _image_set(_images(32, 0, False), [0] * 32)
    test = _image_set(torch.cat([_images(30, 1, False), _images(30, 2, True)]), [0] * 30 + [1] * 30)
    config = KDADConfig(weights="random", image_size=SIZE, epochs=3, steps_per_epoch=8, batch_size=8, lr=3e-3, amp=False)
    model, history = train_kdad(config, train, seed=0, progress=False)
    assert history[-1] < 0.6 * history[0]  # measured 0.040 -> 0.017
    held_out = test.batch(slice(0, 30))  # normals the cloner never saw
    with torch.no_grad():
        source, trained = model.activations(held_out)
        untrained = Cloner(config.cloner_width)(model.source.normalize(held_out))
        before, after = distillation_losses(source, untrained), distillation_losses(source, trained)
    assert after[0].mean() < 0.5 * before[0].mean()  # value loss: measured 0.030 -> 0.009
    assert after[1].mean() < 0.5 * before[1].mean()  # direction loss over 4 layers: 2.30 -> 0.58
    scores = score_images(model, test.images, 64, "cpu", amp=False)
    assert image_auroc(test.labels.numpy(), scores) > 0.7  # measured 0.78 (chance: 0.5 +- 0.075)


def test_config_errors_are_one_line():
    with pytest.raises(ConfigError, match="KDAD source network"):
        KDADConfig(backbone="resnet18")
    with pytest.raises(ConfigError, match="multiple of 32"):
        KDADConfig(image_size=100)
    with pytest.raises(ConfigError, match="unknown KDAD setting"):
        KDADConfig.from_overrides({"lamda": 0.1})
    assert KDADConfig().steps_for(200) == 4 and KDADConfig(steps_per_epoch=7).steps_for(200) == 7


def test_kdad_runs_on_a_split_with_masks_and_localizes(tmp_path):
    from osad_lib.data.mvtec import read_mvtec_layout
    from osad_lib.data.protocols import make_split
    from osad_lib.data.synthetic import synthetic_root
    from osad_lib.experiments import baselines
    from osad_lib.profiles import configure

    cfg = configure("01_devnet", profile="smoke", output_dir=str(tmp_path))
    root = synthetic_root("weave")
    split = make_split(read_mvtec_layout(root), "general", 5, 0)
    config = baselines.kdad_config(cfg, image_size=SIZE, epochs=1, steps_per_epoch=2, batch_size=4)
    assert config.weights == "random"
    artifact = tmp_path / "kdad.npz"
    metrics = baselines.RUNNERS["kdad"](cfg, split, root, config, max_test_images=16, artifact=artifact)
    assert set(metrics) == {"auroc", "aupr", "pixel_auroc"} and all(0 <= v <= 1 for v in metrics.values())
    with np.load(artifact) as data:
        assert len(data["scores"]) == 16 and np.isfinite(data["pixel_auroc"][data["labels"] == 1]).all()


@pytest.mark.parametrize("profile", ["smoke", "demo", "paper"])
def test_kdad_rows_in_the_devnet_and_dra_grids(profile, tmp_path):
    from osad_lib.experiments import devnet, dra
    from osad_lib.profiles import configure

    for notebook, module in (("01_devnet", devnet), ("02_dra", dra)):
        cfg = configure(notebook, profile=profile, output_dir=str(tmp_path), check_data=False)
        items = [i for i in module.grid(cfg) if i.experiment.method == "kdad"]
        if profile != "paper":  # smoke and demo name their methods; VGG-16 weights are not offline
            assert not items
            continue
        assert items and all(i.experiment.n_shots == 0 and i.experiment.backbone == "vgg16" for i in items)
        keys = [(i.experiment.dataset, i.experiment.subset, i.experiment.setting, i.experiment.seed) for i in items]
        assert len(keys) == len(set(keys))  # once per test set: not per shot count
        assert {i.experiment.table for i in items} == ({"table2", "table3"} if module is devnet else {"table1", "table2"})
        assert all(i.experiment.extra_key["split_shots"] == 10 for i in items)
        assert all(i.experiment.deviations == "" for i in items if i.experiment.dataset != "synthetic")


def test_measured_kdad_rows_join_the_devnet_and_dra_paper_tables(tmp_path):
    """KDAD rows of the paper profile (stored by hand here) meet the papers' KDAD numbers."""
    from osad_lib.experiments import devnet, dra
    from osad_lib.profiles import configure

    for notebook, module in (("01_devnet", devnet), ("02_dra", dra)):
        cfg = configure(notebook, profile="paper", output_dir=str(tmp_path), seeds="0,1", check_data=False)
        for item in module.grid(cfg):
            e = item.experiment
            if e.method == "kdad" and e.dataset == "elpv":
                cfg.store.run_experiment(e, lambda seed=e.seed: {"auroc": 0.70 + 0.02 * seed})
        if module is devnet:
            table = devnet.paper_table(cfg, "table2").set_index(["dataset", "method"]).loc[("elpv", "kdad")]
            hard = devnet.paper_table(cfg, "table3")
        else:
            table = dra.comparison(cfg, "table1").set_index(["dataset", "method"]).loc[("elpv", "kdad")]
            hard = dra.comparison(cfg, "table2")
        assert table["n_seeds"] == 2 and table["measured_mean"] == pytest.approx(0.71)
        assert table["paper_mean"] == pytest.approx(0.744) and table["n_shots"] == 0
        mean = hard[(hard["method"] == "kdad") & (hard["subset"] == "mean")].iloc[0]
        assert mean["paper_mean"] == pytest.approx(0.737) and mean["measured_mean"] == pytest.approx(0.71)
