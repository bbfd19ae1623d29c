"""Shared test set-up of the three tiers (``tests/unit``, ``tests/integration``, ``tests/notebooks``;
``docs/architecture.md`` "Tests in three tiers") for ``make test``'s two pytest-xdist workers: each
worker's torch gets its share of the cores, and the files that run the whole series (the smoke
run, the paper profile's dry run) are collected first, so a worker
starts each at once and the remaining files fill in behind them."""

import os
import sys

import pytest
import torch

from series import SeriesRun, shared_smoke_series

#: Test files that set up a run of the whole series, longest first: first in line (``--dist
#: loadfile`` hands out files in collection order).
LONGEST_FIRST = ("test_notebooks.py", "test_dry_run.py")
#: Files that only read the smoke run of the series (:func:`smoke_series`): last in line, so the
#: worker that takes them finds the run finished instead of waiting for it.
READ_THE_SERIES = ("test_ablations_devnet_dra.py", "test_ablations_ahl.py", "test_ablations_bgad_anoonly.py")

if os.environ.get("PYTEST_XDIST_WORKER"):
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_collection_modifyitems(session, config, items):
    order = {**{name: k for k, name in enumerate(LONGEST_FIRST)}, **{name: len(LONGEST_FIRST) + 1 for name in READ_THE_SERIES}}
    items.sort(key=lambda item: order.get(item.path.name, len(LONGEST_FIRST)))  # stable: the rest keep their order


@pytest.fixture(scope="session")
def smoke_series(tmp_path_factory) -> SeriesRun:
    """The smoke run of the whole series from a fresh clone, once per session for all workers."""
    return shared_smoke_series(tmp_path_factory)


@pytest.fixture(autouse=True)
def _close_figures():
    """Close every pyplot figure a test leaves open (the figure objects stay usable), so one
    worker's hundreds of tests never pile up figures (matplotlib warns past 20)."""
    yield
    pyplot = sys.modules.get("matplotlib.pyplot")  # never imported here just to close nothing
    if pyplot is not None:
        pyplot.close("all")
