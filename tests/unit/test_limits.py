"""Run limits of a dry run (osad_lib.limits) and the shared helpers that read them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from osad_lib import limits
from osad_lib.limits import RunLimits
from osad_lib.training import BalancedBatchSampler, TrainConfig, fit

DRY = RunLimits(max_steps=1, max_test_images=4, max_batch_size=4, one_run_per_path=True)
CI = RunLimits(max_steps=1, max_test_images=2, max_batch_size=2, one_run_per_path=True)


def test_nothing_is_limited_by_default():
    assert limits.active() == limits.NONE and not limits.NONE.active
    assert limits.steps(20) == 20 and limits.epochs(50, phases=7) == 50
    assert limits.batch_slots({"normal": 24, "anomaly": 24}) == {"normal": 24, "anomaly": 24}
    assert limits.test_rows(["good"] * 30 + ["cut"] * 10, seed=0) == list(range(40))
    assert list(limits.take(range(5))) == [0, 1, 2, 3, 4]


def test_a_dry_run_cuts_steps_epochs_and_batches_in_proportion():
    with limits.applied(DRY):
        assert limits.steps(20) == 1 and limits.epochs(50) == 1 and limits.epochs(50, phases=7) == 7
        assert limits.epochs(3, phases=7) == 3 and list(limits.take(iter(range(5)))) == [0]
        assert limits.batch_slots({"normal": 24, "anomaly": 24}) == {"normal": 2, "anomaly": 2}
        assert limits.batch_slots({"normal": 32, "anomaly": 16}) == {"normal": 3, "anomaly": 1}  # DRA's 2:1
        assert limits.batch_slots({"a": 40, "b": 4, "c": 4, "d": 0}) == {"a": 2, "b": 1, "c": 1, "d": 0}
        assert limits.batch_slots({"normal": 3}) == {"normal": 3}
    assert limits.active() == limits.NONE  # the block restores the previous limits


def test_every_group_keeps_a_slot_and_the_total_is_the_cap():
    with limits.applied(DRY):
        for slots in ({"a": 40, "b": 4, "c": 4}, {"a": 10, "b": 1}, {"a": 5, "b": 5, "c": 5, "d": 5, "e": 5}):
            capped = limits.batch_slots(slots)
            assert all(capped[k] >= 1 for k in slots)
            assert sum(capped.values()) == max(4, len(slots))


def test_the_truncated_test_set_keeps_every_class_in_proportion():
    classes = ["good"] * 30 + ["cut"] * 8 + ["hole"] * 2
    rows = limits.stratified_rows(classes, 8, seed=0)
    kept = [classes[i] for i in rows]
    assert rows == sorted(rows) and kept.count("good") == 6 and kept.count("cut") == 2 and kept.count("hole") == 1
    assert limits.stratified_rows(classes, 8, seed=0) == rows and limits.stratified_rows(classes, 8, seed=1) != rows
    with limits.applied(DRY):
        assert {classes[i] for i in limits.test_rows(classes, 0)} == {"good", "cut", "hole"}
    with limits.applied(CI):  # fewer images than classes: one normal, one anomaly
        kept = [classes[i] for i in limits.test_rows(classes, 0)]
        assert len(kept) == 2 and kept[0] == "good" and kept[1] in ("cut", "hole")


def test_the_code_path_is_a_method_on_a_backbone_in_a_notebook():
    key = limits.path_key
    assert key("06", "devnet", "devnet", "resnet18") != key("06", "devnet", "devnet", "alexnet")
    assert key("01", "devnet", "kdad", "vgg16") != key("02", "dra", "kdad", "vgg16")


def test_fit_runs_one_step_of_a_capped_batch_under_a_dry_run():
    model = torch.nn.Linear(2, 1)
    seen = []

    def loss_fn(m, idx):
        seen.append(len(idx))
        return m(torch.ones(len(idx), 2)).pow(2).mean()

    config = TrainConfig(epochs=50, steps_per_epoch=20, progress=False)
    sampler = lambda: BalancedBatchSampler({"a": range(40), "b": range(40, 60)}, {"a": 24, "b": 24}, 0)  # noqa: E731
    with limits.applied(DRY):
        assert len(fit(model, loss_fn, sampler(), config)) == 1
    assert seen == [4]
    seen.clear()
    fit(model, loss_fn, sampler(), TrainConfig(epochs=2, steps_per_epoch=3, progress=False))
    assert seen == [48] * 6


def test_load_split_truncates_only_the_test_set(tmp_path):
    from osad_lib.data.mvtec import read_mvtec_layout
    from osad_lib.data.protocols import make_split
    from osad_lib.data.synthetic import synthetic_root
    from osad_lib.data.tensors import load_split

    root = synthetic_root("weave")
    split = make_split(read_mvtec_layout(root), "general", 5, 0)
    train, test = load_split(split, root, 32)
    with limits.applied(DRY):
        small_train, small_test = load_split(split, root, 32)
    assert len(small_train) == len(train) and torch.equal(small_train.images, train.images)
    assert len(small_test) == 4 and small_test.classes[0] == "good" and set(small_test.labels[1:].tolist()) == {1}
    position = {p: i for i, p in enumerate(test.paths)}
    for i, path in enumerate(small_test.paths):  # the same images with the same labels
        assert torch.equal(small_test.images[i], test.images[position[path]])
        assert small_test.labels[i] == test.labels[position[path]]


def test_the_ci_dry_run_stores_one_experiment_per_code_path_and_says_dry_run(tmp_path):
    from osad_lib.results import Experiment, ResultsStore

    store = ResultsStore(tmp_path / "r.csv")
    base = dict(notebook="06", paper="devnet", table="fig6", dataset="elpv", setting="general", method="devnet",
                profile="paper-dry-run-ci", backbone="resnet18")
    first = Experiment(**base, seed=0, variant="topk=0.05")
    same_path = Experiment(**base, seed=0, variant="topk=0.2")
    other = Experiment(**{**base, "method": "flos"}, seed=0)
    with limits.applied(DRY):
        for e in (first, same_path, other):
            store.run_experiment(e, lambda: {"auroc": 0.5})
    rows = store.read()
    assert list(rows["variant"]) == ["topk=0.05", ""] and list(rows["method"]) == ["devnet", "flos"]
    assert rows["deviations"].str.startswith("dry run: 1 optimisation step").all()
    store.run_experiment(same_path, lambda: {"auroc": 0.5})  # no limits: it runs, and says nothing of a dry run
    assert store.read().iloc[-1]["deviations"] == ""
    assert np.isclose(store.read()["value"], 0.5).all()


@pytest.fixture(autouse=True)
def _no_leftover_limits():
    yield
    limits.install(limits.NONE)
