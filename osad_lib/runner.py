"""Headless execution of the notebook series through papermill (the engine behind ``run_all.py``).

Each notebook runs in its own kernel with the standard parameters injected (``docs/conventions.md``
"Notebook execution and parameters"): unknown or missing parameters are refused before anything
runs, a failing notebook is reported with its failing cell and the saved partial notebook while the
others still run, and a notebook that finishes without writing a table or figure is treated as
failed (the silent-success trap). Resume works at two levels: a notebook that already completed with
the same parameters and the same source is skipped, and inside a notebook every experiment whose
results are stored is skipped (:meth:`osad_lib.results.ResultsStore.run_experiment`).

``osad_lib.profiles`` and ``osad_lib.headline`` import torch and every method (seconds): they
are imported inside the functions that need them, so ``run_all.py --help`` and a bad option's
one-line error come back at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import inspect
import json
import logging
import os
import resource
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from osad_lib import experiments, paths
from osad_lib.experiments import module_for
from osad_lib.data.registry import canonical_name, present_and_missing
from osad_lib.paths import atomic_write_text
from osad_lib.results import ResultsStore, store_for
from osad_lib.validate import ConfigError, choose, closest, notice, parse_seeds

NOTEBOOKS_DIR = paths.PROJECT_ROOT / "notebooks"

#: Parameters every notebook declares, injected by the runner.
STANDARD_PARAMETERS = ("profile", "device", "data_root", "seeds", "output_dir", "resume", "interactive", "datasets",
                       "profile_file")
#: How run_all.py sets each standard parameter (``-p`` refuses them, saying so).
PARAMETER_OPTIONS = {"profile": "use --profile", "device": "use --device", "data_root": "use --data-root",
                     "seeds": "use --seeds", "output_dir": "use --output-dir", "resume": "use --resume or --no-resume",
                     "interactive": "run_all.py always passes False (widgets need JupyterLab: make lab)",
                     "datasets": "use --datasets", "profile_file": "use --profile-file"}
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
    declare ``NAME`` (:func:`notebook_parameters`)."""

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

    def parameters(self, notebook: str | None = None) -> dict:
        """The papermill parameters of ``notebook`` (the standard ones when None)."""
        standard = {
            "profile": self.profile, "device": self.device, "data_root": self.data_root,
            "seeds": self.seeds, "output_dir": str(paths.output_root(self.output_dir)),
            "resume": self.resume, "interactive": False, "datasets": self.datasets, "profile_file": self.profile_file,
        }
        if notebook is None or not self.params:
            return standard
        return {**standard, **notebook_parameters(self.notebooks_dir / f"{notebook}.ipynb", self.params)}


