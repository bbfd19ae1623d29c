"""DevNet (Table 5, Figs. 6–8) and DRA (Tables 3–4, Fig. 3) studies of notebook 06_ablations:
grids, join keys with the paper tables, unavailable variants, and a smoke run of every study."""

from __future__ import annotations

from dataclasses import replace

import matplotlib
import pandas as pd
import pytest
import torch

from osad_lib import paper
from osad_lib.experiments import ablations as ab
from osad_lib.experiments.ablations import devnet as abl_devnet
from osad_lib.experiments.ablations import dra as abl_dra
from osad_lib.profiles import METHOD_OVERRIDES, MethodSettings, configure
from osad_lib.validate import ConfigError
from series import results_copy

matplotlib.use("Agg")

KEYS = ["dataset", "subset", "setting", "n_shots", "method", "variant"]
MINE = ["devnet_table5", "devnet_fig6", "devnet_fig7", "devnet_fig8", "dra_table3", "dra_table4", "dra_fig3"]


def _paper_cfg(tmp_path, monkeypatch):
    """The paper profile without a data root (only the embedded ELPV at hand) and no ImageNet
    weights in the torch hub cache (as on a machine without downloads)."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.delenv("OSAD_ALLOW_DOWNLOAD", raising=False)
    abl_devnet.config_problem.cache_clear()
    return configure("06_ablations", "paper", output_dir=str(tmp_path), check_data=False)


def _keys(items) -> set[tuple]:
    return {tuple(getattr(i.experiment, k) for k in KEYS) for i in items}


def _paper_keys(table_id: str) -> set[tuple]:
    table = paper.load_table(table_id)
    rows = table[KEYS].itertuples(index=False)
    return {tuple(int(v) if k == "n_shots" else v for k, v in zip(KEYS, row)) for row in rows}


def test_all_studies_are_registered_in_paper_order():
    keys = [k for k in ab.STUDIES if k.startswith(("devnet_", "dra_"))]
    assert keys == MINE
    assert [s.key for s in ab.select(configure("06_ablations", "smoke", check_data=False), "devnet")] == MINE[:4]


def test_paper_grids_join_the_paper_tables(tmp_path, monkeypatch):
    cfg = _paper_cfg(tmp_path, monkeypatch)
    table5 = ab.STUDIES["devnet_table5"].grid(cfg)
    # ResNet-18 itself is missing here too: then no variant is singled out, all of them are listed
    assert {i.experiment.variant for i in table5} == set(abl_devnet.dv.TABLE5_VARIANTS)
    assert _keys(table5) <= _paper_keys("devnet_table5")
    assert {i.experiment.dataset for i in table5} == {"elpv"} and {i.experiment.seed for i in table5} == set(cfg.seeds)
    table3 = ab.STUDIES["dra_table3"].grid(cfg)
    assert _keys(table3) <= _paper_keys("dra_table3")
    assert {i.experiment.subset for i in table3} == {"", "mono", "poly"}
    table4 = ab.STUDIES["dra_table4"].grid(cfg)
    assert _keys(table4) <= _paper_keys("dra_table4")
    assert {i.experiment.variant for i in table4} == {"pseudo=cp_scar", "pseudo=cp_mix", "pseudo=cutmix"}
    assert all(i.experiment.notebook == "06_ablations" and i.experiment.manifest_id for i in table3 + table4)


def test_paper_figure_grids_follow_the_protocol(tmp_path, monkeypatch):
    cfg = _paper_cfg(tmp_path, monkeypatch)
    fig6 = ab.STUDIES["devnet_fig6"].grid(cfg)
    assert {i.experiment.variant for i in fig6} == {f"topk={k:g}" for k in abl_devnet.TOPK_RATIOS}
    assert {i.experiment.params["topk_ratio"] for i in fig6} == set(abl_devnet.TOPK_RATIOS)  # what the label says
    fig7 = ab.STUDIES["devnet_fig7"].grid(cfg)
    assert {(i.experiment.method, i.experiment.n_shots) for i in fig7} == {
        (m, n) for m in abl_devnet.FIG_METHODS for n in abl_devnet.FIG7_SHOTS}
    fig8 = ab.STUDIES["devnet_fig8"].grid(cfg)
    assert {i.experiment.variant for i in fig8} == {f"contamination={c:g}" for c in abl_devnet.CONTAMINATION}
    rows = pd.DataFrame([r for i in fig8 for r in i.experiment.rows({"auroc": 0.5}, 1.0)])
    swept = [abl_devnet._swept_value("fig8", r) for r in rows.itertuples()]
    assert swept == [abl_devnet._swept_value("fig8", r) for r in rows.assign(params="").itertuples()]  # older rows
    assert set(swept) == set(abl_devnet.CONTAMINATION)
    assert {i.experiment.n_shots for i in fig8} == {10}
    fig3 = ab.STUDIES["dra_fig3"].grid(cfg)
    assert {(i.experiment.method, i.experiment.variant) for i in fig3} == {
        ("saoe", ""), ("dra", "dra2a"), ("dra", ""), ("dra", "nref=1"), ("dra", "nref=10")}
    assert {i.experiment.setting for i in fig3} == {"general"}


def test_fig7_shares_one_test_set_and_fig8_moves_anomalies_out_of_it():
    cfg = configure("06_ablations", "demo", check_data=False)
    few, _ = abl_devnet.split_for(cfg, "elpv", 5, 0, nested_in=40)
    many, _ = abl_devnet.split_for(cfg, "elpv", 40, 0, nested_in=40)
    assert few.test == many.test and set(few.train_anomaly) < set(many.train_anomaly)
    clean, _ = abl_devnet.split_for(cfg, "elpv", 10, 0)
    dirty, _ = abl_devnet.split_for(cfg, "elpv", 10, 0, contamination=0.1)
    moved = {p for p, _ in dirty.train_contamination}
    assert len(moved) == int(len(dirty.train_normal) / 0.9 * 0.1)
    assert moved.isdisjoint(p for p, _, _ in dirty.test) and len(dirty.test) == len(clean.test) - len(moved)


def test_unavailable_variants_and_sources_say_why(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.delenv("OSAD_ALLOW_DOWNLOAD", raising=False)
    abl_devnet.config_problem.cache_clear()
    cfg = configure("06_ablations", "demo", output_dir=str(tmp_path), check_data=False)
    reasons = abl_devnet.variant_reasons(cfg)
    # the demo fine-tunes Lite0's last stage, so Rep has something to train; the frozen-backbone
    # reason appears when every stage is frozen
    assert set(reasons) == {"alexnet_ds", "resnet50_ds"}
    assert "alexnet" in reasons["alexnet_ds"] and "not found" in reasons["alexnet_ds"]
    assert {i.experiment.variant for i in ab.STUDIES["devnet_table5"].grid(cfg)} == {"ds", "patch_ds", "mil_ds", "rep"}
    demo = METHOD_OVERRIDES["devnet"]["demo"]
    monkeypatch.setitem(METHOD_OVERRIDES["devnet"], "demo", replace(demo, config={**demo.config, "frozen_stages": 5}))
    assert "frozen" in abl_devnet.variant_reasons(cfg)["rep"]
    assert abl_dra.source_missing(cfg, "cutmix") == ""
    assert "<data_root>/lag/" in abl_dra.source_missing(cfg, "lag")
    monkeypatch.setitem(METHOD_OVERRIDES["ablations"]["demo"].parts, "devnet_table5",
                        MethodSettings(grid={"datasets": ("elpv",), "rep_frozen_stages": 3}))
    assert abl_devnet.table5_config(cfg, "rep").frozen_stages == 3 and "rep" not in abl_devnet.variant_reasons(cfg)


def test_unknown_option_is_a_one_line_error(monkeypatch):
    cfg = configure("06_ablations", "smoke", check_data=False)
    monkeypatch.setitem(METHOD_OVERRIDES["ablations"]["smoke"].parts, "dra_fig3", MethodSettings(grid={"nref": (1,)}))
    with pytest.raises(ConfigError, match="unknown key.*nref"):
        ab.STUDIES["dra_fig3"].grid(cfg)


def test_tables_join_stored_rows_with_the_paper(tmp_path, monkeypatch):
    """Rows stored under the paper profile's keys land on the paper's rows (no training: values given)."""
    cfg = _paper_cfg(tmp_path, monkeypatch)
    for key in ("devnet_table5", "dra_table3", "dra_table4"):
        items = ab.STUDIES[key].grid(cfg)
        cfg.store.append([row for i in items for row in i.experiment.rows({"auroc": 0.8, "aupr": 0.9}, 1.0)])
        table = ab.STUDIES[key].table(cfg)
        ran = table[table["n_seeds"] > 0]
        assert len(ran) and ran["paper_mean"].notna().all() and (ran["measured_mean"] == 0.8).all()
    table4 = ab.STUDIES["dra_table4"].table(cfg)
    assert (table4.loc[table4["variant"] == "pseudo=lag", "not run because"] != "").all()
    means = ab.STUDIES["dra_table3"].table(cfg)
    assert (means[(means["subset"] == "mean") & (means["dataset"] == "elpv")]["n_seeds"] > 0).all()


@pytest.fixture(scope="module")
def smoke_run(smoke_series, tmp_path_factory):
    """Every DevNet and DRA study on the smoke profile, from the rows of the smoke run of the series."""
    out = results_copy(smoke_series, tmp_path_factory.mktemp("smoke"))
    cfg = configure("06_ablations", "smoke", output_dir=str(out), resume=True)
    return cfg, {key: ab.run_element(cfg, ab.STUDIES[key]) for key in MINE}


@pytest.mark.parametrize("key", MINE)
def test_smoke_run_of_every_study(smoke_run, key):
    cfg, results = smoke_run
    table, figure, why_not = results[key]
    assert why_not == ""
    assert isinstance(figure, matplotlib.figure.Figure) and figure.axes[0].get_xlabel()
    rows = ab.base.study_rows(cfg, *key.split("_"))
    assert len(rows) == 2 * len(ab.STUDIES[key].grid(cfg)) and rows["value"].between(0, 1).all()
    measured = table[table["n_seeds"] > 0] if "n_seeds" in table else table
    assert len(measured) and isinstance(measured, pd.DataFrame)
    if key in ("devnet_table5", "dra_table3", "dra_table4"):
        assert (measured["dataset"] == "synthetic").all() and measured["paper_mean"].isna().all()
        assert measured["deviations"].str.contains("synthetic data").all()
