"""AnoOnly: the four SSAD losses, where BN goes per head, the shared loop, and the MVTec column.

Losses are checked on hand-computed inputs; heads by inspecting their modules; the CI test
runs the MVTec column of Table 1 on the ADBench embeddings embedded in the package.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from osad_lib.data.tabular import adbench_split
from osad_lib.methods.anoonly.losses import bn_cluster_loss, deepsad_loss, devnet_loss, feawad_loss, prenet_loss
from osad_lib.methods.anoonly import (
    DeepSADNet, DevNetNet, FEAWADNet, Norm, PReNetNet, SSADConfig, Stage, default_norm, run_stage, train_head,
)
from osad_lib.validate import ConfigError

t = torch.tensor


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These MLPs train fastest single-threaded (the previous thread counts are restored)."""
    from osad_lib.experiments.anoonly import limited_threads

    with limited_threads(1):
        yield


# ------------------------------------------------------------------ losses (hand-computed)
def test_deepsad_loss_standard_weighted_and_anomaly_only():
    dist, y = t([1.0, 4.0, 0.5]), t([0, 1, 0])
    assert deepsad_loss(dist, y).item() == pytest.approx((1 + 1 / 4 + 0.5) / 3, abs=1e-6)
    assert deepsad_loss(dist, y, normal_weight=0.5).item() == pytest.approx((0.5 + 0.25 + 0.25) / 3, abs=1e-6)
    # AnoOnly: the mean of η/(d + eps) over the labelled anomalies only
    assert deepsad_loss(dist, y, anomaly_only=True).item() == pytest.approx(0.25, abs=1e-6)
    assert deepsad_loss(t([2.0, 8.0]), t([1, 1]), anomaly_only=True).item() == pytest.approx((0.5 + 0.125) / 2, abs=1e-6)


def test_deepsad_anomaly_only_batch_without_anomalies_has_zero_gradient():
    dist = t([1.0, 2.0], requires_grad=True)
    loss = deepsad_loss(dist, t([0, 0]), anomaly_only=True)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(dist.grad, torch.zeros(2))


def test_devnet_loss_paper_and_code_forms():
    s, y = t([1.0, -2.0, 3.0, 7.0]), t([0, 0, 1, 1])
    # paper Eq. 18/19 (the default): hinge max(0, 5 − s), kept under AnoOnly
    assert devnet_loss(s, y).item() == pytest.approx((1 + 2 + 2 + 0) / 4)
    assert devnet_loss(s, y, anomaly_only=True).item() == pytest.approx(2 / 4)
    # code: |s| for normals, |5 − s| for anomalies (no hinge)
    assert devnet_loss(s, y, form="code").item() == pytest.approx((1 + 2 + 2 + 2) / 4)
    # code AnoOnly: y·(5 − s), linear (negative beyond the margin), normals 0, mean over the whole batch
    assert devnet_loss(s, y, anomaly_only=True, form="code").item() == pytest.approx((2 - 2) / 4)
    assert devnet_loss(s, y, normal_weight=0.0).item() == pytest.approx(2 / 4)


def test_feawad_loss_with_and_without_anomaly_only():
    s, r, y = t([1.0, 3.0, 6.0]), t([0.5, 2.0, 7.0]), t([0, 1, 1])
    # normal |s| + ‖r‖ = 1.5; anomalies max(0, 5 − s) + max(0, 5 − ‖r‖) = 2 + 3 and 0 + 0
    assert feawad_loss(s, r, y).item() == pytest.approx((1.5 + 5 + 0) / 3)
    assert feawad_loss(s, r, y, anomaly_only=True).item() == pytest.approx(5 / 3)
    neg = t([1.0, 3.0, -6.0])
    assert feawad_loss(neg, r, y).item() == pytest.approx((1.5 + 5 + 0) / 3)  # Eq. 20 (default): max(0, 5 − |s|)
    assert feawad_loss(neg, r, y, form="code").item() == pytest.approx((1.5 + 5 + 11) / 3)  # code: max(0, 5 − s)


def test_prenet_loss_drops_normal_pairs_only_from_the_loss():
    scores, targets = t([7.0, 4.5, 1.0, -1.0]), t([8.0, 4.0, 0.0, 0.0])
    assert prenet_loss(scores, targets).item() == pytest.approx((1 + 0.5 + 1 + 1) / 4)
    assert prenet_loss(scores, targets, anomaly_only=True).item() == pytest.approx((1 + 0.5) / 2)
    assert prenet_loss(scores, targets, normal_weight=0.5).item() == pytest.approx((1 + 0.5 + 0.5 + 0.5) / 4)


