"""Result rows → BGAD's tables beside the paper (last epoch and max over epochs), the cost
table, Fig. 3's epoch curves and Fig. 4's localization maps."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from osad_lib import experiments, paper
from osad_lib.data.registry import subset_info
from osad_lib.experiments import GridItem
from osad_lib.methods.bgad.model import (
    BGADConfig,
)
from osad_lib.paper.means import with_subset_means
from osad_lib.profiles import NotebookConfig
from osad_lib.results import MAX_OVER_EPOCHS_SUFFIX, read_all
from osad_lib.validate import ConfigError, choose
from osad_lib.viz import METHOD_COLORS
from osad_lib.experiments.bgad.config import IMAGE_METRICS, METHODS, PIXEL_METRICS, REPORTS
from osad_lib.experiments.bgad.grids import item_cost
from osad_lib.experiments.bgad.run import run_files



def report_view(rows: pd.DataFrame, report: str = "last_epoch") -> pd.DataFrame:
    """Canonical metric rows of one report: the last epoch (honest) or the per-metric maximum
    over epochs selected on the test set (faithful to the official numbers), with ``report`` set."""
    choose("report", report, REPORTS)
    canonical = IMAGE_METRICS + PIXEL_METRICS
    if report == "last_epoch":
        view = rows[rows["metric"].isin(canonical)].copy()
    else:
        view = rows[rows["metric"].isin([m + MAX_OVER_EPOCHS_SUFFIX for m in canonical])].copy()
        view["metric"] = view["metric"].str.removesuffix(MAX_OVER_EPOCHS_SUFFIX)
    view["report"] = report
    return view.reset_index(drop=True)


def comparison(rows: pd.DataFrame, table: str) -> pd.DataFrame:
    """Paper vs measured for ``bgad_<table>``: both reports side by side.

    Columns: keys, ``paper_mean``/``paper_std``, ``last_mean``/``last_std``/``delta_last``
    (last epoch, honest), ``max_mean``/``max_std``/``delta_max`` (max over epochs, faithful),
    ``n_seeds``, ``deviations``. Paper rows of measured datasets are kept with their baselines;
    for a dataset without paper rows (synthetic) the paper's BGAD rows of the table's mean (or
    single-subset) cells are the reference; with nothing measured, the paper's BGAD rows.
    Rows of the papers whose cells the table reprints (``paper.SHARED_CELLS``: 02_dra's rows for
    Table 3, :func:`with_shared_rows`) fill those cells.
    """
    own = rows[(rows["paper"] == "bgad") & (rows["table"] == table)]
    mine = pd.concat([own, rows[rows["paper"].isin(paper.SHARED_CELLS.get(f"bgad_{table}", ()))]])
    views = {r: paper.compare(with_subset_means(report_view(mine, r)), f"bgad_{table}") for r in REPORTS}
    keys = list(paper.DEFAULT_KEYS)
    last = views["last_epoch"].rename(columns={"measured_mean": "last_mean", "measured_std": "last_std",
                                               "delta": "delta_last"})
    best = views["max_over_epochs"][keys + ["measured_mean", "measured_std", "delta"]].rename(
        columns={"measured_mean": "max_mean", "measured_std": "max_std", "delta": "delta_max"})
    out = last.merge(best, on=keys, how="left")
    measured = set(own["dataset"]) | set(out.loc[out["n_seeds"].fillna(0) > 0, "dataset"])  # shared rows: table cells only
    ours = out["method"].isin(METHODS)
    keep = out["dataset"].isin(measured) if measured else ours
    if measured - set(paper.load_table(f"bgad_{table}")["dataset"]):
        keep |= ours & out["subset"].isin(["mean", ""])
    cols = keys + ["paper_mean", "paper_std", "last_mean", "last_std", "delta_last", "max_mean", "max_std",
                   "delta_max", "n_seeds", "deviations"]
    return out.loc[keep, cols].reset_index(drop=True)


def with_shared_rows(cfg: NotebookConfig, rows: pd.DataFrame, table: str) -> pd.DataFrame:
    """``rows`` plus the rows other notebooks stored under the profile for the papers whose cells
    ``bgad_<table>`` reprints (``paper.SHARED_CELLS``; Table 3: DRA's, from 02_dra)."""
    shared = paper.SHARED_CELLS.get(f"bgad_{table}", ())
    if not shared:
        return rows
    others = read_all(cfg.profile.name, cfg.output_dir)
    others = others[others["paper"].isin(shared) & (others["profile"] == cfg.profile.name)]
    return pd.concat([rows, others], ignore_index=True) if len(others) else rows


def display_table(comp: pd.DataFrame) -> pd.DataFrame:
    """A readable version of :func:`comparison`: ``mean ± std`` strings, one row per key."""
    return pd.DataFrame({
        "dataset": comp["dataset"], "subset": comp["subset"], "setting": comp["setting"],
        "n_shots": comp["n_shots"], "method": comp["method"], "metric": comp["metric"],
        "paper": paper.mean_std_text(comp, "paper"),
        "measured (last epoch)": paper.mean_std_text(comp, "last"),
        "Δ last": comp["delta_last"].round(3),
        "measured (max over epochs, faithful)": paper.mean_std_text(comp, "max"),
        "Δ max": comp["delta_max"].round(3),
        "seeds": comp["n_seeds"],
    })


def cost_table(cfg: NotebookConfig, items: Sequence[GridItem]) -> pd.DataFrame:
    """Training time, evaluation time and memory per class (dataset/subset × method × shots),
    mean over the seeds whose details were written (:func:`run_files`)."""
    records = []
    for item in items:
        path = run_files(cfg, item)[0]
        if path.is_file():
            e, d = item.experiment, json.loads(path.read_text())
            records.append({"dataset": e.dataset, "subset": e.subset, "method": e.method, "n_shots": e.n_shots,
                            "device": e.device, "memory": d["memory_kind"],
                            **{k: d[k] for k in ("train_time_s", "eval_time_s", "peak_memory_mb", "feature_cache_mb")}})
    if not records:
        return pd.DataFrame(columns=["dataset", "subset", "method", "n_shots", "device", "memory", "train_time_s"])
    keys = ["dataset", "subset", "method", "n_shots", "device", "memory"]
    return pd.DataFrame(records).groupby(keys, as_index=False).mean().round(2)


def localization_maps(cfg: NotebookConfig, items: Sequence[GridItem]) -> dict[str, Path]:
    """Fig. 4 inputs: per method, the saved maps of the first dataset of the grid that has pixel
    masks (first seed)."""
    with_masks = [i for i in items if subset_info(i.experiment.extra_key["name"]).has_masks
                  and i.experiment.seed == cfg.seeds[0]]
    if not with_masks:
        return {}
    name = with_masks[0].experiment.extra_key["name"]
    return {i.experiment.method: run_files(cfg, i)[1] for i in with_masks
            if i.experiment.extra_key["name"] == name and i.experiment.table == with_masks[0].experiment.table}


def explorer_inputs(path: Path) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray | None] | None:
    """The score explorer's inputs (``widgets.score_explorer(scores, images, maps, masks)``) of
    one run, from its maps file (:func:`run_files`, written by :func:`save_maps`); None when
    the file is missing or predates the saved test scores.

    ``scores``: the score frame of :mod:`osad_lib.plots` — every test image with its score
    (map maximum), ``class`` (its folder), ``kind`` (``seen`` = class of a labelled
    anomaly, else ``unseen``; unsupervised BGAD sees none), ``path`` and ``map_index``.
    ``images``/``maps``/``masks``: the images with a kept map (Fig. 4's anomalies, then a few
    normals); ``masks`` is None for datasets without pixel masks.
    """
    if not _has_test_scores(path):
        return None
    with np.load(path) as npz:
        data = dict(npz)
    paths, labels = data["test_paths"].astype(str), data["test_labels"].astype(int)
    classes = [Path(p).parent.name if label else "good" for p, label in zip(paths, labels)]
    seen = set(data["seen_classes"].astype(str))
    kept = {p: i for i, p in enumerate([*data["paths"].astype(str), *data["normal_paths"].astype(str)])}
    scores = pd.DataFrame({
        "score": data["test_scores"].astype(float), "label": labels, "class": classes,
        "kind": ["normal" if not label else "seen" if c in seen else "unseen" for c, label in zip(classes, labels)],
        "path": paths, "map_index": [kept.get(p, -1) for p in paths],
    })
    images = np.concatenate([data["images"], data["normal_images"]])
    maps = np.concatenate([data["maps"], data["normal_maps"]])
    normal_masks = np.zeros((len(data["normal_images"]), *data["masks"].shape[1:]), data["masks"].dtype)
    masks = np.concatenate([data["masks"], normal_masks]) if data["masks"].any() else None
    return scores, images, maps, masks


