"""Integrity check: counts against the papers, unreadable files, masks, duplicates, manifests,
severities and exit codes — on converted fixtures and on the real ELPV files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fixtures_layouts import MAKERS, noise, save
from osad_lib.data.check import check_data_root, check_dataset, format_table, main
from osad_lib.data.prepare import MANIFEST, prepare
from osad_lib.validate import ConfigError


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[Path, dict[str, dict[str, int]]]:
    """Every fixture download converted into one data root; expected counts by registry name."""
    tmp = tmp_path_factory.mktemp("check")
    expected = {}
    for name, make in MAKERS.items():
        source, counts = make(tmp / "download")
        prepare(name, source, tmp / "data", progress=False)
        expected |= counts
    return tmp / "data", expected


def _copy(converted, name, tmp_path, keep_manifest=False) -> Path:
    """A private copy of one converted dataset (hard links broken), without its manifest unless asked."""
    root, _ = converted
    dest = tmp_path / "data" / name
    shutil.copytree(root / name, dest)
    if not keep_manifest:
        (dest / MANIFEST).unlink()
    return dest


def test_converted_fixtures_pass_with_paper_count_warnings(converted, capsys):
    root, expected = converted
    frame = check_data_root(root, progress=False)
    rows = frame[frame["subset"] != "(all)"].set_index("name")
    assert set(rows.index) == set(expected)
    for name, counts in expected.items():
        anomalies = sum(v for k, v in counts.items() if k.startswith("test/") and k != "test/good")
        assert (rows.loc[name, "train_normal"], rows.loc[name, "test_normal"], rows.loc[name, "anomalies"]) == (
            counts["train/good"], counts["test/good"], anomalies)
        assert rows.loc[name, "manifest"] == "ok" and rows.loc[name, "errors"] == []
    assert rows.loc["aitex", "paper_train_normal"] == 1692 and rows.loc["aitex", "masks"] == "5/5"
    assert rows.loc["headct", "masks"] == "n/a" and rows.loc["headct", "status"] == "warning"
    assert "train normals 6 ≠ paper 75" in rows.loc["headct", "warnings"]
    assert rows.loc["btad/01", "status"] == "ok"  # no paper counts for BTAD
    totals = frame[frame["subset"] == "(all)"].set_index("dataset")
    assert set(totals.index) == {"mvtecad", "btad"} and totals.loc["mvtecad", "anomalies"] == 6
    assert "2 of 15 subsets present" in totals.loc["mvtecad", "warnings"][0]
    assert main([str(root), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "18 / 1692" in out and "warning aitex: train normals 18 ≠ paper 1692" in out
    assert main([str(root), "--no-progress", "--strict"]) == 1


def test_paper_counts_give_ok(tmp_path):
    """A HeadCT with the real counts (ids 0–99 hemorrhage, 100–199 normal) matches AHL Table 6."""
    source = tmp_path / "download"
    for i in range(200):
        save(noise((6, 6), i), source / "head_ct" / f"{i:03d}.png")
    (source / "labels.csv").write_text("id, hemorrhage\n" + "".join(f"{i}, {int(i < 100)}\n" for i in range(200)))
    prepare("headct", source, tmp_path / "data", progress=False)
    (row,) = check_data_root(tmp_path / "data", ["headct"], progress=False).to_dict("records")
    assert (row["train_normal"], row["test_normal"], row["anomalies"], row["status"]) == (75, 25, 100, "ok")
    assert row["warnings"] == [] and row["errors"] == []


def _errors(folder: Path, name: str) -> tuple[dict, str]:
    row = check_dataset(name, folder, progress=False)
    return row, " | ".join(row["errors"])


def test_unreadable_image_is_an_error(converted, tmp_path):
    folder = _copy(converted, "aitex", tmp_path)
    next((folder / "test/good").iterdir()).write_bytes(b"not a png")
    row, errors = _errors(folder, "aitex")
    assert row["unreadable"] == 1 and row["status"] == "error" and "1 unreadable files, e.g. test/good/" in errors


def test_missing_mask_is_an_error_and_counts_still_shown(converted, tmp_path):
    folder = _copy(converted, "aitex", tmp_path)
    (folder / "ground_truth/Nep/0003_030_01_05_mask.png").unlink()
    row, errors = _errors(folder, "aitex")
    assert "layout: no mask for" in errors and "0003_030_01_05_mask.png" in errors
    assert (row["train_normal"], row["test_normal"], row["anomalies"]) == (18, 6, 5)


def test_dataset_with_masks_but_no_ground_truth_is_an_error(converted, tmp_path):
    folder = _copy(converted, "sdd", tmp_path)
    shutil.rmtree(folder / "ground_truth")
    row, errors = _errors(folder, "sdd")
    assert row["masks"] == "0/3" and "no masks: sdd has pixel masks" in errors


def test_mask_size_mismatch_is_an_error_and_empty_mask_a_warning(converted, tmp_path):
    folder = _copy(converted, "aitex", tmp_path)
    Image.fromarray(np.full((5, 5), 255, np.uint8)).save(folder / "ground_truth/Nep/0003_030_01_01_mask.png")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(folder / "ground_truth/Nep/0003_030_01_05_mask.png")
    row, errors = _errors(folder, "aitex")
    assert "1 masks differ in size from their image, e.g. ground_truth/Nep/0003_030_01_01_mask.png" in errors
    assert any("1 anomaly masks have no defect pixels" in w for w in row["warnings"])


def test_identical_images_are_a_warning_and_label_conflicts_an_error(converted, tmp_path):
    folder = _copy(converted, "headct", tmp_path)
    train = sorted((folder / "train/good").iterdir())
    test_normal = sorted((folder / "test/good").iterdir())
    shutil.copyfile(train[0], folder / "test/good/leak.png")
    shutil.copyfile(test_normal[0], folder / "test/defect/conflict.png")
    shutil.copyfile(train[1], folder / "train/good/twin.png")
    row, errors = _errors(folder, "headct")
    assert errors == f"1 images with two labels, e.g. test/good/{test_normal[0].name} = test/defect/conflict.png; " \
        "remove the wrongly labelled copy from the download and convert it again"
    (warning,) = [w for w in row["warnings"] if "identical images" in w]
    assert row["train_test_duplicates"] == 1 and "2 groups of identical images (1 in both train and test, 1 within one " \
        f"split), e.g. train/good/{train[0].name} = test/good/leak.png" in warning
    assert f"python -m osad_lib.data.prepare headct SOURCE_DIR {folder.parent} --dedupe --force" in warning


def test_manifest_mismatch_is_an_error(converted, tmp_path):
    folder = _copy(converted, "brainmri", tmp_path, keep_manifest=True)
    assert check_dataset("brainmri", folder, progress=False)["manifest"] == "ok"
    target = next((folder / "train/good").iterdir())
    Image.fromarray(noise((14, 18, 3), 999)).save(target)
    row, errors = _errors(folder, "brainmri")
    assert row["manifest"] == "1 mismatches" and f"manifest: changed {target}" in errors


def test_official_folder_name_is_reported(converted, tmp_path):
    root, _ = converted
    shutil.copytree(root / "headct", tmp_path / "HeadCT")
    (row,) = check_data_root(tmp_path, progress=False).to_dict("records")
    assert row["status"] == "warning" and f"rename or symlink it to {tmp_path / 'headct'}" in row["warnings"][0]


def test_dataset_filter_and_one_line_errors(converted, tmp_path, capsys):
    root, _ = converted
    frame = check_data_root(root, ["mvtecad/bottle", "elpv"], progress=False)
    assert list(frame["name"]) == ["mvtecad/bottle", "elpv"]
    with pytest.raises(ConfigError, match="did you mean 'aitex'"):
        check_data_root(root, ["aitx"], progress=False)
    with pytest.raises(ConfigError, match=r"no datasets under .* convert them with python -m osad_lib.data.prepare"):
        check_data_root(tmp_path, progress=False)
    with pytest.raises(ConfigError, match="does not exist"):
        check_data_root(tmp_path / "missing", progress=False)
    assert main([str(tmp_path / "missing")]) == 2 and capsys.readouterr().err.startswith("error: data root")


def test_format_table_shows_found_over_paper(converted):
    root, _ = converted
    text = format_table(check_data_root(root, ["aitex", "btad"], progress=False))
    header, aitex = text.splitlines()[:2]
    assert header.split()[:4] == ["dataset", "subset", "train_normal", "test_normal"]
    assert "18 / 1692" in aitex and "6 / 564" in aitex and "5 / 183" in aitex


@pytest.mark.slow
def test_real_elpv_download_matches_the_papers(tmp_path):
    """The real ELPV files (the installed package's labels.csv + images/) converted by prepare:
    1,131 / 377 / 715 as in AHL Table 6; only DevNet's poly 403 (the data have 402) differs."""
    from osad_lib.data.elpv import packaged_labels_file

    (report,) = prepare("elpv", packaged_labels_file().parent, tmp_path, progress=False)
    (row,) = check_data_root(tmp_path, progress=False).to_dict("records")
    assert (row["train_normal"], row["test_normal"], row["anomalies"]) == (1131, 377, 715)
    assert row["errors"] == [] and row["train_test_duplicates"] == 0 and row["manifest"] == "ok"
    assert row["warnings"][0] == "poly 402 ≠ paper 403"
