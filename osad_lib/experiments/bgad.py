"""Notebook ``03_bgad``: BGAD's Tables 1–3 and Figures 3–4 beside the paper; options for Tables 4–6.

The grid (``paper`` profile): Table 1 = every MVTec AD category with unsupervised BGAD
(``setting="unsupervised"``, ``n_shots=0``) and BGAD-FAS with 5 anomalies; Table 2 = the same on
BTAD; Table 3 = BGAD-FAS with one anomaly on AITEX, ELPV, BrainMRI and HeadCT; all × seeds.
Smaller profiles replace the datasets (``METHOD_OVERRIDES["bgad"]``: ``table1_datasets``,
``table2_datasets``, ``table3_datasets``) and the schedule.

Protocol (the official code, ``docs/official_code/bgad.md``): labelled anomalies are drawn **stratified per
defect class** (⌊N/T⌋ per class, the remainder at random from the leftovers) and leave the test
set; each enters every pass 5× as itself and 5× as a fresh RandAugmented CutPaste sample pasted
into a random training normal (inside its foreground mask where one can be made). Datasets
without pixel masks (ELPV, BrainMRI, HeadCT) mark the whole labelled image anomalous — the
official code has no such datasets; this is our choice, recorded in the rows.

Reporting (``docs/official_code/bgad.md``): the official numbers are the **maximum over meta epochs of each
metric separately, on the test set**. Rows hold the honest last-epoch values under the canonical
metric names (``auroc``, ``pixel_auroc``, ``pro``), the faithful values as
``<metric>@max_over_epochs`` and every epoch's values as ``<metric>@epoch<k>`` (Fig. 3), all in
[0, 1]; the run's details (loss per epoch, training/evaluation time, peak memory) go to a JSON
file next to the results (:func:`run_files`). :func:`report_view` turns either report into
canonical rows labelled ``report=last_epoch`` / ``report=max_over_epochs`` in ``deviations``.

Options the ablation notebook uses through :func:`bgad_config` and :func:`run_bgad`: β, τ
(Table 4), ``racp`` and ``focal_weighting`` (Table 6), and :func:`bgad_split` with
``train_classes``/``test_classes`` from :data:`HARD_CLASSES` (Table 5, :func:`table5_split`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import resource
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from osad_lib import experiments, limits, paper
from osad_lib.data.mvtec import Sample, read_mvtec_layout
from osad_lib.data.protocols import Split, with_test_copies
from osad_lib.data.pseudo import foreground_mask, randaug_cutpaste
from osad_lib.data.registry import dataset_names, resolve, subset_info
from osad_lib.data.tensors import ImageSet, load_images
from osad_lib.experiments import GridItem
from osad_lib.components.features import cached_dataset_features, dataset_key
from osad_lib.methods.bgad.loss import BGADLossConfig
from osad_lib.metrics import image_auroc, pixel_auroc, pro_score
from osad_lib.components.backbones import ALLOW_DOWNLOAD_ENV, B6_URL, Backbone, build_backbone
from osad_lib.methods.bgad.model import (
    BGADConfig, BGADFlows, FeatureBank, assemble_anomaly_maps, downsample_masks, extract_levels, fit_bgad,
    image_scores, loglik_maps,
)
from osad_lib.paper.means import with_subset_means
from osad_lib.profiles import NotebookConfig
from osad_lib.paths import atomic_write_text
from osad_lib.results import Experiment, read_all
from osad_lib.seeding import seed_everything, torch_generator
from osad_lib.settings import apply_overrides, config_diff
from osad_lib.validate import ConfigError, choose
from osad_lib.viz import METHOD_COLORS

NOTEBOOK = "03_bgad"
METHODS = ("bgad", "bgad_fas")
#: Keys of ``METHOD_OVERRIDES["bgad"][profile]`` that shape the grid rather than :class:`BGADConfig`.
GRID_KEYS = ("table1_datasets", "table2_datasets", "table3_datasets", "fas_n_shots", "table3_n_shots",
             "max_train_normals")
GRID_DEFAULTS: dict[str, Any] = {
    "table1_datasets": ("mvtecad",), "table2_datasets": ("btad",),
    "table3_datasets": ("aitex", "elpv", "brainmri", "headct"),
    "fas_n_shots": 5, "table3_n_shots": 1, "max_train_normals": 0,
}
REPORTS = ("last_epoch", "max_over_epochs")
MAX_SUFFIX = "@max_over_epochs"
IMAGE_METRICS = ("auroc",)
PIXEL_METRICS = ("pixel_auroc", "pro")
#: BGAD appendix A.7 Table 7, second subset: the hard anomaly classes of each MVTec AD category
#: (Table 5's "hard subsets" are tested on them; its "unseen subsets" train on the other,
#: easy classes — Table 7's first column lists exactly that complement).
HARD_CLASSES: dict[str, tuple[str, ...]] = {
    "carpet": ("thread",), "grid": ("bent", "glue"), "leather": ("cut",), "tile": ("rough",),
    "wood": ("scratch",), "bottle": ("contamination",), "cable": ("cable_swap", "missing_wire", "poke_insulation"),
    "capsule": ("faulty_imprint", "poke", "scratch"), "hazelnut": ("cut",), "metal_nut": ("scratch",),
    "pill": ("crack", "scratch"), "screw": ("manipulated_front", "thread_side"), "toothbrush": ("defective",),
    "transistor": ("damaged_case",), "zipper": ("fabric_interior", "squeezed_teeth"),
}
_LOSS_FIELDS = {f.name for f in dataclasses.fields(BGADLossConfig)}
#: Where a non-default value comes from, for ``deviations`` (:func:`config_deviations`).
OPTION_NOTES: dict[tuple[str, Any], str] = {
    ("standardize", True): "not in the official code; for short CPU schedules",
    ("set_to_none", False): "the official code: Adam moves idle flows with stale momentum",
    ("beta", 0.01): "the README command",
    ("warmup", "faithful"): "the official code's warm-up counter",
}


# --------------------------------------------------------------------------------------------
# configuration


def _overrides(cfg: NotebookConfig) -> dict[str, Any]:
    return cfg.profile.method("bgad")


def grid_option(cfg: NotebookConfig, key: str) -> Any:
    """A grid-shaping option (:data:`GRID_KEYS`) under the profile, with its default."""
    return _overrides(cfg).get(choose("grid option", key, GRID_KEYS), GRID_DEFAULTS[key])


def bgad_config(cfg: NotebookConfig, **changes: Any) -> BGADConfig:
    """The official code's settings ← ``METHOD_OVERRIDES["bgad"][profile]`` ← ``changes``.

    Loss fields (``beta``, ``tau``, ``normalizer``, ``focal_weighting``, ``ml_loss``, …) may be
    given at the top level, e.g. ``bgad_config(cfg, beta=0.05, tau=0.2)`` (Table 4).
    """
    settings = {k: v for k, v in {**_overrides(cfg), **changes}.items() if k not in GRID_KEYS}
    loss = {k: settings.pop(k) for k in list(settings) if k in _LOSS_FIELDS}
    config = apply_overrides(BGADConfig(progress=cfg.interactive), settings, "BGAD")
    return dataclasses.replace(config, loss=apply_overrides(config.loss, loss, "BGAD loss"))


def method_config(config: BGADConfig, method: str) -> BGADConfig:
    """``bgad`` (unsupervised): ML + normal boundary in every boundary-stage chunk; ``bgad_fas``: as given."""
    if choose("method", method, METHODS) == "bgad":
        return dataclasses.replace(config, loss=dataclasses.replace(config.loss, pull_in_normal_chunks=True))
    return config


def available_backbone(config: BGADConfig) -> tuple[str, str, str]:
    """(backbone, weights, note): EfficientNet-B6 when its ImageNet weights are in the torch hub
    cache (or downloads are allowed), else the offline EfficientNet-Lite0 with a note."""
    if config.backbone != "efficientnet_b6" or config.weights != "imagenet":
        return config.backbone, config.weights, ""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / B6_URL.rsplit("/", 1)[-1]
    if cached.is_file() or os.environ.get(ALLOW_DOWNLOAD_ENV, "") == "1":
        return config.backbone, config.weights, ""
    note = f"efficientnet_lite0 ImageNet (paper: efficientnet_b6; its weights {cached} not found)"
    return "efficientnet_lite0", "imagenet", note


def ablation_variant(config: BGADConfig, table: str) -> str:
    """The ``variant`` under which a configuration appears in the paper's ablation tables:
    Table 4 ``"beta=0.01,tau=0.1"``; Table 6 ``"bgspp"``, ``"bgspp+racp"``, ``"bgspp+racp+afw"``."""
    if choose("table", table, ("table4", "table6")) == "table4":
        return f"beta={config.loss.beta:g},tau={config.loss.tau:g}"
    racp = config.racp and config.racp_copies > 0
    return "bgspp" + ("+racp" if racp else "") + ("+afw" if config.loss.focal_weighting else "")


def config_deviations(config: BGADConfig, dataset: str, has_masks: bool = True, max_train_normals: int = 0,
                      labelled: bool = True) -> str:
    """How a run differs from the defaults (:class:`BGADConfig`: the official code's README run,
    with the paper's β = 5 % and gradients cleared to ``None``), one ``name=value (default: …)``
    part per field with a note where the value has a known origin (:data:`OPTION_NOTES`),
    starting with the report (``report=last_epoch``)."""
    default = BGADConfig()
    _, _, note = available_backbone(config)
    parts = [note] if note else []
    skip = ("progress", "feature_batch_size", "loss") + (("backbone",) if note else ())
    parts += config_diff(config, default, "default", skip=skip, notes=OPTION_NOTES)
    parts += config_diff(config.loss, default.loss, "default", skip=("pull_in_normal_chunks",), notes=OPTION_NOTES)
    if max_train_normals:
        parts.append(f"training normals subsampled to {max_train_normals}")
    if labelled and not has_masks:
        parts.append("no pixel masks: labelled anomalies marked anomalous at every position")
    if dataset == "synthetic":
        parts.insert(0, "synthetic data (no paper row)")
    return "; ".join(["report=last_epoch"] + parts)


# --------------------------------------------------------------------------------------------
# protocol


def bgad_split(
    samples: Sequence[Sample],
    n_shots: int,
    seed: int,
    *,
    sampling: str = "stratified",
    train_classes: Sequence[str] | None = None,
    test_classes: Sequence[str] | None = None,
    dataset: str = "",
    subset: str = "",
) -> Split:
    """BGAD's split (the official code's): ``n_shots`` labelled anomalies that leave the test set.

    ``sampling="stratified"`` (the code): per class (sorted), ⌊N/T⌋ anomalies of a seeded
    permutation, then N mod T more drawn from all leftovers; ``"uniform"``: N at random from all
    (DRA/DevNet). ``train_classes`` limits where labelled anomalies come from, ``test_classes``
    which anomaly classes are tested (Table 5). ``n_shots=0`` is unsupervised BGAD's split.
    """
    choose("sampling", sampling, ("stratified", "uniform"))
    if not isinstance(n_shots, int) or n_shots < 0:
        raise ConfigError(f"parameter 'n_shots': {n_shots!r} must be a non-negative integer")
    where = f"{dataset}/{subset}" if subset else dataset or "the dataset"
    ordered = sorted(samples, key=lambda s: s.path)
    train_normal = [s.path for s in ordered if s.label == 0 and s.split == "train"]
    test_normal = [s for s in ordered if s.label == 0 and s.split == "test"]
    anomalies = [s for s in ordered if s.label == 1]
    if not train_normal:
        raise ConfigError(f"{where} has no training normals; check the dataset folder")
    candidates = [s for s in anomalies if train_classes is None or s.anomaly_class in train_classes]
    if n_shots > len(candidates):
        raise ConfigError(
            f"{where}: {n_shots} labelled anomalies requested but only {len(candidates)} available; use fewer shots")
    rng = np.random.default_rng(seed)
    drawn = _stratified(candidates, n_shots, rng) if sampling == "stratified" else \
        [candidates[i] for i in rng.permutation(len(candidates))[:n_shots]]
    used = {s.path for s in drawn}
    tested = [s for s in anomalies if s.path not in used and (test_classes is None or s.anomaly_class in test_classes)]
    if not tested:
        raise ConfigError(f"{where}: no test anomalies remain; use fewer shots or other test classes")
    return with_test_copies(Split(
        dataset=dataset, subset=subset, setting="general" if n_shots else "unsupervised", n_shots=n_shots,
        seed=int(seed), seen_class=None, contamination=0.0, nested_in=n_shots,
        train_normal=tuple(train_normal), train_anomaly=tuple(sorted((s.path, s.anomaly_class) for s in drawn)),
        train_contamination=(), test=tuple(sorted((s.path, s.label, s.anomaly_class) for s in test_normal + tested)),
    ), samples)


def _stratified(candidates: list[Sample], n: int, rng: np.random.Generator) -> list[Sample]:
    classes = sorted({s.anomaly_class for s in candidates})
    per_class, drawn, leftovers = n // len(classes) if classes else 0, [], []
    for cls in classes:
        members = [s for s in candidates if s.anomaly_class == cls]
        shuffled = [members[i] for i in rng.permutation(len(members))]
        drawn += shuffled[:per_class]
        leftovers += shuffled[per_class:]
    leftovers.sort(key=lambda s: s.path)
    extra = n - len(drawn)
    return drawn + [leftovers[i] for i in rng.permutation(len(leftovers))[:extra]]


def table5_split(samples: Sequence[Sample], category: str, which: str, n_shots: int, seed: int) -> Split:
    """Table 5's splits of MVTec AD ``category``: ``"hard"`` (anomalies of all classes for training,
    hard classes tested) or ``"unseen"`` (easy classes for training, hard classes tested)."""
    choose("which", which, ("hard", "unseen"))
    hard = HARD_CLASSES[choose("category", category, HARD_CLASSES)]
    classes = sorted({s.anomaly_class for s in samples if s.label == 1})
    easy = [c for c in classes if c not in hard] or list(hard)  # toothbrush: one class, easy = hard
    return bgad_split(samples, n_shots, seed, train_classes=easy if which == "unseen" else None,
                      test_classes=hard, dataset="mvtecad", subset=category)


def dataset_split(cfg: NotebookConfig, name: str, n_shots: int, seed: int) -> Split:
    """The BGAD split of registry dataset ``name`` (data must be at hand)."""
    info = subset_info(name)
    samples = read_mvtec_layout(resolve(name, cfg.data_root))
    return bgad_split(samples, n_shots, seed, dataset=info.dataset, subset=info.subset)


# --------------------------------------------------------------------------------------------
# grid


def _table_runs(cfg: NotebookConfig) -> list[tuple[str, str, str, int]]:
    """(table, registry name, method, n_shots) of the profile's grid."""
    runs = []
    fas = int(grid_option(cfg, "fas_n_shots"))
    for table in ("table1", "table2"):
        for name in dataset_names(grid_option(cfg, f"{table}_datasets")):
            runs += [(table, name, "bgad", 0), (table, name, "bgad_fas", fas)]
    for name in dataset_names(grid_option(cfg, "table3_datasets")):
        runs.append(("table3", name, "bgad_fas", int(grid_option(cfg, "table3_n_shots"))))
    return runs


