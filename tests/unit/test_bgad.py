"""BGAD: boundaries, losses and focal weights by hand; schedule; map assembly; reporting; a short training."""

import dataclasses
import math

import pytest
import torch

from osad_lib.methods.bgad.loss import (
    CODE_FOCAL, PAPER_FOCAL, BGADLossConfig, bgad_loss, bgspp_loss, boundaries, focal_weights, ml_loss,
)
from osad_lib.experiments import runnable
from osad_lib.validate import ConfigError

NORMAL = torch.tensor([-5.0, -4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0])
ANOMALOUS = torch.tensor([-6.0, -4.5, -2.0])


def _softplus_neg(x: float) -> float:  # −log σ(x) = log(1 + e^{−x})
    return math.log1p(math.exp(-x))


# ------------------------------------------------------------------ boundaries and BG-SPP
def test_boundaries_by_hand():
    b_n, b_a = boundaries(NORMAL[torch.randperm(10)], beta=0.1, tau=0.1, normalizer=10.0)
    assert b_n.item() == pytest.approx(-0.4) and b_a.item() == pytest.approx(-0.5)  # sorted[⌊0.1·10⌋] = −4
    b_n, _ = boundaries(NORMAL, beta=0.01, tau=0.1, normalizer=10.0)
    assert b_n.item() == pytest.approx(-0.5)                                         # sorted[0] = −5
    b_n, b_a = boundaries(NORMAL, beta=0.25, tau=0.3, normalizer=5.0)
    assert b_n.item() == pytest.approx(-0.6) and b_a.item() == pytest.approx(-0.9)   # sorted[2] = −3


def test_bgspp_loss_by_hand():
    loglik = torch.cat([NORMAL, ANOMALOUS])
    is_anomaly = torch.tensor([False] * 10 + [True] * 3)
    pull, push = bgspp_loss(loglik, is_anomaly, torch.tensor(-0.4), torch.tensor(-0.5), 10.0)
    # normal ℓ/κ ≤ −0.4: −0.5, −0.4 → terms 0.1, 0 → mean 0.05
    assert pull.item() == pytest.approx(0.05)
    # anomalous ℓ/κ = −0.6, −0.45, −0.2; ≥ b_a = −0.5: −0.45, −0.2 → terms 0.05, 0.3 → mean 0.175
    assert push.item() == pytest.approx(0.175)


def test_bgspp_empty_push_selection_is_zero_and_gradient_free():
    loglik = torch.cat([NORMAL, torch.tensor([-9.0])]).requires_grad_()
    is_anomaly = torch.tensor([False] * 10 + [True])
    _, push = bgspp_loss(loglik, is_anomaly, torch.tensor(-0.4), torch.tensor(-0.5), 10.0)
    push.backward()
    assert push.item() == 0.0 and torch.all(loglik.grad == 0)


def test_semi_push_pull_gradient_directions():
    loglik = torch.cat([NORMAL, ANOMALOUS]).requires_grad_()
    is_anomaly = torch.tensor([False] * 10 + [True] * 3)
    pull, push = bgspp_loss(loglik, is_anomaly, torch.tensor(-0.4), torch.tensor(-0.5), 10.0)
    (pull + push).backward()
    g = loglik.grad
    assert g[0] < 0 and torch.all(g[2:10] == 0)        # gradient descent raises the low normal ℓ only
    assert g[11] > 0 and g[12] > 0 and g[10] == 0      # and lowers anomalous ℓ above b_a only


# ------------------------------------------------------------------ ML loss and the total
def test_ml_loss_by_hand():
    ll = torch.tensor([-1.0, 0.0, 2.0])
    expected = (_softplus_neg(-1.0) + _softplus_neg(0.0) + _softplus_neg(2.0)) / 3
    assert ml_loss(ll).item() == pytest.approx(expected, abs=1e-6)
    assert ml_loss(ll, kind="nll").item() == pytest.approx(-1 / 3, abs=1e-6)
    assert ml_loss(ll, weights=torch.tensor([2.0, 1.0, 0.0])).item() == pytest.approx(
        (2 * _softplus_neg(-1.0) + _softplus_neg(0.0)) / 3, abs=1e-6)


