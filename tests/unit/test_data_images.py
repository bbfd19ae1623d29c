"""Image and mask decoding: every PIL mode to 8-bit RGB, 16-bit scaling, one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from osad_lib.data.images import is_image_file, load_mask, load_rgb
from osad_lib.validate import ConfigError

GREY = np.array([[0, 64], [128, 255]], np.uint8)
WIDE = np.arange(30, dtype=np.uint8).reshape(5, 6) * 8


def _save(tmp_path, name, image):
    path = tmp_path / name
    image.save(path)
    return path


@pytest.mark.parametrize(
    "name, make, expected",
    [
        ("l.png", lambda: Image.fromarray(GREY, "L"), np.repeat(GREY[..., None], 3, -1)),
        ("la.png", lambda: Image.fromarray(np.stack([GREY, np.full_like(GREY, 7)], -1), "LA"), np.repeat(GREY[..., None], 3, -1)),
        ("rgba.png", lambda: Image.fromarray(np.dstack([GREY, GREY // 2, 255 - GREY, np.zeros_like(GREY)]), "RGBA"),
         np.dstack([GREY, GREY // 2, 255 - GREY])),
        ("one.png", lambda: Image.fromarray(GREY > 100).convert("1"), np.repeat(np.where(GREY > 100, 255, 0)[..., None], 3, -1)),
        ("i16.png", lambda: Image.fromarray(GREY.astype(np.uint16) * 257), np.repeat(GREY[..., None], 3, -1)),
        ("i16.tif", lambda: Image.fromarray(GREY.astype(np.uint16) * 257), np.repeat(GREY[..., None], 3, -1)),
        ("i32.tif", lambda: Image.fromarray(GREY.astype(np.int32) * 257, "I"), np.repeat(GREY[..., None], 3, -1)),
        ("f.tif", lambda: Image.fromarray(GREY.astype(np.float32) / 255, "F"), np.repeat(GREY[..., None], 3, -1)),
    ],
)
def test_load_rgb_converts_mode_to_expected_rgb(tmp_path, name, make, expected):
    image = load_rgb(_save(tmp_path, name, make()))
    assert image.mode == "RGB" and image.size == (2, 2)
    np.testing.assert_array_equal(np.asarray(image), expected)


def test_16_bit_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 1000], [30000, 65535]], np.uint16)
    out = np.asarray(load_rgb(_save(tmp_path, "a.png", Image.fromarray(values))))[..., 0]
    np.testing.assert_array_equal(out, np.rint(values / 257).astype(np.uint8))  # clipping would give 255 for 1000


def test_dark_16_bit_image_stays_dark(tmp_path):
    values = np.array([[0, 100], [200, 255]], np.uint16)  # all ≤ 255 but still 16-bit data
    out = np.asarray(load_rgb(_save(tmp_path, "d.png", Image.fromarray(values))))[..., 0]
    assert out.max() == 1


def test_palette_and_cmyk(tmp_path):
    rgb = np.dstack([GREY, 255 - GREY, GREY // 3])
    palette = Image.fromarray(rgb, "RGB").convert("P", palette=Image.ADAPTIVE, colors=4)
    np.testing.assert_array_equal(np.asarray(load_rgb(_save(tmp_path, "p.png", palette))), np.asarray(palette.convert("RGB")))
    cmyk = Image.fromarray(rgb, "RGB").convert("CMYK")
    out = np.asarray(load_rgb(_save(tmp_path, "c.jpg", cmyk)))
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8


@pytest.mark.parametrize(
    "array, expected",
    [
        (GREY, np.repeat(GREY[..., None], 3, -1)),
        (np.dstack([GREY, GREY, GREY, GREY]), np.repeat(GREY[..., None], 3, -1)),  # first three channels kept
        (np.stack([WIDE, WIDE // 2, WIDE // 4]), np.dstack([WIDE, WIDE // 2, WIDE // 4])),  # channel-first
        (GREY.astype(np.float32) / 255, np.repeat(GREY[..., None], 3, -1)),
    ],
)
def test_npy_images(tmp_path, array, expected):
    np.save(tmp_path / "x.npy", array)
    np.testing.assert_array_equal(np.asarray(load_rgb(tmp_path / "x.npy")), expected)


def test_unreadable_and_truncated_files_give_one_line_errors(tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    full = tmp_path / "full.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(full)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])
    for path in (junk, truncated, tmp_path / "missing.png"):
        with pytest.raises(ConfigError) as err:
            load_rgb(path)
        message = str(err.value)
        assert str(path) in message and "\n" not in message and "re-download" in message


def test_load_mask_is_binary(tmp_path):
    mask = np.array([[0, 255], [1, 0]], np.uint8)
    out = load_mask(_save(tmp_path, "m.png", Image.fromarray(mask)))
    np.testing.assert_array_equal(out, [[0, 1], [1, 0]])
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0, 2] = 9
    np.testing.assert_array_equal(load_mask(_save(tmp_path, "m.bmp", Image.fromarray(rgb))), [[1, 0], [0, 0]])


@pytest.mark.parametrize("name, ok", [("a.PNG", True), ("b.JpEg", True), ("c.tiff", True), ("d.npy", True),
                                      ("e.gif", False), (".f.png", False), ("labels.csv", False)])
def test_is_image_file(name, ok):
    assert is_image_file(name) is ok
