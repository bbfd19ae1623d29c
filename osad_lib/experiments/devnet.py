"""Notebook ``01_devnet``: DevNet's main results (Tables 2, 3, 4; Figs. 4, 5) beside the paper.

The grid (``grid(cfg)``), per profile dataset and seed, each method of :data:`METHODS`:

* **Table 2** — general setting (§6.5): ten labelled anomalies drawn from all classes
  (the profile's largest shot count when it allows fewer, e.g. smoke);
* **Table 3** — open-set = hard setting (§6.6): labelled anomalies from one seen class, for
  every seen class the registry lists for the dataset (``hard_seen_classes``: Carpet, Metal nut,
  AITEX, Hyper-Kvasir, ELPV, Mastcam in the paper — 30 seen classes);
* **Table 4** — pixel AUROC (§6.7): every general-setting run on a dataset with masks also
  computes explanation maps (:mod:`osad_lib.explain`); Table 4 shows those rows. When no
  dataset of the profile has masks (demo: ELPV), general runs on ``synthetic/weave`` are added
  for localization.

Rows: ``paper="devnet"``, ``table`` ``table2`` / ``table3`` / ``table4``; hard rows name the seen
class in ``subset`` (``mono``, ``carpet/color``). Each row's ``deviations`` lists how the run's
settings differ from the official code (:func:`devnet_deviations`).

Methods are runners in :data:`METHODS` (name → ``(cfg, split, root, *, localize, artifact,
checkpoint) -> metrics``): DevNet and FLOS (:data:`osad_lib.experiments.devnet_settings.DEVNET_METHODS`), and the baselines of the
DevNet tables from :data:`osad_lib.experiments.baselines.RUNNERS` — Deep SVDD, Deep SAD, MINNS, KDAD
§6.2, and PatchCore (not in DevNet's tables; the unsupervised reference of AHL Table 4, whose
``table4`` reads its rows from any notebook). Baseline rows' ``deviations`` come from
:func:`osad_lib.experiments.baselines.baseline_deviations`. Unsupervised methods
(:data:`UNSUPERVISED`) run on the same split as the others (same test set, labelled anomalies
ignored) and their rows carry ``n_shots=0``, as the paper's tables list them.
:func:`register_method` adds further runners. ``METHOD_OVERRIDES
["devnet"][profile]["methods"]`` chooses the methods a profile runs.
Ablations (Table 5, Figs. 6–8) use :func:`devnet_config` with :data:`TABLE5_VARIANTS` or
``topk_ratio`` and :func:`run_devnet` on splits with other shot counts or contamination.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import wilcoxon
from tqdm.auto import tqdm

from osad_lib import experiments, explain, paper
from osad_lib.data.mvtec import read_mvtec_layout
from osad_lib.data.protocols import Split, make_split
from osad_lib.data.registry import (
    dataset_names,
    hard_subset_label,
    resolve,
    subset_info,
)
from osad_lib.data.synthetic import SyntheticConfig
from osad_lib.data.tensors import ImageSet, load_split, subsample
from osad_lib.experiments import GridItem, baselines
from osad_lib.experiments.devnet_settings import (
    DEVNET_METHODS,
    GRID_KEYS,
    devnet_config,
)
from osad_lib.experiments.model_store import load_or_train
from osad_lib.experiments.stem_cache import StemConfig, dataset_stems, training_stems
from osad_lib.metrics import image_aupr, image_auroc
from osad_lib.methods.baselines.baselines import BaselineConfig
from osad_lib.methods.devnet.model import DevNet, DevNetConfig, score_images, train_devnet
from osad_lib.methods.baselines.kdad import KDADConfig
from osad_lib.methods.baselines.patchcore import PatchCoreConfig
from osad_lib.paper.means import with_subset_means
from osad_lib.profiles import NotebookConfig
from osad_lib.results import Experiment
from osad_lib.settings import config_diff
from osad_lib.validate import ConfigError, choose
from osad_lib.viz import METHOD_COLORS

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


# --------------------------------------------------------------------------------------------
# configuration


def grid_option(cfg: NotebookConfig, key: str) -> Any:
    """A grid-shaping option (:data:`GRID_KEYS`) of the profile, with its default."""
    defaults = {"methods": tuple(METHODS), "max_seen_classes": 0, "method_tables": {}, "method_seeds": {},
                "table_seeds": {}}
    value = cfg.profile.method("devnet").get(choose("grid option", key, GRID_KEYS), defaults[key])
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _method_tables(cfg: NotebookConfig, method: str) -> tuple[str, ...]:
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


def methods_table(cfg: NotebookConfig) -> pd.DataFrame:
    """Every method of :data:`METHODS` under this profile: the tables the profile runs it on, the labelled anomalies it uses, the DevNet tables that list it, its
    backbone and how its settings differ from its paper (``deviations`` as on real data)."""
    shots, run_tables = table_shots(cfg), sorted({table for *_, table in _runs(cfg)})
    listed = {t: set(paper.load_table(f"devnet_{t}")["method"]) for t in ("table2", "table3", "table4")}
    rows = []
    for method in METHODS:
        runs_on = [t for t in run_tables if t in _method_tables(cfg, method)]
        rows.append({
            "method": method, "runs on": ", ".join(runs_on) or "not run",
            "labelled anomalies": row_shots(method, shots),
            "paper tables": ", ".join(t for t, names in listed.items() if method in names) or "none",
            "backbone": method_config(cfg, method).backbone, "deviations": method_deviations(cfg, method, ""),
        })
    return pd.DataFrame(rows)


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


# --------------------------------------------------------------------------------------------
# splits and grid


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


def _runs(cfg: NotebookConfig) -> list[tuple[str, str, str | None, str]]:
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
    for name, setting, seen, table in _runs(cfg):
        info = subset_info(name)
        if name not in samples:
            samples[name] = _samples_if_present(cfg, name)
        for seed in cfg.seeds:
            split = None if samples[name] is None else make_split(
                samples[name], setting, shots, seed, seen_class=seen, dataset=info.dataset, subset=info.subset,
            )
            manifest = split.manifest_id if split is not None else ""
            for method in (choose("method", m, METHODS) for m in grid_option(cfg, "methods")):
                if table not in _method_tables(cfg, method) or seed not in method_seeds(cfg, method, table):
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


# --------------------------------------------------------------------------------------------
# running one experiment


def run_devnet(
    cfg: NotebookConfig,
    split: Split,
    root: Path,
    config: DevNetConfig | None = None,
    *,
    max_test_images: int = 0,
    localize: bool | None = None,
    artifact: Path | None = None,
    checkpoint: Path | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Train DevNet/FLOS (``config``, default :func:`devnet_config`) on ``split``; test metrics.

    Returns ``auroc`` and ``aupr`` (image level) and, with ``localize`` (default: when the test
    set has masks), ``pixel_auroc`` = mean per-anomaly pixel AUROC of the gradient explanation
    maps (the code's metric: ``docs/official_code/devnet.md`` "Localisation (Table 4)").
    ``artifact``: write per-test-image scores, labels, pixel AUROCs and a few maps (``.npz``) for
    Figs. 4–5. ``checkpoint``: resume an interrupted run.
    ``max_test_images``: evaluate on a class-stratified subsample of the test set.
    ``progress``: per-epoch progress bars (off: :func:`run_grid` shows one bar over the runs).
    """
    config = config if config is not None else devnet_config(cfg)
    train, test = load_split(split, root, config.image_size)
    test = subsample(test, max_test_images, split.seed)
    stem = StemConfig.of(config)
    model = trained_devnet(cfg, split, root, config, train, checkpoint, progress)
    inputs = dataset_stems(root, stem, test, cfg.device) if config.frozen_stages else test.images
    scores = score_images(model, inputs, config.eval_batch_size, cfg.device, config.amp)
    labels = test.labels.numpy()
    metrics = {"auroc": image_auroc(labels, scores), "aupr": image_aupr(labels, scores)}
    localize = test.masks is not None if localize is None else localize
    pixel = np.full(len(test), np.nan)
    maps = np.zeros((0, config.image_size, config.image_size), np.float32)
    shown = np.zeros(0, dtype=np.int64)
    if localize:
        if test.masks is None:
            raise ConfigError(f"{split.dataset}/{split.subset} has no masks; localization needs pixel ground truth")
        anomalous = np.flatnonzero(labels == 1)
        all_maps = explain.saliency_maps(model, test.images[anomalous], config.eval_batch_size, cfg.device)
        pixel[anomalous] = explain.per_image_pixel_auroc(all_maps, test.masks[anomalous])
        metrics["pixel_auroc"] = float(np.nanmean(pixel))
        pick = _overlay_choice(test, anomalous)
        shown, maps = anomalous[pick], all_maps[pick]
    if artifact is not None:
        artifact.parent.mkdir(parents=True, exist_ok=True)
        split.to_json(artifact.with_suffix(".split.json"))
        np.savez_compressed(artifact, scores=scores, labels=labels, pixel_auroc=pixel, overlay_index=shown,
                            overlay_maps=maps.astype(np.float16), paths=np.asarray(test.paths),
                            classes=np.asarray(test.classes), image_size=config.image_size)
    return metrics