def test_bgad_loss_total_by_hand():
    loglik = torch.cat([NORMAL, ANOMALOUS])
    is_anomaly = torch.tensor([False] * 10 + [True] * 3)
    cfg = BGADLossConfig(beta=0.1, tau=0.1, normalizer=10.0, focal_weighting=False)
    ml = sum(_softplus_neg(v) for v in NORMAL.tolist()) / 10
    assert bgad_loss(loglik, is_anomaly, cfg, boundary_stage=False).item() == pytest.approx(ml, abs=1e-6)
    assert bgad_loss(loglik, is_anomaly, cfg, boundary_stage=True).item() == pytest.approx(ml + 0.05 + 0.175, abs=1e-6)
    lam = BGADLossConfig(beta=0.1, tau=0.1, normalizer=10.0, focal_weighting=False, bgspp_lambda=2.0)
    assert bgad_loss(loglik, is_anomaly, lam, boundary_stage=True).item() == pytest.approx(ml + 2 * 0.225, abs=1e-6)


def test_normal_only_chunks_pull_only_when_asked():
    no_anomaly = torch.zeros(10, dtype=torch.bool)
    ml = sum(_softplus_neg(v) for v in NORMAL.tolist()) / 10
    fas = BGADLossConfig(beta=0.1, focal_weighting=False)                          # BGAD-FAS: ML only
    unsup = BGADLossConfig(beta=0.1, focal_weighting=False, pull_in_normal_chunks=True)  # unsupervised BGAD
    assert bgad_loss(NORMAL, no_anomaly, fas, boundary_stage=True).item() == pytest.approx(ml, abs=1e-6)
    assert bgad_loss(NORMAL, no_anomaly, unsup, boundary_stage=True).item() == pytest.approx(ml + 0.05, abs=1e-6)
    with pytest.raises(ValueError, match="no normal position"):
        bgad_loss(ANOMALOUS, torch.ones(3, dtype=torch.bool), fas, boundary_stage=True)


# ------------------------------------------------------------------ focal weights
def test_code_focal_weights_by_hand():
    ll = torch.tensor([-1.0, -5.0, -15.0, -5.0])
    is_anomaly = torch.tensor([False, False, True, True])
    w = focal_weights(ll, is_anomaly, CODE_FOCAL).tolist()
    assert w[0] == 1.0                                                        # x = −0.1 > −0.2: easy normal
    assert w[1] == pytest.approx(11.7 * math.sqrt(1 - math.exp(-0.5)) * 0.5, rel=1e-5)   # 3.6695
    assert w[2] == 1.0                                                        # x = −1.5 ≤ −1: easy anomaly
    assert w[3] == pytest.approx(0.53 * (1 + math.exp(-0.5)) ** 2 / 0.5, rel=1e-5)       # 2.7358


def test_code_focal_weights_are_continuous_at_the_thresholds():
    just = torch.tensor([-2.0 - 1e-4, -10.0 + 1e-4])
    w = focal_weights(just, torch.tensor([False, True]), CODE_FOCAL)
    assert torch.allclose(w, torch.ones(2), atol=0.01)


def test_paper_focal_weights_by_hand():
    ll = torch.tensor([-1.0, -3.0, -10.0, -25.0])
    is_anomaly = torch.tensor([False, False, True, True])
    w = focal_weights(ll, is_anomaly, PAPER_FOCAL).tolist()
    assert w[0] == 1.0
    assert w[1] == pytest.approx(15 * (1 - math.exp(-3)) * 3, rel=1e-5)        # 42.76
    assert w[2] == pytest.approx(0.53 * (1 + math.exp(-10)) ** 2 / 10, rel=1e-5)  # 0.0530
    assert w[3] == 1.0


