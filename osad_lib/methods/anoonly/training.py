"""The one loop that trains every head (:func:`run_stage`) and each head's training and scoring
(:func:`train_head`, :class:`TrainedHead`)."""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from osad_lib import limits
from osad_lib.data.tabular import TabularSplit
from osad_lib.methods.anoonly.losses import (
    bn_cluster_loss, deepsad_loss, devnet_loss, feawad_loss, prenet_loss,
)
from osad_lib.seeding import seed_everything
from osad_lib.errors import NonFiniteLossError
from osad_lib.training import save_checkpoint
from osad_lib.validate import ConfigError, choose
from osad_lib.methods.anoonly.config import CENTERS, SSADConfig
from osad_lib.methods.anoonly.networks import DeepSADNet, DevNetNet, FEAWADNet, Norm, PReNetNet



@dataclass
class Stage:
    """One optimisation stage for :func:`run_stage`: what to optimise, how batches come, the loss.

    ``batches(rng)`` yields one epoch of batches; ``loss(batch)`` returns the loss to minimise.
    ``epoch_end`` runs after each epoch (schedulers). ``select_best_loss`` restores the weights
    of the epoch with the lowest mean training loss at the end (Keras ModelCheckpoint).
    """

    name: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    epochs: int
    batches: Callable[[np.random.Generator], Iterator[Any]]
    loss: Callable[[Any], torch.Tensor]
    select_best_loss: bool = False
    epoch_end: Callable[[], None] = lambda: None


def run_stage(stage: Stage, rng: np.random.Generator, progress: bool = False) -> list[float]:
    """The one training loop of the tabular heads; returns the mean training loss per epoch.

    The loss of every batch includes the explicit L_BN terms of ``bn_dagger`` norms (Eq. (5)).
    A non-finite loss raises :class:`~osad_lib.errors.NonFiniteLossError`.
    """
    history: list[float] = []
    best, best_state = math.inf, None
    norms = [m for m in stage.model.modules() if isinstance(m, Norm) and m.kind == "bn_dagger"]
    for epoch in tqdm(range(limits.epochs(stage.epochs)), desc=stage.name, leave=False, disable=not progress):
        stage.model.train()
        losses = []
        for batch in limits.take(stage.batches(rng)):  # all batches, except in a dry run
            for norm in norms:
                norm.inputs.clear()
            loss = stage.loss(batch)
            for norm in norms:
                loss = loss + sum(bn_cluster_loss(h) for h in norm.inputs)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"{stage.name}: loss is {loss.item()} at epoch {epoch + 1}; lower the learning rate")
            stage.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            stage.optimizer.step()
            losses.append(float(loss.detach()))
        stage.epoch_end()
        history.append(float(np.mean(losses)) if losses else math.nan)
        if stage.select_best_loss and history[-1] < best:
            best, best_state = history[-1], copy.deepcopy(stage.model.state_dict())
    if best_state is not None:
        stage.model.load_state_dict(best_state)
    return history


def _optimizer(params: Any, kind: str, lr: float, weight_decay: float, keras: bool) -> torch.optim.Optimizer:
    """RMSprop or Adam; with ``keras`` the Keras constants (RMSprop ρ 0.9, ε 1e-7; Adam ε 1e-7)."""
    if kind == "rmsprop":
        extra = {"alpha": 0.9, "eps": 1e-7} if keras else {}
        return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay, **extra)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **({"eps": 1e-7} if keras else {}))


def _draw(rng: np.random.Generator, pool: np.ndarray, n: int) -> np.ndarray:
    """``n`` indices from ``pool`` with replacement (the ADBench batch generators)."""
    return pool[rng.integers(0, len(pool), n)]


def _half_batches(split: TabularSplit, cfg: SSADConfig, steps: int,
                  rng: np.random.Generator) -> Iterator[np.ndarray]:
    """One epoch of DevNet/FEAWAD batches: half unlabelled, half labelled anomalies, with replacement.

    ``balanced=False`` draws uniformly from the whole training set instead. ``fixed_batches``
    re-seeds the draw for every batch (the code's quirk: the same batch every step).
    """
    for _ in range(steps):
        r = np.random.default_rng(0) if cfg.fixed_batches else rng
        if not cfg.balanced:
            yield _draw(r, np.arange(len(split.y_train)), cfg.batch_size)
            continue
        half = cfg.batch_size // 2
        yield np.concatenate([_draw(r, split.unlabeled, half), _draw(r, split.labeled, cfg.batch_size - half)])


