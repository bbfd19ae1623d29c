"""The experiments of ``04_anoonly`` and of the AnoOnly ablations: ADBench files × data setting ×
seed × head × variant, the fidelity factors, and the image DevNet ± AnoOnly runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from osad_lib import experiments
from osad_lib.data.protocols import Split
from osad_lib.data.registry import (
    DataNotFoundError,
    dataset_names,
    hard_subset_label,
    subset_info,
)
from osad_lib.data.tabular import (
    GROUPS,
    ORGANISATIONS,
    SPLITS,
    adbench_file,
    group_of,
)
from osad_lib.experiments import GridItem
from osad_lib.experiments.anoonly.config import (
    ABLATION_VALUES, AnoOnlyConfig, FACTORS, IMAGE_TABLE, NOTEBOOK, PAPER, SETTINGS, SETTING_AXES, TABLE2_NORMS,
    anoonly_config, head_options, paper_deviations,
)
from osad_lib.experiments.devnet import (
    devnet_config,
    devnet_deviations,
    make_dataset_split,
    table_shots,
)
from osad_lib.methods.anoonly import (
    HEADS,
    SSADConfig,
)
from osad_lib.profiles import NotebookConfig
from osad_lib.results import Experiment
from osad_lib.validate import choose



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
    params: Mapping[str, Any] | None = None,
) -> GridItem:
    """One experiment: ``head`` (± AnoOnly) on file ``stem`` under ``organisation`` × ``split`` and ``seed``.

    ``data_options`` go to :func:`~osad_lib.data.tabular.adbench_split` (``la`` defaults to
    the config's), ``options`` to :class:`~osad_lib.methods.anoonly.config.SSADConfig` on top of the
    profile's :func:`head_options`; ``label`` names an ablation/factor in ``variant``, and
    ``params`` are what it stands for, stored beside ``anomaly_only`` in the row's ``params``.
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
        params={"anomaly_only": anomaly_only, **dict(params or {})},
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
    return [make_item(cfg, stem, head, ao, seed, table="fidelity", label=name, options=options, ac=ac,
                      params={"factor": name})
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
                        seed=seed, profile=cfg.profile.name, device=cfg.device_label, params={"anomaly_only": ao},
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
            organisation: str = "clean", swept: dict | None = None) -> None:
        items.extend(make_item(cfg, s, head, ao, seed, organisation, split, table=element, label=label,
                               data_options=data, options=opts, ac=ac, params=swept)
                     for s in stems for seed in run_seeds(cfg, ac))

    if element == "table2":
        for label, norm in TABLE2_NORMS.items():
            for ao in (False, True):
                add("deepsad", ao, label, opts={"norm": norm}, swept={"norm": norm})
    elif element == "fig5":
        for head in heads or HEADS:
            for la in ABLATION_VALUES["fig5"]:
                for ao in (False, True):
                    add(head, ao, f"la={la}", data={"la": la}, swept={"la": la})
    elif element == "fig6":
        for ratio in ABLATION_VALUES["fig6"]:
            for ao in (False, True):
                add("deepsad", ao, f"normal_ratio={ratio}", data={"normal_ratio": ratio}, swept={"normal_ratio": ratio})
    elif element == "fig7":
        for weight in ABLATION_VALUES["fig7"]:
            add("deepsad", False, f"normal_weight={weight:g}", opts={"normal_weight": weight},
                swept={"normal_weight": weight})
        add("deepsad", True, "normal_weight=0", swept={"normal_weight": 0.0})
    elif element == "fig8":
        for head in heads or HEADS:
            for organisation in ABLATION_VALUES["fig8"]:
                for ao in (False, True):
                    add(head, ao, "", organisation=organisation)
    else:
        for b in ABLATION_VALUES["fig9"]:
            add("deepsad", True, f"batch_size={b}", opts={"batch_size": b}, swept={"batch_size": b})
    return items
