"""The scoring heads of AHL's unified model g on frozen features, and the scorer that runs them.

AHL trains a *unified* anomaly scorer ``g`` on the frozen feature maps of an already trained OSAD
base model (DevNet or DRA; features from :mod:`osad_lib.components.features`). ``g`` has the base model's
scoring heads (``docs/official_code/ahl.md`` "Heads of g"; "Where the code departs from the paper",
item 1: only the heads are trained).

:class:`FeatureScorer` applies the heads with fast (adapted) weights and carries the base
model's loss; :func:`build_scorer` makes one, fresh or from a trained base model's heads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from osad_lib.losses.deviation import deviation_loss
from osad_lib.methods import dra as dra_method
from osad_lib.components.heads import TopKMILHead, average_scales
from osad_lib.validate import ConfigError, choose
from osad_lib.methods.ahl.config import BASES, HEAD_STYLES, NORMAL


# ============================================================================ heads on frozen features
class DevNetFeatureHead(nn.Module):
    """DevNet's scoring on frozen features: one top-K MIL head shared by the pyramid
    scales, scores averaged over scales → ``[B]`` (``docs/official_code/devnet.md``
    "Model and training"; ``docs/official_code/ahl.md`` "Heads of g")."""

    def __init__(self, channels: int, topk_ratio: float = 0.1):
        super().__init__()
        self.head = TopKMILHead(channels, topk_ratio)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        return average_scales([self.head(f) for f in features])


class CodeHolisticHead(dra_method.HolisticHead):
    """The AHL code's holistic head: DRA's, without the final |·| (``docs/official_code/ahl.md``
    "Heads of g" and "Where the code departs from the paper" item 7)."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(features.mean(dim=(2, 3)))[:, 0]


class CodeCompositeHead(nn.Module):
    """The AHL code's composite head: residual → Conv3×3 with stride 3 → per-channel affine
    γ·x + β (batch norm with fixed statistics 0/1) → ReLU → top-K MIL (``docs/official_code/ahl.md``
    "Heads of g" and "Where the code departs from the paper" item 7). 25× cheaper than DRA's on a
    5×5 map.

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
        residual = dra_method.latent_residual(features, reference_features)
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
    """DRA's four heads on frozen per-scale features → ``{head: scores [B]}``
    (``docs/official_code/dra.md`` "Model"; ``docs/official_code/ahl.md`` "Heads of g").

    ``style="base"``: the same head classes as :class:`osad_lib.methods.dra.networks.DRA` (paper: g has
    exactly the base model's architecture); ``style="code"``: the AHL code's holistic and
    composite heads (:class:`CodeHolisticHead`, :class:`CodeCompositeHead`). Applied to
    pre-computed feature maps instead of backbone outputs: with ``labels`` every head scores
    only the samples routed to it (:data:`osad_lib.methods.dra.config.ROUTES`); per-scale scores are
    averaged. ``references`` holds the reference feature maps of each scale.
    """

    def __init__(self, channels: int, heads: Sequence[str] = dra_method.HEADS, topk_ratio: float = 0.1,
                 style: str = "base", composite_channels: int = 0, faithful: bool = False):
        super().__init__()
        self.head_names = dra_method.validate_heads(heads)
        code = choose("head style", style, HEAD_STYLES) == "code"
        builders = {
            "holistic": lambda: (CodeHolisticHead if code else dra_method.HolisticHead)(channels),
            "seen": lambda: TopKMILHead(channels, topk_ratio),
            "pseudo": lambda: TopKMILHead(channels, topk_ratio),
            "composite": lambda: (CodeCompositeHead(channels, topk_ratio, faithful) if code
                                  else dra_method.CompositeHead(channels, topk_ratio, composite_channels)),
        }
        self.heads = nn.ModuleDict({name: builders[name]() for name in self.head_names})

    def forward(self, features: Sequence[torch.Tensor], references: Sequence[torch.Tensor],
                labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out: dict[str, list[torch.Tensor]] = {h: [] for h in self.head_names}
        for feats, refs in zip(features, references, strict=True):
            for head in self.head_names:
                routed = feats if labels is None else feats[dra_method.ROUTES[head](labels)]
                out[head].append(self.heads[head](routed, refs) if head == "composite" else self.heads[head](routed))
        return {head: average_scales(scores) for head, scores in out.items()}


Params = dict[str, torch.Tensor]


class FeatureScorer:
    """A scoring module on frozen features with its base model's training loss, usable with
    fast weights: ``loss(params, features, labels)`` and ``score(params, features)`` run the
    module through :func:`torch.func.functional_call` with ``params`` (None = its own).

    DevNet (``docs/official_code/devnet.md`` "Model and training",
    ``docs/official_code/ahl.md`` "Heads of g"): deviation loss with every anomaly
    (labelled or pseudo) as target 1. DRA (``docs/official_code/dra.md`` "Model"): the
    sum of the four heads' deviation losses on their routed samples; score −holistic +
    seen + pseudo + composite, with fixed ``references`` (per-scale feature maps of
    ``n_ref`` training normals chosen by the seed, DRA's clean mode).
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
        total, _ = dra_method.dra_loss(self._call(params, features, labels), labels, deviation_loss)
        return total

    @torch.no_grad()
    def score(self, params: Params | None, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Anomaly scores ``[B]`` (eval mode, no gradient)."""
        self.module.eval()
        out = self._call(params, features, None)
        return out.float() if self.base == "devnet" else dra_method.anomaly_score(out)


def build_scorer(base: str, channels: int, references: Sequence[torch.Tensor] | None = None,
                 topk_ratio: float = 0.1, base_state: Mapping[str, torch.Tensor] | None = None,
                 head_style: str = "base", composite_channels: int = 0, faithful: bool = False) -> FeatureScorer:
    """A feature-scoring module for ``base``: fresh, or with the heads of a trained base model.

    ``base_state`` is the base model's ``state_dict()`` (:class:`~osad_lib.methods.devnet.model.DevNet`
    keeps its head under ``head.``, :class:`~osad_lib.methods.dra.networks.DRA` under ``heads.<name>.``,
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


def score_in_chunks(scorer: FeatureScorer, params: Params | None, features: Sequence[torch.Tensor],
                    chunk: int = 256) -> torch.Tensor:
    """Scores of every row of per-scale ``features`` (float16 allowed), ``chunk`` rows at a time."""
    n = features[0].shape[0]
    out = [scorer.score(params, [f[i:i + chunk].float() for f in features]) for i in range(0, n, chunk)]
    return torch.cat(out) if out else torch.zeros(0)


def reference_features(bank: Any) -> list[torch.Tensor] | None:
    """The DRA composite head's reference feature maps of a bank (None when it has none)."""
    refs = getattr(bank, "references", None)
    return [r.float() for r in refs] if refs else None
