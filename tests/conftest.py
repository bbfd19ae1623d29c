"""Shared test set-up for ``make test``'s two pytest-xdist workers: each worker's torch gets its
share of the cores, and the two longest files (the smoke run of the whole series and the paper
profile's CI-sized dry run) are collected first, so each worker starts one of them at once and
the remaining files fill in behind them."""

import os

import torch

#: Test files that set up a run of the whole series, longest first: first in line (``--dist
#: loadfile`` hands out files in collection order).
LONGEST_FIRST = ("test_notebooks.py", "test_dry_run.py")

if os.environ.get("PYTEST_XDIST_WORKER"):
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_collection_modifyitems(session, config, items):
    rank = {name: k for k, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
