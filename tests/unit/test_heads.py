"""Top-K MIL head and image pyramid (docs/official_code/dra.md "Model",
docs/official_code/devnet.md "Model and training")."""

import pytest
import torch

from osad_lib.components.heads import (
    TopKMILHead, average_scales, image_pyramid, pyramid_score, top_k_count, top_k_mean,
)
from osad_lib.validate import ConfigError


def test_k_follows_the_code():
    assert top_k_count(14 * 14, 0.1) == 19
    assert top_k_count(7 * 7, 0.1) == 4
    assert top_k_count(4, 0.1) == 1  # at least one cell
    assert top_k_count(100, 1.0) == 100


def test_top_k_mean_by_hand():
    m = torch.tensor([[1.0, 9.0, 3.0, 7.0, 5.0, 0.0, 2.0, 4.0, 6.0, 8.0]])
    assert top_k_mean(m, 0.1).tolist() == [9.0]  # k = 1
    assert top_k_mean(m, 0.3).item() == pytest.approx((9 + 8 + 7) / 3)
    four_d = m[:, :9].reshape(1, 1, 3, 3)
    assert top_k_mean(four_d, 0.25).item() == pytest.approx((9 + 7) / 2)  # k = int(2.25) = 2
    with pytest.raises(ConfigError):
        top_k_mean(torch.zeros(1, 2, 3, 3))


def test_head_takes_absolute_values_then_top_k():
    head = TopKMILHead(in_channels=2, topk_ratio=0.25)
    with torch.no_grad():
        head.conv.weight.copy_(torch.tensor([1.0, 0.0]).view(1, 2, 1, 1))
        head.conv.bias.zero_()
    feats = torch.zeros(2, 2, 2, 2)
    feats[0, 0] = torch.tensor([[-6.0, 1.0], [2.0, 3.0]])
    feats[1, 0] = torch.tensor([[1.0, -1.0], [0.5, 0.0]])
    assert head.score_map(feats).shape == (2, 1, 2, 2)
    assert head(feats).tolist() == [6.0, 1.0]  # k = 1 of 4 cells, |−6| wins
    plain = TopKMILHead(in_channels=2, topk_ratio=0.0)
    plain.load_state_dict(head.state_dict())
    assert plain(feats).tolist() == pytest.approx([0.0, 0.125])  # plain mean, no |·|


def test_head_rejects_bad_ratio():
    with pytest.raises(ConfigError):
        TopKMILHead(8, topk_ratio=1.5)


def test_pyramid_sizes_and_nearest():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    levels = image_pyramid(x, 3)
    assert [tuple(t.shape) for t in levels] == [(2, 3, 8, 8), (2, 3, 4, 4), (2, 3, 2, 2)]
    assert levels[0] is x
    assert torch.equal(levels[1], x[:, :, ::2, ::2])  # nearest with factor 2 picks every other pixel
    assert torch.equal(levels[2], x[:, :, ::4, ::4])
    assert len(image_pyramid(x, 1)) == 1
    with pytest.raises(ConfigError):
        image_pyramid(x, 0)


def test_scores_averaged_over_scales():
    assert average_scales([torch.tensor([1.0, 2.0]), torch.tensor([3.0, 6.0])]).tolist() == [2.0, 4.0]
    x = torch.ones(2, 1, 8, 8)
    # score = number of pixels → (64 + 16) / 2
    assert pyramid_score(lambda t: t.flatten(1).sum(1), x, 2).tolist() == [40.0, 40.0]
