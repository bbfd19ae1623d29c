"""Notebook ``07_cross_domain``: AHL Table 3 and DRA Table 9 (App. C.3) — transfer to new domains.

Protocol (AHL §4.4, following DRA App. C.3): DRA and AHL (DRA) are trained on one *source*
domain with its labelled anomalies, then "fine-tuned for 10 epochs using only normal samples"
of another, *target* domain, and tested on the target. AHL Table 3 prints the source × target
AUROC matrix of both (row = target, column = source; the diagonal, in grey, is the same-domain
result); DRA Table 9 prints DRA's off-diagonal cells beside KDAD trained on the target. The
papers use the five MVTec AD textures (:data:`PAPER_DOMAINS`); on the embedded data the
synthetic subsets play the domains (rows ``dataset="synthetic"``, no paper value).

What runs here (the papers do not say more; every choice is listed):

* **Source models**: the source's general split with ``n_shots`` labelled anomalies (10; the
  papers do not state the number), DRA trained by the 05_ahl notebook's functions with the
  02_dra settings of the profile (:func:`osad_lib.experiments.ahl.base_run`: checkpoint and
  feature bank shared with 05_ahl), and AHL (DRA) trained on that DRA's frozen features with the
  05_ahl settings and this notebook's ``ahl`` overrides (:func:`osad_lib.methods.ahl.ensembles.train_ahl`).
  One source model per source and seed serves every target.
* **Fine-tuning on target normals** (:func:`finetune_dra`, :func:`finetune_ahl`): "normal
  samples only" cannot train DRA's losses without anomalies, so the fine-tuning data are the
  target's training normals and pseudo anomalies made from them (DRA's own training pipeline,
  :class:`NormalOnlyData`: every batch slot a normal, each replaced by a pseudo anomaly with
  probability ``pseudo_prob``; the seen-abnormality head then sees normals only). The target's
  labelled anomalies are never used. DRA fine-tunes what it trains (the whole network, or its
  heads on a frozen stem in the CPU demo); AHL (DRA) keeps the source DRA's backbone frozen, as
  AHL always does, and fine-tunes its unified heads g on the target's features (normals and
  pseudo anomalies by AHL's generators) with DRA's loss. Both use the same schedule:
  ``finetune_epochs`` (10) × ``finetune_steps`` (DRA's steps per epoch by default), DRA's batch
  size and learning rate.
  The composite head's reference normals come from the target.
* **Test set** of a target: its general split's test set (the one its same-domain cell is
  tested on), so all cells of a row score the same images.

Rows: ``setting="cross_domain"``, ``subset`` = target, ``variant="source=<source>"``,
``n_shots`` empty (as in the paper tables; the source's shots are in the experiment key).
AHL (DRA) rows are ``paper="ahl"``, ``table="table3"``. DRA cells are stored twice from one
run: as AHL Table 3 rows (``paper="ahl"``, with the diagonal) and, off the diagonal, as DRA
Table 9 rows (``paper="dra"``), so that each paper's table finds them.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from osad_lib import experiments, paper
from osad_lib.data.registry import subset_info
from osad_lib.data.tensors import ImageSet, load_split, subsample
from osad_lib.experiments import GridItem
from osad_lib.experiments import ahl as xahl
from osad_lib.experiments import dra as xdra
from osad_lib.experiments.stem_cache import StemConfig, dataset_stems, pseudo_stems
from osad_lib.components.features import FeatureBank, extract_features, pseudo_images
from osad_lib.losses.deviation import criterion
from osad_lib.metrics import image_aupr, image_auroc
from osad_lib.methods.ahl.cdl import TrainedAHL
from osad_lib.methods.ahl.config import AHLConfig
from osad_lib.methods.ahl.ensembles import train_ahl
from osad_lib.methods.ahl.hadg import FeaturePool, task_sampler
from osad_lib.methods.ahl.heads import FeatureScorer, build_scorer, score_in_chunks
from osad_lib.methods.dra.model import NORMAL, PSEUDO_GENERATORS, DRA, DRAConfig, DRATrainingData, TrainedDRA, dra_loss, \
    to_device, train_config
from osad_lib.components.stems import StemFeatures
from osad_lib.profiles import NotebookConfig
from osad_lib.results import Experiment
from osad_lib.seeding import seed_everything
from osad_lib.training import BalancedBatchSampler, TrainConfig, fit
from osad_lib.settings import check_known
from osad_lib.validate import ConfigError, choose

NOTEBOOK = "07_cross_domain"
SETTING = "cross_domain"
METHODS = ("dra", "ahl_dra")
#: The five MVTec AD textures of AHL Table 3 / DRA Table 9, in the tables' order.
PAPER_DOMAINS = tuple(f"mvtecad/{c}" for c in ("carpet", "grid", "leather", "tile", "wood"))
#: Paper table of each (paper label) — AHL Table 3 holds both methods, DRA Table 9 DRA only.
TABLES = {"ahl": "table3", "dra": "table9"}
#: Options of ``METHOD_OVERRIDES["cross_domain"][profile]`` and their defaults (the paper's
#: protocol): ``domains`` (registry names; every ordered pair is run), ``methods``,
#: ``n_shots`` (the source's labelled anomalies), ``same_domain`` (also run the diagonal),
#: ``max_seeds`` (0 = every configured seed), ``finetune_epochs`` (paper: 10),
#: ``finetune_steps`` (batches per fine-tuning epoch; 0 = DRA's ``steps_per_epoch``) and
#: ``max_test_images`` (0 = the whole test set, else a seeded class-stratified subsample).
#: DRA's and AHL's own settings are those of their notebooks (the ``"dra"`` and ``"ahl"``
#: entries of ``METHOD_OVERRIDES``); ``ahl`` here holds AHLConfig overrides on top of those for
#: this notebook only (e.g. fewer epochs in smoke runs).
DEFAULTS: dict[str, Any] = {"domains": PAPER_DOMAINS, "methods": METHODS, "n_shots": 10, "same_domain": True,
                            "max_seeds": 0, "finetune_epochs": 10, "finetune_steps": 0, "max_test_images": 0,
                            "ahl": {}}
#: Paper fine-tuning length (AHL §4.4, DRA App. C.3).
PAPER_FINETUNE_EPOCHS = 10
METHOD_LABELS = {"dra": "DRA", "ahl_dra": "AHL (DRA)"}


# --------------------------------------------------------------------------------------------
# configuration


def option(cfg: NotebookConfig, key: str) -> Any:
    """An option of :data:`DEFAULTS` under the profile (``METHOD_OVERRIDES["cross_domain"]``)."""
    overrides = cfg.profile.method("cross_domain")
    check_known(overrides, DEFAULTS, "cross_domain")
    value = overrides.get(choose("cross_domain option", key, DEFAULTS), DEFAULTS[key])
    return tuple(value) if isinstance(value, (list, tuple)) else value


def grid_seeds(cfg: NotebookConfig) -> tuple[int, ...]:
    """The configured seeds, or the first ``max_seeds`` of them."""
    limit = option(cfg, "max_seeds")
    return tuple(cfg.seeds[:limit] if limit else cfg.seeds)


def methods(cfg: NotebookConfig) -> tuple[str, ...]:
    return tuple(choose("cross_domain method", m, METHODS) for m in option(cfg, "methods"))


def ahl_config(cfg: NotebookConfig) -> AHLConfig:
    """AHL (DRA)'s settings: the 05_ahl notebook's (:func:`osad_lib.experiments.ahl.ahl_config`)
    ← this notebook's ``ahl`` overrides."""
    return xahl.ahl_config(cfg, "dra").with_overrides(option(cfg, "ahl"))


