"""BGAD (Tables 4–6, the standardisation study) and AnoOnly (Table 2, Figs. 5–9) studies of notebook 06_ablations: grids
and their join keys with the paper tables, Table 5's splits, the mean-over-subsets / overall
aggregation, and a smoke run of every study (AnoOnly's need the ADBench embeddings)."""

from __future__ import annotations

import math

import matplotlib
import pandas as pd
import pytest
import torch

from osad_lib import paper
from osad_lib.data.mvtec import read_mvtec_layout
from osad_lib.data.registry import resolve
from osad_lib.experiments import ablations as ab
from osad_lib.experiments import bgad as bg
from osad_lib.experiments.ablations import anoonly as abl_ao
from osad_lib.experiments.ablations import bgad as abl_bgad
from osad_lib.experiments.ablations.base import study_rows
from osad_lib.profiles import METHOD_OVERRIDES, MethodSettings, configure
from osad_lib.results import MAX_OVER_EPOCHS_SUFFIX
from osad_lib.validate import ConfigError
from series import results_copy

matplotlib.use("Agg")

KEYS = ["dataset", "subset", "setting", "n_shots", "method", "variant"]
BGAD = ["bgad_table4", "bgad_table5", "bgad_table6"]
ANOONLY = ["anoonly_table2", "anoonly_fig5", "anoonly_fig6", "anoonly_fig7", "anoonly_fig8", "anoonly_fig9"]




