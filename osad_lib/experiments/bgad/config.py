"""The settings of ``03_bgad``: the profile's BGAD settings and grid keys, the paper backbone
where its weights are at hand, and how a run's settings depart from the paper's."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from osad_lib.methods.bgad.loss import BGADLossConfig
from osad_lib.components.backbones import ALLOW_DOWNLOAD_ENV, B6_URL
from osad_lib.methods.bgad.model import (
    BGADConfig,
)
from osad_lib.profiles import GRID_OPTIONS, NotebookConfig
from osad_lib.settings import apply_overrides, config_diff
from osad_lib.validate import choose



NOTEBOOK = "03_bgad"
METHODS = ("bgad", "bgad_fas")
#: The defaults of the grid options of the profile's BGAD settings (``GRID_OPTIONS["bgad"]``).
GRID_DEFAULTS: dict[str, Any] = {
    "table1_datasets": ("mvtecad",), "table2_datasets": ("btad",),
    "table3_datasets": ("aitex", "elpv", "brainmri", "headct"),
    "fas_n_shots": 5, "table3_n_shots": 1, "max_train_normals": 0,
}
REPORTS = ("last_epoch", "max_over_epochs")
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




def grid_option(cfg: NotebookConfig, key: str) -> Any:
    """A grid option of the profile's BGAD settings (:data:`GRID_DEFAULTS`), with its default."""
    return cfg.profile.method("bgad").grid.get(choose("grid option", key, GRID_OPTIONS["bgad"]), GRID_DEFAULTS[key])


def bgad_config(cfg: NotebookConfig, **changes: Any) -> BGADConfig:
    """The official code's settings ← the profile's BGAD ``config`` ← ``changes``.

    Loss fields (``beta``, ``tau``, ``normalizer``, ``focal_weighting``, ``ml_loss``, …) may be
    given at the top level, e.g. ``bgad_config(cfg, beta=0.05, tau=0.2)`` (Table 4).
    """
    settings = {**cfg.profile.method("bgad").config, **changes}
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
    part per field with a note where the value has a known origin (:data:`OPTION_NOTES`). How the
    metrics are reported is the row's ``report`` column, not a part of this text."""
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
    return "; ".join(parts)
