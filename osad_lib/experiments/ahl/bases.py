"""The trained base models (DevNet, DRA) and their feature banks, shared by the AHL runs on them."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from osad_lib.data.tensors import ImageSet, load_split, subsample
from osad_lib.experiments import devnet as xdevnet
from osad_lib.experiments import dra as xdra
from osad_lib.data.pseudo import load_textures
from osad_lib.experiments.stem_cache import StemConfig, dataset_stems, pseudo_stems
from osad_lib.components.features import PSEUDO_GENERATORS, FeatureBank, cached_features, normal_subset
from osad_lib.methods.devnet.model import DevNetConfig, score_images
from osad_lib.methods.dra import DRAConfig
from osad_lib.profiles import NotebookConfig
from osad_lib.results import Experiment
from osad_lib.experiments.ahl.config import base_config, grid_option
from osad_lib.experiments.ahl.grids import make_dataset_split



@dataclasses.dataclass
class BaseRun:
    """A trained base model of one split, its feature bank, its state dict (the heads) and its own
    test scores (scored as its notebook scores it: DRA with the references of its mode)."""

    model: torch.nn.Module
    bank: FeatureBank
    state: dict[str, torch.Tensor]
    scores: np.ndarray


def _stems(cfg: NotebookConfig, root: Path, config: DevNetConfig | DRAConfig, images: ImageSet) -> Any:
    """Cached frozen-stem outputs of ``images`` (``frozen_stages > 0``, the CPU demo), else None."""
    if not config.frozen_stages:
        return None
    return dataset_stems(root, StemConfig.of(config), images, cfg.device)


def draem_textures(cfg: NotebookConfig, image_size: int) -> torch.Tensor | None:
    """DTD texture images for DRAEM pseudo anomalies (App. B.1) when the data root holds the
    Describable Textures Dataset (``<data_root>/dtd/images/<class>/*.jpg``), else None (generated
    textures, :func:`osad_lib.data.pseudo.generated_texture`)."""
    folder = cfg.data_root / "dtd" / "images" if cfg.data_root is not None else None
    return load_textures(folder, image_size) if folder is not None and folder.is_dir() else None


def _pseudo_stems(cfg: NotebookConfig, root: Path, config: Any, train: ImageSet, rows: np.ndarray,
                  generators: Sequence[str]) -> dict[str, Any] | None:
    """Cached frozen-stem outputs of each generator's pseudo anomaly of the training normals
    ``rows`` (:func:`osad_lib.experiments.stem_cache.pseudo_stems`; the CPU demo), else None."""
    if not config.frozen_stages:
        return None
    normals = [train.paths[r] for r in rows]
    textures = draem_textures(cfg, config.image_size)
    return {g: pseudo_stems(root, StemConfig.of(config), PSEUDO_GENERATORS[g], normals,
                            dihedral_transform=config.dihedral, textures=textures if g == "draem" else None,
                            device=cfg.device) for g in generators}


@functools.lru_cache(maxsize=4)
def _base_run_cached(cfg: NotebookConfig, base: str, name: str, setting: str, n_shots: int, seed: int,
                     seen: str | None) -> BaseRun:
    split, root = make_dataset_split(cfg, name, setting, n_shots, seed, seen)
    config = base_config(cfg, base)
    train, test = load_split(split, root, config.image_size)
    test = subsample(test, grid_option(cfg, "max_test_images"), seed)
    if base == "devnet":
        model = xdevnet.trained_devnet(cfg, split, root, config, train)
        references: Sequence[int] = ()
        scores = score_images(model, _stems(cfg, root, config, test) or test.images, config.eval_batch_size,
                              cfg.device, config.amp)
    else:
        trained = xdra.trained_method(cfg, split, root, config, train)
        model, references = trained.model, trained.data.fixed_reference_idx.tolist()
        torch.manual_seed(seed)  # as 02_dra scores it (faithful: random references)
        scores = trained.score(xdra.scoring_inputs(cfg, root, config, test))["score"]
    rows = normal_subset(train, grid_option(cfg, "max_normals"), seed)
    bank = cached_features(model, train, test, split.manifest_id, seed=seed,
                           max_normals=grid_option(cfg, "max_normals"), reference_rows=references,
                           train_stems=_stems(cfg, root, config, train), test_stems=_stems(cfg, root, config, test),
                           textures=draem_textures(cfg, config.image_size), batch_size=config.eval_batch_size,
                           device=cfg.device, progress=cfg.interactive,
                           pseudo_stems=_pseudo_stems(cfg, root, config, train, rows, tuple(PSEUDO_GENERATORS)))
    return BaseRun(model, bank, {k: v.detach().cpu() for k, v in model.state_dict().items()}, np.asarray(scores))


def base_run(cfg: NotebookConfig, base: str, experiment: Experiment) -> BaseRun:
    """The trained base model and feature bank of ``experiment``'s split (trained/extracted once)."""
    e = experiment
    return _base_run_cached(cfg, base, e.extra_key["name"], e.setting, int(e.n_shots), e.seed,
                            e.extra_key["seen_class"] or None)
