"""One DevNet experiment: its split, its model trained (or reused), its scores and metrics."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from osad_lib import explain
from osad_lib.data.protocols import Split
from osad_lib.data.tensors import ImageSet, load_split, subsample
from osad_lib.experiments import GridItem, baselines
from osad_lib.experiments.devnet_settings import (
    DEVNET_METHODS,
    devnet_config,
)
from osad_lib.experiments.model_store import load_or_train
from osad_lib.experiments.stem_cache import StemConfig, dataset_stems, training_stems
from osad_lib.metrics import image_aupr, image_auroc
from osad_lib.methods.devnet.model import DevNet, DevNetConfig, score_images, train_devnet
from osad_lib.profiles import NotebookConfig
from osad_lib.results import Experiment
from osad_lib.validate import ConfigError, choose
from osad_lib.experiments.devnet.config import N_OVERLAYS, NOTEBOOK
from osad_lib.experiments.devnet.grids import make_dataset_split
from osad_lib.experiments.devnet.config import METHODS



def run_devnet(
    cfg: NotebookConfig,
    split: Split,
    root: Path,
    config: DevNetConfig | None = None,
    *,
    max_test_images: int = 0,
    localize: bool | None = None,
    artifact: Path | None = None,
    checkpoint: Path | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Train DevNet/FLOS (``config``, default :func:`devnet_config`) on ``split``; test metrics.

    Returns ``auroc`` and ``aupr`` (image level) and, with ``localize`` (default: when the test
    set has masks), ``pixel_auroc`` = mean per-anomaly pixel AUROC of the gradient explanation
    maps (the code's metric: ``docs/official_code/devnet.md`` "Localisation (Table 4)").
    ``artifact``: write per-test-image scores, labels, pixel AUROCs and a few maps (``.npz``) for
    Figs. 4–5. ``checkpoint``: resume an interrupted run.
    ``max_test_images``: evaluate on a class-stratified subsample of the test set.
    ``progress``: per-epoch progress bars (off: :func:`osad_lib.experiments.protocol.run_grid` shows one bar
    over the runs).
    """
    config = config if config is not None else devnet_config(cfg)
    train, test = load_split(split, root, config.image_size)
    test = subsample(test, max_test_images, split.seed)
    stem = StemConfig.of(config)
    model = trained_devnet(cfg, split, root, config, train, checkpoint, progress)
    inputs = dataset_stems(root, stem, test, cfg.device) if config.frozen_stages else test.images
    scores = score_images(model, inputs, config.eval_batch_size, cfg.device, config.amp)
    labels = test.labels.numpy()
    metrics = {"auroc": image_auroc(labels, scores), "aupr": image_aupr(labels, scores)}
    localize = test.masks is not None if localize is None else localize
    pixel = np.full(len(test), np.nan)
    maps = np.zeros((0, config.image_size, config.image_size), np.float32)
    shown = np.zeros(0, dtype=np.int64)
    if localize:
        if test.masks is None:
            raise ConfigError(f"{split.dataset}/{split.subset} has no masks; localization needs pixel ground truth")
        anomalous = np.flatnonzero(labels == 1)
        all_maps = explain.saliency_maps(model, test.images[anomalous], config.eval_batch_size, cfg.device)
        pixel[anomalous] = explain.per_image_pixel_auroc(all_maps, test.masks[anomalous])
        metrics["pixel_auroc"] = float(np.nanmean(pixel))
        pick = _overlay_choice(test, anomalous)
        shown, maps = anomalous[pick], all_maps[pick]
    if artifact is not None:
        artifact.parent.mkdir(parents=True, exist_ok=True)
        split.to_json(artifact.with_suffix(".split.json"))
        np.savez_compressed(artifact, scores=scores, labels=labels, pixel_auroc=pixel, overlay_index=shown,
                            overlay_maps=maps.astype(np.float16), paths=np.asarray(test.paths),
                            classes=np.asarray(test.classes), image_size=config.image_size)
    return metrics


