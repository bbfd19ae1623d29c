"""The settings of ``01_devnet``: the profile's DevNet settings and grid keys, and how a run's
settings depart from the paper's."""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd

from osad_lib.experiments import baselines
from osad_lib.experiments.devnet_settings import (
    DEVNET_METHODS,
    devnet_config,
)
from osad_lib.methods.baselines.baselines import BaselineConfig
from osad_lib.methods.devnet.model import DevNetConfig
from osad_lib.methods.baselines.kdad import KDADConfig
from osad_lib.methods.baselines.patchcore import PatchCoreConfig
from osad_lib.profiles import GRID_OPTIONS, NotebookConfig
from osad_lib.settings import config_diff
from osad_lib.validate import choose
from collections.abc import Callable



NOTEBOOK = "01_devnet"
PAPER = "devnet"
#: Labelled anomalies of Tables 2–4 (§6.5.1: "fixed to 10 across all the nine datasets").
PAPER_SHOTS = 10
#: Where localization is measured when no profile dataset has masks.
LOCALIZATION_FALLBACK = ("synthetic/weave",)
#: Test anomalies whose maps are kept per run for the Fig. 5 overlays.
N_OVERLAYS = 6
#: Table 5 ablation labels (paper ``variant`` column) → DevNetConfig options (§6.8.1).
TABLE5_VARIANTS: dict[str, dict[str, Any]] = {
    "rep": {"variant": "rep"},
    "ds": {"variant": "ds"},
    "patch_ds": {"variant": "patch_ds"},
    "mil_ds": {"variant": "mil_ds"},
    "alexnet_ds": {"variant": "ds", "backbone": "alexnet"},
    "resnet50_ds": {"variant": "ds", "backbone": "resnet50"},
}
#: Methods trained without labelled anomalies: their rows have ``n_shots=0`` (the paper's Table 2
#: lists Deep SVDD and KDAD so), while they run on the table's split (same test set as the others).
UNSUPERVISED = ("deepsvdd", "patchcore", "kdad")


#: Method name → runner ``(cfg, split, root, *, localize, artifact, checkpoint) -> metrics``:
#: DevNet, FLOS and the baselines (:data:`osad_lib.experiments.baselines.RUNNERS`, same signature);
#: the registry lives here, where the settings read it, and :mod:`.run`, which holds the runners,
#: fills it on import (the package imports it); extend with :func:`register_method`.
METHODS: dict[str, Callable[..., dict[str, float]]] = {}


def grid_option(cfg: NotebookConfig, key: str) -> Any:
    """A grid option of the profile's DevNet settings (``GRID_OPTIONS["devnet"]``), with its default."""
    defaults = {"methods": tuple(METHODS), "max_seen_classes": 0, "method_tables": {}, "method_seeds": {},
                "table_seeds": {}}
    value = cfg.profile.method("devnet").grid.get(choose("grid option", key, GRID_OPTIONS["devnet"]), defaults[key])
    return tuple(value) if isinstance(value, (list, tuple)) else value


def method_tables(cfg: NotebookConfig, method: str) -> tuple[str, ...]:
    """The tables the profile runs ``method`` on (none when it is not among ``methods``)."""
    if method not in grid_option(cfg, "methods"):
        return ()
    return tuple(grid_option(cfg, "method_tables").get(method, ("table2", "table3", "table4")))


def method_seeds(cfg: NotebookConfig, method: str, table: str = "") -> tuple[int, ...]:
    """The seeds ``method`` runs in ``table`` under the profile: the first
    ``min(method_seeds[method], table_seeds[table])`` of the notebook's seeds (all by default)."""
    limits = [n for n in (grid_option(cfg, "method_seeds").get(method, 0), grid_option(cfg, "table_seeds").get(table, 0))
              if n]
    return cfg.seeds[:min(limits)] if limits else cfg.seeds


def table_shots(cfg: NotebookConfig) -> int:
    """10 (the paper), or the profile's largest shot count when that is smaller (smoke)."""
    return min(PAPER_SHOTS, max(cfg.profile.n_shots))


def config_deviations(config: DevNetConfig) -> list[str]:
    """Fields of ``config`` that differ from the official code's defaults, as ``name=value (code: …)``."""
    return config_diff(config, DevNetConfig(variant=config.variant, criterion=config.criterion), "code")


def devnet_deviations(cfg: NotebookConfig, dataset: str, config: DevNetConfig | None = None) -> str:
    """The ``deviations`` of a DevNet row: synthetic data, and every setting unlike the code's."""
    config = config if config is not None else devnet_config(cfg)
    parts = (["synthetic data (no paper row)"] if dataset == "synthetic" else []) + config_deviations(config)
    return "; ".join(parts)


def method_config(cfg: NotebookConfig, method: str) -> DevNetConfig | BaselineConfig | PatchCoreConfig | KDADConfig:
    """The settings ``method``'s runner uses under this profile (:func:`devnet_config`, or the
    baseline's :func:`osad_lib.experiments.baselines.method_config`)."""
    method = choose("method", method, METHODS)
    return devnet_config(cfg, method) if method in DEVNET_METHODS else baselines.method_config(cfg, method)


def method_deviations(cfg: NotebookConfig, method: str, dataset: str) -> str:
    """The ``deviations`` of a row of ``method``: :func:`devnet_deviations` for DevNet/FLOS,
    :func:`osad_lib.experiments.baselines.baseline_deviations` for the baselines."""
    config = method_config(cfg, method)
    if isinstance(config, DevNetConfig):
        return devnet_deviations(cfg, dataset, config)
    return baselines.baseline_deviations(method, dataset, config)



def row_shots(method: str, split_shots: int) -> int:
    """``n_shots`` of ``method``'s rows: 0 for :data:`UNSUPERVISED` methods (as in the paper's
    tables), else the split's."""
    return 0 if method in UNSUPERVISED else split_shots


def config_table(cfg: NotebookConfig, method: str = "devnet") -> pd.DataFrame:
    """Every DevNetConfig field under this profile beside the official code's value
    (``docs/official_code/devnet.md`` "Entry points and defaults of the code")."""
    config = devnet_config(cfg, method)
    code = DevNetConfig(variant=config.variant, criterion=config.criterion)
    return pd.DataFrame([{"option": f.name, "this run": getattr(config, f.name), "official code": getattr(code, f.name)}
                         for f in dataclasses.fields(config)])
