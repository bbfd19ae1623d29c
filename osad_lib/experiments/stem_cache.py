"""Frozen-stem outputs of whole datasets, computed once and cached: the CPU demo's fast path.

With ``frozen_stages > 0`` (not in the papers, which fine-tune everything) the first backbone
stages never change, so their outputs — the *stems* — are computed once per dataset, backbone,
image size and depth, and every DevNet, DRA, baseline and AHL run of the demo trains and scores
its trainable part on them (:class:`osad_lib.components.stems.StemFeatures`). Three caches, all under
``cache_dir()``, keyed by the dataset's files (:func:`osad_lib.components.features.dataset_key`) and the
:class:`StemConfig`:

* :func:`dataset_stems` — every image of the dataset, identity view (training and test images);
* :func:`dataset_stem_views` — the 7 other dihedral views of the images asked for (the labelled
  anomalies of the splits run), one file per image, so only those are ever computed;
* :func:`pseudo_stems` — one pseudo anomaly per training normal and generator (DRA's pseudo
  head, AHL's three generators), each made from its normal with a seed derived from the file
  name, under a random dihedral transform when ``dihedral``; one file per image.

Every run of every notebook (01, 02, 05, 06, 07) shares them: a stem is computed once per machine.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from osad_lib import paths
from osad_lib.data.mvtec import read_mvtec_layout
from osad_lib.data.pseudo import apply_batch
from osad_lib.data.tensors import ImageSet, load_images, tensors_digest
from osad_lib.components.features import cached_dataset_features, dataset_key
from osad_lib.components.backbones import build_backbone
from osad_lib.components.heads import image_pyramid
from osad_lib.components.stems import DIHEDRAL_VIEWS, StemFeatures, dihedral, dihedral_views, stem_outputs, to_float_images
from osad_lib.training import load_checkpoint, save_checkpoint
from osad_lib.validate import ConfigError

#: Bump when stems are computed differently, so cached ones are rebuilt.
STEM_VERSION = 3


@dataclass(frozen=True)
class StemConfig:
    """What a frozen stem's outputs depend on. ``n_scales``: pyramid scales (the cache always
    holds at least two; a one-scale request takes the first); ``batch_size``: inference batch,
    which every batch is padded to (:func:`~osad_lib.components.stems.stem_outputs`), so a cached
    image's stem output depends on that image alone. The cache's batch is 8: on a 2-core CPU the
    stem at 160 px costs 5.5 ms per image in batches of 8 and 16 ms in batches of 64."""

    backbone: str
    weights: str
    image_size: int
    n_scales: int
    frozen_stages: int
    batch_size: int = 8

    @classmethod
    def of(cls, config: Any) -> StemConfig:
        """The stem settings of a DevNet, DRA or baseline config (fields of the same names)."""
        return cls(config.backbone, config.weights, config.image_size, config.n_scales, config.frozen_stages,
                   getattr(config, "eval_batch_size", cls.batch_size))

    def key_parts(self) -> tuple[Any, ...]:
        return (STEM_VERSION, self.image_size, max(self.n_scales, 2), self.backbone, self.weights, self.frozen_stages)


class FrozenStem(nn.Module):
    """Normalisation and the first ``frozen_stages`` stages of a backbone, on every pyramid scale."""

    def __init__(self, config: StemConfig):
        super().__init__()
        if config.frozen_stages < 1:
            raise ConfigError("a cached stem needs frozen_stages >= 1; with a trainable backbone there is nothing to cache")
        if config.weights == "random":
            raise ConfigError("frozen_stages > 0 needs pretrained weights (a frozen random stem would differ per seed); "
                              "use weights='imagenet'")
        backbone = build_backbone(config.backbone, config.weights)
        if config.frozen_stages > len(backbone.stages):
            raise ConfigError(f"frozen_stages={config.frozen_stages} but backbone {config.backbone!r} has "
                              f"{len(backbone.stages)} stages")
        self.normalize = backbone.normalize
        self.stages = nn.Sequential(*backbone.stages[:config.frozen_stages])
        self.n_scales = max(config.n_scales, 2)
        self.eval()

    @torch.no_grad()
    def stem_pyramid(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [self.stages(self.normalize(x)) for x in image_pyramid(images, self.n_scales)]


@functools.lru_cache(maxsize=2)
def _frozen_stem(config: StemConfig, device: str) -> FrozenStem:
    return FrozenStem(config).to(device)


def _dataset_images(root: Path, image_size: int) -> tuple[ImageSet, dict[str, int]]:
    everything = load_images(root, read_mvtec_layout(root), image_size)  # the dataset's tensor cache
    return everything, {p: i for i, p in enumerate(everything.paths)}


@functools.lru_cache(maxsize=2)
def _all_stems(root: Path, config: StemConfig, device: str) -> tuple[StemFeatures, dict[str, int]]:
    def compute() -> dict[str, Any]:
        everything, _ = _dataset_images(root, config.image_size)
        per_scale = stem_outputs(_frozen_stem(config, device).stem_pyramid, everything.images, config.batch_size,
                                 device, progress=True)
        return {"per_scale": list(per_scale), "paths": everything.paths}

    state = cached_dataset_features("stems", dataset_key(root, "stems", *config.key_parts()), compute)
    return StemFeatures(tuple(state["per_scale"])), {p: i for i, p in enumerate(state["paths"])}


def dataset_stems(root: Path, config: StemConfig, images: ImageSet, device: str = "cpu") -> StemFeatures:
    """Frozen-stem outputs of ``images`` (an ImageSet of the dataset at ``root``), rows in
    ``images.paths`` order, from the dataset's cache (computed once for every file)."""
    stems, row = _all_stems(root, _cache_config(config), device)
    return StemFeatures(stems.per_scale[:config.n_scales]).select([row[p] for p in images.paths])


