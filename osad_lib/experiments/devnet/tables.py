"""Result rows → DevNet's tables beside the paper, Figs. 4 and 5, and the score explorer's inputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import wilcoxon

from osad_lib import experiments, explain, paper
from osad_lib.data.protocols import Split
from osad_lib.data.registry import (
    dataset_names,
    resolve,
    subset_info,
)
from osad_lib.data.tensors import load_split
from osad_lib.paper.means import with_subset_means
from osad_lib.profiles import NotebookConfig
from osad_lib.validate import ConfigError, choose
from osad_lib.viz import METHOD_COLORS
from osad_lib.experiments.devnet.config import PAPER
from osad_lib.experiments.devnet.grids import grid
from osad_lib.experiments.devnet.run import METHODS, artifact_file, registry_name
from osad_lib.experiments.devnet.config import method_tables
from osad_lib.experiments.devnet.grids import table_runs
from osad_lib.experiments.devnet.config import method_config
from osad_lib.experiments.devnet.config import method_deviations
from osad_lib.experiments.devnet.config import row_shots
from osad_lib.experiments.devnet.config import table_shots



def _rows(cfg: NotebookConfig, table: str, metric: str) -> pd.DataFrame:
    rows = cfg.store.read()
    return rows[(rows["paper"] == PAPER) & (rows["table"] == table) & (rows["metric"] == metric)
                & (rows["status"] == "ok")].copy()


#: Columns of :func:`paper_table`.
PAPER_TABLE_COLUMNS = ("dataset", "subset", "setting", "n_shots", "method", "metric", "paper", "measured", "delta",
                       "n_seeds", "within_spread", "settings_differ", "note", "paper_mean", "measured_mean",
                       "deviations")


def paper_table(cfg: NotebookConfig, table: str) -> pd.DataFrame:
    """Paper vs measured for ``table2`` | ``table3`` | ``table4`` on the measured datasets, with deltas.

    Table 4 (pixel AUROC) takes the ``pixel_auroc`` rows of the general-setting runs on datasets
    with masks (Table 2 runs) and of the localization runs. Saved as ``devnet_<table>`` (CSV + MD).
    ``note`` says what a row without both numbers is (:func:`row_note`).
    """
    table = choose("table", table, ("table2", "table3", "table4"))
    if table == "table4":
        rows = pd.concat([_rows(cfg, "table2", "pixel_auroc"), _rows(cfg, "table4", "pixel_auroc")], ignore_index=True)
        rows["table"] = "table4"
    else:
        rows = with_subset_means(_rows(cfg, table, "auroc"))
    joined = paper.compare(rows, f"devnet_{table}")
    if rows.empty:  # nothing ran (its data are missing): the paper's rows of the profile's datasets
        joined = joined[joined["dataset"].isin({subset_info(n).dataset for n in dataset_names(cfg.profile.image_datasets)})]
    else:
        joined = joined[joined["dataset"].isin(set(rows["dataset"]))]
        if table == "table3":
            joined = joined[joined["subset"].isin(set(rows["subset"]))]
        joined = joined[joined["n_shots"].isna() | joined["n_shots"].isin([0, *set(rows["n_shots"].astype(int))])]
    out = joined.assign(paper=paper.mean_std_text(joined, "paper"), measured=paper.mean_std_text(joined, "measured"))
    out["note"] = [row_note(p, n) for p, n in zip(out["paper_mean"], out["n_seeds"])]
    return out[list(PAPER_TABLE_COLUMNS)].reset_index(drop=True)


def row_note(paper_mean: float, n_seeds: int) -> str:
    """What a :func:`paper_table` row is when it lacks a measured or a paper number."""
    if not n_seeds:
        return "paper only: not run under this profile"
    return "measured only: no paper row" if pd.isna(paper_mean) else ""


def wilcoxon_table(cfg: NotebookConfig, table: str = "table2", metric: str = "auroc") -> pd.DataFrame:
    """Paired Wilcoxon signed-rank tests of DevNet against each other measured method (Table 2/3 p-values).

    ``p_value_datasets``: pairs = per-dataset means over seeds (the paper's test, across datasets
    or seen classes); ``p_value_runs``: pairs = individual (dataset, seed) runs. Two-sided
    (scipy default); NaN when fewer than two pairs or all differences are zero.
    """
    rows = _rows(cfg, table, metric)
    keys = ["dataset", "subset", "seed"]
    wide = rows.pivot_table(index=keys, columns="method", values="value", aggfunc="mean")
    out = []
    for method in [m for m in wide.columns if m != "devnet"] if "devnet" in wide.columns else []:
        runs = wide[["devnet", method]].dropna()
        per_dataset = runs.groupby(level=["dataset", "subset"]).mean()
        out.append({"method": method, "n_datasets": len(per_dataset), "n_runs": len(runs),
                    "devnet_minus_method": float((runs["devnet"] - runs[method]).mean()) if len(runs) else np.nan,
                    "p_value_datasets": _wilcoxon(per_dataset["devnet"], per_dataset[method]),
                    "p_value_runs": _wilcoxon(runs["devnet"], runs[method])})
    return pd.DataFrame(out, columns=["method", "n_datasets", "n_runs", "devnet_minus_method",
                                      "p_value_datasets", "p_value_runs"])


def _wilcoxon(a: pd.Series, b: pd.Series) -> float:
    diff = (a - b).to_numpy()
    if len(diff) < 2 or not np.any(diff):
        return float("nan")
    return float(wilcoxon(a.to_numpy(), b.to_numpy()).pvalue)


# --------------------------------------------------------------------------------------------
# figures 4 and 5


def _artifacts(cfg: NotebookConfig, method: str = "devnet",
               metric: str = "pixel_auroc") -> list[tuple[pd.Series, dict[str, np.ndarray]]]:
    """(result row of ``metric``, artifact arrays) of every stored run of ``method`` that has that
    metric (``pixel_auroc``: the localization runs; ``auroc``: every run)."""
    rows = cfg.store.read()
    rows = rows[(rows["metric"] == metric) & (rows["method"] == method) & (rows["status"] == "ok")]
    out = []
    for _, row in rows.iterrows():
        file = artifact_file(cfg, row["experiment_id"])
        if file.is_file():
            with np.load(file) as data:
                out.append((row, {k: data[k] for k in data.files}))
    return out


def fig4_curve(cfg: NotebookConfig, n_thresholds: int = 100) -> pd.DataFrame:
    """Fig. 4: pixel AUROC of detected anomalies vs detection F1, per method, averaged over runs.

    Each localization run's curve is taken at the same ``n_thresholds`` quantiles of its own
    image scores (:func:`osad_lib.explain.auroc_f1_curve`); F1 and pixel AUROC are averaged per
    quantile over the runs of a method (the paper averages over the 15 MVTec AD classes).
    Columns: method, quantile, f1, pixel_auroc, n_runs.
    """
    frames = []
    for method in METHODS:
        curves = [explain.auroc_f1_curve(data["scores"], data["labels"], data["pixel_auroc"], n_thresholds)
                  for _, data in _artifacts(cfg, method)]
        if curves:
            mean = (pd.concat(curves, ignore_index=True).groupby("quantile")
                    .agg(f1=("f1", "mean"), pixel_auroc=("pixel_auroc", "mean"), n_runs=("f1", "size")).reset_index())
            frames.append(mean.assign(method=method))
    columns = ["method", "quantile", "f1", "pixel_auroc", "n_runs"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def fig4_figure(curve: pd.DataFrame):
    """Plot :func:`fig4_curve`: x detection F1, y pixel AUROC of the detected anomalies, one line per method."""
    import matplotlib.pyplot as plt

    if curve.empty:  # no localization run (its data are missing)
        return experiments.note_figure("DevNet Fig. 4: no localization run on the data at hand")
    fig, ax = plt.subplots(figsize=(4.4, 3.4))
    for method, part in curve.groupby("method", sort=False):  # points, not lines: F1 is not monotone in t
        ax.scatter(part["f1"], part["pixel_auroc"], s=12, alpha=0.8, color=METHOD_COLORS.get(method), label=method)
    ax.set_xlabel("detection F1 (image level, one point per threshold)")
    ax.set_ylabel("pixel AUROC of detected anomalies")
    ax.set_title("DevNet Fig. 4: localization vs detection")
    ax.legend()
    fig.tight_layout()
    return fig


def fig5_overlays(cfg: NotebookConfig, method: str = "devnet", max_datasets: int = 4):
    """Fig. 5: image / mask / explanation map of the stored example anomalies, from the first
    run (lowest seed) of each of at most ``max_datasets`` localization datasets."""
    images, masks, maps, titles = [], [], [], []
    runs = sorted(_artifacts(cfg, method), key=lambda r: (r[0]["dataset"], r[0]["subset"], r[0]["seed"]))
    if not runs:  # nothing ran (its data are missing)
        return experiments.note_figure(f"no localization run of {method}: nothing ran on the data at hand")
    first: dict[tuple[str, str], tuple[pd.Series, dict[str, np.ndarray]]] = {}
    for row, data in runs:
        first.setdefault((row["dataset"], row["subset"]), (row, data))
    for row, data in list(first.values())[:max_datasets]:
        if not len(data["overlay_index"]):
            continue
        _, run_images, run_masks = _overlay_images(cfg, row, data)
        images += list(run_images)
        masks += list(run_masks)
        maps += [m.astype(np.float32) for m in data["overlay_maps"]]
        titles += [f"{row['subset'] or row['dataset']}: {data['classes'][i]}" for i in data["overlay_index"]]
    if not images:
        raise ConfigError(f"no stored localization run of {method!r} with example maps; run the grid (run_grid) first")
    return explain.overlay_figure(torch.stack(images), torch.stack(masks), np.stack(maps), titles)


def _overlay_images(cfg: NotebookConfig, row: pd.Series,
                    data: dict[str, np.ndarray]) -> tuple[Split, torch.Tensor, torch.Tensor | None]:
    """A stored run's split, and the test images and masks of its example anomalies (``overlay_index`` order)."""
    split = Split.from_json(artifact_file(cfg, row["experiment_id"]).with_suffix(".split.json"))
    test = load_split(split, resolve(registry_name(split), cfg.data_root), int(data["image_size"]))[1]
    position = {p: i for i, p in enumerate(test.paths)}
    picked = [position[str(data["paths"][i])] for i in data["overlay_index"]]
    return split, test.images[picked], None if test.masks is None else test.masks[picked]


