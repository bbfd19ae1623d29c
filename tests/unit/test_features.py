"""The feature stage (``osad_lib.components.features``): extraction, pseudo versions, the cache.

Facts checked: ``docs/official_code/ahl.md`` "The pipeline the code implements",
"Feature files" and "Pseudo-anomaly generators for the features" (features of every image at both
pyramid scales, plus pseudo-anomalous versions of every training normal per generator).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from osad_lib.components import features
from osad_lib.components.stems import StemFeatures
from osad_lib.data.tensors import ImageSet
from osad_lib.methods.ahl import heads as ahl
from osad_lib.methods.devnet.model import DevNet, DevNetConfig


def tiny_devnet(seed: int = 0) -> DevNet:
    torch.manual_seed(seed)
    return DevNet(DevNetConfig(backbone="resnet18", weights="random", image_size=32)).eval()


def image_set(n_normal: int, n_anomaly: int, seed: int = 0) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    n = n_normal + n_anomaly
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    labels = torch.tensor([0] * n_normal + [1] * n_anomaly)
    classes = ["good"] * n_normal + ["scratch"] * n_anomaly
    return ImageSet(images, labels, classes, None, [f"img{i}.png" for i in range(n)])


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OSAD_CACHE", str(tmp_path))
    return tmp_path


def test_extract_features_are_the_last_map_of_both_scales_and_reproduce_the_score():
    model = tiny_devnet()
    images = image_set(3, 1).images
    feats = features.extract_features(model, images, batch_size=2)
    assert [tuple(f.shape) for f in feats] == [(4, 512, 1, 1), (4, 512, 1, 1)]  # 32 px and 16 px at stride 32
    assert feats[0].dtype == torch.float16
    with torch.no_grad():
        direct = model(images.float() / 255)
    scorer = ahl.build_scorer("devnet", 512, base_state=model.state_dict())
    assert torch.allclose(scorer.score(None, feats), direct, atol=1e-2, rtol=1e-2)


def test_pseudo_images_are_deterministic_and_change_the_images():
    normals = image_set(4, 0).images
    for generator in features.PSEUDO_GENERATORS:
        a = features.pseudo_images(normals, generator, seed=1)
        b = features.pseudo_images(normals, generator, seed=1)
        assert a.dtype == torch.uint8 and a.shape == normals.shape
        assert torch.equal(a, b)
        assert (a != normals).any(dim=(1, 2, 3)).all()


def test_cached_features_second_call_does_not_recompute(cache, monkeypatch):
    model, train, test = tiny_devnet(), image_set(6, 2), image_set(3, 3, seed=1)
    calls = []
    real = features.extract_features
    monkeypatch.setattr(features, "extract_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    bank = features.cached_features(model, train, test, "manifest-a", seed=0, progress=False, reference_rows=[0, 1])
    n_calls = len(calls)
    assert n_calls > 0
    assert bank.n_normals == 6 and bank.n_anomalies == 2 and set(bank.pseudo) == set(features.PSEUDO_GENERATORS)
    assert bank.test_labels.tolist() == [0, 0, 0, 1, 1, 1] and len(bank.references[0]) == 2
    assert features.feature_file(bank.key).is_file()
    again = features.cached_features(model, train, test, "manifest-a", seed=0, progress=False, reference_rows=[0, 1])
    assert len(calls) == n_calls  # loaded, not recomputed
    assert again.key == bank.key and torch.equal(again.normal[0], bank.normal[0])
    assert torch.equal(again.pseudo["draem"][1], bank.pseudo["draem"][1])


def test_cache_key_follows_the_split_and_the_checkpoint(cache):
    train, test = image_set(4, 1), image_set(2, 2, seed=1)
    a = features.cached_features(tiny_devnet(0), train, test, "m1", generators=("cutpaste",), progress=False)
    b = features.cached_features(tiny_devnet(0), train, test, "m2", generators=("cutpaste",), progress=False)
    c = features.cached_features(tiny_devnet(1), train, test, "m1", generators=("cutpaste",), progress=False)
    d = features.cached_features(tiny_devnet(0), train, test.select([0, 1, 2]), "m1", generators=("cutpaste",),
                                 progress=False)
    assert len({a.key, b.key, c.key, d.key}) == 4 and len(d.test_labels) == 3
    assert features.model_hash(tiny_devnet(0)) == features.model_hash(tiny_devnet(0))


def test_normal_subset_is_seeded_and_sorted():
    train = image_set(10, 2)
    rows = features.normal_subset(train, 4, seed=3)
    assert len(rows) == 4 and np.all(np.diff(rows) > 0) and rows.max() < 10
    assert np.array_equal(rows, features.normal_subset(train, 4, seed=3))
    assert np.array_equal(features.normal_subset(train, 0, seed=3), np.arange(10))


def _tiny_dataset(root):
    from PIL import Image

    for folder, n in (("train/good", 3), ("test/good", 2), ("test/crack", 2)):
        (root / folder).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8), (40 * i, 10, 200)).save(root / folder / f"{i:03d}.png")
    return root


def test_dataset_features_are_computed_once_and_follow_the_files(cache, tmp_path):
    root = _tiny_dataset(tmp_path / "data")
    calls = []

    def compute():
        calls.append(1)
        return {"levels": [torch.randn(7, 4, 2, 2)]}

    key = features.dataset_key(root, "lite0", 64)
    first = features.cached_dataset_features("frozen", key, compute)
    again = features.cached_dataset_features("frozen", features.dataset_key(root, "lite0", 64), compute)
    assert len(calls) == 1 and torch.equal(first["levels"][0], again["levels"][0])
    assert features.dataset_key(root, "lite0", 128) != key  # another setting, another entry
    (root / "test/crack/000.png").unlink()
    assert features.dataset_key(root, "lite0", 64) != key  # a changed dataset is never served stale


def test_cache_key_follows_the_content_of_cached_pseudo_stems(cache):
    # a bank made from other pseudo anomalies (e.g. cutmix patches from another list of normals)
    # must not be read back for these
    model, train, test = tiny_devnet(0), image_set(4, 1), image_set(2, 2, seed=1)
    normals = train.images[:4].float() / 255

    def bank(shift: float) -> features.FeatureBank:
        with torch.no_grad():
            stems = StemFeatures(tuple(s.half() for s in model.stem_pyramid((normals + shift).clamp(0, 1))))
        return features.cached_features(model, train, test, "m1", generators=("cutpaste",), progress=False,
                                        pseudo_stems={"cutpaste": stems})

    first, same, other = bank(0.0), bank(0.0), bank(0.1)
    assert first.key == same.key and first.key != other.key
    assert not torch.equal(first.pseudo["cutpaste"][0], other.pseudo["cutpaste"][0])
