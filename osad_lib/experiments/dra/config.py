"""The settings of ``02_dra``: the profile's DRA settings and grid keys, and how a run's settings
depart from the paper's."""

from __future__ import annotations

import dataclasses
import importlib.util
from typing import Any


from osad_lib.data.registry import DATASETS
from osad_lib.methods.dra import DRAConfig, train_dra
from osad_lib.methods.baselines.dra_baselines import train_mlep, train_saoe
from osad_lib.profiles import GRID_OPTIONS, NotebookConfig
from osad_lib.results import Experiment
from osad_lib.settings import config_diff
from osad_lib.validate import choose
from osad_lib.experiments import devnet as xdevnet



NOTEBOOK = "02_dra"
#: Methods of the notebook's grid (names of the paper tables): DRA, the DevNet comparison
#: (``osad_lib.experiments.devnet``), SAOE and MLEP (:mod:`osad_lib.methods.baselines.dra_baselines`, on
#: DRA's backbone and pipeline), Deep SAD and MINNS (:data:`APPENDIX_METHODS`), KDAD
#: (:data:`UNSUPERVISED_METHODS`).
METHODS = ("dra", "devnet", "saoe", "mlep", "deepsad", "minns", "kdad")
#: Trainers of the methods run through :func:`run_dra` (same pipeline, same config type).
TRAINERS = {"dra": train_dra, "saoe": train_saoe, "mlep": train_mlep}
#: The baselines of appendix Tables 7/8 (DRA App. C.1), run by :data:`osad_lib.experiments.baselines.RUNNERS`
#: with their own settings, only at the ``appendix_n_shots`` shot count.
APPENDIX_METHODS = ("deepsad", "minns")
#: Unsupervised baselines of Tables 1/2 (:data:`osad_lib.experiments.baselines.RUNNERS`, their own settings):
#: one run per dataset, setting, seen class and seed on the split of the largest shot count (all shot
#: counts share its test set, App. A.2); rows carry ``n_shots=0`` as the paper's tables.
UNSUPERVISED_METHODS = ("kdad",)
TABLES = {"general": "table1", "hard": "table2"}
#: What the ``extra_hard`` datasets run: the pair of the paired verdict (:func:`dra_vs_devnet`).
EXTRA_HARD_METHODS = ("dra", "devnet")




def dra_config(cfg: NotebookConfig, **changes: Any) -> DRAConfig:
    """DRA's code defaults ← the profile's image size, scales, backbone, weights, eval batch ←
    the profile's DRA ``config`` (schedule, batch) ← ``changes`` (e.g. an ablation)."""
    profile = cfg.profile
    base = DRAConfig(image_size=profile.image_size, n_scales=profile.n_scales, backbone=profile.backbone,
                     weights=profile.weights, eval_batch_size=profile.eval_batch_size)
    return base.with_overrides({**profile.method("dra").config, **changes})


def grid_option(cfg: NotebookConfig, key: str) -> Any:
    """A grid option of the profile's DRA settings (``GRID_OPTIONS["dra"]``), with its default:
    ``general_n_shots`` / ``hard_n_shots`` (default: the profile's ``n_shots``),
    ``methods`` (default: :data:`METHODS` whose runner exists), ``max_seen_classes`` (default 0 =
    every hard-setting seen class of a dataset; else the first ones), ``max_test_images``
    (default 0 = the whole test set; else a seeded, class-stratified subsample of that size,
    recorded in ``deviations``), ``appendix_n_shots`` (default 10, the paper's: the shot count
    of Tables 7/8 and of the :data:`APPENDIX_METHODS` runs) and ``clean_runs`` (default
    ``(("general", 10),)``: the (setting, shots) pairs where DRA also runs in the other mode than
    the profile's — ``clean`` beside the faithful default). ``extra_hard``: (dataset, shots) pairs
    run in the hard setting only, beside the profile's datasets, as (dataset, shots, seen classes
    — the first that many, 0 = all) (demo: the synthetic hard setting on ``synthetic/object``; DRA
    and DevNet only, :data:`EXTRA_HARD_METHODS`). Seeds: every method runs the notebook's seeds
    except those in ``method_seeds`` (method → the first that many), one-shot runs
    (``one_shot_seeds``) and the other-mode DRA runs (``clean_seeds``); 0 = all."""
    defaults = {"general_n_shots": cfg.profile.n_shots, "hard_n_shots": cfg.profile.n_shots,
                "methods": available_methods(), "max_seen_classes": 0, "max_test_images": 0,
                "appendix_n_shots": 10, "clean_runs": (("general", 10),), "extra_hard": (), "method_seeds": {},
                "one_shot_seeds": 0, "clean_seeds": 0}
    value = cfg.profile.method("dra").grid.get(choose("grid option", key, GRID_OPTIONS["dra"]), defaults[key])
    if key == "clean_runs":
        return tuple((str(setting), int(shots)) for setting, shots in value)
    if key == "extra_hard":
        return tuple((str(name), int(shots), int(classes)) for name, shots, classes in value)
    return tuple(value) if isinstance(value, (list, tuple)) else value