def trained_devnet(cfg: NotebookConfig, split: Split, root: Path, config: DevNetConfig, train: ImageSet,
                   checkpoint: Path | None = None, progress: bool = False) -> DevNet:
    """DevNet/FLOS ``config`` trained on ``split``'s training set ``train``: loaded from the run's
    model store when any notebook trained it before (:mod:`osad_lib.experiments.model_store`),
    else trained (on cached stems with ``frozen_stages``) and stored."""
    def train_now() -> DevNet:
        stems = (training_stems(root, StemConfig.of(config), train, cfg.device, config.dihedral)
                 if config.frozen_stages else None)
        return train_devnet(config, train, split.seed, cfg.device, checkpoint=checkpoint, progress=progress,
                            desc=f"{config.criterion} {split.dataset}", stems=stems)[0]

    model, _ = load_or_train(cfg, "devnet", config, split.manifest_id, split.seed,
                             lambda: DevNet(config).to(cfg.device), train_now)
    return model


def registry_name(split: Split) -> str:
    return f"{split.dataset}/{split.subset}" if split.subset else split.dataset


def _overlay_choice(test: ImageSet, anomalous: np.ndarray) -> list[int]:
    """Positions (in ``anomalous``) of up to :data:`N_OVERLAYS` anomalies, one class after another."""
    by_class: dict[str, list[int]] = {}
    for pos, i in enumerate(anomalous):
        by_class.setdefault(test.classes[i], []).append(pos)
    order = [positions[r] for r in range(max(map(len, by_class.values()), default=0))
             for _, positions in sorted(by_class.items()) if r < len(positions)]
    return order[:N_OVERLAYS]


def _run_devnet_method(method: str) -> Callable[..., dict[str, float]]:
    def run(cfg: NotebookConfig, split: Split, root: Path, **kwargs: Any) -> dict[str, float]:
        return run_devnet(cfg, split, root, devnet_config(cfg, method), **kwargs)

    return run


METHODS.update({m: _run_devnet_method(m) for m in DEVNET_METHODS}, **baselines.RUNNERS)  # config.METHODS


def register_method(name: str, runner: Callable[..., dict[str, float]]) -> None:
    """Add a baseline runner ``(cfg, split, root, *, localize, artifact, checkpoint) -> metrics`` to :data:`METHODS`."""
    METHODS[name] = runner


def artifact_path(cfg: NotebookConfig, experiment: Experiment) -> Path:
    """Where the per-image outputs of ``experiment`` are kept (``runs/<profile>/artifacts/01_devnet``)."""
    return artifact_file(cfg, experiment.experiment_id)


def artifact_file(cfg: NotebookConfig, experiment_id: str) -> Path:
    return cfg.runs_dir / "artifacts" / NOTEBOOK / f"{experiment_id}.npz"


def run_one(cfg: NotebookConfig, item: GridItem) -> dict[str, float]:
    """Run one grid item (what the notebook passes to ``cfg.store.run_experiment``).

    General-setting runs on data with masks also compute explanation maps (Table 4, Figs. 4–5).
    Unsupervised rows (``n_shots=0``) run on the split of ``extra_key["split_shots"]``.
    """
    e = item.experiment
    runner = METHODS[choose("method", e.method, METHODS)]
    split, root = make_dataset_split(cfg, e.extra_key["name"], e.setting, e.extra_key.get("split_shots", e.n_shots),
                                     e.seed, e.extra_key["seen_class"] or None)
    checkpoint = cfg.checkpoints_dir / f"{NOTEBOOK}_{e.experiment_id}.pt"
    localize = None if e.setting == "general" else False  # Table 4 uses general-setting runs only
    metrics = runner(cfg, split, root, localize=localize, artifact=artifact_path(cfg, e), checkpoint=checkpoint)
    checkpoint.unlink(missing_ok=True)
    return metrics
