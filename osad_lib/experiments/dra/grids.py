"""The splits (one-shot ⊂ ten-shot) and the experiments of ``02_dra`` (DRA Tables 1 and 2 with
the DevNet comparison and the baselines)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any


from osad_lib import experiments
from osad_lib.data.mvtec import read_mvtec_layout
from osad_lib.data.protocols import Split, make_split
from osad_lib.data.registry import dataset_names, hard_subset_label, resolve, subset_info
from osad_lib.experiments import GridItem
from osad_lib.methods.dra import DRAConfig
from osad_lib.experiments.baselines import baseline_deviations, method_config
from osad_lib.profiles import NotebookConfig
from osad_lib.results import Experiment
from osad_lib.settings import changed_fields
from osad_lib.validate import ConfigError
from osad_lib.experiments.dra.config import (
    APPENDIX_METHODS, EXTRA_HARD_METHODS, NOTEBOOK, TABLES, TRAINERS, UNSUPERVISED_METHODS, with_subsample,
    config_deviations, dra_config, grid_option, other_mode, variant_label,
)
from osad_lib.experiments.dra.config import devnet_comparison_deviations



def make_dataset_split(cfg: NotebookConfig, name: str, setting: str, n_shots: int, seed: int,
                       seen_class: str | None = None) -> tuple[Split, Path]:
    """The split manifest of registry dataset ``name`` and the dataset's folder.

    One-shot ⊂ ten-shot (App. A.2): labelled anomalies are the first of a draw of the
    profile's largest shot count for that setting, so all shot counts share one test set.
    """
    root = resolve(name, cfg.data_root)
    info = subset_info(name)
    split = make_split(read_mvtec_layout(root), setting, n_shots, seed, seen_class=seen_class,
                       nested_in=_nested_in(cfg, name, setting, n_shots), dataset=info.dataset, subset=info.subset)
    return split, root


def _nested_in(cfg: NotebookConfig, name: str, setting: str, n_shots: int) -> int:
    """The draw the labelled anomalies come from: the setting's largest shot count (one-shot ⊂
    ten-shot), or the shots themselves for an ``extra_hard`` dataset."""
    if setting == "hard" and name in {extra[0] for extra in grid_option(cfg, "extra_hard")}:
        return n_shots
    shots = grid_option(cfg, "general_n_shots" if setting == "general" else "hard_n_shots")
    return max(max(shots), n_shots)


def split_runs(cfg: NotebookConfig) -> list[tuple[str, str, int, str | None]]:
    """(registry name, setting, shots, seen class) of every split of the grid, before seeds:
    the profile's datasets in its settings (``max_seen_classes`` limits their seen classes, 0 =
    all), then the ``extra_hard`` datasets (hard only, their own shots and number of seen classes)."""
    limit = grid_option(cfg, "max_seen_classes")
    runs: list[tuple[str, str, int, str | None]] = []
    for name in dataset_names(cfg.profile.image_datasets):
        seen = subset_info(name).hard_seen_classes
        if "general" in cfg.profile.settings:
            runs += [(name, "general", n, None) for n in grid_option(cfg, "general_n_shots")]
        if "hard" in cfg.profile.settings:
            runs += [(name, "hard", n, c) for c in (seen[:limit] if limit else seen)
                     for n in grid_option(cfg, "hard_n_shots")]
    for name, n_shots, n_classes in grid_option(cfg, "extra_hard"):
        seen = subset_info(name).hard_seen_classes
        runs += [(name, "hard", n_shots, c) for c in (seen[:n_classes] if n_classes else seen)]
    return runs


def run_seeds(cfg: NotebookConfig, method: str, n_shots: int, other_mode: bool = False) -> tuple[int, ...]:
    """The seeds a run uses (``method_seeds``, ``one_shot_seeds``, ``clean_seeds``; the first ones)."""
    limits = [grid_option(cfg, "method_seeds").get(method, 0)]
    if n_shots == 1:
        limits.append(grid_option(cfg, "one_shot_seeds"))
    if other_mode:
        limits.append(grid_option(cfg, "clean_seeds"))
    limit = min([n for n in limits if n] or [0])
    return cfg.seeds[:limit] if limit else cfg.seeds


def _manifest_id(cfg: NotebookConfig, name: str, setting: str, n_shots: int, seed: int,
                 seen_class: str | None) -> str:
    """The split's ``manifest_id`` when the data are at hand (embedded or under data_root), else ""."""
    split = split_if_present(cfg, name, setting, n_shots, seed, seen_class)
    return split.manifest_id if split is not None else ""