@dataclass(frozen=True)
class NotebookOutcome:
    """One notebook of a run: status (ok | skipped | failed), wall and CPU seconds (the kernel's
    user + system time), and how many experiments it ran and found stored (reused)."""

    notebook: str
    status: str
    seconds: float
    output: Path
    message: str = ""
    cpu_seconds: float = 0.0
    experiments_run: int = 0
    experiments_reused: int = 0


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
    from osad_lib.profiles import PROFILES, get_profile, load_profile_file, resolve_device, with_datasets

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
            _grid_of(name, options)
        except ConfigError as exc:
            raise ConfigError(f"{where}{exc}") from None
        except (TypeError, KeyError, ValueError) as exc:  # a setting of the wrong kind reached a method
            raise ConfigError(f"{where}{name}: a setting is not what it expects "
                              f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None


def _configure(notebook: str, options: RunOptions, check_data: bool = False):
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


def _fingerprint(notebook_path: Path, parameters: dict) -> str:
    blob = notebook_path.read_bytes() + json.dumps(parameters, sort_keys=True).encode()
    return hashlib.sha1(blob).hexdigest()[:16]


@contextlib.contextmanager
def exclusive_run(folder: Path) -> Iterator[None]:
    """Refuse a second ``run_all.py`` on the same output folder (a lock file held while running)."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / ".run_all.lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ConfigError(f"another run_all.py is running on {folder}; wait for it or use another --output-dir") from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


TIMING_COLUMNS = ("notebook", "status", "wall_s", "cpu_s", "experiments_run", "experiments_reused", "this_run")


class RunState:
    """``runs/<profile>/run_state.json``: which notebooks completed with which fingerprint.

    A damaged file (empty, cut off, not JSON, not a mapping of notebooks) is named in one line and
    reconstructed from the results store beside it (``results/``): no notebook counts as
    completed, and those with stored results rerun only to assemble their tables and figures
    from them (every stored experiment is skipped), so nothing computed is lost.
    """

    def __init__(self, path: Path):
        self.path = path
        self.state = self._read()

    def _read(self) -> dict:
        if not self.path.exists():
            return {}
        try:
            state = json.loads(self.path.read_text())
            if isinstance(state, dict) and all(isinstance(v, dict) for v in state.values()):
                return state
            problem = "not a mapping of notebooks"
        except (OSError, ValueError) as exc:
            problem = f"{type(exc).__name__}: {str(exc)[:80]}"
        state = self._from_results()
        stored = ", ".join(f"{nb} ({entry['rows']} rows)" for nb, entry in state.items()) or "none"
        notice(f"{self.path} is damaged ({problem}); reconstructed from the results store: notebooks with stored "
               f"results ({stored}) rerun only to assemble their tables from them, the others run in full")
        try:
            atomic_write_text(self.path, json.dumps(state, indent=2, sort_keys=True))
        except OSError:
            pass  # rewritten by the next record()
        return state

    def _from_results(self) -> dict:
        state = {}
        for file in sorted((self.path.parent / "results").glob("*.csv")):
            rows = ResultsStore(file).read()
            if len(rows):
                state[file.stem] = {"fingerprint": "", "status": "reconstructed", "rows": len(rows),
                                    "message": f"run state reconstructed; {rows['experiment_id'].nunique()} experiments stored"}
        return state

    def is_done(self, notebook: str, fingerprint: str) -> bool:
        entry = self.state.get(notebook, {})
        return entry.get("status") == "ok" and entry.get("fingerprint") == fingerprint

    def record(self, notebook: str, fingerprint: str, outcome: NotebookOutcome) -> None:
        self.state[notebook] = {"fingerprint": fingerprint, "status": outcome.status,
                                "seconds": round(outcome.seconds, 1), "cpu_seconds": round(outcome.cpu_seconds, 1),
                                "experiments_run": outcome.experiments_run,
                                "experiments_reused": outcome.experiments_reused, "message": outcome.message}
        atomic_write_text(self.path, json.dumps(self.state, indent=2, sort_keys=True))


def _results_damaged(runs: Path, notebook: str) -> bool:
    """Whether the notebook's results store had damaged rows (now moved aside): then a notebook
    that completed earlier must run again to recompute their experiments."""
    return bool(ResultsStore(runs / "results" / f"{notebook}.csv").damaged_experiments())


def _newest_outputs(profile: str, output: str, since: float) -> list[Path]:
    folders = [paths.tables_dir(profile, output), paths.figures_dir(profile, output), paths.runs_dir(profile, output)]
    return [p for f in folders for p in f.glob("*") if p.is_file() and p.suffix in {".csv", ".md", ".png", ".pdf", ".html"}
            and p.stat().st_mtime >= since]


def _kernel_manager_class(log: Path) -> type:
    """A kernel manager whose kernel process writes its own stderr (the kernel's log, messages of
    C libraries, a crash) to ``log`` instead of the runner's terminal: the run's output stays one
    line per notebook, also when Ctrl-C leaves a kernel to close its sockets after the runner."""
    from jupyter_client import AsyncKernelManager

    class LoggedKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: object) -> None:
            with open(log, "wb") as handle:
                await super()._async_launch_kernel(kernel_cmd, **kw, stderr=handle)

    return LoggedKernelManager


def _below_error(record: logging.LogRecord) -> bool:
    """Keep a log record only when it is less than an error."""
    return record.levelno < logging.ERROR


@contextlib.contextmanager
def _client_log_quiet() -> Iterator[None]:
    """The notebook client's own error lines (e.g. "Kernel died while waiting for execute reply"
    when Ctrl-C reaches the kernel first) off the terminal: the runner reports every failure in
    its one line and the kernel's output is in its log file. papermill hands its client the
    "papermill" logger; the kernel manager logs through "traitlets". Warnings still show."""
    loggers = [logging.getLogger(name) for name in ("papermill", "traitlets")]
    for log in loggers:
        log.addFilter(_below_error)
    try:
        yield
    finally:
        for log in loggers:
            log.removeFilter(_below_error)


def execute_notebook(notebook: str, options: RunOptions, output_name: str | None = None) -> NotebookOutcome:
    """Execute one notebook with papermill; never raises for a failure inside the notebook.

    The executed copy goes to ``runs/<profile>/<output_name or notebook>.ipynb``, the kernel's
    own log beside it (``.kernel.log``). Ctrl-C (a ``KeyboardInterrupt`` here or in the kernel)
    propagates: the run stops and a rerun resumes.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source = options.notebooks_dir / f"{notebook}.ipynb"
    output = paths.runs_dir(options.profile, options.output_dir) / f"{output_name or notebook}.ipynb"
    output.parent.mkdir(parents=True, exist_ok=True)
    kernel_log = output.with_suffix(".kernel.log")
    start, wall = time.time(), time.perf_counter()
    env_backup = {k: os.environ.get(k) for k in KERNEL_ENV}
    os.environ.update(KERNEL_ENV)
    try:
        with _client_log_quiet():
            papermill.execute_notebook(
                str(source), str(output), parameters=options.parameters(notebook), kernel_name="python3",
                cwd=str(options.notebooks_dir), progress_bar=sys.stderr.isatty(), log_output=False,
                kernel_manager_class=_kernel_manager_class(kernel_log),
            )
    except PapermillExecutionError as exc:
        if exc.ename == "KeyboardInterrupt":  # the kernel was interrupted with the runner: stop, do not go on
            raise KeyboardInterrupt from None
        message = f"cell {exc.cell_index} (execution {exc.exec_count}) raised {exc.ename}: {exc.evalue}"
        return NotebookOutcome(notebook, "failed", time.perf_counter() - wall, output, message)
    except Exception as exc:  # kernel failed to start or died, notebook unreadable, ...
        return NotebookOutcome(notebook, "failed", time.perf_counter() - wall, output,
                               f"{type(exc).__name__}: {exc} (kernel log: {kernel_log})")
    finally:
        for key, value in env_backup.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if not _newest_outputs(options.profile, options.output_dir, start):
        return NotebookOutcome(notebook, "failed", time.perf_counter() - wall, output,
                               "finished without writing any table or figure")
    return NotebookOutcome(notebook, "ok", time.perf_counter() - wall, output)


