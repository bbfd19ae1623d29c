"""AHL — Anomaly Heterogeneity Learning (Zhu, Ding, Tian & Pang, CVPR 2024).

AHL trains a *unified* anomaly scorer ``g`` on the frozen feature maps of an already trained OSAD
base model (DevNet or DRA; features from :mod:`osad_lib.components.features`). ``g`` has the base model's
scoring heads (``docs/official_code/ahl.md`` "Heads of g"; "Where the code departs from the paper",
item 1: only the heads are trained). Two components:

* **HADG** (§3.2, App. B.1) — :func:`build_tasks`: k-means (C = 3) partitions the training
  normals; every ordered pair of clusters (a, b) gives a task whose support normals are
  cluster a and query normals cluster b (C(C−1) = 6 tasks), plus one task whose support and
  query are the two halves of a random split of all normals (T = 7). The labelled anomalies
  are split into *virtual seen* (support and query) and *virtual unseen* (query only)
  halves; with one anomaly it is in both. Each task draws a pseudo-anomaly generator for its
  support and a different one for its query; every task normal is replaced by its pseudo
  version with probability 0.5 (the code's rate, §4.5).
* **CDL** (§3.3, Alg. 1) — :class:`AHLTrainer`: every epoch each base model φ_i starts from
  θ_g, is trained on its support set (Eq. 1, SGD fast weights), and its query loss is
  differentiated back through the inner updates to θ_g (Eqs. 2–4, a MAML-style meta-gradient
  with :func:`torch.func.functional_call`); the query losses are weighted by importance scores
  w_i (Eq. 4) from the self-supervised estimator ψ (:class:`ImportanceEstimator`, a two-layer
  BiLSTM predicting the base models' next scores from the last K = 5 epochs, Eq. 5), the
  generalisation errors r_i (Eq. 6, c_j = 1.0 for unseen anomalies, 0.5 otherwise) and
  w = softmax(−r) (Eq. 7); equal weights until ψ has K epochs of history.

``mode="clean"`` (default) is the paper. ``mode="faithful"`` reproduces the official code where
it changes what is trained (§4.5, §4.7, §4.8, §10 AHL items 2–6): clusters are *prefixes* of
the normal list with the k-means cluster sizes (index bug), the support and query anomaly
halves are drawn independently (query = 2 of an independent half + its complement), support
and query share one generator, only the six cluster-pair tasks are trained, the meta-gradient
of epoch e is applied at the start of epoch e + 1 (the last one never), the query losses are
averaged over tasks until the weights start (epoch K + 1) and then summed with factors
0.5 + 0.5·w_t, and the inner loop is second-order only in its first step.
:meth:`AHLConfig.faithful` also sets the code's numbers and heads (outer Adam 0.002, ψ Adam
0.002 with weight decay 1e-3, ψ hidden size = number of tasks and no extra FC layer, the code's
DRA heads: holistic without |·|, stride-3 composite with a zero-initialised affine, §4.4).
Not reproduced: the code's random initial LSTM states, its mismatched reference sets across
scales, its exact inner schedule (one second-order step from the *last* support batch, then
2 × 20 first-order steps) — ``second_order="first"`` with ``inner_steps`` steps stands for it.

The Table 5 ablations are options of the same config (``variant``): ``hadg`` (an ensemble of
base heads trained on the HADG task data, no CDL), ``ramhadg`` (the same on random normal
subsets), ``ramfull`` (an ensemble on the full data with different seeds), ``ramhadg+devnet``
(RamHADG members alternating DRA and DevNet heads), ``cdl_minus`` (CDL with weights from the
members' detection AUROC on the data outside their support instead of ψ). Table 10's
support/query overlaps are ``overlap``; Fig. 4's "wo. aug" is ``pseudo=False``; Fig. 3 sweeps
``n_clusters`` and ``sequence_length``.
"""

from __future__ import annotations

import itertools
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import roc_auc_score
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from tqdm.auto import tqdm

from osad_lib import limits
from osad_lib.components.features import PSEUDO_GENERATORS
from osad_lib.losses.deviation import deviation_loss
from osad_lib.methods.dra import model as dra_model
from osad_lib.components.heads import TopKMILHead, average_scales
from osad_lib.errors import NonFiniteLossError
from osad_lib.training import BalancedBatchSampler, TrainConfig, fit
from osad_lib.validate import ConfigError, choose

#: Base models AHL plugs into (§4.1).
BASES = ("devnet", "dra")
MODES = ("clean", "faithful")
#: Table 5 / Table 9 variants; "" is the full AHL (HADG + CDL with ψ).
VARIANTS = ("", "hadg", "ramhadg", "ramfull", "ramhadg+devnet", "cdl_minus")
#: Table 10: which set is added to the other ("s_to_q": D^s also in D^q, ...).
OVERLAPS = ("none", "s_to_q", "q_to_s", "both")
#: Inner-loop differentiation: through every step, only the first (code), or none (first-order).
SECOND_ORDER = ("all", "first", "none")
INITS = ("fresh", "base")
#: How the base models learn on their support sets (Eq. 1): the paper's Adam or the code's SGD fast weights.
INNER_OPTIMIZERS = ("adam", "sgd")
#: What ψ and Eq. 6 see: per-task min–max standardised scores, or the raw deviation-scale scores (code).
PSI_INPUTS = ("standardized", "raw")
#: DRA heads of g: the base model's ("base", paper) or the AHL code's cheaper variant ("code", §4.4).
HEAD_STYLES = ("base", "code")
#: Pseudo-anomaly generators (App. B.1): CutMix across images, CutPaste within an image, DRAEM.
GENERATORS = tuple(PSEUDO_GENERATORS)
NORMAL, SEEN, PSEUDO = dra_model.NORMAL, dra_model.SEEN, dra_model.PSEUDO


