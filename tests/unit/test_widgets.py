"""Widgets: controls re-call the static figure functions with their values; headless fallbacks."""

from __future__ import annotations

import base64
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from osad_lib import plots, widgets  # noqa: E402
from osad_lib.data.synthetic import DEFECT_CLASSES, SyntheticConfig, write_synthetic  # noqa: E402
from osad_lib.results import Experiment, store_for  # noqa: E402
from osad_lib.validate import ConfigError  # noqa: E402

pytest.importorskip("ipywidgets")

SMALL = SyntheticConfig(n_train=5, n_test_normal=3, n_per_class=3, image_size=32, seed=2)


@pytest.fixture()
def data_root(tmp_path, monkeypatch):
    """``<tmp>/data`` with a tiny object dataset (5 classes, masks) and a one-class dataset."""
    monkeypatch.setenv("OSAD_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("OSAD_DATA", raising=False)
    root = tmp_path / "data"
    write_synthetic(root / "mvtecad" / "bottle", "object", SMALL)
    write_synthetic(root / "headct", "grain", SyntheticConfig(n_train=3, n_test_normal=2, n_per_class=2, image_size=32))
    for cls in DEFECT_CLASSES[1:]:  # keep one anomaly class: no hard setting possible
        for folder in ("test", "ground_truth"):
            for f in (root / "headct" / folder / cls).iterdir():
                f.unlink()
            (root / "headct" / folder / cls).rmdir()
    return root


def spy(monkeypatch, name: str) -> list[dict]:
    """Record the keyword/positional arguments of every call to ``plots.<name>``."""
    calls, real = [], getattr(plots, name)

    def wrapper(*args, **kwargs):
        calls.append({"args": args, **kwargs})
        return real(*args, **kwargs)

    monkeypatch.setattr(plots, name, wrapper)
    return calls


def controls(box) -> dict:
    """Every control inside a widget container by its description."""
    found = {}
    for child in box.children:
        if hasattr(child, "children"):
            found.update(controls(child))
        elif getattr(child, "description", ""):
            found[child.description] = child
    return found


def png(box) -> bytes:
    """The PNG shown in the widget's Output (the last child)."""
    (image,) = [o["data"]["image/png"] for o in box.children[-1].outputs if "image/png" in o.get("data", {})]
    return base64.b64decode(image)


def texts(box) -> str:
    return "".join(o.get("text", "") for o in box.children[-1].outputs)


def test_import_is_lazy_and_silent():
    code = "import sys, osad_lib.widgets; assert 'ipywidgets' not in sys.modules, 'ipywidgets imported eagerly'"
    done = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_available_datasets_lists_embedded_and_local(data_root):
    names = widgets.available_datasets(data_root)
    assert names[:4] == ["synthetic/weave", "synthetic/grain", "synthetic/object", "elpv"]
    assert set(names[4:]) == {"mvtecad/bottle", "headct"}


def test_dataset_browser_redraws_with_new_controls(data_root, monkeypatch):
    calls = spy(monkeypatch, "split_overview")
    box = widgets.dataset_browser(data_root, names=["mvtecad/bottle", "headct"], seed=3)
    c = controls(box)
    assert len(calls) == 1 and calls[0]["args"][3:8] == ("general", 3, 3, "contamination", "train")  # shots ≤ class size
    assert c["seen class"].disabled and c["n-shot"].max == 15 - 1
    first = png(box)
    c["setting"].value = "hard"
    assert calls[-1]["args"][3] == "hard" and not c["seen class"].disabled and c["n-shot"].max == 3
    c["seen class"].value = "hole"
    assert calls[-1]["args"][6] == "hole" and png(box) != first
    c["part"].value = "test"
    c["seed"].value = 7
    assert calls[-1]["args"][5:8] == (7, "hole", "test")
    c["dataset"].value = "headct"  # one class: the hard setting is refused with a one-line message
    assert c["seen class"].options == ("scratch",) and c["seen class"].disabled
    assert "at least two anomaly classes" in texts(box)


def test_split_overview_shows_the_split_parts(data_root):
    from osad_lib.data.mvtec import read_mvtec_layout

    folder = data_root / "mvtecad" / "bottle"
    samples = read_mvtec_layout(folder)
    train = plots.split_overview("mvtecad/bottle", folder, samples, "hard", 2, 0, "hole", "train", per_class=2)
    labels = [ax.get_ylabel() for ax in train.axes if ax.get_ylabel()]
    assert labels[:2] == ["good\nlabel 0", "hole (labelled)\nlabel 1"]
    bars = train.axes[-1]
    assert bars.get_xlabel() == "images (train / test)" and "hard 2-shot" in train.get_suptitle()
    test = plots.split_overview("mvtecad/bottle", folder, samples, "hard", 2, 0, "hole", "test", per_class=2)
    rows = [ax.get_ylabel().split("\n")[0] for ax in test.axes if ax.get_ylabel() and ax is not test.axes[-1]]
    assert rows == ["good"] + sorted(set(DEFECT_CLASSES) - {"hole"})  # the seen class left the test set
    plt.close("all")


def test_pseudo_playground_swaps_parameters_and_regenerates(data_root, monkeypatch):
    calls = spy(monkeypatch, "pseudo_anomaly_example")
    box = widgets.pseudo_playground(data_root, names=["headct", "mvtecad/bottle"])
    c = controls(box)
    assert c["dataset"].value == "mvtecad/bottle"  # an object dataset with masks is preferred
    assert calls[-1]["area_range"] == (0.02, 0.15) and calls[-1]["args"][3] == "cutpaste_same_image"
    first = png(box)
    c["seed"].value = 5
    assert calls[-1]["args"][4] == 5 and png(box) != first
    c["generator"].value = "draem_perlin"
    c = controls(box)
    assert set(widgets.PARAMETER_CONTROLS["draem_perlin"]) <= set(c) and "area_range" not in c
    assert calls[-1]["beta_max"] == 0.8 and calls[-1]["threshold"] == 0.5  # the generator's own defaults
    c["threshold"].value = 0.3
    assert calls[-1]["threshold"] == 0.3 and calls[-1]["args"][3] == "draem_perlin"
    c["generator"].value = "randaug_cutpaste"
    controls(box)["on_foreground"].value = True
    assert calls[-1]["on_foreground"] is True and calls[-1]["n_ops"] == 3
    c["dataset"].value = "headct"
    assert controls(box)["image"].max == 2


def test_browser_words_and_legend_are_unambiguous(data_root):
    """'contamination' is also an anomaly class (MVTec pill, the synthetic sets): the browser calls
    unlabelled training anomalies 'unlabelled'; the legend sits below the figure, clear of the axis label."""
    from osad_lib.data.mvtec import read_mvtec_layout

    folder = data_root / "mvtecad" / "bottle"
    samples = read_mvtec_layout(folder)
    fig = plots.split_overview("mvtecad/bottle", folder, samples, "hard", 2, 0, "contamination", "train", per_class=2)
    assert "contamination +" not in fig.get_suptitle() and "unlabelled anomalies" in fig.get_suptitle()
    from osad_lib.data.protocols import make_split

    items = plots._part_items(make_split(samples, "general", 2, 0, contamination=0.2), "train")
    assert {name.split(" ")[-1] for _, _, name in items} == {"good", "(unlabelled)", "(labelled)"}
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (legend,) = fig.legends
    label = fig.axes[-1].xaxis.label.get_window_extent(renderer)
    assert not legend.get_window_extent(renderer).overlaps(label)
    plt.close("all")


def test_sliders_redraw_on_release_and_titles_have_no_float_noise(data_root):
    box = widgets.pseudo_playground(data_root, names=["mvtecad/bottle"])
    browser = widgets.dataset_browser(data_root, names=["mvtecad/bottle"])
    sliders = [c for b in (box, browser) for c in controls(b).values() if "Slider" in type(c).__name__]
    assert len(sliders) >= 6 and not any(s.continuous_update for s in sliders)
    from osad_lib.data.mvtec import read_mvtec_layout

    folder = data_root / "mvtecad" / "bottle"
    fig = plots.pseudo_anomaly_example("mvtecad/bottle", folder, read_mvtec_layout(folder), aspect_ratio=0.1 + 0.2,
                                       area_range=(0.1 + 0.2, 0.5))
    assert "aspect_ratio=0.3," in fig.get_suptitle() and "area_range=(0.3, 0.5)" in fig.get_suptitle()
    plt.close("all")


def test_pseudo_anomaly_example_errors_are_one_line(data_root):
    from osad_lib.data.mvtec import read_mvtec_layout

    folder = data_root / "mvtecad" / "bottle"
    samples = read_mvtec_layout(folder)
    with pytest.raises(ConfigError, match=r"image_index.*\[0, 4\]"):
        plots.pseudo_anomaly_example("mvtecad/bottle", folder, samples, image_index=5)
    no_masks = [s.__class__(s.path, s.label, s.anomaly_class, None, s.split) for s in samples]
    with pytest.raises(ConfigError, match="no pixel masks"):
        plots.pseudo_anomaly_example("mvtecad/bottle", folder, no_masks, "randaug_cutpaste")


def score_frame(with_index: bool = False) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """10 normals < 5 seen < 5 unseen (score); the seen head separates only the seen class."""
    rng = np.random.default_rng(0)
    kind = ["normal"] * 10 + ["seen"] * 5 + ["unseen"] * 5
    score = np.r_[np.linspace(0, 1, 10), np.linspace(2, 3, 5), np.linspace(1.5, 2.5, 5)]
    frame = pd.DataFrame({"score": score, "label": [int(k != "normal") for k in kind],
                          "class": ["good"] * 10 + ["hole"] * 5 + ["stain"] * 5, "kind": kind,
                          "score_seen": np.r_[np.zeros(10), np.ones(5), np.zeros(5)] + rng.random(20) * 0.1})
    images = rng.integers(0, 256, (20, 3, 8, 8), dtype=np.uint8)
    masks = np.zeros((20, 1, 8, 8), np.uint8)
    masks[10:, :, 2:5, 2:5] = 1
    maps = rng.random((20, 8, 8)).astype(np.float32)
    if with_index:  # maps kept for three anomalies only
        frame["map_index"] = [-1] * 10 + [0, -1, 1, -1, -1, 2, -1, -1, -1, -1]
        images, masks, maps = images[:3], masks[:3], maps[:3]
    return frame, images, masks, maps


def test_score_figure_histograms_roc_and_overlay():
    import torch

    frame, images, masks, maps = score_frame()
    fig = plots.score_figure(frame, images=torch.from_numpy(images), masks=torch.from_numpy(masks), maps=torch.from_numpy(maps))
    hist_score, hist_seen, roc = fig.axes[:3]
    assert hist_score.get_xlabel() == "score" and hist_seen.get_title() == "head seen"
    assert roc.get_xlabel() == "false positive rate" and roc.get_ylabel() == "true positive rate"
    legend = [t.get_text() for t in roc.get_legend().get_texts()]
    assert legend == ["normal vs seen: AUROC 1.000", "normal vs unseen: AUROC 1.000", "normal vs all anomalies: AUROC 1.000"]
    assert "row 14: hole (seen)" in fig.axes[3].get_title()  # default pick: the highest score with a map
    head = plots.score_figure(frame, column="score_seen")
    legend = [t.get_text() for t in head.axes[-1].get_legend().get_texts()]
    assert legend[0].endswith("1.000") and float(legend[1][-5:]) < 0.9  # the seen head misses unseen classes
    assert len(head.axes) == 3  # no maps: no overlay row
    plt.close("all")


def test_score_frame_is_checked():
    frame, *_ = score_frame()
    with pytest.raises(ConfigError, match=r"lacks column\(s\) \['kind'\]"):
        plots.check_score_frame(frame.drop(columns="kind"))
    bad = frame.copy()
    bad.loc[3, "label"] = 1
    with pytest.raises(ConfigError, match="row 3: label and kind disagree"):
        plots.check_score_frame(bad)
    with pytest.raises(ConfigError, match="'kind' has \\['pseudo'\\]"):
        plots.check_score_frame(frame.assign(kind=frame["kind"].replace("seen", "pseudo")))
    indexed, images, masks, maps = score_frame(with_index=True)
    assert plots.mapped_rows(plots.check_score_frame(indexed)) == [12, 10, 15]
    with pytest.raises(ConfigError, match="row 11 has no anomaly map"):
        plots.score_figure(indexed, index=11, images=images, masks=masks, maps=maps)


def test_score_explorer_redraws_for_column_and_picked_image(monkeypatch):
    calls = spy(monkeypatch, "score_figure")
    frame, images, masks, maps = score_frame(with_index=True)
    box = widgets.score_explorer(frame, images, maps, masks, title="toy run")
    c = controls(box)
    assert [v for _, v in c["image"].options] == [12, 10, 15] and calls[-1]["args"][3] == 12
    first = png(box)
    c["image"].value = 15
    assert calls[-1]["args"][3] == 15 and png(box) != first
    c["ROC of"].value = "score_seen"
    c["bins"].value = 10
    assert calls[-1]["args"][1:3] == ("score_seen", 10)
    no_maps = controls(widgets.score_explorer(frame))
    assert no_maps["image"].disabled and no_maps["image"].options == ()


def _store_rows(output, seeds=(0, 1), values=(0.80, 0.84)):
    store = store_for("02_dra", "smoke", output)
    for seed, value in zip(seeds, values):
        e = Experiment(notebook="02_dra", paper="dra", table="table1", dataset="elpv", method="dra", seed=seed,
                       profile="smoke", setting="general", n_shots=10, backbone="resnet18")
        store.append(e.rows({"auroc": value}, 1.0))
    e = Experiment(notebook="02_dra", paper="dra", table="table1", dataset="synthetic", subset="weave", method="devnet",
                   seed=0, profile="smoke", setting="general", n_shots=10)
    store.append(e.rows({"auroc": 0.6}, 1.0))


def test_results_explorer_filters_the_comparison(tmp_path, monkeypatch):
    calls = spy(monkeypatch, "results_comparison")
    _store_rows(tmp_path)
    box = widgets.results_explorer("smoke", tmp_path)
    c = controls(box)
    assert c["paper"].options == ("dra",) and c["table"].value == "table1"
    assert [v for _, v in c["method"].options] == ["", "devnet", "dra"]
    html = box.children[-1].outputs[1]["data"]["text/html"]
    assert "0.820 ± 0.028" in html and "kdad" not in html  # mean ± std of the two seeds; measured rows only
    c["table: also unmeasured paper rows"].value = True
    assert "kdad" in box.children[-1].outputs[1]["data"]["text/html"] and calls[-1]["with_unmeasured"]
    c["method"].value = "dra"
    assert calls[-1]["method"] == "dra"
    table = calls[-2]  # the measured rows the bars show
    shown = plots.results_comparison(*table["args"], **{k: v for k, v in table.items() if k != "args"})
    assert shown["method"].tolist() == ["dra"] and shown["measured_std"].round(4).tolist() == [0.0283]


def test_static_fallbacks_render_headless(data_root, tmp_path):
    figures = [
        widgets.static_dataset_browser(data_root, names=["mvtecad/bottle"]),
        widgets.static_pseudo_playground(data_root, names=["mvtecad/bottle"]),
        widgets.static_score_explorer(*score_frame()[:1]),
        widgets.static_results_explorer("smoke", tmp_path / "empty"),
    ]
    assert matplotlib.get_backend().lower() == "agg"
    assert "general 3-shot" in figures[0].get_suptitle() and figures[0].axes[-1].get_xlabel()
    assert "cutpaste_same_image on mvtecad/bottle #0, seed 0" in figures[1].get_suptitle()
    assert figures[2].axes[-1].get_xlabel() == "false positive rate"
    assert "no stored smoke results" in figures[3].get_suptitle() and figures[3].axes[0].get_xlabel()
    _store_rows(tmp_path / "full")
    results = widgets.static_results_explorer("smoke", tmp_path / "full")
    assert results.get_suptitle() == "dra table1: measured (smoke profile) vs paper"
    assert len(results.axes[0].get_yticklabels()) == 2  # elpv dra and synthetic devnet
    plt.close("all")


def test_show_picks_widget_or_static_figure(data_root):
    fig = widgets.show(widgets.score_explorer, False, scores=score_frame()[0])
    assert isinstance(fig, plt.Figure) and not plt.fignum_exists(fig.number)  # shown once, then closed
    box = widgets.show(widgets.score_explorer, True, scores=score_frame()[0])
    assert png(box)
    with pytest.raises(ConfigError, match="not one of dataset_browser"):
        widgets.show(plots.score_figure, False)


# --------------------------------------------------------------------------------------------
# score frames of the method notebooks (BGAD 03, AHL 05)


def _bgad_maps_file(tmp_path, with_masks: bool = True):
    """A BGAD maps file (``save_maps``) of 6 normals and 3 anomalies each of two classes, one seen."""
    import torch

    from osad_lib.experiments import bgad

    rng = np.random.default_rng(1)
    paths = [f"test/good/{i:03d}.png" for i in range(6)] + [f"test/{c}/{i:03d}.png" for c in ("hole", "stain")
                                                             for i in range(3)]
    labels = np.array([0] * 6 + [1] * 6)
    maps = torch.from_numpy(rng.random((12, 8, 8)).astype(np.float32))
    maps[6:] += 2.0  # anomalies score higher
    masks = torch.zeros(12, 1, 8, 8, dtype=torch.uint8)
    masks[6:, :, 2:5, 2:5] = 1
    test = bgad.run._TestSet(None, labels, masks if with_masks else None,
                             torch.from_numpy(rng.integers(0, 256, (12, 3, 8, 8), dtype=np.uint8)), paths)
    path = tmp_path / "run.npz"
    bgad.save_maps(path, test, maps, per_class=2, n_normals=3, seen_classes={"hole"})
    return path, maps.flatten(1).max(1).values.numpy()


def test_bgad_explorer_inputs_are_a_valid_frame_with_maps(tmp_path, monkeypatch):
    from osad_lib.experiments import bgad

    path, expected = _bgad_maps_file(tmp_path)
    scores, images, maps, masks = bgad.explorer_inputs(path)
    frame = plots.check_score_frame(scores)
    assert frame["kind"].tolist() == ["normal"] * 6 + ["seen"] * 3 + ["unseen"] * 3
    assert frame["score"].to_numpy() == pytest.approx(expected, rel=1e-6)  # image score = map maximum
    assert maps.dtype == np.float16 and len(images) == len(maps) == len(masks) == 4 + 3  # 2 per class + 3 normals
    normal_scores = frame.loc[(frame["kind"] == "normal") & (frame["map_index"] >= 0), "score"]
    assert normal_scores.min() == frame.loc[:5, "score"].min() and normal_scores.max() == frame.loc[:5, "score"].max()
    for row in plots.mapped_rows(frame):  # each kept map belongs to its row
        k = frame.loc[row, "map_index"]
        assert float(maps[k].max()) == pytest.approx(frame.loc[row, "score"], rel=1e-2)
        assert masks[k].any() == (frame.loc[row, "label"] == 1)
    fig = bgad.plot_localization({"bgad_fas": path}, n=4)  # Fig. 4 reads the same file (float16 maps)
    assert len(fig.axes) == 2 * 4
    calls = spy(monkeypatch, "score_figure")
    box = widgets.score_explorer(scores, images, maps, masks, title="bgad_fas")
    c = controls(box)
    rows = [v for _, v in c["image"].options]
    assert set(rows) == set(plots.mapped_rows(frame)) and calls[-1]["args"][3] == rows[0]
    first = png(box)
    c["image"].value = rows[-1]  # the lowest-scoring normal with a map
    assert calls[-1]["args"][3] == rows[-1] and calls[-1]["args"][6] is maps and png(box) != first
    c["map opacity"].value = 0.9
    assert calls[-1]["args"][7] == 0.9
    static = widgets.static_score_explorer(scores, images, maps, masks)
    assert "ground-truth mask" in [ax.get_title() for ax in static.axes]
    no_masks = bgad.explorer_inputs(_bgad_maps_file(tmp_path / "no_masks", with_masks=False)[0])
    assert no_masks[3] is None
    assert bgad.explorer_inputs(tmp_path / "missing.npz") is None
    plt.close("all")


def test_ahl_explorer_frame_sets_ahl_beside_its_base(data_root, tmp_path):
    from types import SimpleNamespace

    from osad_lib.experiments import GridItem, ahl
    from osad_lib.profiles import configure

    cfg = configure("05_ahl", "smoke", device="cpu", data_root=str(data_root), output_dir=str(tmp_path / "out"))
    split, _ = ahl.make_dataset_split(cfg, "mvtecad/bottle", "general", 2, 0)
    labels = np.array([label for _, label, _ in split.test])
    bank = SimpleNamespace(test_labels=labels, test_classes=[c for _, _, c in split.test])

    def item(method: str, variant: str = "", seed: int = 0) -> GridItem:
        e = Experiment(notebook="05_ahl", paper="ahl", table="table1", dataset="mvtecad", subset="bottle",
                       setting="general", n_shots=2, method=method, variant=variant, seed=seed, profile="smoke",
                       manifest_id=split.manifest_id, extra_key={"name": "mvtecad/bottle", "seen_class": ""})
        return GridItem(e, 1, 1)

    items = [item("dra", ahl.BASE_VARIANT), item("ahl_dra"), item("ahl_dra", "wo_aug"), item("devnet", ahl.BASE_VARIANT),
             item("ahl_devnet")]
    assert ahl.explorer_run(cfg, items) is None  # nothing saved yet
    heads = {h: np.linspace(0, 1, len(labels)) for h in ("holistic", "seen", "pseudo", "composite")}
    ahl.run._save_scores(cfg, items[0].experiment, bank, labels * 1.0, {})
    ahl.run._save_scores(cfg, items[1].experiment, bank, labels * 2.0, heads)
    ahl.run._save_scores(cfg, items[4].experiment, bank, labels * 3.0, {})
    assert ahl.explorer_run(cfg, items) is items[1]  # AHL (DRA) first; the devnet base has no scores
    frame = plots.check_score_frame(ahl.explorer_frame(cfg, items, items[1]))
    assert plots.score_columns(frame) == ["score", "score_base", "score_holistic", "score_seen", "score_pseudo",
                                          "score_composite"]
    assert (frame["score_base"] * 2 == frame["score"]).all()
    seen = set(split.seen_classes)
    assert set(frame.loc[frame["kind"] == "seen", "class"]) == seen & set(frame["class"])
    assert not set(frame.loc[frame["kind"] == "unseen", "class"]) & seen
    fig = widgets.static_score_explorer(frame, title="AHL (DRA)")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:2] == ["final score (ROC →)", "base model"] and fig.axes[-1].get_xlabel() == "false positive rate"
    with pytest.raises(ConfigError, match="no base-model row"):
        ahl.explorer_frame(cfg, items[1:3], items[1])
    plt.close("all")
