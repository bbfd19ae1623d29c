"""The headline table (osad_lib.headline) built from stored result rows, and the readable tables:
deviations as numbered footnotes (osad_lib.viz.footnoted) in Markdown, HTML and displayed frames."""

from pathlib import Path

import pandas as pd
import pytest

from osad_lib import headline, runner, viz
from osad_lib.report import document as report_document
from osad_lib.data.tabular import GROUPS
from osad_lib.experiments import anoonly, dra
from osad_lib.profiles import configure
from osad_lib.results import Experiment, store_for

PROFILE = "paper"
SEEDS = (0, 1, 2)
LONG = "epochs=6 (paper: 50); image_size=160 (paper: 448); backbone efficientnet_lite0 (paper: resnet18)"
OTHER = "mean over 2/15 subsets"


# -------------------------------------------------------------------------------------- footnotes


def _with_deviations() -> pd.DataFrame:
    return pd.DataFrame({"method": ["dra", "devnet", "flos", "minns"], "delta": [0.01, -0.2, 0.0, 0.1],
                         "deviations": [LONG, "", OTHER, LONG], "n_seeds": [5, 5, 3, 5]})


def test_footnotes_are_numbered_in_order_and_shared_by_identical_texts():
    shown, notes = viz.footnoted(_with_deviations())
    assert notes == [LONG, OTHER]
    assert shown[viz.NOTE_COLUMN].tolist() == [1, pd.NA, 2, 1]
    # the number column takes the place of the text column
    assert list(shown.columns) == ["method", "delta", viz.NOTE_COLUMN, "n_seeds"]
    same, none = viz.footnoted(pd.DataFrame({"a": [1]}))
    assert none == [] and list(same.columns) == ["a"]


def test_markdown_and_html_tables_carry_each_deviation_once_under_the_table(tmp_path):
    md = viz.markdown_table(_with_deviations())
    table, _, notes = md.partition("\n\n")
    assert LONG not in table and OTHER not in table and viz.NOTE_COLUMN in table
    assert notes.count(LONG) == 1 and f"1. {LONG}" in notes and f"2. {OTHER}" in notes
    csv, saved_md = viz.save_table(_with_deviations(), "t", tmp_path)
    assert pd.read_csv(csv, keep_default_na=False)["deviations"].tolist() == [LONG, "", OTHER, LONG]  # full text
    assert saved_md.read_text().count(LONG) == 1
    page = report_document._html_table(_with_deviations())
    assert page.count(LONG) == 1 and "<ol><li>" in page


# -------------------------------------------------------------------------------------- headline


def _rows(notebook, paper_id, table, values, **key):
    out = []
    for seed, value in zip(SEEDS, values):
        e = Experiment(notebook=notebook, paper=paper_id, table=table, seed=seed, profile=PROFILE,
                       backbone="resnet18", **key)
        out += e.rows({"auroc": value}, wall_time_s=1.0)
    return out


def _store(output: Path, better: bool) -> None:
    """Fake stored rows of 01/02/04/05: the paper's methods ahead of (``better``) or behind their
    baselines by 0.05 ± 0.01 over three seeds; DevNet at the paper's ELPV number or 0.2 below."""
    devnet_elpv = (0.84, 0.85, 0.846) if better else (0.64, 0.65, 0.646)
    store_for("01_devnet", PROFILE, output).append(_rows(
        "01_devnet", "devnet", "table2", devnet_elpv, dataset="elpv", subset="", setting="general", n_shots=10,
        method="devnet"))
    sign = 1 if better else -1
    gains = [sign * g for g in (0.04, 0.05, 0.06)]
    cfg_dra = configure("02_dra", PROFILE, data_root=str(output), output_dir=str(output), check_data=False)
    dra_variant = dra.variant_label(dra.dra_config(cfg_dra))
    dra_store, ahl_store = store_for("02_dra", PROFILE, output), store_for("05_ahl", PROFILE, output)
    for subset, base in (("mono", 0.70), ("poly", 0.74)):
        key = dict(dataset="elpv", subset=subset, setting="hard", n_shots=10)
        dra_store.append(_rows("02_dra", "dra", "table2", [base] * 3, method="devnet", variant="", **key))
        dra_store.append(_rows("02_dra", "dra", "table2", [base + g for g in gains], method="dra",
                               variant=dra_variant, **key))
        ahl_store.append(_rows("05_ahl", "ahl", "table2", [base] * 3, method="dra", variant="ahl_base", **key))
        ahl_store.append(_rows("05_ahl", "ahl", "table2", [base + g for g in gains], method="ahl_dra", variant="",
                               **key))
    cfg_ao = configure("04_anoonly", PROFILE, data_root=str(output), output_dir=str(output), check_data=False,
                       seeds=",".join(map(str, SEEDS)))
    rows = []
    for stem in GROUPS["mvtecad"].stems:
        for seed, gain in zip(SEEDS, gains):
            for anomaly_only, value in ((False, 0.80), (True, 0.80 + gain)):
                e = anoonly.make_item(cfg_ao, stem, "devnet", anomaly_only, seed).experiment
                rows += e.rows({"auroc": value}, 1.0)
    store_for("04_anoonly", PROFILE, output).append(rows)