# ============================================================================ configuration
@dataclass(frozen=True)
class AHLConfig:
    """AHL's settings. Defaults are the paper's (§4.1, App. B.1) and, where it is silent, the code's.

    Paper: C = 3 clusters, T = 7 tasks, K = 5, base-model lr 2e-4, unified-model lr 5e-3 (Adam),
    ψ = 2-layer BiLSTM with hidden size 7 followed by a 14-unit FC layer, ψ lr 0.02, c_j = 1.0 /
    0.5. Code (§4.3, §4.7, §4.8): 30 epochs, batches of 48 split 16/16/16 over normal / pseudo /
    seen slots, 20 support and 20 query batches per task and epoch, inner SGD (the base models'
    lr is the inner step size), outer weight decay 1e-4 with StepLR(10, 0.1), gradient clipping
    1.0, pseudo replacement probability 0.5, top-k 10 %. ``psi_steps``: Adam steps of ψ per
    epoch (the code takes one per query set, i.e. six). ``psi_pool_size``: at most this many
    training samples are scored for ψ each epoch (0 = all; the real anomalies are always kept).
    ``init``: a copy of the trained base model's heads (``base``, the default: g starts where
    its base model ended and CDL refines it) or ``fresh`` heads (the code's Kaiming
    initialisation; with the code's few outer steps a fresh g lags its base model).
    ``inner_optimizer``: how the base models φ_i learn on their support sets — ``adam`` (§4.1:
    "Adam is used as the optimizer", lr ``base_lr``; first-order, so the meta-gradient is the
    query gradient at the adapted weights) or ``sgd`` (the code: fast weights θ − lr·∇L, second
    order as ``second_order`` says; at lr 2e-4 it moves the heads by ~0.2 %, so every φ_i is
    nearly g and there is no heterogeneity to weigh). ``psi_input``: ``standardized`` (default)
    maps each base model's pool scores to [0, 1] (min–max over the pool, per epoch) before ψ and
    Eq. 6, so r_i measures how well φ_i separates the labels; ``raw`` uses deviation-scale scores
    as the code does, whose squared gap to the 0/1 labels is dominated by the score scale and
    drives softmax(−r) to one-hot weights. ``composite_channels``: DRA's composite-head
    projection (:class:`osad_lib.methods.dra.model.CompositeHead`), as the base model's.
    ``head_style`` (DRA only): ``base`` = DRA's heads (paper: g has the base
    model's architecture), ``code`` = the AHL code's holistic (no |·|) and stride-3 composite
    heads (§4.4), which the CPU demo uses for speed.
    """

    base: str = "dra"
    mode: str = "clean"
    variant: str = ""
    n_clusters: int = 3
    sequence_length: int = 5
    pseudo: bool = True
    pseudo_prob: float = 0.5
    overlap: str = "none"
    init: str = "base"
    head_style: str = "base"
    composite_channels: int = 0
    inner_optimizer: str = "adam"
    psi_input: str = "standardized"
    epochs: int = 30
    inner_steps: int = 20
    query_steps: int = 20
    batch_size: int = 48
    base_lr: float = 2e-4
    unified_lr: float = 5e-3
    unified_weight_decay: float = 1e-4
    lr_step_size: int = 10
    lr_gamma: float = 0.1
    grad_clip: float = 1.0
    second_order: str = "all"
    psi_hidden: int = 7
    psi_fc: int = 14
    psi_lr: float = 0.02
    psi_weight_decay: float = 0.0
    psi_steps: int = 6
    psi_pool_size: int = 0
    unseen_weight: float = 1.0
    seen_weight: float = 0.5
    topk_ratio: float = 0.1
    n_ref: int = 5
    ensemble_members: int = 7

    def __post_init__(self) -> None:
        choose("base", self.base, BASES)
        choose("mode", self.mode, MODES)
        choose("variant", self.variant, VARIANTS)
        choose("overlap", self.overlap, OVERLAPS)
        choose("second_order", self.second_order, SECOND_ORDER)
        choose("init", self.init, INITS)
        choose("head_style", self.head_style, HEAD_STYLES)
        choose("inner_optimizer", self.inner_optimizer, INNER_OPTIMIZERS)
        choose("psi_input", self.psi_input, PSI_INPUTS)
        if self.init == "base" and self.head_style == "code" and self.base == "dra":
            raise ConfigError("init='base' copies DRA's heads, which head_style='code' does not have; "
                              "use head_style='base'")
        if self.n_clusters < 2:
            raise ConfigError(f"n_clusters must be >= 2 (support and query need different clusters), "
                              f"got {self.n_clusters}")
        if self.sequence_length < 1:
            raise ConfigError(f"sequence_length must be >= 1, got {self.sequence_length}; the paper uses K = 5")
        if self.batch_size < 3:
            raise ConfigError(f"batch_size must be >= 3 (normal, pseudo and seen slots), got {self.batch_size}")
        if not 0.0 <= self.pseudo_prob <= 1.0:
            raise ConfigError(f"pseudo_prob must be in [0, 1], got {self.pseudo_prob}; the code uses 0.5")
        if self.variant == "ramhadg+devnet" and self.base != "dra":
            raise ConfigError("variant 'ramhadg+devnet' mixes DRA and DevNet members; use base='dra'")

    @classmethod
    def faithful(cls, **overrides: Any) -> AHLConfig:
        """The official code's behaviour and numbers (§4.3, §4.4, §4.7, §4.8), then ``overrides``."""
        code = dict(mode="faithful", unified_lr=2e-3, second_order="first", psi_hidden=0, psi_fc=0,
                    psi_lr=2e-3, psi_weight_decay=1e-3, head_style="code", init="fresh", inner_optimizer="sgd",
                    psi_input="raw")
        code.update(overrides)
        return cls(**code)

    def with_overrides(self, overrides: Mapping[str, Any]) -> AHLConfig:
        """A copy with ``overrides`` applied; unknown keys are a one-line error."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown AHL setting(s) {unknown}; known: {sorted(known)}")
        return replace(self, **dict(overrides))

    @property
    def faithful_mode(self) -> bool:
        return self.mode == "faithful"

    def scorer_options(self) -> dict[str, Any]:
        """The head options of :func:`build_scorer` under this config."""
        return {"head_style": self.head_style, "composite_channels": self.composite_channels,
                "faithful": self.faithful_mode}

    @property
    def include_all_normal_task(self) -> bool:
        """The 7th, all-normal task (App. B.1); the code builds it but never trains it (§10 AHL 2)."""
        return not self.faithful_mode

    @property
    def variant_label(self) -> str:
        """Paper-table variant of this run: Table 5 names, ``overlap=…`` (Table 10), ``wo_aug``
        (Fig. 4), ``C=…`` / ``K=…`` (Fig. 3), ``init=fresh``; ``""`` for AHL as published."""
        parts = [self.variant] if self.variant else []
        if self.overlap != "none":
            parts.append(f"overlap={self.overlap}")
        if not self.pseudo:
            parts.append("wo_aug")
        if self.n_clusters != 3:
            parts.append(f"C={self.n_clusters}")
        if self.sequence_length != 5:
            parts.append(f"K={self.sequence_length}")
        if self.init != "base":
            parts.append(f"init={self.init}")
        return ";".join(parts)


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
    """k-means labels of the training normals' flattened scale-0 feature maps (App. B.1; code §4.5).

    ``KMeans(n_clusters, random_state=seed, n_init=10)`` on ``features`` reshaped to ``[N, -1]``.
    """
    x = features.detach().float().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    x = x.reshape(len(x), -1).astype(np.float64)
    if len(x) < n_clusters:
        raise ConfigError(f"{len(x)} training normals cannot form {n_clusters} clusters; use fewer clusters")
    return KMeans(n_clusters=n_clusters, random_state=seed, n_init=10).fit_predict(x)


def cluster_members(labels: np.ndarray, assignment: str, rng: np.random.Generator) -> list[np.ndarray]:
    """Indices of the normals in each cluster, for clusters with more than two members (code §4.5).

    ``kmeans``: the k-means members (paper). ``prefix``: the official code's index bug — cluster
    c holds normals 0 … |c|−1 (prefixes of the normal list, only the sizes come from k-means;
    §10 AHL 3). ``random``: a random partition with the k-means sizes (RamHADG, Table 5).
    """
    choose("cluster assignment", assignment, ("kmeans", "prefix", "random"))
    sizes = [(c, int((labels == c).sum())) for c in sorted(set(labels.tolist()))]
    sizes = [(c, n) for c, n in sizes if n > 2]
    if len(sizes) < 2:
        raise ConfigError("fewer than two clusters with more than two normals; use fewer clusters or more normals")
    if assignment == "kmeans":
        return [np.flatnonzero(labels == c) for c, _ in sizes]
    if assignment == "prefix":
        return [np.arange(n) for _, n in sizes]
    order = rng.permutation(len(labels))
    bounds = np.cumsum([0] + [n for _, n in sizes])
    return [np.sort(order[a:b]) for a, b in itertools.pairwise(bounds)]


def split_anomalies(n_anomalies: int, rng: np.random.Generator, consistent: bool) -> tuple[np.ndarray, np.ndarray]:
    """(support, query) labelled-anomaly indices of one task (App. B.1; code §4.5).

    Consistent (paper): a random half are virtual seen anomalies, in support *and* query; the
    other half, the virtual unseen ones, are in the query only; one anomaly is in both.
    Independent (code, §10 AHL 4): support = a random half; query = two random members of an
    *independently* drawn half plus that half's complement.
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
    """Split a normal set into (kept normals, normals replaced by their pseudo version) (code §4.5).

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
    """HADG: the T heterogeneous anomaly distributions (§3.2, App. B.1; code §4.5).

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
    """Equal slots for the non-empty groups, the remainder to normals (code §1.4: 16/16/16 or 24/24)."""
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