def test_bn_cluster_loss_eq5():
    h = t([[1.0, 2.0], [3.0, 2.0]])
    # ‖mean‖ = ‖(2, 2)‖; Σh²/(b−1) − 1 = (10, 8) − 1 = (9, 7)
    assert bn_cluster_loss(h).item() == pytest.approx(np.sqrt(8) + np.sqrt(130), rel=1e-6)
    # batch-normalised features (mean 0, Σh²/(b−1) = 1) have zero L_BN
    z = torch.randn(64, 5)
    z = (z - z.mean(0)) / z.std(0)
    assert bn_cluster_loss(z).item() == pytest.approx(0.0, abs=1e-5)


# ------------------------------------------------------------------ where BN goes
def _bns(model: nn.Module) -> list[nn.BatchNorm1d]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]


def test_devnet_bn_only_with_anomaly_only_before_the_scoring_layer():
    base = DevNetNet(16, default_norm(SSADConfig("devnet")))
    ao = DevNetNet(16, default_norm(SSADConfig("devnet", anomaly_only=True)))
    assert _bns(base) == []
    (bn,) = _bns(ao)
    assert ao.norm.layer is bn and bn.num_features == ao.fc.out_features == ao.score_layer.in_features == 20
    assert bn.affine and bn.eps == 1e-3 and bn.momentum == pytest.approx(0.01)  # Keras BN numbers
    assert [type(m) for m in ao.children()] == [nn.Linear, Norm, nn.Linear]


def test_feawad_bn_before_the_scoring_layer_and_base_bn_option():
    ao = FEAWADNet(16, default_norm(SSADConfig("feawad", anomaly_only=True)))
    (bn,) = _bns(ao)
    assert ao.norm.layer is bn and bn.num_features == ao.score_layer.in_features == 33
    assert _bns(FEAWADNet(16, default_norm(SSADConfig("feawad")))) == []          # paper: base without BN
    assert len(_bns(FEAWADNet(16, default_norm(SSADConfig("feawad", base_bn=True))))) == 1  # code


def test_prenet_bn_after_the_shared_feature_layer():
    ao = PReNetNet(16, default_norm(SSADConfig("prenet", anomaly_only=True)))
    linear, relu, norm = ao.feature
    assert isinstance(linear, nn.Linear) and isinstance(relu, nn.ReLU) and isinstance(norm.layer, nn.BatchNorm1d)
    assert ao.regressor.in_features == 2 * norm.layer.num_features
    assert _bns(PReNetNet(16, default_norm(SSADConfig("prenet")))) == []


def test_deepsad_keeps_its_bn_in_every_hidden_block():
    """Affine BN by default (the paper's Table 2 'BN' row is Deep SAD itself); the code's BN has no
    affine parameters (BN*)."""
    for anomaly_only in (False, True):
        net = DeepSADNet(16, default_norm(SSADConfig("deepsad", anomaly_only=anomaly_only)))
        bns = _bns(net)
        assert [b.num_features for b in bns] == [100, 20]
        assert all(b.affine and b.eps == 1e-4 for b in bns)
    assert all(not b.affine for b in _bns(DeepSADNet(16, "bn_no_affine")))


@pytest.mark.parametrize("norm,layer", [("none", nn.Identity), ("ln", nn.LayerNorm), ("bn", nn.BatchNorm1d),
                                        ("bn_no_affine", nn.BatchNorm1d), ("bn_dagger", nn.Identity)])
def test_norm_variants_of_table2(norm, layer):
    n = Norm(norm, 4)
    assert isinstance(n.layer, layer)
    x = torch.randn(8, 4)
    n.train()
    n(x)
    assert (len(n.inputs) == 1 and n.inputs[0] is x) == (norm == "bn_dagger")


def test_bn_with_a_batch_of_one_outputs_its_shift():
    n = Norm("bn", 3)
    n.train()
    out = n(torch.randn(1, 3))
    assert torch.equal(out, n.layer.bias.detach().expand(1, 3))
    assert torch.equal(Norm("bn_no_affine", 3).train()(torch.randn(1, 3)), torch.zeros(1, 3))


# ------------------------------------------------------------------ training loop
def _toy_split(seed: int = 0, d: int = 12):
    rng = np.random.default_rng(seed)
    X = rng.random((300, d)).astype(np.float32)
    y = np.zeros(300, dtype=np.int64)
    y[:60] = 1
    X[:60, :3] += 1.0  # anomalies differ in three features
    return adbench_split(X, y, seed=seed)


