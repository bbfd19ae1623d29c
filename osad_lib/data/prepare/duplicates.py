"""Exact duplicates: images with the same decoded pixels, recorded in the manifest by default,
dropped with ``--dedupe``."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path


from osad_lib.data.images import image_digest, is_image_file
from osad_lib.data.mvtec import NORMAL_FOLDERS, read_mvtec_layout
from osad_lib.data.prepare.layout import tree_files, with_progress



def _image_class(relative: str) -> str:
    """The label folder of an image's relative path: ``good`` for normals, else its anomaly class."""
    _, folder, _ = relative.split("/", 2)
    return "good" if folder in NORMAL_FOLDERS else folder


def duplicate_groups(folder: Path, progress: bool = True) -> list[list[str]]:
    """Groups of identical images (same decoded pixels, :func:`~osad_lib.data.images.image_digest`)
    among the images in ``folder``'s ``train/`` and ``test/``: relative paths, sorted, each group
    and the list; only groups of two or more."""
    images = [r for r in tree_files(folder) if r.split("/", 1)[0] in ("train", "test") and is_image_file(r)]
    by_digest: dict[str, list[str]] = defaultdict(list)
    for relative in with_progress(images, f"duplicates {folder.name}", progress):
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