def _cache_config(config: StemConfig) -> StemConfig:
    """The cached variant (two scales at least, default batch): one cache serves every request."""
    return StemConfig(config.backbone, config.weights, config.image_size, max(config.n_scales, 2),
                      config.frozen_stages)


def _per_image(root: Path, config: StemConfig, kind: str, image_paths: Sequence[str],
               compute: Any, device: str) -> list[tuple[torch.Tensor, ...]]:
    """Per-image cached tensors under ``cache_dir()/<kind>/<key>/``: the missing ones come from
    ``compute(missing_paths) -> list of per-scale tuples``; returns them in ``image_paths`` order."""
    config = _cache_config(config)
    folder = paths.cache_dir() / "stem_files" / dataset_key(root, kind, *config.key_parts())
    def file(p: str) -> Path:
        return folder / f"{hashlib.sha1(p.encode()).hexdigest()[:20]}.pt"

    found: dict[str, tuple[torch.Tensor, ...]] = {}
    for p in dict.fromkeys(image_paths):
        state = load_checkpoint(file(p), weights_only=True, what="stem cache file", consequence="recomputing it")
        if state is not None:
            found[p] = tuple(state["per_scale"])
    missing = [p for p in dict.fromkeys(image_paths) if p not in found]
    if missing:
        for path, tensors in zip(missing, compute(missing), strict=True):
            found[path] = tuple(t.clone() for t in tensors)
            save_checkpoint(file(path), {"path": path, "per_scale": list(found[path])})
    return [found[p] for p in image_paths]


def dataset_stem_views(root: Path, config: StemConfig, image_paths: Sequence[str],
                       device: str = "cpu") -> list[tuple[torch.Tensor, ...]]:
    """The stem outputs of the 7 non-identity dihedral views of the images ``image_paths`` of the
    dataset at ``root``: per image, per scale ``[7, C, h, w]``; each image computed once."""
    stem = _frozen_stem(_cache_config(config), device)

    def compute(missing: Sequence[str]) -> list[tuple[torch.Tensor, ...]]:
        everything, row = _dataset_images(root, config.image_size)
        images = everything.images[torch.as_tensor([row[p] for p in missing])]
        return dihedral_views(stem.stem_pyramid, images, config.batch_size, device)

    views = _per_image(root, config, "stem_views", image_paths, compute, device)
    return [per_scale[:config.n_scales] for per_scale in views]


