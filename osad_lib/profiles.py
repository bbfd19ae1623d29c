"""Run profiles (smoke, demo, paper) and the notebook configuration built from them.

Configuration flows one way: a notebook's papermill ``parameters`` cell → :func:`configure`
→ :class:`NotebookConfig` → library calls. This module is the only place where profiles are
defined; notebooks never hard-code schedules, datasets or seeds.

* ``smoke``: synthetic data, tiny images, a few steps. Every notebook in seconds; used by CI.
* ``demo``: the embedded real data (ELPV images, ADBench embeddings) and the offline pretrained
  EfficientNet-Lite0 backbone with a reduced schedule: the whole series in at most 30 minutes on
  2 CPU cores.
* ``paper``: the papers' protocols and hyper-parameters on the user's data under ``data_root``,
  with the paper backbones; meant for CUDA.
* ``paper-dry-run`` / ``paper-dry-run-ci``: the paper profile's settings with every run cut short
  (:class:`osad_lib.limits.RunLimits`: one optimisation step per training phase, a truncated test
  set) and one seed — ``run_all.py --profile paper --dry-run [full|ci]``, on generated stand-ins of
  every paper dataset and random-weight backbone files (:mod:`osad_lib.dryrun`) unless given real
  ones. The CI size takes one dataset per family, batches of 2 (composition kept), two test
  images (a normal, an anomaly) and the first experiment of each code path only (a method on a
  backbone in a notebook, :func:`osad_lib.limits.path_key`). Their rows carry their own profile name and say
  ``dry run`` in ``deviations``; they never mix with the paper profile's.

Per-method settings (``Profile.method``) override the method's paper defaults, which live in
the method's own module (e.g. ``osad_lib.methods.devnet.model.DevNetConfig``).

A **custom profile** is a TOML file (``run_all.py --profile-file``, the notebooks' ``profile_file``
parameter) naming a built-in ``base`` plus overrides of profile fields and per-method settings
(:func:`load_profile_file`); :func:`derive_profile` is the one rule of inheritance. Its name
carries a hash of its resolved settings (``headct-demo@1a2b3c4d``), so its result rows and output
folders never mix with those of other settings.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from osad_lib import limits, paths
from osad_lib.data.registry import dataset_names
from osad_lib.limits import RunLimits
from osad_lib.results import ResultsStore, device_label, store_for
from osad_lib.validate import ConfigError, choose, closest, parse_seeds

PAPER_IMAGE_DATASETS = (
    "mvtecad", "aitex", "sdd", "elpv", "optical", "mastcam", "brainmri", "headct", "hyperkvasir",
)


@dataclass(frozen=True)
class Profile:
    """Everything a profile fixes. ``deviations`` says how it departs from the papers."""

    name: str
    description: str
    image_datasets: tuple[str, ...]
    image_size: int
    n_scales: int
    backbone: str
    weights: str
    seeds: tuple[int, ...]
    n_shots: tuple[int, ...]
    settings: tuple[str, ...]
    epochs: int
    steps_per_epoch: int
    batch_size: int
    eval_batch_size: int
    deviations: str
    needs_data_root: bool = False
    limits: RunLimits = limits.NONE
    overrides_of: str = ""  # the built-in profile whose METHOD_OVERRIDES apply (default: this one)
    #: A custom profile: the built-in profile it derives from, its file, the hash of its resolved
    #: settings (part of ``name``) and its per-method settings (:func:`derive_profile`); empty for
    #: the built-in ones, whose per-method settings are :data:`METHOD_OVERRIDES`.
    base: str = ""
    source: str = ""
    settings_hash: str = ""
    method_settings: Mapping[str, Mapping[str, Any]] | None = field(default=None, compare=False, repr=False)

    @property
    def builtin(self) -> str:
        """The built-in profile this one is or derives from (``smoke``, ``demo`` or ``paper``)."""
        return self.base or self.overrides_of or self.name

    def method(self, name: str) -> dict[str, Any]:
        """Overrides of method ``name``'s paper defaults under this profile (:data:`METHOD_OVERRIDES`,
        or a custom profile's own, inherited from its base)."""
        name = choose("method", name, METHOD_OVERRIDES)
        if self.method_settings is not None:
            return dict(self.method_settings.get(name, {}))
        return dict(METHOD_OVERRIDES[name].get(self.overrides_of or self.name, {}))