TINY = {"deepsad": dict(epochs=3), "devnet": dict(epochs=3, steps_per_epoch=5),
        "feawad": dict(epochs=2, steps_per_epoch=2, batch_size=64, pretrain_epochs=2),
        "prenet": dict(epochs=3, steps_per_epoch=4, batch_size=64, n_score_refs=5)}


@pytest.mark.parametrize("head", sorted(TINY))
@pytest.mark.parametrize("anomaly_only", [False, True])
def test_each_head_trains_scores_and_is_deterministic(head, anomaly_only):
    split = _toy_split()
    config = SSADConfig(head, anomaly_only=anomaly_only, **TINY[head])
    a, b = train_head(split, config, seed=3), train_head(split, config, seed=3)
    scores = a.score(split.X_test)
    assert scores.shape == (len(split.y_test),) and np.isfinite(scores).all()
    assert np.array_equal(scores, b.score(split.X_test))
    assert len(a.history["train"]) == config.epochs
    assert a.hidden(split.X_test).shape[0] == len(split.y_test)


def test_base_and_anoonly_start_from_the_same_weights():
    split = _toy_split()
    base = train_head(split, SSADConfig("devnet", epochs=0), seed=1)
    ao = train_head(split, SSADConfig("devnet", anomaly_only=True, epochs=0), seed=1)
    assert torch.equal(base.model.fc.weight, ao.model.fc.weight)
    assert torch.equal(base.model.score_layer.weight, ao.model.score_layer.weight)


def test_best_training_loss_epoch_is_restored():
    """Keras' ModelCheckpoint(monitor="loss"): the weights after the epoch with the lowest mean loss."""
    model = nn.Linear(1, 1, bias=False)
    nn.init.constant_(model.weight, 1.0)
    offsets = iter([3.0, 1.0, 2.0])  # epoch 2 has the lowest mean loss
    state = {"offset": 0.0}

    def batches(rng):
        state["offset"] = next(offsets)
        return iter(range(2))

    stage = Stage("toy", model, torch.optim.SGD(model.parameters(), lr=0.1), 3, batches,
                  lambda _: model.weight.sum() + state["offset"], select_best_loss=True)
    history = run_stage(stage, np.random.default_rng(0))
    assert int(np.argmin(history)) == 1
    assert model.weight.item() == pytest.approx(1.0 - 0.1 * 2 * 2)  # two epochs of two SGD steps


def test_bn_dagger_adds_the_cluster_loss():
    split = _toy_split()
    plain = train_head(split, SSADConfig("deepsad", anomaly_only=True, norm="none", epochs=2), seed=0)
    dagger = train_head(split, SSADConfig("deepsad", anomaly_only=True, norm="bn_dagger", epochs=2), seed=0)
    assert dagger.history["train"][0] > plain.history["train"][0]  # L_BN ≥ 0 added to the same first batches


def test_fixed_batches_repeat_the_same_batch():
    from osad_lib.methods.anoonly.training import _half_batches

    split = _toy_split()
    cfg = SSADConfig("feawad", fixed_batches=True).resolved()
    first, second = list(_half_batches(split, cfg, 2, np.random.default_rng(0)))
    assert np.array_equal(first, second)
    cfg = dataclasses.replace(cfg, fixed_batches=False)
    first, second = list(_half_batches(split, cfg, 2, np.random.default_rng(0)))
    assert not np.array_equal(first, second)
    assert set(first[:256]) <= set(split.unlabeled) and set(first[256:]) <= set(split.labeled)


def test_prenet_anomaly_pairs_distinct_as_the_paper_or_repeating_as_the_code():
    from osad_lib.methods.anoonly import prenet_pairs

    split = _toy_split()
    paper_cfg = SSADConfig("prenet", batch_size=64, steps_per_epoch=30).resolved()
    left, right = map(np.concatenate, zip(*prenet_pairs(split, paper_cfg, np.random.default_rng(0))))
    aa = np.concatenate([np.arange(i * 64, i * 64 + 16) for i in range(30)])  # first quarter of each batch
    assert set(left[aa]) | set(right[aa]) <= set(split.labeled)
    assert (left[aa] != right[aa]).all()
    code_cfg = dataclasses.replace(paper_cfg, distinct_anomaly_pairs=False)
    left, right = map(np.concatenate, zip(*prenet_pairs(split, code_cfg, np.random.default_rng(0))))
    assert (left[aa] == right[aa]).any()  # 16 labelled anomalies, 480 pairs: repeats are certain