def test_focal_weighted_loss_by_hand():
    loglik = torch.tensor([-1.0, -5.0, -5.0])
    is_anomaly = torch.tensor([False, False, True])
    cfg = BGADLossConfig(beta=0.5, tau=0.1, normalizer=10.0, focal_weighting=True)
    w_hard = 11.7 * math.sqrt(1 - math.exp(-0.5)) * 0.5
    w_anom = 0.53 * (1 + math.exp(-0.5)) ** 2 / 0.5
    ml = (_softplus_neg(-1.0) + w_hard * _softplus_neg(-5.0)) / 2
    # normals ℓ = (−1, −5): sorted[⌊0.5·2⌋] = −1 → b_n = −0.1, b_a = −0.2
    pull = (w_hard * (-0.1 + 0.5) + 1.0 * 0.0) / 2          # both normals have ℓ/κ ≤ b_n
    push = 0.0                                               # anomalous ℓ/κ = −0.5 < b_a
    assert bgad_loss(loglik, is_anomaly, cfg, True).item() == pytest.approx(ml + pull + push, rel=1e-5)
    loglik2 = torch.tensor([-1.0, -5.0, -1.5])               # anomalous ℓ/κ = −0.15 ≥ −0.2
    w_anom2 = 0.53 * (1 + math.exp(-0.15)) ** 2 / 0.15
    assert bgad_loss(loglik2, is_anomaly, cfg, True).item() == pytest.approx(
        ml + pull + w_anom2 * 0.05, rel=1e-5)
    assert w_anom > 1


def test_loss_config_rejects_unknown_options():
    with pytest.raises(ConfigError, match="focal_constants"):
        BGADLossConfig(focal_constants="papr")
    with pytest.raises(ConfigError, match="ml_loss"):
        BGADLossConfig(ml_loss="mse")


# ------------------------------------------------------------------ learning-rate schedule
from osad_lib.methods.bgad.model import (  # noqa: E402
    BGADConfig, BGADFlows, FeatureBank, assemble_anomaly_maps, cosine_lr, fit_bgad, image_scores, warmup_lr,
)


def test_cosine_and_warmup_lr_by_hand():
    clean = BGADConfig(lr=2e-4, meta_epochs=25, warmup_epochs=2, sub_epochs=8, warmup="clean")
    at_two = 2e-7 + (2e-4 - 2e-7) * (1 + math.cos(math.pi * 2 / 25)) / 2       # 1.968614e-4
    assert cosine_lr(clean, 0) == pytest.approx(2e-4)
    assert cosine_lr(clean, 25) == pytest.approx(2e-7)
    assert cosine_lr(clean, 2) == pytest.approx(at_two)
    assert warmup_lr(clean, 0, 0, 0, 10) == pytest.approx(2e-5)                  # starts at lr / 10
    # last batch of the warm-up: p = (9 + 7·10 + 1·80) / (2·80) = 159/160
    assert warmup_lr(clean, 1, 7, 9, 10) == pytest.approx(2e-5 + 159 / 160 * (at_two - 2e-5))
    faithful = BGADConfig(lr=2e-4, meta_epochs=25, warmup_epochs=2, sub_epochs=8, warmup="faithful")
    # the code counts I = 2 batches per pass: p = (9 + 7·2 + 1·16) / (2·16) = 39/32 > 1
    lr = warmup_lr(faithful, 1, 7, 9, 10)
    assert lr == pytest.approx(2e-5 + 39 / 32 * (at_two - 2e-5))
    assert lr > faithful.lr


# ------------------------------------------------------------------ anomaly maps
def test_anomaly_map_assembly_on_a_toy_example():
    level0 = torch.tensor([[[0.0, -1.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, -2.0]]])   # [2 images, 2, 2]
    level1 = torch.tensor([[[-1.0]], [[0.0]]])                                        # [2 images, 1, 1]
    maps = assemble_anomaly_maps([level0, level1], size=2)
    e1, e2 = math.exp(-1), math.exp(-2)
    # sums: image 0 = [[1+e⁻¹, 2e⁻¹], [1+e⁻¹, 1+e⁻¹]], image 1 = [[2, 2], [2, 1+e⁻²]]; map = 2 − sum
    expected = torch.tensor([[[1 - e1, 2 - 2 * e1], [1 - e1, 1 - e1]], [[0.0, 0.0], [0.0, 1 - e2]]])
    assert torch.allclose(maps, expected, atol=1e-6)
    assert torch.allclose(image_scores(maps), torch.tensor([2 - 2 * e1, 1 - e2]), atol=1e-6)
    shifted = assemble_anomaly_maps([level0 - 7.0, level1 + 3.0], size=2)   # each level is max-normalised
    assert torch.allclose(shifted, maps, atol=1e-6)


