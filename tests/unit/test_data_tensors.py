"""Tensor path: decode once per resolution (cache reuse), split → ImageSets, mask checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from osad_lib.data import tensors
from osad_lib.data.mvtec import read_mvtec_layout
from osad_lib.data.protocols import general_split, hard_split
from osad_lib.data.synthetic import SyntheticConfig, write_synthetic
from osad_lib.data.tensors import ImageSet, load_images, load_split
from osad_lib.validate import ConfigError

SMALL = SyntheticConfig(n_train=6, n_test_normal=4, n_per_class=3, image_size=48, seed=1)


@pytest.fixture()
def dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("OSAD_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "weave"
    write_synthetic(root, "weave", SMALL)
    return root


@pytest.fixture()
def decode_counter(monkeypatch):
    calls = []
    real = tensors.decode_sample

    def counting(root, sample, size):
        calls.append(sample.path)
        return real(root, sample, size)

    monkeypatch.setattr(tensors, "decode_sample", counting)
    return calls


def test_second_load_does_not_decode(dataset, decode_counter):
    samples = read_mvtec_layout(dataset)
    first = load_images(dataset, samples, 32)
    assert len(decode_counter) == len(samples) == 25
    second = load_images(dataset, samples, 32)
    assert len(decode_counter) == 25  # memory-mapped cache, nothing decoded
    assert torch.equal(first.images, second.images) and torch.equal(first.masks, second.masks)
    load_images(dataset, samples, 24)  # a new resolution decodes again
    assert len(decode_counter) == 50


def test_changed_file_invalidates_cache(dataset, decode_counter):
    samples = read_mvtec_layout(dataset)
    load_images(dataset, samples, 32)
    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(dataset / "train/good/000.png")
    again = load_images(dataset, samples, 32)
    assert len(decode_counter) == 50 and again.images[0].max() == 0


def test_imageset_contents(dataset):
    samples = read_mvtec_layout(dataset)
    data = load_images(dataset, samples, 32, cache=False)
    assert data.images.dtype == torch.uint8 and data.images.shape == (25, 3, 32, 32)
    assert data.masks.shape == (25, 1, 32, 32) and set(data.masks.unique().tolist()) <= {0, 1}
    normal = data.labels == 0
    assert data.masks[normal].sum() == 0 and all(data.masks[~normal].flatten(1).sum(1) > 0)
    assert data.paths == [s.path for s in samples] and data.classes[0] == "good"
    assert data.batch([0, 1]).dtype == torch.float32 and 0 <= data.batch().min() and data.batch().max() <= 1
    # antialiased bilinear resize of the image equals PIL's
    expected = np.asarray(Image.open(dataset / samples[0].path).convert("RGB").resize((32, 32), Image.BILINEAR))
    np.testing.assert_array_equal(data.images[0].permute(1, 2, 0).numpy(), expected)


def test_load_split_composition(dataset, decode_counter):
    samples = read_mvtec_layout(dataset)
    split = general_split(samples, 2, 0, contamination=0.25, dataset="synthetic", subset="weave")
    train, test = load_split(split, dataset, 32)
    n_cont = len(split.train_contamination)
    assert n_cont == 2
    assert train.labels.tolist() == [0] * (6 + n_cont) + [1, 1]
    assert train.paths[:6] == list(split.train_normal)
    assert train.classes[6:6 + n_cont] == [c for _, c in split.train_contamination]  # true class kept, label 0
    assert test.paths == [p for p, _, _ in split.test] and test.labels.tolist() == [lbl for _, lbl, _ in split.test]
    assert not set(train.paths[6:]) & set(test.paths)
    hard_train, hard_test = load_split(hard_split(samples, "hole", 2, 0), dataset, 32)
    assert "hole" not in hard_test.classes and hard_train.classes[-2:] == ["hole", "hole"]
    assert len(decode_counter) == 25  # both splits reuse one cache of the dataset


def test_imageset_select():
    data = ImageSet(torch.arange(4, dtype=torch.uint8).view(4, 1, 1, 1).expand(4, 3, 2, 2).contiguous(),
                    torch.tensor([0, 0, 1, 1]), ["good", "good", "a", "b"], None, ["p0", "p1", "p2", "p3"])
    part = data.select([3, 0])
    assert part.paths == ["p3", "p0"] and part.labels.tolist() == [1, 0] and part.images[:, 0, 0, 0].tolist() == [3, 0]


def test_mask_size_mismatch_names_both_files(dataset):
    samples = read_mvtec_layout(dataset)
    bad = next(s for s in samples if s.label)
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(dataset / bad.mask_path)
    with pytest.raises(ConfigError) as err:
        load_images(dataset, samples, 32)
    message = str(err.value)
    assert str(dataset / bad.mask_path) in message and str(dataset / bad.path) in message and "\n" not in message


def test_unreadable_image_fails_without_leaving_a_cache(dataset):
    samples = read_mvtec_layout(dataset)
    (dataset / samples[3].path).write_bytes(b"\x89PNG broken")
    with pytest.raises(ConfigError, match="re-download"):
        load_images(dataset, samples, 32)
    from osad_lib import paths

    leftovers = [p for p in (paths.cache_dir() / "tensors").iterdir() if p.suffix != ".lock"]
    assert leftovers == []


def test_split_listing_missing_files_is_an_error(dataset):
    samples = read_mvtec_layout(dataset)
    split = general_split(samples, 1, 0)
    (dataset / split.train_normal[0]).unlink()
    with pytest.raises(ConfigError, match="make the split again"):
        load_split(split, dataset, 32)
