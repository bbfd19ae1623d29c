"""Tiny copies of each dataset's ORIGINAL download layout, quirks included, for the converter tests.

Each ``make_<name>(tmp)`` writes a fake download under ``tmp`` with PIL and returns
``(source_folder, expected)`` where ``expected`` maps the output folders (``train/good``,
``test/good``, ``test/<class>``, ``ground_truth/<class>``) to the file counts the converter must
produce (``docs/official_code/shared.md`` "Conversion scripts"; ``docs/official_code/bgad.md``
"Data and RandAugmented CutPaste"; ``docs/datasets.md`` "Quirks of the real files"). Pixels are
random so that no two images are identical (the check flags duplicates). Counts with a 3:1 split:
test = ceil(n / 4).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

#: AITEX fixture rolls: height 16 (the tile size), 8 tiles per full roll.
AITEX_H = 16
AITEX_W = 8 * AITEX_H


def noise(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def save(array: np.ndarray, path: Path, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if mode:
        image = image.convert(mode)
    image.save(path)
    return path


def save_mask(shape: tuple[int, int], boxes: list[tuple[int, int, int, int]], path: Path, value: int = 255) -> Path:
    """A grey mask with ``value`` inside each box (x0, y0, x1, y1)."""
    mask = np.zeros(shape, np.uint8)
    for x0, y0, x1, y1 in boxes:
        mask[y0:y1, x0:x1] = value
    return save(mask, path)


def make_mvtec(tmp: Path) -> tuple[Path, dict[str, dict[str, int]]]:
    """``mvtec_anomaly_detection/<category>/`` for two categories, with a licence file beside them."""
    root = tmp / "mvtec_anomaly_detection"
    root.mkdir(parents=True)
    (root / "license.txt").write_text("CC BY-NC-SA 4.0")
    expected = {}
    for c, (category, classes) in enumerate((("bottle", ("broken_large", "contamination")), ("grid", ("bent",)))):
        base = root / category
        for i in range(4):
            save(noise((12, 12, 3), 100 * c + i), base / "train" / "good" / f"{i:03d}.png")
        for i in range(2):
            save(noise((12, 12, 3), 100 * c + 10 + i), base / "test" / "good" / f"{i:03d}.png")
        for k, cls in enumerate(classes):
            for i in range(2):
                save(noise((12, 12, 3), 100 * c + 20 + 2 * k + i), base / "test" / cls / f"{i:03d}.png")
                save_mask((12, 12), [(2, 2, 6, 6)], base / "ground_truth" / cls / f"{i:03d}_mask.png")
        expected[f"mvtecad/{category}"] = {"train/good": 4, "test/good": 2, **{f"test/{k}": 2 for k in classes},
                                           **{f"ground_truth/{k}": 2 for k in classes}}
    return root, expected


def make_aitex(tmp: Path) -> tuple[Path, dict[str, dict[str, int]]]:
    """``Defect_images/`` (flat), ``NODefect_images/<roll>/``, ``Mask_images/Mask_images/`` (nested as
    in the official archive). Rolls are 128×16 grey (8 tiles of 16×16) in modes L and LA; one
    defect roll is 120 wide (its last tile 8 px, like the real 3796-px roll); one has two mask
    files (_mask1, _mask2); one has no mask at all (skipped)."""
    root = tmp / "AITEX"
    for r, folder in enumerate(("2311694-2040n", "2608691-202020")):
        for k in range(2 if r == 0 else 1):
            mode = "LA" if (r, k) == (0, 1) else "L"
            save(noise((AITEX_H, AITEX_W), 10 * r + k), root / "NODefect_images" / folder / f"00{r}{k}_000_0{r}.png", mode)
    defects, masks = root / "Defect_images", root / "Mask_images" / "Mask_images"
    save(noise((AITEX_H, AITEX_W), 50), defects / "0001_002_00.png")  # Broken_end, defect in tile 2
    save_mask((AITEX_H, AITEX_W), [(35, 4, 40, 9)], masks / "0001_002_00_mask.png")
    save(noise((AITEX_H, 120), 51), defects / "0002_019_02.png", "LA")  # Fuzzyball, tiles 0 and 7 (8 px wide)
    save_mask((AITEX_H, 120), [(0, 0, 3, 3), (115, 10, 118, 12)], masks / "0002_019_02_mask.png")
    save(noise((AITEX_H, AITEX_W), 52), defects / "0003_030_01.png")  # Nep, two mask files: tiles 1 and 5
    save_mask((AITEX_H, AITEX_W), [(20, 0, 22, 2)], masks / "0003_030_01_mask1.png")
    save_mask((AITEX_H, AITEX_W), [(90, 5, 92, 7)], masks / "0003_030_01_mask2.png", value=1)
    save(noise((AITEX_H, AITEX_W), 53), defects / "0004_036_03.png")  # Weft_crack without a mask: skipped
    n_normal = 3 * 8
    return root, {"aitex": {"train/good": n_normal - 6, "test/good": 6, "test/Broken_end": 1, "test/Fuzzyball": 2,
                            "test/Nep": 2, "ground_truth/Broken_end": 1, "ground_truth/Fuzzyball": 2, "ground_truth/Nep": 2}}


def make_sdd(tmp: Path) -> tuple[Path, dict[str, dict[str, int]]]:
    """``kosNN/PartN.jpg`` + ``kosNN/PartN_label.bmp``; images 20×36 (segments of 12 rows)."""
    root = tmp / "KolektorSDD"
    for f in range(3):
        for p in range(2):
            folder = root / f"kos{f + 1:02d}"
            save(noise((36, 20), 10 * f + p), folder / f"Part{p}.jpg")
            boxes = {(0, 0): [(3, 2, 8, 6)], (1, 1): [(5, 10, 9, 14)]}.get((f, p), [])  # kos02/Part1 spans segments 0 and 1
            save_mask((36, 20), boxes, folder / f"Part{p}_label.bmp")
    return root, {"sdd": {"train/good": 11, "test/good": 4, "test/defect": 3, "ground_truth/defect": 3}}


def make_elpv(tmp: Path) -> tuple[Path, dict[str, dict[str, int]]]:
    """``labels.csv`` (path, probability, type; whitespace-aligned like the real file) + ``images/``."""
    root = tmp / "elpv-dataset"
    rows = [(0.0, "mono")] * 5 + [(0.0, "poly")] * 3 + [(0.3333333333333333, "mono"), (0.6666666666666666, "poly"),
                                                      (1.0, "mono"), (1.0, "poly"), (1.0, "poly")]
    lines = []
    for i, (probability, kind) in enumerate(rows):
        save(noise((10, 10), i), root / "images" / f"cell{i:04d}.png")
        lines.append(f"images/cell{i:04d}.png  {probability:<18} {kind}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root, {"elpv": {"train/good": 6, "test/good": 2, "test/mono": 1, "test/poly": 2}}


def make_optical(tmp: Path) -> tuple[Path, dict[str, dict[str, int]]]:
    """DAGM 2007: ``ClassK/ClassK/{Train,Test}/`` with ``Label/Labels.txt`` (header ``1``, tab-separated
    fields) for K = 1, 2, 10 (Class10 → Class9: 0-indexed and sorted by number)."""
    root = tmp / "DAGM"
    expected = {"train/good": 13, "test/good": 5}
    for number in (1, 2, 10):
        folder = root / f"Class{number}" / f"Class{number}"
        for part in ("Train", "Test"):
            lines = ["1"]
            for i in range(1, 5):
                name = f"{i:04d}.PNG"
                save(noise((16, 16), 1000 * number + 10 * len(part) + i), folder / part / name)
                if i == 4:
                    save_mask((16, 16), [(4, 4, 9, 8)], folder / part / "Label" / f"{i:04d}_label.PNG")
                    lines.append(f"{i}\t1\t{name}\t0\t{i:04d}_label.PNG")
                else:
                    lines.append(f"{i}\t0\t{name}\t0\t0")
            (folder / part / "Label" / "Labels.txt").write_text("\n".join(lines) + "\n")
        expected |= {f"test/Class{number - 1}": 2, f"ground_truth/Class{number - 1}": 2}
    return root, {"optical": expected}


def make_mastcam(tmp: Path) -> tuple[Path, dict[str, dict[str, int]]]:
    """``train_typical/``, ``test_typical/``, ``test_novel/<class>/`` and ``test_novel/all/`` (copies,
    ignored); one 6-channel ``.npy`` (colour + grey channels) among the PNGs."""
    root = tmp / "mastcam"
    for i in range(4):
        save(noise((8, 8, 3), i), root / "train_typical" / f"t{i}.png")
    np.save(root / "train_typical" / "t4.npy", noise((8, 8, 6), 4))
    for i in range(2):
        save(noise((8, 8, 3), 10 + i), root / "test_typical" / f"v{i}.png")
    for k, (cls, n) in enumerate((("bedrock", 2), ("drill-hole", 1))):
        for i in range(n):
            for folder in (cls, "all"):
                save(noise((8, 8, 3), 20 + 2 * k + i), root / "test_novel" / folder / f"{cls}_{i}.png")
    return root, {"mastcam": {"train/good": 5, "test/good": 2, "test/bedrock": 2, "test/drill-hole": 1}}


def make_brainmri(tmp: Path) -> tuple[Path, dict[str, dict[str, int]]]:
    """``no/`` and ``yes/`` with spaces in names, mixed extension case and modes RGB, L, P, RGBA;
    ``Y1.jpg`` and ``Y1.JPG`` clash after conversion to PNG."""
    root = tmp / "brain_tumor_dataset"
    normal = [("1 no.jpeg", "RGB"), ("No12.jpg", "RGB"), ("no 3.JPG", "L"), ("N4.png", "P"), ("n5.png", "RGBA"),
              ("N6.PNG", "L"), ("no7.jpg", "RGB"), ("8 no.png", "RGB")]
    tumour = [("Y1.jpg", "RGB"), ("Y1.JPG", "RGB"), ("Y 2.png", "RGBA"), ("y3.jpeg", "L")]
    for i, (name, mode) in enumerate(normal):
        save(noise((14, 18, 3), i), root / "no" / name, mode)
    for i, (name, mode) in enumerate(tumour):
        save(noise((14, 18, 3), 50 + i), root / "yes" / name, mode)
    return root, {"brainmri": {"train/good": 6, "test/good": 2, "test/defect": 4}}


def make_headct(tmp: Path) -> tuple[Path, dict[str, dict[str, int]]]:
    """``labels.csv`` with the header ``id, hemorrhage`` (space before ``hemorrhage``) and
    ``head_ct/head_ct/NNN.png`` of varying sizes, RGB and RGBA; ids 0–3 hemorrhage."""
    root = tmp / "headct"
    labels = ["id, hemorrhage"]
    for i in range(12):
        save(noise((10 + i, 12, 3), i), root / "head_ct" / "head_ct" / f"{i:03d}.png", "RGBA" if i % 5 == 0 else "RGB")
        labels.append(f"{i}, {1 if i < 4 else 0}")
    (root / "labels.csv").write_text("\n".join(labels) + "\n")
    return root, {"headct": {"train/good": 6, "test/good": 2, "test/defect": 4}}


def make_hyperkvasir(tmp: Path) -> tuple[Path, dict[str, dict[str, int]]]:
    """``labeled-images/upper-gi-tract/{anatomical-landmarks,pathological-findings}/<class>/*.jpg``
    and a ``lower-gi-tract`` folder that is not used."""
    root = tmp / "hyper-kvasir" / "labeled-images"
    upper, seed = root / "upper-gi-tract", 0
    for group, classes in (("anatomical-landmarks", (("pylorus", 3), ("retroflex-stomach", 2), ("z-line", 3))),
                           ("pathological-findings", (("barretts", 1), ("esophagitis-a", 2)))):
        for cls, n in classes:
            for i in range(n):
                seed += 1
                save(noise((12, 14, 3), seed), upper / group / cls / f"{seed:08x}-uuid.jpg")
    save(noise((12, 14, 3), 99), root / "lower-gi-tract" / "anatomical-landmarks" / "cecum" / "c.jpg")
    return root, {"hyperkvasir": {"train/good": 6, "test/good": 2, "test/barretts": 1, "test/esophagitis-a": 2}}


def make_btad(tmp: Path) -> tuple[Path, dict[str, dict[str, int]]]:
    """``BTech_Dataset_transformed/{01,03}/`` with ``train/ok``, ``test/ok``, ``test/ko`` and
    ``ground_truth/ko`` masks ``.png`` (01) or ``.bmp`` (03); images .bmp (01) / .png (03)."""
    root = tmp / "BTech_Dataset_transformed"
    expected = {}
    for s, (subset, image_ext, mask_ext) in enumerate((("01", "bmp", "png"), ("03", "png", "bmp"))):
        base = root / subset
        for i in range(3):
            save(noise((10, 10, 3), 100 * s + i), base / "train" / "ok" / f"{i:04d}.{image_ext}")
        save(noise((10, 10, 3), 100 * s + 10), base / "test" / "ok" / f"0000.{image_ext}")
        for i in range(2):
            save(noise((10, 10, 3), 100 * s + 20 + i), base / "test" / "ko" / f"{i:04d}.{image_ext}")
            save_mask((10, 10), [(1, 1, 4, 4)], base / "ground_truth" / "ko" / f"{i:04d}.{mask_ext}")
        expected[f"btad/{subset}"] = {"train/good": 3, "test/good": 1, "test/ko": 2, "ground_truth/ko": 2}
    return root, expected


#: Fixture builder per converter name.
MAKERS = {
    "mvtecad": make_mvtec, "aitex": make_aitex, "sdd": make_sdd, "elpv": make_elpv, "optical": make_optical,
    "mastcam": make_mastcam, "brainmri": make_brainmri, "headct": make_headct, "hyperkvasir": make_hyperkvasir,
    "btad": make_btad,
}