def test_anomaly_map_upsampling_is_bilinear_with_aligned_corners():
    ll = torch.log(torch.tensor([[[1.0, 0.5], [0.25, 0.75]]]))
    maps = assemble_anomaly_maps([ll], size=3)
    prob = 1.0 - maps[0]                                          # max(sum) = 1 here
    assert prob[0, 0].item() == pytest.approx(1.0) and prob[2, 2].item() == pytest.approx(0.75)
    assert prob[1, 1].item() == pytest.approx((1 + 0.5 + 0.25 + 0.75) / 4)


# ------------------------------------------------------------------ the optional standardisation layer
def test_standardized_flow_is_still_a_density_of_the_raw_features():
    from osad_lib.seeding import seed_everything

    seed_everything(0)
    flows = BGADFlows([2], pos_embed_dim=4, coupling_blocks=2).double()
    feats = torch.stack([3 + 2 * torch.randn(4000), -1 + 0.5 * torch.randn(4000)], 1).double()
    flows.standardize([feats.T.reshape(1, 2, 4000, 1)])                  # one "image" of 4000 × 1 positions
    assert torch.allclose(flows.mean0, torch.tensor([3.0, -1.0], dtype=torch.float64), atol=0.1)
    assert torch.allclose(flows.std0, torch.tensor([2.0, 0.5], dtype=torch.float64), atol=0.05)
    gx = torch.linspace(3 - 30, 3 + 30, 301, dtype=torch.float64)
    gy = torch.linspace(-1 - 8, -1 + 8, 301, dtype=torch.float64)
    xx, yy = torch.meshgrid(gx, gy, indexing="ij")
    pts = torch.stack([xx.flatten(), yy.flatten()], 1)
    cond = torch.zeros(len(pts), 4, dtype=torch.float64)
    with torch.no_grad():
        density = (flows.log_likelihood(0, pts, cond) * 2).exp()         # ℓ is per dimension: × C = 2
    area = float(gx[1] - gx[0]) * float(gy[1] - gy[0])
    assert float(density.sum()) * area == pytest.approx(1.0, abs=0.03)


# ------------------------------------------------------------------ training on toy features
def _toy_bank(n: int, anomalous: bool, shift: float, seed: int) -> FeatureBank:
    g = torch.Generator().manual_seed(seed)
    levels = [torch.randn(n, c, s, s, generator=g) + shift for c, s in ((4, 8), (6, 4), (8, 2))]
    return FeatureBank(levels, [torch.full((n, s, s), anomalous) for s in (8, 4, 2)])


def test_fit_bgad_separates_pushed_anomalies_and_records_epochs():
    from osad_lib.seeding import seed_everything

    seed_everything(0)
    flows = BGADFlows([4, 6, 8], pos_embed_dim=8, coupling_blocks=2)
    normal, anomalous = _toy_bank(32, False, 0.0, 0), _toy_bank(4, True, 1.5, 1)
    config = BGADConfig(meta_epochs=3, sub_epochs=2, batch_size=8, chunk_size=128, lr=2e-3, warmup_epochs=1,
                        progress=False)
    calls = []
    history = fit_bgad(flows, normal, lambda: calls.append(1) or anomalous, config, "cpu", seed=0,
                       on_epoch_end=lambda e: {"marker": float(e)})
    assert [h["epoch"] for h in history] == [1, 2, 3] and [h["marker"] for h in history] == [0.0, 1.0, 2.0]
    assert len(calls) == 2 * 2                      # one anomaly bank per pass of meta epochs 1 and 2 only
    with torch.no_grad():
        codes = flows.position_codes(8, 8)
        ll_normal = flows.log_likelihood(0, normal.levels[0][:4].permute(0, 2, 3, 1).reshape(-1, 4), codes.repeat(4, 1))
        ll_anom = flows.log_likelihood(0, anomalous.levels[0].permute(0, 2, 3, 1).reshape(-1, 4), codes.repeat(4, 1))
    assert ll_normal.mean() > ll_anom.mean()