# --------------------------------------------------------------------------------------------
# score explorer (widgets.score_explorer)


def score_frame(data: dict[str, np.ndarray], seen_classes: Sequence[str]) -> pd.DataFrame:
    """The score frame (:mod:`osad_lib.plots`) of a stored run's artifact ``data``: one row per
    test image with ``score``, ``label``, ``class``, ``kind`` (``seen``: an anomaly of a class among
    the labelled training anomalies ``seen_classes``, ``unseen``: another anomaly), ``path`` and
    ``map_index`` (position among the run's example maps, −1 without one)."""
    labels = data["labels"].astype(int)
    classes = data["classes"].astype(str)
    kind = np.where(labels == 0, "normal", np.where(np.isin(classes, list(seen_classes)), "seen", "unseen"))
    map_index = np.full(len(labels), -1)
    map_index[data["overlay_index"].astype(int)] = np.arange(len(data["overlay_index"]))
    return pd.DataFrame({"score": data["scores"].astype(float), "label": labels, "class": classes, "kind": kind,
                         "path": data["paths"].astype(str), "map_index": map_index})


def score_explorer_inputs(cfg: NotebookConfig, method: str = "devnet") -> dict[str, Any]:
    """Keyword arguments of ``widgets.score_explorer`` for one stored run of ``method``: the first
    run with example explanation maps (a localization run; lowest table, dataset, seed), else the
    first run. ``scores`` (:func:`score_frame`), ``images``/``masks``/``maps`` = the run's Fig. 5
    example anomalies (``maps`` None when it kept none), ``title`` naming the run and its AUROC."""
    runs = sorted(_artifacts(cfg, method, "auroc"),
                  key=lambda r: (not len(r[1]["overlay_index"]), r[0]["table"], r[0]["dataset"], r[0]["subset"],
                                 r[0]["seed"]))
    if not runs and experiments.runnable(grid(cfg))[0]:
        raise ConfigError(f"no stored run of {method!r} with per-image scores; run the grid (run_grid) first")
    if not runs:  # nothing ran (its data are missing): an empty score frame
        return {"scores": pd.DataFrame(columns=["score", "label", "class", "kind"]), "images": None, "masks": None,
                "maps": None, "title": f"{method}: no stored run (nothing ran on the data at hand)"}
    row, data = runs[0]
    split, images, masks = _overlay_images(cfg, row, data)
    has_maps = len(data["overlay_index"]) > 0
    where = "/".join(p for p in (row["dataset"], row["subset"]) if p)
    return {"scores": score_frame(data, split.seen_classes), "images": images if has_maps else None,
            "masks": masks if has_maps else None,
            "maps": data["overlay_maps"].astype(np.float32) if has_maps else None,
            "title": f"{method}, {where} ({row['setting']}, seed {row['seed']}): test AUROC {row['value']:.3f}"}


def methods_table(cfg: NotebookConfig) -> pd.DataFrame:
    """Every method of :data:`METHODS` under this profile: the tables the profile runs it on, the labelled anomalies it uses, the DevNet tables that list it, its
    backbone and how its settings differ from its paper (``deviations`` as on real data)."""
    shots, run_tables = table_shots(cfg), sorted({table for *_, table in table_runs(cfg)})
    listed = {t: set(paper.load_table(f"devnet_{t}")["method"]) for t in ("table2", "table3", "table4")}
    rows = []
    for method in METHODS:
        runs_on = [t for t in run_tables if t in method_tables(cfg, method)]
        rows.append({
            "method": method, "runs on": ", ".join(runs_on) or "not run",
            "labelled anomalies": row_shots(method, shots),
            "paper tables": ", ".join(t for t, names in listed.items() if method in names) or "none",
            "backbone": method_config(cfg, method).backbone, "deviations": method_deviations(cfg, method, ""),
        })
    return pd.DataFrame(rows)
