"""The 00_datasets notebook's library side: dataset discovery, statistics vs paper, protocol counts, figures."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from osad_lib.data.mvtec import read_mvtec_layout
from osad_lib.data.synthetic import SyntheticConfig, write_synthetic
from osad_lib.experiments import datasets as ex
from osad_lib.profiles import configure

SMALL = SyntheticConfig(n_train=5, n_test_normal=3, n_per_class=3, image_size=32, seed=2)


def _headct(root, n_train=75, n_test=25, n_anomalies=100):
    for folder, n in (("train/good", n_train), ("test/good", n_test), ("test/defect", n_anomalies)):
        (root / folder).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / folder / f"{i:03d}.png")


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OSAD_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("OSAD_DATA", raising=False)
    return tmp_path


def test_grid_is_empty_and_datasets_follow_the_profile(cache):
    smoke = configure("00_datasets", "smoke", output_dir=str(cache / "out"))
    assert ex.grid(smoke) == []
    assert ex.present_datasets(smoke) == ["synthetic/weave", "synthetic/grain", "synthetic/object"]
    demo = configure("00_datasets", "demo", output_dir=str(cache / "out"))
    assert ex.present_datasets(demo) == ["elpv", "synthetic/weave", "synthetic/grain", "synthetic/object"]
    _headct(cache / "data" / "headct", 2, 1, 1)
    with_root = configure("00_datasets", "demo", data_root=str(cache / "data"), output_dir=str(cache / "out"))
    assert ex.present_datasets(with_root)[-1] == "headct"


def test_statistics_table_flags_differences_from_the_paper(cache):
    _headct(cache / "data" / "headct", 75, 25, 100)
    _headct(cache / "data" / "brainmri", 70, 25, 155)  # paper: 73 training normals
    write_synthetic(cache / "weave", "weave", SMALL)
    data = {n: (cache / "data" / n, read_mvtec_layout(cache / "data" / n)) for n in ("headct", "brainmri")}
    data["synthetic/weave"] = (cache / "weave", read_mvtec_layout(cache / "weave"))
    table = ex.statistics_table(data).set_index("dataset")
    assert table.loc["headct", "differs_from_paper"] == "none"
    assert table.loc["brainmri", "differs_from_paper"] == "train_normal"
    assert table.loc["brainmri", "paper_train_normal"] == 73 and table.loc["brainmri", "train_normal"] == 70
    assert table.loc["synthetic", "differs_from_paper"] == "no paper row"
    assert table.loc["synthetic", "anomalies"] == 15 and bool(table.loc["synthetic", "masks"])


def test_protocol_counts_show_seen_and_unseen(cache):
    write_synthetic(cache / "weave", "weave", SMALL)
    samples = read_mvtec_layout(cache / "weave")
    counts = ex.protocol_counts(samples, 2, 0, "hole", "synthetic", "weave")
    hard = counts[counts.setting == "hard"].set_index("class")
    assert hard.loc["hole", "train"] == 2 and hard.loc["hole", "test"] == 0 and hard.loc["hole", "status"] == "seen"
    assert (hard.drop(index=["good", "hole"])["status"] == "unseen").all()
    general = counts[counts.setting == "general"]
    assert general["train"].sum() - 5 == 2 and general[general["class"] != "good"]["test"].sum() == 15 - 2
    fig = ex.protocol_figure(counts, "t")
    assert len(fig.axes) == 2
    plt.close(fig)


def test_figures_render(cache):
    write_synthetic(cache / "object", "object", SMALL)
    samples = read_mvtec_layout(cache / "object")
    grid = ex.sample_grid("synthetic/object", cache / "object", samples, per_class=2, image_size=32)
    assert len(grid.axes) == 6 * 2
    gallery = ex.pseudo_anomaly_gallery("synthetic/object", cache / "object", samples, image_size=32, n_images=2)
    from osad_lib.data.pseudo import GENERATORS

    assert len(gallery.axes) == (len(GENERATORS) + 2) * 2  # normal row + generators + foreground row
    plt.close("all")
