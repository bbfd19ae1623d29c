"""``run_all.py --plan``: every notebook's grid, what it would skip for missing data, and the time
it would take on this machine."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from osad_lib import experiments, paths
from osad_lib.experiments import module_for
from osad_lib.runner.options import configure_notebook, list_notebooks, RunOptions, select_notebooks
from osad_lib.runner.options import notebook_grid



def trains_something(notebook: str, options: RunOptions) -> bool:
    """False for notebooks whose grid is empty (datasets, report); True otherwise, also when unknown."""
    module = module_for(notebook)
    if module is None:
        return True
    return bool(module.grid(configure_notebook(notebook, options)))


def plan(options: RunOptions) -> pd.DataFrame:
    """The experiment grid of every selected notebook, without running anything."""
    return plan_with_skips(options)[0]


def plan_with_skips(options: RunOptions) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """:func:`plan`, with a ``missing`` column (True for an experiment whose data are not present,
    skipped when run: :func:`osad_lib.experiments.runnable`) and per notebook the lines of
    :func:`skipped_data`."""
    frames, skipped = [], {}
    for name in select_notebooks(options.only, list_notebooks(options.notebooks_dir)):
        listed = notebook_grid(name, options)
        if listed is None:
            continue
        items, ready, skipped[name] = listed
        frames.append(experiments.plan_rows(name, items, ready))
    return experiments.plan_table(frames), skipped


def skipped_data(notebook: str, options: RunOptions) -> list[str]:
    """The lines naming the datasets ``notebook`` skips under ``options`` and, when that leaves
    it nothing to train, saying so (empty when nothing is skipped)."""
    listed = notebook_grid(notebook, options)
    return [] if listed is None else listed[2]


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
