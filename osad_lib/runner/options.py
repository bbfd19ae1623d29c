"""What a run is asked to do (:class:`RunOptions`) and every check made before anything runs:
the notebooks, their declared parameters, the options' values, the data the grids need."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path


from osad_lib import paths
from osad_lib import experiments
from osad_lib.experiments import module_for
from osad_lib.data.registry import canonical_name, present_and_missing
from osad_lib.validate import ConfigError, choose, closest, parse_seeds



NOTEBOOKS_DIR = paths.PROJECT_ROOT / "notebooks"

#: Parameters every notebook declares, injected by the runner.
STANDARD_PARAMETERS = ("profile", "device", "data_root", "seeds", "output_dir", "resume", "interactive", "datasets",
                       "profile_file", "jobs")
#: How run_all.py sets each standard parameter (``-p`` refuses them, saying so).
PARAMETER_OPTIONS = {"profile": "use --profile", "device": "use --device", "data_root": "use --data-root",
                     "seeds": "use --seeds", "output_dir": "use --output-dir", "resume": "use --resume or --no-resume",
                     "interactive": "run_all.py always passes False (widgets need JupyterLab: make lab)",
                     "datasets": "use --datasets", "profile_file": "use --profile-file", "jobs": "use --jobs"}
#: Standard parameters that change how a notebook runs, not what it computes: a finished notebook
#: is not run again when only they change (:meth:`RunOptions.fingerprint_parameters`).
EXECUTION_PARAMETERS = ("jobs",)
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")

#: glibc's allocator tuned for PyTorch on the CPU: every tensor above the (adaptive, at most
#: 32 MB) mmap threshold is otherwise mapped on allocation and unmapped on release, and freed heap
#: is trimmed back to the kernel, so each training step page-faults its large buffers in anew. In
#: the demo this was a third of all CPU time (``sys``; 01_devnet: 382 s sys beside 343 s user,
#: 106 M page faults). Raising both thresholds keeps freed memory in the process for reuse; no
#: other allocator is needed (jemalloc without decay did as well in a micro-benchmark, README
#: "Performance"). Ignored where the C library is not glibc.
ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "4294967296"}

#: Environment of the kernels: headless plotting, quiet progress bars in logs, OpenMP threads
#: that sleep instead of spinning while waiting (spinning makes 2-thread torch ~15x slower when
#: other processes share the cores), and the allocator settings above.
KERNEL_ENV = {"MPLBACKEND": "Agg", "TQDM_MININTERVAL": "15", "PYTHONUNBUFFERED": "1", "OMP_WAIT_POLICY": "PASSIVE",
              **ALLOCATOR_ENV}


@dataclass(frozen=True)
class RunOptions:
    """What ``run_all.py`` was asked to do (validated by :func:`validate_options`, after which
    ``profile`` is the name of the profile that runs: a custom one's ``name@hash`` when
    ``profile_file`` is given). ``datasets``: comma-separated registry names replacing the
    profile's image datasets; ``params``: ``-p NAME=VALUE`` pairs as typed, for the notebooks that
    declare ``NAME`` (:func:`notebook_parameters`); ``jobs``: worker processes for each notebook's
    grid (0: one per CPU core, at most four; :func:`osad_lib.profiles.resolve_jobs`)."""

    profile: str = "demo"
    only: tuple[str, ...] = ()
    device: str = "auto"
    data_root: str = ""
    seeds: str = ""
    output_dir: str = ""
    resume: bool = True
    notebooks_dir: Path = NOTEBOOKS_DIR
    profile_file: str = ""
    datasets: str = ""
    params: tuple[tuple[str, str], ...] = ()
    jobs: int = 0

    def parameters(self, notebook: str | None = None) -> dict:
        """The papermill parameters of ``notebook`` (the standard ones when None)."""
        standard = {
            "profile": self.profile, "device": self.device, "data_root": self.data_root,
            "seeds": self.seeds, "output_dir": str(paths.output_root(self.output_dir)),
            "resume": self.resume, "interactive": False, "datasets": self.datasets, "profile_file": self.profile_file,
            "jobs": self.jobs,
        }
        if notebook is None or not self.params:
            return standard
        return {**standard, **notebook_parameters(self.notebooks_dir / f"{notebook}.ipynb", self.params)}

    def fingerprint_parameters(self, notebook: str) -> dict:
        """:meth:`parameters` without :data:`EXECUTION_PARAMETERS`: what a finished notebook's
        record is compared on when a run resumes."""
        return {k: v for k, v in self.parameters(notebook).items() if k not in EXECUTION_PARAMETERS}


def list_notebooks(folder: Path = NOTEBOOKS_DIR) -> list[str]:
    """Names (without ``.ipynb``) of ``NN_*.ipynb`` notebooks, in order."""
    return sorted(p.stem for p in folder.glob("[0-9][0-9]_*.ipynb"))


def select_notebooks(only: Sequence[str], available: Sequence[str]) -> list[str]:
    """Resolve ``--only`` entries (full names or their ``NN`` prefix) against the available notebooks."""
    if not only:
        return list(available)
    chosen = []
    for entry in only:
        matches = [n for n in available if n == entry or n.split("_", 1)[0] == entry]
        if not matches:
            choose("--only", entry, available)  # raises with the closest match
        chosen.extend(m for m in matches if m not in chosen)
    return [n for n in available if n in chosen]


def validate_options(options: RunOptions, execute: bool = True) -> RunOptions:
    """Check every option of a run before any kernel starts; each failure is one ConfigError line
    naming the option (``run_all.py`` exits 2). A new option adds its check here.

    ``execute=False`` (``--plan``) leaves out what only running needs: the device, the datasets
    of a profile that needs them, and writable output and cache folders.
    """
    from osad_lib.profiles import PROFILES, check_jobs, get_profile, load_profile_file, resolve_device, with_datasets

    if options.profile_file:
        profile = load_profile_file(options.profile_file)
        options = replace(options, profile=profile.name, profile_file=profile.source)
    else:
        profile = get_profile(choose("--profile", options.profile, PROFILES))
    choose("--device", options.device, ("auto", "cpu", "cuda"))
    if any(not entry for entry in options.only):
        raise ConfigError("--only: an empty notebook name; list notebooks like --only 01_devnet,02 or leave --only out "
                          "to run them all")
    notebooks = select_notebooks(options.only, list_notebooks(options.notebooks_dir))
    check_jobs(options.jobs, "--jobs")
    if options.seeds:
        parse_seeds("--seeds", options.seeds)
    if options.datasets:
        with_datasets(profile, options.datasets, label="--datasets")
    for notebook in notebooks:
        notebook_parameters(options.notebooks_dir / f"{notebook}.ipynb", options.params)
    _check_params_declared(options.params, notebooks, options.notebooks_dir)
    _check_grids(options, notebooks)
    if not execute:
        return options
    try:
        resolve_device(options.device)
    except ConfigError:
        raise ConfigError("--device cuda: torch sees no CUDA device on this machine; use --device auto or cpu") from None
    root = paths.data_root(options.data_root)
    if root is not None and not root.is_dir():
        raise ConfigError(f"--data-root: {root} is not a directory; pass your datasets folder (or unset OSAD_DATA)")
    if profile.needs_data_root and root is None:
        raise ConfigError(f"--profile {profile.name} needs your datasets: pass --data-root DIR or set OSAD_DATA "
                          f"(--plan lists its experiments without them)")
    if options.datasets:
        _check_datasets_present(options.datasets, root)
    output = paths.output_root(options.output_dir)
    for folder in (output / "runs" / profile.name, output / "figures" / profile.name):
        paths.require_writable(folder, paths.OUTPUT_SETTING)
    paths.require_writable(paths.cache_dir(), paths.CACHE_SETTING)
    return options


def _check_datasets_present(datasets: str, root: Path | None) -> None:
    """``--datasets``: every entry must have data at hand (for ``mvtecad``, at least one
    category); a profile's own datasets that are absent are skipped instead."""
    for entry in (e.strip() for e in datasets.split(",")):
        here, missing = present_and_missing([entry], root)
        if here:
            continue
        if root is None:
            raise ConfigError(f"--datasets {entry}: not embedded; pass --data-root DIR (or set OSAD_DATA) to the "
                              f"folder that holds {missing[0]}/ in the MVTec layout")
        dataset = canonical_name(missing[0]).partition("/")[0]
        raise ConfigError(f"--datasets {entry}: not found under {root} (expected {root / missing[0]}); convert it with "
                          f"python -m osad_lib.data.prepare {dataset} SOURCE_DIR {root}, or leave it out")