def trained_devnet(cfg: NotebookConfig, split: Split, root: Path, config: DevNetConfig, train: ImageSet,
                   checkpoint: Path | None = None, progress: bool = False) -> DevNet:
    """DevNet/FLOS ``config`` trained on ``split``'s training set ``train``: loaded from the run's
    model store when any notebook trained it before (:mod:`osad_lib.experiments.model_store`),
    else trained (on cached stems with ``frozen_stages``) and stored."""
    def train_now() -> DevNet:
        stems = (training_stems(root, StemConfig.of(config), train, cfg.device, config.dihedral)
                 if config.frozen_stages else None)
        return train_devnet(config, train, split.seed, cfg.device, checkpoint=checkpoint, progress=progress,
                            desc=f"{config.criterion} {split.dataset}", stems=stems)[0]

    model, _ = load_or_train(cfg, "devnet", config, split.manifest_id, split.seed,
                             lambda: DevNet(config).to(cfg.device), train_now)
    return model


def _registry_name(split: Split) -> str:
    return f"{split.dataset}/{split.subset}" if split.subset else split.dataset


def _overlay_choice(test: ImageSet, anomalous: np.ndarray) -> list[int]:
    """Positions (in ``anomalous``) of up to :data:`N_OVERLAYS` anomalies, one class after another."""
    by_class: dict[str, list[int]] = {}
    for pos, i in enumerate(anomalous):
        by_class.setdefault(test.classes[i], []).append(pos)
    order = [positions[r] for r in range(max(map(len, by_class.values()), default=0))
             for _, positions in sorted(by_class.items()) if r < len(positions)]
    return order[:N_OVERLAYS]


