"""DRA (Ding et al., CVPR 2022): routing, residual, score composition, modes, shapes, ablations.

Facts checked: ``docs/official_code/dra.md`` "Model", "Training pipeline", "Evaluation" and
"Where the code departs from the paper" (items 1, 2, 4).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from osad_lib.methods.dra import (
    DRA, HEADS, NORMAL, PSEUDO, SEEN, DRAConfig, anomaly_score, dra_loss, head_targets, latent_residual,
)
from osad_lib.validate import ConfigError


class PoolBackbone(nn.Module):
    """A stand-in backbone (no normalisation, one stage) whose 3-channel feature map is the
    input average-pooled by 4: a constant image of value v gives a constant feature map v, so
    a feature tells which sample (or reference) it came from."""

    out_channels = 3

    def __init__(self):
        super().__init__()
        self.stages = nn.ModuleList([nn.AvgPool2d(4)])

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x


def constant_images(values: list[float], size: int = 16) -> torch.Tensor:
    return torch.tensor(values).view(-1, 1, 1, 1).expand(-1, 3, size, size).clone()


def spy_inputs(model: DRA) -> dict[str, list[torch.Tensor]]:
    """Record the feature maps each head receives (one entry per pyramid scale)."""
    seen: dict[str, list[torch.Tensor]] = {h: [] for h in model.head_names}
    for name, head in model.heads.items():
        head.register_forward_pre_hook(lambda _m, args, name=name: seen[name].append(args[0].detach().clone()))
    return seen


LABELS = torch.tensor([NORMAL, SEEN, PSEUDO, NORMAL, PSEUDO, SEEN])
VALUES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]  # sample i is recognisable by its value
REFS = [0.7, 0.9]


def sample_values(features: torch.Tensor) -> list[float]:
    return [round(v, 4) for v in features[:, 0, 0, 0].tolist()]


def test_training_routes_each_head_to_its_samples_as_the_code():
    model = DRA(PoolBackbone(), heads=HEADS, n_scales=2)
    inputs = spy_inputs(model)
    scores = model(constant_images(VALUES), constant_images(REFS), labels=LABELS)
    expected = {
        "holistic": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],  # all samples
        "seen": [0.1, 0.2, 0.4, 0.6],  # label != 2: normals + real anomalies
        "pseudo": [0.1, 0.3, 0.4, 0.5],  # label != 1: normals + pseudo anomalies
        "composite": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],  # all samples
    }
    for head, values in expected.items():
        assert len(inputs[head]) == 2  # once per pyramid scale
        assert sample_values(inputs[head][0]) == values
        assert sample_values(inputs[head][1]) == values
        assert scores[head].shape == (len(values),)


def test_evaluation_sends_every_sample_to_every_head():
    model = DRA(PoolBackbone(), heads=HEADS, n_scales=2).eval()
    inputs = spy_inputs(model)
    with torch.no_grad():
        scores = model(constant_images(VALUES), constant_images(REFS))
    for head in HEADS:
        assert sample_values(inputs[head][0]) == VALUES
        assert scores[head].shape == (6,)


def test_head_targets_follow_the_code():
    targets = head_targets(LABELS, HEADS)
    assert targets["holistic"].tolist() == [1, 0, 0, 1, 0, 0]  # normality head: 1 for normals
    assert targets["seen"].tolist() == [0, 1, 0, 1]  # routed labels [0, 1, 0, 1]
    assert targets["pseudo"].tolist() == [0, 1, 0, 1]  # routed labels [0, 2, 0, 2]
    assert targets["composite"].tolist() == [0, 1, 1, 0, 1, 1]


def test_seen_targets_mark_real_anomalies_only():
    labels = torch.tensor([SEEN, NORMAL, PSEUDO, SEEN])
    assert head_targets(labels, ["seen"])["seen"].tolist() == [1, 0, 1]
    assert head_targets(labels, ["pseudo"])["pseudo"].tolist() == [0, 1]


def test_residual_is_mean_reference_minus_query_by_hand():
    query = torch.tensor([[[[1.0, 2.0]]], [[[0.0, -1.0]]]])  # [2, 1, 1, 2]
    refs = torch.tensor([[[[3.0, 0.0]]], [[[5.0, 4.0]]]])  # mean = [4, 2]
    assert latent_residual(query, refs).tolist() == [[[[3.0, 0.0]]], [[[4.0, 3.0]]]]


def test_composite_head_sees_mean_reference_minus_query_features():
    model = DRA(PoolBackbone(), heads=("composite",), n_scales=1).eval()
    captured = []
    model.heads["composite"].transform.register_forward_pre_hook(lambda _m, a: captured.append(a[0].clone()))
    with torch.no_grad():
        model(constant_images([0.1, 0.5]), constant_images([0.7, 0.9, 0.2]))
    expected = (0.7 + 0.9 + 0.2) / 3 - torch.tensor([0.1, 0.5])
    assert torch.allclose(captured[0][:, 0, 0, 0], expected)
    assert torch.allclose(captured[0][:, :, 1, 2], expected.view(2, 1).expand(2, 3))


def test_score_is_minus_holistic_plus_the_abnormality_heads():
    h, s, p, c = (torch.tensor([1.0, 4.0]), torch.tensor([2.0, 0.5]), torch.tensor([0.25, 3.0]),
                  torch.tensor([8.0, 1.0]))
    full = anomaly_score({"holistic": h, "seen": s, "pseudo": p, "composite": c})
    assert full.tolist() == [-1 + 2 + 0.25 + 8, -4 + 0.5 + 3 + 1]
    assert anomaly_score({"seen": s}).tolist() == s.tolist()
    assert anomaly_score({"holistic": h, "seen": s}).tolist() == [1.0, -3.5]


def test_model_score_equals_composition_of_its_heads():
    model = DRA(PoolBackbone(), heads=HEADS, n_scales=2).eval()
    with torch.no_grad():
        heads = model(constant_images(VALUES), constant_images(REFS))
    manual = -heads["holistic"] + heads["seen"] + heads["pseudo"] + heads["composite"]
    assert torch.allclose(anomaly_score(heads), manual)


def test_loss_is_the_sum_of_per_head_losses_on_routed_targets():
    scores = {"holistic": torch.tensor([1.0, 2, 3, 4, 5, 6]), "seen": torch.tensor([1.0, 2, 3, 4]),
              "pseudo": torch.tensor([1.0, 2, 3, 4]), "composite": torch.tensor([1.0, 1, 1, 1, 1, 1])}
    total, parts = dra_loss(scores, LABELS, lambda s, y: (s * y).sum())
    # seen targets [0, 1, 0, 1], pseudo targets [0, 1, 0, 1], composite 1[label != 0]
    assert parts == {"holistic": 1 + 4, "seen": 2 + 4, "pseudo": 2 + 4, "composite": 4.0}
    assert total.item() == 5 + 6 + 6 + 4


def test_shapes_at_both_scales_with_a_real_backbone():
    from osad_lib.components.backbones import build_backbone

    torch.manual_seed(0)
    model = DRA(build_backbone("resnet18", "random"), heads=HEADS, n_scales=2)
    feature_shapes = []
    model.backbone.stages[-1].register_forward_hook(lambda _m, _a, out: feature_shapes.append(tuple(out.shape)))
    labels = torch.tensor([NORMAL, PSEUDO, SEEN])
    scores = model(torch.rand(3, 3, 64, 64), torch.rand(2, 3, 64, 64), labels=labels)
    assert feature_shapes == [(5, 512, 2, 2), (5, 512, 1, 1)]  # refs + batch, 64 px then 32 px
    assert {h: tuple(s.shape) for h, s in scores.items()} == {
        "holistic": (3,), "seen": (2,), "pseudo": (2,), "composite": (3,)}
    assert all(torch.isfinite(s).all() for s in scores.values())
    assert (scores["holistic"] >= 0).all()  # |·| on the normality head


@pytest.mark.parametrize("variant, heads", [
    ("dra1a", ("seen",)), ("dra2a", ("seen", "pseudo")), ("dra3ar", ("seen", "pseudo", "composite")),
    ("dra3an", ("holistic", "seen", "pseudo")),
])
def test_ablation_variants_build_only_their_heads(variant, heads):
    config = DRAConfig(heads=variant)
    assert config.heads == heads
    assert config.variant == variant
    model = DRA(PoolBackbone(), heads=config.heads, n_scales=1).eval()
    assert tuple(model.heads) == heads
    refs = constant_images(REFS) if "composite" in heads else None
    with torch.no_grad():
        scores = model(constant_images(VALUES), refs)
    assert tuple(scores) == heads


def test_variant_labels_and_pseudo_use():
    assert DRAConfig().variant == ""
    assert DRAConfig(pseudo_source="cp_scar").variant == "pseudo=cp_scar"
    assert DRAConfig(pseudo_source="external", outlier_name="lag").variant == "pseudo=lag"
    assert DRAConfig(n_ref=10).variant == "nref=10"
    assert DRAConfig(loss="focal", heads="dra2a").variant == "dra2a;loss=focal"
    assert DRAConfig(heads="dra1a").uses_pseudo is False  # no head learns from pseudo anomalies
    assert DRAConfig(heads="dra3an").uses_pseudo is True
    assert (DRAConfig().n_normal_slots, DRAConfig().n_anomaly_slots) == (32, 16)


def test_bad_settings_are_one_line_errors():
    with pytest.raises(ConfigError, match="mode"):
        DRAConfig(mode="exact")
    with pytest.raises(ConfigError, match="heads"):
        DRAConfig(heads=("seen", "normality"))
    with pytest.raises(ConfigError, match="reference"):
        DRA(PoolBackbone(), heads=HEADS, n_scales=1)(constant_images(VALUES))


# ------------------------------------------------------------------------------------------
# training data, references and the faithful / clean switch

from osad_lib.data.tensors import ImageSet, subsample  # noqa: E402
from osad_lib.methods import dra as dra_method  # noqa: E402
from osad_lib.methods.dra import training_data as dra_module  # noqa: E402
from osad_lib.methods.dra import DRATrainingData, score_dra, train_config  # noqa: E402


def image_set(n_normal: int = 8, n_anomaly: int = 3, size: int = 16, seed: int = 0) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    n = n_normal + n_anomaly
    return ImageSet(
        images=torch.randint(1, 256, (n, 3, size, size), generator=g, dtype=torch.uint8),
        labels=torch.tensor([0] * n_normal + [1] * n_anomaly), classes=["good"] * n_normal + ["hole"] * n_anomaly,
        masks=None, paths=[f"img{i}.png" for i in range(n)],
    )


@pytest.fixture
def spies(monkeypatch):
    """Count the images that go through rotation and through the pseudo-anomaly generator."""
    calls = {"rotated": 0, "pseudo": 0}
    rotate, pseudo = dra_module.random_rotation, dra_module.make_pseudo_anomalies

    def rotation_spy(images, degrees):
        calls["rotated"] += len(images)
        return rotate(images, degrees)

    def pseudo_spy(images, source):
        calls["pseudo"] += len(images)
        return pseudo(images, source)

    monkeypatch.setattr(dra_module, "random_rotation", rotation_spy)
    monkeypatch.setattr(dra_module, "make_pseudo_anomalies", pseudo_spy)
    return calls


def matches_a_training_normal(image: torch.Tensor, train: ImageSet) -> bool:
    raw = train.images[train.labels == 0].float() / 255
    return bool((raw == image).flatten(1).all(dim=1).any())


def test_faithful_references_are_rotated_pseudo_mixed_and_redrawn(spies):
    train = image_set()
    torch.manual_seed(0)
    data = DRATrainingData(train, DRAConfig(mode="faithful", pseudo_prob=1.0), seed=0)
    first = data.references()
    assert first.shape == (5, 3, 16, 16)
    assert spies == {"rotated": 5, "pseudo": 5}  # every reference rotated; p=1 → all pseudo
    second = data.references()
    assert not torch.equal(first, second)  # a fresh draw per step / test batch
    assert not any(matches_a_training_normal(r, train) for r in first)


def test_faithful_references_are_about_half_pseudo_at_the_code_probability(spies):
    torch.manual_seed(1)
    data = DRATrainingData(image_set(), DRAConfig(mode="faithful"), seed=0)
    for _ in range(40):
        data.references()
    assert spies["rotated"] == 200
    assert 70 <= spies["pseudo"] <= 130  # Binomial(200, 0.5)


def test_clean_references_are_fixed_unaugmented_normals_chosen_by_seed(spies):
    train = image_set()
    data = DRATrainingData(train, DRAConfig(mode="clean"), seed=0)
    first, second = data.references(), data.references()
    assert torch.equal(first, second)
    assert all(matches_a_training_normal(r, train) for r in first)
    assert spies == {"rotated": 0, "pseudo": 0}
    picks = {tuple(DRATrainingData(train, DRAConfig(mode="clean"), seed=s).fixed_reference_idx) for s in range(6)}
    assert len(picks) > 1  # the seed chooses the references
    assert all(set(p) <= set(range(8)) for p in picks)  # normals only


def test_evaluation_is_deterministic_in_clean_mode_and_not_in_faithful_mode():
    train, test = image_set(), image_set(seed=1).images
    torch.manual_seed(0)
    model = DRA(PoolBackbone(), heads=HEADS, n_scales=2)
    clean = DRATrainingData(train, DRAConfig(mode="clean"), seed=0)
    a, b = score_dra(model, clean, test, batch_size=4), score_dra(model, clean, test, batch_size=4)
    assert set(a) == {*HEADS, "score"}
    assert all((a[k] == b[k]).all() for k in a)
    faithful = DRATrainingData(train, DRAConfig(mode="faithful"), seed=0)
    c, d = score_dra(model, faithful, test, batch_size=4), score_dra(model, faithful, test, batch_size=4)
    assert not (c["composite"] == d["composite"]).all()  # references redrawn per test batch
    assert (c["seen"] == d["seen"]).all()  # heads without references are unaffected
    assert torch.allclose(torch.tensor(a["score"]), torch.tensor(
        -a["holistic"] + a["seen"] + a["pseudo"] + a["composite"]), atol=1e-6)


def test_learning_rate_schedule_follows_the_mode():
    faithful, clean = train_config(DRAConfig(mode="faithful")), train_config(DRAConfig(mode="clean"))
    assert faithful.scheduler_step_at == "epoch_start"  # decays at epochs 9/19/29 (docs/official_code/dra.md "Training pipeline")
    assert clean.scheduler_step_at == "epoch_end"  # decays at 10/20
    assert (faithful.epochs, faithful.steps_per_epoch, faithful.lr, faithful.weight_decay, faithful.grad_clip) == (
        30, 20, 2e-4, 1e-5, 1.0)


def test_batches_have_normal_or_pseudo_slots_then_seen_slots(spies):
    torch.manual_seed(0)
    data = DRATrainingData(image_set(), DRAConfig(batch_size=12), seed=0)
    batches = iter(data.sampler())
    n_pseudo = 0
    for _ in range(20):
        images, labels = data.batch(next(batches))
        assert images.shape == (12, 3, 16, 16) and images.dtype == torch.float32
        assert set(labels[:8].tolist()) <= {NORMAL, PSEUDO} and labels[8:].tolist() == [SEEN] * 4
        n_pseudo += int((labels == PSEUDO).sum())
    assert 50 <= n_pseudo <= 110  # Binomial(160, 0.5)
    assert spies["rotated"] == 240  # every training image rotated


def test_no_pseudo_anomalies_without_a_head_that_learns_them(spies):
    data = DRATrainingData(image_set(), DRAConfig(batch_size=12, heads="dra1a"), seed=0)
    _, labels = data.batch(next(iter(data.sampler())))
    assert PSEUDO not in labels.tolist() and spies["pseudo"] == 0


def test_external_pseudo_anomalies_come_from_the_outlier_set():
    outliers = image_set(n_normal=4, n_anomaly=0)
    outliers.images[:] = 7  # a value no training image has (they are >= 1 and random)
    data = DRATrainingData(image_set(), DRAConfig(batch_size=12, pseudo_source="external", outlier_name="lag",
                                                  rotation_degrees=0.0, pseudo_prob=1.0), seed=0, outliers=outliers)
    images, labels = data.batch(next(iter(data.sampler())))
    assert torch.allclose(images[labels == PSEUDO], torch.full_like(images[labels == PSEUDO], 7 / 255))
    with pytest.raises(ConfigError, match="outlier"):
        DRATrainingData(image_set(), DRAConfig(pseudo_source="external"), seed=0)


def test_train_dra_runs_end_to_end_and_is_seeded():
    config = DRAConfig(backbone="resnet18", weights="random", image_size=32, epochs=1, steps_per_epoch=1,
                       batch_size=3, eval_batch_size=11, mode="clean", n_scales=1)
    train = image_set(size=32)
    runs = [dra_method.train_dra(train, config, seed=3, progress=False) for _ in range(2)]
    assert len(runs[0].history) == 1 and all(torch.isfinite(torch.tensor(r.history)).all() for r in runs)
    assert runs[0].history == runs[1].history  # same seed, same losses
    scores = [r.score(image_set(seed=5, size=32).images) for r in runs]
    assert (scores[0]["score"] == scores[1]["score"]).all()


def test_frozen_stem_is_fixed_and_cached_stems_score_like_images():
    from osad_lib.components.backbones import build_backbone
    from osad_lib.components.stems import StemFeatures

    torch.manual_seed(0)
    model = DRA(build_backbone("resnet18", "random"), heads=HEADS, n_scales=2, frozen_stages=2)
    labels = torch.tensor([NORMAL, PSEUDO, SEEN, NORMAL])
    scores = model(torch.rand(4, 3, 32, 32), torch.rand(2, 3, 32, 32), labels=labels)
    dra_loss(scores, labels, lambda s, y: (s * (1 - 2 * y)).mean())[0].backward()
    assert all(p.grad is None for stage in model.backbone.stages[:2] for p in stage.parameters())
    assert all(p.grad is not None for p in model.backbone.stages[2].parameters())
    model.train()
    assert not model.backbone.stages[0].training and model.backbone.stages[2].training

    data = DRATrainingData(image_set(size=32), DRAConfig(mode="clean"), seed=0)
    test = image_set(seed=4, size=32).images
    with torch.no_grad():
        stems = StemFeatures(tuple(f.half() for f in model.stem_pyramid(test.float() / 255)))
    from_images, from_stems = score_dra(model, data, test, 11), score_dra(model, data, stems, 11)
    with torch.no_grad():
        assert torch.allclose(model(model.stem_pyramid(test[:3].float() / 255), data.references())["seen"],
                              model(test[:3].float() / 255, data.references())["seen"])
    assert torch.allclose(torch.tensor(from_images["score"]), torch.tensor(from_stems["score"]), rtol=0.05, atol=0.05)


# ------------------------------------------------------------------------------------------
# SAOE baseline (DRA App. B.2)

from osad_lib.methods.baselines.dra_baselines import SAOE, outlier_exposure_loss, saoe_loss, train_saoe  # noqa: E402


def test_saoe_pools_each_class_with_top_k_and_scores_one_minus_p_normal():
    model = SAOE(PoolBackbone(), topk_ratio=0.25, n_scales=1).eval()
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 1.0, -1.0]))
        model.classifier.weight[1, 0] = 4.0  # seen logit grows with the image value
    images = constant_images([0.0, 0.5], size=8)  # 2x2 cells, K = 1
    images[1, :, :4, :4] = 1.0  # one bright cell: the top-1 cell
    logits = model.logits(images)
    assert torch.allclose(logits, torch.tensor([[0.0, 1.0, -1.0], [0.0, 5.0, -1.0]]))
    expected = 1 - torch.softmax(logits, dim=1)[:, 0]
    assert torch.allclose(model(images)["score"], expected)


def test_outlier_exposure_is_cross_entropy_to_uniform():
    assert outlier_exposure_loss(torch.zeros(4, 3)).item() == pytest.approx(torch.log(torch.tensor(3.0)).item())
    confident = torch.tensor([[10.0, 0.0, 0.0]])
    assert outlier_exposure_loss(confident) > outlier_exposure_loss(torch.zeros(1, 3))
    model = SAOE(PoolBackbone(), n_scales=1)  # no BN: logits do not depend on the batch
    images, labels = constant_images(VALUES), torch.tensor([0, 1, 2, 0, 2, 1])
    without = saoe_loss(model, images, labels)
    with_oe = saoe_loss(model, images, labels, constant_images([0.9]), oe_weight=0.5)
    assert with_oe.item() == pytest.approx(without.item() + 0.5 * outlier_exposure_loss(model.logits(constant_images([0.9]))).item(), rel=1e-5)


def test_saoe_trains_with_outlier_exposure():
    config = DRAConfig(backbone="resnet18", weights="random", image_size=32, epochs=1, steps_per_epoch=1,
                       batch_size=3, eval_batch_size=11, n_scales=1)
    trained = train_saoe(image_set(size=32), config, seed=0, outliers=image_set(4, 0, size=32, seed=9), progress=False)
    scores = trained.score(image_set(seed=5, size=32).images)["score"]
    assert len(trained.history) == 1 and scores.shape == (11,) and ((scores >= 0) & (scores <= 1)).all()


# ------------------------------------------------------------------------------------------
# MLEP baseline (our image adaptation; DRA §4.1, App. B.2)

from osad_lib.methods.baselines.dra_baselines import MLEP, mlep_loss, train_mlep, triplet_margin_loss  # noqa: E402


def unit(*rows: list[float]) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.tensor(rows, dtype=torch.float32), dim=1)


def test_triplet_margin_loss_by_hand():
    labels = torch.tensor([NORMAL, NORMAL, SEEN])
    # normals and the anomaly at the same point: every triplet costs the margin
    assert triplet_margin_loss(unit([1, 0], [1, 0], [1, 0]), labels, margin=1.0).item() == pytest.approx(1.0)
    # anomaly opposite to both normals (squared distance 4 > 0 + margin): no loss
    assert triplet_margin_loss(unit([1, 0], [1, 0], [-1, 0]), labels, margin=1.0).item() == pytest.approx(0.0)
    # orthogonal normals (d_ap = 2), anomaly on the first normal: anchor 0 → max(0, 2 − 0 + 1) = 3,
    # anchor 1 → d_an = 2 → max(0, 2 − 2 + 1) = 1; mean over the two (a, p ≠ a, n) triplets = 2
    assert triplet_margin_loss(unit([1, 0], [0, 1], [1, 0]), labels, margin=1.0).item() == pytest.approx(2.0)
    # a larger margin costs more; pseudo anomalies (label 2) are no negatives; one normal: no triplet
    assert triplet_margin_loss(unit([1, 0], [1, 0], [-1, 0]), labels, margin=5.0).item() == pytest.approx(1.0)
    assert triplet_margin_loss(unit([1, 0], [1, 0], [1, 0]), torch.tensor([NORMAL, NORMAL, PSEUDO])).item() == 0.0
    assert triplet_margin_loss(unit([1, 0], [1, 0]), torch.tensor([NORMAL, SEEN])).item() == 0.0


def test_mlep_prediction_loss_comes_from_normals_only():
    torch.manual_seed(0)
    model = MLEP(PoolBackbone(), n_scales=1, embed_dim=4)  # no batch norm: samples are independent
    assert model.decoder[-1].out_channels == 3  # reconstructs the (unfrozen) input image
    images, labels = torch.rand(5, 3, 16, 16), torch.tensor([NORMAL, SEEN, NORMAL, SEEN, NORMAL])
    embeddings, errors = model.encode(images)
    assert embeddings.shape == (5, 4) and torch.allclose(embeddings.norm(dim=1), torch.ones(5))
    assert mlep_loss(model, images, labels, margin_weight=0.0).item() == pytest.approx(errors[labels == 0].mean().item())
    changed = images.clone()
    changed[labels == SEEN] = 1.0  # anomalies' reconstruction never enters the prediction term
    assert mlep_loss(model, changed, labels, margin_weight=0.0).item() == pytest.approx(errors[labels == 0].mean().item())
    full = mlep_loss(model, images, labels, margin=1.0, margin_weight=0.5).item()
    expected = errors[labels == 0].mean() + 0.5 * triplet_margin_loss(embeddings, labels, 1.0)
    assert full == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(model(images)["score"], errors)  # score = reconstruction error


def test_mlep_trains_a_few_steps_and_scores():
    config = DRAConfig(backbone="resnet18", weights="random", image_size=32, epochs=2, steps_per_epoch=2,
                       batch_size=6, eval_batch_size=11, n_scales=2)
    runs = [train_mlep(image_set(size=32), config, seed=1, progress=False) for _ in range(2)]
    assert len(runs[0].history) == 2 and runs[0].history == runs[1].history  # seeded
    scores = runs[0].score(image_set(seed=5, size=32).images)["score"]
    assert scores.shape == (11,) and (scores > 0).all() and torch.isfinite(torch.tensor(scores)).all()
    with pytest.raises(ConfigError, match="outlier"):
        train_mlep(image_set(size=32), config, seed=1, outliers=image_set(4, 0, size=32), progress=False)
    cached = DRAConfig(backbone="resnet18", weights="random", image_size=32, epochs=1, steps_per_epoch=1,
                       batch_size=3, eval_batch_size=11, n_scales=1, frozen_stages=4, cache_stems=True)
    trained = train_mlep(image_set(size=32), cached, seed=0, progress=False)
    assert trained.model.decoder[-1].kernel_size == (1, 1)  # all stages frozen: reconstructs the stem's map
    assert trained.score(image_set(seed=5, size=32).images)["score"].shape == (11,)


# ------------------------------------------------------------------------------------------
# experiments module (notebook 02_dra)

import pandas as pd  # noqa: E402

from osad_lib.experiments import runnable  # noqa: E402
from osad_lib.experiments import dra as dra_experiments  # noqa: E402
from osad_lib.paper.means import with_subset_means  # noqa: E402
from osad_lib.profiles import configure  # noqa: E402


def test_paper_grid_is_listed_without_data(tmp_path):
    (tmp_path / "data").mkdir()
    cfg = configure("02_dra", profile="paper", data_root=str(tmp_path / "data"), output_dir=str(tmp_path))
    items = dra_experiments.grid(cfg)
    rows = pd.DataFrame([{**vars(i.experiment), "seen": i.experiment.extra_key["seen_class"]} for i in items])
    dra = rows[(rows["method"] == "dra") & (rows["variant"] == "")]
    general, hard = dra[dra["setting"] == "general"], dra[dra["setting"] == "hard"]
    assert set(general["table"]) == {"table1"} and set(hard["table"]) == {"table2"}
    assert len(general) == 23 * 2 * len(cfg.seeds)  # 15 MVTec categories + 8 datasets, 1 and 10 shots
    per_dataset = hard.groupby("dataset")["subset"].nunique().to_dict()
    assert per_dataset == {"mvtecad": 9, "aitex": 6, "elpv": 2, "mastcam": 9, "hyperkvasir": 4}
    assert {"carpet/metal", "metal_nut/flip", "mono", "broken_end", "barretts-short-segment"} <= set(hard["subset"])
    assert set(dra["mode"]) == {"faithful"} and not dra["deviations"].str.contains("mode=").any()
    assert (hard.loc[hard["dataset"] == "hyperkvasir", "deviations"].str.contains("LAG")).all()
    assert set(rows["method"]) == {"dra", "devnet", "saoe", "mlep", "deepsad", "minns", "kdad"}
    appendix = rows[rows["method"].isin(["deepsad", "minns"])]
    assert set(appendix["n_shots"]) == {10} and set(appendix["variant"]) == {""}
    kdad = rows[rows["method"] == "kdad"]  # unsupervised: once per test set, n_shots 0 as in Tables 1/2
    assert set(kdad["n_shots"]) == {0} and len(kdad) == (23 + 30) * len(cfg.seeds)
    clean = rows[rows["variant"] == "clean"]
    assert set(zip(clean["method"], clean["setting"], clean["n_shots"])) == {("dra", "general", 10)}
    assert set(clean["mode"]) == {"clean"} and not clean["deviations"].str.contains("mode=").any()
    assert rows.loc[rows["method"] == "mlep", "deviations"].str.contains("MLEP image adaptation is ours").all()
    assert (rows.loc[rows["dataset"] == "mvtecad", "manifest_id"] == "").all()  # no data: no manifest yet
    assert all(i.train_images > 0 for i in items)


def test_smoke_grid_runs_the_hard_setting_on_synthetic_data(tmp_path):
    cfg = configure("02_dra", profile="smoke", output_dir=str(tmp_path))
    items, missing = runnable(dra_experiments.grid(cfg))
    assert not missing
    settings = {(i.experiment.setting, i.experiment.n_shots, i.experiment.method) for i in items}
    assert ("hard", 5, "dra") in settings and ("general", 1, "dra") in settings and ("hard", 5, "devnet") in settings
    assert ("general", 5, "deepsad") in settings and ("hard", 5, "minns") in settings
    assert ("general", 1, "deepsad") not in settings and ("hard", 5, "mlep") in settings  # appendix: 5 shots in smoke
    clean = [i.experiment for i in items if i.experiment.variant == "clean"]
    assert [(e.method, e.setting, e.n_shots) for e in clean] == [("dra", "general", 5)]
    assert dra_experiments.run_config(cfg, clean[0]).mode == "clean"
    faithful = next(i.experiment for i in items if i.experiment.method == "dra")
    assert dra_experiments.run_config(cfg, faithful) == dra_experiments.dra_config(cfg)
    config = dra_experiments.dra_config(cfg)
    assert (config.image_size, config.backbone, config.weights, config.batch_size) == (64, "resnet18", "random", 12)
    assert all(i.experiment.manifest_id for i in items)


def test_dataset_means_follow_the_paper_rows():
    base = {"paper": "dra", "table": "table2", "setting": "hard", "n_shots": 10, "method": "dra", "variant": "",
            "backbone": "resnet18", "profile": "demo", "metric": "auroc", "status": "ok", "deviations": "x"}
    rows = pd.DataFrame([
        {**base, "dataset": "elpv", "subset": "mono", "seed": 0, "value": 0.6},
        {**base, "dataset": "elpv", "subset": "poly", "seed": 0, "value": 0.8},
        {**base, "dataset": "mvtecad", "subset": "carpet/color", "seed": 0, "value": 0.5},
        {**base, "dataset": "mvtecad", "subset": "carpet/cut", "seed": 0, "value": 0.7},
        {**base, "dataset": "mvtecad", "subset": "metal_nut/bent", "seed": 0, "value": 0.9},
    ])
    out = with_subset_means(rows)
    means = out[out["subset"].str.endswith("mean")].set_index("subset")
    assert means["value"].to_dict() == pytest.approx({"mean": 0.7, "carpet/mean": 0.6})  # metal_nut: 1 of 4, no mean
    assert means.loc["mean", "deviations"] == "x"  # both ELPV seen classes: a full mean
    assert means.loc["carpet/mean", "deviations"] == "x; mean over 2/5 subsets"  # partial: says so
    assert (means["status"] == "ok").all()  # paired_differences reads them


def test_test_subsample_keeps_class_shares_and_is_seeded():
    images = image_set(n_normal=30, n_anomaly=0)
    images = ImageSet(images.images, torch.tensor([0] * 10 + [1] * 20), ["good"] * 10 + ["a"] * 12 + ["b"] * 8,
                      None, images.paths)
    small = subsample(images, 15, seed=1)
    assert len(small) == 15 and sorted(small.classes).count("a") == 6 and small.classes.count("good") == 5
    assert small.paths == subsample(images, 15, seed=1).paths
    assert small.paths != subsample(images, 15, seed=2).paths
    assert subsample(images, 0, seed=1) is images


def test_cached_batches_draw_pool_pseudo_anomalies_without_repeats_and_anomaly_views():
    """Cached training: a batch holds round(pseudo_prob × 2B//3) pseudo slots from the pool, drawn
    without repetition until the pool is used up; with ``dihedral`` a labelled anomaly's input is
    one of its precomputed views."""
    from osad_lib.components.stems import StemFeatures

    train = image_set(n_normal=8, n_anomaly=3)
    stems = StemFeatures((torch.arange(11.0).view(11, 1, 1, 1).expand(11, 2, 2, 2).half(),))
    views = {r: (torch.full((7, 2, 2, 2), 100.0 * r + 1).half(),) for r in range(8, 11)}  # anomaly rows 8..10
    stems = stems.with_views(views)
    pool = StemFeatures(((1000 + torch.arange(6.0)).view(6, 1, 1, 1).expand(6, 2, 2, 2).half(),))
    config = DRAConfig(batch_size=6, frozen_stages=1, cache_stems=True, rotation_degrees=0.0, dihedral=True)
    assert (config.n_normal_slots, config.n_pseudo_slots, config.n_anomaly_slots) == (4, 2, 2)
    torch.manual_seed(0)
    data = DRATrainingData(train, config, seed=0, stems=stems, pseudo_stems=pool)
    batches = iter(data.sampler())
    pool_draws, anomaly_values = [], set()
    for _ in range(6):
        indices = next(batches)
        (feats,), labels = data.batch(indices)
        assert labels.tolist() == [NORMAL, NORMAL, PSEUDO, PSEUDO, SEEN, SEEN]
        for i, label, value in zip(indices, labels.tolist(), feats[:, 0, 0, 0].tolist()):
            if label == PSEUDO:
                pool_draws.append(value)
            elif label == SEEN:
                assert value in (i, 100 * i + 1)  # the row itself or one of its views
                anomaly_values.add(value)
            else:
                assert value == i  # a normal's own cached stem
    assert sorted(pool_draws[:6]) == sorted(pool_draws[6:]) == [1000.0 + k for k in range(6)]  # every row once per pass
    assert any(v > 100 for v in anomaly_values) and any(v < 100 for v in anomaly_values)
    refs = data.references()
    assert isinstance(refs, list) and refs[0].shape == (5, 2, 2, 2)
    clean = DRATrainingData(train, DRAConfig(mode="clean", frozen_stages=1, cache_stems=True), 0, stems=stems,
                            pseudo_stems=pool)
    assert clean.references()[0][:, 0, 0, 0].tolist() == clean.fixed_reference_idx.tolist()
    with pytest.raises(ConfigError, match="frozen_stages"):
        DRAConfig(cache_stems=True)


def test_train_dra_on_cached_stems():
    config = DRAConfig(backbone="resnet18", weights="random", image_size=32, epochs=1, steps_per_epoch=1,
                       batch_size=3, eval_batch_size=11, n_scales=1, frozen_stages=3, cache_stems=True, dihedral=True,
                       composite_channels=16)
    train = image_set(size=32)
    trained = dra_method.train_dra(train, config, seed=0, progress=False)
    assert trained.data.stems is not None and len(trained.data.pseudo_stems) == int((train.labels == 0).sum())
    assert set(trained.data.stems.views) == set(torch.nonzero(train.labels == 1).flatten().tolist())
    assert trained.model.heads["composite"].project.out_channels == 16
    scores = trained.score(image_set(seed=5, size=32).images)
    assert scores["score"].shape == (11,) and torch.isfinite(torch.tensor(scores["score"])).all()


# ------------------------------------------------------------------------------------------
# appendix tables, faithful vs clean, score explorer

from osad_lib.results import Experiment  # noqa: E402


def store_rows(cfg, rows: list[tuple[str, str, str, int, str, str, int, float]]) -> None:
    """Write (method, setting, subset, n_shots, variant, dataset, seed, auroc) rows to the notebook's store."""
    for method, setting, subset, n_shots, variant, dataset, seed, value in rows:
        e = Experiment(notebook="02_dra", paper="dra", table=dra_experiments.TABLES[setting], dataset=dataset,
                       subset=subset, setting=setting, n_shots=n_shots, method=method, variant=variant,
                       backbone="resnet18", seed=seed, profile=cfg.profile.name, manifest_id="m",
                       deviations="x")
        cfg.store.append(e.rows({"auroc": value}, 1.0))


def test_deep_sad_and_minns_rows_join_tables_7_and_8(tmp_path):
    cfg = configure("02_dra", profile="demo", output_dir=str(tmp_path))
    rows = []
    for seed, shift in ((0, 0.0), (1, 0.02)):
        rows += [(m, "general", "", 10, "", "elpv", seed, v + shift)
                 for m, v in (("deepsad", 0.70), ("minns", 0.80), ("dra", 0.85), ("devnet", 0.84))]
        rows += [("deepsad", "general", "", 1, "", "elpv", seed, 0.6)]  # one shot: not in the appendix tables
        rows += [(m, "hard", s, 10, "", "elpv", seed, v + shift)
                 for m in ("deepsad", "minns", "dra") for s, v in (("mono", 0.6), ("poly", 0.7))]
    store_rows(cfg, rows)
    table7 = dra_experiments.comparison(cfg, "table7").set_index("method")
    assert sorted(table7.index) == ["deepsad", "dra", "minns"]  # DevNet is no Table 7 method
    assert table7.loc["deepsad", "paper_mean"] == pytest.approx(0.722)
    assert table7.loc["deepsad", "measured_mean"] == pytest.approx(0.71) and table7.loc["deepsad", "n_seeds"] == 2
    assert table7.loc["minns", "paper_mean"] == pytest.approx(0.788)
    table8 = dra_experiments.comparison(cfg, "table8")
    deepsad = table8[table8["method"] == "deepsad"].set_index("subset")
    assert set(deepsad.index) == {"mono", "poly", "mean"}
    assert deepsad.loc["mean", "measured_mean"] == pytest.approx(0.66)
    assert deepsad["paper_mean"].notna().all()


def test_faithful_vs_clean_table_pairs_seeds(tmp_path):
    cfg = configure("02_dra", profile="demo", output_dir=str(tmp_path))
    store_rows(cfg, [
        ("dra", "general", "", 10, "", "elpv", 0, 0.80), ("dra", "general", "", 10, "clean", "elpv", 0, 0.83),
        ("dra", "general", "", 10, "", "elpv", 1, 0.70), ("dra", "general", "", 10, "clean", "elpv", 1, 0.71),
        ("dra", "general", "", 1, "", "elpv", 0, 0.60),  # no clean partner: not in the table
        ("mlep", "general", "", 10, "", "elpv", 0, 0.50),
    ])
    table, sentence = dra_experiments.mode_comparison(cfg)
    assert len(table) == 1 and table["n_shots"].tolist() == [10]  # the 1-shot run has no clean partner
    row = table.iloc[0]
    assert (row["diff_mean"], row["diff_se"]) == pytest.approx((0.02, 0.01))  # per seed +0.03, +0.01
    assert (row["n_seeds"], row["n_improved"]) == (2, 2)
    assert "+0.020 ± 0.010" in sentence and "2 seeds" in sentence
    empty, message = dra_experiments.mode_comparison(configure("02_dra", profile="demo", output_dir=str(tmp_path / "x")))
    assert empty.empty and "clean_runs" in message
    assert "the LR decays at epoch 5." in dra_experiments.mode_differences(dra_experiments.dra_config(cfg))  # demo: 6 epochs
    assert "epoch 9/19/29" in dra_experiments.mode_differences(DRAConfig())
    assert "epoch 10/20" in dra_experiments.mode_differences(DRAConfig())


def test_score_explorer_frame_is_a_valid_score_frame(tmp_path):
    from osad_lib import plots

    images = ImageSet(images=torch.zeros(4, 3, 8, 8, dtype=torch.uint8), labels=torch.tensor([0, 0, 1, 1]),
                      classes=["good", "good", "mono", "poly"], masks=None, paths=[f"p{i}.png" for i in range(4)])
    heads = {h: torch.arange(4.0).numpy() * (i + 1) for i, h in enumerate(dra_experiments.SCORE_COLUMNS)}
    raw = dra_experiments.run._score_frame(images, heads, seen=["mono"])
    frame = plots.check_score_frame(dra_experiments.explorer_frame(raw))
    assert frame["kind"].tolist() == ["normal", "normal", "seen", "unseen"]
    assert frame["class"].tolist() == ["good", "good", "mono", "poly"]
    assert plots.score_columns(frame) == ["score", "score_holistic", "score_seen", "score_pseudo", "score_composite"]
    assert frame["score"].tolist() == pytest.approx(heads["score"].tolist())

    cfg = configure("02_dra", profile="demo", output_dir=str(tmp_path))
    assert dra_experiments.explorer_run(cfg)[0].empty
    e = Experiment(notebook="02_dra", paper="dra", table="table2", dataset="elpv", subset="mono", setting="hard",
                   n_shots=10, method="dra", variant="", backbone="efficientnet_lite0", seed=cfg.seeds[0],
                   profile="demo", manifest_id="m")
    cfg.store.append(e.rows({"auroc": 0.7}, 1.0))
    path = dra_experiments.scores_file(cfg, e)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw.to_csv(path, index=False)
    stored, title = dra_experiments.explorer_run(cfg)
    assert len(plots.check_score_frame(stored)) == 4 and "seen=mono" in title and "10-shot" in title
