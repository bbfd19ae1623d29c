"""One AnoOnly experiment: its ADBench split, its head trained, its metrics."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from osad_lib import paths
from osad_lib.data.tabular import (
    ADBENCH_ENV,
    TabularSplit,
    adbench_file,
    adbench_roots,
    adbench_split,
    load_npz,
)
from osad_lib.experiments import GridItem
from osad_lib.experiments.anoonly.config import IMAGE_TABLE, anoonly_config
from osad_lib.experiments.anoonly.grids import image_devnet_config
from osad_lib.experiments.devnet import make_dataset_split, run_devnet
from osad_lib.metrics import aupr_normal, image_aupr, image_auroc
from osad_lib.methods.anoonly import (
    SSADConfig,
    TrainedHead,
    train_head,
)
from osad_lib.profiles import NotebookConfig
from osad_lib.results import Experiment
from osad_lib.validate import ConfigError



@contextlib.contextmanager
def limited_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch and BLAS/OpenMP threads (None: unchanged), then restore them,
    with subnormal floats flushed to zero (restored to torch's default, off, afterwards).

    The heads are small MLPs and the t-SNE has 300–3,000 points: on a shared CPU, extra threads
    only add contention (a 300-point t-SNE took 100 s with the default pools, 5 s with one).
    Weight decay drives the weights of always-zero embedding features into subnormal range,
    which made PReNet 2.6× slower on MVTec; flushing them changes values below 1e-38 only.
    """
    from threadpoolctl import threadpool_limits

    if not n:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    torch.set_flush_denormal(True)
    try:
        with threadpool_limits(n):
            yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(previous)


def load_split(experiment: Experiment) -> TabularSplit:
    """The data split of ``experiment`` (file, organisation, split, seed and data options from its key)."""
    extra = experiment.extra_key
    X, y = load_npz(required_file(experiment.subset, extra.get("adbench_dir", "")))
    return adbench_split(X, y, experiment.seed, split=extra["split"], organisation=extra["organisation"],
                         **extra["data"])


def required_file(stem: str, adbench_dir: str) -> Path:
    """The ADBench file of ``stem``; a one-line error naming where it was looked for when absent."""
    file = adbench_file(stem, adbench_dir)
    if file is None:
        roots = ", ".join(str(r) for r in adbench_roots(adbench_dir))
        raise ConfigError(f"ADBench file {stem}.npz not found in {roots}; set {ADBENCH_ENV} to your ADBench "
                          "datasets folder or fetch it with osad_lib.data.tabular.download_adbench")
    return file


def ssad_config(experiment: Experiment) -> SSADConfig:
    """The head configuration of ``experiment``."""
    return SSADConfig(experiment.method, anomaly_only=experiment.extra_key["anomaly_only"],
                      **experiment.extra_key["options"])


def ssad_metrics(y_test: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """AUROC, AUCPR (anomalies), AUCPR w.r.t. normals as coded (un-negated scores; ``docs/official_code/anoonly.md``), and
    ``aupr_normal_neg``: AP of the normals ranked by −score (what "precision on normals" means)."""
    return {"auroc": image_auroc(y_test, scores), "aupr": image_aupr(y_test, scores),
            "aupr_normal": aupr_normal(y_test, scores), "aupr_normal_neg": image_aupr(1 - y_test, -scores)}


def train_experiment(cfg: NotebookConfig, experiment: Experiment) -> tuple[TabularSplit, TrainedHead]:
    """Train the head of ``experiment`` on its split (FEAWAD's AE pre-training is cached and shared)."""
    split = load_split(experiment)
    ac = anoonly_config(cfg)
    with limited_threads(ac.threads):
        trained = train_head(split, ssad_config(experiment), experiment.seed,
                             pretrain_cache=paths.cache_dir() / "anoonly_feawad_ae")
    return split, trained


def run_image_one(cfg: NotebookConfig, item: GridItem) -> dict[str, float]:
    """Train and evaluate one :func:`image_grid` item (image AUROC and AUCPR, no localization)."""
    e = item.experiment
    split, root = make_dataset_split(cfg, e.extra_key["name"], e.setting, e.n_shots, e.seed,
                                     e.extra_key["seen_class"] or None)
    with limited_threads(anoonly_config(cfg).threads):
        metrics = run_devnet(cfg, split, root, image_devnet_config(cfg, e.variant == "anoonly"), localize=False)
    return {k: metrics[k] for k in ("auroc", "aupr")}


def run_one(cfg: NotebookConfig, item: GridItem) -> dict[str, float]:
    """Train and evaluate one grid item; returns :func:`ssad_metrics` on the test split (image
    DevNet items of :func:`image_grid`: :func:`run_image_one`)."""
    if item.experiment.table == IMAGE_TABLE:
        return run_image_one(cfg, item)
    split, trained = train_experiment(cfg, item.experiment)
    return ssad_metrics(split.y_test, trained.score(split.X_test))