def _run_devnet_method(method: str) -> Callable[..., dict[str, float]]:
    def run(cfg: NotebookConfig, split: Split, root: Path, **kwargs: Any) -> dict[str, float]:
        return run_devnet(cfg, split, root, devnet_config(cfg, method), **kwargs)

    return run


#: Method name → runner ``(cfg, split, root, *, localize, artifact, checkpoint) -> metrics``:
#: DevNet, FLOS and the baselines (:data:`osad_lib.experiments.baselines.RUNNERS`, same signature);
#: extend with :func:`register_method`.
METHODS: dict[str, Callable[..., dict[str, float]]] = {
    **{m: _run_devnet_method(m) for m in DEVNET_METHODS}, **baselines.RUNNERS,
}


def register_method(name: str, runner: Callable[..., dict[str, float]]) -> None:
    """Add a baseline runner ``(cfg, split, root, *, localize, artifact, checkpoint) -> metrics`` to :data:`METHODS`."""
    METHODS[name] = runner


def artifact_path(cfg: NotebookConfig, experiment: Experiment) -> Path:
    """Where the per-image outputs of ``experiment`` are kept (``runs/<profile>/artifacts/01_devnet``)."""
    return _artifact_file(cfg, experiment.experiment_id)


def _artifact_file(cfg: NotebookConfig, experiment_id: str) -> Path:
    return cfg.runs_dir / "artifacts" / NOTEBOOK / f"{experiment_id}.npz"