def test_prenet_cosine_schedule_spans_the_run(monkeypatch):
    seen = {}
    original = torch.optim.lr_scheduler.CosineAnnealingLR

    def spy(optimizer, T_max, eta_min):
        seen["T_max"] = T_max
        return original(optimizer, T_max=T_max, eta_min=eta_min)

    monkeypatch.setattr(torch.optim.lr_scheduler, "CosineAnnealingLR", spy)
    train_head(_toy_split(), SSADConfig("prenet", epochs=3, steps_per_epoch=1, batch_size=16, n_score_refs=2), seed=0)
    assert seen["T_max"] == 3
    assert SSADConfig("prenet").resolved().epochs == 30  # paper B.4 (the code runs 50)


def test_prenet_scores_with_fresh_references_per_row_or_shared_ones():
    split = _toy_split()
    opts = dict(epochs=1, steps_per_epoch=2, batch_size=32, n_score_refs=3)
    twice = np.repeat(split.X_test[:1], 2, axis=0)  # the same row twice
    per_row = train_head(split, SSADConfig("prenet", **opts), seed=0)
    a, b = per_row.score(twice)
    assert abs(a - b) > 1e-4  # each row draws its own references
    assert np.array_equal(per_row.score(split.X_test), per_row.score(split.X_test))  # yet repeatable
    shared = train_head(split, SSADConfig("prenet", score_refs="shared", **opts), seed=0)
    a, b = shared.score(twice)
    assert a == pytest.approx(b, abs=1e-6)


def test_deepsad_center_pretraining_and_learning_rate_options():
    from osad_lib.methods.anoonly import deepsad_center

    split = _toy_split()
    X = torch.as_tensor(split.X_train)
    torch.manual_seed(0)
    net = DeepSADNet(X.shape[1], "bn")
    eval_c, batch_c = deepsad_center(net, X, "eval"), deepsad_center(net, X, "batch")
    assert not torch.allclose(eval_c, batch_c)
    assert float(net.blocks[0][1].layer.running_mean.abs().sum()) == 0  # the batch centre leaves BN's statistics alone
    assert (eval_c.abs() >= 0.1).all() and (batch_c.abs() >= 0.1).all()
    pre = train_head(split, SSADConfig("deepsad", epochs=1, pretrain_epochs=2), seed=0)
    assert len(pre.history["pretrain"]) == 2 and pre.history["pretrain"][1] < pre.history["pretrain"][0]
    assert SSADConfig("deepsad").resolved().lr == 1e-3  # paper B.1; the code's effective rate is 1e-4


def test_config_errors_are_one_line():
    with pytest.raises(ConfigError, match="head"):
        SSADConfig("devnett")
    with pytest.raises(ConfigError, match="norm"):
        SSADConfig("deepsad", norm="batchnorm")
    with pytest.raises(ConfigError, match="normal_weight"):
        SSADConfig("deepsad", normal_weight=-1)


# ------------------------------------------------------------------ the MVTec column on real embeddings
@pytest.mark.slow
def test_mvtec_column_devnet_gains_from_anoonly_on_clean_data_not_on_contaminated(tmp_path):
    """Table 1, MVTec column, DevNet ± AnoOnly on the paper's clean organisation (§3.1) and on the
    contaminated one (§4.6's label noise, the official code's default), the demo profile's fifth of
    the schedule (10 epochs), seed 0, all 15 embedded files, the paper's hinge loss (~25 s of CPU).

    What holds at this schedule (seeds 0–2, measured while writing this test): on clean data
    AnoOnly raises the group-mean AUROC by +1.6 to +2.2 points (paper: +6.4); with the unlabelled
    training anomalies kept as normals the gain shrinks to about zero (−0.3 for seed 0). At the
    paper's 50 epochs the hinge-loss gain fades on clean data too (notebook 04 reports it, beside
    the code's linear anomaly-only loss, whose gain stays positive) — so this pins the
    organisation's effect at a CI budget, not the paper's number.
    """
    from osad_lib.data.tabular import GROUPS
    from osad_lib.experiments import anoonly as ex
    from osad_lib.profiles import configure

    cfg = configure("04_anoonly", "demo", output_dir=str(tmp_path), seeds="0")
    ac = ex.anoonly_config(cfg)  # the embedded MVTec AD files
    assert ac.schedule == 0.2
    gain = {}
    for organisation in ("clean", "contaminated"):
        auroc = {False: [], True: []}
        for stem in GROUPS["mvtecad"].stems:
            for anomaly_only in (False, True):
                item = ex.make_item(cfg, stem, "devnet", anomaly_only, seed=0, organisation=organisation, ac=ac)
                auroc[anomaly_only].append(ex.run_one(cfg, item)["auroc"])
        base, ao = np.mean(auroc[False]), np.mean(auroc[True])
        assert 0.65 < base < 0.9 and 0.65 < ao < 0.9
        gain[organisation] = ao - base
    assert gain["clean"] > 0.01, gain
    assert gain["clean"] - gain["contaminated"] > 0.01, gain


