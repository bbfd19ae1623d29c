"""Trained models shared across notebooks: each (method, settings, split, seed) is trained once per run.

The notebooks overlap: 02_dra compares DRA with DevNet on 01_devnet's splits, 05_ahl needs the
DevNet and DRA base models of those splits, and 06_ablations reruns the full models beside their
variants. A trained model's weights are stored under ``runs/<profile>/models/`` with a key made
from the method, every field of its settings (a dataclass), the split's manifest id and the seed,
so any notebook that asks for the same model loads it instead of training it again — and a
change to any setting trains a new one. Scoring a stored model gives the same numbers as scoring
it right after training (callers seed the evaluation, e.g. DRA's random references).

A stored model holds only what training changed: the entries of its ``state_dict`` that differ
from a freshly built model (the head, the fine-tuned stages, running statistics), with a SHA-256
of the rest (the frozen pretrained stages, the unused ImageNet classifier). Loading builds the
model, checks that digest and applies the stored entries. A Lite0 DevNet of the demo profile is
4 MB instead of 19 MB; the demo's 320 models take 0.72 GB instead of about 6 GB. When the built
model no longer matches (other pretrained weights, a changed architecture), the stored one is
discarded with one line and the model is trained again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from osad_lib.data.tensors import tensors_digest
from osad_lib.profiles import NotebookConfig
from osad_lib.training import load_checkpoint, save_checkpoint
from osad_lib.validate import notice

#: Bump when training changes in a way that the settings do not show, so stored models are retrained
#: (2: stored as the difference from the built model).
MODEL_VERSION = 2


def model_key(method: str, settings: Any, manifest_id: str, seed: int) -> str:
    """A stable key of a trained model: method, every settings field, split manifest id, seed."""
    fields = dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else dict(settings)
    text = json.dumps([MODEL_VERSION, method, fields, manifest_id, int(seed)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def model_file(cfg: NotebookConfig, method: str, settings: Any, manifest_id: str, seed: int) -> Path:
    """Where the weights of that model are kept (``runs/<profile>/models/<method>_<key>.pt``)."""
    return cfg.models_dir / f"{method}_{model_key(method, settings, manifest_id, seed)}.pt"


def load_or_train(cfg: NotebookConfig, method: str, settings: Any, manifest_id: str, seed: int,
                  build: Callable[[], nn.Module], train: Callable[[], nn.Module]) -> tuple[nn.Module, bool]:
    """The trained model: loaded into ``build()`` when stored, else ``train()`` and stored.

    Returns (model in eval mode, whether it was loaded). Without a manifest id (no split) the
    model is trained and not stored.
    """
    file = model_file(cfg, method, settings, manifest_id, seed)
    stored = load_checkpoint(file, map_location=cfg.device, weights_only=True, what="stored model",
                             consequence="training it again") if manifest_id else None
    if stored is not None:
        model = build()
        if apply_changes(model, stored):
            return model.eval(), True
        notice(f"stored model {file} does not fit the model built now (other pretrained weights or "
               "architecture); training it again")
    model = train()
    if manifest_id:
        with torch.random.fork_rng():  # building the reference draws a random head: not from the run's stream
            built = build().state_dict()
        save_checkpoint(file, changes(model.state_dict(), built))
    return model.eval(), False


def changes(trained: Mapping[str, torch.Tensor], built: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """What a trained model's ``state_dict`` adds to a freshly built one's: the entries that
    differ (``changed``) and the digest of the ones that do not (``unchanged_sha256``)."""
    same = {name for name, tensor in trained.items() if name in built and built[name].shape == tensor.shape
            and built[name].dtype == tensor.dtype and torch.equal(built[name], tensor)}
    return {"changed": {name: tensor for name, tensor in trained.items() if name not in same},
            "unchanged_sha256": tensors_digest({name: trained[name] for name in same})}


def apply_changes(model: nn.Module, stored: Mapping[str, Any]) -> bool:
    """Load :func:`changes` into the freshly built ``model``; False (``model`` untouched) when
    its entries that were not stored differ from those the stored model was trained from."""
    state = model.state_dict()
    changed = stored["changed"]
    if not set(changed) <= set(state):
        return False
    if tensors_digest({name: t for name, t in state.items() if name not in changed}) != stored["unchanged_sha256"]:
        return False
    model.load_state_dict({**state, **changed})
    return True


__all__ = ["MODEL_VERSION", "apply_changes", "changes", "load_or_train", "model_file", "model_key"]