def test_set_to_none_false_moves_idle_flows_with_stale_momentum():
    """The code zeroes gradients instead of clearing them: Adam then also steps the flows of the
    levels not in the chunk (zero gradient, non-zero momentum). With one meta epoch on normals
    only, the first level's flow ends elsewhere than with gradients cleared to None."""
    from osad_lib.seeding import seed_everything

    normal = _toy_bank(16, False, 0.0, 0)
    ends = {}
    for set_to_none in (True, False):
        seed_everything(0)
        flows = BGADFlows([4, 6, 8], pos_embed_dim=8, coupling_blocks=2)
        config = BGADConfig(meta_epochs=1, sub_epochs=1, batch_size=8, chunk_size=128, lr=2e-3, warmup_epochs=0,
                            progress=False, set_to_none=set_to_none)
        fit_bgad(flows, normal, None, config, "cpu", seed=0)
        ends[set_to_none] = torch.cat([q.detach().flatten() for q in flows.flows[0].parameters()])
    assert not torch.allclose(ends[True], ends[False])


def test_normal_only_stage_uses_the_plain_ml_loss_without_focal_weights():
    loglik = torch.tensor([-1.0, -5.0, -5.0])
    is_anomaly = torch.tensor([False, False, True])
    focal = BGADLossConfig(beta=0.5, focal_weighting=True)
    plain = (_softplus_neg(-1.0) + _softplus_neg(-5.0)) / 2
    assert bgad_loss(loglik, is_anomaly, focal, boundary_stage=False).item() == pytest.approx(plain, rel=1e-6)
    assert bgad_loss(loglik, is_anomaly, focal, boundary_stage=True).item() > plain  # weighted from meta epoch 1 on


# ------------------------------------------------------------------ protocol
from osad_lib.data.mvtec import Sample  # noqa: E402
from osad_lib import paper  # noqa: E402
from osad_lib.experiments import bgad as exp  # noqa: E402


def _samples() -> list[Sample]:
    out = [Sample(f"train/good/{i:03d}.png", 0, "good", None, "train") for i in range(6)]
    out += [Sample(f"test/good/{i:03d}.png", 0, "good", None, "test") for i in range(3)]
    for cls, count in (("a", 3), ("b", 2), ("c", 1)):
        out += [Sample(f"test/{cls}/{i:03d}.png", 1, cls, f"ground_truth/{cls}/{i:03d}_mask.png", "test")
                for i in range(count)]
    return out


def test_stratified_split_takes_floor_per_class_then_the_remainder():
    split = exp.bgad_split(_samples(), 4, seed=0, dataset="toy")      # T = 3: one per class + one leftover
    classes = [c for _, c in split.train_anomaly]
    assert len(classes) == 4 and set(classes) == {"a", "b", "c"}
    tested = {p for p, label, _ in split.test if label == 1}
    assert tested.isdisjoint(p for p, _ in split.train_anomaly) and len(tested) == 2
    assert len([1 for _, label, _ in split.test if label == 0]) == 3 and len(split.train_normal) == 6
    assert exp.bgad_split(_samples(), 4, seed=0, dataset="toy") == split       # seeded
    two = exp.bgad_split(_samples(), 2, seed=1)                               # ⌊2/3⌋ = 0 per class: 2 leftovers
    assert len(two.train_anomaly) == 2


