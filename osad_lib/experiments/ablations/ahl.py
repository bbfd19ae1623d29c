"""Ablation studies of AHL (Zhu, Ding, Tian & Pang, CVPR 2024) for notebook ``06_ablations``.

* **Table 5** (§4.5.2) — DRA, DRA + HADG / RamHADG / RamFULL / RamHADG + DevNet (ensembles
  without CDL), + CDL⁻ (weights from detection accuracy instead of ψ) and + CDL (AHL), ten
  labelled anomalies, general and hard settings (hard: mean over the seen classes);
* **Table 9** (App. C) — the hard setting per seen class: DRA, + RamHADG, + HADG, AHL;
* **Table 10** (App. C) — AHL (DRA) with overlapping support and query sets;
* **Fig. 3** (§4.5.3) — AUROC of AHL (DRA) against the number of normal clusters C and ψ's
  sequence length K (general setting, ten anomalies);
* **Fig. 4** (App. C) — DevNet against AHL (DRA) without pseudo-anomaly augmentation ("wo. aug").

Every run is a row of notebook ``05_ahl``'s kind (:func:`osad_lib.experiments.ahl.split_item`,
:func:`~osad_lib.experiments.ahl.run_one`): the base model of a split is trained and its
features are extracted once (checkpoint and feature caches shared with 05_ahl), every variant is
an :class:`~osad_lib.methods.ahl.config.AHLConfig` option (:func:`~osad_lib.experiments.ahl.variant_options`)
trained on those features under the profile's AHL settings (``METHOD_OVERRIDES["ahl"]``). The same
run listed by several studies (AHL as published is in Table 5, Table 9, Table 10 and both
figures) is trained once per session and its metrics reused (:func:`run_one`). Base rows carry
``variant="ahl_base"`` as in 05_ahl and join the paper's DevNet/DRA columns.

Each table shows, beside the paper, the paired difference *variant − reference* per seed (same
split, same test features): Tables 5/9 and Fig. 3 against DRA, Table 10 against AHL without
overlap, Fig. 4 against DevNet. PaperElement settings per profile:
``METHOD_OVERRIDES["ablations"][profile]["options"]["ahl_<element>"]`` with the keys of
:data:`OPTION_DEFAULTS` (the paper's grid when a profile sets none).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from osad_lib import paper as paper_tables
from osad_lib.data.registry import dataset_names, subset_info
from osad_lib.experiments import GridItem, runnable
from osad_lib.experiments import ahl as xahl
from osad_lib.experiments.protocol import PaperElement
from osad_lib.experiments.ablations.base import (NOTEBOOK, beside_paper, measured_summary, study_options,
                                                 study_rows)
from osad_lib.profiles import NotebookConfig
from osad_lib.validate import choose
from osad_lib.paper.means import with_subset_means

PAPER = "ahl"
METRIC = "auroc"
#: Datasets of the paper's general-setting tables (Table 1; MVTec AD = its 15 categories).
GENERAL_DATASETS = ("aitex", "sdd", "elpv", "optical", "mastcam", "brainmri", "headct", "hyperkvasir", "mvtecad")
#: Datasets of Table 5's hard setting and Table 9 (MVTec AD: the carpet category).
HARD_DATASETS = ("mvtecad/carpet", "aitex", "elpv", "hyperkvasir")
#: Datasets of Table 10.
OVERLAP_DATASETS = ("aitex", "sdd", "elpv", "brainmri", "headct", "hyperkvasir")

#: Per study: its paper grid (a profile's options override any key). ``general_datasets`` /
#: ``hard_datasets``: registry names run in that setting; ``n_shots``: labelled anomalies (M = 10
#: throughout); ``bases``: base-model rows; ``variants``: AHL (DRA) rows (labels of
#: :func:`osad_lib.experiments.ahl.variant_options`, ``""`` = AHL as published);
#: ``reference``: the (method, variant) that paired differences subtract; ``max_seeds`` (0 =
#: every seed of the profile) and ``max_seen_classes`` (0 = all) shrink the grid.
OPTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "table5": {"general_datasets": GENERAL_DATASETS, "hard_datasets": HARD_DATASETS, "bases": ("dra",),
               "variants": ("hadg", "ramhadg", "ramfull", "ramhadg+devnet", "cdl_minus", ""),
               "reference": ("dra", "")},
    "table9": {"general_datasets": (), "hard_datasets": HARD_DATASETS, "bases": ("dra",),
               "variants": ("ramhadg", "hadg", ""), "reference": ("dra", "")},
    "table10": {"general_datasets": OVERLAP_DATASETS, "hard_datasets": (), "bases": (),
                "variants": ("overlap=s_to_q", "overlap=q_to_s", "overlap=both", ""),
                "reference": ("ahl_dra", "")},
    # the figure's C and K values are not in the text: C = 2..6 and K = 1..7 around the defaults
    "fig3": {"general_datasets": GENERAL_DATASETS[:-1], "hard_datasets": (), "bases": ("dra",),
             "variants": ("C=2", "", "C=4", "C=5", "C=6", "K=1", "K=3", "K=7"), "reference": ("dra", "")},
    "fig4": {"general_datasets": GENERAL_DATASETS[:-1], "hard_datasets": (), "bases": ("devnet", "dra"),
             "variants": ("wo_aug", ""), "reference": ("devnet", "")},
}
COMMON_DEFAULTS: dict[str, Any] = {"n_shots": 10, "max_seeds": 0, "max_seen_classes": 0}


# --------------------------------------------------------------------------------------------
# settings and grid


def options(cfg: NotebookConfig, element: str) -> dict[str, Any]:
    """Study ``element``'s settings: :data:`OPTION_DEFAULTS` ← the profile's ``ahl_<element>``
    options (unknown keys are a one-line error)."""
    defaults = {**COMMON_DEFAULTS, **OPTION_DEFAULTS[element]}
    given = study_options(cfg, f"{PAPER}_{element}")
    for key in given:
        choose(f"option of study ahl_{element}", key, defaults)
    merged = {**defaults, **given}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in merged.items()}


def _splits(cfg: NotebookConfig, opts: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(registry name, setting, seen class) of every split the study runs."""
    runs: list[tuple[str, str, str | None]] = [(n, "general", None) for n in dataset_names(opts["general_datasets"])]
    limit = int(opts["max_seen_classes"])
    for name in dataset_names(opts["hard_datasets"]):
        seen = subset_info(name).hard_seen_classes
        runs += [(name, "hard", c) for c in (seen[:limit] if limit else seen)]
    return runs