#: Per method, per profile: overrides of the method's paper defaults (its ``*Config`` dataclass).
#: The paper profile overrides nothing unless a paper default cannot run as written.
METHOD_OVERRIDES: dict[str, dict[str, dict[str, Any]]] = {
    "devnet": {
        # osad_lib.methods.devnet.model.DevNetConfig fields, plus the grid keys of
        # osad_lib.experiments.devnet.GRID_KEYS (methods, max_seen_classes, method_tables).
        # smoke: one baseline (MINNS, in all three DevNet tables) to exercise the wiring in CI.
        "smoke": {"max_seen_classes": 2, "methods": ("devnet", "flos", "minns")},
        # ImageNet EfficientNet-Lite0 at 160 px whose stem (everything up to block 14) is frozen and
        # cached once per image; its last block and 1x1 head convolution are fine-tuned with
        # DevNet's head (frozen_stages=4), so DevNet learns its own features (AHL(DevNet) reads
        # them). The 8 exact rotations/flips of the labelled anomalies (their stems cached too)
        # replace RandomRotation(180); the paper's lr 1e-3 (the code's 2e-4 moves too little in
        # 6x10 steps of 16+16). DevNet runs the profile's 5 seeds (the paired verdicts of 02/05);
        # FLOS and the baselines (on the same trainable block) fewer. PatchCore (no training) on
        # Table 2 only, the general setting AHL Table 4 reads.
        "demo": {"frozen_stages": 4, "dihedral": True, "rotation_degrees": 0.0, "lr": 1e-3, "epochs": 6,
                 "steps_per_epoch": 10, "batch_size": 32, "lr_step_size": 5,
                 "methods": ("devnet", "flos", "deepsvdd", "deepsad", "minns", "patchcore"),
                 "method_tables": {"patchcore": ("table2",)},
                 "method_seeds": {"flos": 3, "deepsvdd": 2, "deepsad": 2, "minns": 2, "patchcore": 2},
                 "table_seeds": {"table4": 2}},
    },
    "dra": {
        # DRAConfig fields + grid keys of osad_lib.experiments.dra.GRID_KEYS
        # smoke: Tables 7/8 (Deep SAD, MINNS) at the smoke's 5 shots; one clean DRA run beside the faithful one.
        "smoke": {"epochs": 2, "steps_per_epoch": 2, "batch_size": 12, "hard_n_shots": (5,), "max_seen_classes": 2,
                  "methods": ("dra", "devnet", "mlep", "deepsad", "minns"), "appendix_n_shots": 5,
                  "clean_runs": (("general", 5),)},
        # DevNet's demo backbone and trainable last block (cached stems, shared), DRA's batches of
        # 16 normal + 16 pseudo + 16 seen slots for DevNet's 6x10 steps (as many steps and anomaly
        # draws), one cached CutPaste pseudo anomaly per training normal (under a random
        # rotation/flip; none repeats within a run), the labelled anomalies' 8 rotations/flips, and
        # the composite head on a learned 1x1 projection to 128 channels (a 3x3 conv on Lite0's
        # 1280 channels would be 15 M parameters). ELPV general 1/10-shot and hard (mono, poly)
        # plus the synthetic hard setting on synthetic/object (seen class: its first, 5 anomalies).
        # DRA and DevNet over the profile's 5 seeds (the paired verdict; the synthetic hard setting
        # runs only these two); 1-shot, MLEP, Deep SAD, MINNS (01's models, loaded) and the
        # clean-mode runs on fewer.
        "demo": {"frozen_stages": 4, "cache_stems": True, "dihedral": True, "composite_channels": 128,
                 "rotation_degrees": 0.0, "lr": 1e-3, "epochs": 6, "steps_per_epoch": 10, "batch_size": 48,
                 "lr_step_size": 5, "hard_n_shots": (10,), "methods": ("dra", "devnet", "mlep", "deepsad", "minns"),
                 "extra_hard": (("synthetic/object", 5, 1),),
                 "method_seeds": {"mlep": 1, "deepsad": 2, "minns": 2}, "one_shot_seeds": 2, "clean_seeds": 2},
    },
    "bgad": {
        "smoke": {
            "backbone": "efficientnet_lite0", "weights": "imagenet", "image_size": 64,
            "meta_epochs": 2, "sub_epochs": 1, "batch_size": 8, "chunk_size": 512, "warmup_epochs": 0,
            "standardize": True,
            "table1_datasets": ("synthetic",), "table2_datasets": (), "table3_datasets": ("synthetic",),
        },
        "demo": {
            "backbone": "efficientnet_lite0", "weights": "imagenet", "image_size": 128,
            "pos_embed_dim": 32, "coupling_blocks": 4, "meta_epochs": 4, "sub_epochs": 1,
            "lr": 1e-3, "chunk_size": 1024, "warmup_epochs": 1, "max_train_normals": 500, "standardize": True,
            "table1_datasets": ("synthetic",), "table2_datasets": (), "table3_datasets": ("elpv",),
        },
    },
    "anoonly": {
        # fields of osad_lib.experiments.anoonly.AnoOnlyConfig
        "smoke": {
            "files": ("MVTec-AD_bottle", "MVTec-AD_toothbrush"), "schedule": 0.1, "factors": ("l2=0",),
            "head_options": {"feawad": {"batch_size": 64, "pretrain_epochs": 2, "steps_per_epoch": 5},
                             "prenet": {"batch_size": 64, "n_score_refs": 5}},
            # image DevNet +- AnoOnly (beyond the paper): synthetic weave, general setting only
            "image_datasets": ("synthetic",), "image_settings": ("general",),
        },
        # demo: 1 seed and a fifth of the schedule (FEAWAD: batch 128, 5 AE epochs) so that the
        # whole notebook fits in ~6 min on 2 CPU cores; the paper schedule is the paper profile.
        # Data settings: clean organisation with both splits, contaminated with the paper's split.
        # Fidelity factors on the two cheap heads: the official code's behaviours at once (Deep SAD,
        # DevNet; DevNet's is its loss) and Deep SAD's two one at a time (~33 CPU-s per MVTec file
        # with the three data settings); image DevNet +- AnoOnly on ELPV (general, hard mono/poly)
        # over the profile's 3 seeds with DevNet's demo settings.
        "demo": {
            "groups": ("mvtecad", "cifar10", "svhn"), "schedule": 0.2, "max_seeds": 1,
            "head_options": {"feawad": {"batch_size": 128, "pretrain_epochs": 5}},
            "factors": ("code", "lr=1e-4", "norm=bn_no_affine"),
            "factor_heads": ("deepsad", "devnet"),
        },
    },
    "ahl": {
        # osad_lib.methods.ahl.config.AHLConfig fields, plus the grid keys of osad_lib.experiments.ahl.GRID_KEYS.
        "smoke": {"epochs": 3, "inner_steps": 2, "query_steps": 1, "batch_size": 12, "sequence_length": 2,
                  "psi_steps": 2, "psi_pool_size": 96, "settings": ("general",), "general_n_shots": (5,)},
        # On the base models 01/02 trained (the run's model store) and their fine-tuned features;
        # g starts from the base heads (init=base) and takes one meta-step per epoch; the base models
        # learn with Adam (paper §4.1) at the base models' own demo lr (1e-3, as the paper's 2e-4 is
        # the official base code's) for 5 support batches of 24 per task and epoch (a relative
        # change of ~2 %), 2 query batches; psi on 256 pool samples; HADG on a seeded subset of 300
        # training normals. The splits of 02 at 10 shots (ELPV general, hard mono/poly) and the
        # synthetic/object hard setting.
        "demo": {"epochs": 10, "inner_steps": 5, "query_steps": 2, "batch_size": 24, "base_lr": 1e-3,
                 "psi_pool_size": 256, "max_normals": 300,
                 "general_n_shots": (10,), "hard_n_shots": (10,)},
    },
    "cross_domain": {
        # notebook 07_cross_domain: options of osad_lib.experiments.cross_domain.DEFAULTS (the
        # paper profile uses them as they are: five MVTec textures, 10 fine-tuning epochs); DRA
        # and AHL take their own entries' settings, "ahl" here overrides AHL's for this notebook.
        # Synthetic subsets stand in for the domains.
        "smoke": {"domains": ("synthetic/weave", "synthetic/grain"), "n_shots": 5, "max_seeds": 1,
                  "finetune_epochs": 1, "finetune_steps": 2, "ahl": {"n_clusters": 2}},
        # demo: one seed; fine-tuning 10 epochs x 2 steps and AHL 5 epochs (half of 05_ahl's 10).
        "demo": {"domains": ("synthetic/weave", "synthetic/grain", "synthetic/object"), "max_seeds": 1,
                 "finetune_steps": 2, "ahl": {"epochs": 5}},
    },
    "ablations": {
        # notebook 06_ablations: "studies" = the study keys run by default (empty: all), and
        # "options" = per study key, that study's settings (see osad_lib.experiments.ablations).
        "smoke": {"studies": (), "options": {
            # DevNet / DRA studies (ablations/devnet.py, dra.py): synthetic data, two points each.
            "devnet_table5": {"datasets": ("synthetic",), "variants": ("ds", "mil_ds")},
            "devnet_fig6": {"datasets": ("synthetic",), "topk_ratios": (0.05, 0.2)},
            "devnet_fig7": {"datasets": ("synthetic",), "n_shots": (1, 5), "methods": ("devnet",)},
            "devnet_fig8": {"datasets": ("synthetic",), "contamination": (0.0, 0.1), "methods": ("devnet",)},
            "dra_table3": {"general_datasets": ("synthetic",), "hard_datasets": (), "variants": ("dra1a", "")},
            "dra_table4": {"hard_datasets": ("synthetic",), "sources": ("cp_scar", "cutmix", "lag"),
                           "max_seen_classes": 1},
            "dra_fig3": {"general_datasets": ("synthetic",), "nrefs": (1, 5)},
            # AHL studies (ablations/ahl.py): synthetic, 5 anomalies, the AHL smoke schedule; AHL as
            # published is trained once and shared by every study.
            "ahl_table5": {"general_datasets": ("synthetic",), "hard_datasets": (), "n_shots": 5,
                           "variants": ("hadg", "")},
            "ahl_table9": {"hard_datasets": ("synthetic",), "n_shots": 5, "max_seen_classes": 1, "variants": ("",)},
            "ahl_table10": {"general_datasets": ("synthetic",), "n_shots": 5, "variants": ("overlap=both", "")},
            "ahl_fig3": {"general_datasets": ("synthetic",), "n_shots": 5, "variants": ("C=2", "", "K=1")},
            "ahl_fig4": {"general_datasets": ("synthetic",), "n_shots": 5, "variants": ("wo_aug", "")},
            # BGAD studies (ablations/bgad.py): synthetic/object (unsupervised BGAD already reaches
            # AUROC ~1.0 on weave and grain), the BGAD smoke settings with smaller flows, 2-3 runs each.
            "bgad_table4": {"datasets": ("synthetic/object",), "config": {"coupling_blocks": 4, "pos_embed_dim": 32},
                            "variants": ("beta=0.01,tau=0.1", "beta=0.1,tau=0.3")},
            "bgad_table5": {"datasets": ("synthetic/object",), "config": {"coupling_blocks": 4, "pos_embed_dim": 32},
                            "subsets": ("hard_subsets", "unseen_subsets")},
            "bgad_table6": {"datasets": ("synthetic/object",), "config": {"coupling_blocks": 4, "pos_embed_dim": 32},
                            "rows": ((1, "bgspp"), (1, "bgspp+racp"))},
            "bgad_standardize": {"datasets": ("synthetic/object",), "config": {"coupling_blocks": 4, "pos_embed_dim": 32},
                                 "variants": ("standardize=on", "standardize=off")},
            # AnoOnly studies (ablations/anoonly.py): one MVTec file, the AnoOnly smoke schedule,
            # Deep SAD only and two values per sweep.
            "anoonly_table2": {"files": ("MVTec-AD_bottle", "MVTec-AD_toothbrush")},
            "anoonly_fig5": {"files": ("MVTec-AD_bottle", "MVTec-AD_toothbrush"), "heads": ("deepsad",), "values": (0.1, 1.0)},
            "anoonly_fig6": {"files": ("MVTec-AD_bottle", "MVTec-AD_toothbrush"), "values": (0.1, 1.0)},
            "anoonly_fig7": {"files": ("MVTec-AD_bottle", "MVTec-AD_toothbrush"), "values": (1.0, 1e-6)},
            "anoonly_fig8": {"files": ("MVTec-AD_bottle", "MVTec-AD_toothbrush"), "heads": ("deepsad",)},
            "anoonly_fig9": {"files": ("MVTec-AD_bottle", "MVTec-AD_toothbrush"), "values": (8, 128)},
        }},
        # demo: every study except the four costliest (DRA Table 4 and Fig. 3, AHL Table 9 and
        # Fig. 4: ~40 CPU-min together on 2 cores) and BGAD's standardisation study (beyond the
        # paper); run them with studies=dra_table4,... .
        "demo": {"studies": ("devnet_table5", "devnet_fig6", "devnet_fig7", "devnet_fig8", "dra_table3",
                             "bgad_table4", "bgad_table5", "bgad_table6", "anoonly_table2", "anoonly_fig5",
                             "anoonly_fig6", "anoonly_fig7", "anoonly_fig8", "anoonly_fig9", "ahl_table5",
                             "ahl_table10", "ahl_fig3"), "options": {
            # DevNet / DRA studies on ELPV with 01/02's demo settings (cached Lite0 stems, the last
            # stage fine-tuned; the variants equal to 01/02's runs load their models from the run's
            # model store). A DevNet run takes seconds, a DRA run about half a CPU-minute. So DRA:
            # one seed, Table 3 on the general setting, Table 4 on the seen class mono.
            "devnet_table5": {"datasets": ("elpv",)},
            "devnet_fig6": {"datasets": ("elpv",), "max_seeds": 2},
            "devnet_fig7": {"datasets": ("elpv",), "methods": ("devnet", "flos"), "max_seeds": 2},
            "devnet_fig8": {"datasets": ("elpv",), "methods": ("devnet", "flos"), "max_seeds": 2},
            "dra_table3": {"general_datasets": ("elpv",), "hard_datasets": (), "max_seeds": 1},
            "dra_table4": {"hard_datasets": ("elpv",), "max_seen_classes": 1, "max_seeds": 1},
            "dra_fig3": {"general_datasets": ("elpv",), "max_seeds": 1},
            # BGAD studies on synthetic/object with the BGAD demo settings (03's), one seed: a run
            # takes ~10 CPU-s. ELPV has no pixel masks and no hard classes for Table 5.
            "bgad_table4": {"datasets": ("synthetic/object",), "max_seeds": 1},
            "bgad_table5": {"datasets": ("synthetic/object",), "max_seeds": 1},
            "bgad_table6": {"datasets": ("synthetic/object",), "max_seeds": 1},
            # Beyond the paper, on request only (studies=bgad_standardize): Table 3's ELPV 1-shot cell
            # at 12 meta epochs (the study's default) with and without the standardisation and with
            # the code's gradient reset, 3 seeds; ~9 runs of several CPU-minutes each.
            "bgad_standardize": {"datasets": ("elpv",), "max_seeds": 3},
            # AnoOnly studies with the AnoOnly demo schedule (x0.2, one seed): the first file of each
            # ADBench group present for the Deep SAD sweeps, two MVTec files for the four heads.
            "anoonly_table2": {"max_files": 1},
            "anoonly_fig5": {"groups": ("mvtecad",), "max_files": 2},
            "anoonly_fig6": {"max_files": 1},
            "anoonly_fig7": {"max_files": 1},
            "anoonly_fig8": {"groups": ("mvtecad",), "max_files": 2},
            "anoonly_fig9": {"groups": ("mvtecad",), "max_files": 1},
            # AHL studies on ELPV, ten anomalies, the AHL demo settings (05's), seed 0: a DRA base
            # split costs ~1 CPU-min (shared by every study), AHL (DRA) ~2.7 CPU-min, an ensemble ~1.7.
            # So one variant per study beside DRA and AHL as published (trained once, shared);
            # Table 9 on the seen class mono with + HADG only.
            "ahl_table5": {"general_datasets": ("elpv",), "hard_datasets": (), "variants": ("hadg", ""),
                           "max_seeds": 1},
            "ahl_table9": {"hard_datasets": ("elpv",), "max_seen_classes": 1, "variants": ("hadg",), "max_seeds": 1},
            "ahl_table10": {"general_datasets": ("elpv",), "variants": ("overlap=s_to_q", ""), "max_seeds": 1},
            "ahl_fig3": {"general_datasets": ("elpv",), "variants": ("C=2", ""), "max_seeds": 1},
            "ahl_fig4": {"general_datasets": ("elpv",), "variants": ("wo_aug", ""), "max_seeds": 1},
        }},
        "paper": {"studies": (), "options": {}},
    },
    "patchcore": {
        # osad_lib.methods.baselines.patchcore.PatchCoreConfig fields. demo: memory bank from 200 training
        # normals and a 1 % coreset (paper: all normals, 10 %): the exact greedy k-center selection
        # costs O(patches x selected); on ELPV this takes ~25 CPU-s per run instead of many minutes
        # (seed 0: AUROC 0.880 vs 0.877 with a 10 % coreset of the same 200 normals).
        "demo": {"max_train_images": 200, "coreset_ratio": 0.01},
    },
}


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        description="synthetic data, 64-px images, random-weight ResNet-18, 2 epochs x 2 steps; seconds per notebook",
        image_datasets=("synthetic",),
        image_size=64,
        n_scales=2,
        backbone="resnet18",
        weights="random",
        seeds=(0,),
        n_shots=(1, 5),
        settings=("general", "hard"),
        epochs=2,
        steps_per_epoch=2,
        batch_size=8,
        eval_batch_size=64,
        deviations="smoke: synthetic data, random-weight backbone, 2x2 schedule",
    ),
    "demo": Profile(
        name="demo",
        description="real ELPV images and ADBench embeddings, offline ImageNet EfficientNet-Lite0, reduced schedule",
        image_datasets=("elpv",),
        image_size=160,
        n_scales=2,
        backbone="efficientnet_lite0",
        weights="imagenet",
        seeds=(0, 1, 2, 3, 4),
        n_shots=(1, 10),
        settings=("general", "hard"),
        epochs=6,
        steps_per_epoch=10,
        batch_size=16,
        eval_batch_size=64,
        deviations="demo: EfficientNet-Lite0 backbone (paper ResNet-18), 160 px (paper 448), 6x10 steps of 16",
    ),
    "paper": Profile(
        name="paper",
        description="the papers' protocols and hyper-parameters on the user's data, paper backbones",
        image_datasets=PAPER_IMAGE_DATASETS,
        image_size=448,
        n_scales=2,
        backbone="resnet18",
        weights="imagenet",
        seeds=(0, 1, 2, 3, 4),
        n_shots=(1, 10),
        settings=("general", "hard"),
        epochs=50,
        steps_per_epoch=20,
        batch_size=48,
        eval_batch_size=48,
        deviations="",
        needs_data_root=True,
    ),
}


