"""One loop runs every notebook's grid, in the kernel or in worker processes (osad_lib.experiments.execution)."""

from __future__ import annotations

import os

import pytest
import torch

from osad_lib.experiments import GridItem
from osad_lib.experiments.execution import group_cost, lanes, run_items, split_group
from osad_lib.profiles import MAX_AUTO_JOBS, available_cores, configure, resolve_jobs
from osad_lib.results import Experiment
from osad_lib.validate import ConfigError


def _item(seed: int, method: str = "devnet", setting: str = "general", cost: int = 1) -> GridItem:
    e = Experiment(notebook="01_devnet", paper="devnet", table="t", dataset="synthetic", subset="weave",
                   method=method, seed=seed, profile="smoke", setting=setting, n_shots=5,
                   extra_key={"name": "synthetic/weave", "seen_class": ""})
    return GridItem(e, cost, 0)


def seeded_run(cfg, item: GridItem) -> dict[str, float]:
    """A run that, like every real one, seeds itself from its experiment; it records its process."""
    generator = torch.Generator().manual_seed(item.experiment.seed * 31 + len(item.experiment.method))
    weights = torch.randn(64, 64, generator=generator)
    return {"value": float((weights @ weights.T).trace()), "pid": float(os.getpid())}


def failing_run(cfg, item: GridItem) -> dict[str, float]:
    if item.experiment.seed == 1:
        raise ValueError("seed 1 is broken")
    return {"value": float(item.experiment.seed)}


def _cfg(tmp_path, jobs: int):
    return configure("01_devnet", profile="smoke", device="cpu", output_dir=str(tmp_path), interactive=False,
                     jobs=jobs)


def test_jobs_resolve_to_one_per_core_on_the_cpu_and_one_on_a_gpu():
    assert resolve_jobs(0, "cpu") == max(1, min(MAX_AUTO_JOBS, available_cores()))
    assert resolve_jobs(0, "cuda") == 1
    assert resolve_jobs(3, "cpu") == 3
    assert resolve_jobs(0, "cpu", grid_workers=False) == 1  # the smoke profile: runs of a second each
    assert configure("01_devnet", profile="smoke", device="cpu", jobs=0).jobs == 1
    assert configure("01_devnet", profile="demo", device="cpu", jobs=0).jobs == resolve_jobs(0, "cpu")
    assert configure("01_devnet", profile="demo", device="cpu").jobs == 1  # a library call: in this process
    with pytest.raises(ConfigError, match="parameter 'jobs'.*use 0"):
        resolve_jobs(-1, "cpu")
    with pytest.raises(ConfigError, match="parameter 'jobs'"):
        configure("01_devnet", profile="smoke", device="cpu", jobs="2")


def test_items_of_one_split_share_a_group_and_other_splits_do_not():
    a, b = _item(0, "devnet"), _item(0, "flos")
    assert split_group(a) == split_group(b)
    assert split_group(a) != split_group(_item(1))
    assert split_group(a) != split_group(_item(0, setting="hard"))


def test_lanes_are_dealt_from_the_grid_alone_largest_group_first_to_the_least_loaded_lane():
    groups = [[_item(s, cost=c)] for s, c in enumerate((50, 40, 30, 20, 10, 10))]
    dealt = lanes(groups, 2)
    assert [[g[0].experiment.seed for g in lane] for lane in dealt] == [[0, 3, 4], [1, 2, 5]]
    assert [sum(group_cost(g) for g in lane) for lane in dealt] == [80, 80]
    assert lanes(groups, 2) == dealt  # no timing, no randomness
    unknown = [[_item(s, cost=0)] for s in range(4)]  # no planned costs: dealt in turn
    assert [len(lane) for lane in lanes(unknown, 3)] == [2, 1, 1]
    assert len(lanes(groups[:1], 4)) == 1  # never an idle worker started


def test_workers_store_the_same_rows_as_the_kernel_and_splits_stay_in_one_process(tmp_path):
    items = [_item(seed, method) for seed in range(3) for method in ("devnet", "flos")]
    sequential, parallel = _cfg(tmp_path / "one", 1), _cfg(tmp_path / "two", 2)
    run_items(sequential, items, seeded_run, desc="test")
    run_items(parallel, items, seeded_run, desc="test")
    one, two = (c.store.read().pivot(index="experiment_id", columns="metric", values="value")
                for c in (sequential, parallel))
    assert len(one) == len(two) == 6
    assert one["value"].sort_index().tolist() == pytest.approx(two["value"].sort_index().tolist(), rel=1e-6)
    assert set(one["pid"]) == {float(os.getpid())}  # jobs=1: in this process
    by_split = two.join(parallel.store.read().groupby("experiment_id")["seed"].first())
    assert float(os.getpid()) not in set(by_split["pid"])  # jobs=2: in workers
    assert (by_split.groupby("seed")["pid"].nunique() == 1).all()  # a split's runs in one worker


def test_a_failing_run_stops_the_grid_and_keeps_the_rows_already_stored(tmp_path):
    cfg = _cfg(tmp_path, 2)
    with pytest.raises(ValueError, match="seed 1 is broken") as raised:
        run_items(cfg, [_item(0), _item(1)], failing_run, desc="test")
    assert "in a grid worker process" in "".join(raised.value.__notes__)  # with the worker's traceback
    assert set(cfg.store.read()["seed"]) <= {0}
    run_items(cfg, [_item(0)], failing_run, desc="test")  # a rerun reuses seed 0's stored row
    assert len(cfg.store.read()) == 1