def _headline(output: Path) -> pd.DataFrame:
    cfg = configure("08_report", PROFILE, data_root=str(output), output_dir=str(output), check_data=False,
                    seeds=",".join(map(str, SEEDS)))
    table = headline.headline_table(cfg)
    assert tuple(table.columns) == headline.COLUMNS
    assert table["paper"].tolist() == ["DevNet", "DRA", "BGAD", "AnoOnly", "AHL"]
    return table.set_index("paper")


@pytest.fixture(scope="module")
def ahead(tmp_path_factory):
    out = tmp_path_factory.mktemp("ahead")
    _store(out, better=True)
    return _headline(out)


@pytest.fixture(scope="module")
def behind(tmp_path_factory):
    out = tmp_path_factory.mktemp("behind")
    _store(out, better=False)
    return _headline(out)


def test_level_rows_use_the_report_verdict(ahead, behind):
    assert ahead.loc["DevNet", "paper_value"] == "0.846 ± 0.022"
    assert ahead.loc["DevNet", "ours"] == "0.845 ± 0.005 (std, 3 seeds)"
    assert ahead.loc["DevNet", "verdict"] == "reproduced"
    assert behind.loc["DevNet", "ours"] == "0.645 ± 0.005 (std, 3 seeds)"
    assert behind.loc["DevNet", "verdict"] == "below the paper by 0.201"


def test_paired_rows_flip_with_the_numbers(ahead, behind):
    for name, treatment in (("DRA", "DRA"), ("AHL", "AHL(dra)")):
        assert ahead.loc[name, "measured_on"].startswith("elpv/mean, hard 10-shot")
        assert ahead.loc[name, "ours"] == "+0.050 ± 0.006 (s.e., 3 seeds)"
        assert ahead.loc[name, "verdict"] == f"{treatment} is better beyond 2 standard errors"
        assert behind.loc[name, "ours"] == "-0.050 ± 0.006 (s.e., 3 seeds)"
        assert behind.loc[name, "verdict"] == f"{treatment} is worse beyond 2 standard errors"
    assert ahead.loc["DRA", "paper_value"] == "+0.064"  # DRA Table 2: 0.766 − 0.702 (ELPV mean, 10 shots)


def test_anoonly_row_counts_heads_by_paired_verdict(ahead, behind):
    assert ahead.loc["AnoOnly", "paper_value"] == "+0.064 over 1 head"  # DevNet head, MVTec AD: 0.910 − 0.846
    assert ahead.loc["AnoOnly", "ours"] == "+0.050 over 1 head (3 seeds)"
    assert ahead.loc["AnoOnly", "verdict"] == "AnoOnly is better beyond 2 standard errors (1/1 heads)"
    assert behind.loc["AnoOnly", "verdict"] == "AnoOnly is worse beyond 2 standard errors (1/1 heads)"


def test_missing_papers_say_so_and_the_terminal_prints_every_row(ahead, tmp_path):
    assert ahead.loc["BGAD", "ours"] == "—"
    assert ahead.loc["BGAD", "verdict"] == "not measured: no result rows for this cell"
    empty = _headline(tmp_path)
    assert (empty["ours"] == "—").all()
    assert empty.loc["DRA", "verdict"] == "not measured: notebook 02_dra has no results under the paper profile"
    viz.save_table(ahead.reset_index(), "headline", tmp_path / "runs" / PROFILE / "tables")
    options = runner.RunOptions(profile=PROFILE, output_dir=str(tmp_path))
    lines = runner.closing_lines(options, [runner.NotebookOutcome("08_report", "ok", 3.0, tmp_path)])
    text = "\n".join(lines)
    for name in ("DevNet", "DRA", "BGAD", "AnoOnly", "AHL"):
        assert f"  {name}: " in text
    assert "paper 0.846 ± 0.022 · ours 0.845 ± 0.005 (std, 3 seeds) · reproduced" in text
    pd.DataFrame({"paper": ["DevNet"], "claim": ["x"]}).to_csv(tmp_path / "runs" / PROFILE / "tables" / "headline.csv")
    lines = runner.closing_lines(options, [runner.NotebookOutcome("08_report", "ok", 3.0, tmp_path)])
    assert any(line.endswith("rerun 08_report") for line in lines)  # a headline of an older version
