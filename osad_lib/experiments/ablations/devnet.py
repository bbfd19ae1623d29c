"""Ablation studies of DevNet (Pang et al., "Explainable Deep Few-shot Anomaly Detection with
Deviation Networks", §6.8) for notebook ``06_ablations``.

* **Table 5** (§6.8.1) — Rep, DS, Patch-DS, MIL-DS (= DevNet) on ResNet-18, AlexNet + DS and
  ResNet-50 + DS: :data:`osad_lib.experiments.devnet.TABLE5_VARIANTS` on the general setting with
  ten labelled anomalies. A variant that cannot be built here is not run and the table says why
  on its paper rows: AlexNet and ResNet-50 without their ImageNet weights (none offline), and Rep
  (it learns the representation itself) when the profile freezes every backbone stage — unless
  the study's ``rep_frozen_stages`` unfreezes the last ones (its rows' ``deviations`` show it).
* **Fig. 6** (§6.8.1) — AUC-ROC w.r.t. the top-K ratio (text: K from 1 % to 20 %, 10 %
  recommended; Mastcam excluded).
* **Fig. 7** (§6.8.2) — AUC-ROC w.r.t. the number of labelled anomalies (5 to 40, test set
  unchanged: every shot count is drawn from the largest one's draw; all datasets but MVTec AD),
  DevNet beside Deep SAD, FLOS and MINNS.
* **Fig. 8** (§6.8.3) — AUC-ROC w.r.t. the contamination of the training normals (0 % to 20 %,
  ten labelled anomalies; contaminating anomalies are drawn from the test anomalies and leave the
  test set; ELPV, BrainMRI, HeadCT, Hyper-Kvasir), the same four methods.

The paper prints no numbers for Figs. 6–8; their tables show the measured curve and, at the
paper's default point (K = 10 %, ten anomalies, no contamination), the paper's Table 2 value of the
same method and dataset as reference. Settings per profile: ``METHOD_OVERRIDES["ablations"]
[profile]["options"]["devnet_<element>"]`` (keys in :data:`OPTION_KEYS`); defaults are the paper's.
DevNet itself runs with :func:`osad_lib.experiments.devnet.devnet_config` (the profile's DevNet
settings, so the demo's cached frozen-stem features are shared with notebook 01).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from osad_lib import paper as paper_tables
from osad_lib.data.mvtec import read_mvtec_layout
from osad_lib.data.protocols import Split, make_split
from osad_lib.data.registry import resolve, subset_info
from osad_lib.experiments import GridItem
from osad_lib.experiments import devnet as dv
from osad_lib.experiments.protocol import PaperElement
from osad_lib.experiments.ablations.base import (NOTEBOOK, beside_paper, measured_summary, present_datasets,
                                                 study_options, study_rows, study_seeds)
from osad_lib.paper.means import with_subset_means
from osad_lib.methods.devnet.model import DevNet, DevNetConfig
from osad_lib.profiles import NotebookConfig
from osad_lib.results import Experiment, variant_params
from osad_lib.validate import ConfigError, choose
from osad_lib.viz import METHOD_COLORS, paper_vs_measured_bars

PAPER = "devnet"
#: The paper's datasets per study (Table 5 has no Mastcam row; Fig. 6 excludes Mastcam, Fig. 7
#: MVTec AD; Fig. 8 uses the four datasets with enough anomalies for pollution).
PAPER_DATASETS: dict[str, tuple[str, ...]] = {
    "table5": ("mvtecad", "aitex", "sdd", "elpv", "optical", "brainmri", "headct", "hyperkvasir"),
    "fig6": ("mvtecad", "aitex", "sdd", "elpv", "optical", "brainmri", "headct", "hyperkvasir"),
    "fig7": ("aitex", "sdd", "elpv", "optical", "mastcam", "brainmri", "headct", "hyperkvasir"),
    "fig8": ("elpv", "brainmri", "headct", "hyperkvasir"),
}
#: Fig. 6's K values: the text names 1 %, 10 %, 15 % and 20 %; 5 % is this module's point between.
TOPK_RATIOS = (0.01, 0.05, 0.1, 0.15, 0.2)
#: Fig. 7's shot counts ("from 5 to 40"; the text names 10, 20 and 40).
FIG7_SHOTS = (5, 10, 20, 40)
#: Fig. 8's contamination rates ("from 0 % up to 20 %"; the text names 10 % and 20 %).
CONTAMINATION = (0.0, 0.05, 0.1, 0.15, 0.2)
#: Methods of Figs. 7 and 8 (DevNet and its three anomaly-informed contenders).
FIG_METHODS = ("devnet", "deepsad", "flos", "minns")
#: Option keys a profile may set per study (``datasets``, ``max_seeds`` everywhere).
OPTION_KEYS: dict[str, tuple[str, ...]] = {
    "table5": ("datasets", "max_seeds", "variants", "rep_frozen_stages"),
    "fig6": ("datasets", "max_seeds", "topk_ratios"),
    "fig7": ("datasets", "max_seeds", "n_shots", "methods"),
    "fig8": ("datasets", "max_seeds", "contamination", "methods"),
}
#: The swept quantity of each figure: (table column, axis label, the paper's default value, title).
SWEEPS: dict[str, tuple[str, str, float, str]] = {
    "fig6": ("topk_ratio", "top-K ratio (fraction of feature-map cells)", 0.1, "top-K ratio"),
    "fig7": ("n_shots", "number of labelled anomalies", dv.PAPER_SHOTS, "labelled anomalies"),
    "fig8": ("contamination", "contamination rate of the training normals", 0.0, "contamination"),
}


# --------------------------------------------------------------------------------------------
# options, data, backbones


def options(cfg: NotebookConfig, element: str) -> dict[str, Any]:
    """Study ``devnet_<element>``'s settings under the profile, with the paper's defaults."""
    given = study_options(cfg, f"{PAPER}_{element}")
    unknown = sorted(set(given) - set(OPTION_KEYS[element]))
    if unknown:
        raise ConfigError(f"ablation options of devnet_{element}: unknown key(s) {unknown}; "
                          f"known: {list(OPTION_KEYS[element])}")
    defaults = {"datasets": PAPER_DATASETS[element], "max_seeds": 0, "variants": tuple(dv.TABLE5_VARIANTS),
                "rep_frozen_stages": None, "topk_ratios": TOPK_RATIOS, "n_shots": FIG7_SHOTS,
                "contamination": CONTAMINATION, "methods": FIG_METHODS}
    return {k: given.get(k, defaults[k]) for k in OPTION_KEYS[element]}


def split_for(cfg: NotebookConfig, name: str, n_shots: int, seed: int, contamination: float = 0.0,
              nested_in: int | None = None) -> tuple[Split, Path]:
    """The general-setting split (§6.5.1) of dataset ``name``: ``n_shots`` labelled anomalies drawn
    from the first ``nested_in`` of the seed's draw (same test set for every shot count, Fig. 7) and
    ``contamination`` of the training normals replaced by test anomalies (Fig. 8)."""
    root = resolve(name, cfg.data_root)
    info = subset_info(name)
    split = make_split(read_mvtec_layout(root), "general", n_shots, seed, contamination=contamination,
                       nested_in=nested_in, dataset=info.dataset, subset=info.subset)
    return split, root


@functools.lru_cache(maxsize=32)
def config_problem(config: DevNetConfig) -> str:
    """Why a DevNet with ``config`` cannot be built here (the one-line reason: missing ImageNet
    weights, or Rep on a fully frozen backbone), or ""."""
    try:
        DevNet(config)
    except ConfigError as exc:
        return str(exc)
    return ""


# --------------------------------------------------------------------------------------------
# Table 5


def table5_config(cfg: NotebookConfig, variant: str) -> DevNetConfig:
    """:func:`devnet_config` with Table 5 variant ``variant``; Rep gets ``rep_frozen_stages``
    when the profile freezes more (it has nothing to train on a fully frozen backbone)."""
    config = dv.devnet_config(cfg, **dv.TABLE5_VARIANTS[choose("variant", variant, dv.TABLE5_VARIANTS)])
    limit = options(cfg, "table5")["rep_frozen_stages"]
    if variant == "rep" and limit is not None and config.frozen_stages > limit:
        config = config.with_(frozen_stages=int(limit))
    return config


def variant_reasons(cfg: NotebookConfig) -> dict[str, str]:
    """Table 5 variants of the profile's selection that cannot be built here → the one-line reason
    (AlexNet/ResNet-50 without their ImageNet weights; Rep when every backbone stage is frozen).
    Empty when the profile's own DevNet cannot be built: then every run fails with the loader's message."""
    if config_problem(dv.devnet_config(cfg)):
        return {}
    reasons = {v: config_problem(table5_config(cfg, v)) for v in options(cfg, "table5")["variants"]}
    return {v: why for v, why in reasons.items() if why}


def _experiment(cfg: NotebookConfig, element: str, name: str, seed: int, split: Split, *, method: str,
                variant: str, n_shots: int, backbone: str, deviations: str,
                params: dict[str, Any] | None = None) -> Experiment:
    info = subset_info(name)
    return Experiment(notebook=NOTEBOOK, paper=PAPER, table=element, dataset=info.dataset, subset=info.subset,
                      setting="general", n_shots=n_shots, method=method, variant=variant, backbone=backbone,
                      seed=seed, profile=cfg.profile.name, manifest_id=split.manifest_id,
                      deviations=deviations, device=cfg.device_label, params=params or {}, extra_key={"name": name})


def _cost(config: Any, split: Split) -> tuple[int, int]:
    """(training images, evaluation images) of one run, pyramid scales counted."""
    scales = getattr(config, "n_scales", 1)
    steps = getattr(config, "epochs", 1) * getattr(config, "steps_per_epoch", 1) * getattr(config, "batch_size", 1)
    return steps * scales, len(split.test) * scales


def grid_table5(cfg: NotebookConfig) -> list[GridItem]:
    """Every runnable variant × dataset at hand × seed, general setting, ten anomalies (fewer on smoke)."""
    opts = options(cfg, "table5")
    shots, skip = dv.table_shots(cfg), variant_reasons(cfg)
    items = []
    for name in present_datasets(cfg, opts["datasets"])[0]:
        for seed in study_seeds(cfg, opts):
            split = split_for(cfg, name, shots, seed)[0]
            for variant in [v for v in opts["variants"] if v not in skip]:
                config = table5_config(cfg, variant)
                e = _experiment(cfg, "table5", name, seed, split, method="devnet", variant=variant, n_shots=shots,
                                backbone=config.backbone, params=dict(dv.TABLE5_VARIANTS[variant]),
                                deviations=dv.devnet_deviations(cfg, subset_info(name).dataset, config))
                items.append(GridItem(e, *_cost(config, split)))
    return items


def run_table5(cfg: NotebookConfig, item: GridItem) -> dict[str, float]:
    """Train and test one Table 5 variant (image AUROC and AUPR)."""
    e = item.experiment
    split, root = split_for(cfg, e.extra_key["name"], e.n_shots, e.seed)
    return dv.run_devnet(cfg, split, root, table5_config(cfg, e.variant), localize=False)


def table_table5(cfg: NotebookConfig) -> pd.DataFrame:
    """Measured AUROC per variant and dataset (MVTec AD mean added when all categories ran) beside
    Table 5, deltas; ``not run because`` on the paper rows of variants that cannot run here."""
    rows = with_subset_means(study_rows(cfg, PAPER, "table5"))
    out = beside_paper(cfg, PAPER, "table5", measured=rows[rows["metric"] == "auroc"])
    reasons = variant_reasons(cfg)
    out["not run because"] = [reasons.get(v, "") if n == 0 else "" for v, n in zip(out["variant"], out["n_seeds"])]
    return out


def figure_table5(cfg: NotebookConfig):
    """Measured vs paper bars of the Table 5 rows that ran."""
    return paper_vs_measured_bars(table_table5(cfg), f"DevNet Table 5 ablation: AUC-ROC ({cfg.profile.name} profile)")


# --------------------------------------------------------------------------------------------
# Figs. 6-8


def _fig_runs(cfg: NotebookConfig, element: str) -> list[tuple[str, float]]:
    """(method, swept value) of every run of a figure, before datasets and seeds."""
    opts = options(cfg, element)
    if element == "fig6":
        return [("devnet", float(k)) for k in opts["topk_ratios"]]
    for method in opts["methods"]:
        choose("method", method, dv.METHODS)
    values = opts["n_shots"] if element == "fig7" else opts["contamination"]
    return [(m, float(v)) for m in opts["methods"] for v in values]


def _fig_split(cfg: NotebookConfig, element: str, name: str, value: float, seed: int) -> tuple[Split, Path]:
    shots = dv.table_shots(cfg)
    if element == "fig7":
        return split_for(cfg, name, int(value), seed, nested_in=int(max(options(cfg, "fig7")["n_shots"])))
    if element == "fig8":
        return split_for(cfg, name, shots, seed, contamination=value)
    return split_for(cfg, name, shots, seed)


#: The parameter a figure sweeps, by element, and its name in the row's ``variant`` label (Fig. 7
#: sweeps ``n_shots``, a key column).
_SWEPT = {"fig6": ("topk_ratio", "topk"), "fig8": ("contamination", "contamination")}


def _variant(element: str, value: float) -> tuple[str, dict[str, float]]:
    """The ``variant`` label (``topk=0.05``, ``contamination=0.1``; "" for Fig. 7) and ``params``
    (``{"topk_ratio": 0.05}``) of a figure row."""
    if element not in _SWEPT:
        return "", {}
    param, label = _SWEPT[element]
    return f"{label}={value:g}", {param: value}


def _fig_config(cfg: NotebookConfig, method: str, element: str, value: float) -> Any:
    if element == "fig6":
        return dv.devnet_config(cfg, topk_ratio=value)
    return dv.method_config(cfg, method)


def grid_figure(cfg: NotebookConfig, element: str) -> list[GridItem]:
    """Every (method, swept value) × dataset at hand × seed of Fig. 6, 7 or 8."""
    opts = options(cfg, element)
    items = []
    for name in present_datasets(cfg, opts["datasets"])[0]:
        dataset = subset_info(name).dataset
        for seed in study_seeds(cfg, opts):
            for method, value in _fig_runs(cfg, element):
                split = _fig_split(cfg, element, name, value, seed)[0]
                config = _fig_config(cfg, method, element, value)
                deviations = (dv.devnet_deviations(cfg, dataset, config) if element == "fig6"
                              else dv.method_deviations(cfg, method, dataset))
                variant, params = _variant(element, value)
                e = _experiment(cfg, element, name, seed, split, method=method, variant=variant, params=params,
                                n_shots=dv.row_shots(method, split.n_shots), backbone=config.backbone,
                                deviations=deviations)
                items.append(GridItem(e, *_cost(config, split)))
    return items


def _swept_value(element: str, row: Any) -> float:
    """The swept value of an experiment or a stored row: Fig. 7's shots, else its ``params`` (a
    row stored before that column: the value in its ``variant`` label, ``topk=0.05``)."""
    if element == "fig7":
        return float(row.n_shots)
    stored = getattr(row, "params", "")
    params = stored if isinstance(stored, Mapping) else variant_params(stored)
    return float(params[_SWEPT[element][0]]) if params else float(str(row.variant).partition("=")[2])


def run_figure(cfg: NotebookConfig, item: GridItem) -> dict[str, float]:
    """Train and test one point of a Fig. 6–8 curve (image AUROC and AUPR)."""
    e = item.experiment
    value = _swept_value(e.table, e)
    split, root = _fig_split(cfg, e.table, e.extra_key["name"], value, e.seed)
    if e.table == "fig6":
        return dv.run_devnet(cfg, split, root, dv.devnet_config(cfg, topk_ratio=value), localize=False)
    return dv.METHODS[e.method](cfg, split, root, localize=False)


def curve_table(cfg: NotebookConfig, element: str) -> pd.DataFrame:
    """The measured curve of Fig. 6, 7 or 8 (AUROC mean, std, seeds per dataset, method and swept
    value) and, at the paper's default point, the paper's Table 2 value (``paper_table2``)."""
    column, _, default, _ = SWEEPS[element]
    rows = study_rows(cfg, PAPER, element)
    rows = rows[rows["metric"] == "auroc"]
    rows = rows.assign(**{column: [_swept_value(element, r) for r in rows.itertuples()]})
    by = ["dataset", "subset", "method", column] + ([] if element == "fig7" else ["n_shots"])
    out = measured_summary(rows, by)
    table2 = paper_tables.load_table("devnet_table2")
    table2 = table2[(table2["metric"] == "auroc") & (table2["setting"] == "general")
                    & (table2["n_shots"] == dv.PAPER_SHOTS)]
    reference = {(r.dataset, r.subset, r.method): r.mean for r in table2.itertuples()}
    at_default = out[column].astype(float).eq(float(default)) if len(out) else pd.Series(dtype=bool)
    if element != "fig7" and len(out):
        at_default &= out["n_shots"].eq(dv.PAPER_SHOTS)
    out["paper_table2"] = [reference.get((d, s, m), np.nan) if ok else np.nan
                           for d, s, m, ok in zip(out["dataset"], out["subset"], out["method"], at_default)]
    return out


def curve_figure(cfg: NotebookConfig, element: str):
    """One panel per dataset: measured AUROC (mean ± std over seeds) against the swept value, one
    line per method; the paper's Table 2 value at the default point as a star."""
    import matplotlib.pyplot as plt

    column, label, _, short = SWEEPS[element]
    curve = curve_table(cfg, element)
    panels = list(curve.groupby(["dataset", "subset"], sort=False)) if len(curve) else []
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(3.6 * max(len(panels), 1), 3.2), squeeze=False)
    for ax, ((dataset, subset), part) in zip(axes[0], panels):
        for method, line in part.groupby("method", sort=False):
            line = line.sort_values(column)
            color = METHOD_COLORS.get(method)
            ax.errorbar(line[column], line["measured_mean"], yerr=line["measured_std"].fillna(0), marker="o",
                        capsize=3, color=color, label=f"{method} (measured)")
            ref = line.dropna(subset=["paper_table2"])
            ax.scatter(ref[column], ref["paper_table2"], marker="*", s=120, color=color, edgecolor="black",
                       zorder=3, label=f"{method} (paper Table 2)" if len(ref) else None)
        ax.set_title(f"{dataset}/{subset}" if subset else dataset)
        ax.set_xlabel(label)
        ax.set_ylabel("AUC-ROC")
        ax.legend(fontsize=7)
    number = element.removeprefix("fig")
    fig.suptitle(f"DevNet Fig. {number}: AUC-ROC vs {short} ({cfg.profile.name})", fontsize=10)
    fig.tight_layout()
    return fig