def training_stems(root: Path, config: StemConfig, train: ImageSet, device: str = "cpu",
                   dihedral_anomalies: bool = False) -> StemFeatures:
    """:func:`dataset_stems` of a training set; with ``dihedral_anomalies`` its labelled anomalies
    (label 1) carry their dihedral views (:func:`dataset_stem_views`), which training draws from
    (:meth:`~osad_lib.components.stems.StemFeatures.sample`)."""
    stems = dataset_stems(root, config, train, device)
    if not dihedral_anomalies:
        return stems
    rows = torch.nonzero(train.labels.cpu() == 1).flatten().tolist()
    views = dataset_stem_views(root, config, [train.paths[r] for r in rows], device)
    return stems.with_views(dict(zip(rows, views, strict=True)))


def pseudo_seed(path: str, generator: str) -> int:
    """The seed of the pseudo anomaly made from image ``path`` by ``generator`` (from their names)."""
    return int(hashlib.sha1(f"{generator}|{path}".encode()).hexdigest()[:8], 16)


def pseudo_stems(root: Path, config: StemConfig, generator: str, normal_paths: Sequence[str], *,
                 dihedral_transform: bool = False, textures: torch.Tensor | None = None,
                 device: str = "cpu") -> StemFeatures:
    """Stem outputs of one pseudo anomaly per normal of ``normal_paths`` (rows in that order) by
    :mod:`osad_lib.data.pseudo` generator ``generator``, each made from its normal with
    :func:`pseudo_seed` (``cutmix_cross_image`` takes its patch from another normal of the list,
    chosen by the same seed, so its cache entries belong to that list of normals: runs with other
    training normals, e.g. AHL's seeded subsets, get their own), then, with ``dihedral_transform``,
    under one of the 8 dihedral transforms chosen by the seed. ``textures``: DRAEM's texture images
    (DTD) when given."""
    if generator == "cutmix_cross_image" and len(normal_paths) < 2:
        raise ConfigError("cutmix_cross_image needs at least two normals")
    stem = _frozen_stem(_cache_config(config), device)
    sources = tuple(sorted(normal_paths))
    kind = f"pseudo_{generator}_{'d8' if dihedral_transform else 'id'}_{_texture_key(textures)}"
    if generator == "cutmix_cross_image":  # its patch comes from this list: a cached one is valid for this list only
        kind += "_" + hashlib.sha1("\n".join(sources).encode()).hexdigest()[:12]

    def make(everything: ImageSet, row: dict[str, int], path: str) -> torch.Tensor:
        seed = pseudo_seed(path, generator)
        params: dict[str, Any] = {}
        if generator == "cutmix_cross_image":
            others = [p for p in sources if p != path]
            params["sources"] = to_float_images(everything.images[row[others[seed % len(others)]]].unsqueeze(0))
        if generator == "draem_perlin" and textures is not None:
            params["textures"] = textures
        out = apply_batch(generator, to_float_images(everything.images[row[path]].unsqueeze(0)), seed, **params)[0]
        out = out.clamp(0, 1)
        return dihedral(out, seed % DIHEDRAL_VIEWS) if dihedral_transform else out

    def compute(missing: Sequence[str]) -> list[tuple[torch.Tensor, ...]]:
        everything, row = _dataset_images(root, config.image_size)
        out: list[tuple[torch.Tensor, ...]] = []
        for start in tqdm(range(0, len(missing), 256), desc=f"pseudo stems ({generator})", leave=False):
            chunk = missing[start:start + 256]
            images = torch.cat([make(everything, row, p) for p in chunk])
            per_scale = stem_outputs(stem.stem_pyramid, images, config.batch_size, device)
            out += [tuple(f[i] for f in per_scale) for i in range(len(chunk))]
        return out

    rows = _per_image(root, config, kind, normal_paths, compute, device)
    return StemFeatures(tuple(torch.stack([r[s] for r in rows]) for s in range(config.n_scales)))


def _texture_key(textures: torch.Tensor | None) -> str:
    if textures is None:
        return "generated"
    return tensors_digest({"textures": textures})[:12]


__all__ = ["STEM_VERSION", "FrozenStem", "StemConfig", "dataset_stem_views", "dataset_stems", "pseudo_seed",
           "pseudo_stems", "training_stems"]