def test_unsupervised_and_restricted_splits():
    unsup = exp.bgad_split(_samples(), 0, seed=0)
    assert unsup.setting == "unsupervised" and unsup.train_anomaly == () and len(unsup.test) == 9
    unseen = exp.bgad_split(_samples(), 2, seed=0, train_classes=["a", "b"], test_classes=["c"])
    assert {c for _, c in unseen.train_anomaly} <= {"a", "b"}
    assert {c for _, label, c in unseen.test if label == 1} == {"c"}
    with pytest.raises(ConfigError, match="only 6 available"):
        exp.bgad_split(_samples(), 7, seed=0)
    with pytest.raises(ConfigError, match="no test anomalies remain"):
        exp.bgad_split(_samples(), 6, seed=0)


def test_table5_splits_follow_table7():
    samples = [Sample("train/good/0.png", 0, "good", None, "train"), Sample("test/good/0.png", 0, "good", None, "test")]
    for cls in ("color", "cut", "hole", "metal_contamination", "thread"):
        samples += [Sample(f"test/{cls}/{i}.png", 1, cls, None, "test") for i in range(3)]
    unseen = exp.table5_split(samples, "carpet", "unseen", 5, seed=0)
    assert "thread" not in {c for _, c in unseen.train_anomaly}
    assert {c for _, label, c in unseen.test if label == 1} == {"thread"}
    hard = exp.table5_split(samples, "carpet", "hard", 5, seed=0)
    assert {c for _, c in hard.train_anomaly} == {"color", "cut", "hole", "metal_contamination", "thread"}


# ------------------------------------------------------------------ reporting
def test_last_epoch_and_max_over_epochs_reports():
    history = [
        {"epoch": 1, "loss": 3.0, "auroc": 0.80, "pixel_auroc": 0.90, "pro": 0.50},
        {"epoch": 2, "loss": 2.0, "auroc": 0.70, "pixel_auroc": 0.95, "pro": 0.40},
        {"epoch": 3, "loss": 1.0, "auroc": 0.75, "pixel_auroc": 0.93, "pro": 0.45},
    ]
    metrics = exp.epoch_metrics(history)
    assert (metrics["auroc"], metrics["pixel_auroc"], metrics["pro"]) == (0.75, 0.93, 0.45)     # last epoch
    assert metrics["auroc@max_over_epochs"] == 0.80          # epoch 1
    assert metrics["pixel_auroc@max_over_epochs"] == 0.95    # epoch 2: maxima come from different epochs
    assert metrics["pro@max_over_epochs"] == 0.50
    assert metrics["auroc@epoch2"] == 0.70 and "loss@epoch3" not in metrics
    assert all(0 <= v <= 1 for v in metrics.values())
    bank = FeatureBank([torch.zeros(1, 2, 4, 4)], [torch.zeros(1, 4, 4, dtype=torch.bool)])
    details = exp.run_details(history, train_time=1.0, eval_time=0.5, device="cpu", bank=bank)
    assert details["history"][2]["loss"] == 1.0 and details["train_time_s"] == 1.0
    assert details["feature_cache_mb"] == pytest.approx((32 * 4 + 16) / 2**20)

    from osad_lib.results import Experiment, validate_rows

    rows = []
    for seed, shift in ((0, 0.0), (1, 0.02)):
        e = Experiment(notebook="03_bgad", paper="bgad", table="table3", dataset="elpv", method="bgad_fas",
                       seed=seed, profile="demo", setting="general", n_shots=1, backbone="efficientnet_lite0",
                       deviations="image_size=128 (code: 256)", report="last_epoch")
        rows += e.rows({k: v + shift if k.startswith("auroc") else v for k, v in metrics.items()}, 1.0)
    rows = validate_rows(rows)
    last = exp.report_view(rows, "last_epoch")
    best = exp.report_view(rows, "max_over_epochs")
    assert set(last["metric"]) == {"auroc", "pixel_auroc", "pro"} == set(best["metric"])
    assert last[last.metric == "auroc"]["value"].tolist() == pytest.approx([0.75, 0.77])
    assert best[best.metric == "auroc"]["value"].tolist() == pytest.approx([0.80, 0.82])
    assert (best["report"] == "max_over_epochs").all() and (last["report"] == "last_epoch").all()
    assert (best["deviations"] == "image_size=128 (code: 256)").all()  # the report is a column, not text

    comp = exp.comparison(rows, "table3")
    cell = comp[(comp.dataset == "elpv") & (comp.method == "bgad_fas") & (comp.metric == "auroc")].iloc[0]
    assert cell["paper_mean"] == pytest.approx(0.903)
    assert cell["last_mean"] == pytest.approx(0.76) and cell["max_mean"] == pytest.approx(0.81)
    assert cell["delta_last"] == pytest.approx(0.76 - 0.903) and cell["n_seeds"] == 2
    assert {"dra", "devnet"} <= set(comp[comp.dataset == "elpv"]["method"])      # DRA-paper baselines kept
    curves = exp.epoch_curves(rows)
    assert sorted(curves[(curves.metric == "auroc") & (curves.seed == 0)]["epoch"]) == [1, 2, 3]


