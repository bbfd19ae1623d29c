"""AnoOnly's Fig. 4 (AUCPR box plot) and Fig. 10 (t-SNE of inputs and hidden features)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from osad_lib.experiments.anoonly.config import PAPER, SETTINGS, SETTING_AXES, SPLIT_TITLES, anoonly_config
from osad_lib.experiments.anoonly.grids import make_item
from osad_lib.experiments.anoonly.run import limited_threads, train_experiment
from osad_lib.methods.anoonly import (
    HEADS,
)
from osad_lib.profiles import NotebookConfig
from osad_lib.viz import set_theme



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
