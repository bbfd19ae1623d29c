"""Shared test set-up: under pytest-xdist (``make test`` runs two workers) each worker's torch
gets its share of the cores, so two workers do not oversubscribe them."""

import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
