"""AHL's Table 5 ensembles (HADG without CDL, and its random-subset and full-data counterparts)
and :func:`train_ahl`, the entry point that trains AHL itself
(:class:`~osad_lib.methods.ahl.cdl.AHLTrainer`) or one of these ensembles, as
``AHLConfig.variant`` says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from osad_lib.training import TrainConfig, fit
from osad_lib.validate import ConfigError
from osad_lib.methods.ahl.config import AHLConfig
from osad_lib.methods.ahl.hadg import FeaturePool, PoolLayout, Task, build_tasks, cluster_normals, task_sampler
from osad_lib.methods.ahl.heads import build_scorer, reference_features, score_in_chunks
from osad_lib.methods.ahl.cdl import AHLTrainer, TrainedAHL


# ============================================================================ Table 5 ensembles
def _member_groups(config: AHLConfig, bank: Any, seed: int,
                   generators: Sequence[str]) -> tuple[list[dict[str, np.ndarray]], list[Task]]:
    """Training data of each ensemble member (global pool indices by group)."""
    layout = PoolLayout(bank.n_normals, bank.n_anomalies, tuple(generators))
    if config.variant == "ramfull":
        everything = {"normal": layout.normal(np.arange(bank.n_normals)),
                      "pseudo": np.concatenate([layout.pseudo(g, np.arange(bank.n_normals)) for g in generators])
                      if generators else np.array([], np.int64),
                      "anomaly": layout.anomaly(np.arange(bank.n_anomalies))}
        return [everything] * config.ensemble_members, []
    labels = cluster_normals(bank.normal[0], config.n_clusters, seed)
    assignment = "random" if config.variant.startswith("ramhadg") else None
    tasks = build_tasks(labels, bank.n_anomalies, config, seed, generators, assignment=assignment)
    groups = []
    for task in tasks:
        s, q = layout.groups(task, "support"), layout.groups(task, "query")
        groups.append({k: np.union1d(s[k], q[k]) for k in s})
    return groups, tasks


def train_ensemble(banks: Mapping[str, Any], config: AHLConfig, seed: int, device: str = "cpu",
                   progress: bool = True) -> TrainedAHL:
    """The Table 5 ensembles (no CDL): ``hadg`` (one base head per HADG task, trained on
    D_i = D_i^s ∪ D_i^q), ``ramhadg`` (the same with random normal subsets of the cluster
    sizes), ``ramfull`` (``ensemble_members`` heads on all training data — every pseudo
    anomaly of every generator — with different seeds), ``ramhadg+devnet`` (RamHADG members
    alternating DRA and DevNet heads, each on its own base model's features, needs both banks).
    Each member trains with the base model's loss (Adam ``base_lr``, ``epochs`` ×
    ``inner_steps`` batches, :func:`osad_lib.training.fit`)."""
    bank = banks[config.base]
    generators = tuple(bank.pseudo) if config.pseudo else ()
    groups, tasks = _member_groups(config, bank, seed, generators)
    mixed = config.variant == "ramhadg+devnet"
    bases = [("dra", "devnet")[i % 2] if mixed else config.base for i in range(len(groups))]
    missing = sorted(set(bases) - set(banks))
    if missing:
        raise ConfigError(f"ensemble variant {config.variant!r} needs feature banks of {missing}; extract them first")
    pools = {b: FeaturePool(banks[b], generators, device) for b in set(bases)}
    members = []
    for i, (member_groups, base) in enumerate(zip(groups, bases, strict=True)):
        torch.manual_seed(seed * 1009 + i)
        refs = reference_features(banks[base])
        scorer = build_scorer(base, banks[base].channels, [r.to(device) for r in refs] if refs else None,
                              config.topk_ratio, **config.scorer_options())
        scorer.module.to(device)
        pool = pools[base]
        train = TrainConfig(epochs=config.epochs, steps_per_epoch=config.inner_steps, lr=config.base_lr,
                            lr_step_size=config.lr_step_size, lr_gamma=config.lr_gamma, grad_clip=config.grad_clip,
                            amp=False, progress=progress, desc=f"{config.variant} member {i + 1}/{len(groups)}")
        fit(scorer.module, lambda _m, idx, s=scorer, p=pool: s.loss(None, *p.batch(idx)),
            task_sampler(member_groups, config.batch_size, seed * 1009 + i), train, device)
        normal_scores = score_in_chunks(scorer, None, [f.to(device) for f in banks[base].normal])
        members.append((scorer, base, float(normal_scores.mean()), float(normal_scores.std().clamp_min(1e-6))))
    return TrainedAHL(members, [], tasks)


def train_ahl(banks: Mapping[str, Any], config: AHLConfig, seed: int, device: str = "cpu",
              base_state: Mapping[str, torch.Tensor] | None = None, progress: bool = True) -> TrainedAHL:
    """Train AHL (or a Table 5 ensemble variant) on ``banks[config.base]`` — the frozen features
    of a trained base model (:mod:`osad_lib.components.features`). ``base_state``: the trained base
    model's ``state_dict()``, whose heads initialise g when ``config.init == "base"``."""
    if config.variant in ("hadg", "ramhadg", "ramfull", "ramhadg+devnet"):
        return train_ensemble(banks, config, seed, device, progress)
    if config.init == "base" and base_state is None:
        raise ConfigError("init='base' needs the trained base model's heads; pass base_state=model.state_dict()")
    trainer = AHLTrainer(banks[config.base], config, seed, device, base_state)
    return trainer.fit(progress, desc=f"AHL({config.base})")
