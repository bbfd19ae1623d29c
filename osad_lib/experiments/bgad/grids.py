"""The experiments of ``03_bgad`` (Tables 1–3) and what each costs."""

from __future__ import annotations

from typing import Any


from osad_lib import experiments
from osad_lib.data.registry import dataset_names, subset_info
from osad_lib.experiments import GridItem
from osad_lib.methods.bgad.model import (
    BGADConfig,
)
from osad_lib.profiles import NotebookConfig
from osad_lib.results import Experiment
from osad_lib.validate import ConfigError
from osad_lib.experiments.bgad.config import (
    NOTEBOOK, available_backbone, bgad_config, config_deviations, grid_option, method_config,
)
from osad_lib.experiments.bgad.protocol import dataset_split



def _table_runs(cfg: NotebookConfig) -> list[tuple[str, str, str, int]]:
    """(table, registry name, method, n_shots) of the profile's grid."""
    runs = []
    fas = int(grid_option(cfg, "fas_n_shots"))
    for table in ("table1", "table2"):
        for name in dataset_names(grid_option(cfg, f"{table}_datasets")):
            runs += [(table, name, "bgad", 0), (table, name, "bgad_fas", fas)]
    for name in dataset_names(grid_option(cfg, "table3_datasets")):
        runs.append(("table3", name, "bgad_fas", int(grid_option(cfg, "table3_n_shots"))))
    return runs


def grid(cfg: NotebookConfig) -> list[GridItem]:
    """The notebook's experiments under ``cfg.profile`` (works without data: registry metadata)."""
    items = []
    config = bgad_config(cfg)
    for table, name, method, n_shots in _table_runs(cfg):
        for seed in cfg.seeds:
            items.append(_item(cfg, config, table, name, method, n_shots, seed))
    return items



def _item(cfg: NotebookConfig, config: BGADConfig, table: str, name: str, method: str, n_shots: int,
          seed: int) -> GridItem:
    info = subset_info(name)
    backbone, _, _ = available_backbone(config)
    try:
        split = dataset_split(cfg, name, n_shots, seed)
    except ConfigError:
        split = None
    experiment = Experiment(
        notebook=NOTEBOOK, paper="bgad", table=table, dataset=info.dataset, subset=info.subset,
        setting="general" if n_shots else "unsupervised", n_shots=n_shots, method=method,
        backbone=backbone, seed=seed, profile=cfg.profile.name, manifest_id=split.manifest_id if split else "",
        deviations=experiments.with_split_note(config_deviations(
            method_config(config, method), info.dataset, info.has_masks, int(grid_option(cfg, "max_train_normals")),
            labelled=n_shots > 0), split),
        report="last_epoch", device=cfg.device_label, extra_key={"name": name},
    )
    return GridItem(experiment, *item_cost(info, n_shots, config, int(grid_option(cfg, "max_train_normals"))))


def item_cost(info: Any, n_shots: int, config: BGADConfig, max_train_normals: int) -> tuple[int, int]:
    """(image feature maps through the flows in training, images evaluated), from the paper counts.

    Training passes go through the flows only (features are cached); evaluation counts the one
    feature extraction of every image plus the flows on the test set after every meta epoch.
    """
    counts = info.paper
    n_train = counts.train_normal if counts else 40
    if max_train_normals:
        n_train = min(n_train, max_train_normals)
    n_test = (counts.test_normal + counts.anomalies) if counts else 60
    entries = n_train + n_shots * (config.real_repeats + (config.racp_copies if config.racp else 0))
    return config.meta_epochs * config.sub_epochs * entries, n_train + n_test + config.meta_epochs * n_test
