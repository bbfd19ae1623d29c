"""Decoding image and mask files into 8-bit RGB / binary arrays, whatever their on-disk format.

Every image a method sees goes through :func:`load_rgb`, so that grey, grey+alpha, RGBA, palette,
16-bit, 32-bit integer, float, CMYK and 1-bit files all become 3-channel 8-bit RGB
(``docs/datasets.md`` "Quirks of the real files": all of these occur in the benchmark datasets).
``.npy`` images are read as in the official code (``docs/official_code/shared.md``
"Dataset layout on disk": first three channels kept). Unreadable or truncated files raise a one-line
:class:`~osad_lib.validate.ConfigError` naming the file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from osad_lib.validate import ConfigError

#: File name endings accepted as images (compared case-insensitively).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".npy")

_16_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def is_image_file(name: str) -> bool:
    """True for a visible file whose extension is one of :data:`IMAGE_EXTENSIONS`."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _unreadable(path: Path, exc: BaseException) -> ConfigError:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return ConfigError(f"cannot read image {path}: {reason}; re-download the file or remove it from the dataset folder")


def _scale_to_uint8(array: np.ndarray) -> np.ndarray:
    """Map any numeric array to uint8 by its bit depth or value range, never by clipping.

    uint8 stays; uint16 is 16-bit (÷257, so 65535 → 255); other integers are kept when in
    [0, 255], treated as 16-bit when in [0, 65535] (PIL opens some 16-bit files as 32-bit
    ``I``), else min–max scaled; floats in [0, 1] are ×255, in [0, 255] kept, else min–max scaled.
    """
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    values = array.astype(np.float64)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    is_int = np.issubdtype(array.dtype, np.integer)
    if array.dtype.kind == "u" and array.dtype.itemsize == 2:
        scaled = values / 257.0
    elif low >= 0 and high <= (255 if is_int else 1):
        scaled = values if is_int else values * 255.0
    elif low >= 0 and high <= (65535 if is_int else 255):
        scaled = values / 257.0 if is_int else values
    else:
        scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _to_rgb_array(array: np.ndarray, path: Path) -> np.ndarray:
    """[H, W], [H, W, C] or channel-first [C, H, W] numeric array → uint8 [H, W, 3]."""
    if array.ndim == 3 and array.shape[0] in (1, 2, 3, 4) and array.shape[-1] not in (1, 2, 3, 4):
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] < 1 or min(array.shape[:2]) < 1:
        raise ConfigError(f"cannot read image {path}: array of shape {array.shape} is not an image; "
                          "re-export it as [H, W], [H, W, C] or [C, H, W] or remove it")
    channels = array.shape[-1]
    if channels in (1, 2):  # grey or grey + alpha: the alpha channel is dropped, as PIL's convert("RGB") does
        array = np.repeat(array[..., :1], 3, axis=-1)
    return _scale_to_uint8(array[..., :3])


def _pil_to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _16_BIT_MODES or mode in ("I", "F"):
        # PIL's own convert() clips these at 255; scale by the value range instead.
        return Image.fromarray(_to_rgb_array(np.asarray(image), Path(image.filename or "")), "RGB")
    if mode in ("P", "PA"):
        image = image.convert("RGBA")
    return image.convert("RGB")  # L, LA, RGBA (alpha dropped), 1, CMYK, YCbCr, LAB, HSV


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Open an image file as an 8-bit 3-channel PIL image (mode ``RGB``).

    Grey (L, 1) is replicated to three channels; alpha (LA, RGBA, PA) is dropped like PIL's
    ``convert("RGB")`` in the official code; palettes are expanded; 16-bit files are scaled (÷257),
    not clipped; 32-bit integer / float images are scaled by their range; ``.npy`` arrays keep their
    first three channels (``docs/official_code/shared.md`` "Dataset layout on disk").
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise _unreadable(path, exc) from None
        return Image.fromarray(_to_rgb_array(np.asarray(array), path), "RGB")
    try:
        with Image.open(path) as image:
            image.load()
            return _pil_to_rgb(image).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise _unreadable(path, exc) from None


def load_mask(path: str | os.PathLike) -> np.ndarray:
    """A ground-truth mask as a uint8 [H, W] array with 1 = defect, 0 = background.

    Any non-zero value in any channel counts as defect (MVTec masks are 0/255 grey; BTAD
    ``.bmp`` and AITEX masks likewise).
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            array = np.asarray(np.load(path, allow_pickle=False))
        except (OSError, ValueError) as exc:
            raise _unreadable(path, exc) from None
    else:
        try:
            with Image.open(path) as image:
                image.load()
                array = np.asarray(image.convert("RGB") if image.mode in ("P", "PA", "CMYK") else image)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise _unreadable(path, exc) from None
    if array.ndim == 3:
        array = array.any(axis=-1)
    if array.ndim != 2:
        raise ConfigError(f"cannot read mask {path}: shape {array.shape} is not [H, W] or [H, W, C]; re-export it")
    return (array != 0).astype(np.uint8)


def pixel_digest(pixels: np.ndarray) -> str:
    """SHA-1 of decoded pixels and their shape: two files have the same digest exactly when they
    decode to the same image, whatever their format (a PNG and a JPEG re-save differ)."""
    return hashlib.sha1(str(pixels.shape).encode() + np.ascontiguousarray(pixels).tobytes()).hexdigest()


def image_digest(path: str | os.PathLike) -> str:
    """:func:`pixel_digest` of the image file ``path`` as :func:`load_rgb` decodes it."""
    return pixel_digest(np.asarray(load_rgb(path)))