def _has_test_scores(path: Path) -> bool:
    if not path.is_file():
        return False
    with np.load(path) as npz:
        return "test_scores" in npz.files


def explorer_run(cfg: NotebookConfig, items: Sequence[GridItem]) -> GridItem | None:
    """The run the notebook's score explorer shows: a first-seed run with saved test scores
    (:func:`explorer_inputs`), preferring a dataset with pixel masks, then BGAD-FAS, then the
    fewest labelled anomalies (the most unseen anomaly classes)."""
    saved = [i for i in items if i.experiment.seed == cfg.seeds[0]
             and _has_test_scores(run_files(cfg, i)[1])]

    def preference(item: GridItem) -> tuple[bool, bool, int]:
        e = item.experiment
        return not subset_info(e.extra_key["name"]).has_masks, e.method != "bgad_fas", e.n_shots

    return min(saved, key=preference, default=None)


_EPOCH = re.compile(r"^(?P<metric>\w+)@epoch(?P<epoch>\d+)$")


def epoch_curves(rows: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch metrics (Fig. 3) as tidy rows: dataset, subset, method, seed, metric, epoch, value."""
    parsed = rows["metric"].str.extract(_EPOCH)
    keep = parsed["metric"].notna()
    out = rows.loc[keep, ["table", "dataset", "subset", "method", "n_shots", "seed", "value"]].copy()
    out["metric"] = parsed.loc[keep, "metric"]
    out["epoch"] = parsed.loc[keep, "epoch"].astype(int)
    return out.reset_index(drop=True)


def plot_epoch_curves(rows: pd.DataFrame, metrics: Sequence[str] = ("auroc", "pixel_auroc")):
    """Fig. 3: test AUROC after every meta epoch, mean ± std over seeds, per dataset, method and shots."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    curves = epoch_curves(rows)
    curves = curves[curves["metric"].isin(metrics)]
    panels = list(curves.groupby(["dataset", "subset", "metric"]).groups)
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(3.6 * max(len(panels), 1), 3), squeeze=False)
    for ax, (dataset, subset, metric) in zip(axes[0], panels):
        part = curves[(curves["dataset"] == dataset) & (curves["subset"] == subset) & (curves["metric"] == metric)]
        for (method, shots), group in part.groupby(["method", "n_shots"]):
            stats = group.groupby("epoch")["value"].agg(["mean", "std"]).fillna(0)
            color = METHOD_COLORS.get(method)
            ax.plot(stats.index, stats["mean"], "--" if method == "bgad" else "-", marker="o" if shots <= 1 else "s",
                    color=color, label=f"{method} ({shots}-shot)")
            ax.fill_between(stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"], color=color, alpha=0.15)
        ax.set_title(f"{dataset}{'/' + subset if subset else ''}: {metric}")
        ax.set_xlabel("meta epoch")
        ax.set_ylabel(metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    fig.tight_layout()
    return fig


def plot_localization(paths_by_method: dict[str, Path], n: int = 4):
    """Fig. 4: anomalous test images (those every method was tested on) with the ground truth
    (red contour) and each method's anomaly map (one colour scale per method)."""
    import matplotlib.pyplot as plt

    if not paths_by_method:  # no run on a dataset with pixel masks (e.g. its data are missing)
        return experiments.note_figure("no anomaly maps: no run on a dataset with pixel masks")
    loaded = {m: dict(np.load(p)) for m, p in paths_by_method.items() if p.is_file()}
    if not loaded:
        raise ConfigError("no saved anomaly maps found; run the grid first (maps are kept for the first seed)")
    first = next(iter(loaded.values()))
    common = [p for p in first["paths"] if all(p in d["paths"] for d in loaded.values())][:n]
    index = {m: {p: i for i, p in enumerate(d["paths"])} for m, d in loaded.items()}
    cols, rows = max(len(common), 1), 1 + len(loaded)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.2 * rows), squeeze=False)
    for j, path in enumerate(common):
        k = index[next(iter(loaded))][path]
        image = first["images"][k].transpose(1, 2, 0)
        axes[0, j].imshow(image)
        axes[0, j].set_title(Path(str(path)).parent.name, fontsize=8)
        if first["masks"][k].any():
            axes[0, j].contour(first["masks"][k][0], levels=[0.5], colors="red", linewidths=1)
        for i, (method, data) in enumerate(loaded.items(), start=1):
            low, high = np.percentile(data["maps"], [1, 99.5])
            axes[i, j].imshow(image)
            axes[i, j].imshow(data["maps"][index[method][path]], cmap="jet", alpha=0.5, vmin=low, vmax=high)
            axes[i, 0].set_ylabel(method)
    axes[0, 0].set_ylabel("ground truth")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def run_cost(name: str, n_shots: int, config: BGADConfig, max_train_normals: int = 0) -> tuple[int, int]:
    """(training feature maps through the flows, images evaluated) of one run on registry dataset
    ``name`` — a :class:`GridItem`'s cost, for grids built outside this module (notebook 06)."""
    return item_cost(subset_info(name), n_shots, config, max_train_normals)
