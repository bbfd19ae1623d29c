"""Protocol invariants: general/hard settings, one-shot ⊂ ten-shot, contamination, manifests."""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest
from PIL import Image

from osad_lib.data import mvtec
from osad_lib.data.mvtec import Sample, read_mvtec_layout
from osad_lib.data.protocols import (
    Split, general_split, hard_split, make_split, pollution_count, seeded_normal_split,
)
from osad_lib.validate import ConfigError

CLASSES = {"crack": 12, "hole": 9, "scratch": 15}


def make_samples(n_train: int = 40, n_test: int = 10, classes: dict[str, int] = CLASSES) -> list[Sample]:
    samples = [Sample(f"train/good/{i:03d}.png", 0, "good", None, "train") for i in range(n_train)]
    samples += [Sample(f"test/good/{i:03d}.png", 0, "good", None, "test") for i in range(n_test)]
    for cls, n in classes.items():
        samples += [Sample(f"test/{cls}/{i:03d}.png", 1, cls, f"ground_truth/{cls}/{i:03d}_mask.png", "test") for i in range(n)]
    return samples


SAMPLES = make_samples()
TRAIN_NORMAL = {s.path for s in SAMPLES if s.split == "train"}


def _test_paths(split: Split) -> set[str]:
    return {p for p, _, _ in split.test}


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("n_shots", [1, 5, 10])
def test_general_split_removes_labelled_anomalies_from_test(seed, n_shots):
    split = general_split(SAMPLES, n_shots, seed)
    labelled = {p for p, _ in split.train_anomaly}
    assert len(labelled) == n_shots
    assert not labelled & _test_paths(split)
    assert set(split.train_normal) == TRAIN_NORMAL
    assert len(split.test) == 10 + sum(CLASSES.values()) - n_shots
    # every sample is used exactly once (train normal, labelled, or test)
    assert len(TRAIN_NORMAL) + len(labelled) + len(split.test) == len(SAMPLES)
    assert all(label == (cls != "good") for _, label, cls in split.test)


def test_general_split_draws_from_all_classes():
    drawn = {cls for seed in range(20) for _, cls in general_split(SAMPLES, 3, seed).train_anomaly}
    assert drawn == set(CLASSES)


@pytest.mark.parametrize("seed", [0, 3])
def test_one_shot_is_nested_in_ten_shot_with_identical_test_set(seed):
    ten = general_split(SAMPLES, 10, seed)
    one = general_split(SAMPLES, 1, seed, nested_in=10)
    assert set(one.train_anomaly) <= set(ten.train_anomaly)
    assert one.test == ten.test
    assert one.manifest_id != ten.manifest_id
    plain_one = general_split(SAMPLES, 1, seed)  # the official code's behaviour: only the one shot leaves test
    assert len(plain_one.test) == len(ten.test) + 9


def test_hard_split_removes_whole_seen_class_from_test():
    for seen in CLASSES:
        split = hard_split(SAMPLES, seen, 5, seed=0)
        assert {cls for _, cls in split.train_anomaly} == {seen}
        assert seen not in {cls for _, _, cls in split.test}
        assert split.seen_classes == (seen,)
        assert set(split.unseen_classes) == set(CLASSES) - {seen}
        assert sum(label for _, label, _ in split.test) == sum(CLASSES.values()) - CLASSES[seen]
        one = hard_split(SAMPLES, seen, 1, seed=0, nested_in=5)
        assert set(one.train_anomaly) <= set(split.train_anomaly) and one.test == split.test


def test_general_split_seen_and_unseen_classes():
    split = general_split(make_samples(classes={"a": 5, "b": 5, "c": 5, "d": 5}), 1, 0)
    assert len(split.seen_classes) == 1
    assert set(split.unseen_classes) == {"a", "b", "c", "d"} - set(split.seen_classes)


def test_contamination_count_formula_and_placement():
    rate = 0.1
    split = general_split(SAMPLES, 2, 0, contamination=rate)
    expected = int(40 / (1 - rate) * rate)  # DRA: nPollution = int(N_normal / (1 - rate) * rate) = 4
    assert pollution_count(40, rate) == expected == 4
    contaminating = {p for p, _ in split.train_contamination}
    assert len(contaminating) == expected
    assert not contaminating & _test_paths(split)
    assert not contaminating & {p for p, _ in split.train_anomaly}
    clean = general_split(SAMPLES, 2, 0)
    assert split.train_anomaly == clean.train_anomaly  # the labelled draw does not depend on contamination


