"""AHL's collaborative differentiable learning (CDL): inner adaptation, the meta-gradient, ψ and
its importance weights, and the trainer of Alg. 1.

**CDL** (§3.3, Alg. 1) — :class:`AHLTrainer`: every epoch each base model φ_i starts from
θ_g, is trained on its support set (Eq. 1, SGD fast weights), and its query loss is
differentiated back through the inner updates to θ_g (Eqs. 2–4, a MAML-style meta-gradient
with :func:`torch.func.functional_call`); the query losses are weighted by importance scores
w_i (Eq. 4) from the self-supervised estimator ψ (:class:`ImportanceEstimator`, a two-layer
BiLSTM predicting the base models' next scores from the last K = 5 epochs, Eq. 5), the
generalisation errors r_i (Eq. 6, c_j = 1.0 for unseen anomalies, 0.5 otherwise) and
w = softmax(−r) (Eq. 7); equal weights until ψ has K epochs of history.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from tqdm.auto import tqdm

from osad_lib import limits
from osad_lib.errors import NonFiniteLossError
from osad_lib.validate import choose
from osad_lib.methods.ahl.config import INNER_OPTIMIZERS, NORMAL, PSEUDO, PSI_INPUTS, SECOND_ORDER, AHLConfig
from osad_lib.methods.ahl.hadg import FeaturePool, PoolLayout, Task, build_tasks, cluster_normals, task_sampler
from osad_lib.methods.ahl.heads import FeatureScorer, Params, build_scorer, reference_features, score_in_chunks


# ============================================================================ meta-gradient (Eqs. 1–4)
def inner_adapt(loss_fn: Callable[[Params, Any], torch.Tensor], params: Params, batches: Sequence[Any],
                lr: float, second_order: str = "all") -> Params:
    """Fast weights of a base model after SGD on its support batches (Eq. 1): φ ← φ − lr·∇L.

    ``second_order``: ``all`` keeps the graph of every step (exact meta-gradient), ``first``
    only of the first step (the code, whose later steps use detached gradients:
    ``docs/official_code/ahl.md`` "Collaborative differentiable learning (CDL) and ψ"), ``none``
    none (first-order MAML). The returned tensors depend on ``params`` through the kept graph.
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
    prediction layer. ``fc_hidden=0`` is the code's head (``docs/official_code/ahl.md``
    "Collaborative differentiable learning (CDL) and ψ"): ReLU on the 2·hidden BiLSTM output,
    then the prediction layer (the code also uses dropout 0.5 between the LSTM layers and random
    initial states; zero initial states here). ``hidden=0`` means hidden = T (code).
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
        # The code (docs/official_code/ahl.md "Collaborative differentiable learning (CDL) and ψ"):
        # averaged until epoch K + 1, then summed with 0.5 + 0.5·w.
        if cfg.faithful_mode:
            return (0.5 + 0.5 * weights if epoch >= cfg.sequence_length + 1 else equal), errors
        return weights, errors

    def epoch(self, epoch: int) -> None:
        """One epoch of Alg. 1 (lines 5–13)."""
        cfg = self.config
        # The code's one-epoch-late Adam step (docs/official_code/ahl.md
        # "Collaborative differentiable learning (CDL) and ψ").
        if cfg.faithful_mode and self.pending is not None:
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