# ============================================================================ heads on frozen features
class DevNetFeatureHead(nn.Module):
    """DevNet's scoring on frozen features (code §3.4, §4.4): one top-K MIL head shared by the
    pyramid scales, scores averaged over scales → ``[B]``."""

    def __init__(self, channels: int, topk_ratio: float = 0.1):
        super().__init__()
        self.head = TopKMILHead(channels, topk_ratio)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        return average_scales([self.head(f) for f in features])


class CodeHolisticHead(dra_model.HolisticHead):
    """The AHL code's holistic head (§4.4, §10 AHL 7): DRA's, without the final |·|."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(features.mean(dim=(2, 3)))[:, 0]


class CodeCompositeHead(nn.Module):
    """The AHL code's composite head (§4.4, §10 AHL 7): residual → Conv3×3 with stride 3 → per-channel
    affine γ·x + β (batch norm with fixed statistics 0/1) → ReLU → top-K MIL. 25× cheaper than
    DRA's on a 5×5 map.

    ``faithful=True`` is the code as written: γ and β start at 0 — so the ReLU input is exactly 0,
    no gradient ever reaches the convolution and the head's score is a constant — and no padding,
    so on a 5×5 map the single window sees only rows and columns 0–2. Otherwise (default) γ starts
    at 1 and the map is zero-padded at the bottom/right so that the stride-3 windows tile all of it.
    """

    def __init__(self, in_channels: int, topk_ratio: float = 0.1, faithful: bool = False):
        super().__init__()
        self.faithful = faithful
        self.conv = nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=3, padding=0)
        self.gamma = nn.Parameter(torch.zeros(in_channels) if faithful else torch.ones(in_channels))
        self.beta = nn.Parameter(torch.zeros(in_channels))
        self.scorer = TopKMILHead(in_channels, topk_ratio)

    def forward(self, features: torch.Tensor, reference_features: torch.Tensor) -> torch.Tensor:
        residual = dra_model.latent_residual(features, reference_features)
        if not self.faithful:  # pad so that ceil(n / 3) windows of 3 cover every row and column
            pad_h, pad_w = (-residual.shape[-2]) % 3, (-residual.shape[-1]) % 3
            residual = F.pad(residual, (0, pad_w, 0, pad_h))
        h, w = (residual.shape[-2] - 3) // 3 + 1, (residual.shape[-1] - 3) // 3 + 1
        # the convolution as unfold + matmul: same numbers, and its double backward (meta-gradient)
        # is plain matrix products instead of CPU convolution double-backward kernels
        patches = F.unfold(residual, kernel_size=3, stride=3).transpose(1, 2).reshape(-1, 9 * residual.shape[1])
        x = F.linear(patches, self.conv.weight.flatten(1), self.conv.bias)  # one GEMM over all cells
        x = x.view(len(residual), h, w, -1).permute(0, 3, 1, 2)
        return self.scorer(torch.relu(x * self.gamma.view(1, -1, 1, 1) + self.beta.view(1, -1, 1, 1)))


class DRAFeatureHeads(nn.Module):
    """DRA's four heads on frozen per-scale features (code §2.6, §4.4) → ``{head: scores [B]}``.

    ``style="base"``: the same head classes as :class:`osad_lib.methods.dra.model.DRA` (paper: g has
    exactly the base model's architecture); ``style="code"``: the AHL code's holistic and
    composite heads (:class:`CodeHolisticHead`, :class:`CodeCompositeHead`). Applied to
    pre-computed feature maps instead of backbone outputs: with ``labels`` every head scores
    only the samples routed to it (:data:`osad_lib.methods.dra.model.ROUTES`); per-scale scores are
    averaged. ``references`` holds the reference feature maps of each scale.
    """

    def __init__(self, channels: int, heads: Sequence[str] = dra_model.HEADS, topk_ratio: float = 0.1,
                 style: str = "base", composite_channels: int = 0, faithful: bool = False):
        super().__init__()
        self.head_names = dra_model.validate_heads(heads)
        code = choose("head style", style, HEAD_STYLES) == "code"
        builders = {
            "holistic": lambda: (CodeHolisticHead if code else dra_model.HolisticHead)(channels),
            "seen": lambda: TopKMILHead(channels, topk_ratio),
            "pseudo": lambda: TopKMILHead(channels, topk_ratio),
            "composite": lambda: (CodeCompositeHead(channels, topk_ratio, faithful) if code
                                  else dra_model.CompositeHead(channels, topk_ratio, composite_channels)),
        }
        self.heads = nn.ModuleDict({name: builders[name]() for name in self.head_names})

    def forward(self, features: Sequence[torch.Tensor], references: Sequence[torch.Tensor],
                labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out: dict[str, list[torch.Tensor]] = {h: [] for h in self.head_names}
        for feats, refs in zip(features, references, strict=True):
            for head in self.head_names:
                routed = feats if labels is None else feats[dra_model.ROUTES[head](labels)]
                out[head].append(self.heads[head](routed, refs) if head == "composite" else self.heads[head](routed))
        return {head: average_scales(scores) for head, scores in out.items()}


Params = dict[str, torch.Tensor]


class FeatureScorer:
    """A scoring module on frozen features with its base model's training loss, usable with
    fast weights: ``loss(params, features, labels)`` and ``score(params, features)`` run the
    module through :func:`torch.func.functional_call` with ``params`` (None = its own).

    DevNet (code §3.4): deviation loss with every anomaly (labelled or pseudo) as target 1.
    DRA (code §2.7): the sum of the four heads' deviation losses on their routed samples;
    score −holistic + seen + pseudo + composite, with fixed ``references`` (per-scale feature
    maps of ``n_ref`` training normals chosen by the seed, DRA's clean mode).
    """

    def __init__(self, base: str, module: nn.Module, references: Sequence[torch.Tensor] | None = None):
        self.base = choose("base", base, BASES)
        self.module = module
        if base == "dra" and references is None:
            raise ConfigError("the DRA scorer needs reference features (per scale [n_ref, C, h, w])")
        self.references = list(references) if references is not None else None

    def parameters(self) -> Params:
        return dict(self.module.named_parameters())

    def _call(self, params: Params | None, features: Sequence[torch.Tensor], labels: torch.Tensor | None) -> Any:
        feats = [f.float() for f in features]
        args: tuple[Any, ...] = (feats, self.references, labels) if self.base == "dra" else (feats,)
        if params is None:
            return self.module(*args)
        return functional_call(self.module, params, args, strict=False)

    def loss(self, params: Params | None, features: Sequence[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """The base model's training loss on one batch (labels 0/1/2)."""
        self.module.train()
        if self.base == "devnet":
            return deviation_loss(self._call(params, features, None), (labels != NORMAL).float())
        total, _ = dra_model.dra_loss(self._call(params, features, labels), labels, deviation_loss)
        return total

    @torch.no_grad()
    def score(self, params: Params | None, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Anomaly scores ``[B]`` (eval mode, no gradient)."""
        self.module.eval()
        out = self._call(params, features, None)
        return out.float() if self.base == "devnet" else dra_model.anomaly_score(out)


def build_scorer(base: str, channels: int, references: Sequence[torch.Tensor] | None = None,
                 topk_ratio: float = 0.1, base_state: Mapping[str, torch.Tensor] | None = None,
                 head_style: str = "base", composite_channels: int = 0, faithful: bool = False) -> FeatureScorer:
    """A feature-scoring module for ``base``: fresh, or with the heads of a trained base model.

    ``base_state`` is the base model's ``state_dict()`` (:class:`~osad_lib.methods.devnet.model.DevNet`
    keeps its head under ``head.``, :class:`~osad_lib.methods.dra.model.DRA` under ``heads.<name>.``,
    the same names as here); its head entries are loaded, so the scorer reproduces the base
    model's scores on the base model's own features. ``head_style``, ``composite_channels`` and
    ``faithful`` (the code-style composite head's zero init and no padding): see :class:`DRAFeatureHeads`.
    """
    module = (DevNetFeatureHead(channels, topk_ratio) if base == "devnet"
              else DRAFeatureHeads(channels, topk_ratio=topk_ratio, style=head_style,
                                   composite_channels=composite_channels, faithful=faithful))
    if base_state is not None:
        wanted = module.state_dict()
        missing = [k for k in wanted if k not in base_state]
        if missing:
            raise ConfigError(f"the base model's state has no {missing[:2]}…; "
                              f"pass the state_dict of a trained {base} model")
        module.load_state_dict({k: base_state[k] for k in wanted})
    return FeatureScorer(base, module, references)


# ============================================================================ meta-gradient (Eqs. 1–4)
def inner_adapt(loss_fn: Callable[[Params, Any], torch.Tensor], params: Params, batches: Sequence[Any],
                lr: float, second_order: str = "all") -> Params:
    """Fast weights of a base model after SGD on its support batches (Eq. 1): φ ← φ − lr·∇L.

    ``second_order``: ``all`` keeps the graph of every step (exact meta-gradient), ``first``
    only of the first step (the code, §4.7: later steps use detached gradients), ``none`` none
    (first-order MAML). The returned tensors depend on ``params`` through the kept graph.
    """
    choose("second_order", second_order, SECOND_ORDER)
    fast = dict(params)
    for step, batch in enumerate(batches):
        loss = loss_fn(fast, batch)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"support loss is {loss.item()}; lower base_lr or check the features")
        keep = second_order == "all" or (second_order == "first" and step == 0)
        names = [n for n, p in fast.items() if p.requires_grad]
        grads = torch.autograd.grad(loss, [fast[n] for n in names], create_graph=keep, allow_unused=True)
        for name, grad in zip(names, grads, strict=True):
            if grad is not None:
                fast[name] = fast[name] - lr * (grad if keep else grad.detach())
    return fast


def adam_adapt(loss_fn: Callable[[Params, Any], torch.Tensor], params: Params, batches: Sequence[Any],
               lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> Params:
    """A base model's weights after Adam on its support batches (Eq. 1 with the paper's optimiser,
    §4.1), starting from ``params``; no graph is kept (first order)."""
    fast = {n: p.detach().clone().requires_grad_(p.requires_grad) for n, p in params.items()}
    m = {n: torch.zeros_like(p) for n, p in fast.items()}
    v = {n: torch.zeros_like(p) for n, p in fast.items()}
    for step, batch in enumerate(batches, start=1):
        loss = loss_fn(fast, batch)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"support loss is {loss.item()}; lower base_lr or check the features")
        names = [n for n, p in fast.items() if p.requires_grad]
        grads = torch.autograd.grad(loss, [fast[n] for n in names], allow_unused=True)
        with torch.no_grad():
            for name, grad in zip(names, grads, strict=True):
                if grad is None:
                    continue
                m[name].mul_(betas[0]).add_(grad, alpha=1 - betas[0])
                v[name].mul_(betas[1]).addcmul_(grad, grad, value=1 - betas[1])
                m_hat, v_hat = m[name] / (1 - betas[0] ** step), v[name] / (1 - betas[1] ** step)
                fast[name] -= lr * m_hat / (v_hat.sqrt() + eps)
    return fast


def relative_change(before: Params, after: Params) -> float:
    """‖φ − θ‖ / ‖θ‖ over all parameters: how far a base model moved from the unified model."""
    diff = sum(float(((after[n].detach() - p.detach()) ** 2).sum()) for n, p in before.items())
    norm = sum(float((p.detach() ** 2).sum()) for p in before.values())
    return (diff / max(norm, 1e-30)) ** 0.5


def meta_gradient(params: Params, support_loss: Callable[[Params, Any], torch.Tensor],
                  query_loss: Callable[[Params, Any], torch.Tensor], support_batches: Sequence[Any],
                  query_batches: Sequence[Any], lr: float, second_order: str = "all",
                  inner_optimizer: str = "sgd") -> tuple[Params, Params, float]:
    """∇_θ of one base model's query loss through its inner updates (Eqs. 2–3 for one task).

    ``inner_optimizer="sgd"``: :func:`inner_adapt` with ``second_order``; ``"adam"``:
    :func:`adam_adapt`, whose first-order meta-gradient is the query gradient at the adapted
    weights. Returns (gradient per parameter, the adapted fast weights detached, the query loss
    value), where the query loss is the mean over ``query_batches``.
    """
    if choose("inner_optimizer", inner_optimizer, INNER_OPTIMIZERS) == "adam":
        fast = adam_adapt(support_loss, params, support_batches, lr)
        targets = fast
    else:
        fast = inner_adapt(support_loss, params, support_batches, lr, second_order)
        targets = params
    loss = torch.stack([query_loss(fast, b) for b in query_batches]).mean()
    if not torch.isfinite(loss):
        raise NonFiniteLossError(f"query loss is {loss.item()}; lower unified_lr or check the features")
    names = list(params)
    grads = torch.autograd.grad(loss, [targets[n] for n in names], allow_unused=True)
    grad = {n: (g if g is not None else torch.zeros_like(params[n])) for n, g in zip(names, grads, strict=True)}
    return grad, {n: t.detach() for n, t in fast.items()}, float(loss.detach())


# ============================================================================ ψ and the weights (Eqs. 5–7)
class ImportanceEstimator(nn.Module):
    """ψ (§3.3, §4.1): a two-layer bidirectional LSTM over the last K epochs of the T base
    models' scores of a sample (``[N, K, T]``), predicting their scores at the next epoch ``[N, T]``.

    Paper: hidden size 7, then a fully connected layer with 14 units (ReLU) before the
    prediction layer. ``fc_hidden=0`` is the code's head (§4.8): ReLU on the 2·hidden BiLSTM
    output, then the prediction layer (the code also uses dropout 0.5 between the LSTM layers
    and random initial states; zero initial states here). ``hidden=0`` means hidden = T (code).
    """

    def __init__(self, n_tasks: int, hidden: int = 7, fc_hidden: int = 14, dropout: float = 0.0):
        super().__init__()
        hidden = hidden or n_tasks
        self.lstm = nn.LSTM(n_tasks, hidden, num_layers=2, batch_first=True, bidirectional=True, dropout=dropout)
        width = 2 * hidden
        self.head = (nn.Sequential(nn.Linear(width, fc_hidden), nn.ReLU(), nn.Linear(fc_hidden, n_tasks))
                     if fc_hidden else nn.Sequential(nn.ReLU(), nn.Linear(width, n_tasks)))

    def forward(self, sequences: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(sequences)
        return self.head(out[:, -1])


def category_weights(task: Task, layout: PoolLayout, unseen_weight: float = 1.0,
                     seen_weight: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """c_j and membership of D' = D \\ X_{n,i} for base model i over the pool (Eq. 6, §4.1).

    Unseen anomalies of φ_i — labelled anomalies outside its support and pseudo anomalies of
    generators other than its support generator — get ``unseen_weight`` (1.0); its seen
    anomalies and the normals outside its cluster get ``seen_weight`` (0.5); its cluster's
    normals are excluded.
    """
    labels, gen = layout.labels(), layout.generator_of()
    c = np.full(layout.size, seen_weight, dtype=np.float64)
    anomalies = layout.anomaly(np.setdiff1d(np.arange(layout.n_anomalies), task.support_anomalies))
    c[anomalies] = unseen_weight
    if task.support_generator is not None:
        seen_gen = layout.generators.index(task.support_generator)
        c[(labels == PSEUDO) & (gen != seen_gen)] = unseen_weight
    else:
        c[labels == PSEUDO] = unseen_weight
    include = np.ones(layout.size, dtype=bool)
    include[layout.normal(task.cluster)] = False
    return c, include


def generalization_errors(predicted: torch.Tensor, labels: torch.Tensor, c: torch.Tensor,
                          include: torch.Tensor) -> torch.Tensor:
    """r_i = 1/|D'_i| Σ_{j∈D'_i} c_ji·(ŝ_ji − y_j)² (Eq. 6); ``predicted``, ``c``, ``include`` are
    ``[N, T]``, ``labels`` ``[N]`` (binary: 1 for labelled and pseudo anomalies) → ``[T]``."""
    y = labels.reshape(-1, 1).float()
    mask = include.float()
    return (mask * c * (predicted - y) ** 2).sum(0) / mask.sum(0).clamp_min(1.0)


def standardized_scores(scores: torch.Tensor, how: str = "standardized") -> torch.Tensor:
    """The pool scores ``[N, T]`` that ψ and Eq. 6 see: each base model's (column's) scores
    min–max scaled to [0, 1] over the pool (``standardized``), or as they are (``raw``)."""
    if choose("psi_input", how, PSI_INPUTS) == "raw":
        return scores
    low, high = scores.min(dim=0, keepdim=True).values, scores.max(dim=0, keepdim=True).values
    return (scores - low) / (high - low).clamp_min(1e-12)


def importance_weights(errors: torch.Tensor) -> torch.Tensor:
    """w_i = exp(−r_i) / Σ exp(−r_i) (Eq. 7)."""
    return torch.softmax(-errors, dim=0)


def accuracy_errors(scores: torch.Tensor, labels: torch.Tensor, include: torch.Tensor) -> torch.Tensor:
    """CDL⁻ (Table 5): r_i = 1 − AUROC of base model i on D'_i (binary labels) → ``[T]``."""
    y = labels.cpu().numpy()
    out = []
    for i in range(scores.shape[1]):
        m = include[:, i].cpu().numpy()
        ok = len(set(y[m].tolist())) == 2
        out.append(1.0 - roc_auc_score(y[m], scores[m, i].cpu().numpy()) if ok else 0.5)
    return torch.tensor(out, dtype=torch.float32)


