"""Result rows → DRA's tables beside the paper, faithful vs clean, the per-head scores and the
paired comparison with DevNet."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from osad_lib import paper
from osad_lib.metrics import image_auroc
from osad_lib.experiments.paired import paired_differences, summary_sentence
from osad_lib.methods.dra import DRAConfig
from osad_lib.profiles import NotebookConfig
from osad_lib.paper.means import with_subset_means
from osad_lib.experiments.dra.config import (
    NOTEBOOK, dra_config, grid_option, other_mode, variant_label,
)



def comparison(cfg: NotebookConfig, table: str) -> pd.DataFrame:
    """Measured vs paper for ``table`` (``table1``, ``table2``, ``table7``, ``table8``): rows that
    were measured, with paper mean/std, measured mean/std over seeds, delta and n_seeds."""
    measured = cfg.store.read()
    source = {"table7": "table1", "table8": "table2"}.get(table, table)
    measured = with_subset_means(measured[(measured["paper"] == "dra") & (measured["table"] == source)])
    if measured.empty:
        return pd.DataFrame()
    measured = measured.assign(table=table)
    if table in ("table7", "table8"):  # the appendix shot count and the appendix table's methods
        methods = set(paper.load_table(f"dra_{table}")["method"])
        measured = measured[(measured["n_shots"] == grid_option(cfg, "appendix_n_shots"))
                            & measured["method"].isin(methods)]
    out = paper.compare(measured, f"dra_{table}")
    out = out[(out["n_seeds"] > 0) & (out["paper_mean"].notna() | (out["dataset"] == "synthetic"))]
    order = (out["metric"] != "auroc").to_numpy().argsort(kind="stable")  # AUROC rows first
    return out.iloc[order].reset_index(drop=True)


def display_table(frame: pd.DataFrame) -> pd.DataFrame:
    """A compact view (:func:`osad_lib.paper.shown`): keys, ``paper`` and ``measured`` as
    "mean ± std", delta, seeds."""
    return paper.shown(frame, ("dataset", "subset", "n_shots", "method", "variant", "metric"), {"n_shots": "shots"})


def _paper_difference(table_id: str, treatment: str, control: str) -> Any:
    """``key -> paper treatment − control`` for (dataset, subset, setting, n_shots) keys of a paper
    table (NaN where the paper lacks either row)."""
    table = paper.load_table(table_id)
    table = table[(table["metric"] == "auroc") & (table["variant"].fillna("") == "")]

    def diff(key: tuple) -> float:
        dataset, subset, setting, n_shots = key
        sel = table[(table["dataset"] == dataset) & (table["subset"].fillna("") == subset)
                    & (table["n_shots"] == n_shots)]
        values = sel.groupby("method")["mean"].first()
        return float(values[treatment] - values[control]) if {treatment, control} <= set(values.index) else np.nan

    return diff


def dra_vs_devnet(cfg: NotebookConfig, metric: str = "auroc") -> tuple[pd.DataFrame, str]:
    """DRA (the profile's mode) − DevNet per split, paired over seeds (:mod:`osad_lib.experiments.paired`):
    general and hard settings, each hard seen class and their per-seed mean (``subset`` ``mean``).
    The paper's claim (§4.3–4.4): DRA beats DevNet, most of all on unseen classes (hard setting).
    Returns the table and the verdict sentences."""
    rows = cfg.store.read()
    rows = rows[(rows["paper"] == "dra") & (rows["metric"] == metric)]
    rows = with_subset_means(rows[rows["status"] == "ok"])
    paper_diffs = {"general": _paper_difference("dra_table1", "dra", "devnet"),
                   "hard": _paper_difference("dra_table2", "dra", "devnet")}
    table = paired_differences(rows, ("dra", variant_label(dra_config(cfg))), ("devnet", ""),
                               paper_diff=lambda key: paper_diffs[key[2]](key), names=("DRA", "DevNet"))
    table = table.sort_values(["setting", "dataset", "n_shots", "subset"], kind="stable").reset_index(drop=True)
    return table, summary_sentence(table, _where)


def _where(row: pd.Series) -> str:
    place = "/".join(p for p in (row["dataset"], row["subset"]) if p)
    seen = " (mean over seen classes)" if row["subset"].endswith("mean") else ""
    return f"{place}, {row['setting']} {int(row['n_shots'])}-shot{seen}"


# --------------------------------------------------------------------------------------------
# faithful vs clean (docs/official_code/dra.md "Where the code departs from the paper",
# items 1 and 4)


def mode_differences(config: DRAConfig) -> str:
    """What differs between the faithful and the clean run of ``config`` (:class:`DRAConfig`),
    with the epochs at which each mode's learning rate decays under this schedule."""
    faithful = [e for e in range(config.epochs) if (e + 1) % config.lr_step_size == 0]  # StepLR at epoch start
    clean = [e for e in range(1, config.epochs) if e % config.lr_step_size == 0]  # StepLR at epoch end

    def decay(epochs: list[int]) -> str:
        return (f"the LR decays at epoch {'/'.join(map(str, epochs))}" if epochs
                else f"the LR never decays within {config.epochs} epochs")

    return ("faithful (default, the official code): references = fresh random training normals drawn through the "
            "training pipeline (about half become pseudo anomalies, all rotated) at every step and every test batch, "
            f"{decay(faithful)}; clean (the paper's text): a fixed set of {config.n_ref} un-augmented training "
            f"normals chosen once by the seed, deterministic scoring, {decay(clean)}.")


def mode_comparison(cfg: NotebookConfig, metric: str = "auroc") -> tuple[pd.DataFrame, str]:
    """DRA clean − faithful on the same splits and seeds (``clean_runs``), paired over seeds
    (:mod:`osad_lib.experiments.paired`): the table and its verdict sentences."""
    rows = cfg.store.read()
    config = dra_config(cfg)
    faithful, clean = (config, other_mode(config)) if config.mode == "faithful" else (other_mode(config), config)
    rows = rows[(rows["method"] == "dra") & (rows["metric"] == metric)]
    table = paired_differences(rows, ("dra", variant_label(clean)), ("dra", variant_label(faithful)),
                               names=("clean", "faithful"))
    if table.empty:
        return table, "no pair of faithful and clean DRA runs yet (grid key clean_runs)"
    return table, summary_sentence(table, _where)


# --------------------------------------------------------------------------------------------
# per-head scores: what each head detects

GROUP_COLORS = {"normal": "#2ca02c", "seen": "#ff7f0e", "unseen": "#d62728"}
SCORE_COLUMNS = ("holistic", "seen", "pseudo", "composite", "score")


def score_runs(cfg: NotebookConfig, setting: str = "hard") -> pd.DataFrame:
    """Stored DRA runs (the profile's mode) of the first seed in ``setting`` whose per-image
    scores were written: one row per run with ``dataset``, ``subset``, ``n_shots`` and the scores
    file ``path``."""
    rows = cfg.store.read()
    rows = rows[(rows["method"] == "dra") & (rows["setting"] == setting) & (rows["status"] == "ok")
                & (rows["seed"] == cfg.seeds[0]) & (rows["metric"] == "auroc")
                & (rows["variant"] == variant_label(dra_config(cfg)))]
    runs = rows[["dataset", "subset", "n_shots", "experiment_id"]].drop_duplicates().copy()
    runs["path"] = [cfg.runs_dir / "scores" / NOTEBOOK / f"{e}.csv" for e in runs["experiment_id"]]
    return runs[[p.is_file() for p in runs["path"]]].reset_index(drop=True)


def head_detection_table(cfg: NotebookConfig, setting: str = "hard") -> pd.DataFrame:
    """Per head, AUROC of test normals against held-out *seen*-class anomalies and against
    *unseen*-class anomalies, averaged over the first seed's runs (the holistic head's score is
    negated: it scores normality). The paper's argument (§3.2): the seen head catches seen
    anomalies, the pseudo and residual heads generalise to unseen ones."""
    out = []
    for run in score_runs(cfg, setting).itertuples():
        frame = pd.read_csv(run.path)
        normal = frame[frame["group"] == "normal"]
        for group in ("seen", "unseen"):
            anomalies = frame[frame["group"] == group]
            if anomalies.empty:
                continue
            labels = np.r_[np.zeros(len(normal)), np.ones(len(anomalies))]
            for head in [c for c in SCORE_COLUMNS if c in frame]:
                sign = -1.0 if head == "holistic" else 1.0
                values = sign * np.r_[normal[head].to_numpy(), anomalies[head].to_numpy()]
                out.append({"dataset": run.dataset, "subset": run.subset, "n_shots": run.n_shots,
                            "anomalies": group, "head": head, "auroc": image_auroc(labels, values)})
    if not out:
        return pd.DataFrame()
    table = pd.DataFrame(out).groupby(["anomalies", "head"], sort=False)["auroc"].agg(["mean", "std", "size"])
    return table.rename(columns={"size": "runs"}).reset_index()


def head_score_histograms(cfg: NotebookConfig, max_runs: int = 2, setting: str = "hard") -> Any:
    """Histograms of each head's scores (and the final score) for test normals, held-out
    seen-class anomalies and unseen-class anomalies, for up to ``max_runs`` first-seed runs.
    Returns the matplotlib Figure, or None when no scores are stored."""
    import matplotlib.pyplot as plt

    runs = score_runs(cfg, setting).head(max_runs)
    if runs.empty:
        return None
    frames = [pd.read_csv(p) for p in runs["path"]]
    heads = [c for c in SCORE_COLUMNS if c in frames[0]]
    fig, axes = plt.subplots(len(frames), len(heads), figsize=(2.6 * len(heads), 2.3 * len(frames)), squeeze=False)
    for row, (run, frame) in enumerate(zip(runs.itertuples(), frames)):
        for col, head in enumerate(heads):
            ax = axes[row, col]
            bins = np.histogram_bin_edges(frame[head], bins=30)
            for group, color in GROUP_COLORS.items():
                values = frame.loc[frame["group"] == group, head]
                if len(values):
                    ax.hist(values, bins=bins, density=True, alpha=0.45, color=color, label=f"{group} ({len(values)})")
            ax.set_title(f"{run.dataset} seen={run.subset}: {head}", fontsize=8)
            ax.set_xlabel("score (final = −holistic + seen + pseudo + composite)" if head == "score" else f"{head} head score",
                          fontsize=7)
            ax.set_ylabel("density", fontsize=7)
            if col == 0:
                ax.legend(fontsize=6)
    fig.suptitle(f"DRA per-head scores, {setting} setting, seed {cfg.seeds[0]} ({cfg.profile.name} profile)")
    fig.tight_layout()
    return fig


def explorer_frame(scores: pd.DataFrame) -> pd.DataFrame:
    """A scores file of :func:`run_dra` as the score frame of :mod:`osad_lib.plots` (columns
    ``score``, ``label``, ``class``, ``kind``, ``path`` and ``score_<head>`` per DRA head), for
    ``widgets.score_explorer``."""
    frame = pd.DataFrame({"score": scores["score"], "label": scores["label"].astype(int),
                          "class": scores["anomaly_class"], "kind": scores["group"], "path": scores["path"]})
    for head in [c for c in SCORE_COLUMNS if c != "score" and c in scores]:
        frame[f"score_{head}"] = scores[head]
    return frame


def explorer_run(cfg: NotebookConfig) -> tuple[pd.DataFrame, str]:
    """The score frame (:func:`explorer_frame`) of one trained DRA run — the first stored
    first-seed run of the hard setting (test normals, held-out seen-class anomalies and unseen
    classes), else of the general setting — and a title naming it; an empty frame when none."""
    for setting in ("hard", "general"):
        runs = score_runs(cfg, setting)
        if len(runs):
            run = runs.iloc[0]
            where = f"{run['dataset']} hard seen={run['subset']}" if setting == "hard" else f"{run['dataset']} general"
            title = f"DRA, {where}, {run['n_shots']}-shot, seed {cfg.seeds[0]} ({cfg.profile.name})"
            return explorer_frame(pd.read_csv(run["path"], keep_default_na=False)), title
    return pd.DataFrame(), "no DRA scores stored yet"
