"""The cells of AHL's Table 3: each (method, source, target, seed)."""

from __future__ import annotations



from osad_lib.data.registry import subset_info
from osad_lib.experiments import GridItem
from osad_lib.experiments import ahl as xahl
from osad_lib.experiments import dra as xdra
from osad_lib.methods.ahl.config import AHLConfig
from osad_lib.methods.dra import DRAConfig
from osad_lib.profiles import NotebookConfig
from osad_lib.results import Experiment
from osad_lib.validate import ConfigError
from osad_lib.experiments.cross_domain.config import (
    NOTEBOOK, PAPER_FINETUNE_EPOCHS, SETTING, TABLES, ahl_config, domain_label, finetune_config, grid_seeds,
    methods, option,
)



def _manifest(cfg: NotebookConfig, name: str, seed: int) -> str:
    try:
        return xdra.make_dataset_split(cfg, name, "general", option(cfg, "n_shots"), seed)[0].manifest_id
    except ConfigError:
        return ""


def pairs(cfg: NotebookConfig) -> list[tuple[str, str]]:
    """(source, target) registry names: every ordered pair of ``domains``, with the diagonal
    when ``same_domain``; grouped by source."""
    domains = [subset_info(d).name for d in option(cfg, "domains")]
    if len(domains) < 2:
        raise ConfigError(f"cross_domain needs at least two domains, got {domains}; list them under 'domains'")
    same = option(cfg, "same_domain")
    return [(s, t) for s in domains for t in domains if same or s != t]


def grid(cfg: NotebookConfig) -> list[GridItem]:
    """The notebook's experiments (works without data: the ``manifest_id`` is then empty)."""
    items: list[GridItem] = []
    dra_cfg = xdra.dra_config(cfg)
    ahl_cfg = ahl_config(cfg)
    shots = option(cfg, "n_shots")
    for seed in grid_seeds(cfg):
        trained: set[tuple[str, str]] = set()
        manifests = {name: _manifest(cfg, name, seed) for name in dict.fromkeys(n for p in pairs(cfg) for n in p)}
        for source, target in pairs(cfg):
            src, tgt = manifests[source], manifests[target]
            manifest = f"{src}>{tgt}" if src and tgt else ""
            info = subset_info(target)
            for method in methods(cfg):
                labels = ["ahl"] + (["dra"] if method == "dra" and source != target else [])
                for paper_id in labels:
                    experiment = Experiment(
                        notebook=NOTEBOOK, paper=paper_id, table=TABLES[paper_id], dataset=info.dataset,
                        subset=domain_label(target), setting=SETTING, n_shots=None, method=method,
                        source=domain_label(source), backbone=cfg.profile.backbone, seed=seed,
                        profile=cfg.profile.name, manifest_id=manifest,
                        deviations=deviations(cfg, info.dataset, method, same=source == target),
                        mode=dra_cfg.mode if method == "dra" else ahl_cfg.mode, device=cfg.device_label,
                        extra_key={"source": source, "target": target, "n_shots": shots})
                    first = (method, source) not in trained
                    trained.add((method, source))
                    cost = _cost(cfg, dra_cfg, ahl_cfg, method, target, source_training=first,
                                 finetune=source != target) if paper_id == "ahl" else (0, 0)
                    items.append(GridItem(experiment, *cost))
    return items


def _cost(cfg: NotebookConfig, dra_cfg: DRAConfig, ahl_cfg: AHLConfig, method: str, target: str,
          source_training: bool, finetune: bool) -> tuple[int, int]:
    """(training samples, evaluation samples) of one cell, pyramid scales counted: the source
    model's training on the first cell of a source, the fine-tuning, the test set."""
    scales = dra_cfg.n_scales
    train = 0
    if source_training:
        train += dra_cfg.epochs * dra_cfg.steps_per_epoch * dra_cfg.batch_size * scales
        if method == "ahl_dra":
            tasks = ahl_cfg.n_clusters * (ahl_cfg.n_clusters - 1) + 1
            train += ahl_cfg.epochs * tasks * (ahl_cfg.inner_steps + ahl_cfg.query_steps) * ahl_cfg.batch_size * scales
    if finetune:
        ft = finetune_config(cfg)
        train += ft.epochs * ft.steps_per_epoch * dra_cfg.batch_size * scales
    counts = subset_info(target).paper
    n_test = counts.test_normal + counts.anomalies - option(cfg, "n_shots") if counts is not None else 0
    n_test = min(n_test, option(cfg, "max_test_images") or n_test)
    n_features = counts.train_normal * 4 if counts is not None and method == "ahl_dra" else 0  # normals + 3 generators
    return train, (n_test + n_features) * scales



def deviations(cfg: NotebookConfig, dataset: str, method: str, same: bool) -> str:
    """How a cell's run differs from the paper: the base notebooks' deviations of DRA / AHL
    (:func:`osad_lib.experiments.dra.config_deviations`, :func:`osad_lib.experiments.ahl.deviations`
    and AHL's variant label; without their notes on their own test subsample and on how 05_ahl
    scores its DRA rows), then the fine-tuning length and this notebook's test subsample."""
    if method == "dra":
        text = xdra.config_deviations(xdra.dra_config(cfg), dataset)
    else:
        config = ahl_config(cfg)
        text = xahl.deviations(cfg, dataset, "dra", config) + (f"; AHL variant {config.variant_label}"
                                                             if config.variant_label else "")
    # the base notebooks' test-subsample and base-row scoring notes concern their own test sets
    parts = [p for p in text.split("; ") if p and not p.startswith(("test set:", "DRA scored with"))]
    epochs, steps, dra_steps = option(cfg, "finetune_epochs"), option(cfg, "finetune_steps"), \
        xdra.dra_config(cfg).steps_per_epoch
    if not same and epochs != PAPER_FINETUNE_EPOCHS:
        parts.append(f"fine-tuning {epochs} epochs (paper: {PAPER_FINETUNE_EPOCHS})")
    if not same and steps and steps != dra_steps:
        parts.append(f"fine-tuning {steps} steps per epoch (DRA's training: {dra_steps}; paper: not stated)")
    if option(cfg, "max_test_images"):
        parts.append(f"test set: seeded class-stratified subsample of at most {option(cfg, 'max_test_images')} images")
    return "; ".join(parts)