def finetune_config(cfg: NotebookConfig, progress: bool = False) -> TrainConfig:
    """The fine-tuning schedule of both methods: ``finetune_epochs`` × ``finetune_steps`` (DRA's
    steps per epoch by default) at DRA's learning rate and LR schedule (:func:`train_config`)."""
    config = xdra.dra_config(cfg)
    steps = option(cfg, "finetune_steps") or config.steps_per_epoch
    ft = dataclasses.replace(config, epochs=option(cfg, "finetune_epochs"), steps_per_epoch=steps)
    return train_config(ft, progress, desc="fine-tune")


def domain_label(name: str) -> str:
    """A domain's name in rows and tables: the subset (``carpet``, ``weave``) or the dataset."""
    info = subset_info(name)
    return info.subset or info.dataset


# --------------------------------------------------------------------------------------------
# grid


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
                        variant=f"source={domain_label(source)}", backbone=cfg.profile.backbone, seed=seed,
                        profile=cfg.profile.name, manifest_id=manifest,
                        deviations=deviations(cfg, info.dataset, method, same=source == target),
                        device=cfg.device_label, extra_key={"source": source, "target": target, "n_shots": shots})
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


def runnable(items: Sequence[GridItem]) -> tuple[list[GridItem], list[str]]:
    """The items whose source and target data are at hand, and the domains that are missing (those
    of the other items that no runnable item has): :func:`osad_lib.experiments.runnable`."""
    return experiments.runnable(items)


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


