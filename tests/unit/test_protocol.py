"""The one experiment protocol (:mod:`osad_lib.experiments.protocol`): every paper element of
notebooks 01–07 is declared once, reads runs of its notebook's grid, and every grid runs through
``run_grid``."""

from __future__ import annotations

import importlib

import pandas as pd
import pytest

from osad_lib import paper
from osad_lib.experiments import GridItem, ablations, protocol
from osad_lib.profiles import configure
from osad_lib.results import Experiment

#: notebook → its experiments module (06's elements are the ablation studies).
NOTEBOOKS = {"01_devnet": "devnet", "02_dra": "dra", "03_bgad": "bgad", "04_anoonly": "anoonly", "05_ahl": "ahl",
             "07_cross_domain": "cross_domain"}


def module(notebook: str):
    return importlib.import_module(f"osad_lib.experiments.{NOTEBOOKS[notebook]}")


def declared() -> dict[str, list[str]]:
    """element key → the notebooks declaring it."""
    out: dict[str, list[str]] = {}
    for notebook in NOTEBOOKS:
        for key in module(notebook).ELEMENTS:
            out.setdefault(key, []).append(notebook)
    for key in ablations.STUDIES:
        out.setdefault(key, []).append("06_ablations")
    return out


def test_every_paper_table_is_declared_by_exactly_one_notebook_element():
    keys = declared()
    tables = set(paper.list_tables()["table_id"])
    assert tables <= set(keys), f"paper tables no notebook declares: {sorted(tables - set(keys))}"
    assert {k: v for k, v in keys.items() if len(v) > 1} == {}
    figures = {k for k in keys if k not in tables}
    assert all("_fig" in k or k == "bgad_standardize" for k in figures), figures  # the rest: figures, one study ours


@pytest.mark.parametrize("notebook", sorted(NOTEBOOKS))
@pytest.mark.parametrize("profile", ["smoke", "demo"])
def test_elements_read_runs_of_their_notebooks_grid(notebook, profile):
    cfg = configure(notebook, profile=profile, check_data=False)
    ex = module(notebook)
    grid_ids = [i.experiment.experiment_id for i in ex.grid(cfg)]
    read = set()
    for key, element in ex.ELEMENTS.items():
        assert element.key == key and element.run_one is ex.run_one
        ids = [i.experiment.experiment_id for i in element.grid(cfg)]
        assert set(ids) <= set(grid_ids), f"{key} reads runs its notebook does not run"
        assert ids == [i for i in grid_ids if i in set(ids)], f"{key} reorders the grid"
        read |= set(ids)
        assert element.table is not None or element.figure is not None
    beyond = {i.experiment.experiment_id for i in ex.grid(cfg) if i.experiment.table in ("fidelity", "image_devnet")}
    assert set(grid_ids) - read == beyond  # only AnoOnly's beyond-the-paper runs belong to no paper element


def test_the_elements_of_one_grid_are_the_papers_tables():
    """What the grids' table labels say about each element (demo profile, ELPV and synthetic data)."""
    cfg = configure("02_dra", profile="demo", check_data=False)
    from osad_lib.experiments import dra

    appendix = dra.ELEMENTS["dra_table7"].grid(cfg)
    assert appendix and {i.experiment.n_shots for i in appendix} == {10}
    assert {i.experiment.method for i in appendix} <= set(paper.load_table("dra_table7")["method"])
    cfg = configure("01_devnet", profile="demo", check_data=False)
    from osad_lib.experiments import devnet

    localization = devnet.ELEMENTS["devnet_table4"].grid(cfg)
    assert {i.experiment.setting for i in localization} == {"general"}
    assert {i.experiment.dataset for i in localization} == {"synthetic"}  # ELPV has no masks: the fallback runs


def _item(name: str, manifest: str, seed: int = 0) -> GridItem:
    experiment = Experiment(notebook="01_devnet", paper="devnet", table="table2", dataset=name, subset="", setting="general",
                            n_shots=1, method="devnet", backbone="toy", seed=seed, profile="smoke", manifest_id=manifest,
                            extra_key={"name": name})
    return GridItem(experiment, 1, 1)


def test_run_grid_runs_the_items_at_hand_and_names_the_missing_data_in_one_line(tmp_path, capsys):
    cfg = configure("01_devnet", profile="smoke", device="cpu", output_dir=str(tmp_path), check_data=False)
    ran: list[str] = []

    def run_one(cfg, item):
        ran.append(item.experiment.dataset)
        return {"auroc": 0.5 + item.experiment.seed / 10}

    items = [_item("here", "m0"), _item("absent", ""), _item("here", "m1", seed=1)]
    ready = protocol.run_grid(cfg, items, run_one, desc="test")
    assert [i.experiment.seed for i in ready] == [0, 1] and ran == ["here", "here"]
    out = capsys.readouterr().out
    assert "01_devnet: skipped, data not found" in out and "absent" in out and "nothing to run" not in out
    rows = cfg.store.read()
    assert sorted(rows["value"]) == [0.5, 0.6]
    protocol.run_grid(cfg, items, run_one, desc="test")  # resume: nothing runs again
    assert ran == ["here", "here"]
    assert protocol.run_grid(cfg, [_item("absent", "")], run_one, desc="test") == []
    assert "nothing to run on the data at hand" in capsys.readouterr().out


def test_run_element_and_overview_say_why_an_element_cannot_run(tmp_path):
    cfg = configure("01_devnet", profile="smoke", device="cpu", output_dir=str(tmp_path), check_data=False)
    element = protocol.PaperElement("devnet", "table9", "Table 9", "a toy element", "none", lambda cfg: [_item("x", "m")],
                                    lambda cfg, item: {"auroc": 1.0}, lambda cfg: cfg.store.read(),
                                    unavailable=lambda cfg: "no such data")
    table, figure, why_not = protocol.run_element(cfg, element)
    assert why_not == "no such data" and figure is None and table.empty  # nothing ran
    frame = protocol.overview(cfg, [element])
    assert list(frame.columns) == protocol.OVERVIEW_COLUMNS
    assert frame.iloc[0]["experiments"] == 0 and frame.iloc[0]["not runnable because"] == "no such data"
    runnable = protocol.PaperElement("devnet", "table9", "Table 9", "a toy element", "none",
                                     lambda cfg: [_item("x", "m"), _item("y", "")], lambda cfg, item: {"auroc": 1.0},
                                     lambda cfg: cfg.store.read())
    table, _, why_not = protocol.run_element(cfg, runnable)
    assert why_not == "" and isinstance(table, pd.DataFrame) and list(table["value"]) == [1.0]
    row = protocol.overview(cfg, [runnable]).iloc[0]
    assert row["experiments"] == 1 and row["data missing"] == "y"
    with pytest.raises(ValueError, match="declared twice"):
        protocol.elements_by_key(runnable, runnable)