def run_one(cfg: NotebookConfig, item: GridItem) -> dict[str, float]:
    """Run one grid item (what the notebook passes to ``cfg.store.run_experiment``).

    General-setting runs on data with masks also compute explanation maps (Table 4, Figs. 4–5).
    Unsupervised rows (``n_shots=0``) run on the split of ``extra_key["split_shots"]``.
    """
    e = item.experiment
    runner = METHODS[choose("method", e.method, METHODS)]
    split, root = make_dataset_split(cfg, e.extra_key["name"], e.setting, e.extra_key.get("split_shots", e.n_shots),
                                     e.seed, e.extra_key["seen_class"] or None)
    checkpoint = cfg.checkpoints_dir / f"{NOTEBOOK}_{e.experiment_id}.pt"
    localize = None if e.setting == "general" else False  # Table 4 uses general-setting runs only
    metrics = runner(cfg, split, root, localize=localize, artifact=artifact_path(cfg, e), checkpoint=checkpoint)
    checkpoint.unlink(missing_ok=True)
    return metrics


def run_grid(cfg: NotebookConfig, items: Sequence[GridItem] | None = None) -> pd.DataFrame:
    """Run (or, with ``cfg.resume``, skip stored) experiments; return the notebook's stored rows.
    Experiments on data that are not present are skipped and named in one line
    (:func:`osad_lib.experiments.runnable`)."""
    items, missing = experiments.runnable(grid(cfg) if items is None else items)
    if missing:
        print(experiments.skipped_line(NOTEBOOK, missing, cfg.data_root))
    if not items:
        print(experiments.nothing_to_run_line(NOTEBOOK))
    for item in tqdm(items, desc="01_devnet experiments", unit="run"):
        cfg.store.run_experiment(item.experiment, lambda item=item: run_one(cfg, item), resume=cfg.resume)
    return cfg.store.read()


# --------------------------------------------------------------------------------------------
# tables


def _rows(cfg: NotebookConfig, table: str, metric: str) -> pd.DataFrame:
    rows = cfg.store.read()
    return rows[(rows["paper"] == PAPER) & (rows["table"] == table) & (rows["metric"] == metric)
                & (rows["status"] == "ok")].copy()


#: Columns of :func:`paper_table`.
PAPER_TABLE_COLUMNS = ("dataset", "subset", "setting", "n_shots", "method", "metric", "paper", "measured", "delta",
                       "n_seeds", "within_spread", "settings_differ", "note", "paper_mean", "measured_mean",
                       "deviations")