def notebook_parameters(notebook_path: Path, params: Sequence[tuple[str, str]]) -> dict:
    """The ``-p NAME=VALUE`` pairs that ``notebook_path`` declares, each converted to the type of
    its parameters cell (str, int, float, bool); a bad value is a one-line ConfigError."""
    if not params:
        return {}
    import papermill

    declared = papermill.inspect_notebook(str(notebook_path))
    return {name: _typed(notebook_path.stem, name, raw, declared[name]["inferred_type_name"])
            for name, raw in params if name in declared}


def _typed(notebook: str, name: str, raw: str, kind: str) -> object:
    """``raw`` as a value of the parameter's declared type ``kind`` (papermill's inferred name)."""
    if kind == "bool":
        if raw.strip().lower() in _TRUE + _FALSE:
            return raw.strip().lower() in _TRUE
        raise ConfigError(f"-p {name}={raw}: {notebook} declares {name} as true/false; pass {name}=true or {name}=false")
    if kind in ("int", "float"):
        try:
            return int(raw) if kind == "int" else float(raw)
        except ValueError:
            example = "3" if kind == "int" else "0.05"
            raise ConfigError(f"-p {name}={raw}: {notebook} declares {name} as {kind}; pass a number, e.g. "
                              f"{name}={example}") from None
    return raw