# ------------------------------------------------------------------ grid and tables
def test_paper_grid_covers_the_embedded_files_and_the_users(monkeypatch, tmp_path):
    from osad_lib.data.tabular import ADBENCH_ENV, GROUPS
    from osad_lib.experiments import anoonly as ex
    from osad_lib.profiles import configure

    monkeypatch.delenv(ADBENCH_ENV, raising=False)
    cfg = configure("04_anoonly", "paper", data_root=str(tmp_path), output_dir=str(tmp_path))
    items = [i for i in ex.grid(cfg) if i.experiment.table == "table1"]
    n_mvtec = len(GROUPS["mvtecad"].stems)  # embedded; small files: clean × both splits + contaminated
    assert len(items) == 3 * n_mvtec * len(cfg.seeds) * 4 * 2
    own = tmp_path / "adbench" / "CV_by_ResNet18"  # a user's ADBench folder under the data root
    own.mkdir(parents=True)
    np.savez(own / "CIFAR10_3.npz", X=np.zeros((5000, 4), np.float32), y=np.r_[np.ones(250), np.zeros(4750)])
    items = [i for i in ex.grid(cfg) if i.experiment.table == "table1"]
    assert len(items) == (3 * n_mvtec + 2) * len(cfg.seeds) * 4 * 2  # a 5,000-row file is not resampled
    e = items[0].experiment
    assert (e.paper, e.table, e.setting, e.variant) == ("anoonly", "table1", "semi_supervised", "")
    assert {i.experiment.setting for i in items} == {"semi_supervised", "semi_supervised_no_leak", "label_noise"}
    assert len({i.experiment.experiment_id for i in items}) == len(items)
    # the two axes are typed in every row's key, and the setting is their lookup, never parsed
    for i in items:
        extra = i.experiment.extra_key
        assert ex.SETTINGS[(extra["organisation"], extra["split"])] == i.experiment.setting
        assert extra["anomaly_only"] == (i.experiment.variant == "anoonly")
    # the paper's own setting carries no deviation at the paper schedule (FEAWAD: only its loss, whose
    # written form defines no detector); the other settings name theirs
    paper_rows = [i.experiment for i in items if i.experiment.setting == "semi_supervised"]
    assert all(e.deviations == "" for e in paper_rows if e.method != "feawad")
    assert all(e.deviations.startswith("loss_form=code (paper: paper") and ";" not in e.deviations
               for e in paper_rows if e.method == "feawad")
    assert all("organisation=contaminated" in i.experiment.deviations
               for i in items if i.experiment.setting == "label_noise")
    assert all("split=no_leak" in i.experiment.deviations
               for i in items if i.experiment.setting == "semi_supervised_no_leak")


def test_code_behaviours_are_options_named_in_deviations(tmp_path):
    from osad_lib.experiments import anoonly as ex
    from osad_lib.profiles import configure

    cfg = configure("04_anoonly", "smoke", output_dir=str(tmp_path))
    code = {h: ex.make_item(cfg, "MVTec-AD_bottle", h, True, 0, table="fidelity", label="code", options=o)
            for h, o in ex.FACTORS["code"].items()}
    assert "lr=0.0001 (paper: 0.001, official code)" in code["deepsad"].experiment.deviations
    assert "norm=bn_no_affine (paper: bn, official code)" in code["deepsad"].experiment.deviations
    assert "loss_form=code (paper: paper, official code)" in code["devnet"].experiment.deviations
    assert "distinct_anomaly_pairs=False (paper: True, official code)" in code["prenet"].experiment.deviations
    assert "schedule x0.1 of the paper's epochs" in code["devnet"].experiment.deviations
    # FEAWAD's default loss departs from the paper's text (Eq. 20/21 leave the anomaly's sign free): always named
    default = ex.make_item(cfg, "MVTec-AD_bottle", "feawad", True, 0).experiment.deviations
    assert "loss_form=code (paper: paper, our default: Eq. 20/21" in default
    literal = ex.make_item(cfg, "MVTec-AD_bottle", "feawad", True, 0, options={"loss_form": "paper"}).experiment
    assert "loss_form" not in literal.deviations
    assert ex.ssad_config(code["deepsad"].experiment).resolved().lr == 1e-4


