"""Running a notebook's grid: one loop for every notebook, in this process or in worker processes.

Every notebook runs its grid items the same way: each through
:meth:`osad_lib.results.ResultsStore.run_experiment` (stored rows are reused with ``resume``, a
failed run is one row, rows are appended atomically under a file lock). With ``cfg.jobs > 1`` on
the CPU the items run in that many worker processes with one torch thread each. torch does not keep
two cores busy on the demo's small tensors: DevNet's demo grid (01, seeds 0 and 1, warm caches, 2
cores) used 1.5 cores in the kernel and took 434 s; in two single-threaded workers it took 334 s.
One thread per worker, whatever the machine, also means that the same ``jobs`` computes the same
bits on machines of the same kind whatever their core count (torch's default, a thread per core,
does not).

Items that share work stay together: they are grouped by the split they read (dataset, subset,
setting, shots, seed, seen class, source domain), and a group runs in one worker in grid order, so
a base model or feature bank that the first item of a split trains or extracts is reused by the
others, as in a sequential run. The groups are dealt to one lane per worker before any starts,
largest first to the least loaded lane (:func:`lanes`): which worker runs what never depends on
timing, so the same command gives the same numbers every time.

Every run seeds its own model, data and pseudo anomalies from its experiment. Results can still
differ in the last float bits between a run in the notebook's process and one in a worker (a
different torch thread count, a different history of earlier runs in the process), and on the
data a training run amplifies them: on the demo's 01 (seeds 0 and 1) a run in a worker differed from
the same run in the kernel by 0.003 AUROC on average and 0.038 at most (DevNet's spread over seeds
on ELPV's hard setting: ±0.046); on the smoke profile's tiny data by up to ~0.01. The smoke profile, whose
runs take about a second (less than a worker takes to start), runs in the notebook's process unless
``jobs`` says otherwise (:attr:`osad_lib.profiles.Profile.grid_workers`); its locked numbers are
those. Workers live for one grid (a notebook's, or one study of 06) and are joined at its end.
"""

from __future__ import annotations

import pickle
import queue
import traceback
from collections.abc import Callable, Mapping, Sequence
from multiprocessing import get_context
from typing import Any

import torch
from tqdm.auto import tqdm

from osad_lib import limits
from osad_lib.experiments import GridItem
from osad_lib.profiles import NotebookConfig

#: ``(cfg, item) -> {metric: value}``: how one grid item runs (each notebook module's ``run_one``).
RunOne = Callable[[NotebookConfig, GridItem], Mapping[str, float]]


def split_group(item: GridItem) -> tuple[Any, ...]:
    """What items that may share a trained model or cached features have in common: the split."""
    e = item.experiment
    extra = {k: str(e.extra_key.get(k, "")) for k in ("name", "seen_class", "source", "file")}
    return (e.dataset, e.subset, e.setting, e.n_shots, e.seed, tuple(sorted(extra.items())))


def run_items(cfg: NotebookConfig, items: Sequence[GridItem], run_one: RunOne, desc: str) -> None:
    """Run (or, with ``cfg.resume``, reuse) every item of ``items``; ``cfg.jobs > 1`` (on the CPU)
    spreads the splits' groups over that many worker processes (module docstring). The first
    failure stops the run: items not started are not run, and everything already stored stays."""
    stored = cfg.store.completed() if cfg.resume else set()
    todo = [i for i in items if i.experiment.experiment_id not in stored]
    groups = _groups(todo)
    jobs = min(cfg.jobs, len(groups))
    if cfg.device != "cpu" or limits.active().one_run_per_path:
        jobs = 1  # one GPU for every run; a CI dry run's "first run of a code path" needs grid order
    bar = tqdm(total=len(items), initial=len(items) - len(todo), desc=desc, unit="run")
    try:
        if jobs <= 1:
            for item in todo:
                _run_item(cfg, item, run_one)
                bar.update()
        else:
            _run_in_workers(cfg, groups, run_one, jobs, bar)
    finally:
        bar.close()