class ScoreHistory:
    """ψ's training data: the base models' scores on the pool at each epoch, and ψ itself (Eq. 5)."""

    def __init__(self, n_tasks: int, config: AHLConfig):
        self.k = config.sequence_length
        self.steps = config.psi_steps
        self.estimator = ImportanceEstimator(n_tasks, config.psi_hidden, config.psi_fc,
                                             dropout=0.5 if config.faithful_mode else 0.0)
        self.optimizer = torch.optim.Adam(self.estimator.parameters(), lr=config.psi_lr,
                                          weight_decay=config.psi_weight_decay)
        self.scores: list[torch.Tensor] = []
        self.losses: list[float] = []

    @property
    def ready(self) -> bool:
        """True once K earlier epochs are recorded (Alg. 1 line 7: epoch ≥ K)."""
        return len(self.scores) >= self.k

    def update(self, current: torch.Tensor) -> torch.Tensor | None:
        """Record this epoch's scores ``[N, T]``; once ready, train ψ on (last K → current)
        (Eq. 5, ``psi_steps`` Adam steps) and return its prediction ŝ^t ``[N, T]``."""
        predicted = None
        if self.ready:
            window = torch.stack(self.scores[-self.k:], dim=1)
            self.estimator.train()
            for _ in range(self.steps):
                loss = nn.functional.mse_loss(self.estimator(window), current)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
            self.losses.append(float(loss.detach()))
            self.estimator.eval()
            with torch.no_grad():
                predicted = self.estimator(window)
        self.scores.append(current.detach())
        return predicted


