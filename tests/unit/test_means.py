"""The one rule for the papers' mean cells (osad_lib.paper.means), used by every notebook's
tables and by the report: the same cell never shows two numbers."""

import pandas as pd
import pytest

from osad_lib.paper.means import mean_parts, subset_means, with_subset_means

BASE = {"paper": "devnet", "table": "table2", "dataset": "mvtecad", "setting": "general", "n_shots": 10,
        "method": "devnet", "variant": "", "backbone": "resnet18", "profile": "demo", "metric": "auroc",
        "status": "ok", "deviations": "", "notebook": "01_devnet"}
CATEGORIES = mean_parts("devnet", "mvtecad", "general")["mean"]


def rows(values_by_seed: dict[int, dict[str, float]], **changes) -> pd.DataFrame:
    return pd.DataFrame([{**BASE, **changes, "seed": seed, "subset": subset, "value": value}
                         for seed, values in values_by_seed.items() for subset, value in values.items()])


def test_mean_parts_come_from_the_registry_and_the_adbench_groups():
    assert len(CATEGORIES) == 15 and "carpet" in CATEGORIES
    assert mean_parts("dra", "elpv", "hard") == {"mean": ("mono", "poly")}
    assert mean_parts("dra", "elpv", "general") == {}  # one subset: no mean cell
    assert len(mean_parts("anoonly", "mvtecad", "semi_supervised")[""]) == 15  # the group's files
    assert mean_parts("devnet", "no_such_dataset", "general") == {}


def test_a_full_mean_is_plain_and_a_partial_one_says_over_how_many():
    full = subset_means(rows({0: {c: 0.5 + 0.01 * k for k, c in enumerate(CATEGORIES)}}))
    assert full["value"].item() == pytest.approx(0.57) and full["deviations"].item() == ""
    assert (full["n_parts"].item(), full["n_expected"].item(), full["subset"].item()) == (15, 15, "mean")
    partial = subset_means(rows({0: {"carpet": 0.6, "grid": 0.8}}, deviations="frozen backbone"))
    assert partial["value"].item() == pytest.approx(0.7)
    assert partial["deviations"].item() == "frozen backbone; mean over 2/15 subsets"
    assert partial["status"].item() == "ok" and partial["notebook"].item() == "01_devnet"


def test_a_seed_covering_fewer_subsets_is_left_out_of_the_cell():
    out = subset_means(rows({0: {"carpet": 0.6, "grid": 0.8, "tile": 0.1}, 1: {"carpet": 0.9, "grid": 0.9}}))
    assert out["seed"].tolist() == [0]  # seed 1 was interrupted after two categories


def test_one_part_of_several_is_no_mean_but_a_single_part_cell_is():
    assert subset_means(rows({0: {"carpet": 0.6}})).empty  # 1 of 15 MVTec AD categories
    hard = subset_means(rows({0: {"mono": 0.6, "poly": 0.8}}, dataset="elpv", setting="hard"))
    assert hard["value"].item() == pytest.approx(0.7) and hard["deviations"].item() == ""


def test_failed_and_non_finite_rows_do_not_count_and_cells_stay_apart():
    data = pd.concat([rows({0: {"carpet": 0.6, "grid": 0.8}}),
                      rows({0: {"tile": 0.1}}, status="failed: nan loss"),
                      rows({0: {"wood": float("nan")}}),
                      rows({0: {"carpet": 0.2, "grid": 0.4}}, method="flos")], ignore_index=True)
    out = subset_means(data).set_index("method")["value"]
    assert out.to_dict() == pytest.approx({"devnet": 0.7, "flos": 0.3})


def test_with_subset_means_appends_the_mean_rows_to_the_parts():
    parts = rows({0: {"carpet": 0.6, "grid": 0.8}})
    out = with_subset_means(parts)
    assert len(out) == 3 and list(out.columns) == list(parts.columns)
    assert with_subset_means(rows({0: {"mono": 0.5}}, dataset="elpv")).equals(rows({0: {"mono": 0.5}}, dataset="elpv"))
    assert subset_means(parts.iloc[0:0]).empty