# --------------------------------------------------------------------------------------------
# data


def domain_data(cfg: NotebookConfig, name: str, seed: int) -> tuple[ImageSet, ImageSet, Path]:
    """A domain's training normals (its general split's, never an anomaly), its test set
    (that split's, subsampled by ``max_test_images``) and the dataset folder."""
    split, root = xdra.make_dataset_split(cfg, name, "general", option(cfg, "n_shots"), seed)
    train, test = load_split(split, root, xdra.dra_config(cfg).image_size)
    normal = set(split.train_normal)
    normals = train.select([i for i, p in enumerate(train.paths) if p in normal])
    return normals, subsample(test, option(cfg, "max_test_images"), seed), root


class NormalOnlyData(DRATrainingData):
    """DRA's training pipeline on normal images only: the fine-tuning data (AHL §4.4, DRA App. C.3).

    Every batch slot is a normal slot, each normal replaced by a pseudo anomaly (label 2) with
    probability ``pseudo_prob`` and rotated as in training; references are drawn from these
    normals (faithful: through the pipeline, clean: a fixed seeded set). :class:`DRATrainingData`
    refuses a set without labelled anomalies (its batches have seen-anomaly slots), so the
    fields its batch and reference methods use are set here. With ``stems``/``pseudo_stems``
    (``cache_stems``) batches are cached stem outputs, as in DRA's training.
    """

    def __init__(self, normals: ImageSet, config: DRAConfig, seed: int, stems: StemFeatures | None = None,
                 pseudo_stems: StemFeatures | None = None):
        labels = np.asarray(normals.labels)
        if len(labels) == 0 or (labels != NORMAL).any():
            raise ConfigError(f"fine-tuning takes normal images only; got {int((labels != NORMAL).sum())} anomalies "
                              f"among {len(labels)} images")
        if config.pseudo_source == "external":
            raise ConfigError("fine-tuning on target normals makes its pseudo anomalies from them; "
                              "use pseudo_source cutmix, cp_scar or cp_mix")
        if (stems is None) != (pseudo_stems is None) or (stems is not None and len(stems) != len(labels)):
            raise ConfigError("pass stems (one row per normal) and pseudo_stems together, or neither")
        self.images = torch.as_tensor(normals.images)
        self.config, self.seed = config, int(seed)
        self.normal_idx = np.arange(len(labels))
        self.anomaly_idx = np.zeros(0, dtype=np.int64)
        self.outliers = None
        rng = np.random.default_rng(seed)
        self.fixed_reference_idx = np.sort(rng.choice(self.normal_idx, min(config.n_ref, len(labels)), replace=False))
        self.stems, self.pseudo_stems = stems, pseudo_stems

    def sampler(self) -> BalancedBatchSampler:
        """``batch_size`` normal slots per batch."""
        return BalancedBatchSampler({"normal": self.normal_idx}, {"normal": self.config.batch_size}, self.seed)


def normal_only_data(cfg: NotebookConfig, model: DRA, config: DRAConfig, root: Path, normals: ImageSet,
                     seed: int) -> NormalOnlyData:
    """:class:`NormalOnlyData` of a domain's normals, on cached stems when ``config.cache_stems``
    (the dataset's shared stem cache and a seeded pseudo-anomaly pool made by ``model``'s stem)."""
    if not config.cache_stems:
        return NormalOnlyData(normals, config, seed)
    stem = StemConfig.of(config)
    pool = pseudo_stems(root, stem, PSEUDO_GENERATORS[config.pseudo_source], normals.paths,
                        dihedral_transform=config.dihedral, device=cfg.device)
    return NormalOnlyData(normals, config, seed, stems=dataset_stems(root, stem, normals, cfg.device),
                          pseudo_stems=pool)


