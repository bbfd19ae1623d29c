"""The reproduction report: version markers, derived means, cell verdicts, table statuses, reasons
for unmeasured cells and the REPORT.md / REPORT.html files (osad_lib.report)."""

import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from osad_lib import paper, paths, report, viz
from osad_lib.results import Experiment, read_all, store_for

PROFILE = "paper"
FAITHFUL = "mode=faithful"
SHORT = "mode=faithful; epochs=2 (code: 30)"


def _rows(notebook, paper_id, table, values, metric="auroc", status="ok", **key):
    """Rows of one experiment per seed: ``values`` = {seed: value or {metric: value}}."""
    out = []
    for seed, value in values.items():
        e = Experiment(notebook=notebook, paper=paper_id, table=table, seed=seed, profile=PROFILE, **key)
        metrics = value if isinstance(value, dict) else {metric: value}
        out += e.rows(metrics, wall_time_s=1.0, status=status)
    return out


def _elpv(method, n_shots, setting="general", subset="", variant="", deviations="", backbone="resnet18", mode="",
          report=""):
    return dict(dataset="elpv", method=method, n_shots=n_shots, setting=setting, subset=subset, variant=variant,
                deviations=deviations, backbone=backbone, mode=mode, report=report)


def _fake_results(output: Path) -> None:
    devnet = store_for("01_devnet", PROFILE, output)
    devnet.append(_rows("01_devnet", "devnet", "table2", {0: 0.84, 1: 0.85, 2: 0.83}, **_elpv("devnet", 10)))
    devnet.append(_rows("01_devnet", "devnet", "table2", {0: 0.60, 1: 0.61, 2: 0.62}, **_elpv("flos", 10)))
    devnet.append(_rows("01_devnet", "devnet", "table3", {0: 0.95, 1: 0.96, 2: 0.94},
                        **_elpv("devnet", 10, "hard", "mono")))
    devnet.append(_rows("01_devnet", "devnet", "table2", {0: 0.9}, dataset="synthetic", subset="weave", method="devnet",
                        n_shots=5, setting="general"))
    devnet.append(_rows("01_devnet", "devnet", "table3", {0: {"failed": float("nan")}}, status="failed: non-finite loss",
                        **_elpv("devnet", 10, "hard", "poly")))
    dra = store_for("02_dra", PROFILE, output)
    dra.append(_rows("02_dra", "dra", "table1", {0: 0.84, 1: 0.85, 2: 0.846}, **_elpv("dra", 10, deviations=FAITHFUL, mode="faithful")))
    dra.append(_rows("02_dra", "dra", "table1", {0: 0.70, 1: 0.71, 2: 0.72},
                     **_elpv("dra", 10, variant="clean", deviations="mode=clean", mode="clean")))
    dra.append(_rows("02_dra", "dra", "table1", {0: 0.676}, **_elpv("dra", 1, deviations=SHORT, mode="faithful")))
    for subset, value in (("mono", 0.73), ("poly", 0.80)):
        dra.append(_rows("02_dra", "dra", "table2", {0: value, 1: value + 0.01},
                         **_elpv("dra", 10, "hard", subset, deviations=SHORT, mode="faithful")))
    bgad = store_for("03_bgad", PROFILE, output)
    bgad.append(_rows("03_bgad", "bgad", "table3",
                      {0: {"auroc": 0.85, "auroc@max_over_epochs": 0.90, "auroc@epoch1": 0.90},
                       1: {"auroc": 0.852, "auroc@max_over_epochs": 0.904, "auroc@epoch1": 0.904}},
                      **_elpv("bgad_fas", 1, deviations="report=last_epoch", backbone="efficientnet_b6",
                            report="last_epoch")))


def _plan(*keys):
    return pd.DataFrame(keys, columns=["notebook", *report.PLAN_KEYS])