def _groups(items: Sequence[GridItem]) -> list[list[GridItem]]:
    """Items grouped by :func:`split_group` (grid order kept inside a group), largest first."""
    groups: dict[tuple[Any, ...], list[GridItem]] = {}
    for item in items:
        groups.setdefault(split_group(item), []).append(item)
    return sorted(groups.values(), key=lambda g: -group_cost(g))


def _run_item(cfg: NotebookConfig, item: GridItem, run_one: RunOne) -> None:
    cfg.store.run_experiment(item.experiment, lambda: run_one(cfg, item), resume=cfg.resume)


def group_cost(group: Sequence[GridItem]) -> int:
    """A group's planned image passes (:class:`GridItem`), the measure lanes are balanced on."""
    return sum(i.train_images + i.eval_images for i in group)


def lanes(groups: Sequence[Sequence[GridItem]], jobs: int) -> list[list[Sequence[GridItem]]]:
    """``groups`` (largest first) dealt to ``jobs`` lanes, each to the lane with the least planned
    work so far (then the fewest groups, then the lowest number). The deal depends on the grid
    alone, never on timing, so a worker's sequence of runs, and with it every number, is the same
    on every run of the same command."""
    dealt: list[list[Sequence[GridItem]]] = [[] for _ in range(jobs)]
    loads = [0] * jobs
    for group in groups:
        lane = min(range(jobs), key=lambda j: (loads[j], len(dealt[j]), j))
        dealt[lane].append(group)
        loads[lane] += group_cost(group)
    return [lane for lane in dealt if lane]


def _portable(exc: BaseException) -> BaseException:
    """``exc`` with the worker's traceback as a note, or a RuntimeError saying what it was when it
    cannot travel back to the notebook's process (unpicklable)."""
    exc.add_note("in a grid worker process:\n" + "".join(traceback.format_exception(exc)).rstrip())
    try:
        pickle.dumps(exc)
        return exc
    except Exception:
        return RuntimeError("".join(traceback.format_exception(exc)).rstrip())


def _run_lane(cfg: NotebookConfig, lane: Sequence[Sequence[GridItem]], run_one: RunOne,
              run_limits: limits.RunLimits, messages: Any) -> None:
    """A worker process: the groups of one lane in order, reporting each finished run, the lane's
    end, or its first failure."""
    torch.set_num_threads(1)  # module docstring: the same bits on any machine
    limits.install(run_limits)
    try:
        for group in lane:
            for item in group:
                _run_item(cfg, item, run_one)
                messages.put(("run", None))
    except BaseException as exc:  # KeyboardInterrupt too: the notebook's process decides
        messages.put(("failed", _portable(exc)))
    else:
        messages.put(("finished", None))


def _run_in_workers(cfg: NotebookConfig, groups: Sequence[Sequence[GridItem]], run_one: RunOne, jobs: int,
                    bar: Any) -> None:
    """One worker process per lane; all are joined before this returns (or raises), so their CPU
    time counts as the kernel's (``run_all.py``'s timings) and none outlives the grid."""
    context = get_context("spawn")
    messages = context.Queue()
    workers = [context.Process(target=_run_lane, args=(cfg, lane, run_one, cfg.profile.limits, messages),
                               name=f"{cfg.notebook} grid worker {n}") for n, lane in enumerate(lanes(groups, jobs))]
    for worker in workers:
        worker.start()
    running = len(workers)
    try:
        while running:
            try:
                kind, payload = messages.get(timeout=2)
            except queue.Empty:
                _check_alive(workers)
                continue
            if kind == "failed":
                raise payload
            running -= kind == "finished"
            bar.update(kind == "run")
    finally:
        for worker in workers:
            if worker.is_alive() and running:
                worker.terminate()  # after a failure: its run in flight is lost, stored rows are whole
            worker.join()


def _check_alive(processes: Sequence[Any]) -> None:
    dead = [p for p in processes if p.exitcode not in (None, 0)]
    if dead:
        raise RuntimeError(f"{dead[0].name} ended with exit code {dead[0].exitcode} (killed, or out of memory?); "
                           "the experiments stored so far are kept: rerun to resume, with --jobs 1 to run in the "
                           "notebook's own process")


__all__ = ["RunOne", "group_cost", "lanes", "run_items", "split_group"]