@dataclass
class TrainedHead:
    """A trained head: the network, its config, per-stage loss histories and scoring state.

    PReNet scores against ``references`` = (labelled anomalies, unlabelled rows): with
    ``score_refs="per_row"`` these are the pools and every test row gets its own
    ``n_score_refs`` draws from each (seeded by ``score_seed``, so scoring is repeatable); with
    ``"shared"`` they are the drawn references themselves, the same for every row.
    """

    config: SSADConfig
    model: nn.Module
    history: dict[str, list[float]] = field(default_factory=dict)
    center: torch.Tensor | None = None
    references: tuple[torch.Tensor, torch.Tensor] | None = None
    score_seed: int = 0

    @torch.no_grad()
    def score(self, X: np.ndarray) -> np.ndarray:
        """Anomaly scores of rows ``X`` (eval mode: BN uses its running statistics)."""
        self.model.eval()
        x = torch.as_tensor(X, dtype=torch.float32)
        head = self.config.head
        if head == "deepsad":
            s = ((self.model(x) - self.center) ** 2).sum(dim=1)
        elif head == "devnet":
            s = self.model(x)
        elif head == "feawad":
            s = self.model(x)[0]
        else:
            s = self._prenet_score(x)
        return s.double().numpy()

    def _prenet_score(self, x: torch.Tensor) -> torch.Tensor:
        """PReNet: mean over k references of ``f(a, x) + f(x, u)`` (B.4; k = ``n_score_refs``)."""
        anomalies, unlabeled = self.references
        if self.config.score_refs == "shared":
            return torch.stack([self.model(a.expand_as(x), x) + self.model(x, u.expand_as(x))
                                for a, u in zip(anomalies, unlabeled)]).mean(dim=0)
        k, n = self.config.n_score_refs, len(x)
        rng = np.random.default_rng([self.score_seed, 3])
        a = anomalies[torch.as_tensor(rng.integers(0, len(anomalies), (n, k)).reshape(-1))]
        u = unlabeled[torch.as_tensor(rng.integers(0, len(unlabeled), (n, k)).reshape(-1))]
        rows = x.repeat_interleave(k, dim=0)
        return (self.model(a, rows) + self.model(rows, u)).view(n, k).mean(dim=1)

    @torch.no_grad()
    def hidden(self, X: np.ndarray) -> np.ndarray:
        """The features entering the last layer (AnoOnly Fig. 10, right columns)."""
        self.model.eval()
        h = self.model.hidden(torch.as_tensor(X, dtype=torch.float32))
        return (h[0] if isinstance(h, tuple) else h).numpy()


def train_head(split: TabularSplit, config: SSADConfig, seed: int, progress: bool = False,
               pretrain_cache: Path | None = None) -> TrainedHead:
    """Build and train one head on ``split`` (appendix B; ``docs/official_code/anoonly.md``).

    Everything (initialisation, batches, PReNet references) is drawn from ``seed``, so the base
    head and its AnoOnly twin start from the same weights and see the same batches. FEAWAD's
    autoencoder pre-training does not depend on AnoOnly: with ``pretrain_cache`` (a folder) its
    result is stored there, keyed by the data, seed and pre-training settings, and reused.
    """
    cfg = config.resolved()
    seed_everything(seed)
    X = torch.as_tensor(split.X_train, dtype=torch.float32)
    y = torch.as_tensor(split.y_train)
    if len(split.labeled) == 0:
        raise ConfigError("the split has no labelled anomaly; raise la or use at_least_one_labeled")
    if cfg.head == "feawad":
        return _train_feawad(split, cfg, X, y, seed, progress, pretrain_cache)
    trainer = {"deepsad": _train_deepsad, "devnet": _train_devnet, "prenet": _train_prenet}[cfg.head]
    return trainer(split, cfg, X, y, np.random.default_rng(seed), progress)


