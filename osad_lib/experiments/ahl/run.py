"""One AHL experiment: its base's features, AHL trained and tested; the score explorer's inputs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from osad_lib.experiments import GridItem
from osad_lib.components.features import FeatureBank
from osad_lib.metrics import image_aupr, image_auroc
from osad_lib.methods.ahl.ensembles import train_ahl
from osad_lib.profiles import NotebookConfig
from osad_lib.paths import atomic_write_text
from osad_lib.results import Experiment
from osad_lib.validate import ConfigError
from osad_lib.experiments.ahl.config import BASE_VARIANT, NOTEBOOK, ahl_config
from osad_lib.experiments.ahl.grids import make_dataset_split
from osad_lib.experiments.ahl.bases import base_run



def history_file(cfg: NotebookConfig, experiment: Experiment) -> Path:
    """Where an AHL run's per-epoch, per-task weights are written (``runs/<profile>/artifacts/05_ahl``)."""
    return cfg.runs_dir / "artifacts" / NOTEBOOK / f"{experiment.experiment_id}_history.csv"


def scores_file(cfg: NotebookConfig, experiment: Experiment) -> Path:
    """Where a row's per-image test scores are written (``runs/<profile>/scores/05_ahl/<id>.csv``)."""
    return cfg.runs_dir / "scores" / NOTEBOOK / f"{experiment.experiment_id}.csv"


@torch.no_grad()
def _head_scores(trained: Any, features: Sequence[torch.Tensor], chunk: int = 256) -> dict[str, np.ndarray]:
    """Per-head test scores of a single-model AHL (DRA): holistic, seen, pseudo, composite
    (its score is −holistic + the others, DRA §3.2); none for DevNet or an ensemble."""
    if len(trained.members) != 1 or trained.members[0][1] != "dra":
        return {}
    scorer = trained.members[0][0]
    scorer.module.eval()
    parts = [scorer.module([f[i:i + chunk].float() for f in features], scorer.references)
             for i in range(0, features[0].shape[0], chunk)]
    return {head: torch.cat([p[head] for p in parts]).cpu().numpy() for head in parts[0]}


def _save_scores(cfg: NotebookConfig, e: Experiment, bank: FeatureBank, scores: np.ndarray,
                 heads: dict[str, np.ndarray]) -> None:
    """Write every test image's class, label, kind (normal / seen / unseen, by the split's
    labelled anomaly classes), score and head scores (:func:`scores_file`)."""
    split, _ = make_dataset_split(cfg, e.extra_key["name"], e.setting, int(e.n_shots), e.seed,
                                  e.extra_key["seen_class"] or None)
    labels, classes = np.asarray(bank.test_labels), list(bank.test_classes)
    kind = ["normal" if not label else "seen" if c in split.seen_classes else "unseen"
            for c, label in zip(classes, labels)]
    frame = pd.DataFrame({"class": classes, "label": labels, "kind": kind, "score": scores,
                          **{f"score_{head}": values for head, values in heads.items()}})
    atomic_write_text(scores_file(cfg, e), frame.to_csv(index=False))


def run_one(cfg: NotebookConfig, item: GridItem) -> dict[str, float]:
    """Run one grid item (a base model row or an AHL row) and return its test AUROC and AUPR;
    the per-image test scores go to :func:`scores_file`."""
    e = item.experiment
    base = e.method.removeprefix("ahl_")
    run = base_run(cfg, base, e)
    heads: dict[str, np.ndarray] = {}
    if e.method == base:
        scores = run.scores
    else:
        config = ahl_config(cfg, base, e.variant)
        banks = {base: run.bank}
        if config.variant == "ramhadg+devnet":
            banks["devnet"] = base_run(cfg, "devnet", e).bank
        trained = train_ahl(banks, config, e.seed, cfg.device, base_state=run.state, progress=cfg.interactive)
        scores = trained.score({b: [f.to(cfg.device) for f in bank.test] for b, bank in banks.items()})
        heads = _head_scores(trained, [f.to(cfg.device) for f in run.bank.test])
        if trained.history:
            atomic_write_text(history_file(cfg, e), pd.DataFrame(trained.history).to_csv(index=False))
    _save_scores(cfg, e, run.bank, scores, heads)
    labels = run.bank.test_labels
    return {"auroc": image_auroc(labels, scores), "aupr": image_aupr(labels, scores)}



# --------------------------------------------------------------------------------------------
# score explorer


def _base_item(items: Sequence[GridItem], item: GridItem) -> GridItem | None:
    """The base-model row on the same split as AHL row ``item``."""
    e = item.experiment
    base = e.method.removeprefix("ahl_")
    return next((i for i in items if i.experiment.method == base and i.experiment.variant == BASE_VARIANT
                 and i.experiment.manifest_id == e.manifest_id and i.experiment.extra_key == e.extra_key), None)


def explorer_run(cfg: NotebookConfig, items: Sequence[GridItem]) -> GridItem | None:
    """The AHL row the notebook's score explorer shows: AHL as published (no variant), first
    seed, with its and its base row's test scores saved (:func:`scores_file`); AHL (DRA) first
    (it has per-head scores), then the hard setting (unseen classes only)."""
    def saved(item: GridItem | None) -> bool:
        return item is not None and scores_file(cfg, item.experiment).is_file()

    ready = [i for i in items if i.experiment.method.startswith("ahl_") and not i.experiment.variant
             and i.experiment.seed == cfg.seeds[0] and saved(i) and saved(_base_item(items, i))]
    return min(ready, key=lambda i: (i.experiment.method != "ahl_dra", i.experiment.setting != "hard"), default=None)


def explorer_frame(cfg: NotebookConfig, items: Sequence[GridItem], item: GridItem) -> pd.DataFrame:
    """The score frame (:mod:`osad_lib.plots`) of AHL row ``item`` beside its base model, both
    on the same test features: ``score`` = AHL's, ``score_base`` = the base model's, and for
    AHL (DRA) the unified model's heads ``score_holistic``/``_seen``/``_pseudo``/``_composite``."""
    base_item = _base_item(items, item)
    if base_item is None:
        raise ConfigError(f"no base-model row for {item.experiment.method} in the grid; pass the notebook's grid items")
    ahl, base = (pd.read_csv(scores_file(cfg, i.experiment)) for i in (item, base_item))
    if list(ahl["class"]) != list(base["class"]):
        raise ConfigError("AHL and base test scores are of different images; rerun both rows with resume=False")
    heads = [c for c in ahl.columns if c.startswith("score_")]
    return pd.concat([ahl[["score", "label", "class", "kind"]], base["score"].rename("score_base"), ahl[heads]], axis=1)