def test_group_means_join_the_paper_tables_and_mark_partial_groups():
    from osad_lib.experiments import anoonly as ex
    from osad_lib.results import Experiment, validate_rows

    rows = []
    for stem, value in (("MVTec-AD_bottle", 0.8), ("MVTec-AD_cable", 0.9)):
        for seed in (0, 1):
            for setting, shift in (("semi_supervised", 0.0), ("semi_supervised_no_leak", -0.1), ("label_noise", -0.5)):
                e = Experiment(notebook="04_anoonly", paper="anoonly", table="table1", dataset="mvtecad", subset=stem,
                               setting=setting, method="devnet", variant="anoonly", backbone="resnet18", seed=seed,
                               profile="demo")
                rows += e.rows({"auroc": value + shift + 0.01 * seed, "aupr": 0.5, "aupr_normal": 0.6}, 1.0)
    table = ex.comparison(validate_rows(rows), "anoonly_table1")
    (row,) = table.to_dict("records")
    assert row["paper"] == pytest.approx(0.910)  # Table 1, MVTec, DevNet + AnoOnly
    assert row["measured_paper_split"] == pytest.approx(0.855)  # the contaminated rows (0.355) never join
    assert row["measured_no_leak_split"] == pytest.approx(0.755)
    assert row["files"] == "2/15" and row["n_seeds"] == 2
    means = ex.group_means(ex.measured_rows(validate_rows(rows)))
    assert set(means["table"]) == {"table1", "table3", "table4"}
    assert means["deviations"].str.contains("mean over 2/15 subsets").all() and (means["n_files"] == 2).all()


def test_one_file_per_group_gives_empty_tables_with_their_columns():
    """One file is no group mean (at least two, osad_lib.paper.means): the comparison and gains
    tables are empty but keep their columns, so the notebook's next cells still run (the paper
    dry run's CI size measures one file per group; 04_anoonly failed there on a frame without columns)."""
    from osad_lib.experiments import anoonly as ex
    from osad_lib.results import Experiment, validate_rows

    rows = []
    for variant in ("", "anoonly"):
        e = Experiment(notebook="04_anoonly", paper="anoonly", table="table1", dataset="mvtecad",
                       subset="MVTec-AD_bottle", setting="semi_supervised", method="devnet", variant=variant,
                       backbone="resnet18", seed=0, profile="demo")
        rows += e.rows({"auroc": 0.8, "aupr": 0.5, "aupr_normal": 0.6}, 1.0)
    table = ex.comparison(validate_rows(rows), "anoonly_table1")
    assert table.empty and list(table.columns) == list(ex.COMPARISON_COLUMNS)
    gains = ex.gains(table)
    assert gains.empty and list(gains.columns) == list(ex.GAIN_COLUMNS)
    assert ex.display_table(table).empty and ex.paired_gains(validate_rows(rows)).empty


def test_ablation_grid_covers_table2_and_the_figures(tmp_path):
    from osad_lib.experiments import anoonly as ex
    from osad_lib.profiles import configure

    cfg = configure("04_anoonly", "smoke", output_dir=str(tmp_path))
    t2 = ex.ablation_grid(cfg, "table2", stems=["MVTec-AD_bottle"])
    assert sorted({i.experiment.variant for i in t2}) == sorted(
        ["norm=none", "anoonly,norm=none", "norm=ln", "anoonly,norm=ln", "norm=bn_no_affine",
         "anoonly,norm=bn_no_affine", "", "anoonly", "norm=bn_dagger", "anoonly,norm=bn_dagger"])
    assert all(i.experiment.method == "deepsad" and i.experiment.table == "table2" for i in t2)
    fig7 = ex.ablation_grid(cfg, "fig7", stems=["MVTec-AD_bottle"])
    weights = [ex.ssad_config(i.experiment).normal_weight for i in fig7 if not ex.ssad_config(i.experiment).anomaly_only]
    assert weights == list(ex.ABLATION_VALUES["fig7"])
    assert {i.experiment.setting for i in t2 + fig7} == {"semi_supervised"}  # §4.5: clean organisation
    fig8 = ex.ablation_grid(cfg, "fig8", stems=["MVTec-AD_bottle"], heads=["devnet"])
    assert sorted(i.experiment.setting for i in fig8) == ["label_noise", "label_noise", "semi_supervised",
                                                           "semi_supervised"]
    fig9 = ex.ablation_grid(cfg, "fig9", stems=["MVTec-AD_bottle"])
    assert [ex.ssad_config(i.experiment).batch_size for i in fig9] == list(ex.ABLATION_VALUES["fig9"])
    with pytest.raises(ConfigError, match="ablation"):
        ex.ablation_grid(cfg, "fig11")


