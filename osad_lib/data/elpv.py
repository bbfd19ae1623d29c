"""ELPV (solar-cell electroluminescence images) in the MVTec layout, from the installed package.

The ``elpv-dataset`` package ships the 2,624 original 300×300 grey PNG cells with their
``labels.csv`` (path, defect probability, cell type), the same file the official ``convert_elpv.py``
reads (``docs/official_code/shared.md`` "Conversion scripts", ``docs/datasets.md``
"Quirks of the real files"). The paper protocol: probability 0 → normal, probability 1 → anomaly of
class ``mono`` or ``poly`` (cell type), probabilities 1/3 and 2/3 dropped; normals split 3:1 into
train/test with a seeded split (AHL A.1). Expected counts (AHL Table 6 / DevNet Table 1): 1,131
training normals, 377 test normals, 715 anomalies (mono 313, poly 402 in the data; DevNet's text
says 403).

The files are copied byte for byte (original names ``cellNNNN.png`` kept, so split manifests
name the original cells). :func:`convert_elpv` also converts a user's own copy of the original
ELPV download (same ``labels.csv``), e.g. from ``python -m osad_lib.data.prepare``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from osad_lib import paths
from osad_lib.data.mvtec import build_folder_once
from osad_lib.data.protocols import seeded_normal_split
from osad_lib.validate import ConfigError

#: Seed of the 3:1 normal split (the official converters' ``random_state=42``).
ELPV_SPLIT_SEED = 42


def packaged_labels_file() -> Path:
    """``labels.csv`` of the installed ``elpv-dataset`` package (images next to it)."""
    try:
        import elpv_dataset
    except ImportError:
        raise ConfigError("the embedded ELPV data need the 'elpv-dataset' package: pip install elpv-dataset") from None
    labels = Path(elpv_dataset.__file__).resolve().parent / "data" / "labels.csv"
    if not labels.is_file():
        raise ConfigError(f"{labels} is missing from the installed elpv-dataset package; reinstall it (pip install --force-reinstall elpv-dataset)")
    return labels


def read_elpv_labels(labels_csv: str | os.PathLike) -> list[tuple[str, float, str]]:
    """Rows (image path relative to the labels file, defect probability, 'mono'|'poly')."""
    labels_csv = Path(labels_csv)
    rows = []
    for number, line in enumerate(labels_csv.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            path, probability, cell_type = fields[0], float(fields[1]), fields[2]
        except (IndexError, ValueError):
            raise ConfigError(f"{labels_csv} line {number}: expected 'path probability type', got {line!r}") from None
        if cell_type not in ("mono", "poly"):
            raise ConfigError(f"{labels_csv} line {number}: cell type {cell_type!r} is not mono or poly")
        rows.append((path, probability, cell_type))
    return rows


def convert_elpv(labels_csv: str | os.PathLike, out: str | os.PathLike, seed: int = ELPV_SPLIT_SEED) -> dict[str, int]:
    """Write ELPV into ``out`` in the MVTec layout (paper protocol above); return its counts."""
    labels_csv, out = Path(labels_csv), Path(out)
    rows = read_elpv_labels(labels_csv)
    source = labels_csv.parent
    missing = [p for p, _, _ in rows if not (source / p).is_file()]
    if missing:
        raise ConfigError(f"{len(missing)} ELPV images listed in {labels_csv} are missing, e.g. {source / missing[0]}; re-download the dataset")
    normals = [p for p, prob, _ in rows if prob == 0.0]
    train, test = seeded_normal_split(normals, seed)
    targets = [(p, out / "train" / "good") for p in train] + [(p, out / "test" / "good") for p in test]
    targets += [(p, out / "test" / kind) for p, prob, kind in rows if prob == 1.0]
    for folder in {t for _, t in targets}:
        folder.mkdir(parents=True, exist_ok=True)
    for relative, folder in targets:
        shutil.copyfile(source / relative, folder / Path(relative).name)
    return {
        "train_normal": len(train), "test_normal": len(test),
        "mono": sum(1 for _, prob, kind in rows if prob == 1.0 and kind == "mono"),
        "poly": sum(1 for _, prob, kind in rows if prob == 1.0 and kind == "poly"),
        "dropped": sum(1 for _, prob, _ in rows if prob not in (0.0, 1.0)),
    }


def elpv_root(seed: int = ELPV_SPLIT_SEED) -> Path:
    """The embedded ELPV folder, converted once into ``cache_dir()/embedded/elpv`` and reused."""
    labels = packaged_labels_file()
    dest = paths.cache_dir() / "embedded" / ("elpv" if seed == ELPV_SPLIT_SEED else f"elpv_seed{seed}")
    key = {"source": "elpv-dataset package", "labels_bytes": labels.stat().st_size, "seed": seed, "version": 1}
    return build_folder_once(dest, key, lambda tmp: convert_elpv(labels, tmp, seed))