@functools.lru_cache(maxsize=64)
def split_if_present(cfg: NotebookConfig, name: str, setting: str, n_shots: int, seed: int,
                     seen_class: str | None) -> Split | None:
    """:func:`make_dataset_split`'s split when the data are at hand, else None (cached: a grid
    asks once per row)."""
    try:
        return make_dataset_split(cfg, name, setting, n_shots, seed, seen_class)[0]
    except ConfigError:
        return None


# --------------------------------------------------------------------------------------------
# grid


def grid(cfg: NotebookConfig) -> list[GridItem]:
    """The notebook's experiments under ``cfg.profile`` (works without data: registry metadata)."""
    items: list[GridItem] = []
    config = dra_config(cfg)
    other = other_mode(config)
    other_params = changed_fields(other, config)  # what the other mode's runs change, in their rows
    methods, clean_runs = grid_option(cfg, "methods"), grid_option(cfg, "clean_runs")
    extra = {name for name, _, _ in grid_option(cfg, "extra_hard")}
    for name, setting, n_shots, seen_class in split_runs(cfg):
        largest = max(grid_option(cfg, "general_n_shots" if setting == "general" else "hard_n_shots"))
        for seed in cfg.seeds:
            manifest = _manifest_id(cfg, name, setting, n_shots, seed, seen_class)
            for method in [m for m in methods if name not in extra or m in EXTRA_HARD_METHODS]:
                if method in UNSUPERVISED_METHODS and n_shots != largest:
                    continue  # one run per test set: it uses no labelled anomaly
                appendix_ok = method not in APPENDIX_METHODS or n_shots == grid_option(cfg, "appendix_n_shots")
                if appendix_ok and seed in run_seeds(cfg, method, n_shots):
                    items.append(_item(cfg, config, name, setting, n_shots, seen_class, seed, method, manifest))
            if "dra" in methods and (setting, n_shots) in clean_runs and seed in run_seeds(cfg, "dra", n_shots, True):
                items.append(_item(cfg, other, name, setting, n_shots, seen_class, seed, "dra", manifest,
                                   other_params))
    return items


def _item(cfg: NotebookConfig, config: DRAConfig, name: str, setting: str, n_shots: int,
          seen_class: str | None, seed: int, method: str, manifest: str,
          params: Mapping[str, Any] | None = None) -> GridItem:
    info = subset_info(name)
    if method in TRAINERS:
        deviations = config_deviations(config, info.dataset, grid_option(cfg, "max_test_images"), method)
    elif method in APPENDIX_METHODS or method in UNSUPERVISED_METHODS:
        deviations = with_subsample(cfg, baseline_deviations(method, info.dataset, method_config(cfg, method)))
    else:
        deviations = devnet_comparison_deviations(cfg, info.dataset)
    extra = {"name": name, "seen_class": seen_class or ""}
    if method in UNSUPERVISED_METHODS:
        extra["split_shots"] = n_shots  # the split it runs on (row n_shots: 0, unsupervised)
    experiment = Experiment(
        notebook=NOTEBOOK, paper="dra", table=TABLES[setting], dataset=info.dataset,
        subset=hard_subset_label(name, seen_class) if seen_class else info.subset,
        setting=setting, n_shots=0 if method in UNSUPERVISED_METHODS else n_shots, method=method,
        variant=variant_label(config) if method in TRAINERS else "",
        backbone=(method_config(cfg, method).backbone if method in APPENDIX_METHODS + UNSUPERVISED_METHODS
                  else cfg.profile.backbone),
        seed=seed, profile=cfg.profile.name, manifest_id=manifest,
        deviations=experiments.with_split_note(
            deviations, split_if_present(cfg, name, setting, n_shots, seed, seen_class)),
        mode=config.mode if method in TRAINERS else "", device=cfg.device_label, extra_key=extra,
        params=params or {},
    )
    cost = _cost(info, setting, config)
    return GridItem(experiment, *cost)


def _cost(info: Any, setting: str, config: DRAConfig) -> tuple[int, int]:
    """(training images, evaluation images) of one run, pyramid scales counted."""
    n_ref = config.n_ref if "composite" in config.heads else 0
    train = config.epochs * config.steps_per_epoch * (config.batch_size + n_ref) * config.n_scales
    counts = info.paper
    if counts is None:
        return train, 0
    n_test = counts.test_normal + (counts.anomalies if setting == "general" else counts.anomalies * 3 // 4)
    return train, n_test * config.n_scales
