"""One BGAD experiment: train the flows, evaluate every epoch, save the maps and scores."""

from __future__ import annotations

import dataclasses
import json
import resource
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from osad_lib import limits
from osad_lib.data.protocols import Split
from osad_lib.data.registry import resolve
from osad_lib.data.tensors import ImageSet
from osad_lib.experiments import GridItem
from osad_lib.metrics import image_auroc, pixel_auroc, pro_score
from osad_lib.methods.bgad.model import (
    BGADConfig, BGADFlows, FeatureBank, assemble_anomaly_maps, fit_bgad,
    image_scores, loglik_maps,
)
from osad_lib.profiles import NotebookConfig
from osad_lib.paths import atomic_write_text
from osad_lib.results import MAX_OVER_EPOCHS_SUFFIX
from osad_lib.seeding import seed_everything
from osad_lib.validate import ConfigError
from osad_lib.experiments.bgad.config import (
    IMAGE_METRICS, PIXEL_METRICS, available_backbone, bgad_config, grid_option, method_config,
)
from osad_lib.experiments.bgad.protocol import dataset_split
from osad_lib.experiments.bgad.features import AnomalyEntries, dataset_features



def run_bgad(cfg: NotebookConfig, split: Split, config: BGADConfig, *, method: str | None = None,
             max_train_normals: int = 0, maps_path: Path | None = None,
             details_path: Path | None = None) -> dict[str, float]:
    """Train BGAD (``config``) on ``split`` and evaluate after every meta epoch; return the metrics.

    ``method``: ``"bgad"`` (unsupervised) or ``"bgad_fas"``; default from the split (0 shots →
    ``bgad``). ``max_train_normals``: use a seeded subset of the training normals (demo only).
    ``maps_path``: save a few test images with masks and last-epoch maps, and every test
    image's score (Fig. 4 and the score explorer, :func:`save_maps`).
    ``details_path``: write the run's per-epoch history (loss, learning rate, metrics) and cost
    (training/evaluation time, peak memory, feature cache size) as JSON.
    Metrics (all in [0, 1]): last epoch, ``@max_over_epochs``, ``@epoch<k>`` (module docstring).
    """
    method = method or ("bgad_fas" if split.n_shots else "bgad")
    config = method_config(config, method)
    if method == "bgad_fas" and not split.train_anomaly:
        raise ConfigError("BGAD-FAS needs labelled anomalies: make the split with n_shots >= 1, or use method='bgad'")
    backbone, weights, _ = available_backbone(config)
    name = f"{split.dataset}/{split.subset}" if split.subset else split.dataset
    root = resolve(name, cfg.data_root)
    images, bank, row, net = dataset_features(str(root), config.image_size, backbone, weights, cfg.device,
                                          config.feature_batch_size)
    seed_everything(split.seed)
    normal_rows = _normal_rows(split, row, max_train_normals)
    anomaly_rows = [row[p] for p, _ in split.train_anomaly] if method == "bgad_fas" else []
    kept = limits.test_rows([c for _, _, c in split.test], split.seed)  # all, except in a dry run
    device = cfg.device
    test = _test_set(images, bank, [row[split.test[i][0]] for i in kept], [split.test[i][1] for i in kept])
    anomalies = None
    if anomaly_rows:
        anomalies = AnomalyEntries(images, bank, normal_rows, anomaly_rows, net, config, device, split.seed)
    flows = BGADFlows(bank_channels(bank), config.pos_embed_dim, config.coupling_blocks, config.clamp_alpha)
    evaluator = _Evaluator(flows, test, config, device)
    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    history = fit_bgad(flows, bank.subset(normal_rows).to(device), anomalies, config, device, split.seed, evaluator)
    train_time = time.perf_counter() - start - evaluator.seconds
    if maps_path is not None:
        seen = {c for _, c in split.train_anomaly} if anomaly_rows else set()
        save_maps(maps_path, test, evaluator.last_maps, seen_classes=seen)
    if details_path is not None:
        details = run_details(history, train_time, evaluator.seconds, device, bank)
        atomic_write_text(details_path, json.dumps(details, indent=1))
    return epoch_metrics(history)


def bank_channels(bank: FeatureBank) -> list[int]:
    return [int(x.shape[1]) for x in bank.levels]


def _normal_rows(split: Split, row: dict[str, int], max_train_normals: int) -> list[int]:
    rows = [row[p] for p in split.train_normal]
    if max_train_normals and len(rows) > max_train_normals:
        keep = np.sort(np.random.default_rng(split.seed).permutation(len(rows))[:max_train_normals])
        rows = [rows[i] for i in keep]
    return rows


@dataclasses.dataclass
class _TestSet:
    bank: FeatureBank
    labels: np.ndarray
    masks: torch.Tensor | None
    images: torch.Tensor
    paths: list[str]


def _test_set(images: ImageSet, bank: FeatureBank, rows: list[int], labels: list[int]) -> _TestSet:
    labels = np.array(labels)
    masks = None if images.masks is None else images.masks[rows]
    return _TestSet(bank.subset(rows), labels, masks, images.images[rows], [images.paths[r] for r in rows])