#: One registry name per paper dataset family (the CI-sized dry run's datasets): MVTec AD's first
#: category, and each single-subset dataset of the paper profile.
DATASET_FAMILY_REPRESENTATIVES = ("mvtecad/carpet",) + PAPER_IMAGE_DATASETS[1:]
#: Test images kept per evaluation in a dry run (each class keeps at least one).
DRY_RUN_TEST_IMAGES = 8


def _dry_run(name: str, description: str, run_limits: RunLimits, **changes: Any) -> Profile:
    """The paper profile with ``run_limits``, one seed and the paper's method settings; without a
    data root ``run_all.py --dry-run`` generates stand-ins of its datasets, so it needs none."""
    return replace(PROFILES["paper"], name=name, description=description, seeds=(0,), overrides_of="paper",
                   limits=run_limits, deviations=run_limits.describe(), needs_data_root=False, **changes)


PROFILES["paper-dry-run"] = _dry_run(
    "paper-dry-run", "dry run of the paper profile: its settings and every grid cell, one step per run",
    RunLimits(max_steps=1, max_test_images=DRY_RUN_TEST_IMAGES))
PROFILES["paper-dry-run-ci"] = _dry_run(
    "paper-dry-run-ci", "CI-sized dry run of the paper profile: one dataset per family, one run per code path",
    RunLimits(max_steps=1, max_test_images=2, max_batch_size=2, one_run_per_path=True),
    image_datasets=DATASET_FAMILY_REPRESENTATIVES)


