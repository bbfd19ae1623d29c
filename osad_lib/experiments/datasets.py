"""Notebook 00_datasets: what data there is, how it compares with the papers, what the
protocols put into training and test, and what every pseudo-anomaly generator draws.

No training: :func:`grid` is empty. Everything here reads the datasets through the same code
the methods use (:mod:`osad_lib.data.registry`, :mod:`~osad_lib.data.mvtec`,
:mod:`~osad_lib.data.protocols`, :mod:`~osad_lib.data.tensors`), so the tables describe exactly
what the experiments see. Paper statistics (DevNet Table 1 / AHL Table 6) appear only as
reference columns next to the measured counts.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from osad_lib.data import pseudo
from osad_lib.data.mvtec import Sample, anomaly_classes, read_mvtec_layout
from osad_lib.data.protocols import general_split, hard_split
from osad_lib.data.registry import (
    DATASETS,
    dataset_names,
    local_folder,
    present_and_missing,
    resolve,
    subset_info,
)
from osad_lib.data.tensors import load_images
from osad_lib.experiments import GridItem, skipped_line
from osad_lib.profiles import NotebookConfig
from osad_lib.viz import show_image

_COUNTS = ("train_normal", "test_normal", "anomalies", "n_classes")


def grid(cfg: NotebookConfig) -> list[GridItem]:
    """This notebook trains nothing."""
    return []


def present_datasets(cfg: NotebookConfig) -> list[str]:
    """Registry names to describe: the profile's image datasets that are at hand (its ``datasets``
    parameter; the others are skipped and named, :func:`osad_lib.data.registry.present_and_missing`),
    then the synthetic subsets and, except under smoke, ELPV and every dataset found under
    ``cfg.data_root`` (``<data_root>/<name>``)."""
    names, missing = present_and_missing(cfg.profile.image_datasets, cfg.data_root)
    if missing:
        print(skipped_line(cfg.notebook, missing, cfg.data_root))
    synthetic = dataset_names(["synthetic/*"])
    if cfg.profile.builtin == "smoke":
        return list(dict.fromkeys(names + synthetic))
    names += ["elpv"] + synthetic
    if cfg.data_root is not None:
        local = [n for d, info in DATASETS.items() if not info.embedded for n in info.names]
        names += [n for n in local if local_folder(n, cfg.data_root).is_dir()]
    return list(dict.fromkeys(names))


def read_datasets(names: list[str], data_root: Path | None) -> dict[str, tuple[Path, list[Sample]]]:
    """``{name: (folder, samples)}``; embedded datasets are built on first use."""
    out = {}
    for name in names:
        folder = resolve(name, data_root)
        out[name] = (folder, read_mvtec_layout(folder))
    return out


def measured_counts(samples: list[Sample]) -> dict[str, int]:
    return {
        "train_normal": sum(s.split == "train" and s.label == 0 for s in samples),
        "test_normal": sum(s.split == "test" and s.label == 0 for s in samples),
        "anomalies": sum(s.label == 1 for s in samples),
        "n_classes": len(anomaly_classes(samples)),
    }


def _row(dataset: str, subset: str, measured: dict[str, int], paper, masks: bool | None, note: str = "") -> dict:
    row = {"dataset": dataset, "subset": subset, **measured, "masks": masks}
    for key in _COUNTS:
        row[f"paper_{key}"] = getattr(paper, key) if paper else None
    differs = [k for k in _COUNTS if paper is not None and getattr(paper, k) != measured[k]]
    row["differs_from_paper"] = (", ".join(differs) or "none") if paper else "no paper row"
    row["note"] = "; ".join(n for n in (paper.note if paper else "", note) if n)
    return row


def statistics_table(datasets: dict[str, tuple[Path, list[Sample]]]) -> pd.DataFrame:
    """Measured counts per dataset next to the paper's (DevNet Table 1 / AHL Table 6).

    One row per subset, plus a total row for a multi-subset dataset whose subsets are all
    present (e.g. MVTec AD: 3,629 / 467 / 1,258 / 73). ``differs_from_paper`` names the
    columns that differ; the synthetic data have no paper row.
    """
    rows, per_dataset = [], {}
    for name, (_, samples) in datasets.items():
        info = subset_info(name)
        measured = measured_counts(samples)
        per_dataset.setdefault(info.dataset, []).append(measured)
        rows.append(_row(info.dataset, info.subset, measured, info.paper, any(s.mask_path for s in samples), info.note))
    for dataset, parts in per_dataset.items():
        meta = DATASETS[dataset]
        if len(meta.subsets) > 1 and len(parts) == len(meta.subsets) and meta.paper_total is not None:
            total = {k: sum(p[k] for p in parts) for k in _COUNTS}
            rows.append(_row(dataset, "total", total, meta.paper_total, None))
    table = pd.DataFrame(rows)
    return table.astype({f"paper_{k}": "Int64" for k in _COUNTS}) if rows else table


def class_counts_table(datasets: dict[str, tuple[Path, list[Sample]]]) -> pd.DataFrame:
    """Images per anomaly class, with the paper's per-class count where a paper prints one."""
    rows = []
    for name, (_, samples) in datasets.items():
        info = subset_info(name)
        for cls, n in sorted(Counter(s.anomaly_class for s in samples if s.label == 1).items()):
            rows.append({"dataset": info.dataset, "subset": info.subset, "class": cls, "images": n,
                         "paper_images": info.class_counts.get(cls), "hard_seen_class": cls in info.hard_seen_classes})
    return pd.DataFrame(rows).astype({"paper_images": "Int64"}) if rows else pd.DataFrame(rows)