# ------------------------------------------------------------------ fidelity: a short run on synthetic data
@pytest.mark.slow
def test_short_training_on_synthetic_data_localizes_defects(tmp_path):
    """Pretrained Lite0 features at 64 px, 2 meta epochs: pixel AUROC and PRO clearly above chance."""
    from osad_lib.profiles import configure

    cfg = configure("03_bgad", "smoke", device="cpu", output_dir=str(tmp_path))
    split = exp.dataset_split(cfg, "synthetic", 5, seed=0)
    details = tmp_path / "details.json"
    metrics = exp.run_bgad(cfg, split, exp.bgad_config(cfg), details_path=details)
    assert metrics["pixel_auroc"] > 0.7 and metrics["pro"] > 0.3 and metrics["auroc"] > 0.7
    assert metrics["pixel_auroc@max_over_epochs"] >= metrics["pixel_auroc"]
    assert {"auroc@epoch1", "auroc@epoch2", "pro@epoch2"} <= set(metrics)
    assert all(0 <= v <= 1 for v in metrics.values())
    assert details.is_file() and "train_time_s" in details.read_text()


# ------------------------------------------------------------------ configuration and grid
def test_bgad_config_routes_loss_fields_and_rejects_unknown_ones(tmp_path):
    from osad_lib.profiles import configure

    cfg = configure("03_bgad", "smoke", device="cpu", output_dir=str(tmp_path))
    config = exp.bgad_config(cfg, beta=0.01, tau=0.3, focal_weighting=False, racp=False)
    assert (config.loss.beta, config.loss.tau, config.loss.focal_weighting, config.racp) == (0.01, 0.3, False, False)
    assert config.image_size == 64 and config.backbone == "efficientnet_lite0"          # the smoke block
    assert exp.method_config(config, "bgad").loss.pull_in_normal_chunks
    assert not exp.method_config(config, "bgad_fas").loss.pull_in_normal_chunks
    with pytest.raises(ConfigError, match="unknown BGAD setting"):
        exp.bgad_config(cfg, betta=0.1)
    assert exp.ablation_variant(config, "table4") == "beta=0.01,tau=0.3"
    assert exp.ablation_variant(config, "table6") == "bgspp"
    assert exp.ablation_variant(BGADConfig(), "table6") == "bgspp+racp+afw"
    table4 = paper.load_table("bgad_table4")
    assert exp.ablation_variant(exp.bgad_config(cfg, beta=0.01, tau=0.1), "table4") in set(table4["variant"])
    deviations = exp.config_deviations(config, "elpv", has_masks=False)
    assert "report" not in deviations and "beta=0.01 (default: 0.05; the README command)" in deviations
    assert "racp=False (default: True)" in deviations and "no pixel masks" in deviations
    assert "standardize=True (default: False; not in the official code" in deviations  # the smoke block
    assert BGADConfig().loss.beta == 0.05 and BGADConfig().set_to_none  # the paper's β; gradients to None
    faithful = exp.config_deviations(dataclasses.replace(config, set_to_none=False), "elpv")
    assert "set_to_none=False (default: True; the official code" in faithful