def test_fidelity_bands_pass_fail_gain_direction_and_verdict():
    from osad_lib.experiments import anoonly as ex

    table = pd.DataFrame([
        {"dataset": "mvtecad", "method": "devnet", "variant": "", "paper": 0.846, "measured_paper_split": 0.80},
        {"dataset": "mvtecad", "method": "devnet", "variant": "anoonly", "paper": 0.910, "measured_paper_split": 0.89},
        {"dataset": "cifar10", "method": "devnet", "variant": "", "paper": 0.9, "measured_paper_split": 0.1},
    ]).assign(files="15/15", n_seeds=1)
    bands = ex.fidelity_bands({"anoonly_table1": table,
                               "anoonly_table3": table.assign(measured_paper_split=table["paper"] + 0.039)})
    t1 = bands[bands["table"] == "anoonly_table1"].set_index(["check", "variant"])
    assert not t1.loc[("level", "base"), "pass"]          # 84.6 vs 80.0: 4.6 points > 3
    assert t1.loc[("level", "anoonly"), "pass"]           # 91.0 vs 89.0: 2 points
    assert t1.loc[("gain direction", "anoonly − base"), "pass"]
    assert t1.loc[("gain direction", "anoonly − base"), "measured"] == pytest.approx(9.0)
    assert bands[bands["table"] == "anoonly_table3"]["pass"].all()  # 3.9 points within ±4
    assert set(bands["method"]) == {"devnet"}             # other groups are left out
    paired = pd.DataFrame([{"dataset": "mvtecad", "method": "devnet", "gain_mean": 0.03, "gain_std": 0.01,
                            "n_seeds": 5, "improved": 5}])
    text = ex.verdict(bands, paired, schedule=1.0)
    assert "Table 1 (AUROC), 15/15 files: 1/2 rows within ±3 points" in text and "devnet base -4.6" in text
    assert "Table 3 (AUCPR), 15/15 files: 2/2 rows" in text and "gain with the paper's sign: devnet" in text
    assert "devnet +3.0 ± 1.0 (5/5)" in text and "Shortened" not in text
    assert "Shortened schedule (x0.2" in ex.verdict(bands, paired.iloc[:0], schedule=0.2)


# ------------------------------------------------------------------ beyond the paper: image DevNet ± AnoOnly
IMAGE_TINY = {"backbone": "resnet18", "weights": "random", "image_size": 64, "n_scales": 1, "amp": False}


def test_image_deviation_loss_anomaly_only_keeps_the_anomaly_term_only():
    from osad_lib.losses.deviation import deviation_loss
    from osad_lib.methods.anoonly.losses import image_deviation_loss_anomaly_only

    s = torch.tensor([0.5, -1.0, 7.0, 2.0], requires_grad=True)
    y = torch.tensor([0, 0, 1, 1])
    torch.manual_seed(3)
    ao = image_deviation_loss_anomaly_only(s, y)
    torch.manual_seed(3)  # same reference draw: the anomaly term of the deviation loss, batch mean
    full_anomalies = deviation_loss(s[2:], y[2:])
    torch.testing.assert_close(ao, full_anomalies * 2 / 4)
    ao.backward()
    assert s.grad[:2].abs().sum() == 0 and s.grad[3] < 0  # normals get no gradient; 2 < margin is pushed up
    assert image_deviation_loss_anomaly_only(torch.tensor([1.0, 2.0]), torch.tensor([0, 0])) == 0


def test_image_devnet_anomaly_only_adds_bn_before_the_scoring_layer():
    from osad_lib.methods.devnet.model import DevNet, DevNetConfig

    torch.manual_seed(0)
    base, ao = DevNet(DevNetConfig(**IMAGE_TINY)), DevNet(DevNetConfig(anomaly_only=True, **IMAGE_TINY))
    assert isinstance(base.score_norm, nn.Identity)
    assert isinstance(ao.score_norm, nn.BatchNorm2d) and ao.score_norm.affine
    seen = []
    ao.score_norm.register_forward_hook(lambda m, i, o: seen.append(o))
    ao.head.conv.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    x, y = torch.rand(4, 3, 64, 64), torch.tensor([0, 0, 1, 1])
    loss = ao.train().loss(x, y)
    assert seen[1] is seen[0]  # the scoring 1×1 conv reads the BN output
    loss.backward()
    assert ao.score_norm.weight.grad is not None
    with pytest.raises(ConfigError, match="anomaly_only"):
        DevNetConfig(anomaly_only=True, criterion="focal")
    with pytest.raises(ConfigError, match="anomaly_only"):
        DevNetConfig(anomaly_only=True, variant="rep")


