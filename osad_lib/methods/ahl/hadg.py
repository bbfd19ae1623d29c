"""AHL's heterogeneous anomaly distribution generation (HADG) and the training pool its tasks index.

**HADG** (§3.2, App. B.1) — :func:`build_tasks`: k-means (C = 3) partitions the training
normals; every ordered pair of clusters (a, b) gives a task whose support normals are
cluster a and query normals cluster b (C(C−1) = 6 tasks), plus one task whose support and
query are the two halves of a random split of all normals (T = 7). The labelled anomalies
are split into *virtual seen* (support and query) and *virtual unseen* (query only)
halves; with one anomaly it is in both. Each task draws a pseudo-anomaly generator for its
support and a different one for its query; every task normal is replaced by its pseudo
version with probability 0.5 (the code's rate: ``docs/official_code/ahl.md``
"Heterogeneous tasks (HADG)").

:class:`PoolLayout` gives every training sample (normals, labelled anomalies, the pseudo version
of every normal per generator) one global index, :class:`FeaturePool` holds their features, and
:func:`task_sampler` draws a task set's balanced batches.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.cluster import KMeans

from osad_lib.training import BalancedBatchSampler
from osad_lib.validate import ConfigError, choose
from osad_lib.methods.ahl.config import GENERATORS, NORMAL, PSEUDO, SEEN, AHLConfig


# ============================================================================ HADG (§3.2, App. B.1)
@dataclass(frozen=True)
class Task:
    """One heterogeneous anomaly distribution D_i = {D_i^s, D_i^q} as index sets.

    Normal and pseudo indices index the training normals (a pseudo index j means "the pseudo
    anomalous version of normal j made by the set's generator"); anomaly indices index the
    labelled anomalies. ``cluster`` is X_{n,i}, the normals seen by φ_i (excluded from D' in
    Eq. 6); ``support_anomalies`` are its virtual seen anomalies.
    """

    name: str
    cluster: np.ndarray
    support_normals: np.ndarray
    support_pseudo: np.ndarray
    support_anomalies: np.ndarray
    query_normals: np.ndarray
    query_pseudo: np.ndarray
    query_anomalies: np.ndarray
    support_generator: str | None
    query_generator: str | None

    @property
    def virtual_unseen(self) -> np.ndarray:
        """Labelled anomalies in the query set only (unseen by φ_i)."""
        return np.setdiff1d(self.query_anomalies, self.support_anomalies)


def cluster_normals(features: np.ndarray | torch.Tensor, n_clusters: int, seed: int) -> np.ndarray:
    """k-means labels of the training normals' flattened scale-0 feature maps (App. B.1; the code:
    ``docs/official_code/ahl.md`` "Heterogeneous tasks (HADG)").

    ``KMeans(n_clusters, random_state=seed, n_init=10)`` on ``features`` reshaped to ``[N, -1]``.
    """
    x = features.detach().float().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    x = x.reshape(len(x), -1).astype(np.float64)
    if len(x) < n_clusters:
        raise ConfigError(f"{len(x)} training normals cannot form {n_clusters} clusters; use fewer clusters")
    return KMeans(n_clusters=n_clusters, random_state=seed, n_init=10).fit_predict(x)


def cluster_members(labels: np.ndarray, assignment: str, rng: np.random.Generator) -> list[np.ndarray]:
    """Indices of the normals in each cluster, for clusters with more than two members
    (``docs/official_code/ahl.md`` "Heterogeneous tasks (HADG)").

    ``kmeans``: the k-means members (paper). ``prefix``: the official code's index bug — cluster
    c holds normals 0 … |c|−1 (prefixes of the normal list, only the sizes come from k-means;
    ``docs/official_code/ahl.md`` "Where the code departs from the paper" item 3). ``random``: a
    random partition with the k-means sizes (RamHADG, Table 5).
    """
    choose("cluster assignment", assignment, ("kmeans", "prefix", "random"))
    all_sizes = [(c, int((labels == c).sum())) for c in sorted(set(labels.tolist()))]
    sizes = [(c, n) for c, n in all_sizes if n > 2]
    if len(sizes) < 2:
        raise ConfigError(f"k-means split the {len(labels)} training normals into clusters of "
                          f"{sorted((n for _, n in all_sizes), reverse=True)}: fewer than two have more than two "
                          "normals; use fewer clusters or more normals")
    if assignment == "kmeans":
        return [np.flatnonzero(labels == c) for c, _ in sizes]
    if assignment == "prefix":
        return [np.arange(n) for _, n in sizes]
    order = rng.permutation(len(labels))
    bounds = np.cumsum([0] + [n for _, n in sizes])
    return [np.sort(order[a:b]) for a, b in itertools.pairwise(bounds)]


def split_anomalies(n_anomalies: int, rng: np.random.Generator, consistent: bool) -> tuple[np.ndarray, np.ndarray]:
    """(support, query) labelled-anomaly indices of one task (App. B.1; the code:
    ``docs/official_code/ahl.md`` "Heterogeneous tasks (HADG)").

    Consistent (paper): a random half are virtual seen anomalies, in support *and* query; the
    other half, the virtual unseen ones, are in the query only; one anomaly is in both.
    Independent (the code; ``docs/official_code/ahl.md`` "Where the code departs from the paper"
    item 4): support = a random half; query = two random members of an *independently* drawn half
    plus that half's complement.
    """
    if n_anomalies == 0:
        return np.array([], dtype=np.int64), np.array([], dtype=np.int64)
    if n_anomalies == 1:
        return np.array([0]), np.array([0])
    half = n_anomalies // 2
    support = np.sort(rng.permutation(n_anomalies)[:half])
    if consistent:
        return support, np.arange(n_anomalies)
    other = rng.permutation(n_anomalies)
    other_half, complement = other[:half], other[half:]
    keep = rng.choice(other_half, size=min(2, len(other_half)), replace=False)
    return support, np.sort(np.concatenate([keep, complement]))


def _with_pseudo(normals: np.ndarray, enabled: bool, prob: float,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split a normal set into (kept normals, normals replaced by their pseudo version)
    (``docs/official_code/ahl.md`` "Heterogeneous tasks (HADG)").

    Each normal is replaced with probability ``prob``; when the coin replaces all of a small set
    (a three-member cluster: 1 in 8 at 0.5), one drawn normal stays, since a task set needs
    normal samples (the official code's sampler would have none to draw from either)."""
    if not enabled:
        return np.sort(normals), np.array([], dtype=np.int64)
    replaced = rng.random(len(normals)) < prob
    if len(normals) and replaced.all():
        replaced[rng.integers(len(normals))] = False
    return np.sort(normals[~replaced]), np.sort(normals[replaced])


