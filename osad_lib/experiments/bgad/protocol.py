"""BGAD's data protocol: labelled anomalies drawn stratified per defect class, and Table 5's
hard/unseen subsets."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from osad_lib.data.mvtec import Sample, read_mvtec_layout
from osad_lib.data.protocols import Split, with_test_copies
from osad_lib.data.registry import resolve, subset_info
from osad_lib.profiles import NotebookConfig
from osad_lib.validate import ConfigError, choose
from osad_lib.experiments.bgad.config import HARD_CLASSES



def bgad_split(
    samples: Sequence[Sample],
    n_shots: int,
    seed: int,
    *,
    sampling: str = "stratified",
    train_classes: Sequence[str] | None = None,
    test_classes: Sequence[str] | None = None,
    dataset: str = "",
    subset: str = "",
) -> Split:
    """BGAD's split (the official code's): ``n_shots`` labelled anomalies that leave the test set.

    ``sampling="stratified"`` (the code): per class (sorted), ⌊N/T⌋ anomalies of a seeded
    permutation, then N mod T more drawn from all leftovers; ``"uniform"``: N at random from all
    (DRA/DevNet). ``train_classes`` limits where labelled anomalies come from, ``test_classes``
    which anomaly classes are tested (Table 5). ``n_shots=0`` is unsupervised BGAD's split.
    """
    choose("sampling", sampling, ("stratified", "uniform"))
    if not isinstance(n_shots, int) or n_shots < 0:
        raise ConfigError(f"parameter 'n_shots': {n_shots!r} must be a non-negative integer")
    where = f"{dataset}/{subset}" if subset else dataset or "the dataset"
    ordered = sorted(samples, key=lambda s: s.path)
    train_normal = [s.path for s in ordered if s.label == 0 and s.split == "train"]
    test_normal = [s for s in ordered if s.label == 0 and s.split == "test"]
    anomalies = [s for s in ordered if s.label == 1]
    if not train_normal:
        raise ConfigError(f"{where} has no training normals; check the dataset folder")
    candidates = [s for s in anomalies if train_classes is None or s.anomaly_class in train_classes]
    if n_shots > len(candidates):
        raise ConfigError(
            f"{where}: {n_shots} labelled anomalies requested but only {len(candidates)} available; use fewer shots")
    rng = np.random.default_rng(seed)
    drawn = _stratified(candidates, n_shots, rng) if sampling == "stratified" else \
        [candidates[i] for i in rng.permutation(len(candidates))[:n_shots]]
    used = {s.path for s in drawn}
    tested = [s for s in anomalies if s.path not in used and (test_classes is None or s.anomaly_class in test_classes)]
    if not tested:
        raise ConfigError(f"{where}: no test anomalies remain; use fewer shots or other test classes")
    return with_test_copies(Split(
        dataset=dataset, subset=subset, setting="general" if n_shots else "unsupervised", n_shots=n_shots,
        seed=int(seed), seen_class=None, contamination=0.0, nested_in=n_shots,
        train_normal=tuple(train_normal), train_anomaly=tuple(sorted((s.path, s.anomaly_class) for s in drawn)),
        train_contamination=(), test=tuple(sorted((s.path, s.label, s.anomaly_class) for s in test_normal + tested)),
    ), samples)


def _stratified(candidates: list[Sample], n: int, rng: np.random.Generator) -> list[Sample]:
    classes = sorted({s.anomaly_class for s in candidates})
    per_class, drawn, leftovers = n // len(classes) if classes else 0, [], []
    for cls in classes:
        members = [s for s in candidates if s.anomaly_class == cls]
        shuffled = [members[i] for i in rng.permutation(len(members))]
        drawn += shuffled[:per_class]
        leftovers += shuffled[per_class:]
    leftovers.sort(key=lambda s: s.path)
    extra = n - len(drawn)
    return drawn + [leftovers[i] for i in rng.permutation(len(leftovers))[:extra]]


def table5_split(samples: Sequence[Sample], category: str, which: str, n_shots: int, seed: int) -> Split:
    """Table 5's splits of MVTec AD ``category``: ``"hard"`` (anomalies of all classes for training,
    hard classes tested) or ``"unseen"`` (easy classes for training, hard classes tested)."""
    choose("which", which, ("hard", "unseen"))
    hard = HARD_CLASSES[choose("category", category, HARD_CLASSES)]
    classes = sorted({s.anomaly_class for s in samples if s.label == 1})
    easy = [c for c in classes if c not in hard] or list(hard)  # toothbrush: one class, easy = hard
    return bgad_split(samples, n_shots, seed, train_classes=easy if which == "unseen" else None,
                      test_classes=hard, dataset="mvtecad", subset=category)


def dataset_split(cfg: NotebookConfig, name: str, n_shots: int, seed: int) -> Split:
    """The BGAD split of registry dataset ``name`` (data must be at hand)."""
    info = subset_info(name)
    samples = read_mvtec_layout(resolve(name, cfg.data_root))
    return bgad_split(samples, n_shots, seed, dataset=info.dataset, subset=info.subset)
