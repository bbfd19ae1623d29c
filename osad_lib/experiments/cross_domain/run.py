"""One cross-domain cell: the source model (DRA or AHL) trained once, fine-tuned on the target's
normals and their pseudo anomalies, and tested on the target."""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

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
from osad_lib.methods.dra import NORMAL, PSEUDO_GENERATORS, DRA, DRAConfig, DRATrainingData, TrainedDRA, dra_loss, \
    to_device
from osad_lib.components.stems import StemFeatures
from osad_lib.profiles import NotebookConfig
from osad_lib.results import Experiment
from osad_lib.seeding import seed_everything
from osad_lib.training import BalancedBatchSampler, TrainConfig, fit
from osad_lib.validate import ConfigError
from osad_lib.experiments.cross_domain.config import ahl_config, finetune_config, option



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
