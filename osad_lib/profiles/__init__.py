"""Run profiles (smoke, demo, paper) and the notebook configuration built from them.

Configuration flows one way: a notebook's papermill ``parameters`` cell → :func:`configure`
→ :class:`NotebookConfig` → library calls. This module is the only place where profiles are
defined; notebooks never hard-code schedules, datasets or seeds.

* ``smoke``: synthetic data, tiny images, a few steps. Every notebook in seconds; used by CI.
* ``demo``: the embedded real data (ELPV images, ADBench embeddings) and the offline pretrained
  EfficientNet-Lite0 backbone with a reduced schedule: the whole series in 24 minutes on the
  2-core development machine (README "Demo time"; ``make demo-budget`` measures it), about twice
  that on a machine half as fast.
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

Per-method settings (``Profile.method``, a :class:`MethodSettings`: config overrides, grid
options, parts) override the method's paper defaults, which live in the method's own module
(e.g. ``osad_lib.methods.devnet.model.DevNetConfig``).

A **custom profile** is a TOML file (``run_all.py --profile-file``, the notebooks' ``profile_file``
parameter) naming a built-in ``base`` plus overrides of profile fields and per-method settings
(:func:`load_profile_file`); :func:`derive_profile` is the one rule of inheritance. Its name
carries a hash of its resolved settings (``headct-demo@1a2b3c4d``), so its result rows and output
folders never mix with those of other settings.

Modules: :mod:`.builtin` (the profiles), :mod:`.methods` (the typed per-method settings),
:mod:`.custom` (profile files), :mod:`.notebook` (:func:`configure`); everything is re-exported here.
"""

from osad_lib.profiles.builtin import (
    BASE_PROFILES, DATASET_FAMILY_REPRESENTATIVES, DRY_RUN_TEST_IMAGES, METHOD_OVERRIDES, PAPER_IMAGE_DATASETS,
    PROFILES, Profile,
)
from osad_lib.profiles.methods import EMPTY, GRID_OPTIONS, MethodSettings, method_settings
from osad_lib.profiles.custom import (
    CUSTOM_PROFILES, derive_profile, load_profile_file, merge_settings, settings_hash, with_datasets,
)
from osad_lib.profiles.notebook import (
    MAX_AUTO_JOBS, available_cores, check_jobs, configure, get_profile, NotebookConfig, profile_for, resolve_device,
    resolve_jobs,
)

__all__ = [
    "BASE_PROFILES", "CUSTOM_PROFILES", "DATASET_FAMILY_REPRESENTATIVES", "DRY_RUN_TEST_IMAGES", "EMPTY", "GRID_OPTIONS",
    "MAX_AUTO_JOBS", "METHOD_OVERRIDES", "MethodSettings", "NotebookConfig", "PAPER_IMAGE_DATASETS", "PROFILES", "Profile", "available_cores",
    "check_jobs", "configure", "derive_profile", "get_profile", "load_profile_file", "merge_settings", "profile_for",
    "method_settings", "resolve_device", "resolve_jobs", "settings_hash", "with_datasets",
]
