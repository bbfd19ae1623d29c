"""AnoOnly's four semi-supervised heads on embeddings, and the one loop that trains them.

AnoOnly (Zhou et al., §4.3, appendix B) trains anomaly-detection *heads* on frozen ADBench
embeddings: Deep SAD, DevNet, FEAWAD and PReNet, each with and without AnoOnly. AnoOnly drops
the normal loss (:mod:`osad_lib.methods.anoonly.losses`) and puts a batch normalisation before the final
layer where the head has none (§3.3, Fig. 3). Where BN goes, per head (the official code's
layout, ``docs/official_code/anoonly.md``):

=========  ====================================================  ===============================
head       network                                               AnoOnly BN
=========  ====================================================  ===============================
deepsad    x→100→20 (Linear no bias, BN(eps 1e-4), LeakyReLU)     none added: BN is already in
           → Linear 20→10 (no bias)                               every hidden block
devnet     Dense 20 (ReLU, L2 0.01) → Dense 1                     after the hidden layer, before
                                                                 the scoring layer
feawad     AE d→d→128→64→128→d; scorer [r/‖r‖, code, ‖r‖] →       before the scoring layer (the
           256 → ⊕‖r‖ → 32 → ⊕‖r‖ → Dense 1                        code adds it to the base too:
                                                                 ``base_bn=True``)
prenet     shared Linear d→20 + ReLU per side; Linear 40→1        after the ReLU of the shared
           on the concatenated pair                              feature layer
=========  ====================================================  ===============================

Defaults are the paper's method (appendix B); where the official code does otherwise, its
behaviour is an option of :class:`SSADConfig` (:data:`CODE_BEHAVIOUR` lists the code's values):
DevNet's loss (``loss_form``), PReNet's 50 epochs (paper: 30) and anomaly pairs
that may repeat an anomaly (paper: "two different abnormal instances"), FEAWAD's BN in the base
head and its repeated batch, Deep SAD's effective learning rate 1e-4 (paper: 1e-3) and its BN
without affine parameters (paper Table 2: the affine BN is Deep SAD's default). Where the paper is
silent the code's behaviour is the default: PReNet's cosine learning rate (over the run's epochs)
and its scoring against fresh references per test row, Deep SAD without pre-training and with its
centre from the untrained network in eval mode (``pretrain_epochs``, ``center`` are options), the
Keras numbers of the heads from Keras code (DevNet, FEAWAD; ``keras=True``: Glorot
initialisation, RMSprop/Adam with ρ = 0.9 / ε = 1e-7, BN momentum 0.99 and ε = 1e-3, and the
weights of the epoch with the lowest *training* loss, the code's ModelCheckpoint). The PyTorch
heads (Deep SAD, PReNet) keep PyTorch's defaults and the last epoch.

One default departs from the paper's text because the text does not define a detector
(:data:`DEFAULT_NOT_PAPER`, named in every row's ``deviations``): FEAWAD's Eq. 20/21 push
anomalies to ``|s| ≥ 5`` while the score is ``s`` itself, so without the normal term (AnoOnly)
the sign an anomaly lands on is arbitrary and the ranking can invert; the default is the
one-sided ``max(0, 5 − s)`` of the code (and of FEAWAD's own deviation loss), ``loss_form="paper"``
the text.

The ablations of the paper are options of :class:`SSADConfig`: ``norm`` (Table 2: ``none``,
``ln``, ``bn_no_affine`` = BN*, ``bn``, ``bn_dagger`` = no BN + the explicit L_BN of Eq. (5)),
``normal_weight`` (λ_n, Fig. 7), ``batch_size`` (Fig. 9); the data options (γ_la, γ_n, label
noise) live in :func:`osad_lib.data.tabular.adbench_split`.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from osad_lib import limits
from osad_lib.data.tabular import TabularSplit
from osad_lib.methods.anoonly.losses import (
    LOSS_FORMS, bn_cluster_loss, deepsad_loss, devnet_loss, feawad_loss, prenet_loss,
)
from osad_lib.seeding import seed_everything
from osad_lib.errors import NonFiniteLossError
from osad_lib.training import save_checkpoint
from osad_lib.validate import ConfigError, choose

HEADS = ("deepsad", "devnet", "feawad", "prenet")
#: Normalisation variants (AnoOnly Table 2); ``auto`` = the head's own choice (module docstring).
NORMS = ("auto", "none", "ln", "bn_no_affine", "bn", "bn_dagger")

#: The paper's settings per head (appendix B); where the paper is silent, the official code's.
HEAD_DEFAULTS: dict[str, dict[str, Any]] = {
    # Adam 1e-3 (paper B.1); the code's MultiStepLR(milestones=[0]) makes it 1e-4 from step 1
    # (CODE_BEHAVIOUR). No AE pre-training (code; the paper does not mention one).
    "deepsad": dict(epochs=50, steps_per_epoch=None, batch_size=128, lr=1e-3, weight_decay=1e-6,
                    optimizer="adam", select_best_loss=False, pretrain_epochs=0),
    # RMSprop 2e-4, 50 epochs × 20 batches of 64 (32 unlabelled + 32 labelled), L2 0.01 on the hidden layer.
    "devnet": dict(loss_form="paper", epochs=50, steps_per_epoch=20, batch_size=64, lr=2e-4, weight_decay=0.0,
                   optimizer="rmsprop", select_best_loss=True, l2=0.01),
    # Adam 1e-4, 30 epochs × 20 batches of 512 (half labelled); AE: 100 epochs × 20 batches of 512
    # unlabelled; the one-sided loss (DEFAULT_NOT_PAPER).
    "feawad": dict(loss_form="code", epochs=30, steps_per_epoch=20, batch_size=512, lr=1e-4, weight_decay=0.0,
                   optimizer="adam", select_best_loss=True, pretrain_epochs=100),
    # RMSprop 1e-3, wd 1e-2, 30 epochs (paper B.4; code: 50) × 20 batches of 512 pairs, cosine LR
    # over the epochs (code; the paper names no schedule).
    "prenet": dict(epochs=30, steps_per_epoch=20, batch_size=512, lr=1e-3, weight_decay=1e-2,
                   optimizer="rmsprop", select_best_loss=False),
}

#: What the official code does where the paper's method is the default: SSADConfig overrides per
#: head (``docs/official_code/anoonly.md``). Deep SAD: learning rate 1e-4 from the first step
#: (MultiStepLR with a milestone at 0) and BN without affine parameters; DevNet: |5 − s| and, under
#: AnoOnly, the linear 5 − s; FEAWAD: max(0, 5 − s), BN in the base head, one batch repeated;
#: PReNet: 50 epochs, anomaly–anomaly pairs that may pair an anomaly with itself.
CODE_BEHAVIOUR: dict[str, dict[str, Any]] = {
    "deepsad": {"lr": 1e-4, "norm": "bn_no_affine"},
    "devnet": {"loss_form": "code"},
    "feawad": {"base_bn": True, "fixed_batches": True},
    "prenet": {"epochs": 50, "distinct_anomaly_pairs": False},
}
#: (head, field) → (the paper text's value, why the default differs): defaults that depart from
#: the paper's text (module docstring); :func:`osad_lib.experiments.anoonly.paper_deviations`
#: names them in every row.
DEFAULT_NOT_PAPER: dict[tuple[str, str], tuple[Any, str]] = {
    ("feawad", "loss_form"): ("paper", "Eq. 20/21's max(0, 5 − |s|) leaves an anomaly's sign free while the score "
                                      "is s, so the code's one-sided max(0, 5 − s)"),
}
#: PReNet scoring references: fresh per test row (code) or one set shared by every row.
SCORE_REFS = ("per_row", "shared")
#: Deep SAD centre c: the network's mean output over the training rows in eval mode before
#: training (code; BN uses its running statistics, initial or from pre-training) or with the
#: batch statistics of the training rows (as BN normalises during training).
CENTERS = ("eval", "batch")


@dataclass(frozen=True)
class SSADConfig:
    """One head's settings; ``None`` fields take :data:`HEAD_DEFAULTS` (see :meth:`resolved`).

    Defaults are the paper's method; :data:`CODE_BEHAVIOUR` names the official code's values.
    ``anomaly_only``: AnoOnly on/off. ``norm``: see :data:`NORMS` (``auto``: Deep SAD's affine
    BN, the paper's Table 2 default; AnoOnly's BN for the other heads). ``base_bn``: give the base
    head (``anomaly_only=False``) AnoOnly's BN too — FEAWAD's official code does this
    unconditionally; the paper adds BN only with AnoOnly (default). ``normal_weight``: λ_n.
    ``loss_form``: ``paper`` (Eqs. 18–21: DevNet's hinge, FEAWAD's max(0, a − |s|)) | ``code``;
    default per head (:data:`HEAD_DEFAULTS`: DevNet ``paper``, FEAWAD ``code``, see
    :data:`DEFAULT_NOT_PAPER`).
    ``keras``: Keras optimiser/BN/initialiser numbers for DevNet and FEAWAD. ``fixed_batches``:
    FEAWAD's generator quirk — the code re-seeds its batch generator on every call, so every
    batch is the same (default off: the paper resamples batches). ``balanced``: DevNet/FEAWAD
    half-labelled batches (off: batches drawn uniformly from the training set).
    ``pretrain_epochs``: FEAWAD's AE pre-training (100, code) and Deep SAD's (0 = none, the
    code; Deep SAD's own paper pre-trains an autoencoder). ``center``: Deep SAD's centre
    (:data:`CENTERS`). ``n_score_refs``: PReNet's 30 + 30 scoring references, drawn per test row
    or shared (``score_refs``, :data:`SCORE_REFS`). ``distinct_anomaly_pairs``: PReNet's
    anomaly–anomaly pairs hold two different anomalies (paper) or may repeat one (code).
    """

    head: str
    anomaly_only: bool = False
    norm: str = "auto"
    base_bn: bool = False
    normal_weight: float = 1.0
    loss_form: str | None = None
    epochs: int | None = None
    steps_per_epoch: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    l2: float | None = None
    select_best_loss: bool | None = None
    keras: bool = True
    fixed_batches: bool = False
    balanced: bool = True
    pretrain_epochs: int | None = None
    n_score_refs: int = 30
    score_refs: str = "per_row"
    distinct_anomaly_pairs: bool = True
    center: str = "eval"
    margin: float = 5.0

    def __post_init__(self) -> None:
        choose("head", self.head, HEADS)
        choose("norm", self.norm, NORMS)
        if self.loss_form is not None:
            choose("loss_form", self.loss_form, LOSS_FORMS)
        choose("score_refs", self.score_refs, SCORE_REFS)
        choose("center", self.center, CENTERS)
        if self.normal_weight < 0:
            raise ConfigError(f"normal_weight (λ_n) must be ≥ 0, got {self.normal_weight}")

    def resolved(self) -> SSADConfig:
        """A copy with every ``None`` replaced by the head default and ``norm`` made explicit."""
        return _resolved(self)


@functools.lru_cache(maxsize=4096)
def _resolved(config: SSADConfig) -> SSADConfig:
    """:meth:`SSADConfig.resolved`, once per distinct config (a paper grid lists ~10^5 items)."""
    defaults = HEAD_DEFAULTS[config.head]
    filled = {f.name: defaults.get(f.name) for f in fields(config)
              if getattr(config, f.name) is None and f.name in defaults}
    out = replace(config, **filled)
    return replace(out, norm=default_norm(out) if out.norm == "auto" else out.norm)


def default_norm(cfg: SSADConfig) -> str:
    """The normalisation a head uses when ``norm="auto"``: Deep SAD's affine BN (the paper's Table 2
    default; the code's is without affine parameters), AnoOnly's BN for the other heads."""
    if cfg.head == "deepsad":
        return "bn"
    return "bn" if (cfg.anomaly_only or cfg.base_bn) else "none"


# --------------------------------------------------------------------------- layers
class Norm(nn.Module):
    """The normalisation slot of a head: one of :data:`NORMS` (resolved).

    ``bn_dagger`` normalises nothing and keeps every training input in ``inputs`` so that the
    loop can add L_BN (Eq. (5)) on each (PReNet calls its feature layer twice per batch). A training batch of one sample
    (paper Fig. 9, batch size 1) gives BN's shift β (the normalised value is 0) and leaves the
    running statistics alone; torch's BatchNorm1d would raise.
    """

    def __init__(self, kind: str, dim: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.kind = choose("norm", kind, NORMS[1:])
        if kind == "ln":
            self.layer: nn.Module = nn.LayerNorm(dim, eps=eps)
        elif kind in ("bn", "bn_no_affine"):
            self.layer = nn.BatchNorm1d(dim, eps=eps, momentum=momentum, affine=kind == "bn")
        else:
            self.layer = nn.Identity()
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "bn_dagger" and self.training:
            self.inputs.append(x)
        if self.training and x.shape[0] == 1 and isinstance(self.layer, nn.BatchNorm1d):
            # a batch of one normalises to 0 (Keras computes this; torch refuses): output the shift β
            shift = self.layer.bias if self.layer.affine else torch.zeros(x.shape[1], dtype=x.dtype)
            return shift.expand_as(x) + 0.0 * x
        return self.layer(x)


def keras_dense(in_dim: int, out_dim: int, init: str = "glorot_uniform", bias: bool = True) -> nn.Linear:
    """``nn.Linear`` initialised as Keras' Dense: Glorot uniform/normal(truncated) weights, zero bias."""
    layer = nn.Linear(in_dim, out_dim, bias=bias)
    if init == "glorot_uniform":
        nn.init.xavier_uniform_(layer.weight)
    else:
        std = math.sqrt(2.0 / (in_dim + out_dim)) / 0.87962566103423978
        nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


def _bn_numbers(keras: bool) -> dict[str, float]:
    """BN ε and momentum: Keras (ε 1e-3, moving average 0.99 → torch momentum 0.01) or torch's."""
    return {"eps": 1e-3, "momentum": 0.01} if keras else {"eps": 1e-5, "momentum": 0.1}


# --------------------------------------------------------------------------- networks
class DeepSADNet(nn.Module):
    """Deep SAD's MLP (appendix B.1): ``[Linear(no bias) → Norm → LeakyReLU] × 2 → Linear(no bias)``.

    :meth:`decoder` builds the mirrored decoder of Deep SAD's autoencoder pre-training (Ruff et
    al.'s Deep SAD; not in AnoOnly's code or text): ``Linear(no bias) → Norm → LeakyReLU`` back
    through the hidden sizes, then ``Linear → sigmoid`` (the inputs are min-max scaled to [0, 1]).
    """

    def __init__(self, in_dim: int, norm: str, hidden: tuple[int, ...] = (100, 20), rep_dim: int = 10):
        super().__init__()
        self.dims = (in_dim, *hidden, rep_dim)
        self.norm_kind = norm
        dims = (in_dim, *hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(a, b, bias=False), Norm(norm, b, eps=1e-4), nn.LeakyReLU(0.01))
            for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Linear(hidden[-1], rep_dim, bias=False)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(x))

    def decoder(self) -> nn.Module:
        """A fresh decoder from the representation back to the input (for pre-training)."""
        back = self.dims[::-1]
        layers: list[nn.Module] = []
        for a, b in zip(back[:-2], back[1:-1]):
            layers += [nn.Linear(a, b, bias=False), Norm(self.norm_kind, b, eps=1e-4), nn.LeakyReLU(0.01)]
        return nn.Sequential(*layers, nn.Linear(back[-2], back[-1]), nn.Sigmoid())