class _Evaluator:
    """Metrics of the test set after a meta epoch (the code's scoring); keeps the last maps and the time spent."""

    def __init__(self, flows: BGADFlows, test: _TestSet, config: BGADConfig, device: str) -> None:
        self.flows, self.test, self.config, self.device = flows, test, config, device
        self.seconds = 0.0
        self.last_maps: torch.Tensor | None = None

    def __call__(self, epoch: int) -> dict[str, float]:
        start = time.perf_counter()
        maps = assemble_anomaly_maps(loglik_maps(self.flows, self.test.bank, self.device), self.config.image_size)
        metrics = evaluate_maps(maps, self.test.labels, self.test.masks)
        self.last_maps = maps
        self.seconds += time.perf_counter() - start
        return metrics


def evaluate_maps(maps: torch.Tensor, labels: np.ndarray, masks: torch.Tensor | None) -> dict[str, float]:
    """Image AUROC of the map maxima; pixel AUROC and PRO (FPR ≤ 0.3) when pixel masks exist (the code's metrics)."""
    metrics = {"auroc": image_auroc(labels, image_scores(maps).numpy())}
    if masks is not None and bool(masks.any()):
        gt = masks[:, 0].numpy() > 0
        metrics["pixel_auroc"] = pixel_auroc(gt, maps.numpy())
        metrics["pro"] = pro_score(gt, maps.numpy())
    return metrics


def epoch_metrics(history: list[dict[str, float]]) -> dict[str, float]:
    """Last-epoch metrics, the per-metric maxima over epochs and every epoch's values."""
    names = [m for m in IMAGE_METRICS + PIXEL_METRICS if m in history[-1]]
    out = {m: history[-1][m] for m in names}
    out.update({f"{m}{MAX_OVER_EPOCHS_SUFFIX}": max(h[m] for h in history) for m in names})
    for h in history:
        out.update({f"{m}@epoch{h['epoch']}": h[m] for m in names})
    return out


def run_details(history: list[dict[str, float]], train_time: float, eval_time: float, device: str,
                bank: FeatureBank) -> dict[str, Any]:
    """What a run cost and how it went: history (loss, lr, metrics per meta epoch), times, memory."""
    return {
        "history": history, "train_time_s": train_time, "eval_time_s": eval_time,
        "peak_memory_mb": _peak_memory_mb(device), "feature_cache_mb": bank.nbytes / 2**20,
        "memory_kind": "cuda_max_allocated" if str(device).startswith("cuda") else "process_peak_rss",
    }


def _peak_memory_mb(device: str) -> float:
    """CUDA: peak allocated by torch during the run; CPU: the process's peak resident memory."""
    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def save_maps(path: Path, test: _TestSet, maps: torch.Tensor, per_class: int = 2, n_normals: int = 4,
              seen_classes: Sequence[str] = ()) -> None:
    """For Fig. 4: the first ``per_class`` anomalous test images of every defect class (uint8),
    their paths, masks and anomaly maps (float16). For the score explorer
    (:func:`explorer_inputs`): ``n_normals`` normal test images spread over the normals' score
    range (lowest to highest) with their maps (``normal_*``), every test image's path, label and
    image score (``test_*``, score = map maximum) and the labelled anomalies' classes."""
    by_class: dict[str, list[int]] = {}
    for r in np.flatnonzero(test.labels == 1):
        by_class.setdefault(Path(test.paths[r]).parent.name, []).append(int(r))
    rows = [r for k in range(per_class) for cls in sorted(by_class) for r in by_class[cls][k:k + 1]]
    size = tuple(maps.shape[-2:])
    masks = test.masks[rows].numpy() if test.masks is not None else np.zeros((len(rows), 1, *size), np.uint8)
    scores = image_scores(maps).numpy()
    normals = np.flatnonzero(test.labels == 0)
    ranked = normals[np.argsort(scores[normals], kind="stable")]
    picked = np.unique(np.linspace(0, len(ranked) - 1, min(n_normals, len(ranked))).round().astype(int))
    normal_rows = ranked[picked].tolist()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez_compressed(tmp, images=test.images[rows].numpy(), masks=masks,
                        maps=maps[rows].numpy().astype(np.float16), paths=np.array([test.paths[r] for r in rows]),
                        normal_images=test.images[normal_rows].numpy(),
                        normal_maps=maps[normal_rows].numpy().astype(np.float16),
                        normal_paths=np.array([test.paths[r] for r in normal_rows], dtype=str),
                        test_paths=np.array(test.paths), test_labels=np.asarray(test.labels, dtype=np.int8),
                        test_scores=scores.astype(np.float32), seen_classes=np.array(sorted(seen_classes), dtype=str))
    tmp.replace(path)


def run_files(cfg: NotebookConfig, item: GridItem) -> tuple[Path, Path]:
    """(details JSON, maps and test scores for Fig. 4 and the score explorer) that :func:`run_one`
    writes for ``item``."""
    folder = cfg.runs_dir / "bgad"
    return folder / f"{item.experiment.experiment_id}.json", folder / f"{item.experiment.experiment_id}.npz"


def run_one(cfg: NotebookConfig, item: GridItem) -> dict[str, float]:
    """Run one grid item (its split, the profile's configuration) and return its metrics; the
    details go to :func:`run_files` (maps for the first seed only)."""
    e = item.experiment
    split = dataset_split(cfg, e.extra_key["name"], e.n_shots, e.seed)
    details, maps = run_files(cfg, item)
    return run_bgad(cfg, split, bgad_config(cfg), method=e.method,
                    max_train_normals=int(grid_option(cfg, "max_train_normals")),
                    maps_path=maps if e.seed == cfg.seeds[0] else None, details_path=details)