def _train_deepsad(split, cfg, X, y, rng, progress) -> TrainedHead:
    """Deep SAD: shuffled batches of 128 (drop_last); optional autoencoder pre-training; centre c
    (:data:`CENTERS`, entries with |c| < 0.1 set to ±0.1) before the Deep SAD stage."""
    model = DeepSADNet(X.shape[1], cfg.norm)

    def batches(r: np.random.Generator) -> Iterator[np.ndarray]:
        order = r.permutation(len(y))
        n = max(len(order) // cfg.batch_size, 1)
        return (order[i * cfg.batch_size:(i + 1) * cfg.batch_size] for i in range(n))

    history: dict[str, list[float]] = {}
    if cfg.pretrain_epochs:
        ae = nn.Sequential(model, model.decoder())
        ae_opt = _optimizer(ae.parameters(), "adam", cfg.lr, cfg.weight_decay, keras=False)
        history["pretrain"] = run_stage(
            Stage("deepsad-ae", ae, ae_opt, cfg.pretrain_epochs, batches,
                  lambda idx: ((ae(X[idx]) - X[idx]) ** 2).sum(dim=1).mean()),
            np.random.default_rng([int(rng.integers(2**31)), 1]), progress)
    c = deepsad_center(model, X, cfg.center)

    def loss(idx: np.ndarray) -> torch.Tensor:
        dist = ((model(X[idx]) - c) ** 2).sum(dim=1)
        return deepsad_loss(dist, y[idx], cfg.anomaly_only, normal_weight=cfg.normal_weight)

    opt = _optimizer(model.parameters(), "adam", cfg.lr, cfg.weight_decay, keras=False)
    history["train"] = run_stage(Stage("deepsad", model, opt, cfg.epochs, batches, loss), rng, progress)
    return TrainedHead(cfg, model, history, center=c)


@torch.no_grad()
def deepsad_center(model: DeepSADNet, X: torch.Tensor, how: str = "eval") -> torch.Tensor:
    """Deep SAD's centre c: the mean output over the training rows ``X``, in eval mode (BN's
    running statistics) or with the batch statistics of ``X`` (running statistics untouched);
    entries with |c| < 0.1 become ±0.1 (Deep SAD's rule against trivial solutions)."""
    if choose("center", how, CENTERS) == "batch":
        probe = copy.deepcopy(model).train()
        c = probe(X).mean(dim=0)
    else:
        model.eval()
        c = model(X).mean(dim=0)
    c[(c.abs() < 0.1) & (c < 0)] = -0.1
    c[(c.abs() < 0.1) & (c > 0)] = 0.1
    return c


def _train_devnet(split, cfg, X, y, rng, progress) -> TrainedHead:
    """DevNet: 20 half-labelled batches of 64 per epoch, RMSprop, L2 on the hidden kernel, best-loss epoch."""
    model = DevNetNet(X.shape[1], cfg.norm, keras=cfg.keras)

    def loss(idx: np.ndarray) -> torch.Tensor:
        base = devnet_loss(model(X[idx]), y[idx], cfg.anomaly_only, cfg.margin, cfg.loss_form, cfg.normal_weight)
        return base + cfg.l2 * (model.fc.weight ** 2).sum()

    opt = _optimizer(model.parameters(), "rmsprop", cfg.lr, cfg.weight_decay, cfg.keras)
    stage = Stage("devnet", model, opt, cfg.epochs, lambda r: _half_batches(split, cfg, cfg.steps_per_epoch, r),
                  loss, cfg.select_best_loss)
    return TrainedHead(cfg, model, {"train": run_stage(stage, rng, progress)})


def _train_feawad(split, cfg, X, y, seed, progress, cache) -> TrainedHead:
    """FEAWAD: AE pre-training on unlabelled batches (MSE), then the joint scorer with FEAWAD's loss.

    The two stages draw batches from their own streams (``[seed, 1]``, ``[seed, 2]``), so a cached
    pre-training gives the same run as a fresh one.
    """
    model = FEAWADNet(X.shape[1], cfg.norm, keras=cfg.keras)
    ae = nn.ModuleDict({"encoder": model.encoder, "decoder": model.decoder})

    def ae_batches(r: np.random.Generator) -> Iterator[np.ndarray]:
        for _ in range(cfg.steps_per_epoch):
            yield _draw(np.random.default_rng(0) if cfg.fixed_batches else r, split.unlabeled, cfg.batch_size)

    def ae_loss(idx: np.ndarray) -> torch.Tensor:
        return ((model.reconstruct(X[idx]) - X[idx]) ** 2).mean()

    history: dict[str, list[float]] = {}
    if cfg.pretrain_epochs:
        file = _pretrain_file(cache, split, cfg, seed) if cache is not None else None
        if file is not None and file.is_file():
            state = torch.load(file, weights_only=True)
            ae.load_state_dict(state["ae"])
            history["pretrain"] = list(state["history"])
        else:
            ae_opt = _optimizer(ae.parameters(), "adam", cfg.lr, 0.0, cfg.keras)
            history["pretrain"] = run_stage(Stage("feawad-ae", ae, ae_opt, cfg.pretrain_epochs, ae_batches, ae_loss,
                                                  cfg.select_best_loss), np.random.default_rng([seed, 1]), progress)
            if file is not None:
                save_checkpoint(file, {"ae": ae.state_dict(), "history": history["pretrain"]})

    def loss(idx: np.ndarray) -> torch.Tensor:
        score, residual = model(X[idx])
        return feawad_loss(score, residual, y[idx], cfg.anomaly_only, cfg.margin, form=cfg.loss_form,
                           normal_weight=cfg.normal_weight)

    opt = _optimizer(model.parameters(), "adam", cfg.lr, cfg.weight_decay, cfg.keras)
    stage = Stage("feawad", model, opt, cfg.epochs, lambda r: _half_batches(split, cfg, cfg.steps_per_epoch, r),
                  loss, cfg.select_best_loss)
    history["train"] = run_stage(stage, np.random.default_rng([seed, 2]), progress)
    return TrainedHead(cfg, model, history)


def _pretrain_file(cache: Path, split: TabularSplit, cfg: SSADConfig, seed: int) -> Path:
    """Cache file of FEAWAD's AE pre-training: a hash of the training data, seed and AE settings."""
    digest = hashlib.sha1()
    for part in (split.X_train, split.y_train):
        digest.update(np.ascontiguousarray(part).tobytes())
    digest.update(repr((seed, cfg.pretrain_epochs, cfg.steps_per_epoch, cfg.batch_size, cfg.lr, cfg.keras,
                        cfg.fixed_batches, cfg.select_best_loss)).encode())
    return Path(cache) / f"{digest.hexdigest()[:20]}.pt"


def prenet_pairs(split: TabularSplit, cfg: SSADConfig, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One epoch of PReNet batches (appendix B.4): index pairs ``(left, right)`` of training rows,
    ¼ (labelled anomaly, labelled anomaly), ¼ (labelled anomaly, unlabelled), ½ (unlabelled,
    unlabelled), drawn with replacement. With ``distinct_anomaly_pairs`` (the paper: "two different
    abnormal instances") an anomaly–anomaly pair never repeats an anomaly when two or more are
    labelled; without it (the code) both are drawn independently."""
    labeled, unlabeled = split.labeled, split.unlabeled
    n_aa = n_au = cfg.batch_size // 4
    n_uu = cfg.batch_size - n_aa - n_au
    for _ in range(cfg.steps_per_epoch):
        a1 = _draw(rng, labeled, n_aa)
        a2 = _draw(rng, labeled, n_au)
        u1, u2 = _draw(rng, unlabeled, n_uu), _draw(rng, unlabeled, n_uu)
        partner = _other(rng, a1, labeled) if cfg.distinct_anomaly_pairs else _draw(rng, labeled, n_aa)
        yield np.concatenate([a1, a2, u1]), np.concatenate([partner, _draw(rng, unlabeled, n_au), u2])


def _other(rng: np.random.Generator, first: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """A second index from sorted ``pool`` that differs from ``first`` (when the pool has two or more)."""
    if len(pool) < 2:
        return first
    pos = np.searchsorted(pool, first)
    return pool[(pos + rng.integers(1, len(pool), len(first))) % len(pool)]


def _train_prenet(split, cfg, X, y, rng, progress) -> TrainedHead:
    """PReNet: batches of :func:`prenet_pairs` with targets 8 (a,a), 4 (a,u), 0 (u,u), RMSprop +
    cosine LR per epoch (``T_max`` = the run's epochs, down to 1e-5)."""
    model = PReNetNet(X.shape[1], cfg.norm)
    labeled, unlabeled = split.labeled, split.unlabeled
    n_aa = n_au = cfg.batch_size // 4
    targets = torch.cat([torch.full((n_aa,), 8.0), torch.full((n_au,), 4.0),
                         torch.zeros(cfg.batch_size - n_aa - n_au)])

    def batches(r: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return prenet_pairs(split, cfg, r)

    def loss(pair: tuple[np.ndarray, np.ndarray]) -> torch.Tensor:
        left, right = pair
        return prenet_loss(model(X[left], X[right]), targets, cfg.anomaly_only, cfg.normal_weight)

    opt = _optimizer(model.parameters(), "rmsprop", cfg.lr, cfg.weight_decay, keras=False)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.epochs, 1), eta_min=1e-5)
    stage = Stage("prenet", model, opt, cfg.epochs, batches, loss, epoch_end=sched.step)
    history = {"train": run_stage(stage, rng, progress)}
    if cfg.score_refs == "shared":
        refs = (X[_draw(rng, labeled, cfg.n_score_refs)].unsqueeze(1),
                X[_draw(rng, unlabeled, cfg.n_score_refs)].unsqueeze(1))
    else:
        refs = (X[torch.as_tensor(labeled)], X[torch.as_tensor(unlabeled)])
    return TrainedHead(cfg, model, history, references=refs, score_seed=int(rng.integers(2**31)))