def _paper_cfg(tmp_path, monkeypatch):
    """The paper profile without data (no MVTec AD) and no EfficientNet-B6 weights cached."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.delenv("OSAD_ALLOW_DOWNLOAD", raising=False)
    return configure("06_ablations", "paper", output_dir=str(tmp_path), check_data=False)


def _paper_rows(table_id: str) -> pd.DataFrame:
    return paper.load_table(table_id)


def test_studies_are_registered_in_paper_order():
    keys = [k for k in ab.STUDIES if k.startswith(("bgad_", "anoonly_"))]
    assert keys == BGAD + ["bgad_standardize"] + ANOONLY
    assert [s.key for s in ab.select(configure("06_ablations", "smoke", check_data=False), "bgad")] == [
        *BGAD, "bgad_standardize"]
    demo = configure("06_ablations", "demo", check_data=False)
    assert "bgad_standardize" not in {s.key for s in ab.select(demo)}  # on request only
    assert [s.key for s in ab.select(demo, "bgad_standardize")] == ["bgad_standardize"]


def test_standardize_study_runs_table3_elpv_cell_longer_with_labelled_variants(tmp_path, monkeypatch):
    cfg = _paper_cfg(tmp_path, monkeypatch)
    assert ab.STUDIES["bgad_standardize"].unavailable(cfg) == ""  # ELPV is embedded
    items = ab.STUDIES["bgad_standardize"].grid(cfg)
    assert len(items) == 3 * len(cfg.seeds)
    assert {(i.experiment.dataset, i.experiment.n_shots, i.experiment.method) for i in items} == {("elpv", 1, "bgad_fas")}
    configs = {i.experiment.variant: bg.bgad_config(cfg, **i.experiment.extra_key["changes"]) for i in items}
    assert {v: (c.standardize, c.set_to_none, c.meta_epochs) for v, c in configs.items()} == {
        "standardize=on": (True, True, 12), "standardize=off": (False, True, 12),
        "standardize=off,set_to_none=off": (False, False, 12)}
    assert not {i.experiment.variant for i in items} & set(_paper_rows("bgad_table3")["variant"])  # joins no cell
    faithful = next(i for i in items if i.experiment.variant == "standardize=off,set_to_none=off")
    assert "set_to_none=False (default: True; the official code" in faithful.experiment.deviations


# ------------------------------------------------------------------ BGAD grids and splits
def test_bgad_paper_grids_cover_the_paper_tables(tmp_path, monkeypatch):
    cfg = _paper_cfg(tmp_path, monkeypatch)
    assert "MVTec AD" in ab.STUDIES["bgad_table4"].unavailable(cfg)
    table4 = ab.STUDIES["bgad_table4"].grid(cfg)
    assert len(table4) == 15 * 9 * len(cfg.seeds) and not any(i.experiment.manifest_id for i in table4)
    assert {i.experiment.variant for i in table4} == set(_paper_rows("bgad_table4")["variant"])
    for item in table4[:9]:  # the variant label is the one bgad.ablation_variant writes for the run's settings
        config = bg.bgad_config(cfg, **item.experiment.extra_key["changes"])
        assert bg.ablation_variant(config, "table4") == item.experiment.variant
        assert (item.experiment.n_shots, item.experiment.method, item.experiment.setting) == (5, "bgad_fas", "general")
    table6 = ab.STUDIES["bgad_table6"].grid(cfg)
    runs6 = {(i.experiment.setting, i.experiment.n_shots, i.experiment.method, i.experiment.variant) for i in table6}
    assert runs6 == {(r.setting, r.n_shots, r.method, r.variant) for r in _paper_rows("bgad_table6").itertuples()}
    for item in table6:
        if item.experiment.variant:
            config = bg.bgad_config(cfg, **item.experiment.extra_key["changes"])
            assert bg.ablation_variant(config, "table6") == item.experiment.variant
    table5 = ab.STUDIES["bgad_table5"].grid(cfg)
    runs = {(i.experiment.setting, i.experiment.method, i.experiment.variant, i.experiment.extra_key["split"])
            for i in table5}
    assert runs == {("unsupervised", "bgad", "", "full"), ("general", "bgad_fas", "", "full"),
                    ("unsupervised", "bgad", "hard_subsets", "hard"), ("general", "bgad_fas", "hard_subsets", "hard"),
                    ("unseen", "bgad_fas", "unseen_subsets", "unseen")}
    assert {i.experiment.subset for i in table5} == set(bg.HARD_CLASSES)
    assert all(i.experiment.notebook == "06_ablations" and i.train_images > 0 for i in table4 + table5 + table6)


def test_table5_splits_test_hard_classes_and_train_on_easy_ones():
    cfg = configure("06_ablations", "smoke", check_data=False)
    name = "synthetic/object"
    hard = set(abl_bgad.hard_classes(name))
    full = abl_bgad.split_for(cfg, name, "full", 5, 0)
    hard_split = abl_bgad.split_for(cfg, name, "hard", 5, 0)
    unseen = abl_bgad.split_for(cfg, name, "unseen", 5, 0)
    tested = lambda split: {c for _, label, c in split.test if label == 1}  # noqa: E731
    assert tested(full) == {c for c in {s.anomaly_class for s in read_mvtec_layout(resolve(name))} if c != "good"}
    assert tested(hard_split) == tested(unseen) == hard
    assert {c for _, c in unseen.train_anomaly}.isdisjoint(hard) and len(unseen.train_anomaly) == 5
    assert len({c for _, c in hard_split.train_anomaly}) == 5  # stratified over every class
    with pytest.raises(ConfigError, match="hard anomaly classes"):
        abl_bgad.hard_classes("synthetic/weave")


def test_bgad_options_are_validated(monkeypatch):
    cfg = configure("06_ablations", "smoke", check_data=False)
    options = METHOD_OVERRIDES["ablations"]["smoke"].parts
    monkeypatch.setitem(options, "bgad_table4", MethodSettings(grid={"variants": ("beta=0.02,tau=0.1",)}))
    with pytest.raises(ConfigError, match="beta=0.01,tau=0.1"):
        abl_bgad.options(cfg, "table4")
    monkeypatch.setitem(options, "bgad_table6", MethodSettings(grid={"rows": ((0, "bgspp"),)}))
    with pytest.raises(ConfigError, match="unsupervised"):
        abl_bgad.options(cfg, "table6")
    monkeypatch.setitem(options, "bgad_table5", MethodSettings(grid={"subset": ("mean",)}))
    with pytest.raises(ConfigError, match="unknown key"):
        abl_bgad.options(cfg, "table5")


# ------------------------------------------------------------------ BGAD tables: means over categories, two reports
def _store_fake_runs(cfg, items, value) -> None:
    """Rows for ``items`` as run_bgad would write them: last epoch and max over epochs."""
    for item in items:
        v = value(item)
        item_metrics = {"auroc": v, "pixel_auroc": v, "pro": v - 0.1, f"auroc{MAX_OVER_EPOCHS_SUFFIX}": v + 0.01,
                        f"pixel_auroc{MAX_OVER_EPOCHS_SUFFIX}": v + 0.01, f"pro{MAX_OVER_EPOCHS_SUFFIX}": v - 0.05}
        cfg.store.append(item.experiment.rows(item_metrics, 1.0))


def test_bgad_tables_average_categories_and_join_the_paper(tmp_path, monkeypatch):
    cfg = _paper_cfg(tmp_path, monkeypatch)
    table4 = [i for i in ab.STUDIES["bgad_table4"].grid(cfg)
              if i.experiment.subset in ("carpet", "bottle") and i.experiment.variant == "beta=0.01,tau=0.1"
              and i.experiment.seed in (0, 1)]
    _store_fake_runs(cfg, table4, lambda i: 0.9 if i.experiment.subset == "carpet" else 0.8 + 0.02 * i.experiment.seed)
    out = abl_bgad.table_table4(cfg)
    row = out[(out["variant"] == "beta=0.01,tau=0.1") & (out["metric"] == "auroc")].iloc[0]
    assert row["subset"] == "mean" and row["n_seeds"] == 2
    assert row["measured_mean"] == pytest.approx(0.855) and row["paper_mean"] == pytest.approx(0.9916)
    assert row["delta"] == pytest.approx(0.855 - 0.9916) and row["max_over_epochs_mean"] == pytest.approx(0.865)
    assert row["measured_report"] == "last_epoch"
    assert "mean over 2/15 subsets (bottle, carpet)" in row["deviations"]
    assert (out["n_seeds"] == 0).sum() == len(_paper_rows("bgad_table4")) - 3  # the other paper rows follow

    table5 = [i for i in ab.STUDIES["bgad_table5"].grid(cfg)
              if i.experiment.subset == "carpet" and i.experiment.seed == 0]
    _store_fake_runs(cfg, table5, lambda i: 0.7 if i.experiment.method == "bgad" else 0.75)
    out = abl_bgad.table_table5(cfg)
    measured = out[(out["n_seeds"] > 0) & (out["metric"] == "auroc")]
    assert len(measured) == 6 and measured["paper_mean"].notna().all()  # every Table 5 cell joined
    unseen_bgad = measured[(measured["subset"] == "unseen_subsets") & (measured["method"] == "bgad")].iloc[0]
    assert unseen_bgad["measured_mean"] == pytest.approx(0.7) and "hard-subsets run" in unseen_bgad["deviations"]
    unseen_fas = measured[(measured["subset"] == "unseen_subsets") & (measured["method"] == "bgad_fas")].iloc[0]
    assert pd.isna(unseen_fas["n_shots"]) and "easy classes" in unseen_fas["deviations"]


# ------------------------------------------------------------------ AnoOnly grids and aggregation
def test_anoonly_grids_follow_the_paper(monkeypatch):
    cfg = configure("06_ablations", "smoke", check_data=False)
    options = METHOD_OVERRIDES["ablations"]["smoke"].parts
    for element in ("table2", "fig5", "fig6", "fig7", "fig8", "fig9"):
        monkeypatch.setitem(options, f"anoonly_{element}", MethodSettings(grid={"files": ("MVTec-AD_bottle",)}))
    table2 = ab.STUDIES["anoonly_table2"].grid(cfg)
    paper_variants = set(_paper_rows("anoonly_table2")["variant"])
    assert paper_variants <= {i.experiment.variant for i in table2}
    assert {(i.experiment.dataset, i.experiment.method, i.experiment.setting) for i in table2} == {
        ("mvtecad", "deepsad", "semi_supervised")}
    assert all(i.experiment.notebook == "06_ablations" and i.experiment.table == "table2" for i in table2)
    fig5 = ab.STUDIES["anoonly_fig5"].grid(cfg)
    assert len(fig5) == 4 * 7 * 2
    assert {i.experiment.extra_key["data"]["la"] for i in fig5} == set(abl_ao.ao.ABLATION_VALUES["fig5"])
    monkeypatch.setitem(options, "anoonly_fig7", MethodSettings(grid={"files": ("MVTec-AD_bottle",), "values": (1.0, 1e-6)}))
    fig7 = ab.STUDIES["anoonly_fig7"].grid(cfg)
    assert [abl_ao.swept_value("fig7", i.experiment.params) for i in fig7] == [1.0, 1e-6, 0.0]
    assert fig7[-1].experiment.variant == "anoonly,normal_weight=0"  # AnoOnly, always kept as the reference
    fig8 = ab.STUDIES["anoonly_fig8"].grid(cfg)
    assert {abl_ao.swept_value("fig8", i.experiment.params, i.experiment.setting) for i in fig8} == {
        "clean", "contaminated"}
    assert {i.experiment.variant for i in fig8} == {"", "anoonly"}  # the organisation is the setting, not a label
    monkeypatch.setitem(options, "anoonly_fig9", MethodSettings(grid={"values": (3,)}))
    with pytest.raises(ConfigError, match="paper's"):
        ab.STUDIES["anoonly_fig9"].grid(cfg)


def _row(group: str, stem: str, seed: int, value: float, variant: str = "anoonly") -> dict:
    return {"paper": "anoonly", "table": "table2", "dataset": group, "subset": stem, "setting": "semi_supervised",
            "n_shots": None, "method": "deepsad", "variant": variant, "source": "", "backbone": "resnet18", "seed": seed,
            "profile": "demo", "metric": "auroc", "value": value, "status": "ok", "deviations": ""}


def test_overall_means_average_groups_of_file_means():
    rows = pd.DataFrame([_row("mvtecad", "MVTec-AD_bottle", 0, 0.9), _row("mvtecad", "MVTec-AD_cable", 0, 0.7),
                         _row("cifar10", "CIFAR10_0", 0, 0.5), _row("cifar10", "CIFAR10_1", 0, 0.7),
                         _row("mvtecad", "MVTec-AD_bottle", 1, 1.0), _row("mvtecad", "MVTec-AD_cable", 1, 0.8),
                         _row("cifar10", "CIFAR10_0", 1, 0.3), _row("cifar10", "CIFAR10_1", 1, 0.5),
                         _row("svhn", "SVHN_0", 1, 0.9)])  # one file of a group is no group mean
    out = abl_ao.overall_means(rows).sort_values("seed")
    assert out["value"].tolist() == pytest.approx([(0.8 + 0.6) / 2, (0.9 + 0.4) / 2])
    assert set(out["dataset"]) == {"overall"} and set(out["subset"]) == {"mean"}
    assert set(out["groups"]) == {"cifar10, mvtecad"}
    assert "overall = mean over 2/10 groups (cifar10, mvtecad)" in out["deviations"].iloc[0]
    joined = paper.compare(out, "anoonly_table2")
    row = joined[(joined["variant"] == "anoonly") & (joined["n_seeds"] > 0)].iloc[0]
    assert row["paper_mean"] == pytest.approx(0.863) and row["measured_mean"] == pytest.approx(0.675)


# ------------------------------------------------------------------ smoke runs of every study
@pytest.fixture(scope="module")
def smoke_cfg(smoke_series, tmp_path_factory):
    """The smoke profile's configuration over the rows of the smoke run of the series."""
    out = results_copy(smoke_series, tmp_path_factory.mktemp("ablations"))
    return configure("06_ablations", "smoke", device="cpu", output_dir=str(out))


