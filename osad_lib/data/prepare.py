"""Convert the benchmark datasets from their original downloads into the MVTec layout.

    python -m osad_lib.data.prepare NAME SOURCE_DIR DATA_ROOT [--seed 42] [--force] [--dedupe]

``NAME`` is one of :data:`CONVERTERS` (mvtecad, aitex, sdd, elpv, optical, mastcam, brainmri,
headct, hyperkvasir, btad); ``SOURCE_DIR`` is the folder the dataset's home-page download was
unpacked into; the result goes to ``DATA_ROOT/<registry name>`` (``aitex``, ``mvtecad/carpet``,
``btad/01``, … — the folders :func:`osad_lib.data.registry.resolve` reads), in the MVTec layout
(``docs/official_code/shared.md`` "Dataset layout on disk")::

    train/good/*.png   test/good/*.png   test/<class>/*.png   ground_truth/<class>/<stem>_mask.png

The conversion rules are those of the official DRA/DevNet/AHL ``convert_*.py`` scripts
(``docs/official_code/shared.md`` "Conversion scripts"; BTAD: ``docs/official_code/bgad.md``
"Data and RandAugmented CutPaste") with the quirks of the real files (``docs/datasets.md``
"Quirks of the real files"), except that every listing is **sorted** and the 3:1 normal
split is :func:`~osad_lib.data.protocols.seeded_normal_split` (seed 42 by default), so a
conversion is reproducible on any filesystem:

* images are decoded with :func:`~osad_lib.data.images.load_rgb` (any mode: L, LA, P, RGBA,
  16-bit, .npy) and written as PNG — 8-bit grey when the three channels are equal, RGB otherwise;
  masks are binary 0/255 grey PNG named ``<stem>_mask.png``. Output names are the source stems
  (whitespace → ``_``); a name that would clash gets a ``_2``, ``_3`` … suffix;
* **mvtecad** is used as is: each category is validated with
  :func:`~osad_lib.data.mvtec.read_mvtec_layout` and its files are hard-linked (copied when the
  source is on another filesystem), so the output costs no disk space and keeps MVTec's names;
* **elpv** reuses :func:`osad_lib.data.elpv.convert_elpv` (files copied byte for byte).

Each output folder is built in a temporary sibling folder and renamed into place
(:func:`~osad_lib.data.mvtec.build_folder_once`), together with a manifest ``osad_layout.json``
(:data:`MANIFEST`: dataset, source, seed, counts per folder, conversion notes and the SHA-1 of
every file). Running the command again on an existing output **verifies** it against its
manifest instead of converting again, and reports missing, changed or unexpected files
(``--force`` rebuilds).

**Exact duplicates.** Some downloads hold identical images under two names (BrainMRI: two
images end up in both train and test, twenty pairs within one split; HeadCT one pair). The
papers used these files, so their counts include every copy, and so do ours by default; the
manifest records each group of identical images (``duplicates``: same decoded pixels,
:func:`duplicate_groups`), which :mod:`osad_lib.data.check` reports as a warning and the split
manifests count (:class:`osad_lib.data.protocols.Split`). ``--dedupe`` drops all but the first
image of each group by sorted path (a group with two labels is left for the check to report)
and records the dropped files (``dropped``); it is part of the manifest's key.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import re
import shutil
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from osad_lib.data.elpv import convert_elpv
from osad_lib.data.images import image_digest, is_image_file, load_mask, load_rgb
from osad_lib.data.mvtec import MARKER, NORMAL_FOLDERS, build_folder_once, read_marker, read_mvtec_layout
from osad_lib.data.protocols import seeded_normal_split
from osad_lib.data.registry import DATASETS
from osad_lib.validate import ConfigError, choose

#: Seed of the 3:1 normal split (the official converters' ``random_state=42``).
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
# Writing the MVTec layout
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


class _LayoutWriter:
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


def _link_or_copy(source: Path, target: Path) -> None:
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


def _images_in(folder: Path) -> list[Path]:
    """Sorted image files directly inside ``folder`` (one-line error when there are none)."""
    if not folder.is_dir():
        raise ConfigError(f"missing folder {folder}; the download looks incomplete — re-download or re-extract it")
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p.name))
    if not files:
        raise ConfigError(f"no images in {folder}; the download looks incomplete — re-download or re-extract it")
    return files


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _progress(items: list, desc: str, progress: bool) -> Iterable:
    return tqdm(items, desc=desc, unit="file", disable=not progress)


# ---------------------------------------------------------------------------------------------
# Converters, one per dataset (docs/official_code/shared.md "Conversion scripts",
# docs/official_code/bgad.md "Data and RandAugmented CutPaste", docs/datasets.md
# "Quirks of the real files")
# ---------------------------------------------------------------------------------------------

def _nested(source: Path, name: str) -> Path:
    """``source/name`` or, in the official archive layout, ``source/name/name``."""
    return source / name / name if (source / name / name).is_dir() else source / name


def tile_spans(width: int, tile: int) -> list[tuple[int, int]]:
    """Column ranges ``[x0, x1)`` of ceil(width / tile) tiles; the last one is narrower when
    ``tile`` does not divide ``width`` (as the official AITEX converter's slicing)."""
    return [(x, min(x + tile, width)) for x in range(0, width, tile)]


def aitex_class(path: Path) -> str:
    """Defect class of an AITEX file ``nnnn_ddd_ff.png`` from its code ``ddd``."""
    fields = path.stem.split("_")
    code = fields[1] if len(fields) >= 3 else ""
    if code not in AITEX_DEFECT_CODES:
        raise ConfigError(f"{path}: defect code {code!r} is not one of the AITEX codes {', '.join(AITEX_DEFECT_CODES)}; "
                          "AITEX names are nnnn_ddd_ff.png — restore the original name or remove the file")
    return AITEX_DEFECT_CODES[code]


def _aitex_masks(folder: Path) -> dict[str, list[Path]]:
    """Mask files by image stem: ``<stem>_mask.png`` (also ``<stem>_mask1.png``, ``_mask2`` …)."""
    masks: dict[str, list[Path]] = {}
    for path in _images_in(folder):
        stem, found, _ = path.stem.rpartition("_mask")
        if found:
            masks.setdefault(stem, []).append(path)
    return masks


def convert_aitex(source: Path, out: Path, seed: int, progress: bool = True) -> dict[str, Any]:
    """AITEX: rolls (4096×256 grey) cut into square tiles of the roll height (256 → 16 tiles).

    Every tile of a defect-free roll is normal; a tile of a defect roll is kept as an anomaly of
    the class of its defect code only if its mask tile has defect pixels (the mask, or the union
    of ``_mask1``/``_mask2`` files, is tiled alike into ``ground_truth``). A defect roll without
    any mask file is skipped and listed in the manifest notes. Normal tiles are split 3:1.
    """
    normal_rolls = sorted(p for p in _nested(source, "NODefect_images").rglob("*") if p.is_file() and is_image_file(p.name))
    defect_rolls = _images_in(_nested(source, "Defect_images"))
    masks = _aitex_masks(_nested(source, "Mask_images"))
    classes = {path: aitex_class(path) for path in defect_rolls}  # fail on a bad name before any work
    writer, skipped, defect_free_tiles = _LayoutWriter(out), [], 0
    for path in _progress(normal_rolls + defect_rolls, "aitex", progress):
        roll = load_rgb(path)
        spans = tile_spans(roll.width, roll.height)
        if path not in classes:
            for k, (x0, x1) in enumerate(spans):
                writer.image(roll.crop((x0, 0, x1, roll.height)), "train/good", f"{path.stem}_{k:02d}")
            continue
        if path.stem not in masks:
            skipped.append(path.name)
            continue
        mask = np.zeros((roll.height, roll.width), np.uint8)
        for mask_path in masks[path.stem]:
            part = load_mask(mask_path)
            if part.shape != mask.shape:
                raise ConfigError(f"mask {mask_path} is {part.shape[1]}×{part.shape[0]} but {path} is "
                                  f"{roll.width}×{roll.height}; re-download Mask_images")
            mask |= part
        for k, (x0, x1) in enumerate(spans):
            if mask[:, x0:x1].any():
                writer.anomaly(roll.crop((x0, 0, x1, roll.height)), classes[path], f"{path.stem}_{k:02d}", mask[:, x0:x1])
            else:
                defect_free_tiles += 1
    split_pooled_normals(out, seed)
    return {"normal_rolls": len(normal_rolls), "defect_rolls": len(defect_rolls),
            "defect_free_tiles_dropped": defect_free_tiles, "defect_rolls_without_mask": skipped}


def segment_spans(length: int, parts: int = 3) -> list[tuple[int, int]]:
    """``parts`` near-equal ranges covering ``[0, length)`` (rows of an SDD image)."""
    bounds = [length * k // parts for k in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def convert_sdd(source: Path, out: Path, seed: int, progress: bool = True) -> dict[str, Any]:
    """KolektorSDD: each ``kosXX/PartN.jpg`` is cut along its height into three segments; a
    segment whose part of ``PartN_label.bmp`` has any non-zero pixel is an anomaly (class
    ``defect``, mask kept), else a normal. Normal segments are split 3:1."""
    items = []
    for folder in _subfolders(source):
        files = [p for p in folder.iterdir() if p.is_file() and is_image_file(p.name)]
        labels = {p.stem[: -len("_label")].lower(): p for p in files if p.stem.lower().endswith("_label")}
        for path in sorted(p for p in files if not p.stem.lower().endswith("_label")):
            if path.stem.lower() not in labels:
                raise ConfigError(f"no label bitmap for {path}: expected {folder / (path.stem + '_label.bmp')}; re-download KolektorSDD")
            items.append((folder, path, labels[path.stem.lower()]))
    writer = _LayoutWriter(out)
    for folder, path, label in _progress(items, "sdd", progress):
        image, mask = load_rgb(path), load_mask(label)
        if mask.shape != (image.height, image.width):
            raise ConfigError(f"label {label} is {mask.shape[1]}×{mask.shape[0]} but {path} is {image.width}×{image.height}; re-download KolektorSDD")
        for k, (y0, y1) in enumerate(segment_spans(image.height)):
            segment, stem = image.crop((0, y0, image.width, y1)), f"{folder.name}_{path.stem}_{k}"
            if mask[y0:y1].any():
                writer.anomaly(segment, "defect", stem, mask[y0:y1])
            else:
                writer.image(segment, "train/good", stem)
    split_pooled_normals(out, seed)
    return {"images": len(items)}


def convert_elpv_download(source: Path, out: Path, seed: int, progress: bool = True) -> dict[str, Any]:
    """ELPV: ``labels.csv`` + ``images/`` via :func:`osad_lib.data.elpv.convert_elpv`
    (probability 0 normal, 1 anomaly of class mono/poly, 1/3 and 2/3 dropped)."""
    return convert_elpv(source / "labels.csv", out, seed)


def read_dagm_labels(path: Path) -> list[tuple[bool, str, str | None]]:
    """Rows (defect?, image file, mask file or None) of a DAGM ``Labels.txt``: the first line
    (``1``) is a header; fields are tab-separated: index, defect flag, image, 0, mask."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines()[1:], 2):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split("\t")]
        fields = fields if len(fields) >= 5 else line.split()
        if len(fields) < 5 or fields[1] not in ("0", "1"):
            raise ConfigError(f"{path} line {number}: expected 'index<TAB>0|1<TAB>image<TAB>0<TAB>mask', got {line!r}; "
                              "re-download the DAGM class")
        defect = fields[1] == "1"
        rows.append((defect, fields[2], fields[4] if defect else None))
    return rows


def _optical_classes(source: Path) -> list[tuple[int, Path]]:
    """(0-based index, folder) of ``Class1`` … ``Class10`` (``ClassK`` or ``ClassK/ClassK``), by number."""
    found = [(int(m.group(1)), p) for p in _subfolders(source) if (m := re.fullmatch(r"Class(\d+)", p.name))]
    return [(number - 1, _nested(source, folder.name)) for number, folder in sorted(found)]


def convert_optical(source: Path, out: Path, seed: int, progress: bool = True) -> dict[str, Any]:
    """Optical (DAGM 2007): ``ClassK/{Train,Test}/Label/Labels.txt`` list every image with its
    defect flag and mask. Normals of all classes (Train and Test) are pooled and split 3:1;
    defects go to ``test/Class<K-1>`` (0-indexed, as the official converter) with their masks."""
    items = []
    classes = _optical_classes(source)
    for index, folder in classes:
        for part in ("Train", "Test"):
            labels = folder / part / "Label" / "Labels.txt"
            if not labels.is_file():
                raise ConfigError(f"missing {labels}; re-extract the DAGM class {folder.name} with its {part}/Label folder")
            for defect, image, mask in read_dagm_labels(labels):
                mask_path = folder / part / "Label" / mask if mask else None
                items.append((index, part, defect, folder / part / image, mask_path))
    writer = _LayoutWriter(out)
    for index, part, defect, image_path, mask_path in _progress(items, "optical", progress):
        stem = f"Class{index}_{part.lower()}_{image_path.stem}"
        if defect:
            writer.anomaly(load_rgb(image_path), f"Class{index}", stem, load_mask(mask_path))
        else:
            writer.image(load_rgb(image_path), "train/good", stem)
    split_pooled_normals(out, seed)
    return {"source_classes": [f"Class{index + 1}" for index, _ in classes], "listed_images": len(items)}


def convert_mastcam(source: Path, out: Path, seed: int, progress: bool = True) -> dict[str, Any]:
    """Mastcam: fixed splits, no random split — ``train_typical`` → train/good, ``test_typical``
    → test/good, ``test_novel/<class>`` → test/<class>. A ``test_novel/all`` folder (every novel
    image again) is ignored so that no image is counted twice."""
    novel = [p for p in _subfolders(source / "test_novel") if p.name != "all"]
    items = [(p, "train/good") for p in _images_in(source / "train_typical")]
    items += [(p, "test/good") for p in _images_in(source / "test_typical")]
    items += [(p, f"test/{folder.name}") for folder in novel for p in _images_in(folder)]
    writer = _LayoutWriter(out)
    for path, folder in _progress(items, "mastcam", progress):
        writer.image(load_rgb(path), folder, path.stem)
    return {"ignored": ["test_novel/all"] if (source / "test_novel" / "all").is_dir() else []}


def convert_brainmri(source: Path, out: Path, seed: int, progress: bool = True) -> dict[str, Any]:
    """BrainMRI: ``no/`` normal (split 3:1), ``yes/`` tumour → ``test/defect``; any extension,
    case and image mode; whitespace in names becomes ``_``."""
    items = [(p, "train/good") for p in _images_in(source / "no")] + [(p, "test/defect") for p in _images_in(source / "yes")]
    writer = _LayoutWriter(out)
    for path, folder in _progress(items, "brainmri", progress):
        writer.image(load_rgb(path), folder, path.stem)
    split_pooled_normals(out, seed)
    return {"no": sum(f == "train/good" for _, f in items), "yes": sum(f == "test/defect" for _, f in items)}


def read_headct_labels(path: Path) -> dict[int, int]:
    """``labels.csv`` of HeadCT → {id: 1 hemorrhage | 0 normal}; the header is ``id, hemorrhage``
    (with a space before ``hemorrhage``), so column names are stripped."""
    with open(path, newline="") as handle:
        rows = [[cell.strip() for cell in row] for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    header = [name.lower() for name in rows[0]] if rows else []
    if "id" not in header or "hemorrhage" not in header:
        raise ConfigError(f"{path}: expected the header 'id, hemorrhage', got {rows[0] if rows else 'an empty file'}; use HeadCT's own labels.csv")
    id_column, label_column = header.index("id"), header.index("hemorrhage")
    try:
        return {int(row[id_column]): int(float(row[label_column])) for row in rows[1:]}
    except (ValueError, IndexError):
        raise ConfigError(f"{path}: every row must be '<id>, <0|1>'; re-download HeadCT's labels.csv") from None


def _headct_images(source: Path) -> Path:
    for folder in (source / "head_ct" / "head_ct", source / "head_ct", source):
        if folder.is_dir() and any(is_image_file(p.name) for p in folder.iterdir()):
            return folder
    raise ConfigError(f"no HeadCT images under {source}; expected {source / 'head_ct' / '000.png'} … next to labels.csv")


def convert_headct(source: Path, out: Path, seed: int, progress: bool = True) -> dict[str, Any]:
    """HeadCT: ``labels.csv`` (id, hemorrhage) + ``head_ct/NNN.png``; label 1 → ``test/defect``,
    label 0 normal (split 3:1)."""
    labels, folder = read_headct_labels(source / "labels.csv"), _headct_images(source)
    missing = [i for i in sorted(labels) if not (folder / f"{i:03d}.png").is_file()]
    if missing:
        raise ConfigError(f"{len(missing)} images listed in {source / 'labels.csv'} are missing, e.g. {folder / f'{missing[0]:03d}.png'}; re-download HeadCT")
    writer = _LayoutWriter(out)
    for index in _progress(sorted(labels), "headct", progress):
        image = load_rgb(folder / f"{index:03d}.png")
        writer.image(image, "test/defect" if labels[index] else "train/good", f"{index:03d}")
    split_pooled_normals(out, seed)
    return {"hemorrhage": sum(labels.values()), "normal": sum(1 for v in labels.values() if not v)}


def convert_hyperkvasir(source: Path, out: Path, seed: int, progress: bool = True) -> dict[str, Any]:
    """Hyper-Kvasir ``labeled-images``: ``upper-gi-tract/anatomical-landmarks/<class>/`` are all
    normal (pooled, split 3:1); ``upper-gi-tract/pathological-findings/<class>/`` are the anomaly
    classes (barretts, barretts-short-segment, esophagitis-a, esophagitis-b-d)."""
    upper = source / "upper-gi-tract"
    landmarks, findings = _subfolders(upper / "anatomical-landmarks"), _subfolders(upper / "pathological-findings")
    items = [(p, "train/good") for folder in landmarks for p in _images_in(folder)]
    items += [(p, f"test/{folder.name}") for folder in findings for p in _images_in(folder)]
    writer = _LayoutWriter(out)
    for path, folder in _progress(items, "hyperkvasir", progress):
        writer.image(load_rgb(path), folder, path.stem)
    split_pooled_normals(out, seed)
    return {"landmarks": [f.name for f in landmarks], "findings": [f.name for f in findings]}


def convert_btad(source: Path, out: Path, seed: int, progress: bool = True) -> dict[str, Any]:
    """BTAD subset (``01``/``02``/``03``): ``train/ok`` → train/good, ``test/ok`` → test/good,
    ``test/ko`` → test/ko with masks ``ground_truth/ko/<stem>.png|.bmp`` → ``<stem>_mask.png``
    (``docs/official_code/bgad.md`` "Data and RandAugmented CutPaste"). Fixed splits; images
    re-encoded as PNG."""
    samples = read_mvtec_layout(source)
    writer = _LayoutWriter(out)
    for sample in _progress(samples, f"btad/{source.name}", progress):
        image, stem = load_rgb(source / sample.path), Path(sample.path).stem
        if sample.label:
            mask = load_mask(source / sample.mask_path) if sample.mask_path else None
            writer.anomaly(image, sample.anomaly_class, stem, mask)
        else:
            writer.image(image, f"{sample.split}/good", stem)
    return {}


def convert_mvtec_category(source: Path, out: Path, seed: int, progress: bool = True) -> dict[str, Any]:
    """MVTec AD category, used as is: validated by ``read_mvtec_layout`` and hard-linked
    (copied across filesystems) with its own names."""
    samples = read_mvtec_layout(source)
    for sample in _progress(samples, f"mvtecad/{source.name}", progress):
        for relative in (sample.path, sample.mask_path):
            if relative:
                _link_or_copy(source / relative, out / relative)
    return {}


# ---------------------------------------------------------------------------------------------
# Registry of converters and source-folder checks
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Converter:
    """How one dataset's original download is recognised and converted.

    ``expects``: the download layout, for error messages; ``is_source(folder)``: whether a
    folder is that download's root; ``subsets(source)``: registry name → source folder of each
    output folder; ``convert(source, out, seed, progress)`` writes one output folder and returns
    notes for the manifest; ``seeded``: whether the output depends on the seed.
    """

    name: str
    expects: str
    is_source: Callable[[Path], bool]
    convert: Callable[[Path, Path, int, bool], dict[str, Any]]
    subsets: Callable[[Path], dict[str, Path]] | None = None
    seeded: bool = True

    def outputs(self, source: Path) -> dict[str, Path]:
        """Registry name → source folder of every output folder this download yields."""
        return self.subsets(source) if self.subsets else {self.name: source}


def _has(*relative: str) -> Callable[[Path], bool]:
    return lambda folder: all((folder / r).exists() for r in relative)


def _category_folders(dataset: str, normal_folder: str) -> Callable[[Path], dict[str, Path]]:
    def subsets(source: Path) -> dict[str, Path]:
        return {info.name: source / sub for sub, info in DATASETS[dataset].subsets.items()
                if (source / sub / "train" / normal_folder).is_dir()}
    return subsets


def _is_headct(folder: Path) -> bool:
    return (folder / "labels.csv").is_file() and ((folder / "head_ct").is_dir() or (folder / "000.png").is_file())


def _is_sdd(folder: Path) -> bool:
    return any(p.stem.lower().endswith("_label") for sub in _subfolders(folder) if sub.name.lower().startswith("kos")
               for p in sub.iterdir())


#: One converter per dataset name (the ``NAME`` of the command).
CONVERTERS: dict[str, Converter] = {c.name: c for c in (
    Converter("mvtecad", "the MVTec AD folder holding carpet/, grid/, … each with train/good, test/<class>, ground_truth/<class>",
              lambda f: bool(_category_folders("mvtecad", "good")(f)), convert_mvtec_category,
              _category_folders("mvtecad", "good"), seeded=False),
    Converter("aitex", "Defect_images/, NODefect_images/<roll>/, Mask_images/",
              _has("Defect_images", "NODefect_images", "Mask_images"), convert_aitex),
    Converter("sdd", "kosNN/PartN.jpg with kosNN/PartN_label.bmp", _is_sdd, convert_sdd),
    Converter("elpv", "labels.csv and images/ (the elpv-dataset download)", _has("labels.csv", "images"), convert_elpv_download),
    Converter("optical", "Class1/ … Class10/, each with Train/ and Test/ and their Label/Labels.txt",
              lambda f: bool(_optical_classes(f)), convert_optical),
    Converter("mastcam", "train_typical/, test_typical/, test_novel/<class>/",
              _has("train_typical", "test_typical", "test_novel"), convert_mastcam, seeded=False),
    Converter("brainmri", "yes/ and no/", _has("yes", "no"), convert_brainmri),
    Converter("headct", "labels.csv and head_ct/000.png …", _is_headct, convert_headct),
    Converter("hyperkvasir", "upper-gi-tract/anatomical-landmarks/<class>/ and upper-gi-tract/pathological-findings/<class>/ (labeled-images)",
              _has("upper-gi-tract/anatomical-landmarks", "upper-gi-tract/pathological-findings"), convert_hyperkvasir),
    Converter("btad", "01/, 02/, 03/, each with train/ok, test/ok, test/ko, ground_truth/ko",
              lambda f: bool(_category_folders("btad", "ok")(f)), convert_btad, _category_folders("btad", "ok"), seeded=False),
)}


def _looks_like(converter: Converter, folder: Path) -> bool:
    try:
        return converter.is_source(folder)
    except OSError:  # unreadable folder
        return False


def _readable_subfolders(folder: Path) -> list[Path]:
    try:
        return _subfolders(folder)
    except OSError:
        return []


def _nearby_source(converter: Converter, source: Path, depth: int = 3) -> Path | None:
    """A parent or a sub-folder (up to ``depth`` levels, sorted) that is the download's root."""
    for parent in list(source.parents)[:depth]:
        if _looks_like(converter, parent):
            return parent
    level = [source]
    for _ in range(depth):
        level = [sub for folder in level for sub in _readable_subfolders(folder)]
        for folder in level:
            if _looks_like(converter, folder):
                return folder
    return None


def source_folder(name: str, source: str | os.PathLike) -> Path:
    """``source`` checked to be the root of dataset ``name``'s download (one-line error that
    suggests the right folder when the user pointed at a parent or a child)."""
    converter = CONVERTERS[name]
    path = Path(source).expanduser().absolute()
    if not path.exists():
        raise ConfigError(f"source folder {path} does not exist; pass the folder you unpacked the {name} download into ({converter.expects})")
    if not path.is_dir():
        raise ConfigError(f"source {path} is a file, not a folder; unpack the {name} archive and pass the folder ({converter.expects})")
    if _looks_like(converter, path):
        return path
    nearby = _nearby_source(converter, path)
    hint = f"; did you mean {nearby}?" if nearby else f"; expected {converter.expects}"
    raise ConfigError(f"{path} is not the root of the {name} download{hint}")


def writable_root(data_root: str | os.PathLike) -> Path:
    """``data_root`` created if needed and checked to be writable (one-line error otherwise)."""
    root = Path(data_root).expanduser().absolute()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create DATA_ROOT {root} ({exc.strerror}); choose a folder you can write to") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise ConfigError(f"DATA_ROOT {root} is not writable; choose a folder you can write to or fix its permissions (chmod u+w {root})")
    return root


# ---------------------------------------------------------------------------------------------
# Exact duplicates: recorded by default, dropped with --dedupe
# ---------------------------------------------------------------------------------------------

def _image_class(relative: str) -> str:
    """The label folder of an image's relative path: ``good`` for normals, else its anomaly class."""
    _, folder, _ = relative.split("/", 2)
    return "good" if folder in NORMAL_FOLDERS else folder


def duplicate_groups(folder: Path, progress: bool = True) -> list[list[str]]:
    """Groups of identical images (same decoded pixels, :func:`~osad_lib.data.images.image_digest`)
    among the images in ``folder``'s ``train/`` and ``test/``: relative paths, sorted, each group
    and the list; only groups of two or more."""
    images = [r for r in _tree(folder) if r.split("/", 1)[0] in ("train", "test") and is_image_file(r)]
    by_digest: dict[str, list[str]] = defaultdict(list)
    for relative in _progress(images, f"duplicates {folder.name}", progress):
        by_digest[image_digest(folder / relative)].append(relative)
    return sorted(sorted(group) for group in by_digest.values() if len(group) > 1)


def drop_duplicates(folder: Path, groups: list[list[str]]) -> list[str]:
    """Delete every image of each group but the first by sorted relative path, with its mask; a
    group whose images carry different labels (a label conflict, which
    :mod:`osad_lib.data.check` reports as an error) is left whole. Returns the dropped paths."""
    masks = {s.path: s.mask_path for s in read_mvtec_layout(folder)}
    dropped = [r for group in groups if len({_image_class(r) for r in group}) == 1 for r in group[1:]]
    for relative in dropped:
        (folder / relative).unlink()
        if masks.get(relative):
            (folder / masks[relative]).unlink()
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(sub.iterdir()):
            sub.rmdir()
    return dropped


# ---------------------------------------------------------------------------------------------
# Manifests: build, verify
# ---------------------------------------------------------------------------------------------

def _sha1(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha1").hexdigest()


def _tree(folder: Path) -> list[str]:
    """Sorted relative paths of the files in ``folder`` (hidden files and the manifest excluded)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.name != MANIFEST and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def hash_files(folder: Path, progress: bool = True, desc: str = "sha1") -> dict[str, str]:
    """SHA-1 of every file under ``folder`` by relative POSIX path (sorted)."""
    return {relative: _sha1(folder / relative) for relative in _progress(_tree(folder), desc, progress)}


def folder_counts(files: Iterable[str]) -> dict[str, int]:
    """Number of files per folder (``train/good``, ``test/<class>``, ``ground_truth/<class>``)."""
    return dict(sorted(Counter(relative.rpartition("/")[0] for relative in files).items()))


def verify_manifest(folder: Path, progress: bool = True) -> list[str]:
    """Problems of a converted folder against its manifest: missing, changed (SHA-1) and
    unexpected files; empty when everything matches."""
    manifest = read_marker(folder)
    if manifest is None or "files" not in manifest:
        return [f"{folder} has no manifest {MANIFEST}; convert it with python -m osad_lib.data.prepare"]
    expected: dict[str, str] = manifest["files"]
    actual = hash_files(folder, progress, desc=f"verify {folder.name}")
    problems = [f"missing {folder / r}" for r in sorted(set(expected) - set(actual))]
    problems += [f"changed {folder / r} (SHA-1 differs from the manifest)" for r in sorted(set(expected) & set(actual)) if expected[r] != actual[r]]
    problems += [f"unexpected {folder / r} (not in the manifest)" for r in sorted(set(actual) - set(expected))]
    return problems


@dataclass(frozen=True)
class PrepareReport:
    """What :func:`prepare` did for one output folder: ``action`` is ``"converted"`` or
    ``"verified"``; ``problems`` lists manifest mismatches (empty when all is well)."""

    name: str
    folder: Path
    action: str
    counts: dict[str, int]
    problems: list[str] = field(default_factory=list)
    duplicates: list[list[str]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, name: str, folder: Path, action: str, problems: list[str] | None = None) -> PrepareReport:
        """The report of ``folder`` from its manifest."""
        manifest = read_marker(folder) or {}
        return cls(name, folder, action, manifest.get("counts", {}), problems or [], manifest.get("duplicates", []),
                   manifest.get("dropped", []))

    def summary(self) -> str:
        """One line: train normals, test normals, anomalies per class count, masks, duplicates."""
        train = self.counts.get("train/good", 0)
        test = self.counts.get("test/good", 0)
        anomalies = {k[5:]: v for k, v in self.counts.items() if k.startswith("test/") and k != "test/good"}
        masks = sum(v for k, v in self.counts.items() if k.startswith("ground_truth/"))
        state = f"{len(self.problems)} problem(s)" if self.problems else "ok"
        if self.dropped:
            copies = f"; {len(self.dropped)} exact duplicates dropped (--dedupe)"
        elif self.duplicates:
            copies = (f"; {len(self.duplicates)} groups of identical images kept, as in the download "
                      "(--dedupe drops them)")
        else:
            copies = ""
        return (f"{self.name}: {self.action} {self.folder} — {train} train normals, {test} test normals, "
                f"{sum(anomalies.values())} anomalies in {len(anomalies)} classes, {masks} masks{copies} [{state}]")


def _manifest_key(converter: Converter, name: str, source: Path, seed: int, dedupe: bool = False) -> dict[str, Any]:
    key = {"dataset": converter.name, "name": name, "source": str(source),
           "seed": seed if converter.seeded else None, "converter_version": CONVERTER_VERSION}
    return {**key, "dedupe": True} if dedupe else key


def _existing_action(dest: Path, key: dict[str, Any], force: bool) -> str:
    """``"build"`` or ``"verify"`` for an output folder; one-line error when it cannot be reused."""
    if force or not dest.exists():
        return "build"
    manifest = read_marker(dest)
    if manifest is None or "files" not in manifest:
        raise ConfigError(f"{dest} exists but has no manifest {MANIFEST} (not written by prepare); move it away, "
                          "pass --force to replace it, or inspect it with python -m osad_lib.data.check")
    old_seed = manifest.get("key", {}).get("seed")
    if old_seed != key["seed"]:
        raise ConfigError(f"{dest} was converted with seed {old_seed}; pass --seed {old_seed} to verify it "
                          f"or --force to rebuild it with seed {key['seed']}")
    deduped = manifest.get("key", {}).get("dedupe", False)
    if deduped != key.get("dedupe", False):
        raise ConfigError(f"{dest} was converted {'with' if deduped else 'without'} --dedupe; pass the same to verify "
                          f"it, or --force to rebuild it {'with' if not deduped else 'without'} --dedupe")
    return "verify"


def _builder(converter: Converter, name: str, source: Path, seed: int, progress: bool,
             dedupe: bool = False) -> Callable[[Path], dict[str, Any]]:
    """The ``build(tmp)`` of :func:`build_folder_once`: convert, record the groups of identical
    images (and with ``dedupe`` drop all but the first of each), then hash every file."""
    def build(tmp: Path) -> dict[str, Any]:
        notes = converter.convert(source, tmp, seed, progress)
        groups = duplicate_groups(tmp, progress)
        dropped = drop_duplicates(tmp, groups) if dedupe else []
        files = hash_files(tmp, progress, desc=f"sha1 {name}")
        facts = {"counts": folder_counts(files), "notes": notes, "files": files, "duplicates": groups}
        return {**facts, "dropped": dropped} if dedupe else facts
    return build


def prepare(name: str, source: str | os.PathLike, data_root: str | os.PathLike, seed: int = DEFAULT_SEED,
            force: bool = False, progress: bool = True, dedupe: bool = False) -> list[PrepareReport]:
    """Convert dataset ``name`` from its download ``source`` into ``data_root`` (module docstring).

    Existing outputs with a manifest are verified, not converted again (``force`` rebuilds).
    All checks happen before any conversion, so a bad argument leaves ``data_root`` untouched.
    Groups of identical images are recorded in the manifest; ``dedupe`` drops all but the first
    of each (the papers' counts include every copy, so keeping them is the default).
    """
    name = choose("NAME", str(name).strip().lower(), CONVERTERS)
    converter = CONVERTERS[name]
    source_path = source_folder(name, source)
    root = writable_root(data_root)
    plans = []
    for subset, subset_source in converter.outputs(source_path).items():
        dest = root / subset
        if dest.resolve() == subset_source.resolve():
            raise ConfigError(f"{subset_source} is already {dest}: nothing to convert; check it with python -m osad_lib.data.check {root}")
        if subset_source.resolve() in dest.resolve().parents:
            raise ConfigError(f"DATA_ROOT {root} would write {dest} inside the source {subset_source}; choose another DATA_ROOT")
        key = _manifest_key(converter, subset, subset_source, seed, dedupe)
        plans.append((subset, subset_source, dest, key, _existing_action(dest, key, force)))
    reports = []
    for subset, subset_source, dest, key, action in plans:
        if action == "verify":
            reports.append(PrepareReport.of(subset, dest, "verified", verify_manifest(dest, progress)))
            continue
        if force:
            (dest / MANIFEST).unlink(missing_ok=True)  # makes build_folder_once rebuild even for an equal key
        build_folder_once(dest, key, _builder(converter, subset, subset_source, seed, progress, dedupe))
        reports.append(PrepareReport.of(subset, dest, "converted"))
    return reports


def main(argv: list[str] | None = None) -> int:
    """Command line; exit 0 when done, 1 when verification found mismatches, 2 on bad input."""
    layouts = "\n".join(f"  {c.name:12s} {c.expects}" for c in CONVERTERS.values())
    parser = argparse.ArgumentParser(
        prog="python -m osad_lib.data.prepare", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Convert a dataset's original download into DATA_ROOT/<name> in the MVTec layout "
                    "(re-running verifies the output against its manifest).",
        epilog=f"SOURCE_DIR layouts:\n{layouts}")
    parser.add_argument("name", metavar="NAME", help=f"one of {', '.join(CONVERTERS)}")
    parser.add_argument("source", metavar="SOURCE_DIR", help="folder the original download was unpacked into")
    parser.add_argument("data_root", metavar="DATA_ROOT", help="your data root (OSAD_DATA); output goes to DATA_ROOT/<name>")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the 3:1 normal split (default 42)")
    parser.add_argument("--force", action="store_true", help="rebuild an existing output instead of verifying it")
    parser.add_argument("--dedupe", action="store_true",
                        help="drop exact duplicate images (same pixels), keeping the first of each group by sorted "
                             "path; default: keep them, as the papers did (the manifest records them either way)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        reports = prepare(args.name, args.source, args.data_root, args.seed, args.force, not args.no_progress,
                          args.dedupe)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for report in reports:
        print(report.summary())
        for problem in report.problems[:20]:
            print(f"  {problem}")
        if len(report.problems) > 20:
            print(f"  … and {len(report.problems) - 20} more")
        if report.problems:
            print(f"  fix: re-run with --force to rebuild {report.folder} from the source")
    return 1 if any(r.problems for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