#: The built-in profiles a profile file may name as its ``base`` (the dry-run profiles are
#: ``run_all.py --dry-run``'s own).
BASE_PROFILES = ("smoke", "demo", "paper")


def get_profile(name: str, **overrides: Any) -> Profile:
    """The named profile (a built-in one, or a custom one loaded in this process by
    :func:`load_profile_file`), with dataclass-field overrides applied (validated, one-line errors)."""
    if name in CUSTOM_PROFILES:
        profile = CUSTOM_PROFILES[name]
    elif "@" in str(name):
        raise ConfigError(f"profile {name!r} is a custom profile: pass its file (profile_file parameter, "
                          "run_all.py --profile-file FILE)")
    else:
        profile = PROFILES[choose("profile", name, PROFILES)]
    unknown = [k for k in overrides if k not in Profile.__dataclass_fields__]
    if unknown:
        raise ConfigError(f"unknown profile override(s) {unknown}; known: {sorted(Profile.__dataclass_fields__)}")
    return replace(profile, **overrides) if overrides else profile


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; asking for CUDA without one is an error."""
    device = choose("device", device, ("auto", "cpu", "cuda"))
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("parameter 'device': 'cuda' was requested but torch sees no CUDA device; use 'auto' or 'cpu'")
    return device


@dataclass(frozen=True)
class NotebookConfig:
    """What a notebook needs: profile, device, seeds, paths and its results store."""

    notebook: str
    profile: Profile
    device: str
    seeds: tuple[int, ...]
    data_root: Path | None
    output_dir: Path
    resume: bool
    interactive: bool

    @property
    def store(self) -> ResultsStore:
        return store_for(self.notebook, self.profile.name, self.output_dir)

    @property
    def figures_dir(self) -> Path:
        return paths.figures_dir(self.profile.name, self.output_dir)

    @property
    def tables_dir(self) -> Path:
        return paths.tables_dir(self.profile.name, self.output_dir)

    @property
    def runs_dir(self) -> Path:
        return paths.runs_dir(self.profile.name, self.output_dir)

    @property
    def checkpoints_dir(self) -> Path:
        return paths.checkpoints_dir(self.profile.name, self.output_dir)

    @property
    def device_label(self) -> str:
        return device_label(self.device)


def configure(
    notebook: str,
    profile: str = "demo",
    device: str = "auto",
    data_root: str = "",
    seeds: str = "",
    output_dir: str = "",
    resume: bool = True,
    interactive: bool = False,
    check_data: bool = True,
    datasets: str | Sequence[str] = "",
    profile_file: str = "",
) -> NotebookConfig:
    """Validate a notebook's papermill parameters and build its configuration.

    Every error is one line naming the parameter and the fix, raised before any work starts.
    ``check_data=False`` skips the data-root checks (used by ``run_all.py --plan``, which lists
    a profile's grid from dataset metadata without the data). ``datasets`` (comma-separated
    registry names) replaces the profile's image datasets (:func:`with_datasets`);
    ``profile_file`` names a custom profile (:func:`load_profile_file`), which then replaces
    ``profile`` (a built-in name there is ignored; the custom name that run_all.py passes must
    still be what the file resolves to).
    """
    prof = profile_for(profile, profile_file)
    if datasets:
        prof = with_datasets(prof, datasets)
    root = paths.data_root(data_root)
    if check_data and root is not None and not root.is_dir():
        raise ConfigError(f"parameter 'data_root': {root} is not a directory; pass an existing folder or leave it empty")
    if check_data and prof.needs_data_root and root is None:
        raise ConfigError(
            f"profile {prof.name!r} needs your datasets: pass data_root (run_all.py --data-root DIR) or set OSAD_DATA"
        )
    seed_list = parse_seeds("seeds", seeds) if seeds not in ("", None) else prof.seeds
    for name, value in (("resume", resume), ("interactive", interactive)):
        if not isinstance(value, bool):
            raise ConfigError(f"parameter {name!r}: expected True or False, got {value!r}")
    out = paths.output_root(output_dir)
    limits.install(prof.limits)  # the dry-run profiles' truncation, read by the shared loops
    os.environ.setdefault("MPLBACKEND", "Agg")
    return NotebookConfig(
        notebook=notebook, profile=prof, device=resolve_device(device), seeds=seed_list,
        data_root=root, output_dir=out, resume=resume, interactive=interactive,
    )


# --------------------------------------------------------------------------------------------
# Custom profiles: a built-in base, overrides of its fields and per-method settings

#: Custom profiles loaded in this process (:func:`load_profile_file`), by their ``name@hash``.
CUSTOM_PROFILES: dict[str, Profile] = {}
#: Profile fields that say what a profile is, not how it runs: a profile file cannot set them.
_IDENTITY_FIELDS = ("name", "base", "source", "settings_hash", "method_settings")
#: Fields left out of the settings hash: its identity, text, and what every result row's key
#: already holds (its dataset and seed), so more datasets or seeds under one profile belong together.
_UNHASHED_FIELDS = (*_IDENTITY_FIELDS, "description", "deviations", "image_datasets", "seeds")
_PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def merge_settings(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` applied key by key; nested mappings merge recursively (a file's
    ``[methods.ahl.devnet] epochs = 3`` keeps the base's other AHL(DevNet) settings)."""
    merged = dict(base)
    for key, value in overrides.items():
        nested = isinstance(value, Mapping) and isinstance(merged.get(key), Mapping)
        merged[key] = merge_settings(merged[key], value) if nested else value
    return merged


