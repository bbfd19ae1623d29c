"""The report's two figures: measured − paper per cell, and each table's cells by outcome."""

from __future__ import annotations

import numpy as np
import pandas as pd

from osad_lib import paper, viz
from osad_lib.report.rules import TOLERANCE

#: Colour of each paper in figures: the colour of the paper's own method (``viz.METHOD_COLORS``).
PAPER_COLORS = {p: viz.METHOD_COLORS[m] for p, m in
                (("devnet", "devnet"), ("dra", "dra"), ("bgad", "bgad"), ("anoonly", "anoonly"), ("ahl", "ahl_dra"))}


def delta_figure(cells: pd.DataFrame, tolerance: float = TOLERANCE):
    """Strip plot of measured − paper per paper (primary versions): filled = paper settings,
    hollow = substitute settings; the band is ±``tolerance``."""
    import matplotlib.pyplot as plt

    m = cells[cells["primary"] & (cells["n_seeds"] > 0)]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.axhspan(-tolerance, tolerance, color="0.9", zorder=0, label=f"±{tolerance:g} tolerance")
    ax.axhline(0, color="0.4", lw=0.8)
    rng = np.random.default_rng(0)
    for i, p_id in enumerate(paper.PAPERS):
        mine = m[m["paper"] == p_id]
        differ = mine["settings_differ"].astype("boolean").fillna(False).to_numpy()
        x = i + rng.uniform(-0.25, 0.25, len(mine))
        color = PAPER_COLORS[p_id]
        ax.scatter(x[~differ], mine["delta"].to_numpy()[~differ], s=14, color=color, alpha=0.8)
        ax.scatter(x[differ], mine["delta"].to_numpy()[differ], s=14, facecolors="none", edgecolors=color, alpha=0.8)
    ax.scatter([], [], s=14, color="0.3", label="paper settings")
    ax.scatter([], [], s=14, facecolors="none", edgecolors="0.3", label="substitute settings")
    counts = m.groupby("paper").size()
    ax.set_xticks(range(len(paper.PAPERS)),
                  [f"{p}\n({int(counts.get(p, 0))} cells)" for p in paper.PAPERS])
    ax.set_xlim(-0.6, len(paper.PAPERS) - 0.4)
    ax.set_xlabel("paper")
    ax.set_ylabel("measured − paper (AUC, [0, 1] scale)")
    ax.set_title("Measured minus published value per table cell (primary version)")
    if m.empty:
        ax.set_ylim(-0.1, 0.1)
        ax.text(0.5, 0.5, "no measured cell yet: run notebooks 01–07 first", transform=ax.transAxes,
                ha="center", va="center", color="0.3")
    ax.legend(loc="upper right", fontsize=7, frameon=True)
    fig.tight_layout()
    return fig


_STATUS_PARTS = (("reproduced", "#2ca02c"), ("within tolerance, substitute settings", "#98df8a"),
                 ("outside tolerance", "#d62728"), ("not measured", "#dddddd"))


def status_figure(card: pd.DataFrame):
    """Per table, the share of its cells reproduced / within tolerance on substitute settings /
    outside tolerance / not measured (horizontal stacked bars, tables in index order)."""
    import matplotlib.pyplot as plt

    shares = pd.DataFrame({
        "reproduced": card["reproduced"],
        "within tolerance, substitute settings": card["within_tolerance"] - card["reproduced"],
        "outside tolerance": card["measured"] - card["within_tolerance"],
        "not measured": card["cells"] - card["measured"],
    }).div(card["cells"].clip(lower=1), axis=0)
    fig, ax = plt.subplots(figsize=(8, 0.8 + 0.22 * len(card)))
    left = np.zeros(len(card))
    y = np.arange(len(card))
    for name, color in _STATUS_PARTS:
        ax.barh(y, shares[name], left=left, color=color, label=name, height=0.8)
        left += shares[name].to_numpy()
    ax.set_yticks(y, [f"{t} ({s})" for t, s in zip(card["table_id"], card["status"])], fontsize=6)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the table's cells")
    ax.set_ylabel("paper table (status)")
    ax.set_title("Reproduction scorecard: cells per paper table")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    fig.tight_layout()
    return fig


__all__ = ["PAPER_COLORS", "delta_figure", "status_figure"]
