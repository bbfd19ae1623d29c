"""Profile → settings of DevNet, which other notebooks build on: the image baselines take
DevNet's backbone, image size, frozen stages and schedule (:mod:`osad_lib.experiments.baselines`),
DRA's and AHL's grids compare against it. One resolver, used by 01_devnet and the others alike."""

from __future__ import annotations

from typing import Any

from osad_lib.methods.devnet.model import DevNetConfig
from osad_lib.profiles import NotebookConfig
from osad_lib.validate import choose

#: Method name → DevNetConfig options that define it (FLOS: DevNet with the focal loss, §6.3).
DEVNET_METHODS: dict[str, dict[str, Any]] = {"devnet": {}, "flos": {"criterion": "focal"}}


def devnet_config(cfg: NotebookConfig, method: str = "devnet", **changes: Any) -> DevNetConfig:
    """DevNet's code defaults ← the profile (image size, scales, backbone, weights, schedule,
    batch) ← the profile's DevNet ``config`` (``METHOD_OVERRIDES["devnet"][profile]``) ← the method
    (``flos`` = focal loss) ←
    ``changes`` (an ablation, e.g. ``topk_ratio=0.05`` or ``**osad_lib.experiments.devnet.TABLE5_VARIANTS["rep"]``)."""
    method = choose("method", method, DEVNET_METHODS)
    p = cfg.profile
    base = {"image_size": p.image_size, "n_scales": p.n_scales, "backbone": p.backbone, "weights": p.weights,
            "epochs": p.epochs, "steps_per_epoch": p.steps_per_epoch, "batch_size": p.batch_size,
            "eval_batch_size": p.eval_batch_size}
    return DevNetConfig.from_overrides({**base, **p.method("devnet").config, **DEVNET_METHODS[method], **changes})


__all__ = ["DEVNET_METHODS", "devnet_config"]