def _check_params_declared(params: Sequence[tuple[str, str]], notebooks: Sequence[str], folder: Path) -> None:
    """Each ``-p`` name must be a parameter of a selected notebook and not a standard one."""
    if not params:
        return
    import papermill

    declared = {nb: papermill.inspect_notebook(str(folder / f"{nb}.ipynb")) for nb in notebooks}
    for name, _ in params:
        if name in PARAMETER_OPTIONS:
            raise ConfigError(f"-p {name}: a standard parameter; {PARAMETER_OPTIONS[name]}")
        if not any(name in d for d in declared.values()):
            known = sorted({p for d in declared.values() for p in d} - set(STANDARD_PARAMETERS))
            hint = closest(name, known)
            raise ConfigError(f"-p {name}: no selected notebook ({', '.join(notebooks)}) has a parameter {name!r}"
                              + (f"; did you mean {hint!r}?" if hint else "")
                              + f" (their parameters: {', '.join(known) or 'only the standard ones'}; profile and "
                              "method settings go in a --profile-file)")


def _check_grids(options: RunOptions, notebooks: Sequence[str]) -> None:
    """A profile file's per-method settings and the ``-p`` parameters that shape a grid (06's
    ``studies``) are checked by the experiment modules when they build a grid: build each affected
    notebook's grid once (as ``--plan`` does), so that a bad value is one line before anything runs."""
    for name in notebooks:
        module = module_for(name)
        shaping = set(inspect.signature(module.grid).parameters) if module is not None else set()
        if module is None or not (options.profile_file or shaping & {k for k, _ in options.params}):
            continue
        where = f"--profile-file {options.profile_file}: " if options.profile_file else ""
        try:
            notebook_grid(name, options)
        except ConfigError as exc:
            raise ConfigError(f"{where}{exc}") from None
        except (TypeError, KeyError, ValueError) as exc:  # a setting of the wrong kind reached a method
            raise ConfigError(f"{where}{name}: a setting is not what it expects "
                              f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None


def configure_notebook(notebook: str, options: RunOptions, check_data: bool = False):
    """The notebook configuration ``options`` give ``notebook`` (as its kernel will build it)."""
    from osad_lib.profiles import configure

    return configure(notebook, profile=options.profile, device=options.device, data_root=options.data_root,
                     seeds=options.seeds, output_dir=options.output_dir, check_data=check_data,
                     datasets=options.datasets, profile_file=options.profile_file)


def check_parameters(notebook_path: Path) -> None:
    """Refuse a notebook whose ``parameters`` cell lacks a standard parameter (one line)."""
    import papermill

    declared = papermill.inspect_notebook(str(notebook_path))
    if not declared:
        raise ConfigError(f"{notebook_path.name}: no cell tagged 'parameters'; tag the notebook's parameters cell")
    missing = [p for p in STANDARD_PARAMETERS if p not in declared]
    if missing:
        raise ConfigError(f"{notebook_path.name}: parameters cell lacks {missing}; add them (see notebooks/README.md)")


def notebook_grid(notebook: str, options: RunOptions) -> tuple[list, list, list[str]] | None:
    """:func:`osad_lib.experiments.grid_of` under ``options`` (its notebook parameters included)."""
    if module_for(notebook) is None:
        return None
    given = notebook_parameters(options.notebooks_dir / f"{notebook}.ipynb", options.params)
    return experiments.grid_of(notebook, configure_notebook(notebook, options), given)
