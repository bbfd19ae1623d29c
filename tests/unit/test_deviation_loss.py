"""Deviation loss and criteria (DevNet Eq. (1)-(3); docs/official_code/shared.md "Deviation loss") on
hand-computed inputs."""

import math

import pytest
import torch

from osad_lib.losses.deviation import (
    bce_loss, criterion, cross_entropy_loss, deviation_loss, draw_reference, focal_loss,
)
from osad_lib.validate import ConfigError

# Reference with mean 0 and unbiased std 1: deviations equal the scores.
REF = torch.tensor([-1.0, 0.0, 1.0])


def test_deviation_loss_hand_computed():
    scores = torch.tensor([0.5, -2.0, 3.0, 7.0])
    targets = torch.tensor([0, 0, 1, 1])
    # normals: |0.5| + |-2| ; anomalies: max(0, 5-3) + max(0, 5-7) → (0.5 + 2 + 2 + 0) / 4
    assert deviation_loss(scores, targets, reference=REF).item() == pytest.approx(1.125)
    # [B, 1] scores give the same value; margin is used
    assert deviation_loss(scores[:, None], targets, reference=REF).item() == pytest.approx(1.125)
    assert deviation_loss(scores, targets, margin=8.0, reference=REF).item() == pytest.approx((0.5 + 2 + 5 + 1) / 4)


def test_deviation_uses_reference_mean_and_std():
    ref = torch.tensor([1.0, 3.0, 5.0])  # mean 3, unbiased std 2
    loss = deviation_loss(torch.tensor([7.0]), torch.tensor([0]), reference=ref)
    assert loss.item() == pytest.approx(2.0)


def test_fresh_reference_is_standard_normal_and_seedable():
    r = draw_reference(5000, torch.Generator().manual_seed(0))
    assert abs(r.mean().item()) < 0.05 and abs(r.std().item() - 1) < 0.05
    scores, targets = torch.tensor([0.3, 4.0]), torch.tensor([0, 1])
    a = deviation_loss(scores, targets, generator=torch.Generator().manual_seed(1))
    b = deviation_loss(scores, targets, generator=torch.Generator().manual_seed(1))
    assert a.item() == b.item()
    gen = torch.Generator().manual_seed(1)
    first, second = (deviation_loss(scores, targets, generator=gen) for _ in range(2))
    assert first.item() != second.item()  # a fresh draw per call, as the code does
    assert abs(first.item() - (0.3 + 1.0) / 2) < 0.1


def test_deviation_loss_gradient_pushes_anomalies_up_normals_to_zero():
    scores = torch.tensor([2.0, 1.0], requires_grad=True)
    deviation_loss(scores, torch.tensor([0, 1]), reference=REF).backward()
    assert scores.grad[0] > 0 and scores.grad[1] < 0


def test_focal_and_bce_hand_computed():
    ln2 = math.log(2.0)
    assert bce_loss(torch.tensor([0.0]), torch.tensor([1])).item() == pytest.approx(ln2)
    assert focal_loss(torch.tensor([0.0]), torch.tensor([1])).item() == pytest.approx(0.25 * ln2)
    bce = math.log1p(math.exp(2.0))  # logit 2, target 0
    expected = (1 / (1 + math.exp(-2.0))) ** 2 * bce
    assert focal_loss(torch.tensor([2.0]), torch.tensor([0])).item() == pytest.approx(expected, rel=1e-5)
    no_focus = focal_loss(torch.tensor([2.0]), torch.tensor([0]), alpha=0.5, gamma=0.0)
    assert no_focus.item() == pytest.approx(0.5 * bce, rel=1e-5)


def test_cross_entropy_two_logits_and_scalar_scores():
    logits = torch.tensor([[2.0, -1.0], [0.0, 1.0]])
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1]))
    assert cross_entropy_loss(logits, torch.tensor([0, 1])).item() == pytest.approx(expected.item())
    s, y = torch.tensor([-1.5, 0.2, 3.0]), torch.tensor([0, 1, 1])
    assert cross_entropy_loss(s, y).item() == pytest.approx(bce_loss(s, y).item(), rel=1e-6)


def test_criterion_factory():
    s, y = torch.tensor([0.5, 2.0]), torch.tensor([0, 1])
    assert criterion("focal")(s, y).item() == pytest.approx(focal_loss(s, y).item())
    assert criterion("bce")(s, y).item() == pytest.approx(bce_loss(s, y).item())
    dev = criterion("deviation", generator=torch.Generator().manual_seed(3))
    assert dev(s, y).item() == pytest.approx(deviation_loss(s, y, generator=torch.Generator().manual_seed(3)).item())
    with pytest.raises(ConfigError, match="focal"):
        criterion("focall")


def test_bad_shapes_are_one_line_errors():
    with pytest.raises(ConfigError):
        deviation_loss(torch.zeros(2, 3), torch.zeros(2), reference=REF)
    with pytest.raises(ConfigError):
        deviation_loss(torch.zeros(3), torch.zeros(2), reference=REF)