def grid(cfg: NotebookConfig) -> list[GridItem]:
    """The notebook's experiments under ``cfg.profile`` (works without data: registry metadata)."""
    items = []
    config = bgad_config(cfg)
    for table, name, method, n_shots in _table_runs(cfg):
        for seed in cfg.seeds:
            items.append(_item(cfg, config, table, name, method, n_shots, seed))
    return items


def available_items(items: Sequence[GridItem]) -> tuple[list[GridItem], list[str]]:
    """(items whose data are at hand, one line naming the missing datasets, or none) by
    :func:`osad_lib.experiments.runnable`, the rule of every notebook."""
    ready, missing = experiments.runnable(items)
    return ready, [f"skipped (data not found, embedded or under data_root): {', '.join(missing)}"] if missing else []


def _item(cfg: NotebookConfig, config: BGADConfig, table: str, name: str, method: str, n_shots: int,
          seed: int) -> GridItem:
    info = subset_info(name)
    backbone, _, _ = available_backbone(config)
    try:
        split = dataset_split(cfg, name, n_shots, seed)
    except ConfigError:
        split = None
    experiment = Experiment(
        notebook=NOTEBOOK, paper="bgad", table=table, dataset=info.dataset, subset=info.subset,
        setting="general" if n_shots else "unsupervised", n_shots=n_shots, method=method,
        backbone=backbone, seed=seed, profile=cfg.profile.name, manifest_id=split.manifest_id if split else "",
        deviations=experiments.with_split_note(config_deviations(
            method_config(config, method), info.dataset, info.has_masks, int(grid_option(cfg, "max_train_normals")),
            labelled=n_shots > 0), split),
        device=cfg.device_label, extra_key={"name": name},
    )
    return GridItem(experiment, *_cost(info, n_shots, config, int(grid_option(cfg, "max_train_normals"))))


