"""Result rows → AHL's Table 3 beside the paper, the transfer matrices and the heat map."""

from __future__ import annotations


import numpy as np
import pandas as pd

from osad_lib import paper
from osad_lib.profiles import NotebookConfig
from osad_lib.validate import choose
from osad_lib.experiments.cross_domain.config import METHOD_LABELS, METHODS, SETTING



def _measured(cfg: NotebookConfig, paper_id: str) -> pd.DataFrame:
    rows = cfg.store.read()
    return rows[(rows["paper"] == paper_id) & (rows["status"] == "ok") & (rows["setting"] == SETTING)]


def comparison(cfg: NotebookConfig, table_id: str) -> pd.DataFrame:
    """Measured vs paper for ``ahl_table3`` or ``dra_table9`` (:func:`osad_lib.paper.compare`):
    measured cells with paper mean, measured mean/std over seeds, delta; Table 9's KDAD rows of
    the measured targets are kept as paper-only references (KDAD is not run here)."""
    paper_id = choose("table", table_id, ("ahl_table3", "dra_table9")).split("_")[0]
    measured = _measured(cfg, paper_id)
    if measured.empty:
        return pd.DataFrame()
    out = paper.compare(measured, table_id)
    targets = set(zip(measured["dataset"], measured["subset"]))
    reference = (out["method"] == "kdad") & np.array([(d, s) in targets for d, s in zip(out["dataset"], out["subset"])])
    out = out[(out["n_seeds"] > 0) | reference]
    order = (out["metric"] != "auroc").to_numpy().argsort(kind="stable")  # AUROC (the tables' metric) first
    return out.iloc[order].reset_index(drop=True)


def display_table(frame: pd.DataFrame) -> pd.DataFrame:
    """A comparison as target, source, method, paper, measured ("mean ± std"), delta, seeds
    (:func:`osad_lib.paper.shown`); KDAD's reference rows say that they were not run."""
    if frame.empty:
        return frame
    named = frame.assign(source=frame["source"].replace("", "— (trained on the target)"),
                         method=frame["method"].map(lambda m: METHOD_LABELS.get(m, m)))
    view = paper.shown(named, ("dataset", "subset", "source", "method", "metric"), {"subset": "target"})
    view["measured"] = view["measured"].where(frame["n_seeds"].to_numpy() > 0, "not run (paper only)")
    return view


def matrices(cfg: NotebookConfig, metric: str = "auroc") -> pd.DataFrame:
    """Long form of the source × target matrices of the AHL Table 3 rows: ``method``,
    ``dataset``, ``target``, ``source``, ``measured`` (mean over seeds), ``paper`` (AHL Table 3,
    NaN where it has none), ``seeds``."""
    rows = _measured(cfg, "ahl")
    rows = rows[rows["metric"] == metric]
    if rows.empty:
        return pd.DataFrame(columns=["method", "dataset", "target", "source", "measured", "paper", "seeds"])
    rows = rows.assign(target=rows["subset"])
    out = rows.groupby(["method", "dataset", "target", "source"], sort=False)["value"].agg(
        measured="mean", seeds="size").reset_index()
    table = paper.load_table("ahl_table3")
    table = table[table["metric"] == metric]
    ref = pd.DataFrame({"method": table["method"], "dataset": table["dataset"], "target": table["subset"],
                        "source": table["source"], "paper": table["mean"]})
    return out.merge(ref, on=["method", "dataset", "target", "source"], how="left")[
        ["method", "dataset", "target", "source", "measured", "paper", "seeds"]]


