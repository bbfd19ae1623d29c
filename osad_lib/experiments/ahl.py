"""Notebook ``05_ahl``: AHL (DevNet) and AHL (DRA) beside their base models, paired (Tables 1/2/4/7/8).

For every dataset, setting (general with each shot count; hard with every seen class), seed and
base model (DevNet, DRA) the grid holds two kinds of rows on the same split:

* the **base model** (``method="devnet"|"dra"``, ``variant="ahl_base"``): trained with the
  base notebooks' functions and settings (:func:`osad_lib.experiments.devnet.devnet_config`,
  :func:`osad_lib.experiments.dra.dra_config`), then scored by its own heads on its frozen
  features — the features AHL trains on;
* **AHL** (``method="ahl_devnet"|"ahl_dra"``): the unified model trained by
  :func:`osad_lib.methods.ahl.ensembles.train_ahl` on the cached :class:`~osad_lib.components.features.FeatureBank`
  of that base model; further variants (Table 5/10, Fig. 3/4 options) are listed in the
  profile's ``variants``.

Both rows score the same test features, so ``AHL − base`` per seed is a paired difference
(:func:`paired_differences`). A base model is trained once per split and base (checkpoint under
``checkpoints/05_ahl``) and its features are extracted once (``cache_dir()/features``); the
base row and every AHL row of that split reuse them. The DRA base is scored with its fixed
reference normals (DRA's clean-mode evaluation) so that base and AHL see the same references.

Rows: ``paper="ahl"``, ``table="table1"`` (general) / ``"table2"`` (hard, ``subset`` = seen
class). Tables 7/8 are the per-subset versions; Table 4 sets AHL (DRA) beside PatchCore, KDAD
and FS-DRA, whose values come from other notebooks' stores when present and are otherwise
shown from the paper only.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from osad_lib import paper
from osad_lib.data.protocols import Split
from osad_lib.data.registry import hard_subset_label, subset_info
from osad_lib.data.tensors import ImageSet, load_split, subsample
from osad_lib.experiments import GridItem, with_split_note
from osad_lib.experiments import devnet as xdevnet
from osad_lib.experiments import dra as xdra
from osad_lib.data.pseudo import load_textures
from osad_lib.experiments.paired import paired_differences as paired_table
from osad_lib.experiments.paired import summary_sentence
from osad_lib.experiments.stem_cache import StemConfig, dataset_stems, pseudo_stems
from osad_lib.components.features import PSEUDO_GENERATORS, FeatureBank, cached_features, normal_subset
from osad_lib.metrics import image_aupr, image_auroc
from osad_lib.methods.ahl.config import BASES, AHLConfig
from osad_lib.methods.ahl.ensembles import train_ahl
from osad_lib.methods.devnet.model import DevNetConfig, score_images
from osad_lib.methods.dra.model import DRAConfig
from osad_lib.profiles import NotebookConfig
from osad_lib.paths import atomic_write_text
from osad_lib.results import Experiment, read_all
from osad_lib.settings import config_diff
from osad_lib.validate import ConfigError, choose
from osad_lib.paper.means import with_subset_means

NOTEBOOK = "05_ahl"
PAPER = "ahl"
TABLES = {"general": "table1", "hard": "table2"}
#: ``variant`` of the base-model rows (the paper tables' DevNet/DRA columns, here trained by us).
BASE_VARIANT = "ahl_base"
#: Keys of ``METHOD_OVERRIDES["ahl"][profile]`` that shape the grid; every other key is an
#: :class:`AHLConfig` field, except ``"devnet"`` / ``"dra"``, whose dicts are AHLConfig
#: overrides for that base model only (e.g. more epochs where they are cheap). The splits are
#: 02_dra's (its datasets, ``extra_hard`` and seen-class limit), restricted by ``general_n_shots``
#: / ``hard_n_shots`` (default: the profile's shots) and ``settings`` (default: the profile's);
#: ``bases`` (default both), ``variants`` (AHL variants run beside the full model, as
#: ``AHLConfig`` overrides keyed by a label; default none), ``max_test_images`` (0 = the whole
#: test set, else a seeded class-stratified subsample), ``max_normals`` (0 = every training
#: normal enters HADG, else a seeded subset of that size).
GRID_KEYS = ("general_n_shots", "hard_n_shots", "settings", "bases", "variants", "max_test_images", "max_normals")
#: Paper variants (Table 5, Table 10, Fig. 4) → AHLConfig overrides, for ``variants`` lists.
PAPER_VARIANTS: dict[str, dict[str, Any]] = {
    "hadg": {"variant": "hadg"}, "ramhadg": {"variant": "ramhadg"}, "ramfull": {"variant": "ramfull"},
    "ramhadg+devnet": {"variant": "ramhadg+devnet"}, "cdl_minus": {"variant": "cdl_minus"},
    "overlap=s_to_q": {"overlap": "s_to_q"}, "overlap=q_to_s": {"overlap": "q_to_s"},
    "overlap=both": {"overlap": "both"}, "wo_aug": {"pseudo": False}, "faithful": {"mode": "faithful"},
}


# --------------------------------------------------------------------------------------------
# configuration


def _overrides(cfg: NotebookConfig) -> dict[str, Any]:
    return cfg.profile.method("ahl")


def grid_option(cfg: NotebookConfig, key: str) -> Any:
    """A grid-shaping option (:data:`GRID_KEYS`) under the profile, with its default."""
    defaults = {"general_n_shots": cfg.profile.n_shots, "hard_n_shots": cfg.profile.n_shots,
                "settings": cfg.profile.settings, "bases": BASES, "variants": (), "max_test_images": 0, "max_normals": 0}
    value = _overrides(cfg).get(choose("grid option", key, GRID_KEYS), defaults[key])
    return tuple(value) if isinstance(value, (list, tuple)) else value


def variant_options(variant: str) -> dict[str, Any]:
    """AHLConfig overrides of a variant label: a :data:`PAPER_VARIANTS` name, ``C=<n>`` /
    ``K=<n>`` (Fig. 3 sweeps of the cluster count and ψ's sequence length), ``init=fresh``, or
    several joined by ``;``."""
    options: dict[str, Any] = {}
    for part in filter(None, variant.split(";")):
        key, _, value = part.partition("=")
        if key in ("C", "K") and value.isdigit():
            options["n_clusters" if key == "C" else "sequence_length"] = int(value)
        elif part == "init=fresh":
            options["init"] = "fresh"
        else:
            allowed = (*PAPER_VARIANTS, "C=<n>", "K=<n>", "init=fresh")
            options.update(PAPER_VARIANTS[choose("AHL variant", part, allowed)])
    return options


def ahl_config(cfg: NotebookConfig, base: str, variant: str = "") -> AHLConfig:
    """AHL's paper defaults ← the DRA base's composite-head width (g has the base's architecture)
    ← ``METHOD_OVERRIDES["ahl"][profile]`` (its general keys, then those under ``base``) ← the
    variant's options
    (:func:`variant_options`; ``faithful`` = :meth:`AHLConfig.faithful` with the code's numbers)."""
    overrides = _overrides(cfg)
    settings = {k: v for k, v in overrides.items() if k not in GRID_KEYS and k not in BASES}
    settings.update(overrides.get(base, {}))
    options = variant_options(variant)
    faithful = options.pop("mode", "") == "faithful"
    inherited = {"composite_channels": xdra.dra_config(cfg).composite_channels} if base == "dra" else {}
    merged = {**inherited, **settings, **options, "base": base}
    return AHLConfig.faithful(**merged) if faithful else AHLConfig(**merged)


def base_config(cfg: NotebookConfig, base: str) -> DevNetConfig | DRAConfig:
    """The base model's settings under the profile, exactly as its own notebook trains it."""
    return xdevnet.devnet_config(cfg) if choose("base", base, BASES) == "devnet" else xdra.dra_config(cfg)


def _ahl_deviations(config: AHLConfig) -> list[str]:
    reference = AHLConfig.faithful(base=config.base) if config.faithful_mode else AHLConfig(base=config.base)
    label_fields = {"variant", "overlap", "pseudo", "n_clusters", "sequence_length", "init", "mode", "base"}
    return config_diff(config, reference, "paper", skip=label_fields, shown=AHLConfig())


def deviations(cfg: NotebookConfig, dataset: str, base: str, config: AHLConfig | None) -> str:
    """How a row's run differs from the paper: the base model's deviations (its notebook's),
    then AHL's mode and settings, the HADG normal subset and the test subsample."""
    base_text = (xdevnet.devnet_deviations(cfg, dataset, base_config(cfg, base)) if base == "devnet"
                 else xdra.config_deviations(base_config(cfg, base), dataset))
    parts = [f"base: {base_text}" if base_text else ""]
    if base == "dra":
        parts.append("DRA scored with its fixed reference normals")
    if config is not None:
        parts.append(f"ahl mode={config.mode}")
        parts += _ahl_deviations(config)
    if grid_option(cfg, "max_normals"):
        parts.append(f"HADG on a seeded subset of {grid_option(cfg, 'max_normals')} training normals")
    if grid_option(cfg, "max_test_images"):
        limit = grid_option(cfg, "max_test_images")
        parts.append(f"test set: seeded class-stratified subsample of at most {limit} images")
    return "; ".join(p for p in parts if p)


# --------------------------------------------------------------------------------------------
# grid


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
        device=cfg.device_label, extra_key={"name": name, "seen_class": seen or ""})
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


# --------------------------------------------------------------------------------------------
# base models and their features


@dataclasses.dataclass
class BaseRun:
    """A trained base model of one split, its feature bank, its state dict (the heads) and its own
    test scores (scored as its notebook scores it: DRA with the references of its mode)."""

    model: torch.nn.Module
    bank: FeatureBank
    state: dict[str, torch.Tensor]
    scores: np.ndarray


def _stems(cfg: NotebookConfig, root: Path, config: DevNetConfig | DRAConfig, images: ImageSet) -> Any:
    """Cached frozen-stem outputs of ``images`` (``frozen_stages > 0``, the CPU demo), else None."""
    if not config.frozen_stages:
        return None
    return dataset_stems(root, StemConfig.of(config), images, cfg.device)


def draem_textures(cfg: NotebookConfig, image_size: int) -> torch.Tensor | None:
    """DTD texture images for DRAEM pseudo anomalies (App. B.1) when the data root holds the
    Describable Textures Dataset (``<data_root>/dtd/images/<class>/*.jpg``), else None (generated
    textures, :func:`osad_lib.data.pseudo.generated_texture`)."""
    folder = cfg.data_root / "dtd" / "images" if cfg.data_root is not None else None
    return load_textures(folder, image_size) if folder is not None and folder.is_dir() else None


def _pseudo_stems(cfg: NotebookConfig, root: Path, config: Any, train: ImageSet, rows: np.ndarray,
                  generators: Sequence[str]) -> dict[str, Any] | None:
    """Cached frozen-stem outputs of each generator's pseudo anomaly of the training normals
    ``rows`` (:func:`osad_lib.experiments.stem_cache.pseudo_stems`; the CPU demo), else None."""
    if not config.frozen_stages:
        return None
    normals = [train.paths[r] for r in rows]
    textures = draem_textures(cfg, config.image_size)
    return {g: pseudo_stems(root, StemConfig.of(config), PSEUDO_GENERATORS[g], normals,
                            dihedral_transform=config.dihedral, textures=textures if g == "draem" else None,
                            device=cfg.device) for g in generators}


@functools.lru_cache(maxsize=4)
def _base_run_cached(cfg: NotebookConfig, base: str, name: str, setting: str, n_shots: int, seed: int,
                     seen: str | None) -> BaseRun:
    split, root = make_dataset_split(cfg, name, setting, n_shots, seed, seen)
    config = base_config(cfg, base)
    train, test = load_split(split, root, config.image_size)
    test = subsample(test, grid_option(cfg, "max_test_images"), seed)
    if base == "devnet":
        model = xdevnet.trained_devnet(cfg, split, root, config, train)
        references: Sequence[int] = ()
        scores = score_images(model, _stems(cfg, root, config, test) or test.images, config.eval_batch_size,
                              cfg.device, config.amp)
    else:
        trained = xdra.trained_method(cfg, split, root, config, train)
        model, references = trained.model, trained.data.fixed_reference_idx.tolist()
        torch.manual_seed(seed)  # as 02_dra scores it (faithful: random references)
        scores = trained.score(xdra.scoring_inputs(cfg, root, config, test))["score"]
    rows = normal_subset(train, grid_option(cfg, "max_normals"), seed)
    bank = cached_features(model, train, test, split.manifest_id, seed=seed,
                           max_normals=grid_option(cfg, "max_normals"), reference_rows=references,
                           train_stems=_stems(cfg, root, config, train), test_stems=_stems(cfg, root, config, test),
                           textures=draem_textures(cfg, config.image_size), batch_size=config.eval_batch_size,
                           device=cfg.device, progress=cfg.interactive,
                           pseudo_stems=_pseudo_stems(cfg, root, config, train, rows, tuple(PSEUDO_GENERATORS)))
    return BaseRun(model, bank, {k: v.detach().cpu() for k, v in model.state_dict().items()}, np.asarray(scores))


def base_run(cfg: NotebookConfig, base: str, experiment: Experiment) -> BaseRun:
    """The trained base model and feature bank of ``experiment``'s split (trained/extracted once)."""
    e = experiment
    return _base_run_cached(cfg, base, e.extra_key["name"], e.setting, int(e.n_shots), e.seed,
                            e.extra_key["seen_class"] or None)


# --------------------------------------------------------------------------------------------
# running one experiment


def history_file(cfg: NotebookConfig, experiment: Experiment) -> Path:
    """Where an AHL run's per-epoch, per-task weights are written (``runs/<profile>/artifacts/05_ahl``)."""
    return cfg.runs_dir / "artifacts" / NOTEBOOK / f"{experiment.experiment_id}_history.csv"


def scores_file(cfg: NotebookConfig, experiment: Experiment) -> Path:
    """Where a row's per-image test scores are written (``runs/<profile>/scores/05_ahl/<id>.csv``)."""
    return cfg.runs_dir / "scores" / NOTEBOOK / f"{experiment.experiment_id}.csv"


@torch.no_grad()
def _head_scores(trained: Any, features: Sequence[torch.Tensor], chunk: int = 256) -> dict[str, np.ndarray]:
    """Per-head test scores of a single-model AHL (DRA): holistic, seen, pseudo, composite
    (its score is −holistic + the others, DRA §3.2); none for DevNet or an ensemble."""
    if len(trained.members) != 1 or trained.members[0][1] != "dra":
        return {}
    scorer = trained.members[0][0]
    scorer.module.eval()
    parts = [scorer.module([f[i:i + chunk].float() for f in features], scorer.references)
             for i in range(0, features[0].shape[0], chunk)]
    return {head: torch.cat([p[head] for p in parts]).cpu().numpy() for head in parts[0]}


def _save_scores(cfg: NotebookConfig, e: Experiment, bank: FeatureBank, scores: np.ndarray,
                 heads: dict[str, np.ndarray]) -> None:
    """Write every test image's class, label, kind (normal / seen / unseen, by the split's
    labelled anomaly classes), score and head scores (:func:`scores_file`)."""
    split, _ = make_dataset_split(cfg, e.extra_key["name"], e.setting, int(e.n_shots), e.seed,
                                  e.extra_key["seen_class"] or None)
    labels, classes = np.asarray(bank.test_labels), list(bank.test_classes)
    kind = ["normal" if not label else "seen" if c in split.seen_classes else "unseen"
            for c, label in zip(classes, labels)]
    frame = pd.DataFrame({"class": classes, "label": labels, "kind": kind, "score": scores,
                          **{f"score_{head}": values for head, values in heads.items()}})
    atomic_write_text(scores_file(cfg, e), frame.to_csv(index=False))


def run_one(cfg: NotebookConfig, item: GridItem) -> dict[str, float]:
    """Run one grid item (a base model row or an AHL row) and return its test AUROC and AUPR;
    the per-image test scores go to :func:`scores_file`."""
    e = item.experiment
    base = e.method.removeprefix("ahl_")
    run = base_run(cfg, base, e)
    heads: dict[str, np.ndarray] = {}
    if e.method == base:
        scores = run.scores
    else:
        config = ahl_config(cfg, base, e.variant)
        banks = {base: run.bank}
        if config.variant == "ramhadg+devnet":
            banks["devnet"] = base_run(cfg, "devnet", e).bank
        trained = train_ahl(banks, config, e.seed, cfg.device, base_state=run.state, progress=cfg.interactive)
        scores = trained.score({b: [f.to(cfg.device) for f in bank.test] for b, bank in banks.items()})
        heads = _head_scores(trained, [f.to(cfg.device) for f in run.bank.test])
        if trained.history:
            atomic_write_text(history_file(cfg, e), pd.DataFrame(trained.history).to_csv(index=False))
    _save_scores(cfg, e, run.bank, scores, heads)
    labels = run.bank.test_labels
    return {"auroc": image_auroc(labels, scores), "aupr": image_aupr(labels, scores)}


def runnable(items: Sequence[GridItem]) -> tuple[list[GridItem], list[str]]:
    """Items whose data are at hand, and the dataset names that are missing."""
    return xdra.runnable(items)


# --------------------------------------------------------------------------------------------
# score explorer


def _base_item(items: Sequence[GridItem], item: GridItem) -> GridItem | None:
    """The base-model row on the same split as AHL row ``item``."""
    e = item.experiment
    base = e.method.removeprefix("ahl_")
    return next((i for i in items if i.experiment.method == base and i.experiment.variant == BASE_VARIANT
                 and i.experiment.manifest_id == e.manifest_id and i.experiment.extra_key == e.extra_key), None)


def explorer_run(cfg: NotebookConfig, items: Sequence[GridItem]) -> GridItem | None:
    """The AHL row the notebook's score explorer shows: AHL as published (no variant), first
    seed, with its and its base row's test scores saved (:func:`scores_file`); AHL (DRA) first
    (it has per-head scores), then the hard setting (unseen classes only)."""
    def saved(item: GridItem | None) -> bool:
        return item is not None and scores_file(cfg, item.experiment).is_file()

    ready = [i for i in items if i.experiment.method.startswith("ahl_") and not i.experiment.variant
             and i.experiment.seed == cfg.seeds[0] and saved(i) and saved(_base_item(items, i))]
    return min(ready, key=lambda i: (i.experiment.method != "ahl_dra", i.experiment.setting != "hard"), default=None)


def explorer_frame(cfg: NotebookConfig, items: Sequence[GridItem], item: GridItem) -> pd.DataFrame:
    """The score frame (:mod:`osad_lib.plots`) of AHL row ``item`` beside its base model, both
    on the same test features: ``score`` = AHL's, ``score_base`` = the base model's, and for
    AHL (DRA) the unified model's heads ``score_holistic``/``_seen``/``_pseudo``/``_composite``."""
    base_item = _base_item(items, item)
    if base_item is None:
        raise ConfigError(f"no base-model row for {item.experiment.method} in the grid; pass the notebook's grid items")
    ahl, base = (pd.read_csv(scores_file(cfg, i.experiment)) for i in (item, base_item))
    if list(ahl["class"]) != list(base["class"]):
        raise ConfigError("AHL and base test scores are of different images; rerun both rows with resume=False")
    heads = [c for c in ahl.columns if c.startswith("score_")]
    return pd.concat([ahl[["score", "label", "class", "kind"]], base["score"].rename("score_base"), ahl[heads]], axis=1)


# --------------------------------------------------------------------------------------------
# tables


def _measured(cfg: NotebookConfig) -> pd.DataFrame:
    rows = cfg.store.read()
    return rows[(rows["paper"] == PAPER) & (rows["status"] == "ok")]


def _as_paper_rows(measured: pd.DataFrame) -> pd.DataFrame:
    """Base rows are the paper's DevNet/DRA columns (``variant`` ``ahl_base`` → ``""``)."""
    return measured.assign(variant=measured["variant"].replace({BASE_VARIANT: ""}))


def comparison(cfg: NotebookConfig, table: str) -> pd.DataFrame:
    """Measured vs paper for ``table1``/``table7`` (general) or ``table2``/``table8`` (hard):
    the measured rows, paper mean/std, measured mean/std over seeds, delta, n_seeds."""
    source = {"table1": "table1", "table7": "table1", "table2": "table2", "table8": "table2"}[
        choose("table", table, ("table1", "table2", "table7", "table8"))]
    measured = _measured(cfg)
    measured = with_subset_means(measured[measured["table"] == source])
    if measured.empty:
        return pd.DataFrame()
    out = paper.compare(_as_paper_rows(measured).assign(table=table), f"ahl_{table}")
    return out[out["n_seeds"] > 0].reset_index(drop=True)


def display_table(frame: pd.DataFrame) -> pd.DataFrame:
    """A comparison frame as ``mean ± std`` strings beside the paper (see :func:`comparison`)."""
    return xdra.display_table(frame)


def paired_differences(cfg: NotebookConfig, metric: str = "auroc") -> tuple[pd.DataFrame, str]:
    """AHL − its base model per split, paired over seeds (:mod:`osad_lib.experiments.paired`), for
    each base: general and hard settings, each hard seen class and their per-seed mean, beside the
    paper's gain (paper AHL − paper base, Tables 1/2). Returns the table and the verdict sentences."""
    rows = _measured(cfg)
    rows = with_subset_means(rows[rows["metric"] == metric])
    tables = []
    for base in BASES:
        table = _paired(rows, (f"ahl_{base}", ""), (base, BASE_VARIANT), metric, (f"AHL({base})", base))
        tables.append(table.assign(base=base))
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    return table, summary_sentence(table, _where)


def _paired(rows: pd.DataFrame, treatment: tuple[str, str], control: tuple[str, str], metric: str,
            names: tuple[str, str]) -> pd.DataFrame:
    base = control[0]
    return paired_table(rows, treatment, control, names=names,
                              paper_diff=lambda key: _paper_gain(*key, base, metric))


def _where(row: pd.Series) -> str:
    place = "/".join(p for p in (row["dataset"], row["subset"]) if p)
    seen = " (mean over seen classes)" if str(row["subset"]).endswith("mean") else ""
    return f"{place}, {row['setting']} {int(row['n_shots'])}-shot{seen}"


def _paper_gain(dataset: str, subset: str, setting: str, n_shots: int, base: str, metric: str) -> float:
    table_id = "ahl_table1" if setting == "general" else "ahl_table2" if subset.endswith("mean") else "ahl_table8"
    table = paper.load_table(table_id)
    sel = table[(table["dataset"] == dataset) & (table["subset"].fillna("") == subset)
                & (table["setting"] == setting) & (table["n_shots"] == n_shots) & (table["metric"] == metric)
                & (table["variant"].fillna("") == "")]
    values = sel.set_index("method")["mean"]
    if base in values and f"ahl_{base}" in values:
        return float(values[f"ahl_{base}"] - values[base])
    return float("nan")


def table4(cfg: NotebookConfig) -> pd.DataFrame:
    """Table 4: AHL (DRA) (10 anomalies, general) beside unsupervised PatchCore/KDAD and
    fully supervised FS-DRA. Measured values come from any notebook's store of this profile
    (method ``patchcore``/``kdad``; ``dra`` with setting ``fully_supervised``); a column
    without one shows the paper's number labelled ``paper only``."""
    reference = paper.load_table("ahl_table4")
    measured = read_all(cfg.profile.name, cfg.output_dir)
    measured = measured[measured["status"] == "ok"] if len(measured) else measured
    ours = _measured(cfg)
    ours = ours[(ours["method"] == "ahl_dra") & (ours["variant"] == "") & (ours["setting"] == "general")
                & (ours["n_shots"] == 10) & (ours["metric"] == "auroc")]
    out = []
    for dataset in sorted(set(ours["dataset"])):
        row: dict[str, Any] = {"dataset": dataset}
        for column, method, setting in (("KDAD", "kdad", "general"), ("PatchCore", "patchcore", "general"),
                                        ("AHL (DRA)", "ahl_dra", "general"), ("FS-DRA", "dra", "fully_supervised")):
            if method == "ahl_dra":
                values = ours[ours["dataset"] == dataset]["value"]
            else:
                values = measured[(measured["dataset"] == dataset) & (measured["method"] == method)
                                  & (measured["setting"] == setting) & (measured["metric"] == "auroc")]["value"] \
                    if len(measured) else pd.Series(dtype=float)
            p = reference[(reference["dataset"] == dataset) & (reference["method"] == method)
                          & (reference["setting"] == setting) & (reference["subset"].isin(["", "mean"]))]
            paper_text = paper.format_mean_std(p["mean"].iloc[0], p["std"].iloc[0]) if len(p) else "—"
            spread = values.std(ddof=1) if len(values) > 1 else None
            row[f"{column} measured"] = (paper.format_mean_std(values.mean(), spread) if len(values)
                                         else "not run (paper only)")
            row[f"{column} paper"] = paper_text
        out.append(row)
    return pd.DataFrame(out)


# --------------------------------------------------------------------------------------------
# figure: what ψ learns


def weight_histories(cfg: NotebookConfig) -> pd.DataFrame:
    """Every stored AHL run's per-epoch importance weights, with its row's keys."""
    rows = _measured(cfg)
    rows = rows[rows["method"].str.startswith("ahl_") & (rows["metric"] == "auroc")]
    frames = []
    for _, row in rows.iterrows():
        file = cfg.runs_dir / "artifacts" / NOTEBOOK / f"{row['experiment_id']}_history.csv"
        if file.is_file():
            frames.append(pd.read_csv(file).assign(method=row["method"], variant=row["variant"], seed=row["seed"],
                                                   dataset=row["dataset"], subset=row["subset"],
                                                   setting=row["setting"], n_shots=row["n_shots"]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def adaptation_table(histories: pd.DataFrame, variant: str = "") -> pd.DataFrame:
    """How far the base models φ_i move from the unified model g in their inner loop (Eq. 1):
    per AHL model and epoch, the relative parameter change ‖φ_i − θ_g‖ / ‖θ_g‖ (mean, min and max
    over tasks and runs). Near 0 means every φ_i is g and CDL has no heterogeneity to weigh."""
    data = histories[histories["variant"] == variant] if len(histories) else histories
    if data.empty or "relative_change" not in data:
        return pd.DataFrame()
    return (data.groupby(["method", "epoch"])["relative_change"].agg(["mean", "min", "max"])
            .rename(columns=lambda c: f"relative change {c}").reset_index())


def weights_figure(histories: pd.DataFrame, variant: str = ""):
    """The importance weights w_i per HADG task over epochs (mean over runs, band = min–max),
    one panel per AHL model; dashed: the equal weights 1/T used before ψ has K epochs."""
    import matplotlib.pyplot as plt

    data = histories[histories["variant"] == variant] if len(histories) else histories
    methods = sorted(set(data["method"])) if len(data) else []
    if not methods:
        return None
    fig, axes = plt.subplots(1, len(methods), figsize=(4.6 * len(methods), 3.4), squeeze=False, sharey=True)
    for ax, method in zip(axes[0], methods, strict=True):
        part = data[data["method"] == method]
        tasks = list(dict.fromkeys(part["task"]))
        for task in tasks:
            stats = part[part["task"] == task].groupby("epoch")["weight"].agg(["mean", "min", "max"])
            line, = ax.plot(stats.index, stats["mean"], marker=".", label=task)
            ax.fill_between(stats.index, stats["min"], stats["max"], color=line.get_color(), alpha=0.12)
        ax.axhline(1 / len(tasks), color="black", linestyle="--", linewidth=0.8)
        runs = part.groupby(["dataset", "subset", "setting", "n_shots", "seed"]).ngroups
        ax.set_title(f"{method}: importance weights ({runs} runs)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("weight $w_i$ (Eq. 7)")
    axes[0][-1].legend(title="task (support→query)", fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


__all__ = [
    "BASE_VARIANT", "GRID_KEYS", "NOTEBOOK", "PAPER_VARIANTS", "ahl_config", "base_config", "base_run",
    "comparison", "draem_textures", "deviations", "display_table", "explorer_frame", "explorer_run", "grid",
    "grid_option", "history_file", "make_dataset_split", "paired_differences", "adaptation_table", "run_one", "runnable",
    "scores_file", "split_item", "table4", "variant_options", "weight_histories", "weights_figure",
]