def run_all(options: RunOptions, log=print) -> list[NotebookOutcome]:
    """Run the selected notebooks in order; return one outcome per notebook."""
    notebooks = select_notebooks(options.only, list_notebooks(options.notebooks_dir))
    for name in notebooks:
        check_parameters(options.notebooks_dir / f"{name}.ipynb")
    runs = paths.runs_dir(options.profile, options.output_dir)
    outcomes = []
    with exclusive_run(runs):
        state = RunState(runs / "run_state.json")
        for name in notebooks:
            fingerprint = _fingerprint(options.notebooks_dir / f"{name}.ipynb", options.parameters(name))
            if options.resume and state.is_done(name, fingerprint) and not _results_damaged(runs, name):
                outcome = NotebookOutcome(name, "skipped", 0.0, runs / f"{name}.ipynb", "completed earlier")
            else:
                log(f"[run_all] {name}: running (profile {options.profile})")
                for line in skipped_data(name, options):
                    log(f"[run_all]   {line}")
                outcome = _measured(name, options)
            detail = f" — {outcome.message}" if outcome.message else ""
            log(f"[run_all] {name}: {outcome.status} in {outcome.seconds:.1f} s{detail}")
            if outcome.status == "failed":
                log(f"[run_all]   partial notebook: {outcome.output}")
            if outcome.status != "skipped":  # after the log: a full disk must not hide the notebook's own error
                state.record(name, fingerprint, outcome)
            outcomes.append(outcome)
        write_timings(runs / "timings.csv", outcomes, state)
    return outcomes


