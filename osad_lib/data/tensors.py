"""The fast data path of every image method: decode and resize once, then memory-mapped tensors.

:func:`load_images` decodes each file of a dataset once per resolution (PIL, antialiased
bilinear for images, nearest for masks) into uint8 ``.npy`` arrays under
``cache_dir()/tensors/<key>/``, keyed by the content of the dataset's files (their relative paths
and SHA-256, :func:`file_digests`) and the size — not by where the dataset lies, so a moved
dataset or a copied, read-only cache is reused; later calls memory-map the cache instead of
decoding. The cache records the size and SHA-256 of its arrays: a damaged one is named in one
line and rebuilt, and a build first checks the free space it needs (an out-of-space memmap would
kill the process).
:func:`load_split` turns a :class:`~osad_lib.data.protocols.Split` manifest into training and
test :class:`ImageSet` s. Images stay uint8 until a batch is taken (:meth:`ImageSet.batch`
gives float [0, 1], the input range of ``osad_lib.components.backbones``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from osad_lib import limits, paths
from osad_lib.data.images import load_mask, load_rgb
from osad_lib.data.mvtec import MARKER, Sample, build_folder_once, read_marker, read_mvtec_layout
from osad_lib.data.protocols import Split
from osad_lib.validate import ConfigError, notice

#: Bump when decoding/resizing or the cache layout changes, so cached tensors are rebuilt.
CACHE_VERSION = 2
#: Tensor caches whose SHA-256 this process has checked (each is hashed once per process).
_VERIFIED: set[Path] = set()


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


def tensors_digest(named: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of named tensors: each name, shape, dtype and the bytes of its values, in name
    order. The identity of a model's weights (:func:`osad_lib.components.features.model_hash`), of
    what a stored model left unchanged (:mod:`osad_lib.experiments.model_store`) and of cached
    pseudo-anomaly stems in a feature bank's key."""
    digest = hashlib.sha256()
    for name, tensor in sorted(named.items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tuple(t.shape)}|{t.dtype}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def file_digests(root: Path, relative: Sequence[str]) -> dict[str, str]:
    """SHA-256 of each file (paths relative to ``root``): what a cache key built from content
    uses. Digests are remembered per file size and modification time in
    ``cache_dir()/digests/`` (a file is read again only when it changes); when that folder is
    read-only they are simply recomputed."""
    memo_file = paths.cache_dir() / "digests" / f"{hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:20]}.json"
    try:
        memo = json.loads(memo_file.read_text())
    except (OSError, ValueError):
        memo = {}
    digests, changed = {}, False
    for rel in sorted(relative):
        st = (root / rel).stat()
        stamp = f"{st.st_size}|{st.st_mtime_ns}"
        entry = memo.get(rel)
        if not isinstance(entry, list) or len(entry) != 2 or entry[0] != stamp:
            memo[rel], changed = [stamp, _sha256(root / rel)], True
        digests[rel] = memo[rel][1]
    if changed:
        try:
            paths.atomic_write_text(memo_file, json.dumps(memo))
        except OSError:
            pass  # a read-only cache: digests are recomputed next time
    return digests


def _cache_key(root: Path, samples: Sequence[Sample], image_size: int) -> str:
    files = [rel for s in samples for rel in (s.path, s.mask_path) if rel is not None]
    text = json.dumps([image_size, CACHE_VERSION, sorted(file_digests(root, files).items())])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _decode_all(root: Path, samples: Sequence[Sample], image_size: int, images: np.ndarray, masks: np.ndarray | None) -> None:
    quiet = {"disable": True} if len(samples) < 64 else {}  # else TQDM_DISABLE etc. still apply
    progress = tqdm(samples, desc=f"decoding {root.name} @ {image_size}px", unit="img", leave=False, **quiet)
    for i, sample in enumerate(progress):
        images[i], mask = decode_sample(root, sample, image_size)
        if masks is not None and mask is not None:
            masks[i] = mask


def _array_file(file: Path, shape: tuple[int, ...]) -> np.memmap:
    """A uint8 ``.npy`` memmap of ``shape`` with its disk blocks reserved up front: a full disk
    is then an ``OSError`` here, not a SIGBUS (a dead kernel) half-way through decoding."""
    array = np.lib.format.open_memmap(file, mode="w+", dtype=np.uint8, shape=shape)
    with open(file, "r+b") as handle:
        os.posix_fallocate(handle.fileno(), 0, file.stat().st_size)
    return array


def _write_cache(folder: Path, root: Path, ordered: list[Sample], image_size: int, with_masks: bool) -> dict:
    n, s = len(ordered), image_size
    shapes = {"images.npy": (n, 3, s, s), **({"masks.npy": (n, 1, s, s)} if with_masks else {})}
    needed = sum(int(np.prod(shape)) for shape in shapes.values())
    what = f"the tensor cache of {root.name} at {s} px"
    paths.require_free_space(folder, needed, what)
    try:
        arrays = {name: _array_file(folder / name, shape) for name, shape in shapes.items()}
        _decode_all(root, ordered, image_size, arrays["images.npy"], arrays.get("masks.npy"))
        for array in arrays.values():
            array.flush()
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        raise ConfigError(f"{what} needs {paths.format_size(needed)} in {folder.parent} but the disk is full "
                          "(No space left on device); free some space or point OSAD_CACHE at a larger disk") from None
    files = {name: {"size": (folder / name).stat().st_size, "sha256": _sha256(folder / name)} for name in shapes}
    return {"root": str(root), "image_size": s, "paths": [x.path for x in ordered], "files": files}


def _cache_problem(folder: Path) -> str:
    """Why the tensor cache in ``folder`` cannot be trusted ('' when sizes match and, once per
    process, the SHA-256 of each array matches what was written)."""
    files = (read_marker(folder) or {}).get("files", {})
    if not files:
        return "its marker lists no files"
    for name, facts in files.items():
        file = folder / name
        size = file.stat().st_size if file.is_file() else 0
        if size != facts["size"]:
            return f"{name} is {paths.format_size(size)} where {paths.format_size(facts['size'])} were written"
    if folder not in _VERIFIED:
        wrong = [name for name, facts in files.items() if _sha256(folder / name) != facts["sha256"]]
        if wrong:
            return f"the SHA-256 of {wrong[0]} differs from the one written"
        _VERIFIED.add(folder)
    return ""


def _tensor_cache(root: Path, ordered: list[Sample], image_size: int, with_masks: bool) -> Path:
    """The cache folder of these samples at this size: built once, checked on every use, and
    rebuilt (one line on stderr) when damaged."""
    key = _cache_key(root, ordered, image_size)
    dest = paths.cache_dir() / "tensors" / key

    def build(tmp: Path) -> dict:
        return _write_cache(tmp, root, ordered, image_size, with_masks)

    folder = build_folder_once(dest, {"tensors": key}, build)
    problem = _cache_problem(folder)
    if problem:
        notice(f"tensor cache {folder} is damaged ({problem}); rebuilding it")
        _VERIFIED.discard(folder)
        (folder / MARKER).unlink(missing_ok=True)
        folder = build_folder_once(dest, {"tensors": key}, build)
    return folder


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
        folder = _tensor_cache(root, ordered, image_size, with_masks)
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


def subsample(images: ImageSet, max_images: int, seed: int) -> ImageSet:
    """At most ``max_images`` of ``images``, each class (``good`` included) keeping its share
    (at least one image per class; :func:`osad_lib.limits.stratified_rows`); seeded, sorted by
    position. 0 = all images."""
    if not max_images or len(images) <= max_images:
        return images
    return images.select(limits.stratified_rows(images.classes, max_images, seed))
