"""The four heads' networks (Deep SAD, DevNet, FEAWAD, PReNet) and where AnoOnly puts its batch
normalisation (§3.3, Fig. 3)."""

from __future__ import annotations

import math

import torch
from torch import nn

from osad_lib.validate import choose
from osad_lib.methods.anoonly.config import NORMS



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