def test_paper_grid_is_listed_without_data(tmp_path, monkeypatch):
    from osad_lib.profiles import get_profile, NotebookConfig

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no_weights"))
    monkeypatch.delenv("OSAD_ALLOW_DOWNLOAD", raising=False)
    cfg = NotebookConfig(notebook="03_bgad", profile=get_profile("paper"), device="cpu", seeds=(0, 1, 2),
                         data_root=tmp_path, output_dir=tmp_path, resume=True, interactive=False)
    items = exp.grid(cfg)
    keys = {(i.experiment.table, i.experiment.dataset, i.experiment.method, i.experiment.n_shots) for i in items}
    assert len([k for k in keys if k[0] == "table1"]) == 2 and ("table1", "mvtecad", "bgad_fas", 5) in keys
    assert len({i.experiment.subset for i in items if i.experiment.table == "table1"}) == 15
    assert {i.experiment.subset for i in items if i.experiment.table == "table2"} == {"01", "02", "03"}
    table3 = {i.experiment.dataset for i in items if i.experiment.table == "table3"}
    assert table3 == {"aitex", "elpv", "brainmri", "headct"}
    assert len(items) == (15 * 2 + 3 * 2 + 4) * 3
    # without B6 weights the lite0 stand-in is used and said so
    assert {i.experiment.backbone for i in items} == {"efficientnet_lite0"}
    assert "paper: efficientnet_b6" in items[0].experiment.deviations
    ready, missing = runnable(items)
    assert {i.experiment.dataset for i in ready} == {"elpv"}        # the embedded dataset only
    assert "mvtecad/carpet" in missing


# ------------------------------------------------------------------ Table 6 options: RACP and real repeats
def _toy_images(n: int = 6, size: int = 32):
    from osad_lib.data.tensors import ImageSet

    g = torch.Generator().manual_seed(0)
    images = (torch.rand(n, 3, size, size, generator=g) * 255).to(torch.uint8)
    masks = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    masks[-2:, :, 8:16, 10:20] = 1                                # the last two images are anomalies
    return ImageSet(images, torch.tensor([0] * (n - 2) + [1, 1]), ["good"] * (n - 2) + ["x", "x"], masks,
                    [f"{i}.png" for i in range(n)])


@pytest.mark.parametrize("racp", [True, False])
def test_anomaly_entries_repeat_real_anomalies_and_add_fresh_racp_copies(racp):
    from osad_lib.components.backbones import build_backbone
    from osad_lib.methods.bgad.model import extract_levels

    images = _toy_images()
    net = build_backbone("efficientnet_lite0", "random").freeze()
    levels = extract_levels(net, images.images, 8, "cpu")
    bank = FeatureBank(levels, [torch.zeros(len(images), *x.shape[-2:], dtype=torch.bool) for x in levels])
    config = BGADConfig(image_size=32, real_repeats=5, racp_copies=5, racp=racp, progress=False)
    entries = exp.AnomalyEntries(images, bank, [0, 1, 2, 3], [4, 5], net, config, "cpu", seed=0)
    first, second = entries(), entries()
    assert len(first) == 2 * (5 + (5 if racp else 0))
    assert torch.equal(first.levels[0][:10], levels[0][[4, 5] * 5])          # 5 repeats of the real features
    assert torch.equal(first.anomalous[0][0], torch.nn.functional.interpolate(
        images.masks[4:5].float(), size=levels[0].shape[-2:], mode="nearest")[0, 0] > 0.5)
    if racp:
        assert not torch.equal(first.levels[0][10:], second.levels[0][10:])   # fresh copies every pass
        assert all(bool(m.any()) for m in first.anomalous[0][10:])
        pasted, masks = entries.racp_samples()
        normals = images.images[:4].float() / 255
        outside = masks == 0
        matches = [((pasted[i] - n).abs() * outside[i]).max() < 1e-6 for i in range(len(pasted)) for n in normals]
        assert sum(bool(m) for m in matches) >= len(pasted)                   # pixels outside a defect are a normal's
