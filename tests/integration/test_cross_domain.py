"""Cross-domain transfer (AHL §4.4 / Table 3, DRA App. C.3 / Table 9): grid, fine-tuning data, end to end."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from osad_lib import paper
from osad_lib.data.synthetic import synthetic_root
from osad_lib.data.tensors import ImageSet
from osad_lib.experiments import runnable
from osad_lib.experiments import cross_domain as ex
from osad_lib.experiments import dra as xdra
from osad_lib.methods.dra import NORMAL, PSEUDO, SEEN, DRAConfig, build_dra
from osad_lib.profiles import METHOD_OVERRIDES, configure, method_settings
from osad_lib.training import TrainConfig
from osad_lib.validate import ConfigError

TEXTURES = ("carpet", "grid", "leather", "tile", "wood")


def cells(frame: pd.DataFrame) -> set[tuple[str, str, str]]:
    """(target, source, method) of rows or paper-table rows (the variant is empty in both)."""
    assert (frame["variant"] == "").all()
    return set(zip(frame["subset"], frame["source"], frame["method"]))


def image_set(labels: list[int], size: int = 64) -> ImageSet:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (len(labels), 3, size, size), dtype=torch.uint8, generator=generator)
    classes = ["good" if label == 0 else "scratch" for label in labels]
    return ImageSet(images, torch.tensor(labels), classes, None, [f"img{i}.png" for i in range(len(labels))])


# ----------------------------------------------------------------------------- grid


def test_paper_grid_is_every_texture_pair_and_matches_both_paper_tables(monkeypatch, tmp_path):
    monkeypatch.delenv("OSAD_DATA", raising=False)
    cfg = configure("07_cross_domain", "paper", device="cpu", output_dir=str(tmp_path), check_data=False)
    assert ex.pairs(cfg) == [(f"mvtecad/{s}", f"mvtecad/{t}") for s in TEXTURES for t in TEXTURES]
    items = ex.grid(cfg)
    rows = pd.DataFrame([vars(i.experiment) for i in items])
    assert len(rows) == (50 + 20) * len(cfg.seeds)  # Table 3: 25 cells x 2 methods; Table 9: DRA off the diagonal
    table3, table9 = paper.load_table("ahl_table3"), paper.load_table("dra_table9")
    for seed in cfg.seeds:
        mine = rows[rows["seed"] == seed]
        assert cells(mine[mine["paper"] == "ahl"]) == cells(table3)
        assert cells(mine[mine["paper"] == "dra"]) == cells(table9[table9["method"] == "dra"])
    assert set(rows["setting"]) == {"cross_domain"} and rows["n_shots"].isna().all()
    dra = rows[rows["method"] == "dra"]
    assert set(dra["deviations"]) == {""} and set(dra["mode"]) == {"faithful"}  # the paper protocol as is
    ready, missing = runnable(items)
    assert not ready and missing == [f"mvtecad/{t}" for t in TEXTURES]  # no data: listed, nothing runnable
    assert all(i.train_images > 0 for i in items if i.experiment.paper == "ahl" and
               i.experiment.source != i.experiment.subset)


@pytest.mark.parametrize("profile, domains", [("smoke", ("weave", "grain")), ("demo", ("weave", "grain", "object"))])
def test_embedded_profiles_use_the_synthetic_subsets_as_domains(profile, domains, tmp_path):
    cfg = configure("07_cross_domain", profile, device="cpu", output_dir=str(tmp_path))
    assert ex.pairs(cfg) == [(f"synthetic/{s}", f"synthetic/{t}") for s in domains for t in domains]
    items, missing = runnable(ex.grid(cfg))
    assert not missing and ex.grid_seeds(cfg) == (0,)
    rows = pd.DataFrame([vars(i.experiment) for i in items])
    n = len(domains)
    assert len(rows) == 2 * n * n + n * (n - 1)
    assert set(rows["method"]) == {"dra", "ahl_dra"} and set(rows["dataset"]) == {"synthetic"}
    assert rows["deviations"].str.contains("synthetic data (no paper row)", regex=False).all()
    off = rows["source"] != rows["subset"]
    if profile == "smoke":  # fine-tuning shorter than the paper's 10 epochs is recorded, off the diagonal only
        assert rows.loc[off, "deviations"].str.contains("fine-tuning 1 epochs (paper: 10)", regex=False).all()
        assert not rows.loc[~off, "deviations"].str.contains("fine-tuning").any()


def test_unknown_option_is_a_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setitem(METHOD_OVERRIDES["cross_domain"], "smoke",
                        method_settings("cross_domain", {"domain": ("synthetic/weave",)}))
    cfg = configure("07_cross_domain", "smoke", device="cpu", output_dir=str(tmp_path), check_data=False)
    with pytest.raises(ConfigError, match="unknown cross_domain setting"):
        ex.grid(cfg)


# ----------------------------------------------------------------------------- fine-tuning data


def test_target_data_holds_no_anomaly_for_training(tmp_path):
    cfg = configure("07_cross_domain", "smoke", device="cpu", output_dir=str(tmp_path))
    normals, test, _ = ex.domain_data(cfg, "synthetic/grain", 0)
    split, _ = xdra.make_dataset_split(cfg, "synthetic/grain", "general", ex.option(cfg, "n_shots"), 0)
    assert (normals.labels == NORMAL).all() and set(normals.classes) == {"good"}
    assert set(normals.paths) == set(split.train_normal)
    assert not set(normals.paths) & {p for p, _ in split.train_anomaly}
    assert set(test.paths) == {p for p, _, _ in split.test}  # the split's test set: same as its same-domain cell


def test_normal_only_data_refuses_anomalies_and_batches_normals_and_pseudo_anomalies():
    config = DRAConfig(image_size=64, batch_size=6, n_ref=2, weights="random")
    with pytest.raises(ConfigError, match="normal images only"):
        ex.NormalOnlyData(image_set([0, 0, 0, 1]), config, seed=0)
    data = ex.NormalOnlyData(image_set([0] * 8), config, seed=0)
    batches = iter(data.sampler())
    labels = []
    for _ in range(20):
        indices = next(batches)
        assert len(indices) == 6 and set(indices) <= set(range(8))
        labels += data.batch(indices)[1].tolist()
    assert set(labels) == {NORMAL, PSEUDO}  # about half replaced by pseudo anomalies, never a seen anomaly
    assert len(data.references()) == 2


def test_finetuning_trains_a_copy_on_target_normals_only(monkeypatch):
    config = DRAConfig(image_size=64, batch_size=6, n_ref=2, weights="random")
    model = build_dra(config)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = ex.NormalOnlyData(image_set([0] * 8), config, seed=0)
    seen_labels: list[int] = []
    batch = data.batch
    monkeypatch.setattr(data, "batch", lambda idx: seen_labels.extend(batch(idx)[1].tolist()) or batch(idx))
    tuned = ex.finetune_dra(model, data, config, TrainConfig(epochs=1, steps_per_epoch=2, progress=False), seed=0)
    assert len(tuned.history) == 1 and seen_labels and SEEN not in seen_labels
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the source model is kept
    assert any(not torch.equal(before[k], v) for k, v in tuned.model.state_dict().items())
    scores = tuned.score(image_set([0, 1, 0]).images)
    assert scores["score"].shape == (3,)


# ----------------------------------------------------------------------------- figure


def test_heatmap_shows_measured_and_difference_panels():
    frame = pd.DataFrame([{"method": m, "dataset": "synthetic", "target": t, "source": s, "measured": v,
                           "paper": float("nan"), "seeds": 1}
                          for m, v in (("dra", 0.7), ("ahl_dra", 0.8)) for s in ("weave", "grain")
                          for t in ("weave", "grain")])
    fig = ex.heatmap_figure(frame)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["DRA: measured", "AHL (DRA): measured", "AHL (DRA) − DRA: measured"]
    assert fig.axes[0].get_xlabel() == "source domain (trained on)"
    assert ex.heatmap_figure(frame.iloc[:0]) is None


# ----------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_tiny_run_on_textures_named_as_mvtec_joins_both_paper_tables(monkeypatch, tmp_path):
    """Two synthetic textures under the names of MVTec textures: every cell runs (DRA and
    AHL (DRA)), its rows join AHL Table 3 and DRA Table 9, and the figure and verdict are built."""
    monkeypatch.setenv("OSAD_CACHE", str(tmp_path / "cache"))
    (tmp_path / "data" / "mvtecad").mkdir(parents=True)
    for texture, subset in (("carpet", "weave"), ("grid", "grain")):
        (tmp_path / "data" / "mvtecad" / texture).symlink_to(synthetic_root(subset), target_is_directory=True)
    monkeypatch.setitem(METHOD_OVERRIDES["dra"], "smoke", method_settings("dra", {"epochs": 1, "steps_per_epoch": 1,
                                                                              "batch_size": 6}))
    monkeypatch.setitem(METHOD_OVERRIDES["cross_domain"], "smoke", method_settings("cross_domain", {
        "domains": ("mvtecad/carpet", "mvtecad/grid"), "n_shots": 5, "max_seeds": 1, "finetune_epochs": 1,
        "finetune_steps": 1, "ahl": {"n_clusters": 2, "epochs": 2, "inner_steps": 1, "query_steps": 1}}))
    cfg = configure("07_cross_domain", "smoke", device="cpu", data_root=str(tmp_path / "data"),
                    output_dir=str(tmp_path / "out"))
    items, missing = runnable(ex.grid(cfg))
    assert not missing and len(items) == 10
    for item in items:
        cfg.store.run_experiment(item.experiment, lambda item=item: ex.run_one(cfg, item))
    rows = cfg.store.read()
    assert (rows["status"] == "ok").all() and set(rows["method"]) == {"dra", "ahl_dra"}
    auroc = rows[rows["metric"] == "auroc"]
    twice = auroc[auroc["method"] == "dra"].groupby(["subset", "source"])["value"].nunique()
    assert (twice == 1).all()  # a DRA cell stored under both papers' labels has one value

    table3 = ex.comparison(cfg, "ahl_table3")
    measured3 = table3[table3["metric"] == "auroc"]
    assert len(measured3) == 8 and measured3["paper_mean"].notna().all() and measured3["delta"].notna().all()
    table9 = ex.comparison(cfg, "dra_table9")
    dra9 = table9[(table9["method"] == "dra") & (table9["metric"] == "auroc")]
    assert cells(dra9) == {("carpet", "grid", "dra"), ("grid", "carpet", "dra")}
    assert dra9["paper_mean"].notna().all()
    kdad = table9[table9["method"] == "kdad"]
    assert set(kdad["subset"]) == {"carpet", "grid"} and (kdad["n_seeds"] == 0).all()  # paper-only references
    assert "not run (paper only)" in set(ex.display_table(table9)["measured"])

    matrices = ex.matrices(cfg)
    assert len(matrices) == 8 and matrices["paper"].notna().all()
    fig = ex.heatmap_figure(matrices)
    assert sum(bool(ax.get_title()) for ax in fig.axes) == 6  # measured and paper rows of three panels
    per_target, sentence = ex.verdict(cfg)
    assert set(per_target["target"]) == {"carpet", "grid"} and "of 2 source → target cells" in sentence