def model_inputs(cfg: NotebookConfig, config: DRAConfig, root: Path, images: ImageSet) -> torch.Tensor | StemFeatures:
    """What a DRA model scores: the images, or their frozen-stem outputs (``frozen_stages``)."""
    return dataset_stems(root, StemConfig.of(config), images, cfg.device) if config.frozen_stages else images.images


# --------------------------------------------------------------------------------------------
# source models


def _source_experiment(cfg: NotebookConfig, source: str, seed: int) -> Experiment:
    """The key :func:`osad_lib.experiments.ahl.base_run` reads: the source's general split."""
    return Experiment(notebook=xahl.NOTEBOOK, paper="ahl", table="table1", dataset=subset_info(source).dataset,
                      method="dra", seed=seed, profile=cfg.profile.name, setting="general",
                      n_shots=option(cfg, "n_shots"), extra_key={"name": source, "seen_class": ""})


def source_run(cfg: NotebookConfig, source: str, seed: int) -> xahl.BaseRun:
    """DRA trained on the source (with its labelled anomalies) and its frozen feature bank."""
    return xahl.base_run(cfg, "dra", _source_experiment(cfg, source, seed))


@functools.lru_cache(maxsize=2)
def source_ahl(cfg: NotebookConfig, source: str, seed: int) -> TrainedAHL:
    """AHL (DRA) trained on the source DRA's features (:func:`ahl_config`; once per source and seed)."""
    run = source_run(cfg, source, seed)
    return train_ahl({"dra": run.bank}, ahl_config(cfg), seed, cfg.device, base_state=run.state,
                     progress=cfg.interactive)


# --------------------------------------------------------------------------------------------
# fine-tuning on target normals


def finetune_dra(model: DRA, data: NormalOnlyData, config: DRAConfig, schedule: TrainConfig, seed: int,
                 device: str = "cpu") -> TrainedDRA:
    """A copy of the trained ``model`` fine-tuned on target normals and their pseudo anomalies
    (``data``) with DRA's summed per-head loss (``docs/official_code/dra.md`` "Model") for
    ``schedule``'s epochs × steps."""
    seed_everything(seed)
    model = copy.deepcopy(model).to(device)
    loss = criterion(config.loss)

    def loss_fn(net: DRA, indices: list[int]) -> torch.Tensor:
        inputs, labels = data.batch(indices)
        references = to_device(data.references(), device) if net.needs_references else None
        return dra_loss(net(to_device(inputs, device), references, labels.to(device)), labels.to(device), loss)[0]

    history = fit(model, loss_fn, data.sampler(), schedule, device) if schedule.epochs else []
    return TrainedDRA(model, data, config, history, device)


def target_bank(model: DRA, normals: ImageSet | StemFeatures, normal_images: torch.Tensor,
                test: ImageSet | StemFeatures, test_labels: np.ndarray, reference_rows: Sequence[int],
                generators: Sequence[str], seed: int, batch_size: int = 64, device: str = "cpu") -> FeatureBank:
    """The source DRA's frozen features of a target (:mod:`osad_lib.components.features`): its normals
    (``normals``: uint8 images or cached stems), pseudo-anomalous versions of them by each AHL
    generator (always from ``normal_images``), the reference normals and the test set; no
    labelled anomalies (an empty tensor per scale)."""

    def features(inputs: torch.Tensor | StemFeatures, desc: str) -> list[torch.Tensor]:
        if isinstance(inputs, StemFeatures):
            return extract_features(model, stems=inputs, batch_size=batch_size, device=device, desc=desc)
        return extract_features(model, inputs, batch_size, device, desc=desc)

    normal = features(normals, "target normals")
    rows = torch.as_tensor(list(reference_rows), dtype=torch.long)
    return FeatureBank(
        normal=normal, anomaly=[f[:0] for f in normal],
        pseudo={g: features(pseudo_images(normal_images, g, seed, batch_size), f"target {g}") for g in generators},
        test=features(test, "target test"), test_labels=np.asarray(test_labels).astype(np.int64), test_classes=[],
        references=[f[rows] for f in normal], normal_rows=np.arange(len(normal_images)))