def _cost(info: Any, n_shots: int, config: BGADConfig, max_train_normals: int) -> tuple[int, int]:
    """(image feature maps through the flows in training, images evaluated), from the paper counts.

    Training passes go through the flows only (features are cached); evaluation counts the one
    feature extraction of every image plus the flows on the test set after every meta epoch.
    """
    counts = info.paper
    n_train = counts.train_normal if counts else 40
    if max_train_normals:
        n_train = min(n_train, max_train_normals)
    n_test = (counts.test_normal + counts.anomalies) if counts else 60
    entries = n_train + n_shots * (config.real_repeats + (config.racp_copies if config.racp else 0))
    return config.meta_epochs * config.sub_epochs * entries, n_train + n_test + config.meta_epochs * n_test


# --------------------------------------------------------------------------------------------
# features (computed once per dataset; seeds and methods share them)


@functools.lru_cache(maxsize=1)
def _dataset_features(root: str, image_size: int, backbone: str, weights: str, device: str,
                      batch_size: int) -> tuple[ImageSet, FeatureBank, dict[str, int], Backbone]:
    """Every image of the dataset at ``root``, its frozen features, a path → row index and the backbone.

    The features are computed once per dataset, backbone, weights and image size and kept on
    disk (:func:`osad_lib.components.features.cached_dataset_features`), so every seed, method, ablation
    and later run reuses them; in memory only the last dataset is kept.
    """
    samples = read_mvtec_layout(root)
    images = load_images(root, samples, image_size)
    net = build_backbone(backbone, weights).freeze()

    def compute() -> dict[str, list[torch.Tensor]]:
        return {"levels": extract_levels(net, images.images, batch_size, device)}

    if weights == "random":  # a random backbone depends on the seed's RNG state: nothing to share
        levels = compute()["levels"]
    else:
        key = dataset_key(Path(root), "bgad_levels", image_size, backbone, weights)
        levels = cached_dataset_features("bgad_levels", key, compute)["levels"]
    bank = FeatureBank(levels, downsample_masks(None, len(images), [tuple(x.shape[-2:]) for x in levels]))
    return images, bank, {p: i for i, p in enumerate(images.paths)}, net