def _frozen(value: Any) -> Any:
    """A TOML/YAML value as the profiles write theirs: lists become tuples (also nested)."""
    if isinstance(value, Mapping):
        return {str(k): _frozen(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def _type_name(value: Any) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(type(value), type(value).__name__)


def _field_value(where: str, name: str, value: Any, current: Any) -> Any:
    """``value`` for profile field ``name`` checked against the type of the base's ``current``."""
    if isinstance(current, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: {name} must be a list, e.g. {name} = {json.dumps(list(current))}")
        if current and any(type(v) is not type(current[0]) for v in value):
            raise ConfigError(f"{where}: every entry of {name} must be {_type_name(current[0])}, e.g. "
                              f"{name} = {json.dumps(list(current))}")
        return tuple(value)
    if type(value) is not type(current) and not (type(current) is float and type(value) is int):
        raise ConfigError(f"{where}: {name} must be {_type_name(current)}, got {value!r} (e.g. {name} = "
                          f"{json.dumps(current)})")
    return value


def _describe_changes(changes: Mapping[str, Any], methods: Mapping[str, Mapping[str, Any]]) -> str:
    parts = [f"{k}={v}" for k, v in changes.items() if k != "description"]
    parts += [f"{m}.{k}={v}" for m, settings in methods.items() for k, v in settings.items()]
    return ", ".join(parts) or "no overrides"


def settings_hash(profile: Profile) -> str:
    """8 hex digits of the SHA-1 of everything that shapes a run under ``profile``: its fields but
    the unhashed ones (:data:`_UNHASHED_FIELDS`) and every method's settings."""
    content: dict[str, Any] = {f.name: getattr(profile, f.name) for f in fields(Profile) if f.name not in _UNHASHED_FIELDS}
    content["methods"] = {m: profile.method(m) for m in METHOD_OVERRIDES}
    return hashlib.sha1(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:8]


def derive_profile(base: Profile, name: str, changes: Mapping[str, Any] | None = None,
                   methods: Mapping[str, Mapping[str, Any]] | None = None, source: str = "") -> Profile:
    """The one rule of profile inheritance: ``base`` with the profile fields of ``changes``
    replaced and, per method, ``base``'s settings merged with those of ``methods``
    (:func:`merge_settings`). The result is named ``<name>@<settings hash>`` (:func:`settings_hash`)
    and records its base, its file (``source``) and the overrides in ``deviations``.
    """
    changes, methods = dict(changes or {}), {m: dict(s) for m, s in (methods or {}).items()}
    where = f"profile file {source}" if source else f"profile {name!r}"
    if not _PROFILE_NAME.fullmatch(str(name)):
        raise ConfigError(f"{where}: name {name!r} must be letters, digits, '_', '.' or '-' (e.g. name = \"headct-demo\")")
    settable = [f.name for f in fields(Profile) if f.name not in _IDENTITY_FIELDS]
    for key in changes:
        if key not in settable:
            raise ConfigError(f"{where}: unknown key {key!r}" + _did_you_mean(key, [*settable, "methods"])
                              + f"; profile fields: {', '.join(settable)}; per-method settings go in [methods.<method>]")
    for method, settings in methods.items():
        if method not in METHOD_OVERRIDES:
            raise ConfigError(f"{where}: unknown method [methods.{method}]" + _did_you_mean(method, METHOD_OVERRIDES)
                              + f"; methods: {', '.join(METHOD_OVERRIDES)}")
        if not isinstance(settings, Mapping):
            raise ConfigError(f"{where}: [methods.{method}] must be a table of settings (e.g. [methods.{method}] then epochs = 3)")
    resolved = {k: _field_value(where, k, _frozen(v), getattr(base, k)) for k, v in changes.items()}
    if "image_datasets" in resolved:
        resolved["image_datasets"] = with_datasets(base, resolved["image_datasets"], label=f"{where}: image_datasets").image_datasets
    if "seeds" in resolved:
        resolved["seeds"] = parse_seeds(f"{where}: seeds", resolved["seeds"])
    overrides = _describe_changes(changes, methods)
    resolved.setdefault("description", f"{base.description}; custom ({overrides})")
    resolved["deviations"] = "; ".join(p for p in (base.deviations, f"custom profile {name} (base {base.builtin}): {overrides}") if p)
    settings = {m: merge_settings(base.method(m), _frozen(methods.get(m, {}))) for m in METHOD_OVERRIDES}
    profile = replace(base, **resolved, base=base.builtin, source=source, method_settings=settings)
    digest = settings_hash(profile)
    return replace(profile, name=f"{name}@{digest}", settings_hash=digest)


def _did_you_mean(value: str, allowed: Sequence[str] | Mapping[str, Any]) -> str:
    hint = closest(value, list(allowed))
    return f"; did you mean {hint!r}?" if hint else ""


def _read_profile_data(file: Path) -> dict[str, Any]:
    """The mapping a TOML (or, with PyYAML, YAML) profile file holds; one-line errors."""
    suffix = file.suffix.lower()
    text = file.read_text()
    if suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"profile file {file} is not valid TOML: {' '.join(str(exc).split())}") from None
    if suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError(f"profile file {file}: reading YAML needs PyYAML, which is not installed; write it as "
                              "TOML (.toml)") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"profile file {file} is not valid YAML: {' '.join(str(exc).split())}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"profile file {file} holds no mapping of settings; start it with base: demo")
        return data
    raise ConfigError(f"profile file {file}: unknown format {file.suffix!r}; write it as TOML (.toml) or YAML (.yaml)")


def load_profile_file(path: str | os.PathLike) -> Profile:
    """The custom profile of a TOML/YAML file (registered in :data:`CUSTOM_PROFILES`)::

        base = "demo"                 # smoke | demo | paper: every field and method setting not set here
        name = "headct-demo"          # optional (default: the file name)
        image_datasets = ["headct"]   # any Profile field, e.g. seeds, image_size, epochs
        [methods.devnet]              # per-method settings, merged into the base's
        epochs = 5

    Every error (a missing file or base, an unknown key, a wrong type) is one line naming the fix.
    """
    file = Path(path).expanduser().absolute()
    if not file.is_file():
        what = "is a folder" if file.is_dir() else "does not exist"
        raise ConfigError(f"profile file {file} {what}; pass a TOML file such as: base = \"demo\" plus overrides "
                          "(README, 'Run the methods on your own data')")
    data = _read_profile_data(file)
    where = f"profile file {file}"
    if "base" not in data:
        raise ConfigError(f"{where}: no base profile; add a first line base = \"demo\" (one of {', '.join(BASE_PROFILES)})")
    base = data.pop("base")
    if base not in BASE_PROFILES:
        raise ConfigError(f"{where}: base {base!r} is not one of {', '.join(BASE_PROFILES)}"
                          + _did_you_mean(str(base), BASE_PROFILES))
    name = data.pop("name", file.stem)
    methods = data.pop("methods", {})
    if not isinstance(methods, Mapping):
        raise ConfigError(f"{where}: methods must be tables such as [methods.devnet]")
    profile = derive_profile(PROFILES[base], str(name), data, methods, source=str(file))
    CUSTOM_PROFILES[profile.name] = profile
    return profile


def profile_for(profile: str, profile_file: str = "") -> Profile:
    """The profile of a notebook's ``profile`` and ``profile_file`` parameters (:func:`configure`)."""
    if not profile_file:
        return get_profile(profile)
    custom = load_profile_file(profile_file)
    if profile not in PROFILES and profile != custom.name:
        raise ConfigError(f"parameter 'profile_file': {profile_file} now resolves to profile {custom.name!r}, not "
                          f"{profile!r} (edited after run_all.py started?); rerun run_all.py")
    return custom


def with_datasets(profile: Profile, datasets: str | Sequence[str], label: str = "parameter 'datasets'") -> Profile:
    """``profile`` on ``datasets`` (registry names, comma-separated or a list; ``mvtecad`` stands
    for its 15 categories) instead of its image datasets: naming fewer restricts it, others extend
    it. Name and settings hash stay: every result row's key holds its dataset."""
    names = [n.strip() for n in datasets.split(",")] if isinstance(datasets, str) else [str(n).strip() for n in datasets]
    if not names or not all(names):
        raise ConfigError(f"{label}: an empty dataset name in {datasets!r}; list registry names, e.g. headct,brainmri")
    for name in names:
        try:
            dataset_names([name])
        except ConfigError as exc:
            raise ConfigError(f"{label}: {exc}") from None
    return replace(profile, image_datasets=tuple(names))