def finetune_ahl(trained: TrainedAHL, bank: FeatureBank, config: AHLConfig, schedule: TrainConfig,
                 batch_size: int, seed: int, device: str = "cpu") -> FeatureScorer:
    """AHL's unified heads g with the target's reference features, fine-tuned on the target's
    normal and pseudo-anomaly features (half of each batch) with DRA's loss for ``schedule``'s
    epochs × steps (none: g as trained, e.g. on the same domain)."""
    source = trained.members[0][0]
    scorer = build_scorer("dra", bank.channels, [r.float().to(device) for r in bank.references], config.topk_ratio,
                          base_state=source.module.state_dict(), **config.scorer_options())
    scorer.module.to(device)
    if schedule.epochs:
        torch.manual_seed(seed)
        generators = tuple(bank.pseudo)
        pool = FeaturePool(bank, generators, device)
        everyone = np.arange(bank.n_normals)
        groups = {"normal": pool.layout.normal(everyone)}
        if generators:
            groups["pseudo"] = np.concatenate([pool.layout.pseudo(g, everyone) for g in generators])
        fit(scorer.module, lambda _m, idx: scorer.loss(None, *pool.batch(idx)), task_sampler(groups, batch_size, seed),
            dataclasses.replace(schedule, amp=False), device)
    return scorer


# --------------------------------------------------------------------------------------------
# running one cell


@functools.lru_cache(maxsize=8)
def transfer(cfg: NotebookConfig, method: str, source: str, target: str, seed: int) -> dict[str, float]:
    """Test AUROC/AUPR of ``method`` trained on ``source`` and fine-tuned on ``target``'s normals
    (same domain: not fine-tuned). Kept in memory so both paper labels of a DRA cell share one run."""
    config = xdra.dra_config(cfg)
    run = source_run(cfg, source, seed)
    normals, test, root = domain_data(cfg, target, seed)
    schedule = finetune_config(cfg, cfg.interactive)
    if source == target:
        schedule = dataclasses.replace(schedule, epochs=0)
    if method == "dra":
        data = normal_only_data(cfg, run.model, config, root, normals, seed)
        tuned = finetune_dra(run.model, data, config, schedule, seed, cfg.device)
        scores = tuned.score(model_inputs(cfg, config, root, test))["score"]
    else:
        ahl_settings = ahl_config(cfg)
        stems = config.frozen_stages > 0
        bank = target_bank(run.model, dataset_stems(root, StemConfig.of(config), normals, cfg.device) if stems
                           else normals.images,
                           normals.images, model_inputs(cfg, config, root, test), test.labels.numpy(),
                           NormalOnlyData(normals, config, seed).fixed_reference_idx,
                           tuple(run.bank.pseudo) if ahl_settings.pseudo else (), seed,
                           config.eval_batch_size, cfg.device)
        scorer = finetune_ahl(source_ahl(cfg, source, seed), bank, ahl_settings, schedule, config.batch_size, seed,
                              cfg.device)
        scores = score_in_chunks(scorer, None, [f.to(cfg.device) for f in bank.test]).cpu().numpy()
    labels = test.labels.numpy()
    return {"auroc": image_auroc(labels, scores), "aupr": image_aupr(labels, scores)}


def run_one(cfg: NotebookConfig, item: GridItem) -> dict[str, float]:
    """Run one grid item (one cell of the source × target matrix of one method and seed)."""
    e = item.experiment
    return transfer(cfg, e.method, e.extra_key["source"], e.extra_key["target"], e.seed)


# --------------------------------------------------------------------------------------------
# tables


def _measured(cfg: NotebookConfig, paper_id: str) -> pd.DataFrame:
    rows = cfg.store.read()
    return rows[(rows["paper"] == paper_id) & (rows["status"] == "ok") & (rows["setting"] == SETTING)]


