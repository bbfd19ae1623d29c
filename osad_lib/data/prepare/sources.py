"""The registry of converters (:data:`CONVERTERS`) and the checks that a source folder is the
dataset's download (with a one-line hint where a nearby folder is)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from osad_lib.data.registry import DATASETS
from osad_lib.validate import ConfigError
from osad_lib.data.prepare.layout import subfolders
from osad_lib.data.prepare.converters import (
    optical_classes, convert_aitex, convert_brainmri, convert_btad, convert_elpv_download, convert_headct,
    convert_hyperkvasir, convert_mastcam, convert_mvtec_category, convert_optical, convert_sdd,
)



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
    return any(p.stem.lower().endswith("_label") for sub in subfolders(folder) if sub.name.lower().startswith("kos")
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
              lambda f: bool(optical_classes(f)), convert_optical),
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
        return subfolders(folder)
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