def test_same_seed_same_manifest_regardless_of_input_order():
    shuffled = list(SAMPLES)
    random.Random(5).shuffle(shuffled)
    assert general_split(shuffled, 5, 3).manifest_id == general_split(SAMPLES, 5, 3).manifest_id
    assert hard_split(shuffled, "hole", 5, 3).manifest_id == hard_split(SAMPLES, "hole", 5, 3).manifest_id
    assert general_split(SAMPLES, 5, 3).manifest_id != general_split(SAMPLES, 5, 4).manifest_id


def _write_dataset(root, order):
    """A tiny dataset written in the given file creation order."""
    files = [("train/good", f"{i}.png") for i in range(6)] + [("test/good", f"{i}.png") for i in range(3)]
    files += [(f"test/{c}", f"{i}.png") for c in ("b_cls", "a_cls") for i in range(4)]
    for k in order(range(len(files))):
        folder, name = files[k]
        (root / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((4, 4), k, np.uint8)).save(root / folder / name)


def test_same_seed_same_manifest_on_differently_ordered_filesystems(tmp_path, monkeypatch):
    _write_dataset(tmp_path / "a", lambda r: list(r))
    _write_dataset(tmp_path / "b", lambda r: list(reversed(r)))
    first = general_split(read_mvtec_layout(tmp_path / "a"), 3, 11)
    real_listdir = os.listdir
    monkeypatch.setattr(mvtec.os, "listdir", lambda p: list(reversed(real_listdir(p))))
    second = general_split(read_mvtec_layout(tmp_path / "b"), 3, 11)
    assert first.manifest_id == second.manifest_id and first.test == second.test


def test_manifest_round_trip_and_tamper_detection(tmp_path):
    split = general_split(SAMPLES, 3, 2, contamination=0.05, nested_in=10, dataset="mvtecad", subset="carpet")
    path = split.to_json(tmp_path / "m.json")
    again = Split.from_json(path)
    assert again == split and again.manifest_id == split.manifest_id
    data = json.loads(path.read_text())
    data["test"] = data["test"][1:]
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="edited"):
        Split.from_json(path)


def test_make_split_dispatches():
    assert make_split(SAMPLES, "hard", 2, 0, seen_class="crack") == hard_split(SAMPLES, "crack", 2, 0)
    assert make_split(SAMPLES, "general", 2, 0) == general_split(SAMPLES, 2, 0)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: general_split(SAMPLES, 36, 0), "has 36 anomalies"),
        (lambda: general_split(SAMPLES, 1, 0, nested_in=40), "at most 35"),
        (lambda: general_split(SAMPLES, 0, 0), "'n_shots'"),
        (lambda: general_split(SAMPLES, 5, 0, nested_in=3), "'nested_in'"),
        (lambda: general_split(SAMPLES, 5, 0, contamination=1.0), "'contamination'"),
        (lambda: hard_split(SAMPLES, "hole", 10, 0), "'hole' of the dataset has 9 anomalies"),
        (lambda: hard_split(SAMPLES, "hloe", 1, 0), "did you mean 'hole'"),
        (lambda: hard_split(make_samples(classes={"defect": 20}), "defect", 1, 0, dataset="headct"),
         "at least two anomaly classes, but headct has only 'defect'"),
        (lambda: make_split(SAMPLES, "hard", 1, 0), "needs seen_class"),
        (lambda: make_split(SAMPLES, "hrad", 1, 0), "did you mean 'hard'"),
    ],
)
def test_bad_protocol_parameters_give_one_line_errors(call, message):
    with pytest.raises(ConfigError) as err:
        call()
    assert message in str(err.value) and "\n" not in str(err.value)


def test_seeded_normal_split_three_to_one_and_order_free():
    files = [f"cell{i:04d}.png" for i in range(1508)]
    train, test = seeded_normal_split(files, 42)
    assert (len(train), len(test)) == (1131, 377)
    assert not set(train) & set(test) and set(train) | set(test) == set(files)
    assert seeded_normal_split(list(reversed(files)), 42) == (train, test)
    assert seeded_normal_split(files, 43) != (train, test)