DEVNET_GENERAL = ("01_devnet", "devnet", "elpv", "general", 10, "devnet", "")
DEVNET_HARD = ("01_devnet", "devnet", "elpv", "hard", 10, "devnet", "")
DEVNET_MVTEC = ("01_devnet", "devnet", "mvtecad", "general", 10, "devnet", "")
ABLATION = ("06_ablations", "dra", "elpv", "general", 10, "dra", "dra1a")
COVER = report.Coverage(PROFILE, planned=_plan(DEVNET_GENERAL, DEVNET_HARD, ABLATION),
                        paper_planned=_plan(DEVNET_GENERAL, DEVNET_HARD, DEVNET_MVTEC, ABLATION))


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    _fake_results(out)
    return out


@pytest.fixture(scope="module")
def cells(output):
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("OSAD_DATA", raising=False)
        return report.cell_table(read_all(PROFILE, output), COVER)


@pytest.fixture(scope="module")
def card(output):
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("OSAD_DATA", raising=False)
        return report.scorecard(PROFILE, output, cover=COVER).set_index("table_id")


def _cell(cells, table_id, primary=True, **keys):
    mask = (cells["table_id"] == table_id) & (cells["primary"] == primary)
    for k, v in keys.items():
        mask &= cells[k] == v
    assert mask.sum() == 1, (table_id, keys, int(mask.sum()))
    return cells[mask].iloc[0]


# -------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("raw, expected", [
    # a rerun in the other mode: the mode's part of the label goes, the mode column says it
    (("dra1a;clean", "auroc", "clean", ""), {"variant": "dra1a", "mode": "clean", "report": ""}),
    (("clean", "auroc", "clean", ""), {"variant": "", "mode": "clean"}),
    (("faithful", "auroc", "faithful", ""), {"variant": "", "mode": "faithful"}),
    (("", "auroc@max_over_epochs", "", "max_over_epochs"),
     {"metric": "auroc", "report": "max_over_epochs", "mode": ""}),
    (("", "pro", "", "last_epoch"), {"metric": "pro", "report": "last_epoch", "mode": ""}),
    # a label token that is not the row's mode is part of the variant, never guessed to be one
    (("dra1a;clean", "auroc", "faithful", ""), {"variant": "dra1a;clean", "mode": "faithful"}),
    (("anoonly,normal_clean=on", "auroc", "", ""), {"variant": "anoonly,normal_clean=on", "mode": ""}),
])
def test_version_markers(raw, expected):
    parsed = report.version_markers(*raw)
    assert {k: parsed[k] for k in expected} == expected


def test_means_need_every_part_or_are_marked_partial():
    rows = pd.DataFrame(
        _rows("x", "dra", "table1", {0: 0.8}, dataset="mvtecad", subset="carpet", method="dra", n_shots=10,
              setting="general")
        + _rows("x", "dra", "table1", {0: 0.6}, dataset="mvtecad", subset="grid", method="dra", n_shots=10,
                setting="general")
        + _rows("x", "dra", "table2", {0: 0.7}, **_elpv("dra", 10, "hard", "mono"))
        + _rows("x", "dra", "table2", {0: 0.9}, **_elpv("dra", 10, "hard", "poly"))
        + _rows("x", "dra", "table2", {0: 0.5}, dataset="mvtecad", subset="carpet/color", method="dra", n_shots=10,
                setting="hard"))
    canon = report.canonical_rows(rows)
    means = canon[canon["subset"].str.endswith("mean")].set_index(["dataset", "subset"])
    assert means.loc[("mvtecad", "mean"), "value"] == pytest.approx(0.7)
    assert means.loc[("mvtecad", "mean"), "deviations"] == "mean over 2/15 subsets"
    assert means.loc[("elpv", "mean"), "value"] == pytest.approx(0.8)
    assert means.loc[("elpv", "mean"), "deviations"] == ""  # both seen classes: a full mean
    assert ("mvtecad", "carpet/mean") not in means.index  # one of five seen classes: no mean


