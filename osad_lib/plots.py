"""Static figures behind the interactive widgets (``docs/conventions.md``
"Widgets that degrade gracefully").

Each function here takes the widget's control values as plain arguments and returns a
matplotlib Figure; :mod:`osad_lib.widgets` only re-calls it when a control changes, and its
``static_*`` fallbacks call it with the default values, so a headless (papermill) run draws the
same figure. Figures that exist elsewhere are reused, not redrawn here
(:func:`osad_lib.experiments.datasets.sample_grid`, ``pseudo_anomaly_gallery``,
``protocol_counts``; :func:`osad_lib.explain.overlay_figure`).

**Score frame** — the input of :func:`score_figure` (and ``widgets.score_explorer``), one row
per test image of one trained run; method experiments produce it:

============  =============================================================================
column        meaning
============  =============================================================================
``score``     the method's final anomaly score (higher = more anomalous)
``label``     1 = anomaly, 0 = normal (must agree with ``kind``)
``class``     ``"good"`` for normals, else the anomaly class folder name
``kind``      ``"normal"``, ``"seen"`` (class of a labelled training anomaly) or ``"unseen"``
``score_*``   optional per-head scores, e.g. DRA's ``score_holistic``, ``score_seen``,
              ``score_pseudo``, ``score_composite`` (DRA §3.2; the holistic head scores
              *normality*, so its AUROC is below 0.5 by design); ``score_base``: the final
              score of the base model a method builds on, on the same images (AHL)
``path``      optional: the image file relative to the dataset root (shown when picked)
``map_index`` optional: row of this image in the ``images``/``masks``/``maps`` arrays (−1 or
              empty where no map was kept); without it the arrays align with the frame rows
============  =============================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from osad_lib.data import pseudo
from osad_lib.data.mvtec import Sample
from osad_lib.data.protocols import Split, make_split
from osad_lib.data.registry import subset_info
from osad_lib.data.tensors import load_images
from osad_lib.experiments import note_figure
from osad_lib.experiments.datasets import protocol_counts
from osad_lib.metrics import image_auroc
from osad_lib.paper import DEFAULT_KEYS, compare, list_tables, shown
from osad_lib.validate import ConfigError, choose
from osad_lib.viz import show_image

#: Required columns of a score frame (see the module docstring).
SCORE_COLUMNS = ("score", "label", "class", "kind")
#: Prefix of optional per-head score columns.
HEAD_PREFIX = "score_"
#: Optional column: the base model's final score (a method beside the model it builds on).
BASE_COLUMN = "score_base"
#: Test-image kinds of a score frame, in plotting order, with their colours.
KIND_COLORS = {"normal": "#2ca02c", "seen": "#ff7f0e", "unseen": "#d62728"}
#: The train/test part of a split shown by :func:`split_overview`.
SPLIT_PARTS = ("train", "test")


# --------------------------------------------------------------------------------------------
# dataset browser


def _part_items(split: Split, part: str) -> list[tuple[str, int, str]]:
    """(path, label, row name) of the ``part`` of a split; training anomalies are named by role,
    ``labelled`` or ``unlabelled`` (contamination among the normals — not "contamination", which is
    also an anomaly class of some datasets)."""
    if part == "test":
        return [(p, label, cls) for p, label, cls in split.test]
    items = [(p, 0, "good") for p in split.train_normal]
    items += [(p, 0, f"{cls} (unlabelled)") for p, cls in split.train_contamination]
    return items + [(p, 1, f"{cls} (labelled)") for p, cls in split.train_anomaly]


def _picked(items: list[tuple[str, int, str]], per_class: int, seed: int) -> dict[str, tuple[int, list[str]]]:
    """Row name → (label, up to ``per_class`` random paths); rows: normals first, then sorted."""
    rng = np.random.default_rng(seed)
    rows: dict[str, tuple[int, list[str]]] = {}
    for path, label, name in sorted(items, key=lambda item: (item[2] != "good", item[2], item[0])):
        rows.setdefault(name, (label, []))[1].append(path)
    return {name: (label, [pool[i] for i in sorted(rng.choice(len(pool), min(per_class, len(pool)), replace=False))])
            for name, (label, pool) in rows.items()}


def split_overview(name: str, folder: Path, samples: Sequence[Sample], setting: str = "general", n_shots: int = 10,
                   seed: int = 0, seen_class: str | None = None, part: str = "train", per_class: int = 3,
                   image_size: int = 64) -> plt.Figure:
    """What a protocol puts into training or test: example images per class (red: mask) beside
    the images per class in both parts, coloured seen/unseen.

    The split is :func:`osad_lib.data.protocols.make_split` (general or hard setting, DRA §4.1,
    ``docs/official_code/dra.md`` "Data protocol"); counts come from
    :func:`osad_lib.experiments.datasets.protocol_counts`.
    """
    part = choose("part", part, SPLIT_PARTS)
    info = subset_info(name)
    split = make_split(samples, setting, n_shots, seed, seen_class=seen_class if setting == "hard" else None,
                       dataset=info.dataset, subset=info.subset)
    rows = _picked(_part_items(split, part), per_class, seed)
    by_path = {s.path: s for s in samples}
    shown = load_images(folder, [by_path[p] for _, paths in rows.values() for p in paths], image_size, cache=False)
    counts = protocol_counts(samples, n_shots, seed, split.seen_class, info.dataset, info.subset)
    counts = counts[counts["setting"] == split.setting]

    fig = plt.figure(figsize=(1.05 * per_class + 5.2, max(1.0 * len(rows), 2.8) + 0.9), layout="constrained")
    grid = fig.add_gridspec(len(rows), per_class + 1, width_ratios=[1] * per_class + [2.6])
    k = 0
    for r, (row_name, (label, paths)) in enumerate(rows.items()):
        for c in range(per_class):
            ax = fig.add_subplot(grid[r, c])
            if c < len(paths):
                show_image(ax, shown.images[k], None if shown.masks is None else shown.masks[k])
                k += 1
            else:
                ax.axis("off")
            if c == 0:
                ax.set_ylabel(f"{row_name}\nlabel {label}", fontsize=7, rotation=0, ha="right", va="center")
    _count_bars(fig.add_subplot(grid[:, per_class]), counts)
    fig.suptitle(f"{name}, {part} part (red: mask)\n{split.describe()}", fontsize=8)
    return fig


def _count_bars(ax: plt.Axes, counts: pd.DataFrame) -> None:
    """Horizontal bars: labelled training images and test images per class."""
    y = np.arange(len(counts))
    colours = [KIND_COLORS[s] for s in counts["status"]]
    ax.barh(y - 0.2, counts["train"], 0.4, color="black")
    ax.barh(y + 0.2, counts["test"], 0.4, color=colours)
    for yy, (train, test) in zip(y, zip(counts["train"], counts["test"])):
        ax.text(max(train, test), yy, f" {train} / {test}", va="center", fontsize=6)
    ax.set_yticks(y, counts["class"], fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlabel("images (train / test)")
    ax.set_title("images per class", fontsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in ("black", *KIND_COLORS.values())]
    # below the whole figure (constrained layout makes room), never over the axis label
    ax.figure.legend(handles, ["train", "test normal", "test seen class", "test unseen class"], fontsize=6, ncol=4,
                     loc="outside lower right")


# --------------------------------------------------------------------------------------------
# pseudo-anomaly playground


def _setting_text(value: object) -> str:
    """A control value for a title: floats to 4 significant digits (a slider's 0.1 + 0.2 shows
    as 0.3, not 0.30000000000000004), tuples element-wise."""
    if isinstance(value, tuple | list):
        return "(" + ", ".join(_setting_text(v) for v in value) + ")"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def pseudo_anomaly_example(name: str, folder: Path, samples: Sequence[Sample], generator: str = "cutpaste_same_image",
                           seed: int = 0, image_index: int = 0, image_size: int = 96,
                           on_foreground: bool = False, **params: object) -> plt.Figure:
    """One training normal of ``name``, the pseudo anomaly that ``generator`` of
    :data:`osad_lib.data.pseudo.GENERATORS` draws from it with ``seed`` and ``params``, and its mask.

    ``cutmix_cross_image`` takes its patch from the other training normals (up to 8);
    ``randaug_cutpaste`` pastes one of the dataset's first 8 real defects (BGAD §3.4), inside the
    Otsu foreground of the image when ``on_foreground`` (as BGAD's code,
    ``docs/official_code/bgad.md`` "Data and RandAugmented CutPaste").
    """
    import torch

    generator = choose("generator", generator, tuple(pseudo.GENERATORS))
    normals = [s for s in samples if s.split == "train" and s.label == 0]
    if not 0 <= image_index < len(normals):
        raise ConfigError(f"parameter 'image_index': {image_index} must be in [0, {len(normals) - 1}] "
                          f"({name} has {len(normals)} training normals)")
    chosen = [normals[image_index]] + [s for i, s in enumerate(normals[:9]) if i != image_index][:8]
    batch = load_images(folder, chosen, image_size, cache=False).batch()
    image = batch[:1]
    if generator == "cutmix_cross_image":
        params["sources"] = batch[1:]
    if generator == "randaug_cutpaste":
        defects = [s for s in samples if s.label == 1 and s.mask_path][:8]
        if not defects:
            raise ConfigError(f"randaug_cutpaste pastes real defects, but {name} has no pixel masks; pick a dataset with masks")
        real = load_images(folder, defects, image_size, cache=False)
        params.update(anomalies=real.batch(), anomaly_masks=real.masks.float())
        if on_foreground:
            params["foreground"] = pseudo.foreground_mask(image[0])[None]
    out, mask = pseudo.apply_batch(generator, image, seed, **params)
    shown = {k: v for k, v in params.items() if not isinstance(v, torch.Tensor)}
    fig, axes = plt.subplots(1, 3, figsize=(7.2, 2.9), layout="constrained")
    panels = [(image[0], "original (training normal)"), (out[0].clamp(0, 1), "pseudo anomaly"), (mask[0], "mask")]
    for ax, (tensor, title) in zip(axes, panels):
        ax.imshow(tensor[0].numpy() if tensor.shape[0] == 1 else tensor.permute(1, 2, 0).numpy(),
                  cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[1].contour(mask[0, 0].numpy(), levels=[0.5], colors="red", linewidths=0.7)
    settings = ", ".join(f"{k}={_setting_text(v)}" for k, v in shown.items()) + (", on foreground" if on_foreground else "")
    fig.suptitle(f"{generator} on {name} #{image_index}, seed {seed}" + (f"\n{settings}" if settings else "")
                 + f"\n{pseudo.GENERATORS[generator].description}", fontsize=8)
    return fig


# --------------------------------------------------------------------------------------------
# score explorer


def check_score_frame(scores: pd.DataFrame) -> pd.DataFrame:
    """The score frame with ``label`` int and ``map_index`` int (−1 = none), or a one-line error
    saying which column is missing or inconsistent (format: module docstring)."""
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise ConfigError(f"score frame lacks column(s) {missing}; it needs {list(SCORE_COLUMNS)} (see osad_lib.plots)")
    if scores.empty:
        raise ConfigError("score frame is empty; pass the per-image test scores of a finished run")
    kinds = set(scores["kind"]) - set(KIND_COLORS)
    if kinds:
        raise ConfigError(f"score frame column 'kind' has {sorted(kinds)}; allowed: {list(KIND_COLORS)}")
    frame = scores.reset_index(drop=True).copy()
    frame["label"] = frame["label"].astype(int)
    wrong = (frame["label"] == 1) != (frame["kind"] != "normal")
    if wrong.any():
        raise ConfigError(f"score frame row {int(np.flatnonzero(wrong)[0])}: label and kind disagree "
                          "(label 1 = seen/unseen, 0 = normal)")
    for column in score_columns(frame):
        if not np.isfinite(frame[column].to_numpy(dtype=float)).all():
            raise ConfigError(f"score frame column {column!r} has non-finite values; drop failed images first")
    index = frame["map_index"] if "map_index" in frame.columns else pd.Series(np.arange(len(frame)))
    frame["map_index"] = index.fillna(-1).astype(int).to_numpy()
    return frame


def score_columns(scores: pd.DataFrame) -> list[str]:
    """``score`` followed by the per-head columns (``score_*``) of a score frame."""
    return ["score"] + [c for c in scores.columns if c.startswith(HEAD_PREFIX)]


def _column_title(column: str) -> str:
    if column == "score":
        return "final score"
    return "base model" if column == BASE_COLUMN else f"head {column[len(HEAD_PREFIX):]}"


def _roc(ax: plt.Axes, frame: pd.DataFrame, column: str) -> None:
    """ROC of normals against each anomaly kind present and against all anomalies."""
    from sklearn.metrics import roc_curve

    normal = frame[frame["kind"] == "normal"][column].to_numpy(float)
    groups = [(k, frame[frame["kind"] == k][column].to_numpy(float)) for k in ("seen", "unseen")]
    groups = [(k, v) for k, v in groups if len(v)]
    if len(groups) > 1:
        groups.append(("all anomalies", frame[frame["label"] == 1][column].to_numpy(float)))
    for kind, anomalous in groups:
        if not len(normal):
            continue
        labels = np.r_[np.zeros(len(normal)), np.ones(len(anomalous))]
        values = np.r_[normal, anomalous]
        fpr, tpr, _ = roc_curve(labels, values)
        ax.plot(fpr, tpr, color=KIND_COLORS.get(kind, "black"),
                label=f"normal vs {kind}: AUROC {image_auroc(labels, values):.3f}")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"ROC of {column}", fontsize=8)
    ax.legend(fontsize=6, loc="lower right")


def _as_images(images) -> np.ndarray:
    """[N,3,H,W] uint8 or float (CPU tensor or numpy) → float [N,H,W,3] in [0, 1]."""
    array = np.asarray(images)
    array = array.astype(np.float32) / 255.0 if array.dtype == np.uint8 else array.astype(np.float32)
    return np.transpose(array, (0, 2, 3, 1))


def _overlay(axes: Sequence[plt.Axes], frame: pd.DataFrame, index: int, images, masks, maps, alpha: float) -> None:
    """Image / mask / anomaly map (scaled by the min and max over all maps) of frame row ``index``."""
    row, k = frame.iloc[index], int(frame["map_index"].iloc[index])
    maps = np.asarray(maps, dtype=np.float32)
    amap, low, high = maps[k], float(maps.min()), float(maps.max())
    axes[0].imshow(_as_images(images[k:k + 1])[0])
    axes[0].set_title(f"row {index}: {row['class']} ({row['kind']})\nscore {row['score']:.3g}", fontsize=7)
    if masks is not None:
        mask = np.asarray(masks[k], dtype=np.float32)
        axes[1].imshow(mask.reshape(mask.shape[-2:]), cmap="gray", vmin=0, vmax=max(mask.max(), 1))
    axes[1].set_title("ground-truth mask" if masks is not None else "no mask given", fontsize=7)
    axes[2].imshow(_as_images(images[k:k + 1])[0])
    axes[2].imshow(amap.reshape(amap.shape[-2:]), cmap="jet", alpha=alpha, vmin=low, vmax=high if high > low else low + 1)
    if masks is not None and mask.any():
        axes[2].contour(mask.reshape(mask.shape[-2:]), levels=[0.5], colors="white", linewidths=0.8)
    axes[2].set_title("anomaly map over the image" + (" (white: mask)" if masks is not None else ""), fontsize=7)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])


def mapped_rows(scores: pd.DataFrame) -> list[int]:
    """Rows of a checked score frame that have an anomaly map, highest score first."""
    has_map = scores[scores["map_index"] >= 0]
    return has_map.sort_values("score", ascending=False, kind="stable").index.tolist()


def score_figure(scores: pd.DataFrame, column: str = "score", bins: int = 30, index: int | None = None,
                 images=None, masks=None, maps=None, alpha: float = 0.5, title: str = "") -> plt.Figure:
    """Score histograms per kind (normal / seen / unseen) for the final score and every head,
    the ROC of ``column``, and — with ``maps`` — image, mask and anomaly map of row ``index``
    (default: the highest-scoring row with a map).

    ``scores``: a score frame (module docstring). ``images`` [N,3,H,W], ``masks`` [N,(1,)H,W]
    and ``maps`` [N,H,W] are indexed by the frame's ``map_index`` (or aligned with its rows).
    """
    if isinstance(scores, pd.DataFrame) and scores.empty and title:  # a run that did not happen, said in its title
        return note_figure(title)
    frame = check_score_frame(scores)
    columns = score_columns(frame)
    if column not in columns:
        raise ConfigError(f"parameter 'column': {column!r} is not one of {columns}")
    if maps is not None and images is None:
        raise ConfigError("maps were given without images; pass the images the maps belong to")
    with_maps = maps is not None and bool(mapped_rows(frame))
    fig = plt.figure(figsize=(max(2.5 * (len(columns) + 1), 7.5), 5.6 if with_maps else 2.9), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, 1.05]) if with_maps else (fig, None)
    axes = top.subplots(1, len(columns) + 1, squeeze=False)[0]
    for ax, name in zip(axes, columns):
        edges = np.histogram_bin_edges(frame[name].to_numpy(float), bins=bins)
        for kind, colour in KIND_COLORS.items():
            values = frame.loc[frame["kind"] == kind, name].to_numpy(float)
            if len(values):
                ax.hist(values, bins=edges, density=True, alpha=0.5, color=colour, label=f"{kind} ({len(values)})")
        ax.set_title(_column_title(name) + (" (ROC →)" if name == column else ""), fontsize=8)
        ax.set_xlabel(name)
        ax.set_ylabel("density")
    axes[0].legend(fontsize=6)
    _roc(axes[-1], frame, column)
    if with_maps:
        rows = mapped_rows(frame)
        index = rows[0] if index is None else index
        if index not in rows:
            raise ConfigError(f"parameter 'index': row {index} has no anomaly map; rows with maps: {sorted(rows)[:10]}…")
        _overlay(bottom.subplots(1, 3), frame, index, images, masks, maps, alpha)
    fig.suptitle(title or f"test scores of {len(frame)} images", fontsize=9)
    return fig


# --------------------------------------------------------------------------------------------
# results explorer


def result_tables(results: pd.DataFrame) -> pd.DataFrame:
    """(paper, table, table_id) of the stored results that have a transcribed paper table."""
    ok = results[results["status"] == "ok"]
    present = ok[["paper", "table"]].drop_duplicates()
    known = list_tables()[["table_id", "paper", "table"]]
    return present.merge(known, on=["paper", "table"]).sort_values("table_id").reset_index(drop=True)


def results_comparison(results: pd.DataFrame, paper: str, table: str, dataset: str = "", method: str = "",
                       setting: str = "", metric: str = "", with_unmeasured: bool = False) -> pd.DataFrame:
    """Paper vs measured (:func:`osad_lib.paper.compare`) for table ``<paper>_<table>``: the
    measured rows (``with_unmeasured``: also the paper rows nobody measured), filtered by
    ``dataset``/``method``/``setting``/``metric`` (empty = all)."""
    rows = results[(results["paper"] == paper) & (results["table"] == table) & (results["status"] == "ok")]
    out = compare(rows, f"{paper}_{table}")
    if not with_unmeasured:
        out = out[out["n_seeds"] > 0]
    for column, value in (("dataset", dataset), ("method", method), ("setting", setting), ("metric", metric)):
        if value:
            out = out[out[column].astype(str) == value]
    return out.reset_index(drop=True)


def comparison_view(comparison: pd.DataFrame) -> pd.DataFrame:
    """A :func:`results_comparison` frame for reading (:func:`osad_lib.paper.shown`): keys,
    ``paper`` and ``measured`` as "mean ± std", delta, seeds, within spread, deviations."""
    return shown(comparison, DEFAULT_KEYS, extra=("within_spread", "deviations"))


__all__ = [
    "BASE_COLUMN", "HEAD_PREFIX", "KIND_COLORS", "SCORE_COLUMNS", "SPLIT_PARTS", "check_score_frame", "comparison_view",
    "mapped_rows", "pseudo_anomaly_example", "result_tables", "results_comparison", "score_columns",
    "score_figure", "split_overview",
]
