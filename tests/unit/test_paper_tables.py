"""Tests of ``osad_lib.paper``: file format, value ranges, spot-checks against the paper texts,
and the paper-vs-measured join."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from osad_lib import paper

PAPERS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "papers"
PAPER_FILES = {
    "devnet": "DevNet_explainable_few_shot_AD_deviation_networks.txt",
    "dra": "DRA_gray_and_black_swans_CVPR2022.txt",
    "bgad": "BGAD_boundary_guided_semi_push_pull_CVPR2023.txt",
    "anoonly": "AnoOnly_semi_supervised_AD_without_normal_loss.txt",
    "ahl": "AHL_anomaly_heterogeneity_learning_CVPR2024.txt",
}
TABLE_IDS = paper.list_tables()["table_id"].tolist()
FULL_KEY = ["dataset", "subset", "setting", "n_shots", "method", "variant", "source", "backbone", "metric"]
SETTINGS = {"general", "hard", "cross_domain", "unsupervised", "fully_supervised",
            "semi_supervised", "unseen"}
METRICS = {"auroc", "aupr", "pixel_auroc", "pro", "aupr_normal", "f1"}


# --------------------------------------------------------------------------- format
def test_index_lists_exactly_the_files_present():
    index = paper.list_tables()
    assert list(index.columns) == list(paper.INDEX_COLUMNS)
    on_disk = sorted(p.stem for p in paper.TABLES_DIR.glob("*.csv"))
    assert sorted(index["table_id"]) == on_disk
    assert index["table_id"].is_unique
    assert (index["table_id"] == index["paper"] + "_" + index["table"]).all()
    assert set(index["paper"]) == set(paper.PAPERS)
    assert set(index["metric_scale"]) == {"fraction"}
    assert set(index["kind"]) <= {"main", "ablation", "appendix"}
    assert (index["title"].str.len() > 10).all()


@pytest.mark.parametrize("table_id", TABLE_IDS)
def test_table_format_and_ranges(table_id: str):
    header = (paper.TABLES_DIR / f"{table_id}.csv").read_text().splitlines()[0]
    assert header.split(",") == list(paper.COLUMNS)
    t = paper.load_table(table_id)
    assert len(t) > 0
    assert list(t.columns) == list(paper.COLUMNS)
    assert (t["paper"] + "_" + t["table"] == table_id).all()
    assert t["mean"].between(0.0, 1.0).all(), "every value on the [0, 1] scale"
    assert t["std"].dropna().between(0.0, 1.0).all()
    assert (t["n_shots"].dropna() >= 0).all()
    assert set(t["setting"]) <= SETTINGS
    assert set(t["metric"]) <= METRICS
    for col in ("dataset", "subset", "setting", "method", "variant", "source", "backbone", "metric"):
        assert (t[col] == t[col].str.strip().str.lower()).all(), col
    assert (t["dataset"] != "").all() and (t["method"] != "").all()
    keyed = t.assign(n_shots=t["n_shots"].astype("string").fillna(""))
    dup = keyed.duplicated(FULL_KEY, keep=False)
    assert not dup.any(), keyed.loc[dup, FULL_KEY].head().to_string()
    # compare() joins on DEFAULT_KEYS, so these must be unique as well
    assert not keyed.duplicated(list(paper.DEFAULT_KEYS)).any()


def test_load_all_and_typo_message():
    everything = paper.load_all()
    assert len(everything) == sum(len(paper.load_table(t)) for t in TABLE_IDS)
    assert everything["n_shots"].dtype == "Int64"
    with pytest.raises(ValueError, match="dra_table1") as info:
        paper.load_table("dra_tabel1")
    assert "\n" not in str(info.value)


def test_format_mean_std():
    assert paper.format_mean_std(0.8461, 0.0123) == "0.846 ± 0.012"
    assert paper.format_mean_std(0.8461, float("nan")) == "0.846"
    assert paper.format_mean_std(0.8461) == "0.846"
    assert paper.format_mean_std(float("nan"), 0.1) == "—"
    assert paper.format_mean_std(None) == "—"
    assert paper.format_mean_std(0.5, 0.01, digits=2) == "0.50 ± 0.01"


def test_shown_is_the_one_display_of_a_comparison():
    """DRA Table 1's ELPV one-shot cells beside two measured seeds: the keys as chosen, the paper's
    and the measured numbers as text, the delta rounded; a row the profile did not run says so."""
    measured = pd.DataFrame({"dataset": "elpv", "subset": "", "setting": "general", "n_shots": 1, "method": "dra",
                             "variant": "", "source": "", "metric": "auroc", "seed": [0, 1], "value": [0.70, 0.74]})
    table = paper.compare(measured, "dra_table1")
    ran = table[table["n_seeds"] > 0]
    view = paper.shown(ran, ("dataset", "n_shots", "method"), {"n_shots": "shots"}, extra=("within_spread",))
    assert list(view.columns) == ["dataset", "shots", "method", "paper", "measured", "delta", "seeds", "within_spread"]
    row = view.iloc[0]
    expected = ran.iloc[0]
    assert row["measured"] == "0.720 ± 0.028" and row["seeds"] == 2
    assert row["paper"] == paper.format_mean_std(expected["paper_mean"], expected["paper_std"])
    assert row["delta"] == pytest.approx(round(0.72 - expected["paper_mean"], 3))
    assert paper.mean_std_text(table[table["n_seeds"] == 0].head(1), "measured") == ["—"]
    assert paper.shown(ran.iloc[:0], ("dataset",)).empty


# --------------------------------------------------------------------------- spot-checks
def _row(table_id: str, **sel) -> pd.Series:
    t = paper.load_table(table_id)
    mask = pd.Series(True, index=t.index)
    for col, val in sel.items():
        if col == "n_shots":
            mask &= t[col].isna() if val is None else (t[col] == val).fillna(False)
        else:
            mask &= t[col] == val
    hit = t[mask]
    assert len(hit) == 1, f"{table_id} {sel}: {len(hit)} rows"
    return hit.iloc[0]


def _assert_in_paper(paper_id: str, needle: str, line_start: str | None = None) -> None:
    if not PAPERS_DIR.is_dir():
        pytest.skip(f"paper texts not available at {PAPERS_DIR}")
    lines = (PAPERS_DIR / PAPER_FILES[paper_id]).read_text(encoding="utf-8").splitlines()
    if line_start is not None:
        lines = [ln for ln in lines if ln.startswith(line_start)]
    assert any(needle in ln for ln in lines), f"{needle!r} not found in {paper_id} ({line_start!r})"


# (table_id, selector, mean, std, needle in the paper text, start of the line holding it)
SPOT = [
    # DevNet
    ("devnet_table2", dict(dataset="elpv", method="devnet", setting="general", n_shots=10),
     0.846, 0.022, "0.846±0.022", "ELPV"),
    ("devnet_table2", dict(dataset="hyperkvasir", method="kdad"), 0.401, 0.002,
     "Hyper-Kvasir0.401±0.002", "Hyper-Kvasir"),
    ("devnet_table3", dict(dataset="elpv", subset="poly", method="devnet"), 0.804, 0.022,
     "0.804±0.022", "Poly"),
    ("devnet_table4", dict(subset="mean", method="devnet"), 0.918, None, "0.918", "Mean 0.907"),
    ("devnet_table5", dict(dataset="elpv", variant="alexnet_ds"), 0.705, 0.048,
     "0.705±0.048", "ELPV"),
    # DRA
    ("dra_table1", dict(dataset="elpv", method="dra", n_shots=10), 0.845, 0.013,
     "0.845±0.013", "ELPV | 2"),
    ("dra_table1", dict(dataset="mvtecad", subset="mean", method="dra", n_shots=1), 0.883, 0.008,
     "0.883±0.008", "MVTec AD | -"),
    ("dra_table2", dict(dataset="elpv", subset="mono", method="dra", n_shots=10), 0.731, 0.021,
     "0.731±0.021", "ELPV | Mono"),
    ("dra_table2", dict(dataset="elpv", subset="poly", method="dra", n_shots=10), 0.800, 0.064,
     "0.800±0.064", "Poly"),
    ("dra_table3", dict(dataset="elpv", subset="", variant="dra1a"), 0.831, 0.011,
     "0.831±0.011", "ELPV"),
    ("dra_table9", dict(subset="carpet", source="grid"), 0.833, None, "0.833",
     "carpet | - |"),
    # BGAD
    ("bgad_table3", dict(dataset="elpv", method="bgad_fas", n_shots=1), 0.903, 0.003,
     "<b>0.903</b> ±0.003", "| ELPV"),
    ("bgad_table1", dict(subset="mean", method="bgad_fas", metric="auroc"), 0.988, 0.0012,
     "<b>0.988</b> $\\pm$ 0.0012", "| Image-level Mean"),
    ("bgad_table2", dict(subset="mean", method="bgad_fas", metric="pro"), 0.804, 0.0163,
     "<b>0.804</b> $\\pm$ 0.0163", "| Mean"),
    ("bgad_table4", dict(variant="beta=0.01,tau=0.1", metric="auroc"), 0.9916, None,
     "<b>0.9916</b> /0.9940/0.9779", "| 1%"),
    # AnoOnly (percent in the paper, fractions here)
    ("anoonly_table1", dict(dataset="mvtecad", method="deepsad", variant=""), 0.796, None,
     "\t79.6\t", "DeepSAD[43]"),
    ("anoonly_table1", dict(dataset="mvtecad", method="deepsad", variant="anoonly"), 0.843, None,
     "<b>84.3</b>", "+AnoOnly\t<b>83.4"),
    ("anoonly_table1", dict(dataset="mvtecad", method="feawad", variant=""), 0.827, None,
     "\t82.7\t", "FEAWAD[59]"),
    ("anoonly_table1", dict(dataset="mvtecad", method="feawad", variant="anoonly"), 0.855, None,
     "<b>85.5</b>", "+AnoOnly\t<b>80.9"),
    ("anoonly_table1", dict(dataset="mvtecad", method="prenet", variant=""), 0.843, None,
     "\t84.3\t", "PReNet[38]"),
    ("anoonly_table1", dict(dataset="mvtecad", method="prenet", variant="anoonly"), 0.879, None,
     "<b>87.9</b>", "+AnoOnly\t<b>79.8"),
    ("anoonly_table1", dict(dataset="mvtecad", method="devnet", variant=""), 0.846, None,
     "\t84.6\t", "DevNet[39]"),
    ("anoonly_table1", dict(dataset="mvtecad", method="devnet", variant="anoonly"), 0.910, None,
     "<b>91.0</b>", "+AnoOnly\t<b>82.3"),
    ("anoonly_table3", dict(dataset="mvtecad", method="deepsad", variant=""), 0.678, None,
     "\t67.8\t", "DeepSAD [43]\t14.0"),
    ("anoonly_table3", dict(dataset="mvtecad", method="deepsad", variant="anoonly"), 0.738, None,
     "73.8 $\\uparrow_{6.0}$", "+AnoOnly\t35.1"),
    ("anoonly_table3", dict(dataset="mvtecad", method="feawad", variant=""), 0.745, None,
     "\t74.5\t", "FEAWAD [59]\t23.9"),
    ("anoonly_table3", dict(dataset="mvtecad", method="feawad", variant="anoonly"), 0.768, None,
     "76.8 $\\uparrow_{2.3}$", "+AnoOnly\t29.6"),
    ("anoonly_table3", dict(dataset="mvtecad", method="prenet", variant=""), 0.749, None,
     "\t74.9\t", "PReNet [38]\t30.8"),
    ("anoonly_table3", dict(dataset="mvtecad", method="prenet", variant="anoonly"), 0.824, None,
     "82.4 $\\uparrow_{7.4}$", "+AnoOnly\t31.9"),
    ("anoonly_table3", dict(dataset="mvtecad", method="devnet", variant=""), 0.772, None,
     "\t77.2\t", "DevNet [39]\t30.5"),
    ("anoonly_table3", dict(dataset="mvtecad", method="devnet", variant="anoonly"), 0.846, None,
     "84.6 $\\uparrow_{7.5}$", "+AnoOnly\t34.6"),
    ("anoonly_table2", dict(variant="anoonly"), 0.8630, None, "86.30", "BN [21]"),
    # AHL: ELPV 10-shot is in Table 1 (general setting), repeated in Table 7
    ("ahl_table1", dict(dataset="elpv", method="dra", n_shots=10), 0.843, 0.002,
     "0.843±0.002", "ELPV\t0.793"),
    ("ahl_table1", dict(dataset="elpv", method="ahl_dra", n_shots=10), 0.850, 0.004,
     "0.850±0.004↑", "ELPV\t0.793"),
    ("ahl_table1", dict(dataset="elpv", method="devnet", n_shots=10), 0.843, 0.001,
     "0.843±0.001", "ELPV\t0.793"),
    ("ahl_table1", dict(dataset="elpv", method="ahl_devnet", n_shots=10), 0.849, 0.003,
     "0.849±0.003↑", "ELPV\t0.793"),
    ("ahl_table4", dict(dataset="elpv", method="dra", setting="fully_supervised"), 0.874, 0.004,
     "0.874±0.004", "ELPV\t0.744"),
    ("ahl_table5", dict(dataset="hyperkvasir", subset="mean", variant="cdl_minus"), 0.838, 0.011,
     "0.838±0.011", "Hyper-Kvasir (mean)"),
]


@pytest.mark.parametrize("table_id,sel,mean,std,needle,line_start", SPOT,
                         ids=[f"{s[0]}-{i}" for i, s in enumerate(SPOT)])
def test_spot_checks_against_paper_text(table_id, sel, mean, std, needle, line_start):
    row = _row(table_id, **sel)
    assert row["mean"] == pytest.approx(mean, abs=1e-9)
    if std is None:
        assert math.isnan(row["std"])
    else:
        assert row["std"] == pytest.approx(std, abs=1e-9)
    _assert_in_paper(table_id.split("_")[0], needle, line_start)


def test_every_paper_has_three_spot_checks():
    counts = pd.Series([s[0].split("_")[0] for s in SPOT]).value_counts()
    assert all(counts.get(p, 0) >= 3 for p in paper.PAPERS), counts.to_dict()


# --------------------------------------------------------------------------- compare
def _measured_row(**kw) -> dict:
    row = dict(notebook="nb", paper="dra", table="table1", dataset="elpv", subset="",
               setting="general", n_shots=10, method="dra", variant="", source="", backbone="resnet18",
               seed=0, metric="auroc", value=0.5, profile="paper", deviations="")
    row.update(kw)
    return row


def test_compare_aggregates_and_joins():
    measured = pd.DataFrame([
        _measured_row(seed=0, value=0.84),
        _measured_row(seed=1, value=0.86),
        _measured_row(n_shots=1, seed=0, value=0.70, backbone="efficientnet_lite0"),
        _measured_row(dataset="sdd", n_shots=10.0, seed=0, value=0.99, deviations="epochs=5"),
        _measured_row(dataset="toy", subset=np.nan, n_shots=np.nan, variant=None, value=0.5),
        _measured_row(paper="devnet", table="table2", value=0.1),   # other table: ignored
        _measured_row(seed=2, metric="failed", value=np.nan),       # failed run: ignored
    ])
    out = paper.compare(measured, "dra_table1")
    assert list(out.columns) == list(paper.DEFAULT_KEYS) + [
        "paper_mean", "paper_std", "measured_mean", "measured_std", "n_seeds", "delta",
        "within_spread", "settings_differ", "deviations"]
    n_paper = len(paper.load_table("dra_table1"))
    assert len(out) == n_paper + 1          # every paper row kept, one measured-only row added

    ten = out[(out.dataset == "elpv") & (out.method == "dra") & (out.n_shots == 10)].iloc[0]
    assert ten.paper_mean == pytest.approx(0.845) and ten.paper_std == pytest.approx(0.013)
    assert ten.measured_mean == pytest.approx(0.85)
    assert ten.measured_std == pytest.approx(np.std([0.84, 0.86], ddof=1))
    assert ten.n_seeds == 2
    assert ten.delta == pytest.approx(0.005)
    assert bool(ten.within_spread)
    assert not ten.settings_differ

    one = out[(out.dataset == "elpv") & (out.method == "dra") & (out.n_shots == 1)].iloc[0]
    assert one.n_seeds == 1 and math.isnan(one.measured_std)
    assert one.delta == pytest.approx(0.70 - 0.675)
    assert not one.within_spread              # |0.025| > max(0, 0.024)
    assert one.settings_differ                # efficientnet_lite0 vs resnet18

    sdd = out[(out.dataset == "sdd") & (out.method == "dra") & (out.n_shots == 10)].iloc[0]
    assert sdd.settings_differ and sdd.deviations == "epochs=5"

    unmeasured = out[(out.dataset == "optical") & (out.method == "kdad")].iloc[0]
    assert unmeasured.paper_mean == pytest.approx(0.579)
    assert math.isnan(unmeasured.measured_mean) and unmeasured.n_seeds == 0
    assert pd.isna(unmeasured.within_spread) and pd.isna(unmeasured.settings_differ)

    extra = out.iloc[-1]
    assert extra.dataset == "toy" and extra.subset == "" and extra.variant == ""
    assert pd.isna(extra.n_shots) and math.isnan(extra.paper_mean)
    assert extra.measured_mean == pytest.approx(0.5) and pd.isna(extra.within_spread)


def test_compare_rejects_mixed_profiles_and_unknown_table():
    measured = pd.DataFrame([_measured_row(profile="smoke"), _measured_row(profile="paper")])
    with pytest.raises(ValueError, match="profiles"):
        paper.compare(measured, "dra_table1")
    with pytest.raises(ValueError, match="dra_table1"):
        paper.compare(measured, "dra_tabel1")


def test_compare_empty_measured_lists_whole_table():
    empty = pd.DataFrame(columns=["dataset", "subset", "setting", "n_shots", "method",
                                  "variant", "source", "metric", "value"])
    out = paper.compare(empty, "bgad_table3")
    assert len(out) == len(paper.load_table("bgad_table3"))
    assert (out["n_seeds"] == 0).all() and out["measured_mean"].isna().all()


def test_a_table_that_reprints_another_papers_cells_takes_that_papers_rows_for_them():
    """BGAD Table 3 reprints DRA Table 1's baselines: 02_dra's rows fill exactly those cells."""
    base = {"paper": "dra", "table": "table1", "dataset": "elpv", "subset": "", "setting": "general",
            "variant": "", "source": "", "backbone": "resnet18", "profile": "demo", "metric": "auroc",
            "deviations": ""}
    rows = pd.DataFrame([
        {**base, "method": "devnet", "n_shots": 1, "seed": 0, "value": 0.60},
        {**base, "method": "devnet", "n_shots": 1, "seed": 1, "value": 0.70},
        {**base, "method": "devnet", "n_shots": 10, "seed": 0, "value": 0.85},  # not a cell of BGAD Table 3
        {**base, "method": "devnet", "n_shots": 1, "seed": 0, "value": 0.99, "paper": "ahl"},  # not reprinted
    ])
    assert paper.SHARED_CELLS["bgad_table3"] == ("dra",)
    joined = paper.compare(rows, "bgad_table3")
    measured = joined[joined["n_seeds"] > 0]
    assert len(measured) == 1
    cell = measured.iloc[0]
    assert (cell["method"], int(cell["n_shots"]), cell["n_seeds"]) == ("devnet", 1, 2)
    assert cell["measured_mean"] == pytest.approx(0.65) and cell["paper_mean"] == pytest.approx(0.514)
    assert paper.compare(rows, "devnet_table2")["n_seeds"].fillna(0).sum() == 0  # DevNet's tables reprint nothing