def _experiment_counts(notebook: str, options: RunOptions, since: float) -> tuple[int, int]:
    """(experiments whose rows were written since ``since``, experiments found stored from before)."""
    rows = store_for(notebook, options.profile, paths.output_root(options.output_dir)).read()
    if not len(rows):
        return 0, 0
    written = pd.to_datetime(rows["timestamp"], utc=True, errors="coerce").groupby(rows["experiment_id"]).max()
    fresh = int((written >= pd.Timestamp(since, unit="s", tz="UTC").floor("s")).sum())
    return fresh, len(written) - fresh


def _measured(notebook: str, options: RunOptions) -> NotebookOutcome:
    """:func:`execute_notebook` with its kernel's CPU time (the children's rusage, reaped when the
    kernel exits) and the experiments it ran or found stored (by the rows' timestamps)."""
    start = time.time()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    outcome = execute_notebook(notebook, options)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    run, reused = _experiment_counts(notebook, options, start)
    return dataclasses.replace(outcome, cpu_seconds=cpu, experiments_run=run, experiments_reused=reused)


def write_timings(path: Path, outcomes: Sequence[NotebookOutcome], state: RunState) -> None:
    """``runs/<profile>/timings.csv``: per notebook, the wall and CPU seconds and the experiments run
    and reused of the last run that executed it (from the run state, so a resumed run or one with
    ``--only`` keeps the other notebooks' rows); ``this_run`` says whether it ran in this run."""
    ran = {o.notebook for o in outcomes if o.status != "skipped"}
    rows = []
    for notebook, entry in sorted(state.state.items()):
        if "seconds" not in entry:  # reconstructed from the results store: nothing was measured
            continue
        rows.append({"notebook": notebook, "status": entry.get("status", ""), "wall_s": entry["seconds"],
                     "cpu_s": entry.get("cpu_seconds", 0.0), "experiments_run": entry.get("experiments_run", 0),
                     "experiments_reused": entry.get("experiments_reused", 0), "this_run": notebook in ran})
    atomic_write_text(path, pd.DataFrame(rows, columns=TIMING_COLUMNS).to_csv(index=False))


def summary(outcomes: Sequence[NotebookOutcome]) -> pd.DataFrame:
    """The run's notebooks for the terminal: status, wall and CPU minutes, experiments run/reused."""
    return pd.DataFrame([{"notebook": o.notebook, "status": o.status, "wall": _minutes(o.seconds),
                          "cpu": _minutes(o.cpu_seconds), "run": o.experiments_run, "reused": o.experiments_reused,
                          "message": o.message} for o in outcomes])


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def closing_lines(options: RunOptions, outcomes: Sequence[NotebookOutcome]) -> list[str]:
    """What the terminal shows after a run: totals, the headline paper-vs-measured rows that
    08_report wrote (``tables/headline.csv``, :func:`osad_lib.headline.headline_table`: per paper its
    claim, then where it was measured, the paper's number, ours and the verdict),
    and where the report, tables and figures are."""
    runs = paths.runs_dir(options.profile, options.output_dir)
    wall, cpu = sum(o.seconds for o in outcomes), sum(o.cpu_seconds for o in outcomes)
    failed = [o.notebook for o in outcomes if o.status == "failed"]
    lines = [f"{len(outcomes)} notebooks in {_minutes(wall)} wall, {_minutes(cpu)} CPU; "
             + (f"failed: {', '.join(failed)}" if failed else "all ok")]
    headline = paths.tables_dir(options.profile, options.output_dir) / "headline.csv"
    if headline.is_file():
        lines.append("")
        lines.append(f"Headline ({options.profile} profile; full report below):")
        from osad_lib.headline import COLUMNS

        table = pd.read_csv(headline, dtype=str, keep_default_na=False)
        if set(COLUMNS) <= set(table.columns):
            for row in table.itertuples():
                lines.append(f"  {row.paper}: {row.claim}")
                lines.append(f"    {row.measured_on}: paper {row.paper_value} · ours {row.ours} · {row.verdict}")
        else:  # written by an older version
            lines.append(f"  {headline} lacks the columns {', '.join(COLUMNS)}: rerun 08_report")
    lines.append("")
    for label, path in (("report", runs / "REPORT.md"), ("report (HTML)", runs / "REPORT.html"),
                        ("tables", paths.tables_dir(options.profile, options.output_dir)),
                        ("figures", paths.figures_dir(options.profile, options.output_dir)),
                        ("timings", runs / "timings.csv")):
        if path.exists():
            lines.append(f"{label:>14}: {path}")
    return lines


