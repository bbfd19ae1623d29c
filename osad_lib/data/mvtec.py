"""The MVTec layout every image dataset is read from, and atomic building of such folders.

Layout (``docs/official_code/shared.md`` "Dataset layout on disk", ``docs/datasets.md``
"The MVTec layout")::

    ROOT/train/good/*                      training normals
    ROOT/test/good/*                       test normals
    ROOT/test/<anomaly_class>/*            anomalies, one folder per class
    ROOT/ground_truth/<anomaly_class>/<stem>_mask.png    pixel masks (optional)

BTAD's own names (``train/ok``, ``test/ok``, ``test/ko``, masks ``ground_truth/ko/<stem>.png|bmp``,
``docs/official_code/bgad.md`` "Data and RandAugmented CutPaste") are read as well. Unlike the
official DRA/DevNet/AHL code, every listing is **sorted**, so seeded protocols do not depend on the
filesystem's order.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from osad_lib.data.images import IMAGE_EXTENSIONS, is_image_file
from osad_lib.paths import atomic_write_text, current_umask
from osad_lib.validate import ConfigError

#: Folder names of normal images (MVTec "good", BTAD "ok").
NORMAL_FOLDERS = ("good", "ok")
#: Marker written into a folder built by :func:`build_folder_once`.
MARKER = "osad_layout.json"
_LAYOUT_HINT = "expected ROOT/train/good, ROOT/test/good, ROOT/test/<class>, optional ROOT/ground_truth/<class>/<stem>_mask.png"


@dataclass(frozen=True)
class Sample:
    """One image of a dataset in the MVTec layout.

    ``path`` and ``mask_path`` are POSIX paths relative to the dataset root; ``label`` is 0 for
    normal and 1 for anomaly; ``anomaly_class`` is ``"good"`` for normals (also for BTAD ``ok``);
    ``split`` is the folder it came from (``"train"`` or ``"test"``). ``pixel_group`` names the
    group of identical images it belongs to (the group's first path; its own path when it has no
    copy) where the dataset records them (``duplicates`` in the manifest of
    :mod:`osad_lib.data.prepare`), else ``""``.
    """

    path: str
    label: int
    anomaly_class: str
    mask_path: str | None
    split: str
    pixel_group: str = ""


def _listing(folder: Path) -> list[str]:
    """Sorted image file names in ``folder`` (one-line error when it holds none)."""
    names = sorted(os.listdir(folder))
    images = [n for n in names if is_image_file(n) and (folder / n).is_file()]
    if not images:
        others = [n for n in names if not n.startswith(".")]
        found = f"it holds {len(others)} other entries, e.g. {others[0]!r}" if others else "it is empty"
        raise ConfigError(
            f"no images in {folder} ({found}); accepted extensions {', '.join(IMAGE_EXTENSIONS)}; "
            "add the images or remove the folder"
        )
    return images


def _subfolders(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if not n.startswith(".") and (folder / n).is_dir())


def _wrong_layout(root: Path) -> ConfigError:
    """The most helpful error for a folder that has no ``train/good``."""
    children = _subfolders(root)
    nested = [c for c in children if any((root / c / "train" / n).is_dir() for n in NORMAL_FOLDERS)]
    if nested:
        return ConfigError(
            f"{root} holds several datasets ({', '.join(nested[:5])}{', ...' if len(nested) > 5 else ''}), "
            f"not one; point at one of them, e.g. {root / nested[0]}"
        )
    if root.name in ("train", "test", "ground_truth") or any(n in children for n in NORMAL_FOLDERS):
        parent = root.parent if root.name in ("train", "test", "ground_truth") else root.parent.parent
        return ConfigError(f"{root} is a folder inside a dataset, not its root; point at {parent}")
    if not children and not any(not n.startswith(".") for n in os.listdir(root)):
        return ConfigError(f"dataset folder {root} is empty; put the dataset there in the MVTec layout ({_LAYOUT_HINT})")
    return ConfigError(
        f"{root} is not in the MVTec layout (no train/good; found {', '.join(children[:6]) or 'no folders'}); {_LAYOUT_HINT}"
    )


def _normal_folder(root: Path) -> str:
    for name in NORMAL_FOLDERS:
        if (root / "train" / name).is_dir():
            return name
    raise _wrong_layout(root)


def _masks_of(root: Path, anomaly_class: str, images: list[str]) -> list[str | None]:
    """Relative mask paths of ``images`` of one class (None for all if the dataset has no masks)."""
    truth = root / "ground_truth"
    if not truth.is_dir():
        return [None] * len(images)
    folder = truth / anomaly_class
    if not folder.is_dir():
        raise ConfigError(
            f"{truth} has no folder {anomaly_class!r} although other classes have masks; "
            f"add {folder} with <stem>_mask.png files or remove {truth}"
        )
    by_stem = {Path(n).stem: n for n in sorted(os.listdir(folder)) if is_image_file(n)}
    masks = []
    for name in images:
        stem = Path(name).stem
        found = by_stem.get(f"{stem}_mask") or by_stem.get(stem)
        if found is None:
            raise ConfigError(
                f"no mask for {root / 'test' / anomaly_class / name}: expected {folder / (stem + '_mask.png')}; "
                "add it or remove the image"
            )
        masks.append(f"ground_truth/{anomaly_class}/{found}")
    return masks


def read_mvtec_layout(root: str | os.PathLike) -> list[Sample]:
    """All samples of one dataset folder in the MVTec layout, in a fixed (sorted) order.

    Order: ``train/good``, ``test/good``, then ``test/<class>`` for the classes in sorted order;
    files sorted by name inside each folder. Raises a one-line ``ConfigError`` for a missing
    root, a wrong layout (e.g. the parent folder of several subsets: the error names the subset
    path to use), a folder without images, or an anomaly image without its mask.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise ConfigError(f"dataset folder {root} does not exist; check the path (data_root / OSAD_DATA) or convert the dataset there")
    if not root.is_dir():
        raise ConfigError(f"dataset folder {root} is a file, not a folder; point at the dataset's root folder")
    return list(_read_layout(str(root), _layout_signature(root)))


