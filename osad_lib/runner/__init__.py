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

Modules: :mod:`.options`, :mod:`.state`, :mod:`.execute`, :mod:`.planning`; everything is re-exported
here.
"""

from osad_lib.runner.options import (
    ALLOCATOR_ENV, KERNEL_ENV, NOTEBOOKS_DIR, PARAMETER_OPTIONS, STANDARD_PARAMETERS, check_parameters,
    configure_notebook, list_notebooks, notebook_grid, notebook_parameters, RunOptions, select_notebooks,
    validate_options,
)
from osad_lib.runner.state import (
    TIMING_COLUMNS, exclusive_run, notebook_fingerprint, NotebookOutcome, RunState, write_timings,
)
from osad_lib.runner.planning import (
    REFERENCE_THROUGHPUT, estimate_seconds, measured_throughput, plan, plan_with_skips, skipped_data,
    trains_something,
)
from osad_lib.runner.execute import closing_lines, execute_notebook, run_all, summary

__all__ = [
    "ALLOCATOR_ENV", "KERNEL_ENV", "NOTEBOOKS_DIR", "NotebookOutcome", "PARAMETER_OPTIONS", "REFERENCE_THROUGHPUT",
    "RunOptions", "RunState", "STANDARD_PARAMETERS", "TIMING_COLUMNS", "check_parameters", "closing_lines",
    "configure_notebook", "estimate_seconds", "exclusive_run", "execute_notebook", "list_notebooks",
    "measured_throughput", "notebook_fingerprint", "notebook_grid", "notebook_parameters", "plan",
    "plan_with_skips", "run_all", "select_notebooks", "skipped_data", "summary", "trains_something",
    "validate_options", "write_timings",
]