# ============================================================================ CDL training (Alg. 1)
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


def score_in_chunks(scorer: FeatureScorer, params: Params | None, features: Sequence[torch.Tensor],
                    chunk: int = 256) -> torch.Tensor:
    """Scores of every row of per-scale ``features`` (float16 allowed), ``chunk`` rows at a time."""
    n = features[0].shape[0]
    out = [scorer.score(params, [f[i:i + chunk].float() for f in features]) for i in range(0, n, chunk)]
    return torch.cat(out) if out else torch.zeros(0)


def psi_pool_indices(layout: PoolLayout, size: int, seed: int) -> np.ndarray:
    """The samples ψ scores every epoch: the whole pool, or ``size`` of them with every
    labelled anomaly kept (a seeded draw of the rest)."""
    everything = np.arange(layout.size)
    if size <= 0 or size >= layout.size:
        return everything
    anomalies = layout.anomaly(np.arange(layout.n_anomalies))
    rest = np.setdiff1d(everything, anomalies)
    pick = np.random.default_rng(seed).choice(rest, size=max(size - len(anomalies), 0), replace=False)
    return np.sort(np.concatenate([anomalies, pick]))


@dataclass
class TrainedAHL:
    """A trained AHL model, or an ensemble of the Table 5 ablations.

    ``members``: (scorer, base, normal-score mean, normal-score std) — one member (the unified
    model g, not normalised) for AHL, several for an ensemble (their scores are z-normalised by
    their scores on the training normals and averaged). ``history``: one row per epoch and
    task (epoch, task, weight, error r_i, query loss, ψ loss); ``tasks``: the HADG tasks.
    """

    members: list[tuple[FeatureScorer, str, float, float]]
    history: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[Task] = field(default_factory=list)

    def score(self, features: Mapping[str, Sequence[torch.Tensor]]) -> np.ndarray:
        """Anomaly scores of samples given as ``{base: per-scale features}`` → numpy ``[N]``."""
        parts = [(score_in_chunks(s, None, features[b]) - mean) / std for s, b, mean, std in self.members]
        return torch.stack(parts).mean(0).cpu().numpy()