def _examples(samples: list[Sample], per_class: int, seed: int) -> list[Sample]:
    """Up to ``per_class`` random test images per class (normals: from train/good)."""
    rng = np.random.default_rng(seed)
    picked = []
    for cls in ["good"] + anomaly_classes(samples):
        pool = [s for s in samples if s.anomaly_class == cls and (cls != "good" or s.split == "train")]
        picked += [pool[i] for i in sorted(rng.choice(len(pool), min(per_class, len(pool)), replace=False))]
    return picked


def _image_grid(n_rows: int, n_cols: int, title: str, cell: float = 1.3) -> tuple[plt.Figure, np.ndarray]:
    """A rows × columns grid of image axes with a title close above (no constrained layout: it
    doubles the saving time of image grids)."""
    height = cell * n_rows + 0.4
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(cell * n_cols + 1.2, height), squeeze=False,
                             gridspec_kw={"wspace": 0.05, "hspace": 0.08, "top": 1 - 0.4 / height})
    fig.suptitle(title, fontsize=9)
    return fig, axes


def sample_grid(name: str, folder: Path, samples: list[Sample], per_class: int = 4,
                image_size: int = 96, seed: int = 0) -> plt.Figure:
    """Example images per class (rows), ground-truth masks outlined in red where they exist."""
    picked = _examples(samples, per_class, seed)
    data = load_images(folder, picked, image_size, cache=False)
    classes = list(dict.fromkeys(data.classes))
    legend = "red: ground-truth mask" if data.masks is not None else "no pixel masks in this dataset"
    fig, axes = _image_grid(len(classes), per_class, f"{name}: examples per class ({legend})")
    for r, cls in enumerate(classes):
        rows = [i for i, c in enumerate(data.classes) if c == cls]
        for c in range(per_class):
            ax = axes[r, c]
            if c < len(rows):
                show_image(ax, data.images[rows[c]], None if data.masks is None else data.masks[rows[c]])
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(cls, fontsize=7, rotation=0, ha="right", va="center")
    return fig