def verdict(cfg: NotebookConfig, metric: str = "auroc") -> tuple[pd.DataFrame, str]:
    """Per off-diagonal cell and seed: AHL (DRA) − DRA; per target the mean difference, and one
    sentence on the paper's claim (AHL (DRA) generalises to new domains better than DRA, §4.4)."""
    rows = _measured(cfg, "ahl")
    rows = rows[(rows["metric"] == metric) & (rows["source"] != rows["subset"])]
    wide = rows.pivot_table(index=["dataset", "subset", "source", "seed"], columns="method", values="value")
    if not {"dra", "ahl_dra"} <= set(wide.columns) or wide.dropna().empty:
        return pd.DataFrame(), "DRA and AHL (DRA) were not both run across domains"
    wide = wide.dropna()
    wide["ahl_minus_dra"] = wide["ahl_dra"] - wide["dra"]
    per_target = wide.groupby(level=["dataset", "subset"]).agg(
        dra=("dra", "mean"), ahl_dra=("ahl_dra", "mean"), ahl_minus_dra=("ahl_minus_dra", "mean"),
        cells=("ahl_minus_dra", "size")).reset_index().rename(columns={"subset": "target"})
    cells = wide.groupby(level=["dataset", "subset", "source"])["ahl_minus_dra"].mean()
    sentence = (f"Across domains (off-diagonal cells, mean over seeds) AHL (DRA) is above DRA in "
                f"{int((cells > 0).sum())} of {len(cells)} source → target cells; mean difference "
                f"{cells.mean():+.3f} {metric.upper()} (the paper's Table 3: {_paper_gain(metric):+.3f} over its "
                "20 cells).")
    return per_target, sentence


def _paper_gain(metric: str) -> float:
    table = paper.load_table("ahl_table3")
    table = table[(table["metric"] == metric) & (table["source"] != table["subset"])]
    wide = table.pivot_table(index=["subset", "source"], columns="method", values="mean")
    return float((wide["ahl_dra"] - wide["dra"]).mean())


# --------------------------------------------------------------------------------------------
# figure


def heatmap_figure(frame: pd.DataFrame, title: str = ""):
    """Source × target heat-maps (row = target, column = source, as AHL Table 3): the first row of
    panels is measured — DRA, AHL (DRA) and their difference AHL (DRA) − DRA — and, when the paper
    has the cells, a second row shows the paper's (AHL Table 3) below them. Same-domain cells are
    outlined. ``frame``: :func:`matrices`. Returns a matplotlib Figure, or None when empty."""
    import matplotlib.pyplot as plt

    if frame.empty:
        return None
    order = list(dict.fromkeys(frame["source"].tolist() + frame["target"].tolist()))
    found = [m for m in METHODS if m in set(frame["method"])]
    sources = ("measured", "paper") if frame["paper"].notna().any() else ("measured",)
    rows = []
    for column in sources:
        grids = {m: frame[frame["method"] == m].pivot_table(index="target", columns="source", values=column)
                 .reindex(index=order, columns=order) for m in found}
        panels = [(f"{METHOD_LABELS[m]}: {column}", grids[m], False) for m in found]
        if len(found) == 2:
            panels.append((f"AHL (DRA) − DRA: {column}", grids["ahl_dra"] - grids["dra"], True))
        rows.append(panels)
    size = 0.6 * len(order) + 2.0
    fig, axes = plt.subplots(len(rows), len(rows[0]), figsize=(len(rows[0]) * (size + 0.9), len(rows) * size),
                             squeeze=False)
    for ax, (name, grid, delta) in zip(axes.flat, [p for r in rows for p in r]):
        values = grid.to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        if delta:
            bound = max(float(np.abs(finite).max()) if finite.size else 0.0, 0.01)
            image = ax.imshow(values, cmap="RdBu", vmin=-bound, vmax=bound)
            dark = lambda v, b=bound: abs(v) > 0.6 * b  # noqa: E731
        else:
            low = min(0.5, float(finite.min()) if finite.size else 0.5)
            image = ax.imshow(values, cmap="viridis", vmin=low, vmax=1.0)
            dark = lambda v, lo=low: v < lo + 0.6 * (1.0 - lo)  # noqa: E731
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(j, i, f"{v:+.2f}" if delta else f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if dark(v) else "black")
        for k in range(len(order)):
            ax.add_patch(plt.Rectangle((k - 0.5, k - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.5))
        ax.set_xticks(range(len(order)), order, rotation=45, ha="right")
        ax.set_yticks(range(len(order)), order)
        ax.set_xlabel("source domain (trained on)")
        ax.set_ylabel("target domain (tested on)")
        ax.set_title(name, fontsize=9)
        ax.grid(False)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="AUROC difference" if delta else "AUROC")
    fig.suptitle(title or "Cross-domain AUROC: row = target, column = source (outlined: same domain)", fontsize=10)
    fig.tight_layout()
    return fig
