"""AHL (Zhu et al., CVPR 2024): HADG tasks, the meta-gradient, ψ and its weights, training.

Facts checked: paper §3.2–3.3, Alg. 1, Eqs. 1–7, App. B.1; ``docs/official_code/ahl.md``
"Heterogeneous tasks (HADG)", "Collaborative differentiable learning (CDL) and ψ" and
"Where the code departs from the paper" (items 2–6, the faithful mode).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from osad_lib.components.features import FeatureBank
from osad_lib.methods.ahl.cdl import (AHLTrainer, ImportanceEstimator, ScoreHistory, category_weights,
                                     generalization_errors, importance_weights, inner_adapt, meta_gradient,
                                     standardized_scores)
from osad_lib.methods.ahl.config import GENERATORS, PSEUDO, AHLConfig
from osad_lib.methods.ahl.ensembles import train_ahl
from osad_lib.methods.ahl.hadg import PoolLayout, Task, batch_slots, build_tasks, cluster_members, split_anomalies
from osad_lib.methods.ahl.heads import CodeCompositeHead, DRAFeatureHeads, build_scorer
from osad_lib.methods.devnet.model import DevNet, DevNetConfig
from osad_lib.validate import ConfigError

GENS = GENERATORS


def three_clusters(n: int = 30) -> np.ndarray:
    """Interleaved k-means labels, so that k-means members differ from prefixes."""
    return np.arange(n) % 3


def normals_of(task: Task, part: str) -> np.ndarray:
    return np.union1d(getattr(task, f"{part}_normals"), getattr(task, f"{part}_pseudo"))


# ----------------------------------------------------------------------------- HADG
def test_clean_tasks_are_six_cluster_pairs_plus_all_normal_task():
    labels = three_clusters()
    tasks = build_tasks(labels, 10, AHLConfig(), seed=0)
    assert len(tasks) == 7 and tasks[-1].name == "all"
    pairs = [(t.name.split("→")[0], t.name.split("→")[1]) for t in tasks[:6]]
    assert sorted(pairs) == sorted((f"c{a}", f"c{b}") for a in range(3) for b in range(3) if a != b)
    for task in tasks:
        support, query = normals_of(task, "support"), normals_of(task, "query")
        assert len(np.intersect1d(support, query)) == 0  # disjoint normals
        assert np.array_equal(support, task.cluster)
    for task in tasks[:6]:  # cluster membership = the k-means labels
        a, b = (int(x[1:]) for x in task.name.split("→"))
        assert np.array_equal(normals_of(task, "support"), np.flatnonzero(labels == a))
        assert np.array_equal(normals_of(task, "query"), np.flatnonzero(labels == b))
    assert len(np.union1d(normals_of(tasks[-1], "support"), normals_of(tasks[-1], "query"))) == len(labels)


def test_faithful_clusters_are_prefixes_and_six_tasks_share_one_generator():
    labels = np.array([0] * 5 + [1] * 10 + [2] * 15)[np.random.default_rng(0).permutation(30)]
    tasks = build_tasks(labels, 10, AHLConfig.faithful(), seed=0)
    assert len(tasks) == 6 and all(t.name != "all" for t in tasks)
    sizes = {f"c{c}": int((labels == c).sum()) for c in range(3)}
    for task in tasks:
        a, b = task.name.split("→")
        assert np.array_equal(normals_of(task, "support"), np.arange(sizes[a]))  # the index bug
        assert np.array_equal(normals_of(task, "query"), np.arange(sizes[b]))
        assert task.support_generator == task.query_generator


def test_anomaly_halves_consistent_in_clean_mode():
    for task in build_tasks(three_clusters(), 10, AHLConfig(), seed=3):
        assert len(task.support_anomalies) == 5
        assert np.array_equal(task.query_anomalies, np.arange(10))  # virtual seen + virtual unseen
        assert len(np.intersect1d(task.virtual_unseen, task.support_anomalies)) == 0
        assert len(task.virtual_unseen) == 5
        assert task.support_generator != task.query_generator
        assert task.support_generator in GENS and task.query_generator in GENS


def test_single_anomaly_is_in_support_and_query():
    for mode_config in (AHLConfig(), AHLConfig.faithful()):
        for task in build_tasks(three_clusters(), 1, mode_config, seed=0):
            assert task.support_anomalies.tolist() == [0] and task.query_anomalies.tolist() == [0]


def test_faithful_anomaly_halves_are_drawn_independently():
    rng = np.random.default_rng(0)
    inconsistent = 0
    for _ in range(20):
        support, query = split_anomalies(10, rng, consistent=False)
        assert len(support) == 5 and len(query) == 7  # 2 of an independent half + its complement
        inconsistent += not set(support) <= set(query)
    assert inconsistent > 0


def test_overlap_variants_of_table_10():
    labels = three_clusters()
    base = build_tasks(labels, 4, AHLConfig(pseudo=False), seed=0)
    s_to_q = build_tasks(labels, 4, AHLConfig(pseudo=False, overlap="s_to_q"), seed=0)
    both = build_tasks(labels, 4, AHLConfig(pseudo=False, overlap="both"), seed=0)
    for t0, t1, t2 in zip(base, s_to_q, both):
        assert set(normals_of(t0, "support")) <= set(normals_of(t1, "query"))
        assert np.array_equal(normals_of(t1, "support"), normals_of(t0, "support"))
        assert np.array_equal(normals_of(t2, "support"), normals_of(t2, "query"))


def test_without_pseudo_augmentation_no_pseudo_anomalies():
    tasks = build_tasks(three_clusters(), 4, AHLConfig(pseudo=False), seed=0)
    assert all(len(t.support_pseudo) == len(t.query_pseudo) == 0 and t.support_generator is None for t in tasks)


def test_number_of_tasks_follows_the_cluster_count():
    labels = np.arange(40) % 4
    assert len(build_tasks(labels, 2, AHLConfig(n_clusters=4), seed=0)) == 4 * 3 + 1


def test_random_assignment_keeps_cluster_sizes():
    labels = np.array([0] * 4 + [1] * 8 + [2] * 12)
    members = cluster_members(labels, "random", np.random.default_rng(0))
    assert sorted(len(m) for m in members) == [4, 8, 12]
    assert len(np.unique(np.concatenate(members))) == 24


def test_pool_layout_groups_and_batch_slots():
    layout = PoolLayout(n_normals=6, n_anomalies=2, generators=GENS)
    task = Task("t", np.array([0, 1, 2]), np.array([0, 2]), np.array([1]), np.array([0]),
                np.array([3, 4]), np.array([5]), np.array([0, 1]), "cutpaste", "draem")
    s, q = layout.groups(task, "support"), layout.groups(task, "query")
    assert s["normal"].tolist() == [0, 2] and s["anomaly"].tolist() == [6]
    assert s["pseudo"].tolist() == [8 + 6 + 1]  # cutpaste block starts at 6 + 2 + 6
    assert q["pseudo"].tolist() == [8 + 12 + 5] and q["anomaly"].tolist() == [6, 7]
    assert layout.labels()[s["pseudo"]].tolist() == [PSEUDO]
    assert batch_slots(s, 48) == {"normal": 16, "pseudo": 16, "anomaly": 16}
    assert batch_slots({"normal": [0], "pseudo": [], "anomaly": [1]}, 48) == {"normal": 24, "anomaly": 24}


# ----------------------------------------------------------------------------- meta-gradient
def quadratic(target: float):
    return lambda params, _batch: (params["w"] - target).pow(2).sum()


@pytest.mark.parametrize("order, steps, factor", [
    ("all", 1, lambda b: 1 - 2 * b), ("all", 2, lambda b: (1 - 2 * b) ** 2),
    ("first", 2, lambda b: 1 - 2 * b), ("none", 2, lambda b: 1.0),
])
def test_meta_gradient_matches_the_hand_derivation(order, steps, factor):
    """Support (w − a)², query (w − b)², SGD step β: φ_k = a + (1 − 2β)^k (θ − a), so
    dL_q/dθ = 2(φ − b)·Π(∂φ_k/∂φ_{k−1}) over the differentiated steps."""
    a, b, beta, theta0 = 1.0, -2.0, 0.1, 3.0
    theta = {"w": torch.tensor([theta0], dtype=torch.float64, requires_grad=True)}
    grad, fast, q = meta_gradient(theta, quadratic(a), quadratic(b), [None] * steps, [None], beta, order)
    phi = a + (1 - 2 * beta) ** steps * (theta0 - a)
    assert fast["w"].item() == pytest.approx(phi)
    assert q == pytest.approx((phi - b) ** 2)
    assert grad["w"].item() == pytest.approx(2 * (phi - b) * factor(beta))


def test_meta_gradient_equals_finite_differences():
    torch.manual_seed(0)
    x_s, y_s = torch.randn(3, 8, 4, dtype=torch.float64), torch.randn(3, 8, dtype=torch.float64)
    x_q, y_q = torch.randn(2, 8, 4, dtype=torch.float64), torch.randn(2, 8, dtype=torch.float64)

    def loss(params, batch):
        x, y = batch
        return ((torch.tanh(x @ params["w"]) * params["v"] - y) ** 2).mean()

    theta = {"w": torch.randn(4, dtype=torch.float64, requires_grad=True),
             "v": torch.tensor(1.5, dtype=torch.float64, requires_grad=True)}
    support, query = list(zip(x_s, y_s)), list(zip(x_q, y_q))
    grad, _, _ = meta_gradient(theta, loss, loss, support, query, lr=0.3, second_order="all")

    def objective(params):
        fast = inner_adapt(loss, params, support, 0.3, "all")
        return float(torch.stack([loss(fast, b) for b in query]).mean().detach())

    eps = 1e-6
    for name in ("w", "v"):
        flat = theta[name].detach().reshape(-1)
        for i in range(flat.numel()):
            plus, minus = flat.clone(), flat.clone()
            plus[i] += eps
            minus[i] -= eps
            shaped = theta[name].shape
            f_plus = objective({**theta, name: plus.reshape(shaped).requires_grad_()})
            f_minus = objective({**theta, name: minus.reshape(shaped).requires_grad_()})
            assert grad[name].reshape(-1)[i].item() == pytest.approx((f_plus - f_minus) / (2 * eps), rel=1e-5, abs=1e-8)


# ----------------------------------------------------------------------------- ψ and weights
def test_generalization_errors_and_weights_on_hand_made_predictions():
    predicted = torch.tensor([[0.0, 1.0], [1.0, 1.0], [0.5, 0.0]])
    labels = torch.tensor([0, 1, 1])
    c = torch.tensor([[0.5, 0.5], [0.5, 1.0], [1.0, 1.0]])
    include = torch.tensor([[True, False], [True, True], [True, True]])
    r = generalization_errors(predicted, labels, c, include)
    # model 0: (0.5·0 + 0.5·0 + 1.0·0.25) / 3; model 1 (row 0 excluded): (1.0·0 + 1.0·1) / 2
    assert r.tolist() == pytest.approx([0.25 / 3, 0.5])
    w = importance_weights(r)
    expected = np.exp([-0.25 / 3, -0.5]) / np.exp([-0.25 / 3, -0.5]).sum()
    assert w.tolist() == pytest.approx(expected.tolist())


def test_category_weights_of_eq6():
    layout = PoolLayout(n_normals=4, n_anomalies=2, generators=("cutmix", "cutpaste"))
    task = Task("t", np.array([0, 1]), np.array([0]), np.array([1]), np.array([0]),
                np.array([2, 3]), np.array([]), np.array([0, 1]), "cutmix", "cutpaste")
    c, include = category_weights(task, layout)
    assert include[:4].tolist() == [False, False, True, True]  # X_{n,i} excluded from D'
    assert c[[2, 3]].tolist() == [0.5, 0.5]  # unseen normals
    assert c[[4, 5]].tolist() == [0.5, 1.0]  # virtual seen / virtual unseen anomaly
    assert set(c[6:10]) == {0.5} and set(c[10:14]) == {1.0}  # seen / unseen pseudo generator


def test_score_history_waits_for_k_epochs_then_predicts():
    history = ScoreHistory(n_tasks=3, config=AHLConfig(sequence_length=2, psi_steps=2))
    assert history.update(torch.rand(5, 3)) is None
    assert history.update(torch.rand(5, 3)) is None
    predicted = history.update(torch.rand(5, 3))
    assert predicted.shape == (5, 3) and torch.isfinite(predicted).all()


def test_importance_estimator_sizes():
    paper = ImportanceEstimator(7)
    assert paper.lstm.hidden_size == 7 and paper.lstm.num_layers == 2 and paper.lstm.bidirectional
    assert paper.head[0].in_features == 14 and paper.head[0].out_features == 14
    code = ImportanceEstimator(6, hidden=0, fc_hidden=0)
    assert code.lstm.hidden_size == 6 and code.head[-1].in_features == 12
    assert paper(torch.rand(4, 5, 7)).shape == (4, 7)


# ----------------------------------------------------------------------------- training
def fake_bank(n_normals: int = 45, n_anomalies: int = 4, channels: int = 8, seed: int = 0) -> FeatureBank:
    g = torch.Generator().manual_seed(seed)

    def feats(n: int, shift: float = 0.0) -> list[torch.Tensor]:
        return [torch.rand(n, channels, 4, 4, generator=g) + shift, torch.rand(n, channels, 2, 2, generator=g) + shift]

    normal = feats(n_normals)
    normal[0][: n_normals // 3] += 1.0
    test = [torch.cat(p) for p in zip(feats(20), feats(10, 0.7), strict=True)]
    return FeatureBank(normal=normal, anomaly=feats(n_anomalies, 0.7), pseudo={k: feats(n_normals, 0.4) for k in GENS},
                       test=test, test_labels=np.array([0] * 20 + [1] * 10), test_classes=["good"] * 20 + ["x"] * 10,
                       references=[f[:3] for f in normal])


TINY = dict(epochs=4, inner_steps=2, query_steps=1, batch_size=9, sequence_length=2, psi_steps=1, init="fresh")


@pytest.mark.parametrize("base", ["devnet", "dra"])
def test_ahl_trains_with_equal_weights_before_history(base):
    torch.manual_seed(0)
    bank = fake_bank()
    trained = train_ahl({base: bank}, AHLConfig(base=base, **TINY), seed=0, progress=False)
    history = pd.DataFrame(trained.history)
    weights = history.pivot(index="epoch", columns="task", values="weight")
    assert weights.shape == (4, 7)
    assert np.allclose(weights.loc[[1, 2]].to_numpy(), 1 / 7)  # no ψ history yet (Alg. 1 line 10)
    assert np.allclose(weights.sum(axis=1), 1.0)
    assert not np.allclose(weights.loc[4].to_numpy(), 1 / 7)
    scores = trained.score({base: bank.test})
    assert scores.shape == (30,) and np.isfinite(scores).all()


def test_meta_step_changes_only_after_the_lag_in_faithful_mode():
    bank = fake_bank()
    config = AHLConfig.faithful(base="devnet", **{**TINY, "epochs": 1})
    trainer = AHLTrainer(bank, config, seed=0)
    before = {n: p.detach().clone() for n, p in trainer.theta.items()}
    trainer.epoch(0)
    assert all(torch.equal(before[n], p) for n, p in trainer.theta.items())  # gradient pending
    trainer.epoch(1)
    assert not all(torch.equal(before[n], p) for n, p in trainer.theta.items())
    clean = AHLTrainer(bank, AHLConfig(base="devnet", **TINY), seed=0)  # fresh heads, Adam inner loop
    clean.epoch(0)
    assert not all(torch.equal(before[n], p) for n, p in clean.theta.items())


@pytest.mark.parametrize("variant", ["hadg", "ramhadg", "ramfull", "ramhadg+devnet", "cdl_minus"])
def test_table5_variants_run(variant):
    bank = fake_bank()
    config = AHLConfig(base="dra", variant=variant, ensemble_members=2, **TINY)
    trained = train_ahl({"dra": bank, "devnet": bank}, config, seed=0, progress=False)
    bases = [b for _, b, _, _ in trained.members]
    if variant == "ramhadg+devnet":
        assert set(bases) == {"dra", "devnet"}
    scores = trained.score({"dra": bank.test, "devnet": bank.test})
    assert np.isfinite(scores).all()


def test_init_from_base_reproduces_the_base_models_scores():
    torch.manual_seed(0)
    model = DevNet(DevNetConfig(backbone="resnet18", weights="random", image_size=32)).eval()
    features = [torch.rand(5, 512, 2, 2), torch.rand(5, 512, 1, 1)]
    scorer = build_scorer("devnet", 512, base_state=model.state_dict())
    direct = torch.stack([model.head(f) for f in features]).mean(0)
    assert torch.allclose(scorer.score(None, features), direct)


def test_bad_options_are_one_line_errors():
    with pytest.raises(ConfigError, match="variant"):
        AHLConfig(variant="bogus")
    with pytest.raises(ConfigError, match="n_clusters"):
        AHLConfig(n_clusters=1)
    with pytest.raises(ConfigError, match="unknown AHL setting"):
        AHLConfig().with_overrides({"clusters": 3})


def test_variant_labels():
    assert AHLConfig().variant_label == ""
    assert AHLConfig(variant="cdl_minus", overlap="both").variant_label == "cdl_minus;overlap=both"
    assert AHLConfig(pseudo=False, n_clusters=4, sequence_length=3).variant_label == "wo_aug;C=4;K=3"


def test_paper_grid_lists_without_data(monkeypatch, tmp_path):
    from osad_lib.experiments import ahl as experiments
    from osad_lib.profiles import configure

    monkeypatch.delenv("OSAD_DATA", raising=False)
    cfg = configure("05_ahl", "paper", device="cpu", output_dir=str(tmp_path), check_data=False)
    items = experiments.grid(cfg)
    methods = {i.experiment.method for i in items}
    assert methods == {"devnet", "dra", "ahl_devnet", "ahl_dra"}
    general = [i for i in items if i.experiment.setting == "general" and i.experiment.dataset == "aitex"]
    assert len(general) == 2 * 5 * 4  # shots {1, 10} x seeds 0-4 x (2 bases + 2 AHL)
    hard = {i.experiment.subset for i in items if i.experiment.setting == "hard" and i.experiment.dataset == "elpv"}
    assert hard == {"mono", "poly"}
    base_rows = [i for i in items if i.experiment.method in ("devnet", "dra")]
    assert {i.experiment.variant for i in base_rows} == {"ahl_base"}
    assert all(i.train_images > 0 for i in items)


@pytest.mark.parametrize("size", [3, 5, 7])
def test_code_composite_head_equals_its_stride3_convolution(size):
    torch.manual_seed(0)
    head = CodeCompositeHead(6, faithful=True)
    torch.nn.init.normal_(head.gamma)
    torch.nn.init.normal_(head.beta)
    x, refs = torch.randn(4, 6, size, size), torch.randn(2, 6, size, size)
    conv = torch.nn.functional.conv2d(refs.mean(0, keepdim=True) - x, head.conv.weight, head.conv.bias, stride=3)
    expected = head.scorer(torch.relu(conv * head.gamma.view(1, -1, 1, 1) + head.beta.view(1, -1, 1, 1)))
    assert torch.allclose(head(x, refs), expected, atol=1e-5)


@pytest.mark.parametrize("faithful", [False, True])
def test_composite_head_gradients_on_the_first_step(faithful):
    """The code's zero-initialised affine blocks every gradient of the composite head (its score
    is a constant); the default init lets them flow, and its padding makes every cell count."""
    torch.manual_seed(0)
    head = CodeCompositeHead(6, faithful=faithful)
    x, refs = torch.randn(4, 6, 5, 5), torch.randn(2, 6, 5, 5)
    head(x, refs).sum().backward()
    conv_grad = head.conv.weight.grad.abs().sum()
    if faithful:
        assert conv_grad == 0 and head.scorer.conv.weight.grad.abs().sum() == 0
    else:
        assert conv_grad > 0 and head.scorer.conv.weight.grad.abs().sum() > 0
        x2 = x.clone()
        x2[:, :, 4, 4] += 10.0  # the last row/column: outside the unpadded window, inside the padded one
        assert not torch.allclose(head(x2, refs), head(x, refs))
    dra_head = DRAFeatureHeads(6, composite_channels=4)
    dra_head.heads["composite"](x, refs).sum().backward()
    assert dra_head.heads["composite"].transform[0].weight.grad.abs().sum() > 0


def test_the_unified_model_starts_from_the_base_heads_by_default():
    assert AHLConfig().init == "base" and AHLConfig.faithful().init == "fresh"
    bank = fake_bank()
    base = build_scorer("dra", bank.channels, bank.references)
    state = {k: v + 0.5 for k, v in base.module.state_dict().items()}  # some "trained" heads
    trainer = AHLTrainer(bank, AHLConfig(base="dra", **{**TINY, "init": "base"}), seed=0, base_state=state)
    assert all(torch.equal(trainer.theta[name], state[name]) for name in trainer.theta)
    with pytest.raises(ConfigError, match="base_state"):
        train_ahl({"dra": bank}, AHLConfig(base="dra", **{**TINY, "init": "base"}), seed=0, progress=False)


def test_inner_adaptation_moves_the_base_models_measurably():
    """The paper's Adam (§4.1) moves every φ_i away from g ten times as far as the code's SGD fast
    weights at the same lr and steps (at 2e-4: 0.9 % against 0.08 % after 20 steps on these
    features, 0.27 % against 0.02 % after 5), which leave every φ_i practically equal to g."""
    bank = fake_bank()
    changes = {}
    for optimizer in ("adam", "sgd"):
        config = AHLConfig(base="dra", inner_optimizer=optimizer, **{**TINY, "epochs": 1, "inner_steps": 5})
        trainer = AHLTrainer(bank, config, seed=0)
        trainer.epoch(0)
        changes[optimizer] = np.mean([h["relative_change"] for h in trainer.history])
    assert changes["adam"] > 0.002 and changes["sgd"] < 0.0005 and changes["adam"] > 5 * changes["sgd"]


def test_psi_weights_track_errors_not_score_scale():
    """Tasks built alike whose base models differ only in score *scale* (the same ranking): on raw
    scores Eq. 6's error follows the scale and softmax(−r) is nearly one-hot; on standardized
    scores the errors and weights are equal."""
    labels = torch.tensor([0.0] * 20 + [1.0] * 5)
    ranking = torch.cat([torch.linspace(0, 1, 20), torch.linspace(1.5, 2, 5)])
    scores = torch.stack([ranking * scale for scale in (1.0, 3.0, 6.0, 12.0)], dim=1)  # [N, T]
    c, include = torch.ones_like(scores), torch.ones_like(scores, dtype=torch.bool)
    raw = importance_weights(generalization_errors(scores, labels, c, include))
    std = importance_weights(generalization_errors(standardized_scores(scores), labels, c, include))
    assert raw.max() > 0.99  # one-hot on the smallest scale
    assert torch.allclose(std, torch.full((4,), 0.25), atol=1e-6)


def test_a_task_set_keeps_a_normal_when_the_pseudo_coin_replaces_every_one():
    from osad_lib.methods.ahl.hadg import _with_pseudo

    normals = np.array([4, 9, 11])
    kept, replaced = _with_pseudo(normals, True, 1.0, np.random.default_rng(0))  # the coin replaces all
    assert len(kept) == 1 and sorted([*kept, *replaced]) == [4, 9, 11]
    kept, replaced = _with_pseudo(normals, True, 0.0, np.random.default_rng(0))
    assert kept.tolist() == [4, 9, 11] and replaced.size == 0
