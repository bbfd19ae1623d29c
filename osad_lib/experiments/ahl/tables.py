"""Result rows → AHL's tables beside the paper, the paired differences and what ψ learns."""

from __future__ import annotations

from typing import Any

import pandas as pd

from osad_lib import paper
from osad_lib.experiments import dra as xdra
from osad_lib.experiments.paired import paired_differences as paired_table
from osad_lib.experiments.paired import summary_sentence
from osad_lib.methods.ahl.config import BASES
from osad_lib.profiles import NotebookConfig
from osad_lib.results import read_all
from osad_lib.validate import choose
from osad_lib.paper.means import with_subset_means
from osad_lib.experiments.ahl.config import BASE_VARIANT, NOTEBOOK, PAPER



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
    filled = [t for t in tables if len(t)]  # an empty frame's columns would only raise a pandas warning
    table = pd.concat(filled, ignore_index=True) if filled else tables[0]
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
