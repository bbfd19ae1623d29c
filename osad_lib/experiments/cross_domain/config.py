"""The settings of ``07_cross_domain``: sources, targets, fine-tuning schedule and AHL settings."""

from __future__ import annotations

import dataclasses
from typing import Any


from osad_lib.data.registry import subset_info
from osad_lib.experiments import ahl as xahl
from osad_lib.experiments import dra as xdra
from osad_lib.methods.ahl.config import AHLConfig
from osad_lib.methods.dra import train_config
from osad_lib.profiles import NotebookConfig
from osad_lib.training import TrainConfig
from osad_lib.settings import check_known
from osad_lib.validate import choose



NOTEBOOK = "07_cross_domain"
SETTING = "cross_domain"
METHODS = ("dra", "ahl_dra")
#: The five MVTec AD textures of AHL Table 3 / DRA Table 9, in the tables' order.
PAPER_DOMAINS = tuple(f"mvtecad/{c}" for c in ("carpet", "grid", "leather", "tile", "wood"))
#: Paper table of each (paper label) — AHL Table 3 holds both methods, DRA Table 9 DRA only.
TABLES = {"ahl": "table3", "dra": "table9"}
#: The grid options of the profile's cross-domain settings (``GRID_OPTIONS["cross_domain"]``) and
#: their defaults (the paper's protocol): ``domains`` (registry names; every ordered pair is run), ``methods``,
#: ``n_shots`` (the source's labelled anomalies), ``same_domain`` (also run the diagonal),
#: ``max_seeds`` (0 = every configured seed), ``finetune_epochs`` (paper: 10),
#: ``finetune_steps`` (batches per fine-tuning epoch; 0 = DRA's ``steps_per_epoch``) and
#: ``max_test_images`` (0 = the whole test set, else a seeded class-stratified subsample).
#: DRA's and AHL's own settings are those of their notebooks (the ``"dra"`` and ``"ahl"``
#: entries of ``METHOD_OVERRIDES``); the part ``ahl`` holds AHLConfig overrides on top of those
#: for this notebook only (e.g. fewer epochs in smoke runs).
DEFAULTS: dict[str, Any] = {"domains": PAPER_DOMAINS, "methods": METHODS, "n_shots": 10, "same_domain": True,
                            "max_seeds": 0, "finetune_epochs": 10, "finetune_steps": 0, "max_test_images": 0}
#: Paper fine-tuning length (AHL §4.4, DRA App. C.3).
PAPER_FINETUNE_EPOCHS = 10
METHOD_LABELS = {"dra": "DRA", "ahl_dra": "AHL (DRA)"}




def option(cfg: NotebookConfig, key: str) -> Any:
    """An option of :data:`DEFAULTS` under the profile (``METHOD_OVERRIDES["cross_domain"]``)."""
    settings = cfg.profile.method("cross_domain")
    check_known(settings.config, DEFAULTS, "cross_domain")  # a key that is no option nor part lands there
    value = settings.grid.get(choose("cross_domain option", key, DEFAULTS), DEFAULTS[key])
    return tuple(value) if isinstance(value, (list, tuple)) else value


def grid_seeds(cfg: NotebookConfig) -> tuple[int, ...]:
    """The configured seeds, or the first ``max_seeds`` of them."""
    limit = option(cfg, "max_seeds")
    return tuple(cfg.seeds[:limit] if limit else cfg.seeds)


def methods(cfg: NotebookConfig) -> tuple[str, ...]:
    return tuple(choose("cross_domain method", m, METHODS) for m in option(cfg, "methods"))


def ahl_config(cfg: NotebookConfig) -> AHLConfig:
    """AHL (DRA)'s settings: the 05_ahl notebook's (:func:`osad_lib.experiments.ahl.ahl_config`)
    ← this notebook's ``ahl`` part."""
    return xahl.ahl_config(cfg, "dra").with_overrides(cfg.profile.method("cross_domain").part("ahl").config)


def finetune_config(cfg: NotebookConfig, progress: bool = False) -> TrainConfig:
    """The fine-tuning schedule of both methods: ``finetune_epochs`` × ``finetune_steps`` (DRA's
    steps per epoch by default) at DRA's learning rate and LR schedule (:func:`train_config`)."""
    config = xdra.dra_config(cfg)
    steps = option(cfg, "finetune_steps") or config.steps_per_epoch
    ft = dataclasses.replace(config, epochs=option(cfg, "finetune_epochs"), steps_per_epoch=steps)
    return train_config(ft, progress, desc="fine-tune")


def domain_label(name: str) -> str:
    """A domain's name in rows and tables: the subset (``carpet``, ``weave``) or the dataset."""
    info = subset_info(name)
    return info.subset or info.dataset