# -------------------------------------------------------------------------------------- cells


def test_cell_verdicts(cells):
    near = _cell(cells, "devnet_table2", method="devnet", dataset="elpv")
    assert near["n_seeds"] == 3 and near["measured_mean"] == pytest.approx(0.84)
    assert near["delta"] == pytest.approx(-0.006)
    assert near["tolerance"] == pytest.approx(0.022)  # max(2·0.01, paper std 0.022, 0.02)
    assert near["reproduced"] and not near["outside_spread"]
    far = _cell(cells, "devnet_table2", method="flos", dataset="elpv")
    assert not far["within_tolerance"] and not far["reproduced"] and far["outside_spread"]
    short = _cell(cells, "dra_table1", method="dra", dataset="elpv", n_shots=1)
    assert short["within_tolerance"] and short["settings_differ"] and not short["reproduced"]
    assert short["deviations"] == "epochs=2 (code: 30)"  # the mode marker alone is no deviation
    assert short["outside_spread"] == False  # noqa: E712 - one seed, but the paper std gives a spread
    mean = _cell(cells, "dra_table2", method="dra", dataset="elpv", subset="mean", n_shots=10)
    assert mean["measured_mean"] == pytest.approx(0.77) and mean["n_seeds"] == 2


def test_faithful_version_counts_and_clean_disagreement_is_flagged(cells):
    faithful = _cell(cells, "dra_table1", method="dra", dataset="elpv", n_shots=10)
    assert faithful["version"] == "faithful" and faithful["reproduced"]
    clean = _cell(cells, "dra_table1", primary=False, method="dra", dataset="elpv", n_shots=10)
    assert clean["version"] == "clean" and not clean["within_tolerance"]
    pairs = report.version_pairs(cells)
    mine = pairs[(pairs["table_id"] == "dra_table1") & (pairs["n_shots"] == 10)].iloc[0]
    assert mine["primary_version"] == "faithful" and mine["other_version"] == "clean"
    assert mine["difference"] == pytest.approx(0.71 - (0.84 + 0.85 + 0.846) / 3) and mine["disagree"]


def test_bgad_max_over_epochs_is_the_primary_report(cells):
    best = _cell(cells, "bgad_table3", method="bgad_fas", dataset="elpv")
    assert best["version"] == "report=max_over_epochs" and best["measured_mean"] == pytest.approx(0.902)
    assert best["reproduced"]  # no deviation left once the report marker is removed; same backbone
    last = _cell(cells, "bgad_table3", primary=False, method="bgad_fas", dataset="elpv")
    assert last["version"] == "report=last_epoch" and last["measured_mean"] == pytest.approx(0.851)
    assert not cells["metric"].str.contains("@").any()  # per-epoch metrics are not table cells


def test_rows_match_every_table_with_that_cell(cells):
    for table_id in ("dra_table1", "dra_table3", "dra_table7"):
        assert _cell(cells, table_id, method="dra", dataset="elpv", n_shots=10, variant="", setting="general")["reproduced"]
    # rows of another paper never match: DevNet's own ELPV rows are not DRA's DevNet cells
    assert _cell(cells, "dra_table1", method="devnet", dataset="elpv", n_shots=10)["n_seeds"] == 0


def test_reasons_of_unmeasured_cells(cells):
    def reason(table_id, **keys):
        return _cell(cells, table_id, **keys)["reason"]

    assert reason("devnet_table2", method="devnet", dataset="mvtecad", subset="carpet") == \
        "dataset not present: mvtecad (set the data_root parameter or run_all.py --data-root)"
    assert reason("devnet_table2", method="kdad", dataset="elpv") == "method not implemented: kdad"
    assert reason("devnet_table2", method="devnet", dataset="aitex") == "not in any notebook's grid: aitex 10-shot general"
    assert reason("devnet_table5", method="devnet", dataset="elpv", variant="rep") == "variant not implemented: devnet rep"
    assert reason("devnet_table3", method="devnet", dataset="elpv", subset="poly").startswith("runs failed: failed: non-finite")
    assert reason("dra_table3", method="dra", dataset="elpv", variant="dra1a", setting="general") == \
        "no results: notebook 06_ablations not run"
    assert reason("ahl_table10", method="ahl_dra", variant="overlap=both", dataset="elpv") == \
        "not implemented: no notebook runs ahl experiments yet"
    assert (cells.loc[cells["n_seeds"] > 0, "reason"] == "").all()


