"""Trained models shared across notebooks: each (method, settings, split, seed) is trained once per run.

The notebooks overlap: 02_dra compares DRA with DevNet on 01_devnet's splits, 05_ahl needs the
DevNet and DRA base models of those splits, and 06_ablations reruns the full models beside their
variants. A trained model's weights are stored under ``runs/<profile>/models/`` with a key made
from the method, every field of its settings (a dataclass), the split's manifest id and the seed,
so any notebook that asks for the same model loads it instead of training it again — and a
change to any setting trains a new one. Scoring a stored model gives the same numbers as scoring
it right after training (callers seed the evaluation, e.g. DRA's random references).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from osad_lib.profiles import NotebookConfig
from osad_lib.training import load_checkpoint, save_checkpoint

#: Bump when training changes in a way that the settings do not show, so stored models are retrained.
MODEL_VERSION = 1


def model_key(method: str, settings: Any, manifest_id: str, seed: int) -> str:
    """A stable key of a trained model: method, every settings field, split manifest id, seed."""
    fields = dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else dict(settings)
    text = json.dumps([MODEL_VERSION, method, fields, manifest_id, int(seed)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def model_file(cfg: NotebookConfig, method: str, settings: Any, manifest_id: str, seed: int) -> Path:
    """Where the weights of that model are kept (``runs/<profile>/models/<method>_<key>.pt``)."""
    return cfg.runs_dir / "models" / f"{method}_{model_key(method, settings, manifest_id, seed)}.pt"


def load_or_train(cfg: NotebookConfig, method: str, settings: Any, manifest_id: str, seed: int,
                  build: Callable[[], nn.Module], train: Callable[[], nn.Module]) -> tuple[nn.Module, bool]:
    """The trained model: loaded into ``build()`` when stored, else ``train()`` and stored.

    Returns (model in eval mode, whether it was loaded). Without a manifest id (no split) the
    model is trained and not stored.
    """
    file = model_file(cfg, method, settings, manifest_id, seed)
    state = load_checkpoint(file, map_location=cfg.device, weights_only=True, what="stored model",
                            consequence="training it again") if manifest_id else None
    if state is not None:
        model = build()
        model.load_state_dict(state)
        return model.eval(), True
    model = train()
    if manifest_id:
        save_checkpoint(file, model.state_dict())
    return model.eval(), False


__all__ = ["MODEL_VERSION", "load_or_train", "model_file", "model_key"]
