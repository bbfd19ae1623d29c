"""Ablation studies of AnoOnly (Zhou et al., "Semi-Supervised Anomaly Detection with the Only Loss
on Anomalies", §4.4–4.6 and appendix C.2) for notebook ``06_ablations``.

* **Table 2** (§4.5) — Deep SAD with and without AnoOnly for each normalisation before the last
  layer: none ("w/o BN"), LN, BN without affine parameters (BN*), BN, and — AnoOnly only — BN
  replaced by its explicit cluster loss L_BN (BN†, Eq. 6).
* **Fig. 5** (§4.4) — AUROC of the four heads ± AnoOnly against the labelled-anomaly ratio γ_la.
* **Fig. 6** (§4.5) — Deep SAD ± AnoOnly against the share γ_n of unlabelled (normal) training rows kept.
* **Fig. 7** (§4.5) — Deep SAD with its normal loss weighted by λ_n from 1 (Deep SAD) to 10⁻⁶,
  beside AnoOnly (λ_n = 0).
* **Fig. 8** (§4.6) — the four heads ± AnoOnly under both data organisations: ``clean``
  (unlabelled training anomalies removed, as in every other table) and ``contaminated`` (kept as
  normal: the label noise; the official code's default). The organisation is the row's
  ``setting`` (:data:`~osad_lib.experiments.anoonly.SETTINGS`).
* **Fig. 9** (C.2) — Deep SAD + AnoOnly against the batch size (1 to 128).

The experiments are :func:`osad_lib.experiments.anoonly.ablation_grid`'s (swept values in
:data:`~osad_lib.experiments.anoonly.ABLATION_VALUES`, heads trained by
:func:`~osad_lib.experiments.anoonly.run_one` single-threaded, schedule and seeds of the profile's
AnoOnly settings) on the ADBench embeddings, clean organisation (the paper's for §4.3–4.5) and the
paper's split, with ``notebook="06_ablations"``.
The paper reports every ablation "averaged on 10 datasets": per seed, rows are averaged over each
group's files (:func:`~osad_lib.experiments.anoonly.group_means`), then over the groups
(``dataset="overall"``, ``subset="mean"``, as the paper tables); ``deviations`` name the groups
when fewer than ten ran. Table 2 joins ``anoonly_table2``; the figures show the measured curves
and, at the setting of the paper's Tables 1 and 3 (γ_la = 10 %, all normals, λ_n = 1 or AnoOnly,
batch 128), the paper's value of the same head as reference (of the group when one group ran,
else overall).
Settings per profile: ``METHOD_OVERRIDES["ablations"][profile]["options"]["anoonly_<element>"]``
(keys in :data:`OPTION_KEYS`); defaults are the paper's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from osad_lib import paper as paper_tables
from osad_lib.data.tabular import GROUPS, adbench_roots
from osad_lib.experiments import GridItem
from osad_lib.experiments import anoonly as ao
from osad_lib.experiments.protocol import PaperElement
from osad_lib.experiments.ablations.base import (NOTEBOOK, beside_paper, measured_summary, study_options,
                                                 study_rows)
from osad_lib.methods.anoonly import HEADS
from osad_lib.paper.means import mean_cells
from osad_lib.profiles import NotebookConfig
from osad_lib.validate import ConfigError, choose
from osad_lib.viz import METHOD_COLORS, paper_vs_measured_bars

PAPER = "anoonly"
METRICS = ("auroc", "aupr")
#: Option keys a profile may set per study.
OPTION_KEYS: dict[str, tuple[str, ...]] = {
    "table2": ("groups", "max_files", "files"),
    **{f: ("groups", "max_files", "files", "values") for f in ("fig6", "fig7", "fig9")},
    **{f: ("groups", "max_files", "files", "values", "heads") for f in ("fig5", "fig8")},
}
#: The swept quantity of each figure: (table column, axis label, value of the paper's Tables 1/3, axis scale).
#: Fig. 8's is the data organisation (the paper's Tables 1/3 are its ``clean`` bars; its table shows
#: the text's drops beside the measured ones).
SWEEPS: dict[str, tuple[str, str, Any, str]] = {
    "fig5": ("la", "labelled anomaly ratio γ_la", 0.1, "log"),
    "fig6": ("normal_ratio", "normal ratio γ_n (share of unlabelled training rows kept)", 1.0, "linear"),
    "fig7": ("normal_weight", "normal loss weight λ_n", 1.0, "log"),
    "fig8": ("organisation", "training data", "clean", "linear"),
    "fig9": ("batch_size", "batch size", 128, "log2"),
}
#: Fig. 8's text (§4.6): AUROC drop with label noise vs clean data of the base heads it names.
FIG8_TEXT_DROPS = {("feawad", False): -0.050, ("devnet", False): -0.029}


# --------------------------------------------------------------------------------------------
# options and grids


def options(cfg: NotebookConfig, element: str) -> dict[str, Any]:
    """Study ``anoonly_<element>``'s settings under the profile, with the paper's defaults
    (every group and file, the paper's heads and swept values)."""
    given = study_options(cfg, f"{PAPER}_{element}")
    unknown = sorted(set(given) - set(OPTION_KEYS[element]))
    if unknown:
        raise ConfigError(f"ablation options of anoonly_{element}: unknown key(s) {unknown}; "
                          f"known: {list(OPTION_KEYS[element])}")
    defaults = {"groups": tuple(GROUPS), "max_files": 0, "files": (), "heads": HEADS,
                "values": ao.ABLATION_VALUES.get(element, ())}
    opts = {k: given.get(k, defaults[k]) for k in OPTION_KEYS[element]}
    for head in opts.get("heads", ()):
        choose("head", head, HEADS)
    for value in opts.get("values", ()):
        if value not in ao.ABLATION_VALUES[element]:
            raise ConfigError(f"anoonly_{element}: value {value!r} is not one of the paper's "
                              f"{ao.ABLATION_VALUES[element]}")
    return opts


def stems(cfg: NotebookConfig, opts: dict[str, Any]) -> list[str]:
    """ADBench file stems of the study: ``files`` if given, else the present files of ``groups``
    (the first ``max_files`` of each when set; every listed file when the ADBench folder is absent)."""
    config = ao.anoonly_config(cfg, groups=tuple(opts["groups"]), max_files=int(opts["max_files"]),
                               files=tuple(opts["files"]))
    return ao.selected_stems(cfg, config)


def swept_value(element: str, params: Mapping[str, Any], setting: str = "") -> Any:
    """The swept value of an experiment or row: Fig. 8's organisation from its ``setting``
    (:data:`~osad_lib.experiments.anoonly.SETTING_AXES`); otherwise its variant parameter named
    by :data:`SWEEPS` (``{"anomaly_only": true, "la": 0.05}`` → 0.05; AnoOnly of Fig. 7 → 0.0)."""
    if element == "fig8":
        return ao.SETTING_AXES[setting][0]
    return params[SWEEPS[element][0]]


def grid(cfg: NotebookConfig, element: str) -> list[GridItem]:
    """The study's experiments: :func:`~osad_lib.experiments.anoonly.ablation_grid` on the study's
    files and heads, only the selected swept values (Fig. 7's AnoOnly reference always), filed
    under notebook ``06_ablations``."""
    opts = options(cfg, element)
    items = ao.ablation_grid(cfg, element, stems(cfg, opts), heads=opts.get("heads"))
    if element != "table2":
        keep = set(opts["values"])
        items = [i for i in items if swept_value(element, i.experiment.params, i.experiment.setting) in keep
                 or (element == "fig7" and i.experiment.params["anomaly_only"])]
    return [GridItem(dataclasses.replace(i.experiment, notebook=NOTEBOOK), i.train_images, i.eval_images)
            for i in items]


# --------------------------------------------------------------------------------------------
# tables


def overall_means(rows: pd.DataFrame) -> pd.DataFrame:
    """Per seed and configuration, the mean over groups of the per-group file means — the paper's
    "averaged on 10 datasets" (``dataset="overall"``, ``subset="mean"``) — by the one mean rule
    (:func:`osad_lib.paper.means.mean_cells` over the groups; one group is enough, as the demo has
    one: a seed with fewer groups than the best-covered seed is dropped); ``deviations`` name the
    groups when fewer than ten, ``backbone`` joins theirs."""
    groups = ao.group_means(rows)
    if groups.empty:
        return groups
    keys = ["paper", "table", "setting", "n_shots", "method", "variant", "source", "seed", "profile", "metric"]
    out = mean_cells(groups, tuple(GROUPS), part="dataset", keys=keys, min_parts=1, noun=None)
    out["backbone"] = out["parts"].map(lambda gs: "+".join(dict.fromkeys(GROUPS[g].backbone for g in gs)))
    note = out["parts"].map(lambda gs: "" if len(gs) == len(GROUPS) else
                            f"overall = mean over {len(gs)}/{len(GROUPS)} groups ({', '.join(gs)})")
    out["deviations"] = [f"{d}; {m}".strip("; ") for d, m in zip(out["deviations"], note)]
    out["groups"] = out["parts"].map(", ".join)
    return out.drop(columns=["parts", "n_parts", "n_expected"]).assign(dataset="overall", subset="mean")


def _measured(cfg: NotebookConfig, element: str) -> pd.DataFrame:
    rows = study_rows(cfg, PAPER, element)
    return overall_means(rows[rows["metric"].isin(METRICS)])


def table_table2(cfg: NotebookConfig) -> pd.DataFrame:
    """Overall AUROC (and AUPR, which the paper does not print) per normalisation, Deep SAD ±
    AnoOnly, beside Table 2."""
    return beside_paper(cfg, PAPER, "table2", measured=_measured(cfg, "table2"))


def figure_table2(cfg: NotebookConfig):
    """Measured vs paper bars of Table 2's AUROC rows."""
    table = table_table2(cfg)
    return paper_vs_measured_bars(table[table["metric"] == "auroc"],
                                  f"AnoOnly Table 2: overall AUROC per normalisation ({cfg.profile.name})")


def _paper_reference() -> dict[tuple[str, str, bool, str], float]:
    """(group or ``overall``, head, AnoOnly, metric) → the paper's value at γ_la = 10 % (Table 1
    AUROC, Table 3 AUPR)."""
    out = {}
    for metric, table in (("auroc", "anoonly_table1"), ("aupr", "anoonly_table3")):
        for r in paper_tables.load_table(table).itertuples():
            out[(r.dataset, r.method, r.variant == "anoonly", metric)] = float(r.mean)
    return out


def curve_table(cfg: NotebookConfig, element: str) -> pd.DataFrame:
    """The measured curve of Fig. 5, 6, 7 or 9: overall AUROC and AUPR (mean, std, seeds) per head,
    AnoOnly on/off and swept value, with the ``groups`` averaged and the ``deviations``;
    ``paper_tables_1_3`` = the paper's value of the same head at the setting of its Tables 1/3
    (NaN elsewhere): of the one group measured, else its overall value over ten groups."""
    column, _, default, _ = SWEEPS[element]
    rows = _measured(cfg, element)
    if rows.empty:
        return pd.DataFrame(columns=["method", "anoonly", column, "metric", "groups", "deviations", "measured_mean",
                                     "measured_std", "n_seeds", "paper_tables_1_3"])
    params = ao.row_params(rows)
    rows = rows.assign(anoonly=[p["anomaly_only"] for p in params],
                       **{column: [swept_value(element, p, s) for p, s in zip(params, rows["setting"])]})
    out = measured_summary(rows, ["method", "anoonly", column, "metric", "groups", "deviations"])
    reference = _paper_reference()
    at_default = (out[column] == default) | (out["anoonly"] & (element == "fig7"))
    where = out["groups"].map(lambda g: g if g in GROUPS else "overall")
    keys = zip(where, out["method"], out["anoonly"], out["metric"], at_default)
    out["paper_tables_1_3"] = [reference.get((w, m, a, k), np.nan) if ok else np.nan for w, m, a, k, ok in keys]
    return out.sort_values(["metric", "method", "anoonly", column], kind="stable").reset_index(drop=True)


def table_fig8(cfg: NotebookConfig) -> pd.DataFrame:
    """Fig. 8: overall AUROC and AUPR per head and AnoOnly on/off, clean vs contaminated (label
    noise), the change (contaminated − clean) and the AUROC drops the text states (FEAWAD −5.0 %,
    DevNet −2.9 %)."""
    curve = curve_table(cfg, "fig8")
    cols = ["method", "anoonly", "metric", "clean", "contaminated", "change", "paper_text_change", "n_seeds", "groups"]
    if curve.empty:
        return pd.DataFrame(columns=cols)
    wide = curve.pivot_table(index=["method", "anoonly", "metric", "groups"], columns="organisation",
                             values="measured_mean", aggfunc="first")
    wide = wide.reindex(columns=["clean", "contaminated"]).reset_index()
    wide.columns.name = None
    wide["change"] = wide["contaminated"] - wide["clean"]
    wide["paper_text_change"] = [FIG8_TEXT_DROPS.get((m, a), np.nan) if k == "auroc" else np.nan
                                 for m, a, k in zip(wide["method"], wide["anoonly"], wide["metric"])]
    seeds = curve.groupby(["method", "anoonly", "metric"])["n_seeds"].min().rename("n_seeds").reset_index()
    return wide.merge(seeds, on=["method", "anoonly", "metric"])[cols]


# --------------------------------------------------------------------------------------------
# figures


def _style(method: str, anoonly: bool) -> dict[str, Any]:
    return {"color": METHOD_COLORS.get(method), "linestyle": "-" if anoonly else "--",
            "label": f"{method} + AnoOnly" if anoonly else method}


def curve_figure(cfg: NotebookConfig, element: str):
    """Fig. 5, 6, 7 or 9: overall metric (mean ± std over seeds) against the swept value, one line
    per head (dashed: base, solid: + AnoOnly), the paper's Tables 1/3 value as a star; Fig. 7 draws
    AnoOnly (λ_n = 0) as a horizontal line; Fig. 5 shows AUROC only, as the paper."""
    import matplotlib.pyplot as plt

    column, label, _, scale = SWEEPS[element]
    curve = curve_table(cfg, element)
    metrics = ("auroc",) if element == "fig5" else METRICS
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        part = curve[curve["metric"] == metric]
        for (method, anoonly), line in part.groupby(["method", "anoonly"], sort=False):
            style = _style(method, bool(anoonly))
            if element == "fig7" and anoonly:
                ax.axhline(line["measured_mean"].iloc[0], color=style["color"], label=f"{style['label']} (λ_n = 0)")
                continue
            line = line.sort_values(column)
            ax.errorbar(line[column].astype(float), line["measured_mean"], yerr=line["measured_std"].fillna(0),
                        marker="o", capsize=3, **style)
            ref = line.dropna(subset=["paper_tables_1_3"])
            ax.scatter(ref[column].astype(float), ref["paper_tables_1_3"], marker="*", s=120, color=style["color"],
                       edgecolor="black", zorder=3)
        if element == "fig7":
            ref = part[part["anoonly"].astype(bool)].dropna(subset=["paper_tables_1_3"])
            for value, method in zip(ref["paper_tables_1_3"], ref["method"]):
                ax.axhline(value, color=_style(method, True)["color"], linestyle=":", label="paper (AnoOnly)")
        if scale == "log2":
            ax.set_xscale("log", base=2)
        elif scale == "log":
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel(f"overall {metric.upper()}")
        ax.set_title(metric.upper())
        ax.legend(fontsize=7)
    groups = curve["groups"].iloc[0] if len(curve) else "no rows"
    fig.suptitle(f"AnoOnly Fig. {element.removeprefix('fig')}: {label} ({cfg.profile.name}; groups: {groups}; "
                 "★ paper Tables 1/3)", fontsize=9)
    fig.tight_layout()
    return fig


def figure_fig8(cfg: NotebookConfig):
    """Fig. 8: overall AUROC per head, base and + AnoOnly, on clean data and with label noise."""
    import matplotlib.pyplot as plt

    table = table_fig8(cfg)
    table = table[table["metric"] == "auroc"].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(7, 3.4))
    x = np.arange(len(table))
    ax.bar(x - 0.2, table["clean"], 0.4, color="#4c72b0", label="clean (unlabelled anomalies removed)")
    ax.bar(x + 0.2, table["contaminated"], 0.4, color="#dd8452", label="contaminated: label noise (unlabelled anomalies kept)")
    labels = [_style(m, a)["label"] for m, a in zip(table["method"], table["anoonly"])]
    ax.set_xticks(x, labels, rotation=20, fontsize=8)
    ax.set_xlabel("head")
    ax.set_ylabel("overall AUROC")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    groups = table["groups"].iloc[0] if len(table) else "no rows"
    ax.set_title(f"AnoOnly Fig. 8: label noise ({cfg.profile.name}; groups: {groups})", fontsize=9)
    fig.tight_layout()
    return fig


