"""Fan a notebook's grid out over GPUs or Slurm jobs through submitit (``docs/conventions.md``
"Fan-out to GPUs and Slurm").

The unit of work is a *chunk*: one notebook executed by papermill with a subset of the seeds.
Every chunk appends its experiments to the notebook's results store (appends are atomic and
file-locked, so concurrent jobs on a shared filesystem merge cleanly), and skips experiments
already stored, so a requeued or repeated job never duplicates work. After the jobs finish,
``run_all.py`` executes each notebook once more with every seed and ``resume=True``: all
experiments are then found in the store, and that pass only assembles tables and figures.

* ``--gpus N`` (local): one worker process per GPU (``CUDA_VISIBLE_DEVICES`` set per worker),
  each running its share of the chunks one after another.
* ``--executor slurm``: one Slurm array task per chunk (``slurm_array_parallelism`` caps how many
  run at once). Tests use submitit's local backend for the same code path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from osad_lib import paths
from osad_lib.runner import NotebookOutcome, RunOptions, execute_notebook


@dataclass(frozen=True)
class Chunk:
    notebook: str
    seeds: str


def chunks_for(notebooks: Sequence[str], seeds: Sequence[int]) -> list[Chunk]:
    """One chunk per (notebook, seed): the independent training runs of a grid."""
    return [Chunk(nb, str(seed)) for nb in notebooks for seed in seeds]


def run_chunks(chunks: Sequence[Chunk], options: RunOptions) -> list[NotebookOutcome]:
    """Execute chunks one after another in this process (what one job or one GPU worker does)."""
    outcomes = []
    for chunk in chunks:
        chunk_options = replace(options, seeds=chunk.seeds, resume=True)
        name = f"jobs/{chunk.notebook}__seeds-{chunk.seeds}"
        outcomes.append(execute_notebook(chunk.notebook, chunk_options, output_name=name))
    return outcomes


def _slurm_executor(folder: Path, cluster: str | None, timeout_min: int, parallelism: int):
    import submitit

    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    executor.update_parameters(timeout_min=timeout_min, gpus_per_node=1)
    if executor.cluster == "slurm":
        executor.update_parameters(slurm_array_parallelism=parallelism)
    return executor


def _gpu_worker(folder: Path, gpu: int, timeout_min: int):
    import submitit

    executor = submitit.LocalExecutor(folder=str(folder))
    executor.update_parameters(timeout_min=timeout_min, gpus_per_node=1, visible_gpus=[gpu])
    return executor


def fan_out(
    chunks: Sequence[Chunk],
    options: RunOptions,
    executor: str,
    gpus: int = 1,
    cluster: str | None = None,
    timeout_min: int = 24 * 60,
    parallelism: int = 16,
) -> list[NotebookOutcome]:
    """Run ``chunks`` through submitit and wait for them; return every chunk's outcome.

    ``executor="slurm"``: one array task per chunk (``cluster`` overrides submitit's detection,
    e.g. ``"local"`` in tests). ``executor="local"``: ``gpus`` workers, worker *i* sees GPU *i*.
    """
    folder = paths.runs_dir(options.profile, options.output_dir) / "submitit"
    if executor == "slurm":
        ex = _slurm_executor(folder, cluster, timeout_min, parallelism)
        jobs = ex.map_array(run_chunks, [[c] for c in chunks], [options] * len(chunks))
    else:
        jobs = []
        for gpu in range(gpus):
            share = list(chunks[gpu::gpus])
            if share:
                jobs.append(_gpu_worker(folder, gpu, timeout_min).submit(run_chunks, share, options))
    return [outcome for job in jobs for outcome in job.result()]
