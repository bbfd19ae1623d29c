"""DRA's training data (``docs/official_code/dra.md`` "Training pipeline"): balanced batches, pseudo
anomalies, rotations, reference images, and the cached frozen-stem pools."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from osad_lib.data.pseudo import apply_batch
from osad_lib.data.tensors import ImageSet
from osad_lib.components.stems import (
    DIHEDRAL_VIEWS, StemFeatures, random_angles, random_dihedral, random_rotation, rotate, to_float_images,
)
from osad_lib.components.stems import dihedral as dihedral_transform
from osad_lib.seeding import torch_generator
from osad_lib.training import BalancedBatchSampler
from osad_lib.validate import ConfigError, choose
from osad_lib.methods.dra.config import NORMAL, PSEUDO, SEEN, DRAConfig
from osad_lib.methods.dra.networks import DRA



class DRATrainingData:
    """The training side of DRA: batch sampler, pseudo anomalies and reference images.

    ``train`` is an ImageSet of the split's training images (uint8 ``[N, 3, S, S]``, labels
    0 = normal incl. contamination, 1 = labelled anomaly). ``outliers`` (an ImageSet of
    another dataset's normals, resized to S) is the pseudo-anomaly pool of
    ``pseudo_source="external"`` (outlier exposure, ``docs/official_code/dra.md``
    "Training pipeline").

    With ``stems`` (frozen-stem outputs of ``train``'s rows) and ``pseudo_stems`` (a pool of
    pseudo anomalies' stem outputs, :func:`pseudo_stem_pool`) batches and references are stem
    outputs instead of images (``config.cache_stems``): a pseudo slot takes a random pool row —
    as the code, whose pseudo anomaly is made from a *random* normal (``docs/official_code/dra.md``
    "Training pipeline") — and rotation rotates the feature maps.
    """

    def __init__(self, train: ImageSet, config: DRAConfig, seed: int, outliers: ImageSet | None = None,
                 stems: StemFeatures | None = None, pseudo_stems: StemFeatures | None = None):
        labels = np.asarray(train.labels)
        self.images = torch.as_tensor(train.images)
        self.config = config
        self.normal_idx = np.flatnonzero(labels == NORMAL)
        self.anomaly_idx = np.flatnonzero(labels == SEEN)
        if len(self.normal_idx) == 0 or len(self.anomaly_idx) == 0:
            raise ConfigError(f"DRA needs training normals and labelled anomalies; got {len(self.normal_idx)} "
                              f"normals and {len(self.anomaly_idx)} anomalies — check the split")
        if config.pseudo_source == "external" and (outliers is None or len(outliers.images) == 0):
            raise ConfigError("pseudo_source='external' needs an outlier image set (e.g. another dataset's normals); "
                              "pass outliers=ImageSet or choose cutmix/cp_scar/cp_mix")
        self.outliers = torch.as_tensor(outliers.images) if config.pseudo_source == "external" else None
        self.seed = int(seed)
        rng = np.random.default_rng(seed)
        n_fixed = min(config.n_ref, len(self.normal_idx))
        #: clean mode: ``n_ref`` un-augmented training normals, chosen once by the seed
        self.fixed_reference_idx = np.sort(rng.choice(self.normal_idx, n_fixed, replace=False))
        if (stems is None) != (pseudo_stems is None):
            raise ConfigError("pass both stems and pseudo_stems (cached training), or neither")
        if stems is not None and (len(stems) != len(train) or len(pseudo_stems) == 0):
            raise ConfigError(f"stems must have one row per training image ({len(train)}, got {len(stems)}) and "
                              "pseudo_stems at least one row")
        self.stems, self.pseudo_stems = stems, pseudo_stems

    def sampler(self) -> BalancedBatchSampler:
        """2B//3 normal slots then B − 2B//3 anomaly slots per batch (``docs/official_code/shared.md``
        "Balanced batch sampler", ``docs/official_code/dra.md`` "Training pipeline"). Cached
        training (``stems``) gives :attr:`DRAConfig.n_pseudo_slots` of the normal slots to the
        pseudo-anomaly pool, whose rows are numbered after the training rows."""
        groups = {"normal": self.normal_idx, "anomaly": self.anomaly_idx}
        slots = {"normal": self.config.n_normal_slots, "anomaly": self.config.n_anomaly_slots}
        if self.stems is not None and self.config.n_pseudo_slots:
            groups["pseudo"] = len(self.stems) + np.arange(len(self.pseudo_stems))
            slots = {"normal": self.config.n_normal_slots - self.config.n_pseudo_slots,
                     "pseudo": self.config.n_pseudo_slots, "anomaly": self.config.n_anomaly_slots}
        return BalancedBatchSampler(groups=groups, slots=slots, seed=self.seed)

    def pseudo_anomalies(self, images: torch.Tensor) -> torch.Tensor:
        """Pseudo anomalies made from normal images in [0, 1] (or drawn from the outlier pool)."""
        source = self.config.pseudo_source
        if source == "external":
            pick = torch.randint(len(self.outliers), (len(images),))
            return to_float_images(self.outliers[pick], images.device)
        return make_pseudo_anomalies(images, source)

    def augment(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The training pipeline on float images: each normal replaced by a pseudo anomaly
        (label 2) with probability ``pseudo_prob`` (only when a head learns from them), then
        (``dihedral``) a random dihedral transform and RandomRotation(``rotation_degrees``) on
        every image (as the code, pseudo anomalies before the rotation: ``docs/official_code/dra.md``
        "Training pipeline")."""
        images, labels = images.clone(), labels.clone()
        if self.config.uses_pseudo:
            chosen = (labels == NORMAL) & (torch.rand(len(labels)) < self.config.pseudo_prob)
            if chosen.any():
                images[chosen] = self.pseudo_anomalies(images[chosen])
                labels[chosen] = PSEUDO
        if self.config.dihedral:
            images = random_dihedral(images)
        return random_rotation(images, self.config.rotation_degrees), labels

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor | list[torch.Tensor], torch.Tensor]:
        """Inputs (images in [0, 1], or stem outputs per scale) and labels (0/1/2) of one
        training batch of sampler ``indices``."""
        index = torch.as_tensor(list(indices), dtype=torch.long)
        if self.stems is not None:
            return self._cached(index)
        labels = torch.as_tensor(np.isin(index.numpy(), self.anomaly_idx).astype(np.int64))
        return self.augment(to_float_images(self.images[index]), labels)

    def _cached(self, index: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The cached counterpart of :meth:`augment`: rows below ``len(stems)`` are training images
        (each drawn among its views with ``dihedral``), the others pseudo-anomaly pool rows
        (label 2); then every map is rotated by ``rotation_degrees``."""
        n = len(self.stems)
        pool = index >= n
        labels = torch.as_tensor(np.isin(index.numpy(), self.anomaly_idx).astype(np.int64))
        labels[pool] = PSEUDO
        own = index[~pool].tolist()
        feats = self.stems.sample(own) if self.config.dihedral else self.stems.take(own)
        if pool.any():
            pseudo = self.pseudo_stems.take((index[pool] - n).tolist())
            feats = [torch.empty((len(index), *f.shape[1:]), dtype=f.dtype).index_copy_(
                0, torch.nonzero(~pool).flatten(), f).index_copy_(0, torch.nonzero(pool).flatten(), p)
                for f, p in zip(feats, pseudo, strict=True)]
        if self.config.rotation_degrees > 0:
            angles = random_angles(len(labels), self.config.rotation_degrees)
            feats = [rotate(f, angles) for f in feats]
        return feats, labels

    def references(self) -> torch.Tensor | list[torch.Tensor]:
        """``n_ref`` reference images in [0, 1] (or their stem outputs) for one training step or
        test batch.

        faithful (``docs/official_code/dra.md`` "Training pipeline"; item 1): fresh random
        training normals passed through the training pipeline — about half become pseudo
        anomalies (cached: a random pool row) and all are rotated. clean: the same un-augmented
        normals every time (paper Eq. 6: "reference normal images").
        """
        if self.config.mode == "clean":
            fixed = torch.as_tensor(self.fixed_reference_idx)
            return self.stems.take(fixed) if self.stems is not None else to_float_images(self.images[fixed])
        pick = torch.as_tensor(self.normal_idx)[torch.randperm(len(self.normal_idx))[: self.config.n_ref]]
        if self.stems is not None:
            if self.config.uses_pseudo:
                swap = torch.rand(len(pick)) < self.config.pseudo_prob
                pick = torch.where(swap, len(self.stems) + torch.randint(len(self.pseudo_stems), (len(pick),)), pick)
            return self._cached(pick)[0]
        normal = torch.zeros(len(pick), dtype=torch.long)
        return self.augment(to_float_images(self.images[pick]), normal)[0]


#: ``pseudo_source`` → generator of :mod:`osad_lib.data.pseudo` (Table 4's augmentations).
PSEUDO_GENERATORS = {"cutmix": "cutpaste_same_image", "cp_scar": "cutpaste_scar", "cp_mix": "cutpaste_mix"}


def make_pseudo_anomalies(images: torch.Tensor, source: str) -> torch.Tensor:
    """Pseudo anomalies of float images ``[B, 3, S, S]`` by augmentation (paper Eq. 4, Table 4).

    ``cutmix`` is the code's same-image cut-and-paste with colour jitter
    (``docs/official_code/dra.md`` "Training pipeline"; item 5); ``cp_scar`` is CutPaste-Scar;
    ``cp_mix`` picks one of the two per image. Randomness comes from the global torch generator
    (restored by training checkpoints).
    """
    name = PSEUDO_GENERATORS[choose("pseudo_source", source, tuple(PSEUDO_GENERATORS))]
    return apply_batch(name, images, torch.default_generator)[0].to(images.dtype)


@torch.no_grad()
def pseudo_stem_pool(model: DRA, normals: torch.Tensor, source: str, seed: int, batch_size: int = 64,
                     device: str = "cpu", dihedral: bool = False) -> StemFeatures:
    """Frozen-stem outputs of one pseudo anomaly per normal of ``normals`` (uint8, in order) —
    ``cache_stems``' pool —, under a random dihedral transform each with ``dihedral``; seeded by
    ``seed``. (The notebooks use the per-image cache
    :func:`osad_lib.experiments.stem_cache.pseudo_stems` instead, shared by every run.)"""
    name = PSEUDO_GENERATORS[choose("pseudo_source", source, tuple(PSEUDO_GENERATORS))]
    generator = torch_generator(seed)
    was_training = model.training
    model.eval()
    chunks: list[list[torch.Tensor]] = []
    for start in range(0, len(normals), batch_size):
        images = apply_batch(name, to_float_images(normals[start:start + batch_size]), generator)[0]
        if dihedral:
            ks = torch.randint(DIHEDRAL_VIEWS, (len(images),), generator=generator).tolist()
            images = torch.cat([dihedral_transform(images[i:i + 1], k) for i, k in enumerate(ks)])
        chunks.append([f.half().cpu() for f in model.stem_pyramid(images.to(device))])
    model.train(was_training)
    return StemFeatures(tuple(torch.cat(level) for level in zip(*chunks)))