def test_image_grid_pairs_devnet_with_and_without_anoonly(tmp_path):
    from osad_lib.experiments import anoonly as ex
    from osad_lib.profiles import configure

    cfg = configure("04_anoonly", "demo", output_dir=str(tmp_path))
    items = ex.image_grid(cfg)
    runs = {(i.experiment.setting, i.experiment.subset) for i in items}
    assert runs == {("general", ""), ("hard", "mono"), ("hard", "poly")}
    assert len(items) == len(runs) * len(cfg.seeds) * 2
    assert all(i.experiment.table == ex.IMAGE_TABLE and i.experiment.method == "devnet"
               and i.experiment.dataset == "elpv" and i.experiment.n_shots == 10 for i in items)
    assert all("beyond the paper" in i.experiment.deviations for i in items)
    by_variant = {v: [i for i in items if i.experiment.variant == v] for v in ("", "anoonly")}
    assert len(by_variant[""]) == len(by_variant["anoonly"])
    assert all("anomaly_only=True" in i.experiment.deviations for i in by_variant["anoonly"])
    assert ex.image_devnet_config(cfg, True) == ex.image_devnet_config(cfg, False).with_(anomaly_only=True)
    assert {i.experiment.experiment_id for i in ex.grid(cfg)} >= {i.experiment.experiment_id for i in items}


def test_image_pairs_are_per_seed_differences():
    from osad_lib.experiments import anoonly as ex
    from osad_lib.results import Experiment, validate_rows

    rows = []
    for seed, (without, with_) in enumerate([(0.70, 0.75), (0.80, 0.78)]):
        for variant, value in (("", without), ("anoonly", with_)):
            e = Experiment(notebook="04_anoonly", paper="anoonly", table=ex.IMAGE_TABLE, dataset="elpv", subset="mono",
                           setting="hard", n_shots=10, method="devnet", variant=variant, backbone="efficientnet_lite0",
                           seed=seed, profile="demo")
            rows += e.rows({"auroc": value, "aupr": value}, 1.0)
    pairs, summary = ex.image_pairs(validate_rows(rows))
    assert pairs["with − without"].round(3).tolist() == [0.05, -0.02]
    (s,) = summary.to_dict("records")
    assert s["mean"] == pytest.approx(0.015) and s["seeds"] == 2 and s["improved"] == 1


def test_rows_carry_their_variant_parameters_and_older_rows_read_the_same_from_their_labels(tmp_path):
    """What a row's variant stands for is stored (``params``), not parsed from its label; rows of a
    file written before that column give the same parameters through the label they carry."""
    from osad_lib.experiments import anoonly as ex
    from osad_lib.profiles import configure

    cfg = configure("04_anoonly", "demo", output_dir=str(tmp_path), seeds="0")
    stem = "MVTec-AD_bottle"
    items = [ex.make_item(cfg, stem, "deepsad", True, 0, table="fidelity", label="lr=1e-4", params={"factor": "lr=1e-4"}),
             *[i for i in ex.ablation_grid(cfg, "fig5", [stem], heads=("deepsad",)) if i.experiment.variant.endswith("=0.05")],
             *[i for i in ex.ablation_grid(cfg, "fig7", [stem]) if i.experiment.params["anomaly_only"]]]
    rows = pd.DataFrame([r for i in items for r in i.experiment.rows({"auroc": 0.5}, 1.0)])
    stored = ex.row_params(rows)
    assert stored == [{"anomaly_only": True, "factor": "lr=1e-4"}, {"anomaly_only": False, "la": 0.05},
                      {"anomaly_only": True, "la": 0.05}, {"anomaly_only": True, "normal_weight": 0.0}]
    assert [r["variant"] for r in rows.to_dict("records")] == ["anoonly,lr=1e-4", "la=0.05", "anoonly,la=0.05",
                                                               "anoonly,normal_weight=0"]
    assert ex.row_params(rows.assign(params="")) == stored  # the older file's rows
