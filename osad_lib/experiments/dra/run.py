"""One DRA experiment: its split, its model trained (or reused), its scores and metrics."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from osad_lib.data.mvtec import read_mvtec_layout
from osad_lib.data.protocols import Split
from osad_lib.data.tensors import ImageSet, load_images, load_split, subsample
from osad_lib.experiments import GridItem
from osad_lib.metrics import image_aupr, image_auroc
from osad_lib.experiments.stem_cache import StemConfig, dataset_stems, pseudo_stems, training_stems
from osad_lib.components.stems import StemFeatures
from osad_lib.experiments.model_store import load_or_train
from osad_lib.methods.dra import PSEUDO_GENERATORS, DRAConfig, DRATrainingData, TrainedDRA, build_dra
from osad_lib.experiments.baselines import RUNNERS
from osad_lib.profiles import NotebookConfig
from osad_lib.paths import atomic_write_text
from osad_lib.results import Experiment
from osad_lib.validate import choose
from osad_lib.experiments.dra.config import (
    APPENDIX_METHODS, NOTEBOOK, TRAINERS, UNSUPERVISED_METHODS, grid_option, run_config,
)
from osad_lib.experiments.dra.grids import make_dataset_split
from osad_lib.experiments import devnet as xdevnet



def run_dra(cfg: NotebookConfig, split: Split, root: Path, config: DRAConfig, *, method: str = "dra",
            outliers: ImageSet | None = None, scores_path: Path | None = None,
            heldout_seen: bool = False, max_test_images: int = 0) -> dict[str, float]:
    """Train DRA (``config``) on ``split`` of the dataset at ``root``; return test AUROC and AUPR.

    ``method="saoe"`` / ``"mlep"`` trains that baseline (:data:`TRAINERS`) with the same config
    and pipeline instead (``outliers`` = SAOE's outlier-exposure set).
    ``outliers``: the external pseudo-anomaly pool (``pseudo_source="external"``).
    ``scores_path``: write every test image's per-head scores there (CSV; columns ``path``,
    ``anomaly_class``, ``label``, ``group`` = normal | seen | unseen, the heads, ``score``).
    ``heldout_seen``: also score the seen class's anomalies that are neither labelled nor in
    the test set (hard setting) as ``group="seen"`` rows — they do not enter the metrics.
    ``max_test_images``: evaluate on a class-stratified subsample (:func:`subsample`) of the test set.
    """
    train, test = load_split(split, root, config.image_size)
    test = subsample(test, max_test_images, split.seed)
    trained = trained_method(cfg, split, root, config, train, method, outliers)
    torch.manual_seed(split.seed)  # faithful mode scores with random references: seed them
    scores = trained.score(scoring_inputs(cfg, root, config, test))
    labels = test.labels.numpy()
    metrics = {"auroc": image_auroc(labels, scores["score"]), "aupr": image_aupr(labels, scores["score"])}
    if scores_path is not None:
        frames = [_score_frame(test, scores, split.seen_classes)]
        if heldout_seen and split.setting == "hard":
            extra = _heldout_seen(split, root, config.image_size)
            if extra is not None:
                extra = subsample(extra, max_test_images, split.seed)
                frames.append(_score_frame(extra, trained.score(scoring_inputs(cfg, root, config, extra)), split.seen_classes))
        atomic_write_text(scores_path, pd.concat(frames, ignore_index=True).to_csv(index=False))
    return metrics


def trained_method(cfg: NotebookConfig, split: Split, root: Path, config: DRAConfig, train: ImageSet,
                   method: str = "dra", outliers: ImageSet | None = None) -> TrainedDRA:
    """DRA (or SAOE/MLEP, :data:`TRAINERS`) ``config`` trained on ``split``'s training set. DRA
    without an outlier set is kept in the run's model store (:mod:`osad_lib.experiments.model_store`):
    02, 05, 06 and 07 train each DRA once and load it afterwards."""
    stems = training_stems_of(cfg, root, config, train)
    trainer = TRAINERS[choose("method", method, TRAINERS)]
    desc = f"{method} {split.dataset}/{split.subset} {split.setting}"
    if method != "dra" or outliers is not None:
        return trainer(train, config, split.seed, device=cfg.device, outliers=outliers, progress=cfg.interactive,
                       desc=desc, **stems)
    model, _ = load_or_train(
        cfg, "dra", config, split.manifest_id, split.seed, lambda: build_dra(config).to(cfg.device),
        lambda: trainer(train, config, split.seed, device=cfg.device, progress=cfg.interactive, desc=desc,
                        **stems).model)
    return TrainedDRA(model, DRATrainingData(train, config, split.seed, **stems), config, [], cfg.device)


def scoring_inputs(cfg: NotebookConfig, root: Path, config: DRAConfig, images: ImageSet) -> torch.Tensor | StemFeatures:
    """What the model scores: the images, or with ``frozen_stages`` their frozen-stem outputs
    from the dataset's stem cache (:mod:`osad_lib.experiments.stem_cache`, shared with DevNet)."""
    if not config.frozen_stages:
        return images.images
    return dataset_stems(root, StemConfig.of(config), images, cfg.device)