def _anomaly_masks(images: ImageSet, rows: list[int]) -> torch.Tensor:
    """Defect masks [N,1,S,S] of ``rows``; all ones where the dataset has no masks."""
    if images.masks is None:
        size = images.images.shape[-1]
        return torch.ones(len(rows), 1, size, size, dtype=torch.uint8)
    return images.masks[rows]


class _AnomalyEntries:
    """The anomalous entries of one pass (the code): each labelled anomaly ``real_repeats`` times and
    ``racp_copies`` fresh RandAugmented CutPaste samples per anomaly (features computed per pass)."""

    def __init__(self, images: ImageSet, bank: FeatureBank, normal_rows: list[int], anomaly_rows: list[int],
                 net: Any, config: BGADConfig, device: str, seed: int) -> None:
        self.images, self.normal_rows, self.config, self.net, self.device = images, normal_rows, config, net, device
        self.anomalies = images.images[anomaly_rows].float() / 255
        self.masks = _anomaly_masks(images, anomaly_rows).float()
        sizes = [tuple(x.shape[-2:]) for x in bank.levels]
        real = FeatureBank([x[anomaly_rows] for x in bank.levels], downsample_masks(self.masks, len(anomaly_rows), sizes))
        self.real = FeatureBank.concat([real] * config.real_repeats).to(device)
        self.sizes = sizes
        self.generator = torch_generator(seed)

    def __call__(self) -> FeatureBank:
        if not self.config.racp or not self.config.racp_copies:
            return self.real
        images, masks = self.racp_samples()
        levels = extract_levels(self.net, images, self.config.feature_batch_size, self.device)
        copies = FeatureBank(levels, downsample_masks(masks, len(images), self.sizes)).to(self.device)
        return FeatureBank.concat([self.real, copies])

    def racp_samples(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``racp_copies`` samples per anomaly: its defect, RandAugmented, pasted into a random training normal."""
        out, out_masks = [], []
        g = self.generator
        for anomaly, mask in zip(self.anomalies, self.masks):
            for _ in range(self.config.racp_copies):
                row = self.normal_rows[int(torch.randint(len(self.normal_rows), (), generator=g))]
                normal = self.images.images[row].float() / 255
                fg = foreground_mask(normal) if self.config.foreground else None
                image, pasted = randaug_cutpaste(normal, g, anomalies=anomaly, anomaly_masks=mask, foreground=fg,
                                                 op_set=self.config.racp_ops)
                out.append(image)
                out_masks.append(pasted)
        return torch.stack(out), torch.stack(out_masks)


# --------------------------------------------------------------------------------------------
# running one experiment


def run_bgad(cfg: NotebookConfig, split: Split, config: BGADConfig, *, method: str | None = None,
             max_train_normals: int = 0, maps_path: Path | None = None,
             details_path: Path | None = None) -> dict[str, float]:
    """Train BGAD (``config``) on ``split`` and evaluate after every meta epoch; return the metrics.

    ``method``: ``"bgad"`` (unsupervised) or ``"bgad_fas"``; default from the split (0 shots →
    ``bgad``). ``max_train_normals``: use a seeded subset of the training normals (demo only).
    ``maps_path``: save a few test images with masks and last-epoch maps, and every test
    image's score (Fig. 4 and the score explorer, :func:`save_maps`).
    ``details_path``: write the run's per-epoch history (loss, learning rate, metrics) and cost
    (training/evaluation time, peak memory, feature cache size) as JSON.
    Metrics (all in [0, 1]): last epoch, ``@max_over_epochs``, ``@epoch<k>`` (module docstring).
    """
    method = method or ("bgad_fas" if split.n_shots else "bgad")
    config = method_config(config, method)
    if method == "bgad_fas" and not split.train_anomaly:
        raise ConfigError("BGAD-FAS needs labelled anomalies: make the split with n_shots >= 1, or use method='bgad'")
    backbone, weights, _ = available_backbone(config)
    name = f"{split.dataset}/{split.subset}" if split.subset else split.dataset
    root = resolve(name, cfg.data_root)
    images, bank, row, net = _dataset_features(str(root), config.image_size, backbone, weights, cfg.device,
                                          config.feature_batch_size)
    seed_everything(split.seed)
    normal_rows = _normal_rows(split, row, max_train_normals)
    anomaly_rows = [row[p] for p, _ in split.train_anomaly] if method == "bgad_fas" else []
    kept = limits.test_rows([c for _, _, c in split.test], split.seed)  # all, except in a dry run
    device = cfg.device
    test = _test_set(images, bank, [row[split.test[i][0]] for i in kept], [split.test[i][1] for i in kept])
    anomalies = None
    if anomaly_rows:
        anomalies = _AnomalyEntries(images, bank, normal_rows, anomaly_rows, net, config, device, split.seed)
    flows = BGADFlows(bank_channels(bank), config.pos_embed_dim, config.coupling_blocks, config.clamp_alpha)
    evaluator = _Evaluator(flows, test, config, device)
    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    history = fit_bgad(flows, bank.subset(normal_rows).to(device), anomalies, config, device, split.seed, evaluator)
    train_time = time.perf_counter() - start - evaluator.seconds
    if maps_path is not None:
        seen = {c for _, c in split.train_anomaly} if anomaly_rows else set()
        save_maps(maps_path, test, evaluator.last_maps, seen_classes=seen)
    if details_path is not None:
        details = run_details(history, train_time, evaluator.seconds, device, bank)
        atomic_write_text(details_path, json.dumps(details, indent=1))
    return epoch_metrics(history)


def bank_channels(bank: FeatureBank) -> list[int]:
    return [int(x.shape[1]) for x in bank.levels]


def _normal_rows(split: Split, row: dict[str, int], max_train_normals: int) -> list[int]:
    rows = [row[p] for p in split.train_normal]
    if max_train_normals and len(rows) > max_train_normals:
        keep = np.sort(np.random.default_rng(split.seed).permutation(len(rows))[:max_train_normals])
        rows = [rows[i] for i in keep]
    return rows


@dataclasses.dataclass
class _TestSet:
    bank: FeatureBank
    labels: np.ndarray
    masks: torch.Tensor | None
    images: torch.Tensor
    paths: list[str]


def _test_set(images: ImageSet, bank: FeatureBank, rows: list[int], labels: list[int]) -> _TestSet:
    labels = np.array(labels)
    masks = None if images.masks is None else images.masks[rows]
    return _TestSet(bank.subset(rows), labels, masks, images.images[rows], [images.paths[r] for r in rows])


class _Evaluator:
    """Metrics of the test set after a meta epoch (the code's scoring); keeps the last maps and the time spent."""

    def __init__(self, flows: BGADFlows, test: _TestSet, config: BGADConfig, device: str) -> None:
        self.flows, self.test, self.config, self.device = flows, test, config, device
        self.seconds = 0.0
        self.last_maps: torch.Tensor | None = None

    def __call__(self, epoch: int) -> dict[str, float]:
        start = time.perf_counter()
        maps = assemble_anomaly_maps(loglik_maps(self.flows, self.test.bank, self.device), self.config.image_size)
        metrics = evaluate_maps(maps, self.test.labels, self.test.masks)
        self.last_maps = maps
        self.seconds += time.perf_counter() - start
        return metrics


def evaluate_maps(maps: torch.Tensor, labels: np.ndarray, masks: torch.Tensor | None) -> dict[str, float]:
    """Image AUROC of the map maxima; pixel AUROC and PRO (FPR ≤ 0.3) when pixel masks exist (the code's metrics)."""
    metrics = {"auroc": image_auroc(labels, image_scores(maps).numpy())}
    if masks is not None and bool(masks.any()):
        gt = masks[:, 0].numpy() > 0
        metrics["pixel_auroc"] = pixel_auroc(gt, maps.numpy())
        metrics["pro"] = pro_score(gt, maps.numpy())
    return metrics


def epoch_metrics(history: list[dict[str, float]]) -> dict[str, float]:
    """Last-epoch metrics, the per-metric maxima over epochs and every epoch's values."""
    names = [m for m in IMAGE_METRICS + PIXEL_METRICS if m in history[-1]]
    out = {m: history[-1][m] for m in names}
    out.update({f"{m}{MAX_SUFFIX}": max(h[m] for h in history) for m in names})
    for h in history:
        out.update({f"{m}@epoch{h['epoch']}": h[m] for m in names})
    return out


def run_details(history: list[dict[str, float]], train_time: float, eval_time: float, device: str,
                bank: FeatureBank) -> dict[str, Any]:
    """What a run cost and how it went: history (loss, lr, metrics per meta epoch), times, memory."""
    return {
        "history": history, "train_time_s": train_time, "eval_time_s": eval_time,
        "peak_memory_mb": _peak_memory_mb(device), "feature_cache_mb": bank.nbytes / 2**20,
        "memory_kind": "cuda_max_allocated" if str(device).startswith("cuda") else "process_peak_rss",
    }


def _peak_memory_mb(device: str) -> float:
    """CUDA: peak allocated by torch during the run; CPU: the process's peak resident memory."""
    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def save_maps(path: Path, test: _TestSet, maps: torch.Tensor, per_class: int = 2, n_normals: int = 4,
              seen_classes: Sequence[str] = ()) -> None:
    """For Fig. 4: the first ``per_class`` anomalous test images of every defect class (uint8),
    their paths, masks and anomaly maps (float16). For the score explorer
    (:func:`explorer_inputs`): ``n_normals`` normal test images spread over the normals' score
    range (lowest to highest) with their maps (``normal_*``), every test image's path, label and
    image score (``test_*``, score = map maximum) and the labelled anomalies' classes."""
    by_class: dict[str, list[int]] = {}
    for r in np.flatnonzero(test.labels == 1):
        by_class.setdefault(Path(test.paths[r]).parent.name, []).append(int(r))
    rows = [r for k in range(per_class) for cls in sorted(by_class) for r in by_class[cls][k:k + 1]]
    size = tuple(maps.shape[-2:])
    masks = test.masks[rows].numpy() if test.masks is not None else np.zeros((len(rows), 1, *size), np.uint8)
    scores = image_scores(maps).numpy()
    normals = np.flatnonzero(test.labels == 0)
    ranked = normals[np.argsort(scores[normals], kind="stable")]
    picked = np.unique(np.linspace(0, len(ranked) - 1, min(n_normals, len(ranked))).round().astype(int))
    normal_rows = ranked[picked].tolist()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez_compressed(tmp, images=test.images[rows].numpy(), masks=masks,
                        maps=maps[rows].numpy().astype(np.float16), paths=np.array([test.paths[r] for r in rows]),
                        normal_images=test.images[normal_rows].numpy(),
                        normal_maps=maps[normal_rows].numpy().astype(np.float16),
                        normal_paths=np.array([test.paths[r] for r in normal_rows], dtype=str),
                        test_paths=np.array(test.paths), test_labels=np.asarray(test.labels, dtype=np.int8),
                        test_scores=scores.astype(np.float32), seen_classes=np.array(sorted(seen_classes), dtype=str))
    tmp.replace(path)


def run_files(cfg: NotebookConfig, item: GridItem) -> tuple[Path, Path]:
    """(details JSON, maps and test scores for Fig. 4 and the score explorer) that :func:`run_one`
    writes for ``item``."""
    folder = cfg.runs_dir / "bgad"
    return folder / f"{item.experiment.experiment_id}.json", folder / f"{item.experiment.experiment_id}.npz"


def run_one(cfg: NotebookConfig, item: GridItem) -> dict[str, float]:
    """Run one grid item (its split, the profile's configuration) and return its metrics; the
    details go to :func:`run_files` (maps for the first seed only)."""
    e = item.experiment
    split = dataset_split(cfg, e.extra_key["name"], e.n_shots, e.seed)
    details, maps = run_files(cfg, item)
    return run_bgad(cfg, split, bgad_config(cfg), method=e.method,
                    max_train_normals=int(grid_option(cfg, "max_train_normals")),
                    maps_path=maps if e.seed == cfg.seeds[0] else None, details_path=details)


# --------------------------------------------------------------------------------------------
# tables and figures


def report_view(rows: pd.DataFrame, report: str = "last_epoch") -> pd.DataFrame:
    """Canonical metric rows of one report: the last epoch (honest) or the per-metric maximum
    over epochs selected on the test set (faithful to the official numbers); ``deviations``
    starts with ``report=<report>``."""
    choose("report", report, REPORTS)
    canonical = IMAGE_METRICS + PIXEL_METRICS
    if report == "last_epoch":
        view = rows[rows["metric"].isin(canonical)].copy()
    else:
        view = rows[rows["metric"].isin([m + MAX_SUFFIX for m in canonical])].copy()
        view["metric"] = view["metric"].str.removesuffix(MAX_SUFFIX)
    view["deviations"] = view["deviations"].str.replace(r"^report=\w+", f"report={report}", regex=True)
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
    fmt = paper.format_mean_std
    return pd.DataFrame({
        "dataset": comp["dataset"], "subset": comp["subset"], "setting": comp["setting"],
        "n_shots": comp["n_shots"], "method": comp["method"], "metric": comp["metric"],
        "paper": [fmt(m, s) for m, s in zip(comp["paper_mean"], comp["paper_std"])],
        "measured (last epoch)": [fmt(m, s) for m, s in zip(comp["last_mean"], comp["last_std"])],
        "Δ last": comp["delta_last"].round(3),
        "measured (max over epochs, faithful)": [fmt(m, s) for m, s in zip(comp["max_mean"], comp["max_std"])],
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
    return _cost(subset_info(name), n_shots, config, max_train_normals)


__all__ = [
    "GRID_KEYS", "HARD_CLASSES", "METHODS", "NOTEBOOK", "REPORTS", "ablation_variant", "available_backbone", "available_items",
    "bgad_config", "bgad_split", "comparison", "config_deviations", "cost_table", "dataset_split",
    "display_table", "epoch_curves", "epoch_metrics", "evaluate_maps", "explorer_inputs", "explorer_run", "grid",
    "grid_option", "localization_maps", "method_config", "plot_epoch_curves", "plot_localization", "report_view", "run_bgad",
    "run_cost", "run_details", "run_files", "run_one", "table5_split", "with_shared_rows",
]
