"""A notebook's parameters → its :class:`NotebookConfig` (:func:`configure`): the profile (built-in
or from a file), datasets, device, seeds and folders, each checked with a one-line error."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from osad_lib import limits, paths
from osad_lib.results import ResultsStore, device_label, store_for
from osad_lib.validate import ConfigError, choose, parse_seeds
from osad_lib.profiles.builtin import PROFILES, Profile
from osad_lib.profiles.custom import CUSTOM_PROFILES, load_profile_file
from osad_lib.profiles.custom import with_datasets


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


#: At most this many workers when ``jobs=0`` (auto): more processes mean more copies of the
#: datasets' tensors in memory for little gain on the small models of the demo.
MAX_AUTO_JOBS = 4


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def check_jobs(jobs: object, what: str = "parameter 'jobs'") -> int:
    """``jobs`` if it is a number of grid workers (0: one per core), else a one-line error naming
    ``what`` (the notebook parameter, or ``--jobs`` of run_all.py)."""
    if isinstance(jobs, bool) or not isinstance(jobs, int):
        raise ConfigError(f"{what}: expected a whole number (0: one worker per CPU core), got {jobs!r}")
    if jobs < 0:
        raise ConfigError(f"{what}: {jobs} is not a number of worker processes; use 0 (one per CPU core) "
                          "or a positive count")
    return jobs


def resolve_jobs(jobs: int, device: str, grid_workers: bool = True) -> int:
    """Worker processes for a grid: ``jobs`` when given (≥ 1), else (0, auto) one per core up to
    :data:`MAX_AUTO_JOBS` on the CPU when the profile wants them (:attr:`Profile.grid_workers`), and
    1 on a GPU (whose runs share one device)."""
    if check_jobs(jobs):
        return jobs
    return 1 if device != "cpu" or not grid_workers else max(1, min(MAX_AUTO_JOBS, available_cores()))


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
    jobs: int = 1

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
    def models_dir(self) -> Path:
        return paths.models_dir(self.profile.name, self.output_dir)

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
    jobs: int = 1,
) -> NotebookConfig:
    """Validate a notebook's papermill parameters and build its configuration.

    Every error is one line naming the parameter and the fix, raised before any work starts.
    ``check_data=False`` skips the data-root checks (used by ``run_all.py --plan``, which lists
    a profile's grid from dataset metadata without the data). ``datasets`` (comma-separated
    registry names) replaces the profile's image datasets (:func:`with_datasets`);
    ``profile_file`` names a custom profile (:func:`load_profile_file`), which then replaces
    ``profile`` (a built-in name there is ignored; the custom name that run_all.py passes must
    still be what the file resolves to). ``jobs``: worker processes for the grid (0: one per CPU
    core, at most four; :func:`resolve_jobs`).
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
    check_jobs(jobs)
    resolved = resolve_device(device)
    limits.install(prof.limits)  # the dry-run profiles' truncation, read by the shared loops
    os.environ.setdefault("MPLBACKEND", "Agg")
    return NotebookConfig(
        notebook=notebook, profile=prof, device=resolved, seeds=seed_list,
        data_root=root, output_dir=out, resume=resume, interactive=interactive,
        jobs=resolve_jobs(jobs, resolved, prof.grid_workers),
    )


def profile_for(profile: str, profile_file: str = "") -> Profile:
    """The profile of a notebook's ``profile`` and ``profile_file`` parameters (:func:`configure`)."""
    if not profile_file:
        return get_profile(profile)
    custom = load_profile_file(profile_file)
    if profile not in PROFILES and profile != custom.name:
        raise ConfigError(f"parameter 'profile_file': {profile_file} now resolves to profile {custom.name!r}, not "
                          f"{profile!r} (edited after run_all.py started?); rerun run_all.py")
    return custom
