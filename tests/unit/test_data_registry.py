"""Registry: names, expansion, paper metadata, and where datasets are looked for."""

from __future__ import annotations

import pytest

from osad_lib.data.registry import (
    DATASETS, canonical_name, dataset_names, hard_subset_label, local_folder, resolve, subset_info,
)
from osad_lib.validate import ConfigError


def test_dataset_names_expand_multi_subset_datasets():
    names = dataset_names(["mvtecad", "elpv", "synthetic", "btad", "elpv"])
    assert names[:15] == [f"mvtecad/{c}" for c in DATASETS["mvtecad"].subsets]
    assert names[15:] == ["elpv", "synthetic/weave", "btad/01", "btad/02", "btad/03"]
    assert dataset_names(["synthetic/*"]) == ["synthetic/weave", "synthetic/grain", "synthetic/object"]


def test_paper_statistics_add_up():
    """MVTec AD per-category counts (DevNet Table 1) sum to the dataset row; 73 classes in total."""
    cats = DATASETS["mvtecad"].subsets.values()
    total = DATASETS["mvtecad"].paper_total
    assert sum(c.paper.train_normal for c in cats) == total.train_normal == 3629
    assert sum(c.paper.test_normal for c in cats) == total.test_normal == 467
    assert sum(c.paper.anomalies for c in cats) == total.anomalies == 1258
    assert sum(len(c.anomaly_classes) for c in cats) == total.n_classes == 73
    assert all(len(c.anomaly_classes) == c.paper.n_classes for c in cats)
    elpv = subset_info("elpv").paper
    assert (elpv.train_normal, elpv.test_normal, elpv.anomalies, elpv.n_classes) == (1131, 377, 715, 2)
    assert sum(subset_info("hyperkvasir").class_counts.values()) == 757


def test_hard_setting_seen_classes_are_anomaly_classes():
    hard = {info.name: info.hard_seen_classes for d in DATASETS.values() for info in d.subsets.values() if info.hard_seen_classes}
    assert set(hard) >= {"mvtecad/carpet", "mvtecad/metal_nut", "aitex", "elpv", "mastcam", "hyperkvasir"}
    for name, seen in hard.items():
        assert set(seen) <= set(subset_info(name).anomaly_classes), name
    assert hard_subset_label("mvtecad/carpet", "metal_contamination") == "carpet/metal"
    assert hard_subset_label("aitex", "Broken_end") == "broken_end"
    assert hard_subset_label("elpv", "mono") == "mono"


def test_result_row_labels():
    assert (subset_info("synthetic").dataset, subset_info("synthetic").subset) == ("synthetic", "weave")
    assert (subset_info("elpv").dataset, subset_info("elpv").subset) == ("elpv", "")
    assert (subset_info("mvtecad/metal_nut").dataset, subset_info("mvtecad/metal_nut").subset) == ("mvtecad", "metal_nut")


def test_resolve_finds_data_under_the_convention(tmp_path):
    (tmp_path / "mvtecad" / "carpet").mkdir(parents=True)
    assert resolve("mvtecad/carpet", tmp_path) == tmp_path / "mvtecad" / "carpet"
    assert local_folder("aitex", tmp_path) == tmp_path / "aitex"


def _misplaced(tmp_path):
    (tmp_path / "AITEX").mkdir()
    return ("aitex", tmp_path), f"found {tmp_path / 'AITEX'}: rename or symlink it to {tmp_path / 'aitex'}"


def _empty_root(tmp_path):
    return ("headct", tmp_path), f"expected the folder {tmp_path / 'headct'} (data_root is empty)"


@pytest.mark.parametrize(
    "make",
    [
        lambda t: (("mvtcad/carpet", t), "did you mean 'mvtecad/carpet'?"),
        lambda t: (("elvp", None), "did you mean 'elpv'?"),
        lambda t: (("mvtecad/carpt", t), "did you mean 'mvtecad/carpet'?"),
        lambda t: (("mvtecad", t), "has 15 subsets: name one, e.g. 'mvtecad/carpet'"),
        lambda t: (("aitex", None), "pass data_root (or set OSAD_DATA)"),
        lambda t: (("sdd", t / "nope"), f"data_root {t / 'nope'} does not exist"),
        _misplaced,
        _empty_root,
    ],
)
def test_resolve_errors_are_one_line_and_helpful(tmp_path, monkeypatch, make):
    monkeypatch.delenv("OSAD_DATA", raising=False)
    (name, root), message = make(tmp_path)
    with pytest.raises(ConfigError) as err:
        resolve(name, root)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_canonical_name():
    assert canonical_name("synthetic") == "synthetic/weave"
    assert canonical_name("btad/02") == "btad/02"
    with pytest.raises(ConfigError, match="did you mean 'btad/01'"):
        canonical_name("btad/1")
