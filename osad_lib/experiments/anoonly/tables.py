"""Result rows → AnoOnly's Tables 1, 3, 4 beside the paper, the paired gains, the fidelity
bands and the verdict."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from osad_lib import paper
from osad_lib.data.tabular import (
    GROUPS,
    SPLITS,
    adbench_split,
    group_of,
    leakage,
    load_npz,
)
from osad_lib.experiments.anoonly.config import (
    IMAGE_TABLE, PAPER, SETTINGS, SETTING_LABELS, SPLIT_TITLES, TABLE_OF_METRIC, anoonly_config,
)
from osad_lib.experiments.anoonly.grids import selected_stems
from osad_lib.experiments.anoonly.run import required_file
from osad_lib.methods.anoonly import (
    HEADS,
)
from osad_lib.paper.means import subset_means
from osad_lib.profiles import NotebookConfig
from osad_lib.results import variant_params



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


def row_params(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Each row's variant parameters, from its ``params``: ``anomaly_only``, a fidelity row's
    ``factor``, an ablation's swept value under its name (``la``, ``normal_weight``, …). A row
    stored before that column existed has them read from its ``variant`` label as the grids wrote
    it (``"anoonly,la=0.05"``; a fidelity row's label is its factor)."""
    stored = rows["params"] if "params" in rows.columns else pd.Series("", index=rows.index)
    return [variant_params(p) or _label_params(v, t) for p, v, t in zip(stored, rows["variant"], rows["table"])]


def _label_params(variant: str, table: str) -> dict[str, Any]:
    rest = variant.removeprefix("anoonly").lstrip(",")
    params: dict[str, Any] = {"anomaly_only": variant.startswith("anoonly")}
    if table == "fidelity":
        return {**params, "factor": rest}
    key, _, value = rest.partition("=")
    if key:
        try:
            params[key] = float(value)
        except ValueError:
            params[key] = value
    return params


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
    params = row_params(fac)
    fac["factor"] = [p.get("factor", "") for p in params]
    fac["variant"] = ["anoonly" if p["anomaly_only"] else "" for p in params]
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
        X, y = load_npz(required_file(stem, ac.adbench_dir))
        rec: dict[str, Any] = {"dataset": group.name, "file": stem, "rows": len(y)}
        for split, title in SPLIT_TITLES.items():
            made = adbench_split(X, y, seed, split=split, la=ac.la)
            leak = leakage(made)
            rec[f"{title}: test rows"] = len(made.y_test)
            rec[f"{title}: shared"] = leak["shared_rows"]
            rec[f"{title}: shared labelled"] = leak["shared_labeled"]
        recs.append(rec)
    return pd.DataFrame(recs)
