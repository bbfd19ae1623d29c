"""AHL ablation studies of notebook 06_ablations (Tables 5, 9, 10; Figs. 3, 4).

Grids carry the paper tables' join keys; stored rows are joined with the paper and paired with
the study's reference row per seed; a smoke-size run of every study produces rows, tables and
figures (read from the smoke run of the series, ``tests/series.py``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from osad_lib import paper
from osad_lib.experiments import ablations as ab
from osad_lib.experiments import ahl as xahl
from osad_lib.experiments.ablations import ahl as study
from osad_lib.profiles import METHOD_OVERRIDES, MethodSettings, configure
from osad_lib.validate import ConfigError
from series import results_copy

KEYS = ["dataset", "subset", "setting", "n_shots", "method", "variant"]


def grid_keys(items) -> set[tuple]:
    return {(e.dataset, e.subset, e.setting, e.n_shots, e.method,
             "" if e.variant == xahl.BASE_VARIANT else e.variant) for e in (i.experiment for i in items)}


@pytest.fixture()
def paper_cfg(monkeypatch, tmp_path):
    monkeypatch.delenv("OSAD_DATA", raising=False)
    return configure("06_ablations", "paper", device="cpu", output_dir=str(tmp_path), check_data=False)


@pytest.mark.parametrize("element", ["table5", "table9", "table10"])
def test_paper_grid_covers_every_row_of_the_paper_table(paper_cfg, element):
    items = study.grid(paper_cfg, element)
    assert {i.experiment.notebook for i in items} == {"06_ablations"}
    assert {(i.experiment.paper, i.experiment.table) for i in items} == {("ahl", element)}
    assert {i.experiment.seed for i in items} == set(paper_cfg.seeds)
    ran = grid_keys(items)
    for row in paper.load_table(f"ahl_{element}").itertuples():
        key = (row.dataset, row.subset, row.setting, int(row.n_shots), row.method, row.variant)
        if row.subset.endswith("mean"):  # per-seed means over MVTec categories / seen classes
            prefix = row.subset.rpartition("/")[0]
            parts = {k[1] for k in ran if k[0] == row.dataset and k[2] == row.setting and k[4:] == key[4:]
                     and (k[1].startswith(prefix + "/") if prefix else True)}
            assert len(parts) > 1, key
        else:
            assert key in ran, key


def test_figure_grids_sweep_c_and_k_and_compare_devnet_without_augmentation(paper_cfg):
    fig3 = {i.experiment.variant for i in study.grid(paper_cfg, "fig3")}
    assert {"C=2", "C=4", "K=1", "K=3", "", xahl.BASE_VARIANT} <= fig3
    fig4 = {(i.experiment.method, i.experiment.variant) for i in study.grid(paper_cfg, "fig4")}
    assert fig4 == {("devnet", xahl.BASE_VARIANT), ("dra", xahl.BASE_VARIANT), ("ahl_dra", "wo_aug"),
                    ("ahl_dra", "")}
    params = {v: study._parameters(paper_cfg, v) for v in ("", "C=4", "K=1")}
    assert params == {"": (3, 5), "C=4": (4, 5), "K=1": (3, 1)}


def test_without_data_root_the_paper_studies_are_unavailable_except_embedded_elpv(monkeypatch, tmp_path):
    monkeypatch.delenv("OSAD_DATA", raising=False)
    cfg = configure("06_ablations", "demo", device="cpu", output_dir=str(tmp_path))
    monkeypatch.setitem(METHOD_OVERRIDES["ablations"]["demo"].parts, "ahl_table10",
                        MethodSettings(grid={"general_datasets": ("sdd",)}))
    assert "sdd" in study.unavailable(cfg, "table10") and study.grid(cfg, "table10") == []
    assert study.unavailable(cfg, "table9") == ""


def test_unknown_option_is_a_one_line_error(monkeypatch, tmp_path):
    cfg = configure("06_ablations", "smoke", device="cpu", output_dir=str(tmp_path))
    monkeypatch.setitem(METHOD_OVERRIDES["ablations"]["smoke"].parts, "ahl_table5",
                        MethodSettings(grid={"variant": ("hadg",)}))
    with pytest.raises(ConfigError, match="variants"):
        study.options(cfg, "table5")


def test_paired_differences_by_hand():
    rows = pd.DataFrame({
        "dataset": "elpv", "subset": "", "setting": "general", "n_shots": 10, "metric": "auroc",
        "method": ["dra", "dra", "ahl_dra", "ahl_dra", "ahl_dra"], "variant": ["", "", "", "", ""],
        "seed": [0, 1, 0, 1, 2], "value": [0.80, 0.70, 0.85, 0.68, 0.90]})
    out = study.paired_differences(rows, ("dra", ""))
    assert len(out) == 1  # seed 2 has no reference row; the reference is not paired with itself
    row = out.iloc[0]
    assert row["n_pairs"] == 2 and row["n_gains"] == 1
    assert row["diff_mean"] == pytest.approx(0.015) and row["diff_std"] == pytest.approx(np.std([0.05, -0.02], ddof=1))
    assert (row["diff_min"], row["diff_max"]) == pytest.approx((-0.02, 0.05))


def store(cfg, items, values: dict[tuple[str, str, str], list[float]]) -> None:
    """Store AUROC rows for the items: values[(method, variant, subset)][seed]."""
    for item in items:
        e = item.experiment
        value = values[(e.method, e.variant, e.subset)][e.seed]
        cfg.store.run_experiment(e, lambda v=value: {"auroc": v, "aupr": 0.5})


def test_overlap_table_joins_the_paper_and_pairs_with_ahl(monkeypatch, tmp_path):
    cfg = configure("06_ablations", "demo", device="cpu", seeds="0,1", output_dir=str(tmp_path))
    monkeypatch.setitem(METHOD_OVERRIDES["ablations"]["demo"].parts, "ahl_table10",
                        MethodSettings(grid={"general_datasets": ("elpv",), "variants": ("overlap=both", "")}))
    store(cfg, study.grid(cfg, "table10"), {("ahl_dra", "", ""): [0.85, 0.86],
                                            ("ahl_dra", "overlap=both", ""): [0.84, 0.88]})
    table = study.comparison(cfg, "table10").set_index(["dataset", "method", "variant"])
    both = table.loc[("elpv", "ahl_dra", "overlap=both")]
    assert both["paper_mean"] == pytest.approx(0.842) and both["measured_mean"] == pytest.approx(0.86)
    assert both["diff_mean"] == pytest.approx(0.005) and both["n_gains"] == 1 and both["n_pairs"] == 2
    assert both["paper_diff"] == pytest.approx(0.842 - 0.850)
    assert np.isnan(table.loc[("elpv", "ahl_dra", ""), "diff_mean"])  # the reference itself
    assert np.isnan(table.loc[("sdd", "ahl_dra", "overlap=both"), "measured_mean"])  # paper-only row


def test_hard_setting_rows_add_the_mean_over_seen_classes(monkeypatch, tmp_path):
    cfg = configure("06_ablations", "demo", device="cpu", seeds="0", output_dir=str(tmp_path))
    monkeypatch.setitem(METHOD_OVERRIDES["ablations"]["demo"].parts, "ahl_table9",
                        MethodSettings(grid={"hard_datasets": ("elpv",), "variants": ("",)}))
    store(cfg, study.grid(cfg, "table9"), {("dra", xahl.BASE_VARIANT, "mono"): [0.70],
                                           ("dra", xahl.BASE_VARIANT, "poly"): [0.80],
                                           ("ahl_dra", "", "mono"): [0.72], ("ahl_dra", "", "poly"): [0.84]})
    table = study.comparison(cfg, "table9").set_index(["dataset", "subset", "method", "variant"])
    mean = table.loc[("elpv", "mean", "ahl_dra", "")]
    assert mean["measured_mean"] == pytest.approx(0.78) and mean["paper_mean"] == pytest.approx(0.788)
    assert mean["diff_mean"] == pytest.approx(0.03) and mean["paper_diff"] == pytest.approx(0.788 - 0.771)
    assert table.loc[("elpv", "poly", "dra", ""), "paper_mean"] == pytest.approx(0.806)


# ----------------------------------------------------------------------------- smoke runs
@pytest.fixture(scope="module")
def smoke(smoke_series, tmp_path_factory):
    """Every AHL study on the smoke profile, from the rows of the smoke run of the series."""
    out = results_copy(smoke_series, tmp_path_factory.mktemp("ahl_smoke"))
    cfg = configure("06_ablations", "smoke", device="cpu", output_dir=str(out))
    return cfg, {s.key: ab.run_element(cfg, s) for s in ab.select(cfg, "ahl")}


def test_smoke_runs_every_study_with_paired_differences(smoke):
    cfg, results = smoke
    assert set(results) == {"ahl_table5", "ahl_table9", "ahl_table10", "ahl_fig3", "ahl_fig4"}
    for key, (table, _, why_not) in results.items():
        assert why_not == ""
        ran = table[table["n_seeds"].fillna(0) > 0]
        element = key.removeprefix("ahl_")
        wanted = {k[4:] for k in grid_keys(study.grid(cfg, element))}  # (method, variant)
        assert set(zip(ran["method"], ran["variant"])) == wanted, key
        reference = tuple(study.options(cfg, element)["reference"])
        others = ran[[(m, v) != reference for m, v in zip(ran["method"], ran["variant"])]]
        assert others["diff_mean"].notna().all() and (others["n_pairs"] == 1).all(), key
        assert ran["measured_mean"].between(0, 1).all()


def test_smoke_shares_ahl_runs_across_studies(smoke):
    cfg, _ = smoke
    rows = cfg.store.read()
    published = rows[(rows["method"] == "ahl_dra") & (rows["variant"] == "") & (rows["setting"] == "general")
                     & (rows["metric"] == "auroc")]
    assert set(published["table"]) == {"table5", "table10", "fig3", "fig4"}
    assert published["value"].nunique() == 1


def test_smoke_figures(smoke):
    cfg, results = smoke
    assert results["ahl_table5"][1] is None
    for key in ("ahl_fig3", "ahl_fig4"):
        fig = results[key][1]
        assert fig is not None
        for ax in fig.axes:
            assert ax.get_title() and ax.get_xlabel()
        assert fig.axes[0].get_ylabel()
    fig3 = results["ahl_fig3"][0]
    swept = {study._parameters(cfg, v) for v in study.options(cfg, "fig3")["variants"]}
    assert {(c, k) for c, k in zip(fig3["C"], fig3["K"]) if c == c} == swept and len(swept) == 3