def reference_features(bank: Any) -> list[torch.Tensor] | None:
    """The DRA composite head's reference feature maps of a bank (None when it has none)."""
    refs = getattr(bank, "references", None)
    return [r.float() for r in refs] if refs else None


class AHLTrainer:
    """Alg. 1 on one feature bank: HADG tasks, then ``epochs`` of CDL (module docstring).

    Per epoch: every base model φ_i starts from θ_g and takes ``inner_steps`` SGD steps on
    support batches (Eq. 1); its mean loss over ``query_steps`` query batches is differentiated
    back to θ_g (:func:`meta_gradient`); the base models score the ψ pool, ψ learns to predict
    those scores from the last K epochs (Eq. 5) and yields r_i (Eq. 6) and w_i (Eq. 7) — or
    w_i = 1/T before K epochs of history; θ_g takes one Adam step on Σ_i w_i ∇L_i (Eq. 4).
    """

    def __init__(self, bank: Any, config: AHLConfig, seed: int, device: str = "cpu",
                 base_state: Mapping[str, torch.Tensor] | None = None):
        self.config, self.seed, self.device = config, int(seed), device
        generators = tuple(bank.pseudo) if config.pseudo else ()
        self.pool = FeaturePool(bank, generators, device)
        labels = cluster_normals(bank.normal[0], config.n_clusters, seed)
        self.tasks = build_tasks(labels, bank.n_anomalies, config, seed, generators)
        torch.manual_seed(seed)
        refs = reference_features(bank)
        self.scorer = build_scorer(config.base, bank.channels, [r.to(device) for r in refs] if refs else None,
                                   config.topk_ratio, base_state if config.init == "base" else None,
                                   **config.scorer_options())
        self.scorer.module.to(device)
        self.theta = self.scorer.parameters()
        layout = self.pool.layout
        self.samplers = [
            (iter(task_sampler(layout.groups(t, "support"), config.batch_size, seed * 1009 + 2 * i)),
             iter(task_sampler(layout.groups(t, "query"), config.batch_size, seed * 1009 + 2 * i + 1)))
            for i, t in enumerate(self.tasks)]
        self.optimizer = torch.optim.Adam(self.theta.values(), lr=config.unified_lr,
                                          weight_decay=config.unified_weight_decay)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, config.lr_step_size, config.lr_gamma)
        self.psi = ScoreHistory(len(self.tasks), config)
        self.psi_index = psi_pool_indices(  # a dry run (osad_lib.limits) scores a few rows beside the anomalies
            self.pool.layout, limits.scored_pool(config.psi_pool_size, self.pool.layout.n_anomalies), seed)
        cs, includes = zip(*(category_weights(t, self.pool.layout, config.unseen_weight, config.seen_weight)
                             for t in self.tasks))
        self.c = torch.tensor(np.stack(cs, 1)[self.psi_index], dtype=torch.float32)
        self.include = torch.tensor(np.stack(includes, 1)[self.psi_index])
        self.binary = (self.pool.labels.cpu()[torch.as_tensor(self.psi_index)] != NORMAL).float()
        self.pending: Params | None = None
        self.history: list[dict[str, Any]] = []

    def _loss(self, params: Params, batch: tuple[list[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        return self.scorer.loss(params, *batch)

    def _batches(self, sampler: Iterator[list[int]], n: int) -> list[tuple[list[torch.Tensor], torch.Tensor]]:
        return [self.pool.batch(next(sampler)) for _ in range(n)]

    def _weights(self, epoch: int, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss factors per task, errors r) of this epoch (Eqs. 5–7; CDL⁻; faithful factors)."""
        cfg, n_tasks = self.config, len(self.tasks)
        equal = torch.full((n_tasks,), 1.0 / n_tasks)
        errors = torch.full((n_tasks,), float("nan"))
        if cfg.variant == "cdl_minus":
            errors = accuracy_errors(scores, self.binary, self.include)
            return importance_weights(errors), errors
        predicted = self.psi.update(scores)
        if predicted is None:
            return equal, errors
        errors = generalization_errors(predicted, self.binary, self.c, self.include)
        weights = importance_weights(errors)
        if cfg.faithful_mode:  # code §4.7–4.8: averaged until epoch K + 1, then summed with 0.5 + 0.5·w
            return (0.5 + 0.5 * weights if epoch >= cfg.sequence_length + 1 else equal), errors
        return weights, errors

    def epoch(self, epoch: int) -> None:
        """One epoch of Alg. 1 (lines 5–13)."""
        cfg = self.config
        if cfg.faithful_mode and self.pending is not None:  # the code's one-epoch-late Adam step (§4.7)
            self._step(self.pending)
        grads, scores, query_losses = [], [], []
        pool_features = [f[torch.as_tensor(self.psi_index, device=self.device)] for f in self.pool.features]
        changes = []
        for support, query in self.samplers:
            grad, fast, q_loss = meta_gradient(self.theta, self._loss, self._loss,
                                               self._batches(support, limits.steps(cfg.inner_steps)),
                                               self._batches(query, limits.steps(cfg.query_steps)), cfg.base_lr,
                                               cfg.second_order, cfg.inner_optimizer)
            grads.append(grad)
            query_losses.append(q_loss)
            changes.append(relative_change(self.theta, fast))
            scores.append(score_in_chunks(self.scorer, fast, pool_features).cpu())
        weights, errors = self._weights(epoch, standardized_scores(torch.stack(scores, 1), cfg.psi_input))
        combined = {n: sum(float(w) * g[n] for w, g in zip(weights, grads)) for n in self.theta}
        if cfg.faithful_mode:
            self.pending = combined
        else:
            self._step(combined)
        with warnings.catch_warnings():  # faithful: the code steps the schedule before the lagged Adam step
            warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()`"))
            self.scheduler.step()
        psi_loss = self.psi.losses[-1] if self.psi.losses and self.psi.ready else float("nan")
        for i, task in enumerate(self.tasks):
            self.history.append({"epoch": epoch + 1, "task": task.name, "weight": float(weights[i]),
                                 "error": float(errors[i]), "query_loss": query_losses[i], "psi_loss": psi_loss,
                                 "relative_change": changes[i]})

    def _step(self, grads: Params) -> None:
        for name, p in self.theta.items():
            p.grad = grads[name].detach().clone()
        if self.config.grad_clip:
            torch.nn.utils.clip_grad_norm_(list(self.theta.values()), self.config.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def fit(self, progress: bool = True, desc: str = "ahl") -> TrainedAHL:
        # a dry run (osad_lib.limits): the K + 2 epochs after which psi has trained and its weights apply
        epochs = limits.epochs(self.config.epochs, phases=self.config.sequence_length + 2)
        for epoch in tqdm(range(epochs), desc=desc, leave=False, disable=not progress):
            self.epoch(epoch)
        return TrainedAHL([(self.scorer, self.config.base, 0.0, 1.0)], self.history, self.tasks)


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
