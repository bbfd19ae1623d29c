"""Notebook ``02_dra``: DRA's general (Tables 1/7) and hard (Tables 2/8) settings beside the paper.

The grid: for every dataset of the profile, the general setting with each shot count (one-shot
drawn from the ten-shot draw, DRA App. A.2) and the hard setting with every seen class of the
dataset (``registry.DATASETS[..].hard_seen_classes``, ``official_code_facts.md`` §2.3), for
each seed; DRA and, on the same splits, the comparisons of Tables 1/2 (DevNet, SAOE, MLEP) and,
at the appendix shot count (ten), those of Tables 7/8 (Deep SAD, MINNS from
:mod:`osad_lib.models.baselines`); where ``clean_runs`` says so, DRA also in ``clean`` mode
(``variant="clean"``) beside the faithful default (:func:`mode_comparison`).
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
from osad_lib.data.tensors import ImageSet, load_images, load_split
from osad_lib.experiments import GridItem
from osad_lib.metrics import image_aupr, image_auroc
from osad_lib.models.devnet import DevNetConfig, StemFeatures
from osad_lib.models.dra import DRAConfig, build_dra, pseudo_stem_pool, train_dra
from osad_lib.models.baselines import RUNNERS, baseline_deviations, method_config
from osad_lib.models.dra_baselines import train_mlep, train_saoe
from osad_lib.profiles import NotebookConfig
from osad_lib.results import Experiment, atomic_write_text
from osad_lib.validate import ConfigError, choose

NOTEBOOK = "02_dra"
#: Methods of the notebook's grid (names of the paper tables): DRA, the DevNet comparison
#: (``osad_lib.experiments.devnet``), SAOE and MLEP (:mod:`osad_lib.models.dra_baselines`, on
#: DRA's backbone and pipeline), Deep SAD and MINNS (:data:`APPENDIX_METHODS`).
METHODS = ("dra", "devnet", "saoe", "mlep", "deepsad", "minns")
#: Trainers of the methods run through :func:`run_dra` (same pipeline, same config type).
TRAINERS = {"dra": train_dra, "saoe": train_saoe, "mlep": train_mlep}
#: The baselines of appendix Tables 7/8 (DRA App. C.1), run by :data:`osad_lib.models.baselines.RUNNERS`
#: with their own settings, only at the ``appendix_n_shots`` shot count.
APPENDIX_METHODS = ("deepsad", "minns")
#: Keys of ``METHOD_OVERRIDES["dra"][profile]`` that shape the grid rather than DRAConfig:
#: ``general_n_shots`` / ``hard_n_shots`` (default: the profile's ``n_shots``) and
#: ``methods`` (default: :data:`METHODS` whose runner exists), ``max_seen_classes`` (default 0 =
#: every hard-setting seen class of a dataset; else the first ones), ``max_test_images``
#: (default 0 = the whole test set; else a seeded, class-stratified subsample of that size,
#: recorded in ``deviations``), ``appendix_n_shots`` (default 10, the paper's: the shot count
#: of Tables 7/8 and of the :data:`APPENDIX_METHODS` runs) and ``clean_runs`` (default
#: ``(("general", 10),)``: the (setting, shots) pairs where DRA also runs in the other mode than
#: the profile's — ``clean`` beside the faithful default).
GRID_KEYS = ("general_n_shots", "hard_n_shots", "methods", "max_seen_classes", "max_test_images",
             "appendix_n_shots", "clean_runs")
TABLES = {"general": "table1", "hard": "table2"}


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
                "appendix_n_shots": 10, "clean_runs": (("general", 10),)}
    value = _overrides(cfg).get(key, defaults[key])
    if key == "clean_runs":
        return tuple((str(setting), int(shots)) for setting, shots in value)
    return tuple(value) if isinstance(value, (list, tuple)) else value


def available_methods() -> tuple[str, ...]:
    """:data:`METHODS` whose runner is installed (DevNet's lives in ``osad_lib.experiments.devnet``)."""
    return tuple(m for m in METHODS if m in TRAINERS or m in APPENDIX_METHODS
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
    paper_defaults = DRAConfig()
    skip = {"mode", "heads", "pseudo_source", "outlier_name", "n_ref", "loss"}  # in the variant label
    parts = [f"{f.name}={getattr(config, f.name)} (code: {getattr(paper_defaults, f.name)})"
             for f in dataclasses.fields(config)
             if f.name not in skip and getattr(config, f.name) != getattr(paper_defaults, f.name)]
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
    shots = grid_option(cfg, "general_n_shots" if setting == "general" else "hard_n_shots")
    split = make_split(read_mvtec_layout(root), setting, n_shots, seed, seen_class=seen_class,
                       nested_in=max(max(shots), n_shots), dataset=info.dataset, subset=info.subset)
    return split, root


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
    for name in dataset_names(cfg.profile.image_datasets):
        info = subset_info(name)
        runs: list[tuple[str, int, str | None]] = []
        if "general" in cfg.profile.settings:
            runs += [("general", n, None) for n in grid_option(cfg, "general_n_shots")]
        if "hard" in cfg.profile.settings:
            limit = grid_option(cfg, "max_seen_classes")
            seen = info.hard_seen_classes[:limit] if limit else info.hard_seen_classes
            runs += [("hard", n, c) for c in seen for n in grid_option(cfg, "hard_n_shots")]
        methods, clean_runs = grid_option(cfg, "methods"), grid_option(cfg, "clean_runs")
        for setting, n_shots, seen_class in runs:
            for seed in cfg.seeds:
                manifest = _manifest_id(cfg, name, setting, n_shots, seed, seen_class)
                for method in methods:
                    if method not in APPENDIX_METHODS or n_shots == grid_option(cfg, "appendix_n_shots"):
                        items.append(_item(cfg, config, name, setting, n_shots, seen_class, seed, method, manifest))
                if "dra" in methods and (setting, n_shots) in clean_runs:
                    items.append(_item(cfg, other_mode(config), name, setting, n_shots, seen_class, seed, "dra",
                                       manifest))
    return items


def _item(cfg: NotebookConfig, config: DRAConfig, name: str, setting: str, n_shots: int,
          seen_class: str | None, seed: int, method: str, manifest: str) -> GridItem:
    info = subset_info(name)
    if method in TRAINERS:
        deviations = config_deviations(config, info.dataset, grid_option(cfg, "max_test_images"), method)
    elif method in APPENDIX_METHODS:
        deviations = _with_subsample(cfg, baseline_deviations(method, info.dataset, method_config(cfg, method)))
    else:
        deviations = _devnet_deviations(cfg, info.dataset)
    experiment = Experiment(
        notebook=NOTEBOOK, paper="dra", table=TABLES[setting], dataset=info.dataset,
        subset=hard_subset_label(name, seen_class) if seen_class else info.subset,
        setting=setting, n_shots=n_shots, method=method,
        variant=variant_label(config) if method in TRAINERS else "",
        backbone=method_config(cfg, method).backbone if method in APPENDIX_METHODS else cfg.profile.backbone,
        seed=seed, profile=cfg.profile.name, manifest_id=manifest,
        deviations=experiments.with_split_note(
            deviations, split_if_present(cfg, name, setting, n_shots, seed, seen_class)),
        device=cfg.device_label, extra_key={"name": name, "seen_class": seen_class or ""},
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
    trained = TRAINERS[choose("method", method, TRAINERS)](
        train, config, split.seed, device=cfg.device, outliers=outliers, progress=cfg.interactive,
        desc=f"{method} {split.dataset}/{split.subset} {split.setting}",
        **_training_stems(cfg, root, config, train, split.seed))
    scores = trained.score(_inputs(cfg, root, config, test))
    labels = test.labels.numpy()
    metrics = {"auroc": image_auroc(labels, scores["score"]), "aupr": image_aupr(labels, scores["score"])}
    if scores_path is not None:
        frames = [_score_frame(test, scores, split.seen_classes)]
        if heldout_seen and split.setting == "hard":
            extra = _heldout_seen(split, root, config.image_size)
            if extra is not None:
                extra = subsample(extra, max_test_images, split.seed)
                frames.append(_score_frame(extra, trained.score(_inputs(cfg, root, config, extra)), split.seen_classes))
        atomic_write_text(scores_path, pd.concat(frames, ignore_index=True).to_csv(index=False))
    return metrics


def _stem_config(config: DRAConfig) -> DevNetConfig:
    """What the frozen stem depends on, in the form DevNet's shared stem cache is keyed by."""
    return DevNetConfig(backbone=config.backbone, weights=config.weights, image_size=config.image_size,
                        n_scales=config.n_scales, frozen_stages=config.frozen_stages,
                        eval_batch_size=config.eval_batch_size)


def _inputs(cfg: NotebookConfig, root: Path, config: DRAConfig, images: ImageSet) -> torch.Tensor | StemFeatures:
    """What the model scores: the images, or with ``frozen_stages`` their frozen-stem outputs
    from the per-dataset cache shared with DevNet (``osad_lib.experiments.devnet.dataset_stems``)."""
    if not config.frozen_stages:
        return images.images
    from osad_lib.experiments.devnet import dataset_stems

    return dataset_stems(root, _stem_config(config), images, cfg.device)


def _training_stems(cfg: NotebookConfig, root: Path, config: DRAConfig, train: ImageSet,
                    seed: int) -> dict[str, StemFeatures]:
    """``stems``/``pseudo_stems`` for :func:`train_dra` with ``cache_stems`` (else nothing): the
    training images' rows of the shared stem cache, and a pseudo-anomaly pool made once per
    dataset, seed, pseudo source and pool size (kept in memory for the other splits of the seed)."""
    if not config.cache_stems:
        return {}
    normals = tuple(p for p, label in zip(train.paths, train.labels.tolist()) if label == 0)
    key = DRAConfig(backbone=config.backbone, weights=config.weights, image_size=config.image_size,
                    n_scales=config.n_scales, frozen_stages=config.frozen_stages, cache_stems=True,
                    pseudo_source=config.pseudo_source, pseudo_pool=config.pseudo_pool,
                    eval_batch_size=config.eval_batch_size)
    return {"stems": _inputs(cfg, root, config, train), "pseudo_stems": _pseudo_pool(root, seed, key, normals, cfg.device)}


@functools.lru_cache(maxsize=4)
def _pseudo_pool(root: Path, seed: int, config: DRAConfig, normal_paths: tuple[str, ...], device: str) -> StemFeatures:
    everything = load_images(root, read_mvtec_layout(root), config.image_size)  # the dataset's shared tensor cache
    row = {p: i for i, p in enumerate(everything.paths)}
    normals = everything.images[torch.as_tensor([row[p] for p in normal_paths])]
    return pseudo_stem_pool(build_dra(config).to(device), normals, config.pseudo_source, seed, config.pseudo_pool,
                            config.eval_batch_size, device)


def subsample(images: ImageSet, max_images: int, seed: int) -> ImageSet:
    """At most ``max_images`` of ``images``, each class (``good`` included) keeping its share
    (at least one image per class); seeded, sorted by position. 0 = all images."""
    if not max_images or len(images) <= max_images:
        return images
    rng = np.random.default_rng(seed)
    classes = np.asarray(images.classes)
    keep: list[int] = []
    for name in sorted(set(images.classes)):
        members = np.flatnonzero(classes == name)
        count = max(1, round(len(members) * max_images / len(images)))
        keep += rng.choice(members, min(count, len(members)), replace=False).tolist()
    return images.select(sorted(keep))


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
    """Run one grid item (DRA in the row's mode, SAOE, MLEP, DevNet, Deep SAD or MINNS) and return its metrics."""
    e = item.experiment
    name, seen_class = e.extra_key["name"], e.extra_key["seen_class"] or None
    split, root = make_dataset_split(cfg, name, e.setting, e.n_shots, e.seed, seen_class)
    limit = grid_option(cfg, "max_test_images")
    if e.method == "devnet":
        return _run_devnet(cfg, split, root)
    if e.method in APPENDIX_METHODS:
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


def with_dataset_means(measured: pd.DataFrame) -> pd.DataFrame:
    """Add the paper's per-dataset mean rows: per seed, the mean over MVTec categories (general,
    ``subset="mean"``) and over seen classes (hard, ``"mean"`` or ``"<category>/mean"``)."""
    rows = measured[measured["status"] == "ok"] if "status" in measured else measured
    extra = []
    keys = ["paper", "table", "dataset", "setting", "n_shots", "method", "variant", "backbone", "seed",
            "profile", "metric"]
    for setting, part in rows.groupby("setting"):
        if setting == "general":
            part = part[part["dataset"] == "mvtecad"]
            group = part.assign(_g="mean")
        else:
            prefix = part["subset"].str.rpartition("/")[0]
            group = part.assign(_g=np.where(prefix != "", prefix + "/mean", "mean"))
        if group.empty:
            continue
        agg = group.groupby(keys + ["_g"], dropna=False).agg(
            value=("value", "mean"), n=("value", "size"), deviations=("deviations", "first")).reset_index()
        agg = agg[agg["n"] > 1].rename(columns={"_g": "subset"}).drop(columns="n")
        extra.append(agg)
    return pd.concat([measured] + extra, ignore_index=True) if extra else measured


def comparison(cfg: NotebookConfig, table: str) -> pd.DataFrame:
    """Measured vs paper for ``table`` (``table1``, ``table2``, ``table7``, ``table8``): rows that
    were measured, with paper mean/std, measured mean/std over seeds, delta and n_seeds."""
    measured = cfg.store.read()
    source = {"table7": "table1", "table8": "table2"}.get(table, table)
    measured = with_dataset_means(measured[(measured["paper"] == "dra") & (measured["table"] == source)])
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


def unseen_class_verdict(cfg: NotebookConfig) -> tuple[pd.DataFrame, str]:
    """Hard setting, per dataset and shot count: DRA vs DevNet AUROC on unseen classes (mean over
    seen classes, per seed), the paired per-seed difference, and one sentence saying whether DRA
    beats DevNet here (the paper's claim, §4.4) and whether the gap exceeds the seed noise
    (|mean difference| > 2 standard errors)."""
    rows = cfg.store.read()
    rows = rows[(rows["table"] == "table2") & (rows["metric"] == "auroc") & (rows["variant"] == "")]
    means = with_dataset_means(rows)
    means = means[means["subset"].str.endswith("mean") & means["method"].isin(["dra", "devnet"])]
    if means.empty:
        return pd.DataFrame(), "no hard-setting results of DRA and DevNet yet"
    per_seed = means.pivot_table(index=["dataset", "subset", "n_shots", "seed"], columns="method", values="value")
    if not {"dra", "devnet"} <= set(per_seed.columns):
        return per_seed.reset_index(), "DRA and DevNet were not both run in the hard setting"
    per_seed["diff"] = per_seed["dra"] - per_seed["devnet"]
    wide = per_seed.groupby(level=["dataset", "subset", "n_shots"]).agg(
        dra=("dra", "mean"), devnet=("devnet", "mean"), dra_minus_devnet=("diff", "mean"),
        diff_std=("diff", "std"), seeds=("diff", "size")).reset_index()
    sem = wide["diff_std"].fillna(0) / np.sqrt(wide["seeds"])
    wide["beyond_seed_noise"] = (wide["dra_minus_devnet"].abs() > 2 * sem) & (wide["seeds"] > 1)
    wins = int((wide["dra_minus_devnet"] > 0).sum())
    clear = int(((wide["dra_minus_devnet"] > 0) & wide["beyond_seed_noise"]).sum())
    sentence = (f"On unseen anomaly classes (hard setting, mean over seen classes) DRA's AUROC is above DevNet's in "
                f"{wins} of {len(wide)} dataset/shot cases (mean difference {wide['dra_minus_devnet'].mean():+.3f}); "
                f"in {clear} of them the gap exceeds two standard errors over seeds.")
    return wide, sentence


# --------------------------------------------------------------------------------------------
# faithful vs clean (official_code_facts.md §10 items 1 and 4)


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
    """DRA faithful vs clean on the same splits (``clean_runs``): one row per dataset, subset,
    setting, shots and seed with both values and the paired difference clean − faithful, and a
    sentence with the mean difference ± its standard error over seeds per case."""
    rows = cfg.store.read()
    config = dra_config(cfg)
    labels = {variant_label(config): config.mode, variant_label(other_mode(config)): other_mode(config).mode}
    rows = rows[(rows["method"] == "dra") & (rows["metric"] == metric) & (rows["status"] == "ok")
                & rows["variant"].isin(list(labels))]
    keys = ["dataset", "subset", "setting", "n_shots", "seed"]
    wide = rows.assign(mode=rows["variant"].map(labels)).pivot_table(index=keys, columns="mode", values="value")
    if not {"faithful", "clean"} <= set(wide.columns):
        return pd.DataFrame(), "no pair of faithful and clean DRA runs yet (grid key clean_runs)"
    wide = wide[["faithful", "clean"]].dropna().reset_index().rename_axis(columns=None)
    wide["clean_minus_faithful"] = wide["clean"] - wide["faithful"]
    parts = []
    for (dataset, subset, setting, n_shots), group in wide.groupby(keys[:-1], sort=False):
        diff = group["clean_minus_faithful"]
        sem = diff.std() / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
        where = "/".join(p for p in (dataset, subset) if p)
        parts.append(f"{where} {setting} {n_shots}-shot: clean − faithful {metric.upper()} {diff.mean():+.3f}"
                     + (f" ± {sem:.3f} (s.e., {len(diff)} seeds)" if len(diff) > 1 else " (1 seed)"))
    return wide, "; ".join(parts) + "."


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
    from osad_lib.experiments import devnet as devnet_experiments

    return _with_subsample(cfg, devnet_experiments.devnet_deviations(cfg, dataset))


def _run_devnet(cfg: NotebookConfig, split: Split, root: Path) -> dict[str, float]:
    from osad_lib.experiments import devnet as devnet_experiments

    return devnet_experiments.run_devnet(cfg, split, root, max_test_images=grid_option(cfg, "max_test_images"),
                                         localize=False)
