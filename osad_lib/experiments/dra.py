"""Notebook ``02_dra``: DRA's general (Tables 1/7) and hard (Tables 2/8) settings beside the paper.

The grid: for every dataset of the profile, the general setting with each shot count (one-shot drawn
from the ten-shot draw, DRA App. A.2) and the hard setting with every seen class of the dataset
(``registry.DATASETS[..].hard_seen_classes``, ``docs/official_code/dra.md`` "Data protocol"), for
each seed; DRA and, on the same splits, the comparisons of Tables 1/2 (DevNet, SAOE, MLEP) and, at
the appendix shot count (ten), those of Tables 7/8 (Deep SAD, MINNS from
:mod:`osad_lib.methods.baselines.baselines`); the unsupervised KDAD of Tables 1/2
(:data:`UNSUPERVISED_METHODS`, rows with ``n_shots=0``) once per split test set; where
``clean_runs`` says so, DRA also in ``clean`` mode (``variant="clean"``) beside the faithful default
(:func:`mode_comparison`). :func:`dra_vs_devnet` is the paired verdict on the paper's claim.
Rows: ``paper="dra"``, ``table="table1"`` (general) / ``"table2"`` (hard); hard-setting rows
name the seen class in ``subset`` (``mono``, ``carpet/color``) and per-dataset means are added
when the tables are built. Every row's ``deviations`` lists how the run's settings differ from
the official code's (backbone, image size, schedule, …) and the mode (``faithful``/``clean``).

Functions the ablation notebook reuses: :func:`dra_config` (profile settings + overrides),
:func:`make_dataset_split`, :func:`run_dra` (train + evaluate one configuration on one split →
metrics, optionally writing per-image head scores).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from osad_lib import experiments, paper
from osad_lib.data.mvtec import read_mvtec_layout
from osad_lib.data.protocols import Split, make_split
from osad_lib.data.registry import DATASETS, dataset_names, hard_subset_label, resolve, subset_info
from osad_lib.data.tensors import ImageSet, load_images, load_split, subsample
from osad_lib.experiments import GridItem
from osad_lib.metrics import image_aupr, image_auroc
from osad_lib.experiments.stem_cache import StemConfig, dataset_stems, pseudo_stems, training_stems
from osad_lib.components.stems import StemFeatures
from osad_lib.experiments.model_store import load_or_train
from osad_lib.experiments.paired import paired_differences, summary_sentence
from osad_lib.methods.dra.model import PSEUDO_GENERATORS, DRAConfig, DRATrainingData, TrainedDRA, build_dra, train_dra
from osad_lib.experiments import devnet as xdevnet
from osad_lib.experiments.baselines import RUNNERS, baseline_deviations, method_config
from osad_lib.methods.baselines.dra_baselines import train_mlep, train_saoe
from osad_lib.profiles import NotebookConfig
from osad_lib.paper.means import with_subset_means
from osad_lib.paths import atomic_write_text
from osad_lib.results import Experiment
from osad_lib.settings import config_diff
from osad_lib.validate import ConfigError, choose

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
#: Keys of ``METHOD_OVERRIDES["dra"][profile]`` that shape the grid rather than DRAConfig:
#: ``general_n_shots`` / ``hard_n_shots`` (default: the profile's ``n_shots``) and
#: ``methods`` (default: :data:`METHODS` whose runner exists), ``max_seen_classes`` (default 0 =
#: every hard-setting seen class of a dataset; else the first ones), ``max_test_images``
#: (default 0 = the whole test set; else a seeded, class-stratified subsample of that size,
#: recorded in ``deviations``), ``appendix_n_shots`` (default 10, the paper's: the shot count
#: of Tables 7/8 and of the :data:`APPENDIX_METHODS` runs) and ``clean_runs`` (default
#: ``(("general", 10),)``: the (setting, shots) pairs where DRA also runs in the other mode than
#: the profile's — ``clean`` beside the faithful default). ``extra_hard``: (dataset, shots) pairs run
#: in the hard setting only, beside the profile's datasets, as (dataset, shots, seen classes — the
#: first that many, 0 = all) (demo: the synthetic hard setting on
#: ``synthetic/object``; DRA and DevNet only, :data:`EXTRA_HARD_METHODS`). Seeds: every method runs the notebook's seeds except those in
#: ``method_seeds`` (method → the first that many), one-shot runs (``one_shot_seeds``) and the
#: other-mode DRA runs (``clean_seeds``); 0 = all.
GRID_KEYS = ("general_n_shots", "hard_n_shots", "methods", "max_seen_classes", "max_test_images",
             "appendix_n_shots", "clean_runs", "extra_hard", "method_seeds", "one_shot_seeds", "clean_seeds")
TABLES = {"general": "table1", "hard": "table2"}
#: What the ``extra_hard`` datasets run: the pair of the paired verdict (:func:`dra_vs_devnet`).
EXTRA_HARD_METHODS = ("dra", "devnet")


# --------------------------------------------------------------------------------------------
# configuration


def _overrides(cfg: NotebookConfig) -> dict[str, Any]:
    return cfg.profile.method("dra")


def dra_config(cfg: NotebookConfig, **changes: Any) -> DRAConfig:
    """DRA's code defaults ← the profile's image size, scales, backbone, weights, eval batch ←
    ``METHOD_OVERRIDES["dra"][profile]`` (schedule, batch) ← ``changes`` (e.g. an ablation)."""
    profile = cfg.profile
    base = DRAConfig(image_size=profile.image_size, n_scales=profile.n_scales, backbone=profile.backbone,
                     weights=profile.weights, eval_batch_size=profile.eval_batch_size)
    settings = {k: v for k, v in _overrides(cfg).items() if k not in GRID_KEYS}
    return base.with_overrides({**settings, **changes})


def grid_option(cfg: NotebookConfig, key: str) -> Any:
    """A grid-shaping option (:data:`GRID_KEYS`) under the profile, with its default."""
    defaults = {"general_n_shots": cfg.profile.n_shots, "hard_n_shots": cfg.profile.n_shots,
                "methods": available_methods(), "max_seen_classes": 0, "max_test_images": 0,
                "appendix_n_shots": 10, "clean_runs": (("general", 10),), "extra_hard": (), "method_seeds": {},
                "one_shot_seeds": 0, "clean_seeds": 0}
    value = _overrides(cfg).get(key, defaults[key])
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
    """How a run differs from the official code (fields unlike :class:`DRAConfig`'s defaults),
    plus the mode; ``synthetic`` data and a test subsample are named too. SAOE rows say that
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
    return "; ".join([f"mode={config.mode}"] + parts)


def variant_label(config: DRAConfig) -> str:
    """``variant`` of a DRA row: the ablation label, plus ``clean`` in clean mode."""
    return ";".join(p for p in (config.variant, "clean" if config.mode == "clean" else "") if p)


def _with_subsample(cfg: NotebookConfig, deviations: str) -> str:
    """A method's own ``deviations`` plus the test subsample (``max_test_images``), for the
    methods that :func:`config_deviations` does not describe (DevNet, Deep SAD, MINNS)."""
    limit = grid_option(cfg, "max_test_images")
    subsampled = [f"test set: seeded class-stratified subsample of at most {limit} images"] if limit else []
    return "; ".join([p for p in [deviations] if p] + subsampled)


# --------------------------------------------------------------------------------------------
# data


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
                items.append(_item(cfg, other_mode(config), name, setting, n_shots, seen_class, seed, "dra", manifest))
    return items


def _item(cfg: NotebookConfig, config: DRAConfig, name: str, setting: str, n_shots: int,
          seen_class: str | None, seed: int, method: str, manifest: str) -> GridItem:
    info = subset_info(name)
    if method in TRAINERS:
        deviations = config_deviations(config, info.dataset, grid_option(cfg, "max_test_images"), method)
    elif method in APPENDIX_METHODS or method in UNSUPERVISED_METHODS:
        deviations = _with_subsample(cfg, baseline_deviations(method, info.dataset, method_config(cfg, method)))
    else:
        deviations = _devnet_deviations(cfg, info.dataset)
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
        device=cfg.device_label, extra_key=extra,
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


# --------------------------------------------------------------------------------------------
# running one experiment


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
        return _run_devnet(cfg, split, root)
    if e.method in APPENDIX_METHODS or e.method in UNSUPERVISED_METHODS:
        return RUNNERS[e.method](cfg, split, root, max_test_images=limit, localize=False)
    first_seed = e.seed == cfg.seeds[0]
    return run_dra(cfg, split, root, run_config(cfg, e), method=e.method, scores_path=scores_file(cfg, e),
                   heldout_seen=first_seed and e.method == "dra", max_test_images=limit)


def runnable(items: Sequence[GridItem]) -> tuple[list[GridItem], list[str]]:
    """The items whose data are at hand and the dataset names that are missing (so a notebook can
    say what it skipped): :func:`osad_lib.experiments.runnable`, the rule of every notebook."""
    return experiments.runnable(items)


# --------------------------------------------------------------------------------------------
# tables


def comparison(cfg: NotebookConfig, table: str) -> pd.DataFrame:
    """Measured vs paper for ``table`` (``table1``, ``table2``, ``table7``, ``table8``): rows that
    were measured, with paper mean/std, measured mean/std over seeds, delta and n_seeds."""
    measured = cfg.store.read()
    source = {"table7": "table1", "table8": "table2"}.get(table, table)
    measured = with_subset_means(measured[(measured["paper"] == "dra") & (measured["table"] == source)])
    if measured.empty:
        return pd.DataFrame()
    measured = measured.assign(table=table)
    if table in ("table7", "table8"):  # the appendix shot count and the appendix table's methods
        methods = set(paper.load_table(f"dra_{table}")["method"])
        measured = measured[(measured["n_shots"] == grid_option(cfg, "appendix_n_shots"))
                            & measured["method"].isin(methods)]
    out = paper.compare(measured, f"dra_{table}")
    out = out[(out["n_seeds"] > 0) & (out["paper_mean"].notna() | (out["dataset"] == "synthetic"))]
    order = (out["metric"] != "auroc").to_numpy().argsort(kind="stable")  # AUROC rows first
    return out.iloc[order].reset_index(drop=True)


def display_table(frame: pd.DataFrame) -> pd.DataFrame:
    """A compact view: keys, ``paper`` and ``measured`` as "mean ± std", delta, seeds."""
    if frame.empty:
        return frame
    return pd.DataFrame({
        "dataset": frame["dataset"], "subset": frame["subset"], "shots": frame["n_shots"],
        "method": frame["method"], "variant": frame["variant"], "metric": frame["metric"],
        "paper": [paper.format_mean_std(m, s) for m, s in zip(frame["paper_mean"], frame["paper_std"])],
        "measured": [paper.format_mean_std(m, s) for m, s in zip(frame["measured_mean"], frame["measured_std"])],
        "delta": frame["delta"].round(3), "seeds": frame["n_seeds"],
    })


def _paper_difference(table_id: str, treatment: str, control: str) -> Any:
    """``key -> paper treatment − control`` for (dataset, subset, setting, n_shots) keys of a paper
    table (NaN where the paper lacks either row)."""
    table = paper.load_table(table_id)
    table = table[(table["metric"] == "auroc") & (table["variant"].fillna("") == "")]

    def diff(key: tuple) -> float:
        dataset, subset, setting, n_shots = key
        sel = table[(table["dataset"] == dataset) & (table["subset"].fillna("") == subset)
                    & (table["n_shots"] == n_shots)]
        values = sel.groupby("method")["mean"].first()
        return float(values[treatment] - values[control]) if {treatment, control} <= set(values.index) else np.nan

    return diff


def dra_vs_devnet(cfg: NotebookConfig, metric: str = "auroc") -> tuple[pd.DataFrame, str]:
    """DRA (the profile's mode) − DevNet per split, paired over seeds (:mod:`osad_lib.experiments.paired`):
    general and hard settings, each hard seen class and their per-seed mean (``subset`` ``mean``).
    The paper's claim (§4.3–4.4): DRA beats DevNet, most of all on unseen classes (hard setting).
    Returns the table and the verdict sentences."""
    rows = cfg.store.read()
    rows = rows[(rows["paper"] == "dra") & (rows["metric"] == metric)]
    rows = with_subset_means(rows[rows["status"] == "ok"])
    paper_diffs = {"general": _paper_difference("dra_table1", "dra", "devnet"),
                   "hard": _paper_difference("dra_table2", "dra", "devnet")}
    table = paired_differences(rows, ("dra", variant_label(dra_config(cfg))), ("devnet", ""),
                               paper_diff=lambda key: paper_diffs[key[2]](key), names=("DRA", "DevNet"))
    table = table.sort_values(["setting", "dataset", "n_shots", "subset"], kind="stable").reset_index(drop=True)
    return table, summary_sentence(table, _where)


def _where(row: pd.Series) -> str:
    place = "/".join(p for p in (row["dataset"], row["subset"]) if p)
    seen = " (mean over seen classes)" if row["subset"].endswith("mean") else ""
    return f"{place}, {row['setting']} {int(row['n_shots'])}-shot{seen}"


# --------------------------------------------------------------------------------------------
# faithful vs clean (docs/official_code/dra.md "Where the code departs from the paper",
# items 1 and 4)


def mode_differences(config: DRAConfig) -> str:
    """What differs between the faithful and the clean run of ``config`` (:class:`DRAConfig`),
    with the epochs at which each mode's learning rate decays under this schedule."""
    faithful = [e for e in range(config.epochs) if (e + 1) % config.lr_step_size == 0]  # StepLR at epoch start
    clean = [e for e in range(1, config.epochs) if e % config.lr_step_size == 0]  # StepLR at epoch end

    def decay(epochs: list[int]) -> str:
        return (f"the LR decays at epoch {'/'.join(map(str, epochs))}" if epochs
                else f"the LR never decays within {config.epochs} epochs")

    return ("faithful (default, the official code): references = fresh random training normals drawn through the "
            "training pipeline (about half become pseudo anomalies, all rotated) at every step and every test batch, "
            f"{decay(faithful)}; clean (the paper's text): a fixed set of {config.n_ref} un-augmented training "
            f"normals chosen once by the seed, deterministic scoring, {decay(clean)}.")


def mode_comparison(cfg: NotebookConfig, metric: str = "auroc") -> tuple[pd.DataFrame, str]:
    """DRA clean − faithful on the same splits and seeds (``clean_runs``), paired over seeds
    (:mod:`osad_lib.experiments.paired`): the table and its verdict sentences."""
    rows = cfg.store.read()
    config = dra_config(cfg)
    faithful, clean = (config, other_mode(config)) if config.mode == "faithful" else (other_mode(config), config)
    rows = rows[(rows["method"] == "dra") & (rows["metric"] == metric)]
    table = paired_differences(rows, ("dra", variant_label(clean)), ("dra", variant_label(faithful)),
                               names=("clean", "faithful"))
    if table.empty:
        return table, "no pair of faithful and clean DRA runs yet (grid key clean_runs)"
    return table, summary_sentence(table, _where)


# --------------------------------------------------------------------------------------------
# per-head scores: what each head detects

GROUP_COLORS = {"normal": "#2ca02c", "seen": "#ff7f0e", "unseen": "#d62728"}
SCORE_COLUMNS = ("holistic", "seen", "pseudo", "composite", "score")


def score_runs(cfg: NotebookConfig, setting: str = "hard") -> pd.DataFrame:
    """Stored DRA runs (the profile's mode) of the first seed in ``setting`` whose per-image
    scores were written: one row per run with ``dataset``, ``subset``, ``n_shots`` and the scores
    file ``path``."""
    rows = cfg.store.read()
    rows = rows[(rows["method"] == "dra") & (rows["setting"] == setting) & (rows["status"] == "ok")
                & (rows["seed"] == cfg.seeds[0]) & (rows["metric"] == "auroc")
                & (rows["variant"] == variant_label(dra_config(cfg)))]
    runs = rows[["dataset", "subset", "n_shots", "experiment_id"]].drop_duplicates().copy()
    runs["path"] = [cfg.runs_dir / "scores" / NOTEBOOK / f"{e}.csv" for e in runs["experiment_id"]]
    return runs[[p.is_file() for p in runs["path"]]].reset_index(drop=True)


def head_detection_table(cfg: NotebookConfig, setting: str = "hard") -> pd.DataFrame:
    """Per head, AUROC of test normals against held-out *seen*-class anomalies and against
    *unseen*-class anomalies, averaged over the first seed's runs (the holistic head's score is
    negated: it scores normality). The paper's argument (§3.2): the seen head catches seen
    anomalies, the pseudo and residual heads generalise to unseen ones."""
    out = []
    for run in score_runs(cfg, setting).itertuples():
        frame = pd.read_csv(run.path)
        normal = frame[frame["group"] == "normal"]
        for group in ("seen", "unseen"):
            anomalies = frame[frame["group"] == group]
            if anomalies.empty:
                continue
            labels = np.r_[np.zeros(len(normal)), np.ones(len(anomalies))]
            for head in [c for c in SCORE_COLUMNS if c in frame]:
                sign = -1.0 if head == "holistic" else 1.0
                values = sign * np.r_[normal[head].to_numpy(), anomalies[head].to_numpy()]
                out.append({"dataset": run.dataset, "subset": run.subset, "n_shots": run.n_shots,
                            "anomalies": group, "head": head, "auroc": image_auroc(labels, values)})
    if not out:
        return pd.DataFrame()
    table = pd.DataFrame(out).groupby(["anomalies", "head"], sort=False)["auroc"].agg(["mean", "std", "size"])
    return table.rename(columns={"size": "runs"}).reset_index()


def head_score_histograms(cfg: NotebookConfig, max_runs: int = 2, setting: str = "hard") -> Any:
    """Histograms of each head's scores (and the final score) for test normals, held-out
    seen-class anomalies and unseen-class anomalies, for up to ``max_runs`` first-seed runs.
    Returns the matplotlib Figure, or None when no scores are stored."""
    import matplotlib.pyplot as plt

    runs = score_runs(cfg, setting).head(max_runs)
    if runs.empty:
        return None
    frames = [pd.read_csv(p) for p in runs["path"]]
    heads = [c for c in SCORE_COLUMNS if c in frames[0]]
    fig, axes = plt.subplots(len(frames), len(heads), figsize=(2.6 * len(heads), 2.3 * len(frames)), squeeze=False)
    for row, (run, frame) in enumerate(zip(runs.itertuples(), frames)):
        for col, head in enumerate(heads):
            ax = axes[row, col]
            bins = np.histogram_bin_edges(frame[head], bins=30)
            for group, color in GROUP_COLORS.items():
                values = frame.loc[frame["group"] == group, head]
                if len(values):
                    ax.hist(values, bins=bins, density=True, alpha=0.45, color=color, label=f"{group} ({len(values)})")
            ax.set_title(f"{run.dataset} seen={run.subset}: {head}", fontsize=8)
            ax.set_xlabel("score (final = −holistic + seen + pseudo + composite)" if head == "score" else f"{head} head score",
                          fontsize=7)
            ax.set_ylabel("density", fontsize=7)
            if col == 0:
                ax.legend(fontsize=6)
    fig.suptitle(f"DRA per-head scores, {setting} setting, seed {cfg.seeds[0]} ({cfg.profile.name} profile)")
    fig.tight_layout()
    return fig


def explorer_frame(scores: pd.DataFrame) -> pd.DataFrame:
    """A scores file of :func:`run_dra` as the score frame of :mod:`osad_lib.plots` (columns
    ``score``, ``label``, ``class``, ``kind``, ``path`` and ``score_<head>`` per DRA head), for
    ``widgets.score_explorer``."""
    frame = pd.DataFrame({"score": scores["score"], "label": scores["label"].astype(int),
                          "class": scores["anomaly_class"], "kind": scores["group"], "path": scores["path"]})
    for head in [c for c in SCORE_COLUMNS if c != "score" and c in scores]:
        frame[f"score_{head}"] = scores[head]
    return frame


def explorer_run(cfg: NotebookConfig) -> tuple[pd.DataFrame, str]:
    """The score frame (:func:`explorer_frame`) of one trained DRA run — the first stored
    first-seed run of the hard setting (test normals, held-out seen-class anomalies and unseen
    classes), else of the general setting — and a title naming it; an empty frame when none."""
    for setting in ("hard", "general"):
        runs = score_runs(cfg, setting)
        if len(runs):
            run = runs.iloc[0]
            where = f"{run['dataset']} hard seen={run['subset']}" if setting == "hard" else f"{run['dataset']} general"
            title = f"DRA, {where}, {run['n_shots']}-shot, seed {cfg.seeds[0]} ({cfg.profile.name})"
            return explorer_frame(pd.read_csv(run["path"], keep_default_na=False)), title
    return pd.DataFrame(), "no DRA scores stored yet"


# --------------------------------------------------------------------------------------------
# DevNet comparison


def _devnet_deviations(cfg: NotebookConfig, dataset: str) -> str:
    """DevNet's own deviations (its profile settings, ``osad_lib.experiments.devnet``) plus the test subsample."""
    return _with_subsample(cfg, xdevnet.devnet_deviations(cfg, dataset))


def _run_devnet(cfg: NotebookConfig, split: Split, root: Path) -> dict[str, float]:
    return xdevnet.run_devnet(cfg, split, root, max_test_images=grid_option(cfg, "max_test_images"),
                              localize=False)