def comparison(cfg: NotebookConfig, table_id: str) -> pd.DataFrame:
    """Measured vs paper for ``ahl_table3`` or ``dra_table9`` (:func:`osad_lib.paper.compare`):
    measured cells with paper mean, measured mean/std over seeds, delta; Table 9's KDAD rows of
    the measured targets are kept as paper-only references (KDAD is not run here)."""
    paper_id = choose("table", table_id, ("ahl_table3", "dra_table9")).split("_")[0]
    measured = _measured(cfg, paper_id)
    if measured.empty:
        return pd.DataFrame()
    out = paper.compare(measured, table_id)
    targets = set(zip(measured["dataset"], measured["subset"]))
    reference = (out["method"] == "kdad") & np.array([(d, s) in targets for d, s in zip(out["dataset"], out["subset"])])
    out = out[(out["n_seeds"] > 0) | reference]
    order = (out["metric"] != "auroc").to_numpy().argsort(kind="stable")  # AUROC (the tables' metric) first
    return out.iloc[order].reset_index(drop=True)


def display_table(frame: pd.DataFrame) -> pd.DataFrame:
    """A comparison as target, source, method, paper, measured ("mean ± std"), delta, seeds."""
    if frame.empty:
        return frame
    return pd.DataFrame({
        "dataset": frame["dataset"], "target": frame["subset"],
        "source": frame["variant"].str.removeprefix("source=").replace("", "— (trained on the target)"),
        "method": frame["method"].map(lambda m: METHOD_LABELS.get(m, m)), "metric": frame["metric"],
        "paper": [paper.format_mean_std(m, s) for m, s in zip(frame["paper_mean"], frame["paper_std"])],
        "measured": [paper.format_mean_std(m, s) if n else "not run (paper only)"
                     for m, s, n in zip(frame["measured_mean"], frame["measured_std"], frame["n_seeds"])],
        "delta": frame["delta"].round(3), "seeds": frame["n_seeds"],
    })


def matrices(cfg: NotebookConfig, metric: str = "auroc") -> pd.DataFrame:
    """Long form of the source × target matrices of the AHL Table 3 rows: ``method``,
    ``dataset``, ``target``, ``source``, ``measured`` (mean over seeds), ``paper`` (AHL Table 3,
    NaN where it has none), ``seeds``."""
    rows = _measured(cfg, "ahl")
    rows = rows[rows["metric"] == metric]
    if rows.empty:
        return pd.DataFrame(columns=["method", "dataset", "target", "source", "measured", "paper", "seeds"])
    rows = rows.assign(source=rows["variant"].str.removeprefix("source="), target=rows["subset"])
    out = rows.groupby(["method", "dataset", "target", "source"], sort=False)["value"].agg(
        measured="mean", seeds="size").reset_index()
    table = paper.load_table("ahl_table3")
    table = table[table["metric"] == metric]
    ref = pd.DataFrame({"method": table["method"], "dataset": table["dataset"], "target": table["subset"],
                        "source": table["variant"].str.removeprefix("source="), "paper": table["mean"]})
    return out.merge(ref, on=["method", "dataset", "target", "source"], how="left")[
        ["method", "dataset", "target", "source", "measured", "paper", "seeds"]]


def verdict(cfg: NotebookConfig, metric: str = "auroc") -> tuple[pd.DataFrame, str]:
    """Per off-diagonal cell and seed: AHL (DRA) − DRA; per target the mean difference, and one
    sentence on the paper's claim (AHL (DRA) generalises to new domains better than DRA, §4.4)."""
    rows = _measured(cfg, "ahl")
    rows = rows[(rows["metric"] == metric) & (rows["variant"] != "source=" + rows["subset"])]
    wide = rows.pivot_table(index=["dataset", "subset", "variant", "seed"], columns="method", values="value")
    if not {"dra", "ahl_dra"} <= set(wide.columns) or wide.dropna().empty:
        return pd.DataFrame(), "DRA and AHL (DRA) were not both run across domains"
    wide = wide.dropna()
    wide["ahl_minus_dra"] = wide["ahl_dra"] - wide["dra"]
    per_target = wide.groupby(level=["dataset", "subset"]).agg(
        dra=("dra", "mean"), ahl_dra=("ahl_dra", "mean"), ahl_minus_dra=("ahl_minus_dra", "mean"),
        cells=("ahl_minus_dra", "size")).reset_index().rename(columns={"subset": "target"})
    cells = wide.groupby(level=["dataset", "subset", "variant"])["ahl_minus_dra"].mean()
    sentence = (f"Across domains (off-diagonal cells, mean over seeds) AHL (DRA) is above DRA in "
                f"{int((cells > 0).sum())} of {len(cells)} source → target cells; mean difference "
                f"{cells.mean():+.3f} {metric.upper()} (the paper's Table 3: {_paper_gain(metric):+.3f} over its "
                "20 cells).")
    return per_target, sentence