def _layout_signature(root: Path) -> tuple[int | None, ...]:
    """What a listing depends on: the modification times of the dataset's folders down to the
    class folders (adding, removing or renaming an entry changes its folder's) and of its
    duplicate record. A large grid lists the same folders thousands of times."""
    stamps: list[int | None] = []
    for top in ("", "train", "test", "ground_truth"):
        folder = root / top
        try:
            stamps.append(folder.stat().st_mtime_ns)
            entries = sorted(os.scandir(folder), key=lambda e: e.name) if top else []
        except OSError:
            stamps.append(None)
            continue
        stamps += [e.stat().st_mtime_ns for e in entries if e.is_dir()]
    try:
        marker = (root / MARKER).stat()
        stamps += [marker.st_mtime_ns, marker.st_size]
    except OSError:
        stamps.append(None)
    return tuple(stamps)


@functools.lru_cache(maxsize=128)
def _read_layout(root_name: str, signature: tuple[int | None, ...]) -> tuple[Sample, ...]:
    """:func:`read_mvtec_layout` of an existing folder, once per :func:`_layout_signature`."""
    root = Path(root_name)
    normal = _normal_folder(root)
    test = root / "test"
    if not (test / normal).is_dir():
        raise ConfigError(f"{root} has no {test / normal} folder of normal test images; {_LAYOUT_HINT}")
    classes = [c for c in _subfolders(test) if c not in NORMAL_FOLDERS]
    if not classes:
        raise ConfigError(f"{test} has no anomaly class folders (only {normal}/); add test/<class>/ folders of anomalies")
    samples = [Sample(f"train/{normal}/{n}", 0, "good", None, "train") for n in _listing(root / "train" / normal)]
    samples += [Sample(f"test/{normal}/{n}", 0, "good", None, "test") for n in _listing(test / normal)]
    for cls in classes:
        images = _listing(test / cls)
        samples += [
            Sample(f"test/{cls}/{n}", 1, cls, mask, "test") for n, mask in zip(images, _masks_of(root, cls, images))
        ]
    groups = duplicate_record(root)
    return tuple(samples if groups is None else [replace(s, pixel_group=groups.get(s.path, s.path)) for s in samples])


def duplicate_record(root: Path) -> dict[str, str] | None:
    """The dataset's record of identical images (``duplicates`` of its manifest, written by
    :mod:`osad_lib.data.prepare`): each member's path → its group's first path; None when the
    folder has no such record. Read once per version of the manifest: :func:`read_mvtec_layout`,
    its caller, is remembered per :func:`_layout_signature`, which includes the manifest's."""
    manifest = read_marker(root)
    if manifest is None or "duplicates" not in manifest:
        return None
    return {path: group[0] for group in manifest["duplicates"] for path in group}


def anomaly_classes(samples: list[Sample]) -> list[str]:
    """Sorted anomaly class names present in ``samples``."""
    return sorted({s.anomaly_class for s in samples if s.label == 1})


def read_marker(root: Path) -> dict[str, Any] | None:
    """The marker of a folder built by :func:`build_folder_once` (None if absent or unreadable)."""
    try:
        return json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _exclusive(dest: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``.<dest name>.lock`` next to ``dest`` (other processes wait)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.parent / f".{dest.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_folder_once(dest: Path, key: dict[str, Any], build: Callable[[Path], dict[str, Any]]) -> Path:
    """Build a folder (a dataset layout, a tensor cache) once, atomically, and reuse it afterwards.

    If ``dest`` holds a marker (:data:`MARKER`) whose ``key`` equals ``key`` it is returned as
    is. Otherwise ``build(tmp)`` writes into a temporary sibling folder and returns facts
    (counts) for the marker; the folder is then renamed to ``dest`` (an outdated ``dest`` from
    an older key is replaced). A failed build leaves ``dest`` as it was and removes its
    temporary folder (one left by a killed build is removed by the next); concurrent processes
    wait for each other (file lock) instead of building twice.
    """
    marker = read_marker(dest)
    if marker is not None and marker.get("key") == key:
        return dest
    with _exclusive(dest):
        marker = read_marker(dest)  # built by another process while we waited
        if marker is not None and marker.get("key") == key:
            return dest
        for leftover in dest.parent.glob(f".{dest.name}.building-*"):  # of a build killed outright (SIGKILL)
            shutil.rmtree(leftover, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.building-", dir=dest.parent))
        tmp.chmod(0o777 & ~current_umask())  # mkdtemp's 0700 would hide a shared cache from its other users
        try:
            facts = build(tmp)
            atomic_write_text(tmp / MARKER, json.dumps({"key": key, **facts}, indent=1, sort_keys=True))
            if dest.exists():
                stale = dest.with_name(f".{dest.name}.stale-{os.getpid()}")
                os.replace(dest, stale)
                shutil.rmtree(stale, ignore_errors=True)
            os.replace(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
