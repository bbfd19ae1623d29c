"""Run limits: how a dry run truncates every training and evaluation, in one place.

A dry run (``run_all.py --profile paper --dry-run``) executes the paper profile's real settings —
image size, backbones, heads, batch composition, every grid cell's code path — but stops each run
early. The profile carries a :class:`RunLimits`; :func:`osad_lib.profiles.configure` installs it
for the notebook's process, and the shared helpers every method goes through read it here:

* :func:`osad_lib.training.fit` and the methods' own loops (BGAD's flows, AHL's meta-learning,
  AnoOnly's tabular heads) run :func:`steps` optimisation steps per phase and :func:`epochs`
  epochs, where a phase is what a loop needs to reach each of its branches once (BGAD: the
  normal-only first epoch and a boundary epoch, one batch and one chunk of its feature vectors per
  level; AHL: enough epochs for its importance estimator ψ
  to train and predict);
* :class:`osad_lib.training.BalancedBatchSampler` caps a batch at :attr:`RunLimits.max_batch_size`
  keeping each group's share (:func:`batch_slots`) — only the CI-sized dry run sets it;
* :func:`osad_lib.data.tensors.load_split` and BGAD's test set keep a class-stratified
  :func:`test_rows` subset of at most :attr:`RunLimits.max_test_images` test images;
* :meth:`osad_lib.results.ResultsStore.run_experiment` runs, with
  :attr:`RunLimits.one_run_per_path`, only the first experiment of each code path
  (:func:`path_key`: a method on a backbone in a notebook) — the CI-sized dry run.

Nothing is limited unless a profile says so (:data:`NONE`); limits never change a setting that
a result row records, and every row of a dry run carries the dry-run profile's name.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

T = TypeVar("T")


@dataclass(frozen=True)
class RunLimits:
    """``max_steps``: optimisation steps per training phase; ``max_test_images``: test images per
    evaluation; ``max_batch_size``: training batch cap (composition kept); ``one_run_per_path``:
    only the first experiment of each :func:`path_key`. Zero / False = no limit."""

    max_steps: int = 0
    max_test_images: int = 0
    max_batch_size: int = 0
    one_run_per_path: bool = False

    @property
    def active(self) -> bool:
        return self != NONE

    def describe(self) -> str:
        """One line for notebooks and logs, e.g. ``dry run: 1 optimisation step per phase, ...``."""
        parts = [f"{self.max_steps} optimisation step(s) per training phase" if self.max_steps else "",
                 f"at most {self.max_test_images} test images per evaluation" if self.max_test_images else "",
                 f"batches capped at {self.max_batch_size} (composition kept)" if self.max_batch_size else "",
                 "the first experiment of each code path only" if self.one_run_per_path else ""]
        return "dry run: " + "; ".join(p for p in parts if p) if self.active else "no run limits"


NONE = RunLimits()
_active = NONE


def active() -> RunLimits:
    """The limits in force in this process (:data:`NONE` unless a dry-run profile installed some)."""
    return _active


def install(limits: RunLimits) -> None:
    """Put ``limits`` in force for this process (:func:`osad_lib.profiles.configure` does, per notebook)."""
    global _active
    _active = limits


@contextlib.contextmanager
def applied(limits: RunLimits) -> Iterator[RunLimits]:
    """``limits`` in force inside the block only (tests, scripts)."""
    previous = active()
    install(limits)
    try:
        yield limits
    finally:
        install(previous)


def steps(planned: int) -> int:
    """Optimisation steps of one phase: ``planned``, or at most ``max_steps``."""
    limit = active().max_steps
    return min(planned, limit) if limit else planned


def take(items: Iterable[T]) -> Iterable[T]:
    """``items`` (e.g. one epoch's batches), or only the first ``max_steps`` of them."""
    limit = active().max_steps
    return itertools.islice(items, limit) if limit else items


def epochs(planned: int, phases: int = 1) -> int:
    """Epochs of a loop: ``planned``, or under a step limit the ``phases`` epochs it needs to reach
    each of its branches once (never more than planned)."""
    return min(planned, max(1, phases)) if active().max_steps else planned


def batch_slots(slots: Mapping[str, int]) -> dict[str, int]:
    """Per-group batch slots with the total capped at ``max_batch_size``: each group's share of the
    cap (largest remainders first), at least one slot for every group that has slots."""
    cap, total = active().max_batch_size, sum(slots.values())
    if not cap or total <= cap:
        return dict(slots)
    groups = [k for k, v in slots.items() if v > 0]
    cap = max(cap, len(groups))
    quota = {k: cap * slots[k] / total for k in groups}
    out = {k: max(1, math.floor(quota[k])) for k in groups}
    while sum(out.values()) > cap:  # the minimum of one pushed the total over: take from the largest
        out[max(groups, key=lambda k: out[k])] -= 1
    for k in sorted(groups, key=lambda k: quota[k] - out[k], reverse=True)[:cap - sum(out.values())]:
        out[k] += 1
    return {k: out.get(k, 0) for k in slots}


def stratified_rows(classes: Sequence[str], max_images: int, seed: int) -> list[int]:
    """Positions of at most ``max_images`` of the images whose classes are ``classes``, drawn per
    class in proportion (at least one of each class, normals included), seeded, in their original
    order; all of them when ``max_images`` is 0 or not smaller."""
    if not max_images or len(classes) <= max_images:
        return list(range(len(classes)))
    rng = np.random.default_rng(seed)
    labels = np.asarray(classes)
    keep: list[int] = []
    for name in sorted(set(classes)):
        members = np.flatnonzero(labels == name)
        count = max(1, round(len(members) * max_images / len(labels)))
        keep += rng.choice(members, min(count, len(members)), replace=False).tolist()
    return sorted(keep)


def scored_pool(planned: int, kept: int) -> int:
    """Size of a pool a method scores during training (AHL's ψ pool): ``planned`` (0 = the whole
    pool), or under a test-image limit the ``kept`` rows it always keeps plus ``max_test_images``."""
    limit = active().max_test_images
    if not limit:
        return planned
    return kept + limit if planned <= 0 else min(planned, kept + limit)


def test_rows(classes: Sequence[str], seed: int) -> list[int]:
    """The test images an evaluation keeps: :func:`stratified_rows` with ``max_test_images``; when
    that is below the number of classes, one normal (``good``) and anomalies of as many classes as fit."""
    limit = active().max_test_images
    rows = stratified_rows(classes, limit, seed)
    if not limit or len(set(classes)) <= limit:
        return rows
    normals = [i for i in rows if classes[i] == "good"][:1]
    anomalies = [i for i in rows if classes[i] != "good"]
    drawn = np.random.default_rng(seed).choice(anomalies, max(limit - len(normals), 1), replace=False)
    return sorted(normals + drawn.tolist())


def path_key(notebook: str, paper: str, method: str, backbone: str) -> str:
    """The code path of an experiment at the paper's scale, as the CI-sized dry run counts it: one
    method on one backbone in one notebook. Datasets, settings, shots, seeds, tables and a
    method's options (ablation variants) change the data or the options the same code runs with;
    the smoke profile runs every option at small scale, and the full dry run every grid cell at
    the paper's."""
    return "|".join((notebook, paper, method, backbone))


__all__ = ["NONE", "RunLimits", "active", "applied", "batch_slots", "epochs", "install", "path_key", "steps",
           "stratified_rows", "take", "test_rows"]