def _paper_gain(metric: str) -> float:
    table = paper.load_table("ahl_table3")
    table = table[(table["metric"] == metric) & (table["variant"] != "source=" + table["subset"])]
    wide = table.pivot_table(index=["subset", "variant"], columns="method", values="mean")
    return float((wide["ahl_dra"] - wide["dra"]).mean())


# --------------------------------------------------------------------------------------------
# figure


def heatmap_figure(frame: pd.DataFrame, title: str = ""):
    """Source × target heat-maps (row = target, column = source, as AHL Table 3): the first row of
    panels is measured — DRA, AHL (DRA) and their difference AHL (DRA) − DRA — and, when the paper
    has the cells, a second row shows the paper's (AHL Table 3) below them. Same-domain cells are
    outlined. ``frame``: :func:`matrices`. Returns a matplotlib Figure, or None when empty."""
    import matplotlib.pyplot as plt

    if frame.empty:
        return None
    order = list(dict.fromkeys(frame["source"].tolist() + frame["target"].tolist()))
    found = [m for m in METHODS if m in set(frame["method"])]
    sources = ("measured", "paper") if frame["paper"].notna().any() else ("measured",)
    rows = []
    for column in sources:
        grids = {m: frame[frame["method"] == m].pivot_table(index="target", columns="source", values=column)
                 .reindex(index=order, columns=order) for m in found}
        panels = [(f"{METHOD_LABELS[m]}: {column}", grids[m], False) for m in found]
        if len(found) == 2:
            panels.append((f"AHL (DRA) − DRA: {column}", grids["ahl_dra"] - grids["dra"], True))
        rows.append(panels)
    size = 0.6 * len(order) + 2.0
    fig, axes = plt.subplots(len(rows), len(rows[0]), figsize=(len(rows[0]) * (size + 0.9), len(rows) * size),
                             squeeze=False)
    for ax, (name, grid, delta) in zip(axes.flat, [p for r in rows for p in r]):
        values = grid.to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        if delta:
            bound = max(float(np.abs(finite).max()) if finite.size else 0.0, 0.01)
            image = ax.imshow(values, cmap="RdBu", vmin=-bound, vmax=bound)
            dark = lambda v, b=bound: abs(v) > 0.6 * b  # noqa: E731
        else:
            low = min(0.5, float(finite.min()) if finite.size else 0.5)
            image = ax.imshow(values, cmap="viridis", vmin=low, vmax=1.0)
            dark = lambda v, lo=low: v < lo + 0.6 * (1.0 - lo)  # noqa: E731
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(j, i, f"{v:+.2f}" if delta else f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if dark(v) else "black")
        for k in range(len(order)):
            ax.add_patch(plt.Rectangle((k - 0.5, k - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.5))
        ax.set_xticks(range(len(order)), order, rotation=45, ha="right")
        ax.set_yticks(range(len(order)), order)
        ax.set_xlabel("source domain (trained on)")
        ax.set_ylabel("target domain (tested on)")
        ax.set_title(name, fontsize=9)
        ax.grid(False)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="AUROC difference" if delta else "AUROC")
    fig.suptitle(title or "Cross-domain AUROC: row = target, column = source (outlined: same domain)", fontsize=10)
    fig.tight_layout()
    return fig


__all__ = [
    "DEFAULTS", "METHODS", "NOTEBOOK", "PAPER_DOMAINS", "NormalOnlyData", "ahl_config", "comparison", "deviations",
    "display_table", "domain_data", "finetune_ahl", "finetune_config", "finetune_dra", "grid", "grid_seeds",
    "heatmap_figure", "matrices", "methods", "model_inputs", "normal_only_data", "option", "pairs", "run_one",
    "runnable", "source_ahl", "source_run", "target_bank", "transfer", "verdict",
]