def training_stems_of(cfg: NotebookConfig, root: Path, config: DRAConfig, train: ImageSet) -> dict[str, StemFeatures]:
    """``stems``/``pseudo_stems`` for :func:`train_dra` with ``cache_stems`` (else nothing): the
    training images' rows of the stem cache (with the labelled anomalies' dihedral views when
    ``dihedral``), and one cached pseudo anomaly per training normal
    (:func:`osad_lib.experiments.stem_cache.pseudo_stems`, shared by every run and seed)."""
    if not config.cache_stems:
        return {}
    stem = StemConfig.of(config)
    normals = [p for p, label in zip(train.paths, train.labels.tolist()) if label == 0]
    pool = pseudo_stems(root, stem, PSEUDO_GENERATORS[config.pseudo_source], normals,
                        dihedral_transform=config.dihedral, device=cfg.device)
    return {"stems": training_stems(root, stem, train, cfg.device, config.dihedral), "pseudo_stems": pool}


def _score_frame(images: ImageSet, scores: dict[str, np.ndarray], seen: Sequence[str]) -> pd.DataFrame:
    labels = images.labels.numpy()
    group = np.where(labels == 0, "normal", np.where(np.isin(images.classes, list(seen)), "seen", "unseen"))
    frame = pd.DataFrame({"path": images.paths, "anomaly_class": images.classes, "label": labels, "group": group})
    for name, values in scores.items():
        frame[name] = values
    return frame


def _heldout_seen(split: Split, root: Path, image_size: int) -> ImageSet | None:
    """Anomalies of the seen class that are neither labelled nor in the test set (hard setting)."""
    used = {p for p, _ in split.train_anomaly}
    everything = load_images(root, read_mvtec_layout(root), image_size)  # the dataset's shared tensor cache
    rows = [i for i, (path, label, cls) in enumerate(zip(everything.paths, everything.labels.tolist(), everything.classes))
            if label == 1 and cls == split.seen_class and path not in used]
    return everything.select(rows) if rows else None


def scores_file(cfg: NotebookConfig, experiment: Experiment) -> Path:
    """Where a run's per-image scores are written (``runs/<profile>/scores/02_dra/<id>.csv``)."""
    return cfg.runs_dir / "scores" / NOTEBOOK / f"{experiment.experiment_id}.csv"


def run_one(cfg: NotebookConfig, item: GridItem) -> dict[str, float]:
    """Run one grid item (DRA in the row's mode, SAOE, MLEP, DevNet, Deep SAD, MINNS or KDAD) and return its metrics."""
    e = item.experiment
    name, seen_class = e.extra_key["name"], e.extra_key["seen_class"] or None
    split, root = make_dataset_split(cfg, name, e.setting, e.extra_key.get("split_shots", e.n_shots), e.seed,
                                     seen_class)
    limit = grid_option(cfg, "max_test_images")
    if e.method == "devnet":
        return run_devnet_comparison(cfg, split, root)
    if e.method in APPENDIX_METHODS or e.method in UNSUPERVISED_METHODS:
        return RUNNERS[e.method](cfg, split, root, max_test_images=limit, localize=False)
    first_seed = e.seed == cfg.seeds[0]
    return run_dra(cfg, split, root, run_config(cfg, e), method=e.method, scores_path=scores_file(cfg, e),
                   heldout_seen=first_seed and e.method == "dra", max_test_images=limit)



def run_devnet_comparison(cfg: NotebookConfig, split: Split, root: Path) -> dict[str, float]:
    """DevNet on a DRA split, for the paired comparison (no localization)."""
    return xdevnet.run_devnet(cfg, split, root, max_test_images=grid_option(cfg, "max_test_images"),
                              localize=False)