def build_tasks(cluster_labels: np.ndarray, n_anomalies: int, config: AHLConfig, seed: int,
                generators: Sequence[str] = GENERATORS, assignment: str | None = None) -> list[Task]:
    """HADG: the T heterogeneous anomaly distributions (§3.2, App. B.1; the code:
    ``docs/official_code/ahl.md`` "Heterogeneous tasks (HADG)").

    For every ordered pair of clusters (a, b) — in the code's order (a, b), (b, a) for a < b —
    support normals = cluster a and query normals = cluster b; then (clean mode) the all-normal
    task, whose support and query are the two halves of a random split of all normals. Table
    10's overlaps add one set's normals (and pseudo anomalies) to the other. Anomaly halves:
    :func:`split_anomalies`. Generators: support and query draw different ones (paper; the
    code draws one per task for both, faithful mode). ``assignment`` overrides the cluster
    assignment (``random`` for RamHADG); by default k-means members (clean) or prefixes (faithful).
    """
    rng = np.random.default_rng(seed)
    faithful = config.faithful_mode
    assignment = assignment or ("prefix" if faithful else "kmeans")
    members = cluster_members(np.asarray(cluster_labels), assignment, rng)
    pairs = [(a, b) for a, b in itertools.combinations(range(len(members)), 2)]
    normal_pairs = [(f"c{a}→c{b}", members[a], members[b]) for a0, b0 in pairs
                    for a, b in ((a0, b0), (b0, a0))]
    if config.include_all_normal_task:
        order = rng.permutation(len(cluster_labels))
        half = len(order) // 2
        normal_pairs.append(("all", np.sort(order[:half]), np.sort(order[half:])))
    use_pseudo = config.pseudo and len(generators) > 0
    if use_pseudo and not faithful and len(generators) < 2:
        raise ConfigError("support and query need different pseudo-anomaly generators; pass at least two")
    tasks = []
    for name, support_pool, query_pool in normal_pairs:
        if config.overlap in ("s_to_q", "both"):
            query_pool = np.union1d(query_pool, support_pool)
        if config.overlap in ("q_to_s", "both"):
            support_pool = np.union1d(support_pool, query_pool)
        s_gen = q_gen = None
        if use_pseudo:
            s_gen, q_gen = (rng.choice(len(generators), size=1, replace=False).tolist() * 2 if faithful
                            else rng.choice(len(generators), size=2, replace=False).tolist())
            s_gen, q_gen = generators[s_gen], generators[q_gen]
        s_norm, s_pseudo = _with_pseudo(support_pool, use_pseudo, config.pseudo_prob, rng)
        q_norm, q_pseudo = _with_pseudo(query_pool, use_pseudo, config.pseudo_prob, rng)
        s_anom, q_anom = split_anomalies(n_anomalies, rng, consistent=not faithful)
        tasks.append(Task(name=name, cluster=np.sort(support_pool), support_normals=s_norm,
                          support_pseudo=s_pseudo, support_anomalies=s_anom, query_normals=q_norm,
                          query_pseudo=q_pseudo, query_anomalies=q_anom,
                          support_generator=s_gen, query_generator=q_gen))
    return tasks