# -------------------------------------------------------------------------------------- scorecard


@pytest.mark.parametrize("table_id, status, measured, on_paper, reproduced, substitute", [
    ("devnet_table2", "partial", 2, 2, 1, 0),
    ("devnet_table3", "not reproduced", 1, 1, 0, 0),
    ("dra_table1", "reproduced", 2, 1, 1, 1),
    ("dra_table7", "reproduced", 1, 1, 1, 0),
    ("dra_table2", "measured on substitute settings", 3, 0, 0, 3),
    ("bgad_table3", "reproduced", 2, 1, 1, 1),  # + DRA Table 1's 1-shot ELPV DRA cell it reprints (02_dra's row)
    ("ahl_table1", "not run", 0, 0, 0, 0),
])
def test_scorecard_counts_and_status(card, table_id, status, measured, on_paper, reproduced, substitute):
    row = card.loc[table_id]
    assert (row["status"], row["measured"], row["on_paper_settings"], row["reproduced"], row["substitute"]) == \
        (status, measured, on_paper, reproduced, substitute)
    assert row["cells"] == len(paper.load_table(table_id))


def test_scorecard_versions_spread_and_reasons(card):
    assert (card.loc["dra_table1", "with_versions"], card.loc["dra_table1", "versions_disagree"]) == (1, 1)
    assert (card.loc["bgad_table3", "with_versions"], card.loc["bgad_table3", "versions_disagree"]) == (1, 1)
    assert card.loc["devnet_table2", "outside_spread"] == 1
    assert card.loc["devnet_table2", "reason"].startswith("1/2 cells on paper settings reproduced; 2/144 cells measured")
    assert "not implemented: no notebook runs ahl experiments yet" in card.loc["ahl_table1", "reason"]
    assert list(card.index) == paper.list_tables()["table_id"].tolist()


def test_empty_store_means_every_table_not_run(tmp_path):
    rows = read_all(PROFILE, tmp_path)
    assert rows.empty
    card = report.summarize(report.cell_table(rows, None))
    assert len(card) == len(paper.list_tables())
    assert (card["status"] == "not run").all() and (card["measured"] == 0).all()
    assert (card["reason"] == [f"not measured ({n} cell{'s' if n > 1 else ''})" for n in card["cells"]]).all()


def test_measurements_without_a_paper_cell(output):
    loose = report.unmatched_rows(read_all(PROFILE, output)).set_index("notebook")
    assert list(loose.index) == ["01_devnet"]  # DRA's and BGAD's rows all have paper cells
    assert (loose.loc["01_devnet", "keys"], loose.loc["01_devnet", "datasets"]) == (1, "synthetic")


# -------------------------------------------------------------------------------------- files


def _links(text: str, pattern: str) -> list[str]:
    return re.findall(pattern, text)


