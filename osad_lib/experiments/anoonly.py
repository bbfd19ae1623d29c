"""Notebook ``04_anoonly``: AnoOnly's Tables 1, 3, 4 and Figs. 4 and 10 beside the paper.

The grid: for every ADBench file present (``osad_lib.data.tabular``; without data, every file
AnoOnly's groups list), each *data setting*, each seed, each head (Deep SAD, DevNet, FEAWAD,
PReNet) with and without AnoOnly. A data setting is one point of the generator's two axes
(:func:`osad_lib.data.tabular.adbench_split`): the **organisation** — ``clean`` (unlabelled
training anomalies dropped: the paper's Tables 1, 3, 4 and §4.3–4.5) or ``contaminated`` (kept
as label-0 rows: the label-noise experiment of §4.6 / Fig. 8) — and the **split** — ``paper``
(ADBench's resample-then-split) or ``no_leak`` (split first; beyond the paper). One experiment =
one file × data setting × seed × head × variant; it measures AUROC (Table 1), AUCPR w.r.t.
anomalies (Table 3), AUCPR w.r.t. normals as the code computes it (Table 4) and AP of the
normals ranked by the negated score (``aupr_normal_neg``, which the paper does not report).

Rows: ``paper="anoonly"``, ``table="table1"`` (the experiment's key; :func:`measured_rows`
files ``aupr`` under ``table3`` and ``aupr_normal`` under ``table4``), ``dataset`` = group
(``mvtecad``, ``cifar10``, …), ``subset`` = file stem, ``method`` = head, ``variant`` = ``""`` or
``"anoonly"``, ``setting`` = :data:`SETTINGS` of (organisation, split) — only
``semi_supervised`` (clean, paper split) joins the paper's tables —, ``backbone`` = the
embedding network; ``extra_key`` holds ``organisation``, ``split``, ``anomaly_only``, the data
and head options. Group means (``subset=""``) are built per seed by :func:`group_means` before
:func:`osad_lib.paper.compare`; a group computed from fewer files than ADBench ships is marked
partial.

Defaults are the paper's method (appendix B); every departure from it — an official-code
behaviour (:data:`osad_lib.methods.anoonly.heads.CODE_BEHAVIOUR`), a shortened schedule, the no-leak split,
the contaminated organisation — is named in the row's ``deviations``
(``docs/official_code/anoonly.md`` explains what the code does). ``fidelity`` experiments
(``table="fidelity"``, :data:`FACTORS`) rerun the MVTec column with one such option changed at a
time: the "what changes the number" table.

Beyond the paper (``table="image_devnet"``, :data:`IMAGE_TABLE`): the image DevNet of notebook
``01_devnet`` (:func:`osad_lib.experiments.devnet.run_devnet`) with and without AnoOnly
(``DevNetConfig.anomaly_only``) on the open-set image splits (general and hard settings, the
DevNet notebook's shots and profile settings); rows ``method="devnet"``, ``variant`` ``""`` or
``"anoonly"``, compared per seed by :func:`image_pairs`.

The ablations notebook uses :func:`ablation_grid` (Table 2 BN variants, Figs. 5–9) and
:func:`run_one`; :func:`make_item` builds any single experiment.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from osad_lib import experiments, paper, paths
from osad_lib.data.protocols import Split
from osad_lib.data.registry import (
    DataNotFoundError,
    dataset_names,
    hard_subset_label,
    subset_info,
)
from osad_lib.data.tabular import (
    ADBENCH_ENV,
    GROUPS,
    ORGANISATIONS,
    SPLITS,
    TabularSplit,
    adbench_file,
    adbench_roots,
    adbench_split,
    group_of,
    leakage,
    load_npz,
    user_adbench_dir,
)
from osad_lib.experiments import GridItem
from osad_lib.experiments.devnet import (
    devnet_config,
    devnet_deviations,
    make_dataset_split,
    run_devnet,
    table_shots,
)
from osad_lib.metrics import aupr_normal, image_aupr, image_auroc
from osad_lib.methods.anoonly.heads import (
    CODE_BEHAVIOUR,
    DEFAULT_NOT_PAPER,
    HEAD_DEFAULTS,
    HEADS,
    SSADConfig,
    TrainedHead,
    train_head,
)
from osad_lib.paper.means import subset_means
from osad_lib.profiles import NotebookConfig
from osad_lib.results import Experiment
from osad_lib.settings import apply_overrides
from osad_lib.validate import ConfigError, choose
from osad_lib.viz import set_theme

NOTEBOOK = "04_anoonly"
PAPER = "anoonly"
#: Where each measured metric appears in the paper.
TABLE_OF_METRIC = {"auroc": "table1", "aupr": "table3", "aupr_normal": "table4"}
#: ``setting`` of a result row for each (organisation, split); only the paper's own —
#: clean organisation, paper split — joins the paper's tables.
SETTINGS: dict[tuple[str, str], str] = {
    ("clean", "paper"): "semi_supervised",
    ("clean", "no_leak"): "semi_supervised_no_leak",
    ("contaminated", "paper"): "label_noise",
    ("contaminated", "no_leak"): "label_noise_no_leak",
}
#: (organisation, split) of each ``setting`` value.
SETTING_AXES: dict[str, tuple[str, str]] = {v: k for k, v in SETTINGS.items()}
#: Readable name of each data setting (fidelity table rows, figure panels).
SETTING_LABELS: dict[str, str] = {
    "semi_supervised": "default", "semi_supervised_no_leak": "split=no_leak",
    "label_noise": "organisation=contaminated", "label_noise_no_leak": "organisation=contaminated, split=no_leak",
}
#: Column titles of the two splits in the comparison tables (clean organisation).
SPLIT_TITLES = {"paper": "paper split", "no_leak": "no-leak split"}
#: ``table`` of the beyond-the-paper image DevNet ± AnoOnly experiments.
IMAGE_TABLE = "image_devnet"
#: Open-set settings of the image experiments (DevNet notebook protocols).
IMAGE_SETTINGS = ("general", "hard")


def _same(heads: Sequence[str], options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {h: dict(options) for h in heads}


#: Fidelity factors: name → {head: SSADConfig changes}. Each reruns the MVTec column with one
#: departure from the defaults (the paper's method); ``code`` = every official-code behaviour of
#: the head at once (:data:`~osad_lib.methods.anoonly.heads.CODE_BEHAVIOUR`).
FACTORS: dict[str, dict[str, dict[str, Any]]] = {
    "code": {h: dict(o) for h, o in CODE_BEHAVIOUR.items()},
    "loss_form=code": _same(("devnet",), {"loss_form": "code"}),
    "loss_form=paper": _same(("feawad",), {"loss_form": "paper"}),
    "l2=0": _same(("devnet",), {"l2": 0.0}),
    "select_best_loss=off": _same(("devnet", "feawad"), {"select_best_loss": False}),
    "keras=off": _same(("devnet", "feawad"), {"keras": False}),
    "balanced=off": _same(("devnet",), {"balanced": False}),
    "base_bn=on": _same(("devnet", "feawad", "prenet"), {"base_bn": True}),
    "fixed_batches=on": _same(("feawad",), {"fixed_batches": True}),
    "epochs=50": _same(("prenet",), {"epochs": 50}),
    "distinct_anomaly_pairs=off": _same(("prenet",), {"distinct_anomaly_pairs": False}),
    "score_refs=shared": _same(("prenet",), {"score_refs": "shared"}),
    "lr=1e-4": _same(("deepsad",), {"lr": 1e-4}),
    "norm=bn_no_affine": _same(("deepsad",), {"norm": "bn_no_affine"}),
    "pretrain_epochs=100": _same(("deepsad",), {"pretrain_epochs": 100}),
    "center=batch": _same(("deepsad",), {"center": "batch"}),
}

#: Table 2 of the paper: variant label (without "anoonly,") → Deep SAD ``norm``.
TABLE2_NORMS = {"norm=none": "none", "norm=ln": "ln", "norm=bn_no_affine": "bn_no_affine", "": "bn",
                "norm=bn_dagger": "bn_dagger"}
#: The swept values of the paper's ablation figures (§4.4–4.6, C.2).
ABLATION_VALUES: dict[str, tuple[Any, ...]] = {
    "fig5": (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0),              # γ_la
    "fig6": (0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0),                # γ_n
    "fig7": (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6),           # λ_n (0 = AnoOnly itself)
    "fig8": ORGANISATIONS,                                        # clean vs contaminated (label noise)
    "fig9": (1, 2, 4, 8, 16, 32, 64, 128),                        # batch size
}


@dataclass(frozen=True)
class AnoOnlyConfig:
    """What the notebook runs; profiles override fields through ``METHOD_OVERRIDES["anoonly"]``.

    ``groups``: dataset groups (files present are used). ``files``: explicit file stems instead.
    ``max_files``: per group (0 = all). ``settings``: the data settings of the Tables 1/3/4 grid
    (values of :data:`SETTINGS`; default: the paper's, the no-leak split and the contaminated
    organisation; the no-leak split runs only on files the paper's split resamples).
    ``schedule``: fraction of each head's epochs (also the AE pre-training), 1.0 = the paper's
    schedule. ``head_options``: SSADConfig overrides per head. ``factors``: fidelity factors to
    run (names of :data:`FACTORS`), ``factor_group`` where, ``factor_seeds`` with how many seeds
    (0 = all) and ``factor_heads`` on which heads (each factor runs on those of its heads that are
    listed). ``max_seeds``: run only the first that many of the configured seeds (0 = all; the
    demo profile uses 1). ``threads``: torch and BLAS threads while a head trains or t-SNE runs
    (these small problems run fastest single-threaded; the previous counts are restored).
    ``adbench_dir``: the ADBench folder searched before the embedded copy (default:
    ``$OSAD_ADBENCH``, else ``<data_root>/adbench``; :func:`osad_lib.data.tabular.user_adbench_dir`).

    Beyond the paper, image DevNet ± AnoOnly: ``image_datasets`` (registry names),
    ``image_settings`` (general/hard), ``image_max_seen_classes`` (hard-setting seen classes per
    dataset, 0 = all) and ``image_seeds`` (the first that many seeds, 0 = all); the DevNet
    settings are ``METHOD_OVERRIDES["devnet"]`` of the profile (:func:`image_devnet_config`).
    """

    groups: tuple[str, ...] = tuple(GROUPS)
    files: tuple[str, ...] = ()
    max_files: int = 0
    heads: tuple[str, ...] = HEADS
    settings: tuple[str, ...] = ("semi_supervised", "semi_supervised_no_leak", "label_noise")
    la: float = 0.1
    schedule: float = 1.0
    head_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    factors: tuple[str, ...] = tuple(FACTORS)
    factor_group: str = "mvtecad"
    factor_seeds: int = 0
    factor_heads: tuple[str, ...] = HEADS
    max_seeds: int = 0
    threads: int | None = 1
    adbench_dir: str = ""
    tsne_file: str = "MVTec-AD_bottle"
    image_datasets: tuple[str, ...] = ("elpv",)
    image_settings: tuple[str, ...] = IMAGE_SETTINGS
    image_max_seen_classes: int = 0
    image_seeds: int = 0

    def __post_init__(self) -> None:
        for s in self.image_settings:
            choose("image setting", s, IMAGE_SETTINGS)
        for g in self.groups:
            choose("group", g, GROUPS)
        for h in (*self.heads, *self.factor_heads):
            choose("head", h, HEADS)
        for s in self.settings:
            choose("data setting", s, SETTING_AXES)
        for f in self.factors:
            choose("factor", f, FACTORS)
        if not 0 < self.schedule <= 1:
            raise ConfigError(f"schedule must lie in (0, 1], got {self.schedule}")


def anoonly_config(cfg: NotebookConfig, **changes: Any) -> AnoOnlyConfig:
    """:class:`AnoOnlyConfig` ← ``METHOD_OVERRIDES["anoonly"][profile]`` ← ``changes``."""
    settings = {**cfg.profile.method("anoonly"), **changes}
    settings["adbench_dir"] = user_adbench_dir(settings.get("adbench_dir"), cfg.data_root)
    return apply_overrides(AnoOnlyConfig, settings, "AnoOnly")


def head_options(ac: AnoOnlyConfig, head: str, **changes: Any) -> dict[str, Any]:
    """SSADConfig overrides of ``head``: the schedule fraction of the default epochs (and AE
    pre-training), the profile's ``head_options`` (absolute values), then ``changes`` (a factor's
    or an ablation's; their epochs are scaled by the schedule too)."""
    opts: dict[str, Any] = {}
    scaled = ("epochs", "pretrain_epochs")
    if ac.schedule < 1:
        d = HEAD_DEFAULTS[head]
        opts.update({k: _scaled(d[k], ac.schedule) for k in scaled if d.get(k)})
    opts.update(ac.head_options.get(head, {}))
    opts.update({k: _scaled(v, ac.schedule) if k in scaled and ac.schedule < 1 else v for k, v in changes.items()})
    return opts


def paper_deviations(config: SSADConfig, schedule: float = 1.0) -> list[str]:
    """How ``config`` departs from the paper's method (appendix B), one ``name=value (paper: …)``
    part per field; ``, official code`` marks the official code's own value
    (:data:`~osad_lib.methods.anoonly.heads.CODE_BEHAVIOUR`), and a default that departs from the paper's
    text says why (:data:`~osad_lib.methods.anoonly.heads.DEFAULT_NOT_PAPER`). ``base_bn`` is left out for
    AnoOnly heads (they have the BN either way); epochs shortened by ``schedule`` are one
    ``schedule`` part."""
    return list(_paper_deviations(config, schedule))


@functools.lru_cache(maxsize=4096)
def _paper_deviations(config: SSADConfig, schedule: float) -> tuple[str, ...]:
    """:func:`paper_deviations`, once per distinct (config, schedule): a paper grid lists ~10^5 items."""
    default = SSADConfig(config.head, anomaly_only=config.anomaly_only).resolved()
    code = CODE_BEHAVIOUR.get(config.head, {})
    mine = config.resolved()
    out = []
    if schedule < 1:
        out.append(f"schedule x{schedule:g} of the paper's epochs")
    for f in dataclasses.fields(SSADConfig):
        value = getattr(mine, f.name)
        text_value, why = DEFAULT_NOT_PAPER.get((config.head, f.name), (getattr(default, f.name), ""))
        if value == text_value or (f.name == "base_bn" and mine.anomaly_only):
            continue
        if schedule < 1 and f.name in ("epochs", "pretrain_epochs") and _scaled(text_value, schedule) == value:
            continue
        note = ", official code" if f.name in code and code[f.name] == value else ""
        note += f", our default: {why}" if why and value == getattr(default, f.name) else ""
        out.append(f"{f.name}={value} (paper: {text_value}{note})")
    return tuple(out)


def _scaled(epochs: int | None, schedule: float) -> int | None:
    """``epochs`` × ``schedule``, at least 1 (0 and None stay as they are)."""
    return max(1, round(epochs * schedule)) if epochs else epochs


# --------------------------------------------------------------------------------------------
# grid


def selected_stems(cfg: NotebookConfig, ac: AnoOnlyConfig | None = None) -> list[str]:
    """File stems the notebook runs: the groups' files that are present (embedded or in the user's
    ADBench folder, :func:`~osad_lib.data.tabular.adbench_file`), or ``files`` when given."""
    ac = ac or anoonly_config(cfg)
    if ac.files:
        for stem in ac.files:
            group_of(stem)
        return list(ac.files)
    stems = []
    for g in ac.groups:
        group = GROUPS[g]
        present = [s for s in group.stems if adbench_file(s, ac.adbench_dir) is not None]
        stems += present[:ac.max_files] if ac.max_files else present
    return stems


def variant_label(anomaly_only: bool, extra: str = "") -> str:
    """``""`` / ``"anoonly"``, with an ablation or factor label appended (``"anoonly,norm=ln"``)."""
    return ",".join(p for p in ("anoonly" if anomaly_only else "", extra) if p)


def make_item(
    cfg: NotebookConfig,
    stem: str,
    head: str,
    anomaly_only: bool,
    seed: int,
    organisation: str = "clean",
    split: str = "paper",
    table: str = "table1",
    label: str = "",
    data_options: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    ac: AnoOnlyConfig | None = None,
) -> GridItem:
    """One experiment: ``head`` (± AnoOnly) on file ``stem`` under ``organisation`` × ``split`` and ``seed``.

    ``data_options`` go to :func:`~osad_lib.data.tabular.adbench_split` (``la`` defaults to
    the config's), ``options`` to :class:`~osad_lib.methods.anoonly.heads.SSADConfig` on top of the
    profile's :func:`head_options`; ``label`` names an ablation/factor in ``variant``.
    """
    ac = ac or anoonly_config(cfg)
    group = group_of(stem)
    organisation = choose("organisation", organisation, ORGANISATIONS)
    split = choose("split", split, SPLITS)
    data = {"la": ac.la, **dict(data_options or {})}
    opts = head_options(ac, head, **dict(options or {}))
    config = SSADConfig(head, anomaly_only=anomaly_only, **opts)
    deviations = []
    if split == "no_leak":
        deviations.append("split=no_leak: rows split before resampling (paper: resampled, then split)")
    if organisation == "contaminated":
        deviations.append("organisation=contaminated: unlabelled training anomalies kept as label 0 "
                          "(paper Tables 1/3/4: dropped; Fig. 8: label noise)")
    deviations += [f"{k}={v}" for k, v in data.items() if k != "la" or v != 0.1]
    deviations += paper_deviations(config, ac.schedule)
    experiment = Experiment(
        notebook=NOTEBOOK, paper=PAPER, table=table, dataset=group.name, subset=stem,
        setting=SETTINGS[(organisation, split)], method=head,
        variant=variant_label(anomaly_only, label), backbone=group.backbone, seed=seed,
        profile=cfg.profile.name, deviations="; ".join(deviations), device=cfg.device_label,
        extra_key={"organisation": organisation, "split": split, "anomaly_only": anomaly_only, "data": data,
                   "options": opts, "adbench_dir": ac.adbench_dir},
    )
    return GridItem(experiment, *_cost(config, group.name))


def _cost(config: SSADConfig, group: str) -> tuple[int, int]:
    """(rows through training, rows scored): epochs × steps × batch (+ AE pre-training)."""
    c = config.resolved()
    n_train, n_test = (700, 300) if group == "mvtecad" or group == "20news" else (3500, 1500)
    steps = c.steps_per_epoch or max(n_train // c.batch_size, 1)
    rows = c.epochs * steps * c.batch_size * (2 if c.head == "prenet" else 1)
    if c.pretrain_epochs:
        rows += c.pretrain_epochs * steps * c.batch_size
    return rows, n_test * (2 * c.n_score_refs if c.head == "prenet" else 1)


def settings_for(stem: str, ac: AnoOnlyConfig) -> tuple[str, ...]:
    """The data settings worth running on ``stem``: those with the no-leak split only where the
    paper's split resamples (fewer than 1,000 or more than 10,000 rows); otherwise both splits
    are the same.

    Row counts come from the file when present, else from the group (MVTec AD and 20news files
    are all small)."""
    group = group_of(stem)
    file = adbench_file(stem, ac.adbench_dir)
    if file is not None:
        with np.load(file) as data:
            n = len(data["y"])
        resampled = n < 1000 or n > 10000
    else:
        resampled = group.name in ("mvtecad", "20news")
    return tuple(s for s in ac.settings if SETTING_AXES[s][1] == "paper" or resampled)


def run_seeds(cfg: NotebookConfig, ac: AnoOnlyConfig) -> tuple[int, ...]:
    """The seeds of the grid: the configured ones, the first ``ac.max_seeds`` of them when set."""
    return cfg.seeds[:ac.max_seeds] if ac.max_seeds else cfg.seeds


def grid(cfg: NotebookConfig) -> list[GridItem]:
    """Tables 1/3/4 (every file × data setting × seed × head × variant), the fidelity factors and
    the beyond-the-paper image DevNet ± AnoOnly runs."""
    ac = anoonly_config(cfg)
    items = [make_item(cfg, stem, head, ao, seed, *SETTING_AXES[setting], ac=ac)
             for stem in selected_stems(cfg, ac) for setting in settings_for(stem, ac)
             for seed in run_seeds(cfg, ac) for head in ac.heads for ao in (False, True)]
    return items + factor_grid(cfg, ac) + image_grid(cfg, ac)


def factor_grid(cfg: NotebookConfig, ac: AnoOnlyConfig | None = None) -> list[GridItem]:
    """The fidelity experiments: each factor of ``ac.factors`` on ``ac.factor_group``, clean
    organisation, paper split."""
    ac = ac or anoonly_config(cfg)
    stems = [s for s in selected_stems(cfg, ac) if group_of(s).name == ac.factor_group]
    seeds = run_seeds(cfg, ac)[:ac.factor_seeds] if ac.factor_seeds else run_seeds(cfg, ac)
    return [make_item(cfg, stem, head, ao, seed, table="fidelity", label=name, options=options, ac=ac)
            for name in ac.factors for head, options in FACTORS[name].items()
            if head in ac.heads and head in ac.factor_heads
            for stem in stems for seed in seeds for ao in (False, True)]


def image_devnet_config(cfg: NotebookConfig, anomaly_only: bool) -> Any:
    """The image DevNet of notebook ``01_devnet`` under this profile (:func:`devnet_config`), with
    or without AnoOnly (:class:`~osad_lib.methods.devnet.model.DevNetConfig` ``anomaly_only``)."""
    return devnet_config(cfg, anomaly_only=anomaly_only)


def image_grid(cfg: NotebookConfig, ac: AnoOnlyConfig | None = None) -> list[GridItem]:
    """Beyond the paper: image DevNet with and without AnoOnly on ``ac.image_datasets``, general
    setting and hard setting (one run per seen class), the DevNet notebook's shot count, per seed.

    Base and AnoOnly runs of a seed share the split (same manifest), the DevNet settings and
    the seed; only ``anomaly_only`` differs.
    """
    ac = ac or anoonly_config(cfg)
    seeds = cfg.seeds[:ac.image_seeds] if ac.image_seeds else cfg.seeds
    shots = table_shots(cfg)
    items = []
    for name in dataset_names(ac.image_datasets):
        info = subset_info(name)
        seen = info.hard_seen_classes[:ac.image_max_seen_classes] if ac.image_max_seen_classes else info.hard_seen_classes
        runs = [(s, c) for s in ac.image_settings for c in ((None,) if s == "general" else seen)]
        for setting, seen_class in runs:
            for seed in seeds:
                split = _image_split(cfg, name, setting, shots, seed, seen_class)
                for ao in (False, True):
                    config = image_devnet_config(cfg, ao)
                    note = "beyond the paper: AnoOnly on the image DevNet"
                    experiment = Experiment(
                        notebook=NOTEBOOK, paper=PAPER, table=IMAGE_TABLE, dataset=info.dataset,
                        subset=hard_subset_label(name, seen_class) if seen_class else info.subset, setting=setting,
                        n_shots=shots, method="devnet", variant=variant_label(ao), backbone=config.backbone,
                        seed=seed, profile=cfg.profile.name, device=cfg.device_label,
                        manifest_id=split.manifest_id if split is not None else "",
                        deviations=experiments.with_split_note(
                            "; ".join(p for p in (note, devnet_deviations(cfg, info.dataset, config)) if p), split),
                        extra_key={"name": name, "seen_class": seen_class or ""},
                    )
                    train = config.epochs * config.steps_per_epoch * config.batch_size * config.n_scales
                    items.append(GridItem(experiment, train, 0))
    return items


def _image_split(cfg: NotebookConfig, name: str, setting: str, n_shots: int, seed: int,
                 seen_class: str | None) -> Split | None:
    """The split of an image run; None when the dataset is not present, which leaves the run
    without a ``manifest_id`` and so skips it (:func:`osad_lib.experiments.runnable`)."""
    try:
        return make_dataset_split(cfg, name, setting, n_shots, seed, seen_class)[0]
    except DataNotFoundError:
        return None


def runnable(items: Sequence[GridItem]) -> tuple[list[GridItem], list[str]]:
    """The items whose data are at hand and the image datasets that are missing:
    :func:`osad_lib.experiments.runnable`, the rule of every notebook (ADBench items always run)."""
    return experiments.runnable(items)


def run_image_one(cfg: NotebookConfig, item: GridItem) -> dict[str, float]:
    """Train and evaluate one :func:`image_grid` item (image AUROC and AUCPR, no localization)."""
    e = item.experiment
    split, root = make_dataset_split(cfg, e.extra_key["name"], e.setting, e.n_shots, e.seed,
                                     e.extra_key["seen_class"] or None)
    with limited_threads(anoonly_config(cfg).threads):
        metrics = run_devnet(cfg, split, root, image_devnet_config(cfg, e.variant == "anoonly"), localize=False)
    return {k: metrics[k] for k in ("auroc", "aupr")}


def image_pairs(df: pd.DataFrame, metric: str = "auroc") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Beyond the paper: per dataset, setting, subset and seed, image DevNet without and with
    AnoOnly and the paired difference (with − without); and per dataset/setting/subset the mean
    difference, its std over seeds and how many seeds improved."""
    rows = df[(df["paper"] == PAPER) & (df["table"] == IMAGE_TABLE) & (df["metric"] == metric) & (df["status"] == "ok")]
    if rows.empty:
        return pd.DataFrame(), pd.DataFrame()
    keys = ["dataset", "setting", "subset", "seed"]
    wide = rows.pivot_table(index=keys, columns="variant", values="value", aggfunc="mean").reset_index()
    wide.columns.name = None
    wide = wide.rename(columns={"": "DevNet", "anoonly": "DevNet + AnoOnly"}).dropna(subset=["DevNet", "DevNet + AnoOnly"])
    wide["with − without"] = wide["DevNet + AnoOnly"] - wide["DevNet"]
    summary = (wide.groupby(keys[:-1], sort=False)["with − without"]
               .agg(mean="mean", std="std", seeds="count", improved=lambda d: int((d > 0).sum())).reset_index())
    return wide.assign(metric=metric), summary.assign(metric=metric)


def ablation_grid(cfg: NotebookConfig, element: str, stems: Sequence[str] | None = None,
                  heads: Sequence[str] | None = None, split: str = "paper") -> list[GridItem]:
    """Experiments of one ablation of the paper for the ablations notebook (clean organisation,
    as the paper's §4.3–4.5, unless the element is Fig. 8).

    ``element``: ``table2`` (Deep SAD ± AnoOnly with each normalisation of :data:`TABLE2_NORMS`;
    variant labels as the paper table), ``fig5`` (γ_la), ``fig6`` (γ_n, Deep SAD), ``fig7``
    (λ_n, Deep SAD), ``fig8`` (both organisations: clean and contaminated = label noise; the
    organisation is the row's ``setting``), ``fig9`` (batch size, Deep SAD + AnoOnly); values in
    :data:`ABLATION_VALUES`. ``stems`` default to the notebook's files, ``heads`` to the paper's
    for that element.
    """
    element = choose("ablation", element, ("table2", *ABLATION_VALUES))
    ac = anoonly_config(cfg)
    stems = list(stems) if stems is not None else selected_stems(cfg, ac)
    items: list[GridItem] = []

    def add(head: str, ao: bool, label: str, data: dict | None = None, opts: dict | None = None,
            organisation: str = "clean") -> None:
        items.extend(make_item(cfg, s, head, ao, seed, organisation, split, table=element, label=label,
                               data_options=data, options=opts, ac=ac) for s in stems for seed in run_seeds(cfg, ac))

    if element == "table2":
        for label, norm in TABLE2_NORMS.items():
            for ao in (False, True):
                add("deepsad", ao, label, opts={"norm": norm})
    elif element == "fig5":
        for head in heads or HEADS:
            for la in ABLATION_VALUES["fig5"]:
                for ao in (False, True):
                    add(head, ao, f"la={la}", data={"la": la})
    elif element == "fig6":
        for ratio in ABLATION_VALUES["fig6"]:
            for ao in (False, True):
                add("deepsad", ao, f"normal_ratio={ratio}", data={"normal_ratio": ratio})
    elif element == "fig7":
        for weight in ABLATION_VALUES["fig7"]:
            add("deepsad", False, f"normal_weight={weight:g}", opts={"normal_weight": weight})
        add("deepsad", True, "normal_weight=0")
    elif element == "fig8":
        for head in heads or HEADS:
            for organisation in ABLATION_VALUES["fig8"]:
                for ao in (False, True):
                    add(head, ao, "", organisation=organisation)
    else:
        for b in ABLATION_VALUES["fig9"]:
            add("deepsad", True, f"batch_size={b}", opts={"batch_size": b})
    return items


# --------------------------------------------------------------------------------------------
# running


@contextlib.contextmanager
def limited_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch and BLAS/OpenMP threads (None: unchanged), then restore them,
    with subnormal floats flushed to zero (restored to torch's default, off, afterwards).

    The heads are small MLPs and the t-SNE has 300–3,000 points: on a shared CPU, extra threads
    only add contention (a 300-point t-SNE took 100 s with the default pools, 5 s with one).
    Weight decay drives the weights of always-zero embedding features into subnormal range,
    which made PReNet 2.6× slower on MVTec; flushing them changes values below 1e-38 only.
    """
    from threadpoolctl import threadpool_limits

    if not n:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    torch.set_flush_denormal(True)
    try:
        with threadpool_limits(n):
            yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(previous)


def load_split(experiment: Experiment) -> TabularSplit:
    """The data split of ``experiment`` (file, organisation, split, seed and data options from its key)."""
    extra = experiment.extra_key
    X, y = load_npz(_file(experiment.subset, extra.get("adbench_dir", "")))
    return adbench_split(X, y, experiment.seed, split=extra["split"], organisation=extra["organisation"],
                         **extra["data"])


def _file(stem: str, adbench_dir: str) -> Path:
    """The ADBench file of ``stem``; a one-line error naming where it was looked for when absent."""
    file = adbench_file(stem, adbench_dir)
    if file is None:
        roots = ", ".join(str(r) for r in adbench_roots(adbench_dir))
        raise ConfigError(f"ADBench file {stem}.npz not found in {roots}; set {ADBENCH_ENV} to your ADBench "
                          "datasets folder or fetch it with osad_lib.data.tabular.download_adbench")
    return file


def ssad_config(experiment: Experiment) -> SSADConfig:
    """The head configuration of ``experiment``."""
    return SSADConfig(experiment.method, anomaly_only=experiment.extra_key["anomaly_only"],
                      **experiment.extra_key["options"])


def ssad_metrics(y_test: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """AUROC, AUCPR (anomalies), AUCPR w.r.t. normals as coded (un-negated scores; ``docs/official_code/anoonly.md``), and
    ``aupr_normal_neg``: AP of the normals ranked by −score (what "precision on normals" means)."""
    return {"auroc": image_auroc(y_test, scores), "aupr": image_aupr(y_test, scores),
            "aupr_normal": aupr_normal(y_test, scores), "aupr_normal_neg": image_aupr(1 - y_test, -scores)}


def train_experiment(cfg: NotebookConfig, experiment: Experiment) -> tuple[TabularSplit, TrainedHead]:
    """Train the head of ``experiment`` on its split (FEAWAD's AE pre-training is cached and shared)."""
    split = load_split(experiment)
    ac = anoonly_config(cfg)
    with limited_threads(ac.threads):
        trained = train_head(split, ssad_config(experiment), experiment.seed,
                             pretrain_cache=paths.cache_dir() / "anoonly_feawad_ae")
    return split, trained


def run_one(cfg: NotebookConfig, item: GridItem) -> dict[str, float]:
    """Train and evaluate one grid item; returns :func:`ssad_metrics` on the test split (image
    DevNet items of :func:`image_grid`: :func:`run_image_one`)."""
    if item.experiment.table == IMAGE_TABLE:
        return run_image_one(cfg, item)
    split, trained = train_experiment(cfg, item.experiment)
    return ssad_metrics(split.y_test, trained.score(split.X_test))


# --------------------------------------------------------------------------------------------
# tables


def measured_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Result rows with ``table`` set from the metric (auroc → table1, aupr → table3, aupr_normal → table4)."""
    rows = df[(df["paper"] == PAPER) & (df["table"] == "table1") & df["metric"].isin(list(TABLE_OF_METRIC))].copy()
    rows["table"] = rows["metric"].map(TABLE_OF_METRIC)
    return rows


def group_means(df: pd.DataFrame) -> pd.DataFrame:
    """Per seed, the mean over each group's files (``subset=""``) by the one rule of
    :mod:`osad_lib.paper.means` (``mean over k/n subsets`` in ``deviations`` when files are missing;
    a seed with fewer files than the best-covered seed is left out); ``n_files`` counts the files
    averaged."""
    return subset_means(df).drop(columns="n_expected").rename(columns={"n_parts": "n_files"})


#: The columns of :func:`comparison`, also of an empty one (no group measured).
COMPARISON_COLUMNS = ("dataset", "method", "variant", "paper",
                      *(c for split, title in SPLIT_TITLES.items()
                        for c in (title, f"Δ {title}", f"measured_{split}_split")),
                      "n_seeds", "files")


#: The columns of :func:`gains`, also of an empty one.
GAIN_COLUMNS = ("dataset", "method", "paper gain", *(f"{title} gain" for title in SPLIT_TITLES.values()),
                "direction as the paper")


def comparison(df: pd.DataFrame, table_id: str) -> pd.DataFrame:
    """Paper vs measured for ``table_id`` (``anoonly_table1/3/4``): the clean organisation, the
    paper's split (the paper's setting) beside the no-leak split.

    Columns: dataset, method, variant, paper, ``paper split`` (mean ± std over seeds),
    ``Δ paper split``, ``no-leak split``, ``Δ no-leak split``, ``measured_paper_split`` /
    ``measured_no_leak_split`` (the means as numbers), n_seeds, files. Only groups that were
    measured are kept; rows of the contaminated organisation never enter (they are Fig. 8's label
    noise, not Table 1). A group needs at least two files (:mod:`osad_lib.paper.means`); with none
    measured the table is empty, with these columns.
    """
    rows = group_means(measured_rows(df))
    if rows.empty:
        return pd.DataFrame(columns=list(COMPARISON_COLUMNS))
    parts = []
    for split in SPLITS:
        mine = rows[rows["setting"] == SETTINGS[("clean", split)]].assign(setting=SETTINGS[("clean", "paper")])
        if mine.empty:
            continue
        cmp = paper.compare(mine, table_id)
        cmp = cmp[cmp["n_seeds"] > 0]
        parts.append(cmp.assign(split=split))
    if not parts:
        return pd.DataFrame(columns=list(COMPARISON_COLUMNS))
    both = pd.concat(parts, ignore_index=True)
    files = rows.groupby(["dataset", "method", "variant"])["n_files"].max()
    out = []
    for (dataset, method, variant), g in both.groupby(["dataset", "method", "variant"], sort=False):
        rec = {"dataset": dataset, "method": method, "variant": variant,
               "paper": g["paper_mean"].iloc[0]}
        for split, title in SPLIT_TITLES.items():
            p = g[g["split"] == split]
            rec[title] = paper.format_mean_std(p["measured_mean"].iloc[0], p["measured_std"].iloc[0]) if len(p) else "—"
            rec[f"Δ {title}"] = float(p["delta"].iloc[0]) if len(p) else np.nan
            rec[f"measured_{split}_split"] = float(p["measured_mean"].iloc[0]) if len(p) else np.nan
        rec["n_seeds"] = int(g["n_seeds"].max())
        n = int(files.get((dataset, method, variant), 0))
        rec["files"] = f"{n}/{len(GROUPS[dataset].stems)}" if dataset in GROUPS else str(n)
        out.append(rec)
    return pd.DataFrame(out, columns=list(COMPARISON_COLUMNS))


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`comparison` for reading: the numeric ``measured_*`` columns dropped, deltas rounded."""
    shown = table.drop(columns=[c for c in table.columns if c.startswith("measured_")])
    return shown.round({c: 3 for c in shown.columns if c.startswith("Δ")})


def paired_gains(df: pd.DataFrame, metric: str = "auroc", setting: str = "semi_supervised") -> pd.DataFrame:
    """AnoOnly − base per group and head under one data ``setting``, paired per seed on the group
    means: mean and std (ddof 1) of the per-seed differences, seeds, seeds where AnoOnly is ahead.

    Only the main grid's rows (``table="table1"``) count."""
    rows = df[(df["paper"] == PAPER) & (df["table"] == "table1") & (df["metric"] == metric)
              & (df["setting"] == setting)]
    means = group_means(rows)
    if means.empty:
        return pd.DataFrame(columns=["dataset", "method", "gain_mean", "gain_std", "n_seeds", "improved"])
    wide = means.pivot_table(index=["dataset", "method", "seed"], columns="variant", values="value").reset_index()
    if "" not in wide or "anoonly" not in wide:
        return pd.DataFrame(columns=["dataset", "method", "gain_mean", "gain_std", "n_seeds", "improved"])
    wide["gain"] = wide["anoonly"] - wide[""]
    wide = wide.dropna(subset=["gain"])
    return (wide.groupby(["dataset", "method"], sort=False)["gain"]
            .agg(gain_mean="mean", gain_std="std", n_seeds="count", improved=lambda d: int((d > 0).sum()))
            .reset_index())


def gains(table: pd.DataFrame) -> pd.DataFrame:
    """AnoOnly − base per group and head from a :func:`comparison` table (difference of the seed
    means, each split) beside the paper's gain; ``direction as the paper`` on the paper's split."""
    recs = []
    for (dataset, method), g in table.groupby(["dataset", "method"], sort=False):
        base, ao = g[g["variant"] == ""], g[g["variant"] == "anoonly"]
        if base.empty or ao.empty:
            continue
        rec = {"dataset": dataset, "method": method, "paper gain": ao["paper"].iloc[0] - base["paper"].iloc[0]}
        for split, title in SPLIT_TITLES.items():
            rec[f"{title} gain"] = ao[f"measured_{split}_split"].iloc[0] - base[f"measured_{split}_split"].iloc[0]
        rec["direction as the paper"] = bool(np.sign(rec["paper split gain"]) == np.sign(rec["paper gain"]))
        recs.append(rec)
    return pd.DataFrame(recs, columns=list(GAIN_COLUMNS))


#: The issue's fidelity bands for the MVTec column, in AUROC/AUCPR points: Table 1 ±3, Table 3 ±4.
FIDELITY_BANDS = {"anoonly_table1": 3.0, "anoonly_table3": 4.0}


def fidelity_bands(tables: Mapping[str, pd.DataFrame], group: str = "mvtecad", split: str = "paper") -> pd.DataFrame:
    """Pass/fail of the measured ``group`` column against the paper within :data:`FIDELITY_BANDS`.

    ``tables``: ``{"anoonly_table1": comparison(df, "anoonly_table1"), "anoonly_table3": …}``.
    One row per table, head and variant (``level``: |measured − paper| ≤ band, in points) and one
    per table and head for the AnoOnly gain (``gain direction``: same sign as the paper's gain),
    on the clean organisation and ``split``. Meaningful at the paper schedule only (the
    demo/smoke profiles shorten training).
    """
    recs = []
    for table_id, table in tables.items():
        if table.empty:
            continue
        band = FIDELITY_BANDS[table_id]
        mine = table[table["dataset"] == group]
        for _, r in mine.iterrows():
            delta = 100 * (r[f"measured_{split}_split"] - r["paper"])
            recs.append({"table": table_id, "method": r["method"], "check": "level", "variant": r["variant"] or "base",
                         "paper": 100 * r["paper"], "measured": 100 * r[f"measured_{split}_split"], "Δ points": delta,
                         "band": f"±{band:g}", "pass": bool(abs(delta) <= band), "n_seeds": r["n_seeds"],
                         "files": r["files"]})
        for method, g in mine.groupby("method", sort=False):
            base, ao = g[g["variant"] == ""], g[g["variant"] == "anoonly"]
            if base.empty or ao.empty:
                continue
            paper_gain = 100 * (ao["paper"].iloc[0] - base["paper"].iloc[0])
            gain = 100 * (ao[f"measured_{split}_split"].iloc[0] - base[f"measured_{split}_split"].iloc[0])
            recs.append({"table": table_id, "method": method, "check": "gain direction", "variant": "anoonly − base",
                         "paper": paper_gain, "measured": gain, "Δ points": gain - paper_gain, "band": "same sign",
                         "pass": bool(np.sign(gain) == np.sign(paper_gain)), "n_seeds": ao["n_seeds"].iloc[0],
                         "files": ao["files"].iloc[0]})
    return pd.DataFrame(recs).round({"paper": 1, "measured": 1, "Δ points": 1})


def verdict(bands: pd.DataFrame, gains_by_seed: pd.DataFrame, schedule: float, group: str = "mvtecad") -> str:
    """The notebook's verdict on the ``group`` column, written from the measured numbers.

    ``bands``: :func:`fidelity_bands`; ``gains_by_seed``: :func:`paired_gains` of AUROC on the
    paper's setting. Names the rows within their band, the heads whose AnoOnly gain has the
    paper's sign and, with two or more seeds, the paired gain and its spread. At a shortened
    ``schedule`` it says that the numbers check the wiring, not the paper.
    """
    if bands.empty:
        return f"No {group} rows measured: no verdict."
    lines = []
    if schedule < 1:
        lines.append(f"Shortened schedule (x{schedule:g} of the paper's epochs): these numbers show the wiring "
                     "and the direction of each effect at this budget; they are not a fidelity verdict.")
    for table_id, title in (("anoonly_table1", "Table 1 (AUROC)"), ("anoonly_table3", "Table 3 (AUCPR)")):
        part = bands[bands["table"] == table_id]
        if part.empty:
            continue
        level = part[part["check"] == "level"]
        inside = level[level["pass"]]
        outside = level[~level["pass"]]
        band = f"±{FIDELITY_BANDS[table_id]:g}"
        files = ", ".join(sorted(set(level["files"].astype(str))))
        text = f"{title}, {files} files: {len(inside)}/{len(level)} rows within {band} points of the paper"
        if len(outside):
            text += " (outside: " + ", ".join(f"{m} {v} {d:+.1f}" for m, v, d in
                                              zip(outside["method"], outside["variant"], outside["Δ points"])) + ")"
        direction = part[part["check"] == "gain direction"]
        same = direction[direction["pass"]]["method"].tolist()
        other = direction[~direction["pass"]]["method"].tolist()
        text += f"; AnoOnly gain with the paper's sign: {', '.join(same) or 'none'}"
        if other:
            text += f"; opposite sign: {', '.join(other)}"
        lines.append(text + ".")
    gains_here = gains_by_seed[gains_by_seed["dataset"] == group] if len(gains_by_seed) else gains_by_seed
    multi = gains_here[gains_here["n_seeds"] >= 2] if len(gains_here) else gains_here
    if len(multi):
        lines.append("Paired AUROC gain over seeds (AnoOnly − base, mean ± std, seeds ahead): " + "; ".join(
            f"{r.method} {100 * r.gain_mean:+.1f} ± {100 * r.gain_std:.1f} ({r.improved}/{r.n_seeds})"
            for r in multi.itertuples()) + ".")
    elif len(gains_here):
        lines.append("One seed only: the gains above are single runs, without a spread.")
    return "\n".join(f"- {line}" for line in lines)


def normal_precision_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per group, data setting, head and variant: AUCPR w.r.t. normals as coded (un-negated scores,
    Table 4) beside ``aupr_normal_neg`` (normals ranked by −score); group means, mean over seeds."""
    rows = df[(df["paper"] == PAPER) & (df["table"] == "table1") & df["metric"].isin(["aupr_normal", "aupr_normal_neg"])]
    if rows.empty:
        return pd.DataFrame()
    means = group_means(rows)
    out = (means.groupby(["dataset", "setting", "method", "variant", "metric"], sort=False)["value"].mean()
           .unstack("metric").reset_index())
    out.columns.name = None
    out["setting"] = out["setting"].map(SETTING_LABELS)
    return out.rename(columns={"setting": "data", "aupr_normal": "as coded (Table 4)",
                               "aupr_normal_neg": "negated scores"})


def fidelity_table(df: pd.DataFrame, group: str = "mvtecad") -> pd.DataFrame:
    """What changes the number: per head and factor, base and AnoOnly AUROC (group mean ± std over
    seeds) and the AnoOnly gain (mean ± std over seeds of the paired difference). The first rows of
    each head are the data settings of the main grid (``default`` = clean organisation, paper
    split: the paper's), then each factor of :data:`FACTORS` (clean organisation, paper split)."""
    ok = df[(df["paper"] == PAPER) & (df["metric"] == "auroc") & (df["dataset"] == group)]
    main = ok[ok["table"] == "table1"].copy()
    main["factor"] = main["setting"].map(SETTING_LABELS)
    fac = ok[ok["table"] == "fidelity"].copy()
    fac["factor"] = fac["variant"].str.replace("anoonly,", "", regex=False)
    fac["variant"] = np.where(fac["variant"].str.startswith("anoonly"), "anoonly", "")
    both = pd.concat([main, fac], ignore_index=True)
    if both.empty:
        return pd.DataFrame()
    both["table"] = both["factor"]  # group the factors apart in group_means
    means = group_means(both).rename(columns={"table": "factor"})
    recs = []
    for (method, factor), g in means.groupby(["method", "factor"], sort=False):
        base = g[g["variant"] == ""].set_index("seed")["value"]
        ao = g[g["variant"] == "anoonly"].set_index("seed")["value"]
        gain = (ao - base).dropna()
        recs.append({"method": method, "factor": factor,
                     "base": paper.format_mean_std(base.mean(), base.std() if len(base) > 1 else None),
                     "anoonly": paper.format_mean_std(ao.mean(), ao.std() if len(ao) > 1 else None),
                     "gain": gain.mean() if len(gain) else np.nan,
                     "gain std": gain.std() if len(gain) > 1 else np.nan, "n_seeds": len(gain),
                     "files": int(g["n_files"].min())})
    out = pd.DataFrame(recs)
    out["_head"] = out["method"].map({m: i for i, m in enumerate(HEADS)})
    out["_rank"] = out["factor"].map({label: i for i, label in enumerate(SETTING_LABELS.values())}).fillna(len(SETTINGS))
    return out.sort_values(["_head", "_rank"], kind="stable").drop(columns=["_head", "_rank"]).reset_index(drop=True)


def leakage_table(cfg: NotebookConfig, seed: int | None = None) -> pd.DataFrame:
    """Per file: test rows with an identical training row under each split (clean organisation;
    the paper's split leaks)."""
    ac = anoonly_config(cfg)
    seed = cfg.seeds[0] if seed is None else seed
    recs = []
    for stem in selected_stems(cfg, ac):
        group = group_of(stem)
        X, y = load_npz(_file(stem, ac.adbench_dir))
        rec: dict[str, Any] = {"dataset": group.name, "file": stem, "rows": len(y)}
        for split, title in SPLIT_TITLES.items():
            made = adbench_split(X, y, seed, split=split, la=ac.la)
            leak = leakage(made)
            rec[f"{title}: test rows"] = len(made.y_test)
            rec[f"{title}: shared"] = leak["shared_rows"]
            rec[f"{title}: shared labelled"] = leak["shared_labeled"]
        recs.append(rec)
    return pd.DataFrame(recs)


# --------------------------------------------------------------------------------------------
# figures


def aupr_boxplot(df: pd.DataFrame) -> Any:
    """Fig. 4: AUCPR (anomalies) of every file, base vs AnoOnly per head, one panel per data setting.

    Each point of a box is one file's AUCPR averaged over seeds (the paper's boxes are over its
    ten dataset groups, single run).
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    set_theme()
    rows = df[(df["paper"] == PAPER) & (df["table"] == "table1") & (df["metric"] == "aupr") & (df["status"] == "ok")]
    per_file = rows.groupby(["setting", "method", "variant", "subset"], sort=False)["value"].mean().reset_index()
    per_file["AnoOnly"] = np.where(per_file["variant"] == "anoonly", "+AnoOnly", "base")
    settings = [s for s in SETTINGS.values() if (per_file["setting"] == s).any()]
    fig, axes = plt.subplots(1, max(len(settings), 1), figsize=(5.5 * max(len(settings), 1), 3.8), squeeze=False)
    for ax, setting in zip(axes[0], settings):
        data = per_file[per_file["setting"] == setting]
        sns.boxplot(data=data, x="method", y="value", hue="AnoOnly", order=[h for h in HEADS if h in set(data["method"])],
                    hue_order=["base", "+AnoOnly"], palette={"base": "#c7c7c7", "+AnoOnly": "#9467bd"}, ax=ax)
        organisation, split = SETTING_AXES[setting]
        ax.set_title(f"{organisation} organisation, {SPLIT_TITLES[split]} ({data['subset'].nunique()} files)")
        ax.set_xlabel("head")
        ax.set_ylabel("AUCPR w.r.t. anomalies")
        ax.set_ylim(0, 1)
    fig.suptitle("AnoOnly Fig. 4: AUCPR per file, heads with and without AnoOnly")
    fig.tight_layout()
    return fig


def score_tsne(cfg: NotebookConfig, stem: str | None = None, seed: int | None = None,
               head: str = "deepsad", organisation: str = "clean", split: str = "paper") -> Any:
    """Fig. 10 for one file: t-SNE of the test embeddings coloured by the anomaly score of the base
    head and of its AnoOnly twin (top), and t-SNE of each head's hidden features before its last
    layer (bottom); circles are normals, crosses anomalies. Scores are shown as ranks (0–1)."""
    import matplotlib.pyplot as plt
    from scipy.stats import rankdata
    from sklearn.manifold import TSNE

    set_theme()
    ac = anoonly_config(cfg)
    stem = stem or ac.tsne_file
    seed = cfg.seeds[0] if seed is None else seed
    fig, axes = plt.subplots(2, 2, figsize=(9, 8.5))
    panels = {}
    for col, ao in enumerate((False, True)):
        exp = make_item(cfg, stem, head, ao, seed, organisation, split, ac=ac).experiment
        data, trained = train_experiment(cfg, exp)
        scores = trained.score(data.X_test)
        panels[ao] = (data, rankdata(scores) / len(scores), trained.hidden(data.X_test))
    def tsne(x: np.ndarray) -> np.ndarray:
        with limited_threads(ac.threads):
            return TSNE(2, init="pca", perplexity=30, random_state=seed).fit_transform(x)

    embedded = tsne(panels[False][0].X_test)
    for col, ao in enumerate((False, True)):
        data, rank, hidden = panels[ao]
        h2 = tsne(hidden)
        for row, xy in enumerate((embedded, h2)):
            ax = axes[row, col]
            for label, marker in ((0, "o"), (1, "x")):
                sel = data.y_test == label
                im = ax.scatter(xy[sel, 0], xy[sel, 1], c=rank[sel], cmap="Purples", vmin=0, vmax=1, s=14,
                                marker=marker, linewidths=0.8 if marker == "x" else 0.2,
                                edgecolors="k" if marker == "o" else None, label="anomaly" if label else "normal")
            name = f"{head}{' + AnoOnly' if ao else ''}"
            ax.set_title(f"{name}: {'input embeddings' if row == 0 else 'hidden features'}")
            ax.set_xlabel("t-SNE 1")
            ax.set_ylabel("t-SNE 2")
    axes[0, 0].legend(loc="best", fontsize=7)
    fig.colorbar(im, ax=axes, shrink=0.6, label="anomaly-score rank")
    fig.suptitle(f"AnoOnly Fig. 10: {stem}, {organisation} organisation, {SPLIT_TITLES[split]}, seed {seed}")
    return fig