def _unavailable(element: str):
    def why_not(cfg: NotebookConfig) -> str:
        here, missing = present_datasets(cfg, options(cfg, element)["datasets"])
        return "" if here else f"none of its datasets is at hand ({', '.join(missing)}); pass data_root"

    return why_not


STUDIES: list[PaperElement] = [
    PaperElement(PAPER, "table5", "Table 5", "ablation of DevNet's modules and backbone",
          "Deviation-based score learning (DS) clearly beats learning representations only (Rep); top-K MIL "
          "(MIL-DS, DevNet) beats DS and Patch-DS on most datasets; a shallower (AlexNet) or deeper (ResNet-50) "
          "backbone with DS is mostly worse than ResNet-18.",
          grid_table5, run_table5, table_table5, figure_table5, _unavailable("table5")),
    PaperElement(PAPER, "fig6", "Fig. 6", "sensitivity to the top-K ratio",
          "AUC-ROC generally improves as K grows from 1 % to 10 % and starts to decline at 15 % or 20 % on some "
          "datasets; K = 10 % is recommended.",
          lambda cfg: grid_figure(cfg, "fig6"), run_figure, lambda cfg: curve_table(cfg, "fig6"),
          lambda cfg: curve_figure(cfg, "fig6"), _unavailable("fig6")),
    PaperElement(PAPER, "fig7", "Fig. 7", "sample efficiency: number of labelled anomalies",
          "All methods improve with more labelled anomalies (5 to 40); DevNet is the best or close to the best "
          "throughout, and with 10 or 20 anomalies often beats MINNS with 40.",
          lambda cfg: grid_figure(cfg, "fig7"), run_figure, lambda cfg: curve_table(cfg, "fig7"),
          lambda cfg: curve_figure(cfg, "fig7"), _unavailable("fig7")),
    PaperElement(PAPER, "fig8", "Fig. 8", "robustness to anomaly contamination of the training normals",
          "Every detector degrades as contamination grows from 0 % to 20 %; DevNet degrades slowest, and its "
          "margin over Deep SAD, FLOS and MINNS is clearest at 10 % and 20 %.",
          lambda cfg: grid_figure(cfg, "fig8"), run_figure, lambda cfg: curve_table(cfg, "fig8"),
          lambda cfg: curve_figure(cfg, "fig8"), _unavailable("fig8")),
]
