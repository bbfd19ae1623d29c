"""Synthetic dataset: deterministic, MVTec layout, masks aligned with the drawn defects."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from osad_lib.data.mvtec import read_marker, read_mvtec_layout
from osad_lib.data.synthetic import (
    DEFECT_CLASSES, SUBSETS, SyntheticConfig, synthetic_root, synthetic_sample, write_synthetic,
)
from osad_lib.validate import ConfigError

SMALL = SyntheticConfig(n_train=4, n_test_normal=3, n_per_class=2, image_size=64, seed=3)


def _digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.png"))}


@pytest.mark.parametrize("subset", SUBSETS)
def test_generation_is_deterministic_and_in_mvtec_layout(tmp_path, subset):
    counts = write_synthetic(tmp_path / "a", subset, SMALL)
    write_synthetic(tmp_path / "b", subset, SMALL)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    samples = read_mvtec_layout(tmp_path / "a")
    assert counts == {"train_normal": 4, "test_normal": 3, "anomalies": 10, "classes": 5}
    assert sorted({s.anomaly_class for s in samples if s.label}) == sorted(DEFECT_CLASSES)
    assert all(s.mask_path for s in samples if s.label) and not any(s.mask_path for s in samples if not s.label)
    other = write_synthetic(tmp_path / "c", subset, SyntheticConfig(**{**SMALL.__dict__, "seed": 4}))
    assert other == counts and _digest(tmp_path / "c") != _digest(tmp_path / "a")


@pytest.mark.parametrize("subset", SUBSETS)
@pytest.mark.parametrize("defect", DEFECT_CLASSES)
def test_mask_covers_exactly_the_changed_pixels(subset, defect):
    for index in range(3):
        clean, image, mask = synthetic_sample(subset, defect, index, SMALL)
        changed = np.abs(image - clean).max(axis=-1)
        inside = mask.astype(bool)
        assert inside.sum() >= 4
        assert np.all(changed[~inside] == 0)  # nothing outside the mask is touched
        assert np.mean(changed[inside] > 0.02) > 0.9  # the defect is visible where the mask says
        assert changed[inside].mean() > 0.15


def test_object_defects_stay_on_the_object():
    for defect in DEFECT_CLASSES:
        clean, _, mask = synthetic_sample("object", defect, 0, SMALL)
        background = np.all(np.abs(clean - clean[0, 0]) < 0.08, axis=-1)
        assert (mask.astype(bool) & background).sum() <= 0.05 * mask.sum()


def test_written_masks_match_images(tmp_path):
    write_synthetic(tmp_path, "weave", SMALL)
    for s in read_mvtec_layout(tmp_path):
        if s.label:
            mask = np.asarray(Image.open(tmp_path / s.mask_path))
            assert mask.shape == (64, 64) and set(np.unique(mask)) <= {0, 255} and mask.max() == 255


def test_defect_classes_look_different():
    """Mean colour inside the mask differs between classes (they are visually distinct)."""
    colours = {}
    for defect in DEFECT_CLASSES:
        _, image, mask = synthetic_sample("grain", defect, 0, SMALL)
        colours[defect] = image[mask.astype(bool)].mean(axis=0)
    distinct = {tuple(np.round(c, 1)) for c in colours.values()}
    assert len(distinct) >= 4


def test_cached_root_is_built_once(tmp_path, monkeypatch):
    monkeypatch.setenv("OSAD_CACHE", str(tmp_path))
    root = synthetic_root("grain", SMALL)
    marker = read_marker(root)
    assert marker["key"]["subset"] == "grain" and marker["anomalies"] == 10
    stamp = (root / "train/good/000.png").stat().st_mtime_ns
    assert synthetic_root("grain", SMALL) == root
    assert (root / "train/good/000.png").stat().st_mtime_ns == stamp
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".") and p.suffix != ".lock"]  # no leftovers


@pytest.mark.parametrize("kwargs, message", [({"n_train": 0}, "'n_train'"), ({"image_size": 16}, "'image_size'")])
def test_bad_synthetic_parameters(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SyntheticConfig(**kwargs)
