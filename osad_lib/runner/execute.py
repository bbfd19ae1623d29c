"""Running notebooks: each in its own kernel through papermill, a failure reported with its cell
while the others still run, the silent-success trap, and the closing summary."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import resource
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd

from osad_lib import paths
from osad_lib.results import ResultsStore, store_for
from osad_lib.runner.options import KERNEL_ENV, check_parameters, list_notebooks, RunOptions, select_notebooks
from osad_lib.runner.state import exclusive_run, notebook_fingerprint, NotebookOutcome, RunState, write_timings
from osad_lib.runner.planning import skipped_data



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
            fingerprint = notebook_fingerprint(options.notebooks_dir / f"{name}.ipynb",
                                               options.fingerprint_parameters(name))
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