def paper_table(cfg: NotebookConfig, table: str) -> pd.DataFrame:
    """Paper vs measured for ``table2`` | ``table3`` | ``table4`` on the measured datasets, with deltas.

    Table 4 (pixel AUROC) takes the ``pixel_auroc`` rows of the general-setting runs on datasets
    with masks (Table 2 runs) and of the localization runs. Saved as ``devnet_<table>`` (CSV + MD).
    ``note`` says what a row without both numbers is (:func:`row_note`).
    """
    table = choose("table", table, ("table2", "table3", "table4"))
    if table == "table4":
        rows = pd.concat([_rows(cfg, "table2", "pixel_auroc"), _rows(cfg, "table4", "pixel_auroc")], ignore_index=True)
        rows["table"] = "table4"
    else:
        rows = with_subset_means(_rows(cfg, table, "auroc"))
    joined = paper.compare(rows, f"devnet_{table}")
    if rows.empty:  # nothing ran (its data are missing): the paper's rows of the profile's datasets
        joined = joined[joined["dataset"].isin({subset_info(n).dataset for n in dataset_names(cfg.profile.image_datasets)})]
    else:
        joined = joined[joined["dataset"].isin(set(rows["dataset"]))]
        if table == "table3":
            joined = joined[joined["subset"].isin(set(rows["subset"]))]
        joined = joined[joined["n_shots"].isna() | joined["n_shots"].isin([0, *set(rows["n_shots"].astype(int))])]
    out = joined.assign(
        paper=[paper.format_mean_std(m, s) for m, s in zip(joined["paper_mean"], joined["paper_std"])],
        measured=[paper.format_mean_std(m, s) for m, s in zip(joined["measured_mean"], joined["measured_std"])],
    )
    out["note"] = [row_note(p, n) for p, n in zip(out["paper_mean"], out["n_seeds"])]
    return out[list(PAPER_TABLE_COLUMNS)].reset_index(drop=True)


def row_note(paper_mean: float, n_seeds: int) -> str:
    """What a :func:`paper_table` row is when it lacks a measured or a paper number."""
    if not n_seeds:
        return "paper only: not run under this profile"
    return "measured only: no paper row" if pd.isna(paper_mean) else ""


def wilcoxon_table(cfg: NotebookConfig, table: str = "table2", metric: str = "auroc") -> pd.DataFrame:
    """Paired Wilcoxon signed-rank tests of DevNet against each other measured method (Table 2/3 p-values).

    ``p_value_datasets``: pairs = per-dataset means over seeds (the paper's test, across datasets
    or seen classes); ``p_value_runs``: pairs = individual (dataset, seed) runs. Two-sided
    (scipy default); NaN when fewer than two pairs or all differences are zero.
    """
    rows = _rows(cfg, table, metric)
    keys = ["dataset", "subset", "seed"]
    wide = rows.pivot_table(index=keys, columns="method", values="value", aggfunc="mean")
    out = []
    for method in [m for m in wide.columns if m != "devnet"] if "devnet" in wide.columns else []:
        runs = wide[["devnet", method]].dropna()
        per_dataset = runs.groupby(level=["dataset", "subset"]).mean()
        out.append({"method": method, "n_datasets": len(per_dataset), "n_runs": len(runs),
                    "devnet_minus_method": float((runs["devnet"] - runs[method]).mean()) if len(runs) else np.nan,
                    "p_value_datasets": _wilcoxon(per_dataset["devnet"], per_dataset[method]),
                    "p_value_runs": _wilcoxon(runs["devnet"], runs[method])})
    return pd.DataFrame(out, columns=["method", "n_datasets", "n_runs", "devnet_minus_method",
                                      "p_value_datasets", "p_value_runs"])


def _wilcoxon(a: pd.Series, b: pd.Series) -> float:
    diff = (a - b).to_numpy()
    if len(diff) < 2 or not np.any(diff):
        return float("nan")
    return float(wilcoxon(a.to_numpy(), b.to_numpy()).pvalue)


# --------------------------------------------------------------------------------------------
# figures 4 and 5


def _artifacts(cfg: NotebookConfig, method: str = "devnet",
               metric: str = "pixel_auroc") -> list[tuple[pd.Series, dict[str, np.ndarray]]]:
    """(result row of ``metric``, artifact arrays) of every stored run of ``method`` that has that
    metric (``pixel_auroc``: the localization runs; ``auroc``: every run)."""
    rows = cfg.store.read()
    rows = rows[(rows["metric"] == metric) & (rows["method"] == method) & (rows["status"] == "ok")]
    out = []
    for _, row in rows.iterrows():
        file = _artifact_file(cfg, row["experiment_id"])
        if file.is_file():
            with np.load(file) as data:
                out.append((row, {k: data[k] for k in data.files}))
    return out