def _run(cfg, key):
    table, figure, why = ab.run_element(cfg, ab.STUDIES[key])
    assert why == ""
    assert figure is not None and isinstance(figure, matplotlib.figure.Figure)
    assert figure.axes[0].get_xlabel()
    rows = study_rows(cfg, *key.split("_"))
    assert len(rows) and set(rows["notebook"]) == {"06_ablations"}
    return table, rows


@pytest.mark.parametrize("key", BGAD)
def test_bgad_smoke_runs_every_study(smoke_cfg, key):
    table, rows = _run(smoke_cfg, key)
    measured = table[table["n_seeds"] > 0]
    assert set(measured["dataset"]) == {"synthetic"} and measured["paper_mean"].isna().all()
    assert set(measured["metric"]) == {"auroc", "pixel_auroc", "pro"}
    assert all(0 <= v <= 1 for v in measured["measured_mean"]) and measured["max_over_epochs_mean"].notna().all()
    assert measured["deviations"].str.contains("synthetic data (no paper row)", regex=False).all()
    assert (table["n_seeds"] == 0).sum() == len(_paper_rows(key))  # the paper's rows are still shown


def test_bgad_standardize_smoke_run(smoke_cfg):
    table, rows = _run(smoke_cfg, "bgad_standardize")
    assert set(rows["variant"]) == {"standardize=on", "standardize=off"}
    auroc = table[table["metric"] == "auroc"].set_index("variant")
    assert auroc.loc["standardize=off", "vs standardize=off (last epoch)"] == "—"
    assert auroc.loc["standardize=on", "vs standardize=off (last epoch)"].endswith("(1 seed)")
    assert auroc["last_epoch"].notna().all() and auroc["max_over_epochs"].notna().all()


@pytest.mark.parametrize("key", ANOONLY)
def test_anoonly_smoke_runs_every_study(smoke_cfg, key):
    table, rows = _run(smoke_cfg, key)
    assert set(rows["dataset"]) == {"mvtecad"}
    if key == "anoonly_table2":
        joined = table[(table["n_seeds"] > 0) & table["paper_mean"].notna()]
        assert len(joined) == len(_paper_rows("anoonly_table2"))  # every paper cell has its measured value
        assert joined["deviations"].str.contains("overall = mean over 1/10 groups (mvtecad)", regex=False).all()
    elif key == "anoonly_fig8":
        assert set(table["metric"]) == {"auroc", "aupr"}
        assert (table["change"] == table["contaminated"] - table["clean"]).all()
        assert set(rows["setting"]) == {"semi_supervised", "label_noise"}  # the organisation is the setting
    else:
        assert table["measured_mean"].between(0, 1).all()
        at_default = table.dropna(subset=["paper_tables_1_3"])
        assert len(at_default) and not math.isnan(at_default["paper_tables_1_3"].iloc[0])