def test_write_report_links_every_table_and_figure(output, cells):
    tables = paths.tables_dir(PROFILE, output)
    viz.save_table(pd.DataFrame({"a": [1.0]}), "devnet_table2", tables)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    viz.savefig(fig, "devnet_fig4_localization", paths.figures_dir(PROFILE, output))
    plt.close(fig)
    written = report.write_report(PROFILE, output, cover=COVER, cells=cells)
    runs = paths.runs_dir(PROFILE, output)
    assert written["markdown"] == runs / "REPORT.md" and written["html"] == runs / "REPORT.html"
    md, page = written["markdown"].read_text(), written["html"].read_text()
    md_links = _links(md, r"\]\(([^)\s]+)\)")
    html_links = _links(page, r'(?:href|src)="([^"]+)"')
    for link in md_links + html_links:
        assert (runs / link).resolve().is_file(), link
    expected = {p.relative_to(runs).as_posix() for p in tables.iterdir() if p.suffix in (".csv", ".md")}
    figures = paths.figures_dir(PROFILE, output)
    expected |= {Path("../..", "figures", PROFILE, p.name).as_posix() for p in figures.iterdir()}
    assert {"tables/devnet_table2.csv", "../../figures/paper/devnet_fig4_localization.pdf"} <= expected
    assert expected <= set(md_links) and expected <= set(html_links)
    assert "| dra_table1 " in md and "<table" in page and page.rstrip().endswith("</html>")
    assert {p.name for p in written["figures"]} == {"report_deltas.png", "report_deltas.pdf", "report_status.png",
                                                    "report_status.pdf"}
    saved = pd.read_csv(tables / "report_scorecard.csv", keep_default_na=False)
    assert saved.set_index("table")["status"].to_dict()["devnet_table2"] == "partial"


def test_figures_render_with_and_without_measurements(cells):
    empty = report.cell_table(read_all(PROFILE, Path("/nonexistent-osad-output")), None, table_ids=["devnet_table2"])
    for frame in (cells, empty):
        fig = report.delta_figure(frame)
        assert fig.axes[0].get_ylabel().startswith("measured − paper")
        plt.close(fig)
        card = report.summarize(frame)
        fig = report.status_figure(card)
        widths = np.array([p.get_width() for p in fig.axes[0].patches]).reshape(4, len(card))
        assert np.allclose(widths.sum(axis=0), 1.0)  # the four parts cover each table's cells
        plt.close(fig)


@pytest.mark.slow
def test_coverage_lists_the_notebook_grids():
    cover = report.coverage("smoke")
    images = cover.planned[cover.planned["paper"].isin(["devnet", "dra"])]
    assert set(images["dataset"]) == {"synthetic"}
    assert {"devnet", "dra"} <= set(cover.paper_planned["paper"])
    assert "mvtecad" in set(cover.paper_planned["dataset"])


def test_anoonly_clean_paper_rows_are_reproduced_and_other_settings_never_join_table1(tmp_path):
    """AnoOnly rows of the paper's setting (clean organisation, paper split, paper schedule) carry
    no deviation, so a Table 1 MVTec cell measured within tolerance is *reproduced*; rows of the
    contaminated organisation and of the no-leak split never enter that cell."""
    from osad_lib.data.tabular import GROUPS
    from osad_lib.experiments import anoonly as ex
    from osad_lib.profiles import configure

    cfg = configure("04_anoonly", "paper", data_root=str(tmp_path), output_dir=str(tmp_path), seeds="42")
    rows = []
    for organisation, split, value in (("clean", "paper", 0.85), ("contaminated", "paper", 0.5),
                                       ("clean", "no_leak", 0.6)):
        for stem in GROUPS["mvtecad"].stems:
            e = ex.make_item(cfg, stem, "devnet", False, 42, organisation, split).experiment
            rows += e.rows({"auroc": value, "aupr": value, "aupr_normal": 0.6}, 1.0)
    cells = report.cell_table(pd.DataFrame(rows), table_ids=["anoonly_table1"])
    cell = _cell(cells, "anoonly_table1", dataset="mvtecad", method="devnet", variant="", metric="auroc")
    assert cell["measured_mean"] == pytest.approx(0.85) and cell["paper_mean"] == pytest.approx(0.846)
    assert cell["reproduced"] and not cell["settings_differ"] and cell["version"] == ""
    assert len(cells[(cells["dataset"] == "mvtecad") & (cells["method"] == "devnet") & (cells["variant"] == "")
                     & (cells["n_seeds"] > 0)]) == 1
