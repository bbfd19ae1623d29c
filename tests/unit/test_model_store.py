"""The run's model store: a trained model is stored as what training changed, loads back exactly,
and is retrained (with one line) when the model built now no longer matches."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from osad_lib.data.tensors import tensors_digest
from osad_lib.experiments import model_store
from osad_lib.profiles import NotebookConfig, get_profile


@dataclasses.dataclass(frozen=True)
class TinySettings:
    hidden: int = 64


class PretrainedAndHead(nn.Module):
    """A frozen "pretrained" layer (fixed weights, as loaded from a file) and a randomly drawn head."""

    def __init__(self, pretrained_value: float = 0.5):
        super().__init__()
        self.pretrained = nn.Linear(64, 64)
        nn.init.constant_(self.pretrained.weight, pretrained_value)
        nn.init.zeros_(self.pretrained.bias)
        self.head = nn.Linear(64, 1)


def trained(seed: int = 3) -> PretrainedAndHead:
    torch.manual_seed(seed)
    model = PretrainedAndHead()
    with torch.no_grad():
        model.head.weight.add_(1.0)
    return model


@pytest.fixture
def cfg(tmp_path) -> NotebookConfig:
    return NotebookConfig(notebook="01_devnet", profile=get_profile("smoke"), device="cpu", seeds=(0,),
                          data_root=tmp_path, output_dir=tmp_path, resume=True, interactive=False)


def store(cfg, build, train):
    return model_store.load_or_train(cfg, "tiny", TinySettings(), "manifest-1", 0, build, train)


def test_stored_model_holds_only_the_changed_entries_and_loads_back_exactly(cfg):
    first, loaded = store(cfg, PretrainedAndHead, trained)
    assert not loaded
    saved = torch.load(model_store.model_file(cfg, "tiny", TinySettings(), "manifest-1", 0), weights_only=True)
    assert set(saved["changed"]) == {"head.weight", "head.bias"}  # the frozen layer is not stored

    torch.manual_seed(99)  # the model built for loading draws another random head
    second, loaded = store(cfg, PretrainedAndHead, lambda: pytest.fail("a stored model must not be retrained"))
    assert loaded and not second.training
    for name, tensor in first.state_dict().items():
        assert torch.equal(second.state_dict()[name], tensor), name


def test_storing_leaves_the_random_stream_where_training_left_it(cfg):
    torch.manual_seed(5)
    PretrainedAndHead()
    expected = torch.rand(3)  # what the run draws next after training, e.g. DRA's references

    def train_drawing() -> PretrainedAndHead:
        torch.manual_seed(5)
        return PretrainedAndHead()

    store(cfg, PretrainedAndHead, train_drawing)  # builds another model to store the difference from
    assert torch.equal(torch.rand(3), expected)


def test_a_stored_model_that_no_longer_fits_the_built_one_is_trained_again(cfg, capsys):
    store(cfg, PretrainedAndHead, trained)
    retrained = []

    def train_again() -> PretrainedAndHead:
        retrained.append(True)
        return trained(seed=4)

    other_weights = lambda: PretrainedAndHead(pretrained_value=0.25)  # noqa: E731 (other pretrained weights)
    model, loaded = store(cfg, other_weights, train_again)
    assert not loaded and retrained
    assert "does not fit the model built now" in capsys.readouterr().err
    assert torch.equal(model.pretrained.weight, torch.full((64, 64), 0.5))  # what train_again returned


def test_changes_and_digest():
    built, after = PretrainedAndHead().state_dict(), trained().state_dict()
    stored = model_store.changes(after, built)
    assert set(stored["changed"]) == {"head.weight", "head.bias"}
    unchanged = {k: v for k, v in after.items() if k.startswith("pretrained")}
    assert stored["unchanged_sha256"] == tensors_digest(unchanged)
    nudged = {**unchanged, "pretrained.bias": unchanged["pretrained.bias"] + 1e-7}
    assert tensors_digest(nudged) != stored["unchanged_sha256"]
