"""One converter per dataset, each from its home-page download to the MVTec layout
(``docs/official_code/shared.md`` "Conversion scripts", ``docs/official_code/bgad.md`` "Data and
RandAugmented CutPaste", ``docs/datasets.md`` "Quirks of the real files")."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import numpy as np

from osad_lib.data.elpv import convert_elpv
from osad_lib.data.images import is_image_file, load_mask, load_rgb
from osad_lib.data.mvtec import read_mvtec_layout
from osad_lib.validate import ConfigError
from osad_lib.data.prepare.layout import (
    AITEX_DEFECT_CODES, images_in, LayoutWriter, link_or_copy, with_progress, subfolders, split_pooled_normals,
)



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
    for path in images_in(folder):
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
    defect_rolls = images_in(_nested(source, "Defect_images"))
    masks = _aitex_masks(_nested(source, "Mask_images"))
    classes = {path: aitex_class(path) for path in defect_rolls}  # fail on a bad name before any work
    writer, skipped, defect_free_tiles = LayoutWriter(out), [], 0
    for path in with_progress(normal_rolls + defect_rolls, "aitex", progress):
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
    for folder in subfolders(source):
        files = [p for p in folder.iterdir() if p.is_file() and is_image_file(p.name)]
        labels = {p.stem[: -len("_label")].lower(): p for p in files if p.stem.lower().endswith("_label")}
        for path in sorted(p for p in files if not p.stem.lower().endswith("_label")):
            if path.stem.lower() not in labels:
                raise ConfigError(f"no label bitmap for {path}: expected {folder / (path.stem + '_label.bmp')}; re-download KolektorSDD")
            items.append((folder, path, labels[path.stem.lower()]))
    writer = LayoutWriter(out)
    for folder, path, label in with_progress(items, "sdd", progress):
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


def optical_classes(source: Path) -> list[tuple[int, Path]]:
    """(0-based index, folder) of ``Class1`` … ``Class10`` (``ClassK`` or ``ClassK/ClassK``), by number."""
    found = [(int(m.group(1)), p) for p in subfolders(source) if (m := re.fullmatch(r"Class(\d+)", p.name))]
    return [(number - 1, _nested(source, folder.name)) for number, folder in sorted(found)]


def convert_optical(source: Path, out: Path, seed: int, progress: bool = True) -> dict[str, Any]:
    """Optical (DAGM 2007): ``ClassK/{Train,Test}/Label/Labels.txt`` list every image with its
    defect flag and mask. Normals of all classes (Train and Test) are pooled and split 3:1;
    defects go to ``test/Class<K-1>`` (0-indexed, as the official converter) with their masks."""
    items = []
    classes = optical_classes(source)
    for index, folder in classes:
        for part in ("Train", "Test"):
            labels = folder / part / "Label" / "Labels.txt"
            if not labels.is_file():
                raise ConfigError(f"missing {labels}; re-extract the DAGM class {folder.name} with its {part}/Label folder")
            for defect, image, mask in read_dagm_labels(labels):
                mask_path = folder / part / "Label" / mask if mask else None
                items.append((index, part, defect, folder / part / image, mask_path))
    writer = LayoutWriter(out)
    for index, part, defect, image_path, mask_path in with_progress(items, "optical", progress):
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
    novel = [p for p in subfolders(source / "test_novel") if p.name != "all"]
    items = [(p, "train/good") for p in images_in(source / "train_typical")]
    items += [(p, "test/good") for p in images_in(source / "test_typical")]
    items += [(p, f"test/{folder.name}") for folder in novel for p in images_in(folder)]
    writer = LayoutWriter(out)
    for path, folder in with_progress(items, "mastcam", progress):
        writer.image(load_rgb(path), folder, path.stem)
    return {"ignored": ["test_novel/all"] if (source / "test_novel" / "all").is_dir() else []}


def convert_brainmri(source: Path, out: Path, seed: int, progress: bool = True) -> dict[str, Any]:
    """BrainMRI: ``no/`` normal (split 3:1), ``yes/`` tumour → ``test/defect``; any extension,
    case and image mode; whitespace in names becomes ``_``."""
    items = [(p, "train/good") for p in images_in(source / "no")] + [(p, "test/defect") for p in images_in(source / "yes")]
    writer = LayoutWriter(out)
    for path, folder in with_progress(items, "brainmri", progress):
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
    writer = LayoutWriter(out)
    for index in with_progress(sorted(labels), "headct", progress):
        image = load_rgb(folder / f"{index:03d}.png")
        writer.image(image, "test/defect" if labels[index] else "train/good", f"{index:03d}")
    split_pooled_normals(out, seed)
    return {"hemorrhage": sum(labels.values()), "normal": sum(1 for v in labels.values() if not v)}


def convert_hyperkvasir(source: Path, out: Path, seed: int, progress: bool = True) -> dict[str, Any]:
    """Hyper-Kvasir ``labeled-images``: ``upper-gi-tract/anatomical-landmarks/<class>/`` are all
    normal (pooled, split 3:1); ``upper-gi-tract/pathological-findings/<class>/`` are the anomaly
    classes (barretts, barretts-short-segment, esophagitis-a, esophagitis-b-d)."""
    upper = source / "upper-gi-tract"
    landmarks, findings = subfolders(upper / "anatomical-landmarks"), subfolders(upper / "pathological-findings")
    items = [(p, "train/good") for folder in landmarks for p in images_in(folder)]
    items += [(p, f"test/{folder.name}") for folder in findings for p in images_in(folder)]
    writer = LayoutWriter(out)
    for path, folder in with_progress(items, "hyperkvasir", progress):
        writer.image(load_rgb(path), folder, path.stem)
    split_pooled_normals(out, seed)
    return {"landmarks": [f.name for f in landmarks], "findings": [f.name for f in findings]}


def convert_btad(source: Path, out: Path, seed: int, progress: bool = True) -> dict[str, Any]:
    """BTAD subset (``01``/``02``/``03``): ``train/ok`` → train/good, ``test/ok`` → test/good,
    ``test/ko`` → test/ko with masks ``ground_truth/ko/<stem>.png|.bmp`` → ``<stem>_mask.png``
    (``docs/official_code/bgad.md`` "Data and RandAugmented CutPaste"). Fixed splits; images
    re-encoded as PNG."""
    samples = read_mvtec_layout(source)
    writer = LayoutWriter(out)
    for sample in with_progress(samples, f"btad/{source.name}", progress):
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
    for sample in with_progress(samples, f"mvtecad/{source.name}", progress):
        for relative in (sample.path, sample.mask_path):
            if relative:
                link_or_copy(source / relative, out / relative)
    return {}