def trains_something(notebook: str, options: RunOptions) -> bool:
    """False for notebooks whose grid is empty (datasets, report); True otherwise, also when unknown."""
    module = module_for(notebook)
    if module is None:
        return True
    return bool(module.grid(_configure(notebook, options)))


def plan(options: RunOptions) -> pd.DataFrame:
    """The experiment grid of every selected notebook, without running anything."""
    return plan_with_skips(options)[0]


def plan_with_skips(options: RunOptions) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """:func:`plan`, with a ``missing`` column (True for an experiment whose data are not present,
    skipped when run: :func:`osad_lib.experiments.runnable`) and per notebook the lines of
    :func:`skipped_data`."""
    frames, skipped = [], {}
    for name in select_notebooks(options.only, list_notebooks(options.notebooks_dir)):
        listed = _grid_of(name, options)
        if listed is None:
            continue
        items, ready, skipped[name] = listed
        frames.append(experiments.plan_rows(name, items, ready))
    return experiments.plan_table(frames), skipped


def skipped_data(notebook: str, options: RunOptions) -> list[str]:
    """The lines naming the datasets ``notebook`` skips under ``options`` and, when that leaves
    it nothing to train, saying so (empty when nothing is skipped)."""
    listed = _grid_of(notebook, options)
    return [] if listed is None else listed[2]


def _grid_of(notebook: str, options: RunOptions) -> tuple[list, list, list[str]] | None:
    """:func:`osad_lib.experiments.grid_of` under ``options`` (its notebook parameters included)."""
    if module_for(notebook) is None:
        return None
    given = notebook_parameters(options.notebooks_dir / f"{notebook}.ipynb", options.params)
    return experiments.grid_of(notebook, _configure(notebook, options), given)


#: Throughput of a ResNet-18 at 448 px (images/s: training step with backward, evaluation),
#: the paper setting of DevNet/DRA/AHL, used to turn a grid's image counts into hours when no
#: benchmark of this machine exists. Measured with ``python -m osad_lib.bench`` conditions: see
#: README "Performance".
REFERENCE_THROUGHPUT = {
    "cpu (2 cores)": (1.57, 5.22),  # DevNet/DRA mean, README "Performance" (2026-11-23)
}


def measured_throughput(output_dir: str | Path | None = None) -> dict[str, tuple[float, float]]:
    """Per device, the paper-setting (448 px) training and inference images/s that
    ``python -m osad_lib.bench`` measured on this machine (``runs/bench/bench.csv``: end-to-end
    training and model inference, averaged over the benchmarked methods); empty without one."""
    file = paths.output_root(output_dir) / "runs" / "bench" / "bench.csv"
    if not file.is_file():
        return {}
    table = pd.read_csv(file)
    table = table[table["name"] == "paper"]
    return {f"{device} (measured, {file})": (float(part["end_to_end_train"].mean()), float(part["model_infer"].mean()))
            for device, part in table.groupby("device")}


def estimate_seconds(grid: pd.DataFrame, image_size: int = 448,
                     throughput: dict[str, tuple[float, float]] | None = None) -> dict[str, tuple[float, str]]:
    """Time of a grid per device from its image counts: at the benchmarked rates of this machine
    (:func:`measured_throughput`, e.g. ``cuda`` after ``make bench`` on a GPU) when given, else
    :data:`REFERENCE_THROUGHPUT`; rates are at 448 px and scaled by the image area."""
    scale = (image_size / 448) ** 2
    out = {}
    for device, (train_rate, eval_rate) in (throughput or REFERENCE_THROUGHPUT).items():
        seconds = scale * (grid["train_images"].sum() / train_rate + grid["eval_images"].sum() / eval_rate)
        out[device] = (float(seconds), f"at 448 px: {train_rate:.3g} train / {eval_rate:.3g} eval images/s")
    return out
