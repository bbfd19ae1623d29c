"""The backbone's feature maps of a dataset, computed once and shared by its seeds and methods,
and the labelled anomalies' entries (each 5× as itself and 5× RandAugment-CutPasted)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch

from osad_lib.data.mvtec import read_mvtec_layout
from osad_lib.data.pseudo import foreground_mask, randaug_cutpaste
from osad_lib.data.tensors import ImageSet, load_images
from osad_lib.components.features import cached_dataset_features, dataset_key
from osad_lib.components.backbones import Backbone, build_backbone
from osad_lib.methods.bgad.model import (
    BGADConfig, FeatureBank, downsample_masks, extract_levels,
)
from osad_lib.seeding import torch_generator



@functools.lru_cache(maxsize=1)
def dataset_features(root: str, image_size: int, backbone: str, weights: str, device: str,
                      batch_size: int) -> tuple[ImageSet, FeatureBank, dict[str, int], Backbone]:
    """Every image of the dataset at ``root``, its frozen features, a path → row index and the backbone.

    The features are computed once per dataset, backbone, weights and image size and kept on
    disk (:func:`osad_lib.components.features.cached_dataset_features`), so every seed, method, ablation
    and later run reuses them; in memory only the last dataset is kept.
    """
    samples = read_mvtec_layout(root)
    images = load_images(root, samples, image_size)
    net = build_backbone(backbone, weights).freeze()

    def compute() -> dict[str, list[torch.Tensor]]:
        return {"levels": extract_levels(net, images.images, batch_size, device)}

    if weights == "random":  # a random backbone depends on the seed's RNG state: nothing to share
        levels = compute()["levels"]
    else:
        key = dataset_key(Path(root), "bgad_levels", image_size, backbone, weights)
        levels = cached_dataset_features("bgad_levels", key, compute)["levels"]
    bank = FeatureBank(levels, downsample_masks(None, len(images), [tuple(x.shape[-2:]) for x in levels]))
    return images, bank, {p: i for i, p in enumerate(images.paths)}, net


def _anomaly_masks(images: ImageSet, rows: list[int]) -> torch.Tensor:
    """Defect masks [N,1,S,S] of ``rows``; all ones where the dataset has no masks."""
    if images.masks is None:
        size = images.images.shape[-1]
        return torch.ones(len(rows), 1, size, size, dtype=torch.uint8)
    return images.masks[rows]


class AnomalyEntries:
    """The anomalous entries of one pass (the code): each labelled anomaly ``real_repeats`` times and
    ``racp_copies`` fresh RandAugmented CutPaste samples per anomaly (features computed per pass)."""

    def __init__(self, images: ImageSet, bank: FeatureBank, normal_rows: list[int], anomaly_rows: list[int],
                 net: Any, config: BGADConfig, device: str, seed: int) -> None:
        self.images, self.normal_rows, self.config, self.net, self.device = images, normal_rows, config, net, device
        self.anomalies = images.images[anomaly_rows].float() / 255
        self.masks = _anomaly_masks(images, anomaly_rows).float()
        sizes = [tuple(x.shape[-2:]) for x in bank.levels]
        real = FeatureBank([x[anomaly_rows] for x in bank.levels], downsample_masks(self.masks, len(anomaly_rows), sizes))
        self.real = FeatureBank.concat([real] * config.real_repeats).to(device)
        self.sizes = sizes
        self.generator = torch_generator(seed)

    def __call__(self) -> FeatureBank:
        if not self.config.racp or not self.config.racp_copies:
            return self.real
        images, masks = self.racp_samples()
        levels = extract_levels(self.net, images, self.config.feature_batch_size, self.device)
        copies = FeatureBank(levels, downsample_masks(masks, len(images), self.sizes)).to(self.device)
        return FeatureBank.concat([self.real, copies])

    def racp_samples(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``racp_copies`` samples per anomaly: its defect, RandAugmented, pasted into a random training normal."""
        out, out_masks = [], []
        g = self.generator
        for anomaly, mask in zip(self.anomalies, self.masks):
            for _ in range(self.config.racp_copies):
                row = self.normal_rows[int(torch.randint(len(self.normal_rows), (), generator=g))]
                normal = self.images.images[row].float() / 255
                fg = foreground_mask(normal) if self.config.foreground else None
                image, pasted = randaug_cutpaste(normal, g, anomalies=anomaly, anomaly_masks=mask, foreground=fg,
                                                 op_set=self.config.racp_ops)
                out.append(image)
                out_masks.append(pasted)
        return torch.stack(out), torch.stack(out_masks)