def _rows_of(opts: dict[str, Any]) -> list[tuple[str, str]]:
    """(method, variant) of every row per split: base models, then AHL (DRA) variants."""
    return ([(b, xahl.BASE_VARIANT) for b in opts["bases"]] + [("ahl_dra", v) for v in opts["variants"]])


def all_items(cfg: NotebookConfig, element: str) -> list[GridItem]:
    """Every experiment of study ``element`` under the profile, whether or not its data are at hand."""
    opts = options(cfg, element)
    seeds = cfg.seeds[:opts["max_seeds"]] if opts["max_seeds"] else cfg.seeds
    return [xahl.split_item(cfg, name, setting, int(opts["n_shots"]), seed, seen, method, variant,
                            notebook=NOTEBOOK, table=element)
            for name, setting, seen in _splits(cfg, opts) for seed in seeds for method, variant in _rows_of(opts)]


def grid(cfg: NotebookConfig, element: str) -> list[GridItem]:
    """The experiments of study ``element`` whose data are at hand; the whole grid when a profile
    that needs user data has no data root (``run_all.py --plan --profile paper`` lists it)."""
    items = all_items(cfg, element)
    return items if cfg.profile.needs_data_root and cfg.data_root is None else runnable(items)[0]


def unavailable(cfg: NotebookConfig, element: str) -> str:
    """Why study ``element`` cannot run on this profile's data ("" when some of it can)."""
    ready, missing = runnable(all_items(cfg, element))
    return "" if ready else f"no data for {', '.join(missing)}: pass data_root with these datasets (MVTec layout)"


# --------------------------------------------------------------------------------------------
# running


def run_one(cfg: NotebookConfig, item: GridItem) -> dict[str, float]:
    """Train and evaluate one row with notebook 05_ahl's runner; a run another AHL study of this
    session already trained (same split, method and variant) is reused, not retrained."""
    e = item.experiment
    return dict(_shared_run(cfg, e.extra_key["name"], e.setting, int(e.n_shots), e.seed,
                            e.extra_key["seen_class"] or None, e.method, e.variant))


@functools.lru_cache(maxsize=512)
def _shared_run(cfg: NotebookConfig, name: str, setting: str, n_shots: int, seed: int, seen: str | None,
                method: str, variant: str) -> tuple[tuple[str, float], ...]:
    item = xahl.split_item(cfg, name, setting, n_shots, seed, seen, method, variant, notebook=NOTEBOOK)
    return tuple(xahl.run_one(cfg, item).items())