def pseudo_anomaly_gallery(name: str, folder: Path, samples: list[Sample], image_size: int = 96,
                           n_images: int = 3, seed: int = 0) -> plt.Figure:
    """Every generator of :data:`osad_lib.data.pseudo.GENERATORS` applied to the same normal
    images (rows: generators; red: the generator's mask), plus BGAD's Otsu foreground masks.
    ``randaug_cutpaste`` pastes the dataset's real defects, so it needs a dataset with masks."""
    normals = [s for s in samples if s.split == "train"][:n_images]
    images = load_images(folder, normals, image_size, cache=False).batch()
    defects = [s for s in samples if s.label == 1 and s.mask_path][:8]
    rows: list[tuple[str, torch.Tensor, torch.Tensor]] = [("normal", images, torch.zeros_like(images[:, :1]))]
    for generator in pseudo.GENERATORS:
        params = {}
        if generator == "randaug_cutpaste":
            if not defects:
                continue
            real = load_images(folder, defects, image_size, cache=False)
            params = {"anomalies": real.batch(), "anomaly_masks": real.masks.float()}
        out, masks = pseudo.apply_batch(generator, images, seed, **params)
        rows.append((generator, out, masks))
    rows.append(("foreground (BGAD)", images, torch.stack([pseudo.foreground_mask(x) for x in images])))
    fig, axes = _image_grid(len(rows), n_images, f"{name}: pseudo anomalies of the same normal images (red: mask)")
    for r, (label, batch, masks) in enumerate(rows):
        for c in range(min(n_images, len(batch))):
            show_image(axes[r, c], batch[c].clamp(0, 1), masks[c])
        axes[r, 0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    return fig


def protocol_counts(samples: list[Sample], n_shots: int, seed: int, seen_class: str | None,
                    dataset: str = "", subset: str = "") -> pd.DataFrame:
    """Per setting and class: labelled training anomalies and test images, seen or unseen."""
    splits = {"general": general_split(samples, n_shots, seed, dataset=dataset, subset=subset)}
    if seen_class is not None:
        splits["hard"] = hard_split(samples, seen_class, n_shots, seed, dataset=dataset, subset=subset)
    rows = []
    for setting, split in splits.items():
        train = Counter(cls for _, cls in split.train_anomaly)
        test = Counter(cls for _, _, cls in split.test)
        rows.append({"setting": setting, "class": "good", "train": len(split.train_normal), "test": test["good"],
                     "status": "normal", "manifest_id": split.manifest_id})
        for cls in anomaly_classes(samples):
            rows.append({"setting": setting, "class": cls, "train": train[cls], "test": test[cls],
                         "status": "seen" if cls in split.seen_classes else "unseen", "manifest_id": split.manifest_id})
    return pd.DataFrame(rows)


def protocol_figure(counts: pd.DataFrame, title: str) -> plt.Figure:
    """Bars per anomaly class and setting: labelled training anomalies and test anomalies,
    coloured by seen/unseen (normals are given in the panel title)."""
    settings = list(dict.fromkeys(counts["setting"]))
    fig, axes = plt.subplots(1, len(settings), figsize=(4.2 * len(settings) + 1.5, 3.4), squeeze=False,
                             sharey=True, layout="constrained")
    colours = {"seen": "#d62728", "unseen": "#1f77b4"}
    for ax, setting in zip(axes[0], settings):
        part = counts[counts["setting"] == setting]
        good, anomalous = part[part["class"] == "good"].iloc[0], part[part["class"] != "good"]
        x = np.arange(len(anomalous))
        ax.bar(x - 0.2, anomalous["train"], 0.4, color="black", label="labelled (train)")
        ax.bar(x + 0.2, anomalous["test"], 0.4, color=[colours[s] for s in anomalous["status"]], label="test")
        ax.set_xticks(x, anomalous["class"], rotation=45, ha="right", fontsize=7)
        ax.set_title(f"{setting}: train {good['train']} normals, test {good['test']} normals", fontsize=8)
        ax.set_xlabel("anomaly class")
    axes[0, 0].set_ylabel("images")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in ("black", colours["seen"], colours["unseen"])]
    axes[0, -1].legend(handles, ["labelled (train)", "test, seen class", "test, unseen class"], fontsize=7,
                       loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(title, fontsize=9)
    return fig


def protocol_example(cfg: NotebookConfig, data: dict[str, tuple[Path, list[Sample]]],
                     requested: str = "") -> tuple[str, pd.DataFrame]:
    """(name, :func:`protocol_counts`) for the protocol figure.

    Dataset: ``requested``, else ELPV (demo/paper) or the first present one (smoke: synthetic).
    Shots: the profile's largest count (capped by the smallest class); seed: the first one;
    hard setting: the first paper seen class (or the first class) when there are ≥ 2 classes.
    """
    name = dataset_names([requested])[0] if requested else ("elpv" if "elpv" in data else next(iter(data)))
    samples = data[name][1] if name in data else read_datasets([name], cfg.data_root)[name][1]
    info, classes = subset_info(name), anomaly_classes(samples)
    seen = (info.hard_seen_classes or tuple(classes))[0] if len(classes) > 1 else None
    available = min(Counter(s.anomaly_class for s in samples if s.label).values())
    n_shots = min(max(cfg.profile.n_shots), available)
    return name, protocol_counts(samples, n_shots, cfg.seeds[0], seen, info.dataset, info.subset)


def gallery_dataset(data: dict[str, tuple[Path, list[Sample]]]) -> str:
    """The dataset for the pseudo-anomaly gallery: an object dataset with masks if present
    (BGAD's generator pastes real defects), else any with masks, else the first."""
    with_masks = [n for n, (_, samples) in data.items() if any(s.mask_path for s in samples)]
    objects = [n for n in with_masks if subset_info(n).kind == "object"]
    return (objects or with_masks or list(data))[0]
