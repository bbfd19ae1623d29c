"""The image baselines' runs (:mod:`osad_lib.methods.baselines.baselines`, PatchCore, KDAD) inside the
DevNet and DRA grids: settings from a notebook's profile, the ``deviations`` of their rows, and
runners with the signature and return of DevNet's (``osad_lib.experiments.devnet.METHODS``):
``runner(cfg, split, root, config=None, *, max_test_images=0, localize=None, artifact=None,
checkpoint=None) -> {metric: value}`` with ``auroc``, ``aupr`` and, when localizing,
``pixel_auroc`` (mean per-anomaly pixel AUROC, the metric of DevNet Table 4).

Settings (:func:`baseline_config`): DevNet's settings under the profile
(:func:`osad_lib.experiments.devnet_settings.devnet_config`: same backbone, image size, frozen
stages and schedule) ← the method's own defaults ← ``METHOD_OVERRIDES[method][profile]`` when
present ← explicit changes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from osad_lib import explain
from osad_lib.data.protocols import Split
from osad_lib.data.tensors import ImageSet, load_split, subsample
from osad_lib.experiments.devnet_settings import devnet_config
from osad_lib.experiments.model_store import load_or_train
from osad_lib.experiments.stem_cache import StemConfig, training_stems
from osad_lib.metrics import image_aupr, image_auroc
from osad_lib.methods.baselines.baselines import (
    METHOD_DEFAULTS, METHOD_NOTES, METHODS, MINNS_FROM_DEVNET, PATCHCORE_PAPER_FIELDS, SHARED_WITH_DEVNET,
    BaselineConfig, build_model, train_baseline,
)
from osad_lib.methods.devnet.model import score_images
from osad_lib.methods.baselines.kdad import KDADConfig, anomaly_maps, train_kdad
from osad_lib.methods.baselines.patchcore import PatchCore, PatchCoreConfig
from osad_lib.components.stems import StemFeatures
from osad_lib.profiles import METHOD_OVERRIDES, NotebookConfig
from osad_lib.seeding import seed_everything
from osad_lib.settings import config_diff, field_names
from osad_lib.validate import ConfigError, choose

# --------------------------------------------------------------------------------------------
# configuration from a notebook's profile


def baseline_config(cfg: NotebookConfig, method: str, **changes: Any) -> BaselineConfig:
    """DevNet's settings under ``cfg.profile`` (:func:`osad_lib.experiments.devnet.devnet_config`:
    :data:`SHARED_WITH_DEVNET`, and for MINNS :data:`MINNS_FROM_DEVNET`) ← :data:`METHOD_DEFAULTS`
    ← ``METHOD_OVERRIDES[method][profile]`` (if the block exists) ← ``changes``."""
    method = choose("baseline method", method, METHODS)
    devnet = devnet_config(cfg)
    taken = SHARED_WITH_DEVNET + (MINNS_FROM_DEVNET if method == "minns" else ())
    base = {name: getattr(devnet, name) for name in taken}
    return BaselineConfig.from_overrides({**base, **METHOD_DEFAULTS[method], **_profile_overrides(cfg, method),
                                          **changes, "method": method})


def patchcore_config(cfg: NotebookConfig, **changes: Any) -> PatchCoreConfig:
    """The profile's backbone, weights and evaluation batch, PatchCore's 224 px (the profile's
    size when smaller) ← ``METHOD_OVERRIDES["patchcore"][profile]`` (if present) ← ``changes``."""
    p = cfg.profile
    size = min(p.image_size, PatchCoreConfig().image_size)
    base = {"backbone": p.backbone, "weights": p.weights, "image_size": size, "batch_size": p.eval_batch_size}
    return PatchCoreConfig.from_overrides({**base, **_profile_overrides(cfg, "patchcore"), **changes})


def kdad_config(cfg: NotebookConfig, **changes: Any) -> KDADConfig:
    """KDAD's own settings (:class:`~osad_lib.methods.baselines.kdad.KDADConfig`: VGG-16 source, 128 px, its
    schedule — the DevNet/DRA tables report KDAD as published, not on DevNet's settings) with the
    profile's weights kind (``random`` in smoke) ← ``METHOD_OVERRIDES["kdad"][profile]`` (if
    present) ← ``changes``."""
    base = {"weights": cfg.profile.weights}
    return KDADConfig.from_overrides({**base, **_profile_overrides(cfg, "kdad"), **changes})


def _profile_overrides(cfg: NotebookConfig, method: str) -> dict[str, Any]:
    return dict(cfg.profile.method(method).config) if method in METHOD_OVERRIDES else {}


def baseline_deviations(method: str, dataset: str, config: BaselineConfig | PatchCoreConfig | KDADConfig) -> str:
    """The ``deviations`` of a baseline's result row: synthetic data, settings unlike the paper-scale
    defaults (:meth:`BaselineConfig.paper_defaults`; PatchCore: :class:`PatchCoreConfig`'s with
    the paper's WideResNet-50 named; KDAD: :class:`KDADConfig`'s), and :data:`METHOD_NOTES`."""
    if isinstance(config, KDADConfig):
        parts = config_diff(config, KDADConfig(), "paper")
    elif isinstance(config, PatchCoreConfig):
        parts = [f"backbone={config.backbone}/{config.weights} (paper: wide_resnet50/imagenet)"]
        unstated = [f for f in field_names(config) if f not in PATCHCORE_PAPER_FIELDS] + ["max_train_images"]
        parts += config_diff(config, PatchCoreConfig(), "paper", skip=unstated)
        if config.max_train_images:
            parts.append(f"memory bank from at most {config.max_train_images} training normals (paper: all)")
    else:
        parts = config_diff(config, BaselineConfig.paper_defaults(method), "paper")
    synthetic = ["synthetic data (no paper row)"] if dataset == "synthetic" else []
    return "; ".join(synthetic + parts + list(METHOD_NOTES.get(method, ())))


# --------------------------------------------------------------------------------------------
# runners (same signature and return as DevNet's runners)


def _evaluate(split: Split, test: ImageSet, scores: np.ndarray, maps_of: Callable[[np.ndarray], np.ndarray],
              localize: bool | None, artifact: Path | None, image_size: int) -> dict[str, float]:
    """Image AUROC/AUPR and, with ``localize`` (default: when ``test`` has masks), the mean
    per-anomaly pixel AUROC of ``maps_of(anomalous test indices)``; optionally the artifact file
    (the keys DevNet's Fig. 4 reads: scores, labels, pixel_auroc, paths, classes; no overlays)."""
    labels = test.labels.numpy()
    metrics = {"auroc": image_auroc(labels, scores), "aupr": image_aupr(labels, scores)}
    localize = test.masks is not None if localize is None else localize
    pixel = np.full(len(test), np.nan)
    if localize:
        if test.masks is None:
            raise ConfigError(f"{split.dataset}/{split.subset} has no masks; localization needs pixel ground truth")
        anomalous = np.flatnonzero(labels == 1)
        pixel[anomalous] = explain.per_image_pixel_auroc(maps_of(anomalous), test.masks[anomalous])
        metrics["pixel_auroc"] = float(np.nanmean(pixel))
    if artifact is not None:
        artifact.parent.mkdir(parents=True, exist_ok=True)
        split.to_json(artifact.with_suffix(".split.json"))
        np.savez_compressed(artifact, scores=scores, labels=labels, pixel_auroc=pixel,
                            overlay_index=np.zeros(0, dtype=np.int64),
                            overlay_maps=np.zeros((0, image_size, image_size), np.float16),
                            paths=np.asarray(test.paths), classes=np.asarray(test.classes), image_size=image_size)
    return metrics


def _stems(cfg: NotebookConfig, root: Path, config: BaselineConfig, images: ImageSet,
           anomaly_views: bool = False) -> StemFeatures | None:
    """Cached frozen-stem features (shared with DevNet/DRA), with the labelled anomalies' dihedral
    views when ``anomaly_views``, or None when nothing is frozen."""
    if not config.frozen_stages:
        return None
    return training_stems(root, StemConfig.of(config), images, cfg.device, anomaly_views)


def run_baseline(
    cfg: NotebookConfig,
    split: Split,
    root: Path,
    config: BaselineConfig,
    *,
    max_test_images: int = 0,
    localize: bool | None = None,
    artifact: Path | None = None,
    checkpoint: Path | None = None,
) -> dict[str, float]:
    """Train ``config.method`` on ``split`` of the dataset at ``root``; test ``auroc``, ``aupr``
    and (with ``localize``; default: when the test set has masks) ``pixel_auroc`` of the
    gradient explanation maps (DevNet Eq. (9), :func:`osad_lib.explain.saliency_maps`).
    ``checkpoint``: resume an interrupted run; ``artifact``: per-image outputs (``.npz``);
    ``max_test_images``: class-stratified test subsample. Unsupervised Deep SVDD ignores the
    split's labelled anomalies and is tested on the same test set as the others.
    """
    train, test = load_split(split, root, config.image_size)
    test = subsample(test, max_test_images, split.seed)
    model, _ = load_or_train(  # 01_devnet and 02_dra run the same baselines on the same splits: train once
        cfg, config.method, config, split.manifest_id, split.seed, lambda: build_model(config).to(cfg.device),
        lambda: train_baseline(config, train, split.seed, cfg.device, checkpoint=checkpoint, progress=cfg.interactive,
                               desc=f"{config.method} {split.dataset}",
                               stems=_stems(cfg, root, config, train, config.dihedral))[0])
    stems = _stems(cfg, root, config, test)
    inputs = stems if stems is not None else test.images
    scores = score_images(model, inputs, config.eval_batch_size, cfg.device, config.amp)

    def maps_of(rows: np.ndarray) -> np.ndarray:
        return explain.saliency_maps(model, test.images[rows], config.eval_batch_size, cfg.device)

    return _evaluate(split, test, scores, maps_of, localize, artifact, config.image_size)


def run_patchcore(
    cfg: NotebookConfig,
    split: Split,
    root: Path,
    config: PatchCoreConfig | None = None,
    *,
    max_test_images: int = 0,
    localize: bool | None = None,
    artifact: Path | None = None,
    checkpoint: Path | None = None,
) -> dict[str, float]:
    """PatchCore (:mod:`osad_lib.methods.baselines.patchcore`; default :func:`patchcore_config`) fitted on the
    split's training normals (labelled anomalies ignored; at most ``config.max_train_images`` of
    them, drawn with the split's seed), tested like :func:`run_baseline`;
    ``pixel_auroc`` comes from its nearest-neighbour anomaly maps. ``checkpoint`` is accepted for
    the common runner signature and unused (nothing is trained; the memory bank is rebuilt).
    """
    config = config if config is not None else patchcore_config(cfg)
    train, test = load_split(split, root, config.image_size)
    test = subsample(test, max_test_images, split.seed)
    rng = seed_everything(split.seed)  # also random-weight backbones
    normals = torch.nonzero(train.labels == 0).flatten().numpy()
    if config.max_train_images and len(normals) > config.max_train_images:
        normals = np.sort(rng.choice(normals, config.max_train_images, replace=False))
    model = PatchCore(config).fit(train.images[torch.as_tensor(normals)], seed=split.seed, device=cfg.device,
                                  progress=cfg.interactive)
    localize = test.masks is not None if localize is None else localize
    scores, maps = model.predict(test.images, cfg.device, maps=localize, progress=cfg.interactive)
    return _evaluate(split, test, scores, lambda rows: maps[rows], localize, artifact, config.image_size)


def run_kdad(
    cfg: NotebookConfig,
    split: Split,
    root: Path,
    config: KDADConfig | None = None,
    *,
    max_test_images: int = 0,
    localize: bool | None = None,
    artifact: Path | None = None,
    checkpoint: Path | None = None,
) -> dict[str, float]:
    """KDAD (:mod:`osad_lib.methods.baselines.kdad`; default :func:`kdad_config`): the cloner trained on the
    split's training normals (labelled anomalies ignored), tested like :func:`run_baseline` on the
    same test set; ``pixel_auroc`` from its gradient maps (:func:`osad_lib.methods.baselines.kdad.anomaly_maps`)."""
    config = config if config is not None else kdad_config(cfg)
    train, test = load_split(split, root, config.image_size)
    test = subsample(test, max_test_images, split.seed)
    model, _ = train_kdad(config, train, split.seed, cfg.device, checkpoint=checkpoint, progress=cfg.interactive,
                          desc=f"kdad {split.dataset}")
    scores = score_images(model, test.images, config.eval_batch_size, cfg.device, config.amp)
    return _evaluate(split, test, scores, lambda rows: anomaly_maps(model, test.images[rows], cfg.device),
                     localize, artifact, config.image_size)


def _runner(method: str) -> Callable[..., dict[str, float]]:
    def run(cfg: NotebookConfig, split: Split, root: Path, config: BaselineConfig | None = None,
            **kwargs: Any) -> dict[str, float]:
        return run_baseline(cfg, split, root, config if config is not None else baseline_config(cfg, method), **kwargs)

    run.__name__ = f"run_{method}"
    run.__doc__ = f"{method}: :func:`run_baseline` with :func:`baseline_config` (cfg, {method!r}) unless ``config`` is given."
    return run


run_deepsvdd = _runner("deepsvdd")
run_deepsad = _runner("deepsad")
run_minns = _runner("minns")

#: Method name → runner ``(cfg, split, root, config=None, *, max_test_images, localize, artifact,
#: checkpoint) -> metrics``, for ``osad_lib.experiments.devnet.register_method``.
RUNNERS: dict[str, Callable[..., dict[str, float]]] = {
    "deepsvdd": run_deepsvdd, "deepsad": run_deepsad, "minns": run_minns, "patchcore": run_patchcore,
    "kdad": run_kdad,
}


def method_config(cfg: NotebookConfig, method: str) -> BaselineConfig | PatchCoreConfig | KDADConfig:
    """The settings a runner of :data:`RUNNERS` uses by default (for grid rows' backbone/deviations)."""
    method = choose("baseline", method, RUNNERS)
    if method == "kdad":
        return kdad_config(cfg)
    return patchcore_config(cfg) if method == "patchcore" else baseline_config(cfg, method)


__all__ = [
    "RUNNERS", "baseline_config", "baseline_deviations", "kdad_config", "method_config", "patchcore_config",
    "run_baseline", "run_deepsad", "run_deepsvdd", "run_kdad", "run_minns", "run_patchcore",
]
