"""The splits and the experiments of ``01_devnet`` (DevNet Tables 2 and 3 with the baselines)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from osad_lib import experiments
from osad_lib.data.mvtec import read_mvtec_layout
from osad_lib.data.protocols import Split, make_split
from osad_lib.data.registry import (
    dataset_names,
    hard_subset_label,
    resolve,
    subset_info,
)
from osad_lib.data.synthetic import SyntheticConfig
from osad_lib.experiments import GridItem
from osad_lib.methods.baselines.baselines import BaselineConfig
from osad_lib.methods.devnet.model import DevNetConfig
from osad_lib.methods.baselines.kdad import KDADConfig
from osad_lib.methods.baselines.patchcore import PatchCoreConfig
from osad_lib.profiles import NotebookConfig
from osad_lib.results import Experiment
from osad_lib.validate import ConfigError, choose
from osad_lib.experiments.devnet.config import (
    LOCALIZATION_FALLBACK, NOTEBOOK, PAPER, method_tables, grid_option, method_config, method_deviations,
    method_seeds, row_shots, table_shots,
)
from osad_lib.experiments.devnet.config import METHODS



def make_dataset_split(cfg: NotebookConfig, name: str, setting: str, n_shots: int, seed: int,
                       seen_class: str | None = None, contamination: float = 0.0) -> tuple[Split, Path]:
    """The split manifest of registry dataset ``name`` (protocols §6.5.1/§6.6.1) and its folder."""
    root = resolve(name, cfg.data_root)
    info = subset_info(name)
    split = make_split(read_mvtec_layout(root), setting, n_shots, seed, seen_class=seen_class,
                       contamination=contamination, dataset=info.dataset, subset=info.subset)
    return split, root


def _samples_if_present(cfg: NotebookConfig, name: str) -> list | None:
    """The dataset's samples when its data are at hand (embedded or under data_root), else None."""
    try:
        return read_mvtec_layout(resolve(name, cfg.data_root))
    except ConfigError:
        return None


def table_runs(cfg: NotebookConfig) -> list[tuple[str, str, str | None, str]]:
    """(registry name, setting, seen class, table) of every run, before seeds and methods."""
    names = dataset_names(cfg.profile.image_datasets)
    runs: list[tuple[str, str, str | None, str]] = []
    if "general" in cfg.profile.settings:
        runs += [(n, "general", None, "table2") for n in names]
    if "hard" in cfg.profile.settings:
        limit = grid_option(cfg, "max_seen_classes")
        for n in names:
            seen = subset_info(n).hard_seen_classes
            runs += [(n, "hard", c, "table3") for c in (seen[:limit] if limit else seen)]
    if not any(subset_info(n).has_masks for n in names):
        runs += [(n, "general", None, "table4") for n in LOCALIZATION_FALLBACK]
    return runs


def grid(cfg: NotebookConfig) -> list[GridItem]:
    """The notebook's experiments under ``cfg.profile`` (works without data: registry metadata)."""
    shots = table_shots(cfg)
    items, samples = [], {}
    for name, setting, seen, table in table_runs(cfg):
        info = subset_info(name)
        if name not in samples:
            samples[name] = _samples_if_present(cfg, name)
        for seed in cfg.seeds:
            split = None if samples[name] is None else make_split(
                samples[name], setting, shots, seed, seen_class=seen, dataset=info.dataset, subset=info.subset,
            )
            manifest = split.manifest_id if split is not None else ""
            for method in (choose("method", m, METHODS) for m in grid_option(cfg, "methods")):
                if table not in method_tables(cfg, method) or seed not in method_seeds(cfg, method, table):
                    continue
                config = method_config(cfg, method)
                extra = {"name": name, "seen_class": seen or ""}
                if row_shots(method, shots) != shots:
                    extra["split_shots"] = shots  # the split it runs on (row n_shots: 0, unsupervised)
                experiment = Experiment(
                    notebook=NOTEBOOK, paper=PAPER, table=table, dataset=info.dataset,
                    subset=hard_subset_label(name, seen) if seen else info.subset, setting=setting,
                    n_shots=row_shots(method, shots), method=method, backbone=config.backbone, seed=seed,
                    profile=cfg.profile.name, manifest_id=manifest,
                    deviations=experiments.with_split_note(method_deviations(cfg, method, info.dataset), split),
                    device=cfg.device_label, extra_key=extra,
                )
                items.append(GridItem(experiment, *_cost(info, setting, seen, shots, config)))
    return items


def grid_frame(items: Sequence[GridItem]) -> pd.DataFrame:
    """The grid per table, dataset and method: runs, seeds and image passes (for planning)."""
    rows = [{"table": i.experiment.table, "dataset": i.experiment.dataset, "method": i.experiment.method,
             "setting": i.experiment.setting, "subset": i.experiment.subset, "seed": i.experiment.seed,
             "train_images": i.train_images, "eval_images": i.eval_images} for i in items]
    frame = pd.DataFrame(rows, columns=["table", "dataset", "method", "setting", "subset", "seed",
                                        "train_images", "eval_images"])
    return (frame.groupby(["table", "dataset", "setting", "method"], sort=False)
            .agg(runs=("seed", "size"), subsets=("subset", "nunique"), seeds=("seed", "nunique"),
                 train_images=("train_images", "sum"), eval_images=("eval_images", "sum")).reset_index())


def _cost(info: Any, setting: str, seen: str | None, n_shots: int,
          config: DevNetConfig | BaselineConfig | PatchCoreConfig | KDADConfig) -> tuple[int, int]:
    """(training images, evaluation images) of one run, pyramid scales counted; PatchCore: one
    pass over its memory-bank normals."""
    counts = info.paper
    if counts is None:
        if info.dataset != "synthetic":
            return _train_images(config, 0), 0
        s = SyntheticConfig()
        n_train, per_class = s.n_train, s.n_per_class
        n_test = s.n_test_normal + s.n_per_class * len(info.anomaly_classes)
    else:
        n_train, n_test = counts.train_normal, counts.test_normal + counts.anomalies
        per_class = info.class_counts.get(seen, counts.anomalies // max(counts.n_classes, 1)) if seen else 0
    n_test -= per_class if setting == "hard" else n_shots
    scales = getattr(config, "n_scales", 1)
    return _train_images(config, n_train), max(n_test, 0) * scales


def _train_images(config: DevNetConfig | BaselineConfig | PatchCoreConfig | KDADConfig, n_train_normal: int) -> int:
    if isinstance(config, PatchCoreConfig):
        return min(config.max_train_images or n_train_normal, n_train_normal)
    if isinstance(config, KDADConfig):
        return config.train_images(n_train_normal)
    return config.epochs * config.steps_per_epoch * config.batch_size * config.n_scales
