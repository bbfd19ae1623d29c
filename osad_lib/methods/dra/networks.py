"""DRA's networks and loss: the holistic, seen, pseudo and composite heads on a shared backbone
(Eq. 2–9), the anomaly score and the summed per-head loss (Eq. 1)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from osad_lib.components.heads import TopKMILHead, average_scales, image_pyramid
from osad_lib.validate import ConfigError
from osad_lib.methods.dra.config import HEADS, ROUTES, SCORE_SIGNS, TARGETS, validate_heads



class HolisticHead(nn.Module):
    """Normality head (Eq. 9): GAP → Linear(C, 256) → ReLU → Linear(256, 1) → |·| → ``[B]``
    (``docs/official_code/dra.md`` "Model")."""

    def __init__(self, in_channels: int, hidden: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_channels, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(features.mean(dim=(2, 3)))[:, 0].abs()


def latent_residual(features: torch.Tensor, reference_features: torch.Tensor) -> torch.Tensor:
    """Residual feature maps (Eq. 6–7): mean over the references minus each query (the code's
    direction, item 2)."""
    return reference_features.mean(dim=0, keepdim=True) - features


class CompositeHead(nn.Module):
    """Latent-residual head (Eq. 8): residual → Conv3×3 → BN → ReLU → top-K MIL → ``[B]``
    (``docs/official_code/dra.md`` "Model").

    ``channels`` > 0 (not in the paper): a learned 1×1 projection of the backbone's features to
    that many channels first (linear, so projecting the residual or the features is the same).
    """

    def __init__(self, in_channels: int, topk_ratio: float = 0.1, channels: int = 0):
        super().__init__()
        width = channels or in_channels
        self.project = nn.Conv2d(in_channels, width, kernel_size=1, bias=False) if channels else nn.Identity()
        self.transform = nn.Sequential(
            nn.Conv2d(width, width, kernel_size=3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        self.scorer = TopKMILHead(width, topk_ratio)

    def forward(self, features: torch.Tensor, reference_features: torch.Tensor) -> torch.Tensor:
        residual = latent_residual(self.project(features), self.project(reference_features))
        return self.scorer(self.transform(residual))


class DRA(nn.Module):
    """The DRA network: a backbone, the active heads of ``heads`` and a ``n_scales`` pyramid.

    ``forward(images, references, labels)`` returns ``{head: scores}`` with scores averaged
    over scales. ``references`` (``[n_ref, 3, S, S]`` in [0, 1]) are needed by the composite
    head; as in the code they are concatenated in front of the batch and go through the
    backbone with it (so BN in training mode sees them). With ``labels`` (training) each head
    scores only its routed samples (:data:`ROUTES`, in batch order); without, every sample.

    The backbone is split into a *stem* (normalisation + the first ``frozen_stages`` stages,
    frozen and in eval mode; 0 = fine-tune everything, the paper) and a trainable *top*, as
    DevNet's (:class:`osad_lib.methods.devnet.model.DevNet`), so a frozen stem's outputs can be
    computed once and passed instead of images (a list with one tensor per pyramid scale).
    """

    def __init__(self, backbone: nn.Module, heads: Sequence[str] = HEADS, topk_ratio: float = 0.1,
                 n_scales: int = 2, frozen_stages: int = 0, composite_channels: int = 0):
        super().__init__()
        self.backbone = backbone
        self.head_names = validate_heads(heads)
        self.n_scales = int(n_scales)
        if not 0 <= frozen_stages <= len(backbone.stages):
            raise ConfigError(f"frozen_stages={frozen_stages} but the backbone has {len(backbone.stages)} stages; 0 fine-tunes all (paper)")
        self.frozen_stages = int(frozen_stages)
        for stage in backbone.stages[:frozen_stages]:
            stage.requires_grad_(False)
        channels = backbone.out_channels
        builders = {
            "holistic": lambda: HolisticHead(channels),
            "seen": lambda: TopKMILHead(channels, topk_ratio),
            "pseudo": lambda: TopKMILHead(channels, topk_ratio),
            "composite": lambda: CompositeHead(channels, topk_ratio, composite_channels),
        }
        self.heads = nn.ModuleDict({name: builders[name]() for name in self.head_names})

    @property
    def needs_references(self) -> bool:
        return "composite" in self.head_names

    def train(self, mode: bool = True) -> DRA:
        super().train(mode)
        for stage in self.backbone.stages[:self.frozen_stages]:
            stage.eval()
        return self

    def stem_pyramid(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Normalisation and the frozen stages on every pyramid scale of images in [0, 1]."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.frozen_stages == 0):
            out = []
            for x in image_pyramid(images, self.n_scales):
                x = self.backbone.normalize(x)
                for stage in self.backbone.stages[:self.frozen_stages]:
                    x = stage(x)
                out.append(x)
        return out

    def top(self, stem_out: torch.Tensor) -> torch.Tensor:
        """The trainable stages: the last feature map ``[B, C, h, w]``."""
        for stage in self.backbone.stages[self.frozen_stages:]:
            stem_out = stage(stem_out)
        return stem_out

    def as_stems(self, inputs: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per-scale stem outputs of ``inputs``: images ``[B, 3, S, S]`` in [0, 1] go through
        :meth:`stem_pyramid`; a list (one tensor per scale) is taken as stem outputs already."""
        return list(inputs) if isinstance(inputs, (list, tuple)) else self.stem_pyramid(inputs)

    def forward(self, inputs: torch.Tensor | Sequence[torch.Tensor],
                references: torch.Tensor | Sequence[torch.Tensor] | None = None,
                labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``inputs`` and ``references``: images in [0, 1] or their per-scale stem outputs."""
        if self.needs_references and (references is None or len(references) == 0):
            raise ConfigError("the composite head needs reference images; pass references=[n_ref, 3, S, S]")
        batch = self.as_stems(inputs)
        ref_stems = self.as_stems(references) if self.needs_references else [x[:0] for x in batch]
        n_ref = len(ref_stems[0])
        masks = {h: (ROUTES[h](labels) if labels is not None else None) for h in self.head_names}
        per_scale: dict[str, list[torch.Tensor]] = {h: [] for h in self.head_names}
        for ref_stem, stem in zip(ref_stems, batch):
            feats = self.top(torch.cat([ref_stem, stem]))
            ref_feats, feats = feats[:n_ref], feats[n_ref:]
            for head in self.head_names:
                routed = feats if masks[head] is None else feats[masks[head]]
                scores = self.heads[head](routed, ref_feats) if head == "composite" else self.heads[head](routed)
                per_scale[head].append(scores)
        return {head: average_scales(scores) for head, scores in per_scale.items()}


def anomaly_score(head_scores: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The final score −holistic + seen + pseudo + composite over the heads present
    (``docs/official_code/dra.md`` "Evaluation")."""
    if not head_scores:
        raise ConfigError("no head scores to combine; the model has no heads")
    return sum(SCORE_SIGNS[h] * s.float() for h, s in head_scores.items())


def head_targets(labels: torch.Tensor, heads: Sequence[str]) -> dict[str, torch.Tensor]:
    """Each head's 0/1 targets on its routed samples, in batch order
    (``docs/official_code/dra.md`` "Model")."""
    return {h: TARGETS[h](labels[ROUTES[h](labels)]).float() for h in heads}


def dra_loss(head_scores: Mapping[str, torch.Tensor], labels: torch.Tensor,
             loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum over heads of ``loss_fn(scores, targets)``: an unweighted sum of batch means, as the
    code (``docs/official_code/dra.md`` "Model").

    Returns the total and each head's value (for logging). A head with no routed sample in
    the batch contributes nothing.
    """
    targets = head_targets(labels, list(head_scores))
    parts = {h: loss_fn(s, targets[h]) for h, s in head_scores.items() if len(s)}
    total = sum(parts.values()) if parts else torch.zeros((), device=labels.device)
    return total, {h: float(v.detach()) for h, v in parts.items()}
