"""The fast data path of every image method: decode and resize once, then memory-mapped tensors.

:func:`load_images` decodes each file of a dataset once per resolution (PIL, antialiased
bilinear for images, nearest for masks) into uint8 ``.npy`` arrays under
``cache_dir()/tensors/<key>/``, keyed by the dataset root, the sorted file list (names, sizes,
modification times) and the size; later calls memory-map the cache instead of decoding.
:func:`load_split` turns a :class:`~osad_lib.data.protocols.Split` manifest into training and
test :class:`ImageSet` s. Images stay uint8 until a batch is taken (:meth:`ImageSet.batch`
gives float [0, 1], the input range of ``osad_lib.models.backbones``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from osad_lib import limits, paths
from osad_lib.data.images import load_mask, load_rgb
from osad_lib.data.mvtec import Sample, build_folder_once, read_mvtec_layout
from osad_lib.data.protocols import Split
from osad_lib.validate import ConfigError

#: Bump when decoding/resizing changes, so cached tensors are rebuilt.
CACHE_VERSION = 1


@dataclass(frozen=True)
class ImageSet:
    """Images of one split part with labels.

    ``images``: uint8 [N, 3, S, S]; ``labels``: long [N] (1 = anomaly); ``classes``: anomaly
    class per image (``"good"`` for normals; contamination keeps its true class with label 0);
    ``masks``: uint8 [N, 1, S, S] with 1 = defect (zeros for normals) or None when the dataset
    has no masks; ``paths``: file paths relative to the dataset root.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    masks: torch.Tensor | None
    paths: list[str]

    def __len__(self) -> int:
        return len(self.paths)

    def batch(self, indices: Sequence[int] | torch.Tensor | slice = slice(None)) -> torch.Tensor:
        """Images at ``indices`` as float [B, 3, S, S] in [0, 1]."""
        return self.images[indices].float().div_(255.0)

    def select(self, indices: Sequence[int] | torch.Tensor) -> ImageSet:
        """A new ImageSet with the rows at ``indices`` (in that order)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        return ImageSet(
            images=self.images[index], labels=self.labels[index],
            classes=[self.classes[i] for i in index.tolist()],
            masks=None if self.masks is None else self.masks[index],
            paths=[self.paths[i] for i in index.tolist()],
        )


def decode_sample(root: Path, sample: Sample, image_size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """One sample as (uint8 [3, S, S] image, uint8 [1, S, S] mask or None), resized to S×S.

    Images: antialiased bilinear (PIL ``resize`` widens the filter support when shrinking);
    masks: nearest. A mask whose size differs from its image is a one-line error.
    """
    image = load_rgb(root / sample.path)
    resized = np.asarray(image.resize((image_size, image_size), Image.BILINEAR)).transpose(2, 0, 1)
    if sample.mask_path is None:
        return resized, None
    mask = load_mask(root / sample.mask_path)
    if mask.shape != (image.height, image.width):
        raise ConfigError(
            f"mask {root / sample.mask_path} is {mask.shape[1]}x{mask.shape[0]} but image {root / sample.path} is "
            f"{image.width}x{image.height}; fix or remove the mask"
        )
    small = np.asarray(Image.fromarray(mask).resize((image_size, image_size), Image.NEAREST))
    return resized, small[None]


def _cache_key(root: Path, samples: Sequence[Sample], image_size: int) -> str:
    entries = []
    for s in sorted(samples, key=lambda s: s.path):
        for rel in (s.path, s.mask_path):
            if rel is not None:
                st = (root / rel).stat()
                entries.append(f"{rel}|{st.st_size}|{st.st_mtime_ns}")
    text = json.dumps([str(root.resolve()), image_size, CACHE_VERSION, entries])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _decode_all(root: Path, samples: Sequence[Sample], image_size: int, images: np.ndarray, masks: np.ndarray | None) -> None:
    quiet = {"disable": True} if len(samples) < 64 else {}  # else TQDM_DISABLE etc. still apply
    progress = tqdm(samples, desc=f"decoding {root.name} @ {image_size}px", unit="img", leave=False, **quiet)
    for i, sample in enumerate(progress):
        images[i], mask = decode_sample(root, sample, image_size)
        if masks is not None and mask is not None:
            masks[i] = mask


def _write_cache(folder: Path, root: Path, ordered: list[Sample], image_size: int, with_masks: bool) -> dict:
    n, s = len(ordered), image_size
    images = np.lib.format.open_memmap(folder / "images.npy", mode="w+", dtype=np.uint8, shape=(n, 3, s, s))
    masks = np.lib.format.open_memmap(folder / "masks.npy", mode="w+", dtype=np.uint8, shape=(n, 1, s, s)) if with_masks else None
    _decode_all(root, ordered, image_size, images, masks)
    for array in (images, masks):
        if array is not None:
            array.flush()
    return {"root": str(root), "image_size": s, "paths": [x.path for x in ordered]}


def _decoded(root: Path, samples: Sequence[Sample], image_size: int, cache: bool
             ) -> tuple[np.ndarray, np.ndarray | None, dict[str, int]]:
    """(images, masks or None, row of each path): memory-mapped from the cache, or decoded in RAM."""
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 8:
        raise ConfigError(f"parameter 'image_size': {image_size!r} must be an integer >= 8")
    if not samples:
        raise ConfigError(f"no samples to load from {root}; check the split/dataset")
    ordered = sorted(samples, key=lambda s: s.path)
    with_masks = any(s.mask_path is not None for s in ordered)
    if cache:
        key = _cache_key(root, ordered, image_size)
        folder = build_folder_once(paths.cache_dir() / "tensors" / key, {"tensors": key},
                                   lambda tmp: _write_cache(tmp, root, ordered, image_size, with_masks))
        images = np.load(folder / "images.npy", mmap_mode="r")
        masks = np.load(folder / "masks.npy", mmap_mode="r") if with_masks else None
    else:
        images = np.zeros((len(ordered), 3, image_size, image_size), np.uint8)
        masks = np.zeros((len(ordered), 1, image_size, image_size), np.uint8) if with_masks else None
        _decode_all(root, ordered, image_size, images, masks)
    return images, masks, {s.path: i for i, s in enumerate(ordered)}


def _image_set(images: np.ndarray, masks: np.ndarray | None, rows: list[int], labels: list[int],
               classes: list[str], paths_: list[str]) -> ImageSet:
    index = np.asarray(rows, dtype=np.int64)
    return ImageSet(
        images=torch.from_numpy(np.ascontiguousarray(images[index])),
        labels=torch.tensor(labels, dtype=torch.long),
        classes=classes,
        masks=None if masks is None else torch.from_numpy(np.ascontiguousarray(masks[index])),
        paths=paths_,
    )


def load_images(root: str | os.PathLike, samples: Sequence[Sample], image_size: int, cache: bool = True) -> ImageSet:
    """Decode ``samples`` of the dataset at ``root`` at ``image_size``², in the given order.

    With ``cache`` the decoded arrays of this exact file set are stored once under
    ``cache_dir()/tensors`` and memory-mapped on later calls (no decoding). ``masks`` is None
    when no sample has a mask; otherwise normals get all-zero masks.
    """
    root, samples = Path(root), list(samples)
    images, masks, row = _decoded(root, samples, image_size, cache)
    return _image_set(images, masks, [row[s.path] for s in samples], [s.label for s in samples],
                      [s.anomaly_class for s in samples], [s.path for s in samples])


def load_split(split: Split, root: str | os.PathLike, image_size: int, cache: bool = True) -> tuple[ImageSet, ImageSet]:
    """(train, test) ImageSets of a split manifest for the dataset at ``root``.

    Train = normals (label 0), then contamination (label 0, true class kept in ``classes``),
    then labelled anomalies (label 1). Test keeps the manifest's order and labels (a dry run keeps
    a class-stratified subset of it, :func:`osad_lib.limits.test_rows`). The whole dataset is
    decoded (and cached) once per size, so every split of it reuses one cache.
    """
    root = Path(root)
    samples = read_mvtec_layout(root)
    by_path = {s.path: s for s in samples}
    train = [(p, 0) for p in split.train_normal] + [(p, 0) for p, _ in split.train_contamination]
    train += [(p, 1) for p, _ in split.train_anomaly]
    test = [(p, label) for p, label, _ in split.test]
    test = [test[i] for i in limits.test_rows([cls for _, _, cls in split.test], split.seed)]
    missing = [p for p, _ in train + test if p not in by_path]
    if missing:
        raise ConfigError(
            f"split {split.manifest_id} lists {len(missing)} files missing from {root}, e.g. {missing[0]}; "
            "the dataset changed since the split was made: make the split again"
        )
    images, masks, row = _decoded(root, samples, image_size, cache)
    return tuple(
        _image_set(images, masks, [row[p] for p, _ in part], [label for _, label in part],
                   [by_path[p].anomaly_class for p, _ in part], [p for p, _ in part])
        for part in (train, test)
    )