class DevNetNet(nn.Module):
    """Tabular DevNet, depth 2 (appendix B.2): ``Dense 20 → ReLU → Norm → Dense 1`` (Norm = identity for the base)."""

    def __init__(self, in_dim: int, norm: str, keras: bool = True, hidden_units: int = 20):
        super().__init__()
        init = "glorot_uniform" if keras else "torch"
        self.fc = keras_dense(in_dim, hidden_units, init) if keras else nn.Linear(in_dim, hidden_units)
        self.norm = Norm(norm, hidden_units, **_bn_numbers(keras))
        self.score_layer = keras_dense(hidden_units, 1, init) if keras else nn.Linear(hidden_units, 1)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(torch.relu(self.fc(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score_layer(self.hidden(x)).squeeze(1)


class FEAWADNet(nn.Module):
    """FEAWAD (appendix B.3): an autoencoder whose residual feeds a scoring MLP.

    ``forward`` returns ``(score, ‖r‖)`` with ``r = x − AE(x)``; the scorer sees
    ``[r/‖r‖, code(64), ‖r‖] → Dense 256 → ⊕‖r‖ → Dense 32 → ⊕‖r‖ → Norm → Dense 1`` (ReLU
    after the hidden Dense layers; Glorot-normal initialisation).
    """

    def __init__(self, in_dim: int, norm: str, keras: bool = True):
        super().__init__()
        init = "glorot_normal"

        def dense(a: int, b: int) -> nn.Linear:
            return keras_dense(a, b, init) if keras else nn.Linear(a, b)

        self.encoder = nn.Sequential(dense(in_dim, in_dim), nn.ReLU(), dense(in_dim, 128), nn.ReLU(),
                                     dense(128, 64), nn.ReLU())
        self.decoder = nn.Sequential(dense(64, 128), nn.ReLU(), dense(128, in_dim), nn.ReLU())
        self.hidden1 = dense(in_dim + 64 + 1, 256)
        self.hidden2 = dense(256 + 1, 32)
        self.norm = Norm(norm, 32 + 1, **_bn_numbers(keras))
        self.score_layer = dense(32 + 1, 1)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def hidden(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code = self.encoder(x)
        residual = x - self.decoder(code)
        norm = torch.linalg.vector_norm(residual, dim=1, keepdim=True).clamp_min(1e-12)
        h = torch.relu(self.hidden1(torch.cat([residual / norm, code, norm], dim=1)))
        h = torch.relu(self.hidden2(torch.cat([h, norm], dim=1)))
        return self.norm(torch.cat([h, norm], dim=1)), norm.squeeze(1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, norm = self.hidden(x)
        return self.score_layer(h).squeeze(1), norm


class PReNetNet(nn.Module):
    """PReNet (appendix B.4): shared ``Linear d→20 → ReLU → Norm`` per side, ``Linear 40 → 1`` on the pair."""

    def __init__(self, in_dim: int, norm: str, hidden_units: int = 20):
        super().__init__()
        self.feature = nn.Sequential(nn.Linear(in_dim, hidden_units), nn.ReLU(), Norm(norm, hidden_units))
        self.regressor = nn.Linear(2 * hidden_units, 1)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature(x)

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """f(x_left, x_right); each side is normalised with its own batch statistics (two feature calls)."""
        return self.regressor(torch.cat([self.feature(left), self.feature(right)], dim=1)).squeeze(1)


# --------------------------------------------------------------------------- the loop
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


__all__ = [
    "CENTERS", "CODE_BEHAVIOUR", "DEFAULT_NOT_PAPER", "HEADS", "HEAD_DEFAULTS", "NORMS", "SCORE_REFS", "DeepSADNet", "DevNetNet", "FEAWADNet",
    "Norm", "PReNetNet", "SSADConfig", "Stage", "TrainedHead", "deepsad_center", "default_norm", "keras_dense",
    "prenet_pairs", "run_stage", "train_head",
]
