"""The experiments of ``05_ahl`` (AHL Tables 1 and 2: each base model and AHL on it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


from osad_lib.data.protocols import Split
from osad_lib.data.registry import hard_subset_label, subset_info
from osad_lib.experiments import GridItem, with_split_note
from osad_lib.experiments import dra as xdra
from osad_lib.methods.ahl.config import AHLConfig
from osad_lib.profiles import NotebookConfig
from osad_lib.results import Experiment
from osad_lib.experiments.ahl.config import (
    BASE_VARIANT, NOTEBOOK, PAPER, TABLES, ahl_config, base_config, deviations, grid_option, row_mode,
    variant_options,
)



def make_dataset_split(cfg: NotebookConfig, name: str, setting: str, n_shots: int, seed: int,
                       seen_class: str | None = None) -> tuple[Split, Path]:
    """The split of ``name`` (the DRA notebook's protocol: one-shot ⊂ ten-shot, App. A.2)."""
    return xdra.make_dataset_split(cfg, name, setting, n_shots, seed, seen_class)


def _manifest_id(cfg: NotebookConfig, name: str, setting: str, n_shots: int, seed: int, seen: str | None) -> str:
    split = xdra.split_if_present(cfg, name, setting, n_shots, seed, seen)
    return split.manifest_id if split is not None else ""


def _runs(cfg: NotebookConfig) -> list[tuple[str, str, int, str | None]]:
    """The splits of 02_dra (:func:`osad_lib.experiments.dra.split_runs`: the profile's datasets,
    ``extra_hard`` datasets, seen-class limit), restricted to AHL's ``settings`` and shot counts, so
    that AHL plugs into the base models 01/02 trained (the run's model store)."""
    shots = {"general": grid_option(cfg, "general_n_shots"), "hard": grid_option(cfg, "hard_n_shots")}
    extra = {name for name, _, _ in xdra.grid_option(cfg, "extra_hard")}
    return [(name, setting, n, seen) for name, setting, n, seen in xdra.split_runs(cfg)
            if setting in grid_option(cfg, "settings") and (n in shots[setting] or name in extra)]


def grid(cfg: NotebookConfig) -> list[GridItem]:
    """The notebook's experiments under ``cfg.profile`` (works without data: registry metadata)."""
    return [split_item(cfg, name, setting, n_shots, seed, seen, method, variant)
            for name, setting, n_shots, seen in _runs(cfg) for seed in cfg.seeds
            for base in grid_option(cfg, "bases")
            for method, variant in [(base, BASE_VARIANT), (f"ahl_{base}", "")] + [
                (f"ahl_{base}", v) for v in grid_option(cfg, "variants")]]


def split_item(cfg: NotebookConfig, name: str, setting: str, n_shots: int, seed: int, seen: str | None,
               method: str, variant: str, notebook: str = NOTEBOOK, table: str = "") -> GridItem:
    """One row of the split of ``name`` (``seen``: the hard setting's seen class): the base model
    (``method`` = ``"devnet"``/``"dra"``) or AHL (``"ahl_<base>"`` with ``variant``, see
    :func:`variant_options`). ``notebook``/``table`` label rows of other notebooks (06_ablations);
    ``table`` defaults to this notebook's table of the setting."""
    info = subset_info(name)
    base = method.removeprefix("ahl_")
    config = None if method == base else ahl_config(cfg, base, variant)
    experiment = Experiment(
        notebook=notebook, paper=PAPER, table=table or TABLES[setting], dataset=info.dataset,
        subset=hard_subset_label(name, seen) if seen else info.subset, setting=setting,
        n_shots=n_shots, method=method, variant=variant, backbone=cfg.profile.backbone, seed=seed,
        profile=cfg.profile.name, manifest_id=_manifest_id(cfg, name, setting, n_shots, seed, seen),
        deviations=with_split_note(deviations(cfg, info.dataset, base, config),
                                   xdra.split_if_present(cfg, name, setting, n_shots, seed, seen)),
        mode=row_mode(cfg, base, config), device=cfg.device_label, extra_key={"name": name, "seen_class": seen or ""},
        params={"base_model": base} if config is None else variant_options(variant))
    return GridItem(experiment, *_cost(cfg, info, base, config))


def _cost(cfg: NotebookConfig, info: Any, base: str, config: AHLConfig | None) -> tuple[int, int]:
    """(training samples, evaluation samples) of one row, pyramid scales counted. A base row
    counts its model's training and the feature extraction; an AHL row its feature passes."""
    counts = info.paper
    n_test = counts.test_normal + counts.anomalies if counts is not None else 0
    n_test = min(n_test, grid_option(cfg, "max_test_images") or n_test)
    n_normal = counts.train_normal if counts is not None else 0
    n_normal = min(n_normal, grid_option(cfg, "max_normals") or n_normal)
    scales = cfg.profile.n_scales
    if config is None:
        bc = base_config(cfg, base)
        train = bc.epochs * bc.steps_per_epoch * bc.batch_size * scales
        return train, (n_test + 4 * n_normal) * scales
    tasks = config.n_clusters * (config.n_clusters - 1) + 1
    batches = config.epochs * tasks * (config.inner_steps + config.query_steps)
    return batches * config.batch_size * scales, n_test * scales
