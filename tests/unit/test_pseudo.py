"""Pseudo-anomaly generators: binary non-empty masks, changes confined to the mask, determinism,
documented area ranges, shapes/dtypes, foreground placement and Otsu foreground masks."""

from __future__ import annotations

import pytest
import torch

from osad_lib.data.pseudo import (
    GENERATORS,
    apply_batch,
    color_jitter,
    cutmix_cross_image,
    cutpaste_same_image,
    cutpaste_scar,
    draem_perlin,
    foreground_mask,
    load_textures,
    otsu_threshold,
    perlin_mask,
    randaug_cutpaste,
)
from osad_lib.seeding import torch_generator
from osad_lib.validate import ConfigError

SIZE = 48


def noise_images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, SIZE, SIZE, generator=torch_generator(seed))


def defects(n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Real-anomaly stand-ins: saturated red blobs with their masks."""
    masks = torch.zeros(n, 1, SIZE, SIZE)
    masks[0, 0, 10:18, 12:26] = 1
    masks[-1, 0, 25:40, 20:24] = 1
    images = noise_images(n, seed=9) * (1 - masks)
    images[:, 0:1] += masks
    return images, masks


def params_for(name: str) -> dict:
    if name == "randaug_cutpaste":
        anomalies, masks = defects()
        return {"anomalies": anomalies, "anomaly_masks": masks}
    if name == "cutmix_cross_image":
        return {"sources": noise_images(3, seed=5)}
    return {}


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_mask_is_binary_nonempty_and_changes_stay_inside(name):
    images = noise_images(6)
    for seed in range(4):
        out, masks = apply_batch(name, images, seed, **params_for(name))
        assert out.shape == images.shape and out.dtype == images.dtype
        assert masks.shape == (6, 1, SIZE, SIZE) and masks.dtype == images.dtype
        assert set(masks.unique().tolist()) <= {0.0, 1.0}
        assert (masks.flatten(1).sum(1) > 0).all()
        assert 0 <= out.min() and out.max() <= 1
        outside = (masks == 0).expand_as(images)
        assert torch.equal(out[outside], images[outside])
        changed = (out - images).abs().amax(1, keepdim=True) > 1e-4
        # hard pastes change (almost) every mask pixel of a noise image; blends most of them
        assert changed[masks == 1].float().mean() > (0.5 if name == "draem_perlin" else 0.9)


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_same_seed_same_output_different_seed_different_output(name):
    images = noise_images(3)
    first = apply_batch(name, images, 7, **params_for(name))
    again = apply_batch(name, images, 7, **params_for(name))
    other = apply_batch(name, images, 8, **params_for(name))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[1], other[1]) or not torch.equal(first[0], other[0])


def test_cross_image_within_a_batch_uses_the_other_images():
    images = torch.stack([torch.full((3, 16, 16), float(v)) for v in (0.0, 1.0)])
    out, masks = apply_batch("cutmix_cross_image", images, 0, jitter=0.0)
    assert torch.equal(out[0], masks[0].expand(3, -1, -1))  # image 0's patch is from image 1
    assert torch.equal(out[1], 1 - masks[1].expand(3, -1, -1))


def test_same_image_box_area_and_aspect_ranges():
    """DRA's code (docs/official_code/dra.md "Training pipeline"): area U(0.02, 0.15)·HW, aspect within [0.3, 1/0.3] (up to pixel rounding)."""
    image = torch.rand(3, 100, 100, generator=torch_generator(1))
    fractions = []
    for seed in range(60):
        _, mask = cutpaste_same_image(image, torch_generator(seed))
        rows, cols = mask[0].any(1).sum().item(), mask[0].any(0).sum().item()
        assert rows * cols == mask.sum().item()  # one axis-aligned box
        assert 0.3 * 0.8 <= cols / rows <= 1 / 0.3 * 1.25
        fractions.append(mask.mean().item())
    assert 0.02 * 0.9 <= min(fractions) and max(fractions) <= 0.15 * 1.1
    assert min(fractions) < 0.04 and max(fractions) > 0.12  # the whole range is used


def test_same_image_patch_comes_from_the_image_itself():
    """Without jitter the pasted pixels are a box of the original image (not another image)."""
    image = torch.rand(3, 32, 32, generator=torch_generator(3))
    out, mask = cutpaste_same_image(image, torch_generator(0), jitter=0.0)
    ys, xs = torch.nonzero(mask[0], as_tuple=True)
    patch = out[:, ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    h, w = patch.shape[1:]
    windows = image.unfold(1, h, 1).unfold(2, w, 1)  # [3, H-h+1, W-w+1, h, w]
    assert (windows - patch[:, None, None]).abs().amax(dim=(0, 3, 4)).min() == 0


def test_cross_image_patch_comes_from_the_source():
    image, source = torch.zeros(3, 32, 32), torch.ones(3, 32, 32)
    out, mask = cutmix_cross_image(image, torch_generator(0), sources=source, jitter=0.0)
    assert torch.equal(out, mask.expand(3, -1, -1))
    with pytest.raises(ValueError, match="image's size"):
        cutmix_cross_image(image, torch_generator(0), sources=torch.ones(3, 16, 16))


def test_scar_is_thin_long_and_rotated():
    image = torch.rand(3, 256, 256, generator=torch_generator(2))
    rotated = 0
    for seed in range(12):
        _, mask = cutpaste_scar(image, torch_generator(seed))
        area = mask.sum().item()
        assert 2 * 10 * 0.7 <= area <= 16 * 25 * 1.3  # width 2-16 x length 10-25 px at 256 px
        rows, cols = mask[0].any(1).sum().item(), mask[0].any(0).sum().item()
        rotated += rows * cols > area * 1.2  # a rotated box does not fill its bounding box
    assert rotated >= 5  # angles U(-45°, 45°); within a few degrees the box stays filled


def test_color_jitter_strength_bounds():
    patch = torch.rand(3, 8, 8, generator=torch_generator(0)) * 0.5 + 0.25
    assert torch.equal(color_jitter(patch, torch_generator(0), 0.0), patch)
    jittered = color_jitter(patch, torch_generator(0), 0.1)
    assert 0 < (jittered - patch).abs().mean() < 0.15


def test_perlin_mask_and_blend_formula():
    image = torch.full((3, 64, 64), 0.2)
    texture = torch.full((3, 64, 64), 0.9)
    out, mask = draem_perlin(image, torch_generator(4), textures=texture, augment=False)
    inside = out[:, mask[0] == 1]
    # out = (1 - β)·tex + β·img inside, one β per image with β in [0, 0.8]
    beta = (0.9 - inside[0, 0]) / (0.9 - 0.2)
    assert 0 <= beta <= 0.8
    assert torch.allclose(inside, torch.full_like(inside, 0.9 - 0.7 * beta.item()), atol=1e-6)
    fractions = [perlin_mask(64, 64, torch_generator(s)).mean().item() for s in range(40)]
    assert min(fractions) > 0 and sum(fractions) / len(fractions) < 0.5


def test_draem_texture_sources(tmp_path):
    from PIL import Image

    for index, colour in enumerate([(255, 0, 0), (0, 0, 255)]):
        (tmp_path / "banded").mkdir(exist_ok=True)
        Image.new("RGB", (20, 30), colour).save(tmp_path / "banded" / f"t{index}.png")
    textures = load_textures(tmp_path, size=SIZE)
    assert textures.shape == (2, 3, SIZE, SIZE) and textures[0, 0].min() == 1 and textures[1, 2].min() == 1
    image = torch.zeros(3, SIZE, SIZE)
    out, mask = draem_perlin(image, torch_generator(0), textures=textures, augment=False)
    coloured = out[:, mask[0] == 1]
    assert (coloured[0] > 0).all() != (coloured[2] > 0).all()  # exactly one of the two textures
    with pytest.raises(ConfigError, match="no texture images"):
        load_textures(tmp_path / "missing", size=8)


def test_randaug_cutpaste_pastes_defect_pixels_into_the_normal():
    normal = torch.zeros(3, SIZE, SIZE)
    anomaly = 0.3 + 0.4 * torch.rand(3, SIZE, SIZE, generator=torch_generator(0))
    mask = torch.zeros(1, SIZE, SIZE)
    mask[:, 20:28, 18:30] = 1
    for op_set in ("paper", "code"):
        for seed in range(10):
            out, pasted = randaug_cutpaste(normal, torch_generator(seed), anomalies=anomaly, anomaly_masks=mask,
                                           op_set=op_set)
            area = pasted.sum().item()
            assert 0.4 * 96 <= area <= 2.0 * 96  # geometric ops rescale/warp the 96-pixel defect
            assert torch.equal(out[:, pasted[0] == 0], torch.zeros(3, int((pasted == 0).sum())))
            assert (out[:, pasted[0] == 1] > 0).float().mean() > 0.5  # the defect's (augmented) pixels
    with pytest.raises(ConfigError, match="op_set"):
        randaug_cutpaste(normal, torch_generator(0), anomalies=anomaly, anomaly_masks=mask, op_set="imgaug")


def test_randaug_cutpaste_respects_the_foreground():
    normal = torch.zeros(3, SIZE, SIZE)
    anomaly = torch.ones(3, SIZE, SIZE)
    defect = torch.zeros(1, SIZE, SIZE)
    defect[:, 2:6, 2:6] = 1  # in a corner, outside the foreground
    foreground = torch.zeros(1, SIZE, SIZE)
    foreground[:, 16:34, 16:34] = 1
    for seed in range(10):
        _, pasted = randaug_cutpaste(normal, torch_generator(seed), anomalies=anomaly, anomaly_masks=defect,
                                     foreground=foreground, n_ops=0)
        ys, xs = torch.nonzero(pasted[0], as_tuple=True)
        assert 16 <= ys.float().mean() <= 34 and 16 <= xs.float().mean() <= 34  # centroid on the foreground
    _, in_place = randaug_cutpaste(normal, torch_generator(0), anomalies=anomaly, anomaly_masks=defect,
                                   n_ops=0, random_location=False)
    assert torch.equal(in_place, defect)


def test_foreground_mask_finds_a_dark_object_on_a_bright_background_and_vice_versa():
    image = torch.full((3, 40, 40), 0.9)
    image[:, 10:30, 12:28] = 0.1
    mask = foreground_mask(image)
    assert mask.shape == (1, 40, 40)
    assert mask[0, 10:30, 12:28].all() and mask.sum() == 20 * 16
    assert torch.equal(foreground_mask(1 - image), mask)
    texture = torch.rand(3, 40, 40, generator=torch_generator(0))
    assert foreground_mask(texture).all()  # no object: defects may go anywhere


def test_otsu_threshold_separates_two_modes():
    values = torch.cat([torch.full((100,), 0.2), torch.full((50,), 0.7)]).numpy()
    assert 0.2 < otsu_threshold(values) <= 0.7


def test_inputs_are_validated():
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        cutpaste_same_image(torch.rand(1, 8, 8), torch_generator(0))
    with pytest.raises(ValueError, match="float"):
        cutpaste_same_image(torch.zeros(3, 8, 8, dtype=torch.uint8), torch_generator(0))
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        cutpaste_scar(torch.randn(3, 8, 8), torch_generator(0))
    with pytest.raises(ValueError, match="unknown parameters"):
        apply_batch("cutpaste_mix", noise_images(2), 0, jiter=0.1)
    with pytest.raises(ValueError, match="needs anomalies"):
        apply_batch("randaug_cutpaste", noise_images(2), 0)
    with pytest.raises(ValueError, match="at least 2"):
        apply_batch("cutmix_cross_image", noise_images(1), 0)
    with pytest.raises(ConfigError, match="did you mean 'cutpaste_scar'"):
        apply_batch("cutpaste_scars", noise_images(2), 0)
    assert all(spec.description for spec in GENERATORS.values())
