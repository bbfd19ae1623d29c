"""The feature stage: frozen per-scale feature maps of a trained base model, computed once and cached.

AHL trains only scoring heads on features that a trained DevNet or DRA extracts from every training
and test image and from pseudo-anomalous versions of every training normal, one set per generator
(``docs/official_code/ahl.md`` "Feature files", "Pseudo-anomaly generators for the features" and
"The pipeline the code implements", step 2). The official repository never published the script that
produced its plain features (issues #4, #6); this module is that step, reusable by any method that
scores frozen features:

* :func:`extract_features` — the base model's last feature map at every pyramid scale
  (``model.top(stem)`` for each scale of ``model.stem_pyramid(images)``, eval mode, no
  gradients) → ``[N, C, h_s, w_s]`` per scale, float16 on the CPU. A model with a frozen stem
  (``frozen_stages > 0``) can start from cached stem outputs.
* :func:`pseudo_images` — the three AHL generators (App. B.1; the page above) on training normals:
  ``cutmix`` (:func:`~osad_lib.data.pseudo.cutmix_cross_image`, a box from another normal of
  the same batch), ``cutpaste`` (:func:`~osad_lib.data.pseudo.cutpaste_same_image`) and
  ``draem`` (:func:`~osad_lib.data.pseudo.draem_perlin`, generated textures unless DTD images
  are given). Unlike the code, no RandomRotation(180) follows and the DRAEM input is
  normalised like every other input (``docs/official_code/ahl.md``
  "Where the code departs from the paper", item 8).
* :func:`cached_features` — a :class:`FeatureBank` of one split under one trained model, stored
  under ``cache_dir()/features/<key>.pt`` (atomic write, size and SHA-256 checked on load: a
  damaged file is recomputed with one line on stderr) where the key hashes the split's
  manifest id, the model's weights (:func:`model_hash`), the generators, the normal subset, the
  test images and the seed; a second call with the same inputs loads it instead of recomputing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from osad_lib import paths
from osad_lib.data.mvtec import read_mvtec_layout
from osad_lib.data.pseudo import apply_batch
from osad_lib.data.tensors import ImageSet, file_digests, tensors_digest
from osad_lib.training import load_checkpoint, save_checkpoint
from osad_lib.validate import ConfigError, choose

#: AHL's pseudo-anomaly generators (App. B.1) → :mod:`osad_lib.data.pseudo` names.
PSEUDO_GENERATORS = {"cutmix": "cutmix_cross_image", "cutpaste": "cutpaste_same_image", "draem": "draem_perlin"}
#: Bump when extraction changes, so cached banks are rebuilt.
FEATURE_VERSION = 3


@dataclass
class FeatureBank:
    """Frozen features of one split under one trained base model; every tensor is per scale.

    ``normal``: training normals ``[N_n, C, h, w]`` (rows = ``normal_rows`` of the training
    ImageSet); ``anomaly``: labelled training anomalies; ``pseudo``: generator → pseudo-anomalous
    version of each training normal (row j ↔ normal j); ``references``: the DRA composite
    head's reference images (empty for DevNet); ``test`` with ``test_labels`` (1 = anomaly)
    and ``test_classes``. ``key``: the cache key (split manifest id + model hash + options).
    """

    normal: list[torch.Tensor]
    anomaly: list[torch.Tensor]
    pseudo: dict[str, list[torch.Tensor]]
    test: list[torch.Tensor]
    test_labels: np.ndarray
    test_classes: list[str]
    references: list[torch.Tensor] = field(default_factory=list)
    normal_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    key: str = ""

    @property
    def n_scales(self) -> int:
        return len(self.normal)

    @property
    def channels(self) -> int:
        return int(self.normal[0].shape[1])

    @property
    def n_normals(self) -> int:
        return int(self.normal[0].shape[0])

    @property
    def n_anomalies(self) -> int:
        return int(self.anomaly[0].shape[0])

    def state(self) -> dict[str, Any]:
        return {"normal": self.normal, "anomaly": self.anomaly, "pseudo": self.pseudo, "test": self.test,
                "test_labels": self.test_labels, "test_classes": list(self.test_classes),
                "references": self.references, "normal_rows": self.normal_rows, "key": self.key}


def model_hash(model: nn.Module) -> str:
    """A content hash of ``model``'s state dict (names, shapes, values): the checkpoint identity."""
    return tensors_digest(model.state_dict())[:20]


def pseudo_stems_hash(pseudo_stems: Mapping[str, Any]) -> str:
    """A content hash of cached pseudo-anomaly stems (generator → ``StemFeatures``)."""
    return tensors_digest({f"{generator}/{scale}": level for generator, stems in pseudo_stems.items()
                           for scale, level in enumerate(stems.per_scale)})[:20]