# --------------------------------------------------------------------------------------------
# tables


def _measured(cfg: NotebookConfig, element: str) -> pd.DataFrame:
    """The study's AUROC rows, base rows as the paper's DevNet/DRA columns (variant ""), with
    the per-seed mean over seen classes of hard-setting splits (subset ``mean``)."""
    rows = study_rows(cfg, PAPER, element)
    rows = rows[rows["metric"] == METRIC]
    if rows.empty:
        return rows
    rows = rows.assign(variant=rows["variant"].replace({xahl.BASE_VARIANT: ""}))
    return with_subset_means(rows).reset_index(drop=True)


SPLIT_KEYS = ["dataset", "subset", "setting", "n_shots", "metric"]
ROW_KEYS = [*SPLIT_KEYS[:-1], "method", "variant", "metric"]


def paired_differences(rows: pd.DataFrame, reference: Sequence[str]) -> pd.DataFrame:
    """Per row kind (split keys, method, variant): value − the ``reference`` (method, variant)
    row of the same split and seed — mean, std (ddof=1), min, max over seeds, seeds compared and
    seeds with a gain. The reference row itself is left out."""
    columns = [*ROW_KEYS, "diff_mean", "diff_std", "diff_min", "diff_max", "n_pairs", "n_gains"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    is_ref = (rows["method"] == reference[0]) & (rows["variant"] == reference[1])
    ref = rows[is_ref][[*SPLIT_KEYS, "seed", "value"]].rename(columns={"value": "reference"})
    pairs = rows[~is_ref].merge(ref, on=[*SPLIT_KEYS, "seed"])
    pairs = pairs.assign(diff=pairs["value"] - pairs["reference"], gain=pairs["value"] > pairs["reference"])
    if pairs.empty:
        return pd.DataFrame(columns=columns)
    out = pairs.groupby(ROW_KEYS, dropna=False).agg(
        diff_mean=("diff", "mean"), diff_std=("diff", "std"), diff_min=("diff", "min"), diff_max=("diff", "max"),
        n_pairs=("diff", "size"), n_gains=("gain", "sum")).reset_index()
    return out[columns]


def _paper_differences(table: pd.DataFrame, reference: Sequence[str]) -> pd.Series:
    """Paper value − the paper's ``reference`` value on the same split keys (NaN without one)."""
    method, variant = reference
    ref = table[(table["method"] == method) & (table["variant"] == variant)][SPLIT_KEYS + ["paper_mean"]]
    ref = ref.dropna(subset=["paper_mean"]).drop_duplicates(SPLIT_KEYS).rename(columns={"paper_mean": "paper_ref"})
    merged = table[SPLIT_KEYS + ["paper_mean"]].astype({"n_shots": "Int64"}).merge(
        ref.astype({"n_shots": "Int64"}), on=SPLIT_KEYS, how="left")
    return (merged["paper_mean"] - merged["paper_ref"]).set_axis(table.index)


def _with_differences(table: pd.DataFrame, rows: pd.DataFrame, reference: Sequence[str]) -> pd.DataFrame:
    """``table`` (one row per row kind) with the measured paired differences against
    ``reference`` and, where the table has paper values, the paper's difference."""
    diffs = paired_differences(rows, reference)
    keyed = table.astype({"n_shots": "Int64"}).merge(diffs.astype({"n_shots": "Int64"}), on=ROW_KEYS, how="left")
    keyed.index = table.index
    if "paper_mean" in table:
        keyed["paper_diff"] = _paper_differences(table, reference)
    keyed["diff_vs"] = _label(*reference)
    return keyed


def comparison(cfg: NotebookConfig, element: str) -> pd.DataFrame:
    """Tables 5, 9, 10: measured AUROC (mean ± std over seeds) beside the paper's with deltas
    (:func:`~osad_lib.experiments.ablations.base.beside_paper`), and the paired difference
    against the study's reference row (``diff_*``, ``n_gains`` of ``n_pairs`` seeds) beside the
    paper's (``paper_diff``). Measured rows first, then the paper's rows not run here."""
    rows = _measured(cfg, element)
    table = beside_paper(cfg, PAPER, element, measured=rows)
    return _with_differences(table, rows, options(cfg, element)["reference"]).reset_index(drop=True)


def _parameters(cfg: NotebookConfig, variant: str) -> tuple[int, int]:
    """(C, K) of an AHL (DRA) variant under the profile (defaults: the paper's 3 and 5 unless
    the profile's AHL settings change them)."""
    config = xahl.ahl_config(cfg, "dra", variant)
    return config.n_clusters, config.sequence_length


def _paper_default(frame: pd.DataFrame) -> pd.Series:
    """Table 1's value of rows that are points of the paper's figures with a printed number:
    the base models and AHL as published (general setting)."""
    table1 = paper_tables.load_table("ahl_table1")
    table1 = table1[table1["variant"] == ""][["dataset", "subset", "setting", "n_shots", "method", "metric", "mean"]]
    keys = ["dataset", "subset", "setting", "n_shots", "method", "metric"]
    printed = frame["variant"] == ""
    merged = frame[keys].astype({"n_shots": "Int64"}).merge(table1.astype({"n_shots": "Int64"}), on=keys, how="left")
    return merged["mean"].where(printed.to_numpy()).set_axis(frame.index)


def figure_table(cfg: NotebookConfig, element: str) -> pd.DataFrame:
    """Fig. 3 / Fig. 4: measured AUROC per row kind (mean, std, seeds;
    :func:`~osad_lib.experiments.ablations.base.measured_summary`), C and K of each AHL row, the
    paired difference against the study's reference, and ``paper_table1``: the paper's printed
    number for points that Table 1 also reports (base models and AHL as published, C = 3, K = 5)."""
    rows = _measured(cfg, element)
    summary = measured_summary(rows, ROW_KEYS)
    if summary.empty:
        return summary
    ahl_rows = summary["method"].str.startswith("ahl_")
    params = [_parameters(cfg, v) if is_ahl else (np.nan, np.nan) for v, is_ahl in zip(summary["variant"], ahl_rows)]
    summary["C"], summary["K"] = [p[0] for p in params], [p[1] for p in params]
    summary["paper_table1"] = _paper_default(summary)
    return _with_differences(summary, rows, options(cfg, element)["reference"]).reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# figures


def _label(method: str, variant: str) -> str:
    names = {"devnet": "DevNet", "dra": "DRA", "ahl_dra": "AHL (DRA)", "ahl_devnet": "AHL (DevNet)"}
    return names[method] + (f" {variant.replace('wo_aug', 'wo. aug')}" if variant else "")


def figure3(cfg: NotebookConfig):
    """Fig. 3: AUROC of AHL (DRA) against C (left, K at its default) and K (right, C at its
    default; the paper's 5 and 3), one line per
    dataset (error bars: std over seeds), the dataset's DRA base as a dotted line."""
    import matplotlib.pyplot as plt

    data = figure_table(cfg, "fig3")
    if data.empty or not data["method"].eq("ahl_dra").any():
        return None
    default_c, default_k = _parameters(cfg, "")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, ((dataset, subset), part) in enumerate(data.groupby(["dataset", "subset"], sort=True)):
        color, name = colors[i % len(colors)], f"{dataset}/{subset}" if subset else dataset
        ahl, base = part[part["method"] == "ahl_dra"], part[part["method"] == "dra"]
        for ax, (axis, fixed, default) in zip(axes, (("C", "K", default_k), ("K", "C", default_c)), strict=True):
            curve = ahl[ahl[fixed] == default].sort_values(axis)
            ax.errorbar(curve[axis], curve["measured_mean"], yerr=curve["measured_std"].fillna(0), marker="o",
                        color=color, capsize=3, label=f"{name} AHL (DRA)")
            if len(base):
                ax.axhline(base["measured_mean"].iloc[0], color=color, linestyle=":", linewidth=1,
                           label=f"{name} DRA (base)")
    for ax, axis, what in zip(axes, ("C", "K"), (f"number of normal clusters C (K = {default_k})",
                                                 f"length K of ψ's score sequences (C = {default_c})"), strict=True):
        ax.set_xlabel(what)
        ax.set_title(f"AHL (DRA): AUROC vs {axis}")
        ax.set_xticks(sorted(set(data[axis].dropna().astype(int))))
    axes[0].set_ylabel("test AUROC (mean ± std over seeds)")
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def figure4(cfg: NotebookConfig):
    """Fig. 4: AUROC of DevNet and AHL (DRA) without pseudo-anomaly augmentation (with DRA and
    AHL (DRA) as published beside them), bars per dataset, error bars = std over seeds."""
    import matplotlib.pyplot as plt

    data = figure_table(cfg, "fig4")
    if data.empty:
        return None
    kinds = list(dict.fromkeys(zip(data["method"], data["variant"])))
    order = {("devnet", ""): 0, ("ahl_dra", "wo_aug"): 1, ("dra", ""): 2, ("ahl_dra", ""): 3}
    kinds.sort(key=lambda k: order.get(k, len(order)))
    datasets = sorted(set(zip(data["dataset"], data["subset"])))
    fig, ax = plt.subplots(figsize=(max(7.5, 1.8 * len(datasets) + 3), 3.6))
    width = 0.8 / len(kinds)
    for j, (method, variant) in enumerate(kinds):
        part = data[(data["method"] == method) & (data["variant"] == variant)].set_index(["dataset", "subset"])
        values = [part["measured_mean"].get(d, np.nan) for d in datasets]
        spread = [part["measured_std"].get(d, np.nan) for d in datasets]
        ax.bar(np.arange(len(datasets)) + (j - (len(kinds) - 1) / 2) * width, values, width,
               yerr=np.nan_to_num(spread), capsize=3, label=_label(method, variant))
    ax.set_xticks(np.arange(len(datasets)), [f"{d}/{s}" if s else d for d, s in datasets])
    low = np.nanmin(data["measured_mean"] - data["measured_std"].fillna(0))
    ax.set_ylim(max(0.0, low - 0.05), 1.0)
    ax.set_xlabel(f"dataset (general setting, {', '.join(map(str, sorted(set(data['n_shots']))))} labelled anomalies)")
    ax.set_ylabel("test AUROC (mean ± std over seeds)")
    ax.set_title("DevNet vs AHL (DRA) without pseudo-anomaly augmentation")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# the studies


def _study(element: str, reference: str, title: str, claim: str, table: Any, figure: Any = None) -> PaperElement:
    return PaperElement(paper=PAPER, element=element, reference=reference, title=title, claim=claim,
                 grid=functools.partial(grid, element=element), run_one=run_one,
                 table=functools.partial(table, element=element), figure=figure,
                 unavailable=functools.partial(unavailable, element=element))


STUDIES: list[PaperElement] = [
    _study("table5", "Table 5", "HADG, its random-ensemble variants, CDL⁻ and CDL on top of DRA",
           "Using only HADG (+ HADG) largely improves DRA and beats the three DRA-based ensembles (RamHADG, "
           "RamFULL, RamHADG + DevNet); adding CDL (+ CDL = AHL) improves + HADG on every dataset, and replacing "
           "ψ by detection-accuracy weights (+ CDL⁻) loses performance on most datasets (M = 10, general and "
           "hard settings). Demo: ELPV general, seed 0, DRA, + HADG and + CDL only (the hard setting is in "
           "Table 9's study).", comparison),
    _study("table9", "Table 9", "hard setting per seen class: DRA, + RamHADG, + HADG, AHL",
           "Per seen class of the hard setting, + HADG is mostly above + RamHADG and DRA, and AHL is the best on "
           "(almost) every class (M = 10). Demo: ELPV, seen class mono, seed 0, DRA and + HADG only.", comparison),
    _study("table10", "Table 10", "overlapping support and query sets in HADG",
           "Adding the support set to the query set (D^s → D^q), the query set to the support set (D^q → D^s), "
           "or both, typically does not improve AHL (DRA) over disjoint support and query sets. Demo: ELPV, seed 0, "
           "D^s → D^q only.", comparison),
    _study("fig3", "Fig. 3", "sensitivity to the number of clusters C and ψ's sequence length K",
           "Increasing C does not always help (too many small clusters give biased anomaly distributions); K = 3 "
           "is generally sufficient and K = 5 helps on a few datasets; C = 3 and K = 5 are the defaults. The "
           "figure's numbers are not printed; only the default point (C = 3, K = 5) equals Table 1's AHL (DRA). "
           "Demo: ELPV, seed 0, C = 2 and 3 only.",
           figure_table, figure3),
    _study("fig4", "Fig. 4", "AHL (DRA) without pseudo-anomaly augmentation vs DevNet",
           "AHL (DRA) trained without the pseudo-anomaly generators (wo. aug) still outperforms DevNet, so AHL's "
           "gain does not come from the augmentation alone. The figure's numbers are not printed. Demo: ELPV, "
           "seed 0.",
           figure_table, figure4),
]

__all__ = ["OPTION_DEFAULTS", "STUDIES", "all_items", "comparison", "figure3", "figure4", "figure_table", "grid",
           "options", "paired_differences", "run_one", "unavailable"]
