"""Writing the MVTec layout: PNG images and masks, clash-free names, the seeded 3:1 split of
pooled normals, and the constants every converter shares."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from osad_lib.data.images import is_image_file
from osad_lib.data.mvtec import MARKER
from osad_lib.data.protocols import seeded_normal_split
from osad_lib.validate import ConfigError



DEFAULT_SEED = 42
#: The manifest file in every converted folder (the marker of ``build_folder_once``).
MANIFEST = MARKER
#: Bump when a conversion rule changes (recorded in the manifest key).
CONVERTER_VERSION = 1

#: AITEX defect code (field 2 of ``nnnn_ddd_ff.png``) → class folder
#: (``docs/official_code/shared.md`` "Conversion scripts").
AITEX_DEFECT_CODES = {
    "002": "Broken_end", "006": "Broken_yarn", "010": "Broken_pick", "016": "Weft_curling",
    "019": "Fuzzyball", "022": "Cut_selvage", "023": "Crease", "025": "Warp_ball",
    "027": "Knots", "029": "Contamination", "030": "Nep", "036": "Weft_crack",
}


# ---------------------------------------------------------------------------------------------

def _clean_stem(stem: str) -> str:
    """A file stem without whitespace (BrainMRI has names like ``1 no.jpeg``)."""
    return re.sub(r"\s+", "_", stem.strip()) or "image"


def save_png(image: Image.Image, path: Path) -> None:
    """Write an RGB image as PNG: 8-bit grey when its three channels are equal, RGB otherwise."""
    pixels = np.asarray(image.convert("RGB"))
    if (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all():
        image = Image.fromarray(np.ascontiguousarray(pixels[..., 0]), "L")
    image.save(path, format="PNG")


def save_mask(mask: np.ndarray, path: Path) -> None:
    """Write a mask (non-zero = defect) as a binary 0/255 grey PNG."""
    Image.fromarray(np.where(np.asarray(mask) != 0, 255, 0).astype(np.uint8), "L").save(path, format="PNG")


class LayoutWriter:
    """Writes images and masks into one MVTec-layout folder, never overwriting a file."""

    def __init__(self, root: Path):
        self.root = root

    def _free_path(self, folder: str, stem: str) -> Path:
        directory = self.root / folder
        directory.mkdir(parents=True, exist_ok=True)
        stem = _clean_stem(stem)
        path, n = directory / f"{stem}.png", 2
        while path.exists():
            path, n = directory / f"{stem}_{n}.png", n + 1
        return path

    def image(self, image: Image.Image, folder: str, stem: str) -> str:
        """Write ``image`` to ``<folder>/<stem>.png``; return the stem actually used."""
        path = self._free_path(folder, stem)
        save_png(image, path)
        return path.stem

    def anomaly(self, image: Image.Image, cls: str, stem: str, mask: np.ndarray | None = None) -> str:
        """Write an anomaly to ``test/<cls>/`` and, if given, its mask to ``ground_truth/<cls>/``."""
        stem = self.image(image, f"test/{cls}", stem)
        if mask is not None:
            if mask.shape != (image.height, image.width):
                raise ConfigError(f"mask of {cls}/{stem} is {mask.shape[1]}×{mask.shape[0]} but the image is "
                                  f"{image.width}×{image.height}; re-download the dataset's masks")
            folder = self.root / "ground_truth" / cls
            folder.mkdir(parents=True, exist_ok=True)
            save_mask(mask, folder / f"{stem}_mask.png")
        return stem


def link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def split_pooled_normals(out: Path, seed: int) -> tuple[int, int]:
    """Move a seeded quarter of ``out/train/good`` to ``out/test/good`` (3:1 split, AHL A.1).

    Converters that pool all normals write them to ``train/good`` first; the split is
    :func:`~osad_lib.data.protocols.seeded_normal_split` over the sorted output names.
    """
    train_folder, test_folder = out / "train" / "good", out / "test" / "good"
    names = sorted(n for n in os.listdir(train_folder) if is_image_file(n)) if train_folder.is_dir() else []
    if not names:
        raise ConfigError(f"the conversion found no normal images (nothing in {train_folder}); check the source folder")
    train, test = seeded_normal_split(names, seed)
    test_folder.mkdir(parents=True, exist_ok=True)
    for name in test:
        os.replace(train_folder / name, test_folder / name)
    return len(train), len(test)


def images_in(folder: Path) -> list[Path]:
    """Sorted image files directly inside ``folder`` (one-line error when there are none)."""
    if not folder.is_dir():
        raise ConfigError(f"missing folder {folder}; the download looks incomplete — re-download or re-extract it")
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p.name))
    if not files:
        raise ConfigError(f"no images in {folder}; the download looks incomplete — re-download or re-extract it")
    return files


def subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def with_progress(items: list, desc: str, progress: bool) -> Iterable:
    return tqdm(items, desc=desc, unit="file", disable=not progress)


def tree_files(folder: Path) -> list[str]:
    """Sorted relative paths of the files in ``folder`` (hidden files and the manifest excluded)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.name != MANIFEST and not any(part.startswith(".") for part in p.relative_to(folder).parts))
