"""The built-in profiles, ``smoke``, ``demo`` and ``paper`` (and the paper profile's dry runs):
:class:`Profile`, every method's settings per profile (:data:`METHOD_OVERRIDES`) and :data:`PROFILES`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any


from osad_lib import limits
from osad_lib.limits import RunLimits
from osad_lib.profiles.methods import EMPTY, MethodSettings
from osad_lib.validate import choose


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
    #: Whether ``jobs=0`` (auto) runs a grid on the CPU in worker processes (one per core): not for
    #: the smoke profile, whose runs take about a second each, less than a worker takes to start.
    grid_workers: bool = True
    #: A custom profile: the built-in profile it derives from, its file, the hash of its resolved
    #: settings (part of ``name``) and its per-method settings (:func:`derive_profile`); empty for
    #: the built-in ones, whose per-method settings are :data:`METHOD_OVERRIDES`.
    base: str = ""
    source: str = ""
    settings_hash: str = ""
    method_settings: Mapping[str, MethodSettings] | None = field(default=None, compare=False, repr=False)

    @property
    def builtin(self) -> str:
        """The built-in profile this one is or derives from (``smoke``, ``demo`` or ``paper``)."""
        return self.base or self.overrides_of or self.name

    def method(self, name: str) -> MethodSettings:
        """Method ``name``'s settings under this profile (:data:`METHOD_OVERRIDES`, or a custom
        profile's own, inherited from its base); :data:`~osad_lib.profiles.methods.EMPTY` where it
        runs the defaults."""
        name = choose("method", name, METHOD_OVERRIDES)
        if self.method_settings is not None:
            return self.method_settings.get(name, EMPTY)
        return METHOD_OVERRIDES[name].get(self.overrides_of or self.name, EMPTY)


def _studies(studies: tuple[str, ...], options: Mapping[str, Mapping[str, Any]]) -> MethodSettings:
    """The ablations' settings: the studies run by default, and each study's options as its part."""
    return MethodSettings(grid={"studies": studies}, parts={k: MethodSettings(grid=v) for k, v in options.items()})


#: Per method, per profile: overrides of the method's paper defaults (its ``*Config`` dataclass),
#: its notebook's grid options and its parts, typed (:class:`osad_lib.profiles.methods.MethodSettings`).
#: The paper profile overrides nothing unless a paper default cannot run as written.
METHOD_OVERRIDES: dict[str, dict[str, MethodSettings]] = {
    "devnet": {
        # config: osad_lib.methods.devnet.model.DevNetConfig fields; grid: GRID_OPTIONS["devnet"].
        # smoke: one baseline (MINNS, in all three DevNet tables) to exercise the wiring in CI.
        "smoke": MethodSettings(grid={"max_seen_classes": 2, "methods": ("devnet", "flos", "minns")}),
        # ImageNet EfficientNet-Lite0 at 160 px whose stem (everything up to block 14) is frozen and
        # cached once per image; its last block and 1x1 head convolution are fine-tuned with
        # DevNet's head (frozen_stages=4), so DevNet learns its own features (AHL(DevNet) reads
        # them). The 8 exact rotations/flips of the labelled anomalies (their stems cached too)
        # replace RandomRotation(180); the paper's lr 1e-3 (the code's 2e-4 moves too little in
        # 6x10 steps of 16+16). DevNet runs the profile's 5 seeds (the paired verdicts of 02/05);
        # FLOS and the baselines (on the same trainable block) fewer. PatchCore (no training) on
        # Table 2 only, the general setting AHL Table 4 reads.
        "demo": MethodSettings(
            config={"frozen_stages": 4, "dihedral": True, "rotation_degrees": 0.0, "lr": 1e-3, "epochs": 6,
                    "steps_per_epoch": 10, "batch_size": 32, "lr_step_size": 5},
            grid={"methods": ("devnet", "flos", "deepsvdd", "deepsad", "minns", "patchcore"),
                  "method_tables": {"patchcore": ("table2",)},
                  "method_seeds": {"flos": 3, "deepsvdd": 2, "deepsad": 2, "minns": 2, "patchcore": 2},
                  "table_seeds": {"table4": 2}}),
    },
    "dra": {
        # config: osad_lib.methods.dra.DRAConfig fields; grid: GRID_OPTIONS["dra"].
        # smoke: Tables 7/8 (Deep SAD, MINNS) at the smoke's 5 shots; one clean DRA run beside the faithful one.
        "smoke": MethodSettings(
            config={"epochs": 2, "steps_per_epoch": 2, "batch_size": 12},
            grid={"hard_n_shots": (5,), "max_seen_classes": 2, "methods": ("dra", "devnet", "mlep", "deepsad", "minns"),
                  "appendix_n_shots": 5, "clean_runs": (("general", 5),)}),
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
        "demo": MethodSettings(
            config={"frozen_stages": 4, "cache_stems": True, "dihedral": True, "composite_channels": 128,
                    "rotation_degrees": 0.0, "lr": 1e-3, "epochs": 6, "steps_per_epoch": 10, "batch_size": 48,
                    "lr_step_size": 5},
            grid={"hard_n_shots": (10,), "methods": ("dra", "devnet", "mlep", "deepsad", "minns"),
                  "extra_hard": (("synthetic/object", 5, 1),),
                  "method_seeds": {"mlep": 1, "deepsad": 2, "minns": 2}, "one_shot_seeds": 2, "clean_seeds": 2}),
    },
    "bgad": {
        # config: osad_lib.methods.bgad.BGADConfig fields (and its loss's); grid: GRID_OPTIONS["bgad"].
        "smoke": MethodSettings(
            config={"backbone": "efficientnet_lite0", "weights": "imagenet", "image_size": 64, "meta_epochs": 2,
                    "sub_epochs": 1, "batch_size": 8, "chunk_size": 512, "warmup_epochs": 0, "standardize": True},
            grid={"table1_datasets": ("synthetic",), "table2_datasets": (), "table3_datasets": ("synthetic",)}),
        "demo": MethodSettings(
            config={"backbone": "efficientnet_lite0", "weights": "imagenet", "image_size": 128, "pos_embed_dim": 32,
                    "coupling_blocks": 4, "meta_epochs": 4, "sub_epochs": 1, "lr": 1e-3, "chunk_size": 1024,
                    "warmup_epochs": 1, "standardize": True},
            grid={"max_train_normals": 500, "table1_datasets": ("synthetic",), "table2_datasets": (),
                  "table3_datasets": ("elpv",)}),
    },
    "anoonly": {
        # config: osad_lib.experiments.anoonly.AnoOnlyConfig fields (its grid is part of that config)
        "smoke": MethodSettings(config={
            "files": ("MVTec-AD_bottle", "MVTec-AD_toothbrush"), "schedule": 0.1, "factors": ("l2=0",),
            "head_options": {"feawad": {"batch_size": 64, "pretrain_epochs": 2, "steps_per_epoch": 5},
                             "prenet": {"batch_size": 64, "n_score_refs": 5}},
            # image DevNet +- AnoOnly (beyond the paper): synthetic weave, general setting only
            "image_datasets": ("synthetic",), "image_settings": ("general",),
        }),
        # demo: 1 seed and a fifth of the schedule (FEAWAD: batch 128, 5 AE epochs) so that the
        # whole notebook fits in ~6 min on 2 CPU cores; the paper schedule is the paper profile.
        # Data settings: clean organisation with both splits, contaminated with the paper's split.
        # Fidelity factors on the two cheap heads: the official code's behaviours at once (Deep SAD,
        # DevNet; DevNet's is its loss) and Deep SAD's two one at a time (~33 CPU-s per MVTec file
        # with the three data settings); image DevNet +- AnoOnly on ELPV (general, hard mono/poly)
        # over the profile's 3 seeds with DevNet's demo settings.
        "demo": MethodSettings(config={
            "groups": ("mvtecad", "cifar10", "svhn"), "schedule": 0.2, "max_seeds": 1,
            "head_options": {"feawad": {"batch_size": 128, "pretrain_epochs": 5}},
            "factors": ("code", "lr=1e-4", "norm=bn_no_affine"),
            "factor_heads": ("deepsad", "devnet"),
        }),
    },
    "ahl": {
        # config: osad_lib.methods.ahl.config.AHLConfig fields; grid: GRID_OPTIONS["ahl"]; parts
        # "devnet" / "dra": AHLConfig fields for that base model only.
        "smoke": MethodSettings(
            config={"epochs": 3, "inner_steps": 2, "query_steps": 1, "batch_size": 12, "sequence_length": 2,
                    "psi_steps": 2, "psi_pool_size": 96},
            grid={"settings": ("general",), "general_n_shots": (5,)}),
        # On the base models 01/02 trained (the run's model store) and their fine-tuned features;
        # g starts from the base heads (init=base) and takes one meta-step per epoch; the base models
        # learn with Adam (paper §4.1) at the base models' own demo lr (1e-3, as the paper's 2e-4 is
        # the official base code's) for 5 support batches of 24 per task and epoch (a relative
        # change of ~2 %), 2 query batches; psi on 256 pool samples; HADG on a seeded subset of 300
        # training normals. The splits of 02 at 10 shots (ELPV general, hard mono/poly) and the
        # synthetic/object hard setting.
        "demo": MethodSettings(
            config={"epochs": 10, "inner_steps": 5, "query_steps": 2, "batch_size": 24, "base_lr": 1e-3,
                    "psi_pool_size": 256},
            grid={"max_normals": 300, "general_n_shots": (10,), "hard_n_shots": (10,)}),
    },
    "cross_domain": {
        # notebook 07_cross_domain: grid = options of osad_lib.experiments.cross_domain.DEFAULTS
        # (the paper profile uses them as they are: five MVTec textures, 10 fine-tuning epochs);
        # DRA and AHL take their own entries' settings, the part "ahl" overrides AHL's for this
        # notebook. Synthetic subsets stand in for the domains.
        "smoke": MethodSettings(
            grid={"domains": ("synthetic/weave", "synthetic/grain"), "n_shots": 5, "max_seeds": 1,
                  "finetune_epochs": 1, "finetune_steps": 2},
            parts={"ahl": MethodSettings(config={"n_clusters": 2})}),
        # demo: one seed; fine-tuning 10 epochs x 2 steps and AHL 5 epochs (half of 05_ahl's 10).
        "demo": MethodSettings(
            grid={"domains": ("synthetic/weave", "synthetic/grain", "synthetic/object"), "max_seeds": 1,
                  "finetune_steps": 2},
            parts={"ahl": MethodSettings(config={"epochs": 5})}),
    },
    "ablations": {
        # notebook 06_ablations: grid "studies" = the study keys run by default (empty: all), and
        # one part per study key: that study's options (see osad_lib.experiments.ablations).
        "smoke": _studies((), {
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
        }),
        # demo: every study except the four costliest (DRA Table 4 and Fig. 3, AHL Table 9 and
        # Fig. 4: ~40 CPU-min together on 2 cores) and BGAD's standardisation study (beyond the
        # paper); run them with studies=dra_table4,... .
        "demo": _studies(("devnet_table5", "devnet_fig6", "devnet_fig7", "devnet_fig8", "dra_table3", "bgad_table4",
                          "bgad_table5", "bgad_table6", "anoonly_table2", "anoonly_fig5", "anoonly_fig6",
                          "anoonly_fig7", "anoonly_fig8", "anoonly_fig9", "ahl_table5", "ahl_table10", "ahl_fig3"), {
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
        }),
        "paper": _studies((), {}),
    },
    "patchcore": {
        # osad_lib.methods.baselines.patchcore.PatchCoreConfig fields. demo: memory bank from 200 training
        # normals and a 1 % coreset (paper: all normals, 10 %): the exact greedy k-center selection
        # costs O(patches x selected); on ELPV this takes ~25 CPU-s per run instead of many minutes
        # (seed 0: AUROC 0.880 vs 0.877 with a 10 % coreset of the same 200 normals).
        "demo": MethodSettings(config={"max_train_images": 200, "coreset_ratio": 0.01}),
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
        grid_workers=False,
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