def _as_float(images: torch.Tensor, device: str) -> torch.Tensor:
    images = images.to(device)
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


@torch.no_grad()
def extract_features(model: nn.Module, images: torch.Tensor | None = None, batch_size: int = 64,
                     device: str = "cpu", progress: bool = False, stems: Any = None,
                     desc: str = "features") -> list[torch.Tensor]:
    """Per-scale last feature maps of a trained DevNet/DRA (anything with ``stem_pyramid`` and
    ``top``) on ``images`` (uint8 or [0, 1] floats ``[N, 3, S, S]``) or on cached frozen-stem
    outputs ``stems`` (:class:`osad_lib.components.stems.StemFeatures`) → float16 CPU tensors.

    Eval mode (batch-norm statistics fixed), no gradients; the model's mode is restored.
    """
    if (images is None) == (stems is None):
        raise ConfigError("extract_features needs exactly one of images= or stems=")
    for name in ("stem_pyramid", "top"):
        if not hasattr(model, name):
            raise ConfigError(f"{type(model).__name__} has no {name}(); pass a DevNet or DRA model")
    was_training = model.training
    model.eval()
    n = len(stems) if stems is not None else images.shape[0]
    chunks: list[list[torch.Tensor]] = []
    for start in tqdm(range(0, n, batch_size), desc=desc, leave=False, disable=not progress):
        rows = slice(start, start + batch_size)
        scales = stems.take(rows, device) if stems is not None else model.stem_pyramid(_as_float(images[rows], device))
        chunks.append([model.top(s).float().half().cpu() for s in scales])
    model.train(was_training)
    if not chunks:
        raise ConfigError("no images to extract features from")
    return [torch.cat(level) for level in zip(*chunks, strict=True)]


def pseudo_images(normals: torch.Tensor, generator: str, seed: int, batch_size: int = 64,
                  textures: torch.Tensor | None = None) -> torch.Tensor:
    """Pseudo-anomalous versions of ``normals`` (uint8 ``[N, 3, S, S]``) by one AHL generator → uint8.

    Deterministic in ``seed`` (each batch gets its own derived seed). ``cutmix`` takes each
    patch from another image of the same batch; ``draem`` uses ``textures`` if given.
    """
    name = PSEUDO_GENERATORS[choose("generator", generator, tuple(PSEUDO_GENERATORS))]
    params: dict[str, Any] = {"textures": textures} if generator == "draem" and textures is not None else {}
    out = []
    for start in range(0, normals.shape[0], batch_size):
        batch = _as_float(normals[start:start + batch_size], "cpu")
        if name == "cutmix_cross_image" and batch.shape[0] < 2:
            params = {"sources": _as_float(normals[:2], "cpu")}
        images, _ = apply_batch(name, batch, seed * 7919 + start, **params)
        out.append((images.clamp(0, 1) * 255).round().to(torch.uint8))
    return torch.cat(out)


def feature_key(manifest_id: str, checkpoint: str, generators: Sequence[str], normal_rows: np.ndarray,
                reference_rows: Sequence[int], image_size: int, seed: int, test_paths: Sequence[str] = (),
                pseudo_source: str = "") -> str:
    """The cache key of a feature bank (``test_paths``: the evaluated test images, e.g. a subsample;
    ``pseudo_source``: where the pseudo anomalies came from when not made here, with a hash of
    their content)."""
    text = json.dumps([FEATURE_VERSION, manifest_id, checkpoint, list(generators), np.asarray(normal_rows).tolist(),
                       [int(r) for r in reference_rows], int(image_size), int(seed), list(test_paths), pseudo_source])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def feature_file(key: str) -> Path:
    return paths.cache_dir() / "features" / f"{key}.pt"


def normal_subset(train: ImageSet, max_normals: int, seed: int) -> np.ndarray:
    """Rows of ``train`` that are normals (label 0), all or a seeded sorted draw of ``max_normals``."""
    rows = np.flatnonzero(np.asarray(train.labels) == 0)
    if max_normals and len(rows) > max_normals:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=max_normals, replace=False))
    return rows