# ============================================================================ the training pool
@dataclass(frozen=True)
class PoolLayout:
    """Global indices of every training sample AHL can use, in one virtual concatenation.

    ``[normals (n_normals) | labelled anomalies (n_anomalies) | pseudo of generator 0 (n_normals)
    | pseudo of generator 1 | …]``; pseudo row j of a generator is the pseudo version of normal j.
    """

    n_normals: int
    n_anomalies: int
    generators: tuple[str, ...]

    @property
    def size(self) -> int:
        return self.n_normals + self.n_anomalies + len(self.generators) * self.n_normals

    def normal(self, idx: np.ndarray) -> np.ndarray:
        return np.asarray(idx, dtype=np.int64)

    def anomaly(self, idx: np.ndarray) -> np.ndarray:
        return self.n_normals + np.asarray(idx, dtype=np.int64)

    def pseudo(self, generator: str, idx: np.ndarray) -> np.ndarray:
        offset = self.n_normals + self.n_anomalies + self.generators.index(generator) * self.n_normals
        return offset + np.asarray(idx, dtype=np.int64)

    def labels(self) -> np.ndarray:
        """0 normal, 1 labelled anomaly, 2 pseudo anomaly for every global index."""
        return np.concatenate([np.full(self.n_normals, NORMAL), np.full(self.n_anomalies, SEEN),
                               np.full(len(self.generators) * self.n_normals, PSEUDO)]).astype(np.int64)

    def generator_of(self) -> np.ndarray:
        """Generator index of every global index (−1 for normals and labelled anomalies)."""
        gen = np.full(self.size, -1, dtype=np.int64)
        for k in range(len(self.generators)):
            start = self.n_normals + self.n_anomalies + k * self.n_normals
            gen[start:start + self.n_normals] = k
        return gen

    def groups(self, task: Task, part: str) -> dict[str, np.ndarray]:
        """``{"normal", "pseudo", "anomaly"}`` global indices of a task's support or query set."""
        choose("part", part, ("support", "query"))
        normals, pseudo, anomalies, gen = (
            (task.support_normals, task.support_pseudo, task.support_anomalies, task.support_generator)
            if part == "support" else
            (task.query_normals, task.query_pseudo, task.query_anomalies, task.query_generator))
        return {"normal": self.normal(normals),
                "pseudo": self.pseudo(gen, pseudo) if gen is not None and len(pseudo) else np.array([], np.int64),
                "anomaly": self.anomaly(anomalies)}


def batch_slots(groups: Mapping[str, np.ndarray], batch_size: int) -> dict[str, int]:
    """Equal slots for the non-empty groups, the remainder to normals: 16/16/16 or 24/24 as the code
    (``docs/official_code/shared.md`` "Balanced batch sampler")."""
    present = [g for g in ("normal", "pseudo", "anomaly") if len(groups.get(g, ())) > 0]
    if "normal" not in present:
        raise ConfigError("a task set has no normal samples; use more training normals or fewer clusters")
    share = batch_size // len(present)
    slots = {g: share for g in present}
    slots["normal"] += batch_size - share * len(present)
    return slots


def task_sampler(groups: Mapping[str, np.ndarray], batch_size: int, seed: int) -> BalancedBatchSampler:
    """A balanced, infinite batch sampler over one task set's global indices."""
    return BalancedBatchSampler(groups, batch_slots(groups, batch_size), seed)


class FeaturePool:
    """The training pool of :class:`PoolLayout` materialised from a feature bank: per-scale
    feature tensors (float16 or float32, on ``device``) and labels for every global index."""

    def __init__(self, bank: Any, generators: Sequence[str], device: str = "cpu"):
        self.layout = PoolLayout(bank.n_normals, bank.n_anomalies, tuple(generators))
        self.features = [
            torch.cat([bank.normal[s], bank.anomaly[s], *[bank.pseudo[g][s] for g in generators]]).to(device)
            for s in range(bank.n_scales)]
        self.labels = torch.as_tensor(self.layout.labels(), device=device)
        self.device = device

    def batch(self, indices: Sequence[int] | np.ndarray) -> tuple[list[torch.Tensor], torch.Tensor]:
        index = torch.as_tensor(np.asarray(indices, dtype=np.int64), device=self.device)
        return [f[index].float() for f in self.features], self.labels[index]