def _unavailable(element: str) -> Callable[[NotebookConfig], str]:
    def why_not(cfg: NotebookConfig) -> str:
        try:
            adbench_roots(ao.anoonly_config(cfg).adbench_dir)
        except ConfigError as exc:
            return str(exc)
        return "" if stems(cfg, options(cfg, element)) else "none of the study's ADBench files is present"

    return why_not


def _figure_study(element: str, reference: str, title: str, claim: str) -> PaperElement:
    return PaperElement(PAPER, element, reference, title, claim, lambda cfg: grid(cfg, element), ao.run_one,
                 lambda cfg: curve_table(cfg, element), lambda cfg: curve_figure(cfg, element), _unavailable(element))


STUDIES: list[PaperElement] = [
    PaperElement(PAPER, "table2", "Table 2", "normalisation variants (w/o BN, LN, BN*, BN, BN†)",
          "Without BN AnoOnly collapses (52.4 % AUROC vs 86.3 % with BN) while Deep SAD loses only 5.8 points; LN "
          "does not rescue AnoOnly (54.8 %), so BN's role is not training stability; BN without affine parameters "
          "(86.3 %) and the explicit cluster loss L_BN (BN†, 86.25 %) match BN.",
          lambda cfg: grid(cfg, "table2"), ao.run_one, table_table2, figure_table2, _unavailable("table2")),
    _figure_study("fig5", "Fig. 5", "labelled anomaly ratio γ_la",
                  "AnoOnly improves every head most when few anomalies are labelled (γ_la ≤ 25 %); its advantage "
                  "shrinks as more anomalies are labelled."),
    _figure_study("fig6", "Fig. 6", "amount of normal data γ_n",
                  "Below γ_n = 10 % both Deep SAD and AnoOnly deteriorate; from 20 % to 100 % Deep SAD declines "
                  "(especially in AUCPR) while AnoOnly keeps improving with more normal data."),
    _figure_study("fig7", "Fig. 7", "normal loss weight λ_n",
                  "Lowering λ_n from 1 (Deep SAD) towards 10⁻⁶ improves AUCROC and AUCPR markedly; λ_n = 10⁻⁵ or 10⁻⁶ "
                  "is slightly better than AnoOnly itself (λ_n = 0)."),
    PaperElement(PAPER, "fig8", "Fig. 8", "robustness to label noise",
          "With label noise (unlabelled anomalies kept as normal) the base heads lose AUROC (FEAWAD −5.0 %, "
          "DevNet −2.9 %), while with AnoOnly they stay close to their clean-data performance.",
          lambda cfg: grid(cfg, "fig8"), ao.run_one, table_fig8, figure_fig8, _unavailable("fig8")),
    _figure_study("fig9", "Fig. 9 (appendix C.2)", "batch size",
                  "With batch size 1 or 2 AnoOnly's gain is suppressed (biased batch statistics); above 4 it is "
                  "stable, with a negligible decline from 32 to 128."),
]