def cached_features(model: nn.Module, train: ImageSet, test: ImageSet, manifest_id: str, *,
                    generators: Sequence[str] = tuple(PSEUDO_GENERATORS), seed: int = 0,
                    max_normals: int = 0, reference_rows: Sequence[int] = (), train_stems: Any = None,
                    test_stems: Any = None, textures: torch.Tensor | None = None, batch_size: int = 64,
                    device: str = "cpu", progress: bool = True,
                    pseudo_stems: Mapping[str, Any] | None = None) -> FeatureBank:
    """The :class:`FeatureBank` of a split under a trained model, from the cache or computed once.

    ``train``/``test``: the split's ImageSets (``load_split``); ``manifest_id``: the split's id.
    ``max_normals``: use a seeded subset of the training normals (0 = all). ``reference_rows``:
    rows of ``train`` whose features are the DRA references (``DRATrainingData.
    fixed_reference_idx``). ``train_stems``/``test_stems``: cached frozen-stem outputs aligned
    with ``train``/``test``. ``pseudo_stems``: per generator, cached frozen-stem outputs of the
    pseudo anomalies of the selected normals (rows aligned with them,
    :func:`osad_lib.experiments.stem_cache.pseudo_stems`); without, pseudo images are made here
    (:func:`pseudo_images`) and go through the whole network.
    """
    normal_rows = normal_subset(train, max_normals, seed)
    anomaly_rows = np.flatnonzero(np.asarray(train.labels) == 1)
    image_size = int(train.images.shape[-1])
    key = feature_key(manifest_id, model_hash(model), generators, normal_rows, reference_rows, image_size, seed,
                      test.paths, f"cached-pseudo:{pseudo_stems_hash(pseudo_stems)}" if pseudo_stems is not None else "")
    file = feature_file(key)
    state = load_checkpoint(file, what="feature cache", consequence="recomputing it")
    if state is not None:
        return FeatureBank(**state)

    def rows_of(rows: np.ndarray, images: ImageSet, stems: Any, desc: str) -> list[torch.Tensor]:
        if stems is not None:
            return extract_features(model, stems=stems.select(rows.tolist()), batch_size=batch_size,
                                    device=device, progress=progress, desc=desc)
        return extract_features(model, images.images[torch.as_tensor(rows)], batch_size, device, progress, desc=desc)

    normals = train.images[torch.as_tensor(normal_rows)]
    bank = FeatureBank(
        normal=rows_of(normal_rows, train, train_stems, "features: normals"),
        anomaly=rows_of(anomaly_rows, train, train_stems, "features: anomalies"),
        pseudo={g: extract_features(model, stems=pseudo_stems[g], batch_size=batch_size, device=device,
                                    progress=progress, desc=f"features: {g}") if pseudo_stems is not None else
                extract_features(model, pseudo_images(normals, g, seed, batch_size, textures), batch_size, device,
                                 progress, desc=f"features: {g}") for g in generators},
        test=rows_of(np.arange(len(test)), test, test_stems, "features: test"),
        test_labels=np.asarray(test.labels).astype(np.int64),
        test_classes=list(test.classes),
        references=(rows_of(np.asarray(reference_rows, dtype=np.int64), train, train_stems, "features: references")
                    if len(reference_rows) else []),
        normal_rows=normal_rows,
        key=key,
    )
    save_checkpoint(file, bank.state())
    return bank


# --------------------------------------------------------------------------------------------
# frozen backbone features of a whole dataset (BGAD's flows, DevNet/DRA frozen stems)


def dataset_key(root: Path, *settings: Any) -> str:
    """A key for features of every image of the dataset at ``root``: the relative path and
    SHA-256 of every image and mask file (:func:`osad_lib.data.tensors.file_digests`) and
    ``settings`` (backbone, weights, image size, … — anything the features depend on). Editing,
    adding or removing a file changes the key, so a stale cache is never used; moving the
    dataset or copying the cache does not."""
    files = [rel for sample in read_mvtec_layout(root) for rel in (sample.path, sample.mask_path) if rel is not None]
    text = json.dumps([FEATURE_VERSION, [str(x) for x in settings], sorted(file_digests(root, files).items())])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cached_dataset_features(namespace: str, key: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``compute()``'s tensors (a dict) stored once under ``cache_dir()/<namespace>/<key>.pt``
    (atomic write) and loaded on every later call with the same key: frozen features are computed
    once per backbone, resolution and dataset, and reused across seeds, settings, variants and
    notebooks (issue: performance, frozen-feature cache). The first call returns what it saved,
    so cached and uncached runs see identical values."""
    file = paths.cache_dir() / namespace / f"{key}.pt"
    state = load_checkpoint(file, weights_only=True, what="feature cache", consequence="recomputing it")
    if state is None:
        save_checkpoint(file, compute())
        state = torch.load(file, weights_only=True)
    return state


__all__ = ["FEATURE_VERSION", "PSEUDO_GENERATORS", "FeatureBank", "cached_dataset_features", "cached_features",
           "dataset_key", "extract_features", "feature_file", "feature_key", "model_hash", "normal_subset",
           "pseudo_images", "pseudo_stems_hash"]