def fig4_curve(cfg: NotebookConfig, n_thresholds: int = 100) -> pd.DataFrame:
    """Fig. 4: pixel AUROC of detected anomalies vs detection F1, per method, averaged over runs.

    Each localization run's curve is taken at the same ``n_thresholds`` quantiles of its own
    image scores (:func:`osad_lib.explain.auroc_f1_curve`); F1 and pixel AUROC are averaged per
    quantile over the runs of a method (the paper averages over the 15 MVTec AD classes).
    Columns: method, quantile, f1, pixel_auroc, n_runs.
    """
    frames = []
    for method in METHODS:
        curves = [explain.auroc_f1_curve(data["scores"], data["labels"], data["pixel_auroc"], n_thresholds)
                  for _, data in _artifacts(cfg, method)]
        if curves:
            mean = (pd.concat(curves, ignore_index=True).groupby("quantile")
                    .agg(f1=("f1", "mean"), pixel_auroc=("pixel_auroc", "mean"), n_runs=("f1", "size")).reset_index())
            frames.append(mean.assign(method=method))
    columns = ["method", "quantile", "f1", "pixel_auroc", "n_runs"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def fig4_figure(curve: pd.DataFrame):
    """Plot :func:`fig4_curve`: x detection F1, y pixel AUROC of the detected anomalies, one line per method."""
    import matplotlib.pyplot as plt

    if curve.empty:  # no localization run (its data are missing)
        return experiments.note_figure("DevNet Fig. 4: no localization run on the data at hand")
    fig, ax = plt.subplots(figsize=(4.4, 3.4))
    for method, part in curve.groupby("method", sort=False):  # points, not lines: F1 is not monotone in t
        ax.scatter(part["f1"], part["pixel_auroc"], s=12, alpha=0.8, color=METHOD_COLORS.get(method), label=method)
    ax.set_xlabel("detection F1 (image level, one point per threshold)")
    ax.set_ylabel("pixel AUROC of detected anomalies")
    ax.set_title("DevNet Fig. 4: localization vs detection")
    ax.legend()
    fig.tight_layout()
    return fig


def fig5_overlays(cfg: NotebookConfig, method: str = "devnet", max_datasets: int = 4):
    """Fig. 5: image / mask / explanation map of the stored example anomalies, from the first
    run (lowest seed) of each of at most ``max_datasets`` localization datasets."""
    images, masks, maps, titles = [], [], [], []
    runs = sorted(_artifacts(cfg, method), key=lambda r: (r[0]["dataset"], r[0]["subset"], r[0]["seed"]))
    if not runs:  # nothing ran (its data are missing)
        return experiments.note_figure(f"no localization run of {method}: nothing ran on the data at hand")
    first: dict[tuple[str, str], tuple[pd.Series, dict[str, np.ndarray]]] = {}
    for row, data in runs:
        first.setdefault((row["dataset"], row["subset"]), (row, data))
    for row, data in list(first.values())[:max_datasets]:
        if not len(data["overlay_index"]):
            continue
        _, run_images, run_masks = _overlay_images(cfg, row, data)
        images += list(run_images)
        masks += list(run_masks)
        maps += [m.astype(np.float32) for m in data["overlay_maps"]]
        titles += [f"{row['subset'] or row['dataset']}: {data['classes'][i]}" for i in data["overlay_index"]]
    if not images:
        raise ConfigError(f"no stored localization run of {method!r} with example maps; run the grid (run_grid) first")
    return explain.overlay_figure(torch.stack(images), torch.stack(masks), np.stack(maps), titles)


def _overlay_images(cfg: NotebookConfig, row: pd.Series,
                    data: dict[str, np.ndarray]) -> tuple[Split, torch.Tensor, torch.Tensor | None]:
    """A stored run's split, and the test images and masks of its example anomalies (``overlay_index`` order)."""
    split = Split.from_json(_artifact_file(cfg, row["experiment_id"]).with_suffix(".split.json"))
    test = load_split(split, resolve(_registry_name(split), cfg.data_root), int(data["image_size"]))[1]
    position = {p: i for i, p in enumerate(test.paths)}
    picked = [position[str(data["paths"][i])] for i in data["overlay_index"]]
    return split, test.images[picked], None if test.masks is None else test.masks[picked]


# --------------------------------------------------------------------------------------------
# score explorer (widgets.score_explorer)


def score_frame(data: dict[str, np.ndarray], seen_classes: Sequence[str]) -> pd.DataFrame:
    """The score frame (:mod:`osad_lib.plots`) of a stored run's artifact ``data``: one row per
    test image with ``score``, ``label``, ``class``, ``kind`` (``seen``: an anomaly of a class among
    the labelled training anomalies ``seen_classes``, ``unseen``: another anomaly), ``path`` and
    ``map_index`` (position among the run's example maps, −1 without one)."""
    labels = data["labels"].astype(int)
    classes = data["classes"].astype(str)
    kind = np.where(labels == 0, "normal", np.where(np.isin(classes, list(seen_classes)), "seen", "unseen"))
    map_index = np.full(len(labels), -1)
    map_index[data["overlay_index"].astype(int)] = np.arange(len(data["overlay_index"]))
    return pd.DataFrame({"score": data["scores"].astype(float), "label": labels, "class": classes, "kind": kind,
                         "path": data["paths"].astype(str), "map_index": map_index})


def score_explorer_inputs(cfg: NotebookConfig, method: str = "devnet") -> dict[str, Any]:
    """Keyword arguments of ``widgets.score_explorer`` for one stored run of ``method``: the first
    run with example explanation maps (a localization run; lowest table, dataset, seed), else the
    first run. ``scores`` (:func:`score_frame`), ``images``/``masks``/``maps`` = the run's Fig. 5
    example anomalies (``maps`` None when it kept none), ``title`` naming the run and its AUROC."""
    runs = sorted(_artifacts(cfg, method, "auroc"),
                  key=lambda r: (not len(r[1]["overlay_index"]), r[0]["table"], r[0]["dataset"], r[0]["subset"],
                                 r[0]["seed"]))
    if not runs and experiments.runnable(grid(cfg))[0]:
        raise ConfigError(f"no stored run of {method!r} with per-image scores; run the grid (run_grid) first")
    if not runs:  # nothing ran (its data are missing): an empty score frame
        return {"scores": pd.DataFrame(columns=["score", "label", "class", "kind"]), "images": None, "masks": None,
                "maps": None, "title": f"{method}: no stored run (nothing ran on the data at hand)"}
    row, data = runs[0]
    split, images, masks = _overlay_images(cfg, row, data)
    has_maps = len(data["overlay_index"]) > 0
    where = "/".join(p for p in (row["dataset"], row["subset"]) if p)
    return {"scores": score_frame(data, split.seen_classes), "images": images if has_maps else None,
            "masks": masks if has_maps else None,
            "maps": data["overlay_maps"].astype(np.float32) if has_maps else None,
            "title": f"{method}, {where} ({row['setting']}, seed {row['seed']}): test AUROC {row['value']:.3f}"}


__all__ = [
    "DEVNET_METHODS", "METHODS", "NOTEBOOK", "TABLE5_VARIANTS", "UNSUPERVISED", "artifact_path",
    "config_deviations", "config_table", "devnet_config", "devnet_deviations", "fig4_curve",
    "fig4_figure", "fig5_overlays", "grid", "grid_frame", "grid_option", "make_dataset_split", "method_config",
    "method_deviations", "methods_table", "paper_table", "register_method", "row_note", "row_shots", "run_devnet",
    "run_grid", "run_one", "score_explorer_inputs", "trained_devnet", "score_frame", "table_shots", "wilcoxon_table",
]
