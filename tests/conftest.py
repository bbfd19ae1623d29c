"""Shared test set-up for ``make test``'s two pytest-xdist workers: each worker's torch gets its
share of the cores, and the longest file (the smoke run of the whole series) is collected first,
so its worker starts it at once while the other worker takes the remaining files."""

import os

import torch

#: Test files that set up a run of the whole series: first in line (``--dist loadfile`` hands
#: out files in collection order).
LONGEST_FIRST = ("test_notebooks.py",)

if os.environ.get("PYTEST_XDIST_WORKER"):
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: item.path.name not in LONGEST_FIRST)  # stable: the rest keep their order