def available_methods() -> tuple[str, ...]:
    """:data:`METHODS` whose runner is installed (DevNet's lives in ``osad_lib.experiments.devnet``)."""
    return tuple(m for m in METHODS if m in TRAINERS or m in APPENDIX_METHODS or m in UNSUPERVISED_METHODS
                 or importlib.util.find_spec(f"osad_lib.experiments.{m}") is not None)


def other_mode(config: DRAConfig) -> DRAConfig:
    """``config`` in the other mode (faithful ↔ clean): the run beside the default (``clean_runs``)."""
    return dataclasses.replace(config, mode="clean" if config.mode == "faithful" else "faithful")


def run_config(cfg: NotebookConfig, experiment: Experiment) -> DRAConfig:
    """The DRAConfig of a grid row: the profile's, or in the other mode when the row's
    ``variant`` says so (``clean_runs``)."""
    config = dra_config(cfg)
    return config if experiment.variant == variant_label(config) else other_mode(config)


def config_deviations(config: DRAConfig, dataset: str, max_test_images: int = 0, method: str = "dra") -> str:
    """How a run differs from the official code (fields unlike :class:`DRAConfig`'s defaults; the
    mode is the row's ``mode`` column); ``synthetic`` data and a test subsample are named too. SAOE rows say that
    they run without outlier exposure (the notebook has no external set), MLEP rows that the
    image adaptation is ours."""
    in_label = {"mode", "heads", "pseudo_source", "outlier_name", "n_ref", "loss"}  # in the variant label
    parts = config_diff(config, DRAConfig(), "code", skip=in_label)
    if dataset == "synthetic":
        parts.insert(0, "synthetic data (no paper row)")
    medical = dataset in DATASETS and any(i.kind == "medical" for i in DATASETS[dataset].subsets.values())
    if method == "saoe":
        parts.append("no outlier exposure (paper: MVTec AD or LAG outliers)")
    elif method == "mlep":
        parts.append("MLEP image adaptation is ours (reconstruction for video prediction; the paper gives no details)")
    elif medical and config.pseudo_source != "external":
        parts.append(f"pseudo={config.pseudo_source} (paper: LAG outlier exposure on medical data, §4.1)")
    if max_test_images:
        parts.append(f"test set: seeded class-stratified subsample of at most {max_test_images} images")
    return "; ".join(parts)


def variant_label(config: DRAConfig) -> str:
    """``variant`` of a DRA row: the ablation label, plus ``clean`` in clean mode."""
    return ";".join(p for p in (config.variant, "clean" if config.mode == "clean" else "") if p)


def with_subsample(cfg: NotebookConfig, deviations: str) -> str:
    """A method's own ``deviations`` plus the test subsample (``max_test_images``), for the
    methods that :func:`config_deviations` does not describe (DevNet, Deep SAD, MINNS)."""
    limit = grid_option(cfg, "max_test_images")
    subsampled = [f"test set: seeded class-stratified subsample of at most {limit} images"] if limit else []
    return "; ".join([p for p in [deviations] if p] + subsampled)


def devnet_comparison_deviations(cfg: NotebookConfig, dataset: str) -> str:
    """DevNet's own deviations (its profile settings, ``osad_lib.experiments.devnet``) plus the test subsample."""
    return with_subsample(cfg, xdevnet.devnet_deviations(cfg, dataset))
