"""Converters from the original download layouts (tiny fixtures with the real quirks): counts,
classes, masks, names, seeded determinism, idempotence (second run verifies) and one-line errors."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fixtures_layouts import AITEX_H, MAKERS, make_aitex, make_brainmri, make_headct, make_optical
from osad_lib.data.images import load_mask, load_rgb
from osad_lib.data.mvtec import read_mvtec_layout
from osad_lib.data.prepare import (
    CONVERTERS, MANIFEST, main, prepare, read_dagm_labels, read_headct_labels, segment_spans, tile_spans,
)
from osad_lib.validate import ConfigError


def _folder_counts(root: Path) -> dict[str, int]:
    files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != MANIFEST]
    return dict(Counter(f.rpartition("/")[0] for f in files))


def _convert(name, tmp_path, seed=42, data_root=None):
    source, expected = MAKERS[name](tmp_path / "download")
    reports = prepare(name, source, data_root or tmp_path / "data", seed=seed, progress=False)
    return source, expected, reports


def test_every_dataset_has_a_converter_and_a_fixture():
    assert set(CONVERTERS) == set(MAKERS) == {
        "mvtecad", "aitex", "sdd", "elpv", "optical", "mastcam", "brainmri", "headct", "hyperkvasir", "btad"}


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_converter_counts_layout_and_manifest(name, tmp_path):
    _, expected, reports = _convert(name, tmp_path)
    assert {r.name for r in reports} == set(expected)
    for report in reports:
        assert report.action == "converted" and report.problems == []
        assert report.folder == tmp_path / "data" / report.name
        assert _folder_counts(report.folder) == expected[report.name]
        manifest = json.loads((report.folder / MANIFEST).read_text())
        assert manifest["counts"] == dict(sorted(expected[report.name].items()))
        assert manifest["key"]["dataset"] == name and len(manifest["files"]) == sum(expected[report.name].values())
        samples = read_mvtec_layout(report.folder)  # the layout every method reads
        assert len(samples) == sum(v for k, v in expected[report.name].items() if not k.startswith("ground_truth"))
        for sample in samples:
            if sample.mask_path:
                mask = np.asarray(Image.open(report.folder / sample.mask_path))
                assert set(np.unique(mask)) <= {0, 255} and mask.any()
                assert mask.shape[::-1] == load_rgb(report.folder / sample.path).size
    assert not [p for p in (tmp_path / "data").rglob(".*building*")]  # temporary folder renamed away


def test_aitex_tiles_classes_and_masks(tmp_path):
    source, _, (report,) = _convert("aitex", tmp_path)
    out = report.folder
    anomalies = sorted(p.relative_to(out).as_posix() for p in (out / "test").rglob("*.png") if p.parent.name != "good")
    assert anomalies == ["test/Broken_end/0001_002_00_02.png", "test/Fuzzyball/0002_019_02_00.png",
                         "test/Fuzzyball/0002_019_02_07.png", "test/Nep/0003_030_01_01.png", "test/Nep/0003_030_01_05.png"]
    narrow = Image.open(out / "test/Fuzzyball/0002_019_02_07.png")
    assert narrow.size == (120 - 7 * AITEX_H, AITEX_H) and narrow.mode == "L"  # last tile of a 120-px roll
    roll = np.asarray(Image.open(source / "Defect_images/0001_002_00.png"))
    assert np.array_equal(np.asarray(Image.open(out / "test/Broken_end/0001_002_00_02.png")), roll[:, 32:48])
    mask = load_mask(out / "ground_truth/Broken_end/0001_002_00_02_mask.png")
    assert mask.sum() == 5 * 5 and mask[4:9, 3:8].all()  # box x 35..40 → 3..8 inside tile 2
    nep = [load_mask(out / f"ground_truth/Nep/0003_030_01_0{k}_mask.png").sum() for k in (1, 5)]
    assert nep == [4, 4]  # the union of _mask1 (0/255) and _mask2 (0/1)
    good = sorted(p.name for p in (out / "train/good").iterdir()) + sorted(p.name for p in (out / "test/good").iterdir())
    assert len(set(good)) == 24 and all(Image.open(out / "train/good" / n).size == (16, 16) for n in os.listdir(out / "train/good"))
    notes = json.loads((out / MANIFEST).read_text())["notes"]
    assert notes["defect_rolls_without_mask"] == ["0004_036_03.png"] and notes["defect_free_tiles_dropped"] == 8 * 3 - 5


def test_aitex_unknown_defect_code_is_a_one_line_error(tmp_path):
    source, _ = make_aitex(tmp_path / "download")
    (source / "Defect_images/0001_002_00.png").rename(source / "Defect_images/0001_099_00.png")
    with pytest.raises(ConfigError, match=r"0001_099_00\.png: defect code '099'.*nnnn_ddd_ff") as error:
        prepare("aitex", source, tmp_path / "data", progress=False)
    assert "\n" not in str(error.value) and not (tmp_path / "data" / "aitex").exists()


def test_tile_and_segment_spans():
    assert tile_spans(4096, 256)[-1] == (3840, 4096) and len(tile_spans(4096, 256)) == 16
    assert len(tile_spans(3796, 256)) == 15 and tile_spans(3796, 256)[-1] == (3584, 3796)
    assert segment_spans(1240) == [(0, 413), (413, 826), (826, 1240)]


def test_sdd_segments_relabelled_from_label_bitmaps(tmp_path):
    _, _, (report,) = _convert("sdd", tmp_path)
    names = sorted(os.listdir(report.folder / "test/defect"))
    assert names == ["kos01_Part0_0.png", "kos02_Part1_0.png", "kos02_Part1_1.png"]
    assert Image.open(report.folder / "test/defect/kos01_Part0_0.png").size == (20, 12)
    assert load_mask(report.folder / "ground_truth/defect/kos02_Part1_1_mask.png")[0:2, 5:9].all()  # rows 12..14 of the label


def test_headct_header_with_a_leading_space_and_labels(tmp_path):
    source, _ = make_headct(tmp_path / "download")
    assert (source / "labels.csv").read_text().startswith("id, hemorrhage\n")
    assert read_headct_labels(source / "labels.csv") == {i: int(i < 4) for i in range(12)}
    (report,) = prepare("headct", source, tmp_path / "data", progress=False)
    assert sorted(os.listdir(report.folder / "test/defect")) == ["000.png", "001.png", "002.png", "003.png"]
    normals = sorted(os.listdir(report.folder / "train/good") + os.listdir(report.folder / "test/good"))
    assert normals == [f"{i:03d}.png" for i in range(4, 12)]
    for i in (0, 5, 10):  # RGBA sources
        (out,) = report.folder.glob(f"*/*/{i:03d}.png")
        assert np.array_equal(np.asarray(load_rgb(out)), np.asarray(load_rgb(source / "head_ct/head_ct" / f"{i:03d}.png")))


def test_headct_wrong_header_is_a_one_line_error(tmp_path):
    source, _ = make_headct(tmp_path / "download")
    (source / "labels.csv").write_text("name,label\n0,1\n")
    with pytest.raises(ConfigError, match="expected the header 'id, hemorrhage'"):
        prepare("headct", source, tmp_path / "data", progress=False)


def test_brainmri_names_extensions_and_modes(tmp_path):
    source, _, (report,) = _convert("brainmri", tmp_path)
    assert sorted(os.listdir(report.folder / "test/defect")) == ["Y1.png", "Y1_2.png", "Y_2.png", "y3.png"]
    normals = {n: f for f in ("train/good", "test/good") for n in os.listdir(report.folder / f)}
    assert sorted(normals) == ["1_no.png", "8_no.png", "N4.png", "N6.png", "No12.png", "n5.png", "no7.png", "no_3.png"]
    for out_name, source_name in (("N4.png", "N4.png"), ("n5.png", "n5.png"), ("no_3.png", "no 3.JPG"), ("1_no.png", "1 no.jpeg")):
        out = report.folder / normals[out_name] / out_name
        assert np.array_equal(np.asarray(load_rgb(out)), np.asarray(load_rgb(source / "no" / source_name)))
    assert Image.open(report.folder / normals["N6.png"] / "N6.png").mode == "L"  # grey stays grey
    assert Image.open(report.folder / normals["N4.png"] / "N4.png").mode == "RGB"  # palette expanded


def test_optical_labels_zero_indexed_classes_and_pooled_normals(tmp_path):
    source, _ = make_optical(tmp_path / "download")
    rows = read_dagm_labels(source / "Class2/Class2/Train/Label/Labels.txt")
    assert rows == [(False, "0001.PNG", None), (False, "0002.PNG", None), (False, "0003.PNG", None), (True, "0004.PNG", "0004_label.PNG")]
    (report,) = prepare("optical", source, tmp_path / "data", progress=False)
    assert sorted(os.listdir(report.folder / "test/Class9")) == ["Class9_test_0004.png", "Class9_train_0004.png"]
    normals = os.listdir(report.folder / "train/good") + os.listdir(report.folder / "test/good")
    assert Counter(n.split("_")[0] for n in normals) == {"Class0": 6, "Class1": 6, "Class9": 6}


def test_mastcam_fixed_splits_and_no_duplicates_from_the_all_folder(tmp_path):
    _, _, (report,) = _convert("mastcam", tmp_path)
    assert sorted(os.listdir(report.folder / "train/good")) == ["t0.png", "t1.png", "t2.png", "t3.png", "t4.png"]
    assert sorted(os.listdir(report.folder / "test/good")) == ["v0.png", "v1.png"]
    assert not (report.folder / "test/all").exists()
    assert json.loads((report.folder / MANIFEST).read_text())["key"]["seed"] is None  # no random split


def test_hyperkvasir_taxonomy(tmp_path):
    _, _, (report,) = _convert("hyperkvasir", tmp_path)
    assert sorted(p.name for p in (report.folder / "test").iterdir()) == ["barretts", "esophagitis-a", "good"]


def test_btad_bmp_masks_become_png_masks(tmp_path):
    _, _, reports = _convert("btad", tmp_path)
    out = tmp_path / "data/btad/03"
    assert sorted(os.listdir(out / "ground_truth/ko")) == ["0000_mask.png", "0001_mask.png"]
    assert sorted(os.listdir(tmp_path / "data/btad/01/train/good")) == ["0000.png", "0001.png", "0002.png"]


def test_mvtec_is_linked_as_is(tmp_path):
    source, _, reports = _convert("mvtecad", tmp_path)
    for relative in ("bottle/train/good/000.png", "bottle/ground_truth/contamination/001_mask.png", "grid/test/bent/000.png"):
        assert (tmp_path / "data/mvtecad" / relative).read_bytes() == (source / relative).read_bytes()
    assert not (tmp_path / "data/mvtecad/license.txt").exists()


def test_same_seed_same_output_other_seed_other_split(tmp_path):
    source, _ = make_aitex(tmp_path / "download")
    manifests = []
    for root, seed in (("a", 42), ("b", 42), ("c", 7)):
        (report,) = prepare("aitex", source, tmp_path / root, seed=seed, progress=False)
        manifests.append(json.loads((report.folder / MANIFEST).read_text()))
    assert manifests[0] == manifests[1]
    test_a = {f for f in manifests[0]["files"] if f.startswith("test/good/")}
    test_c = {f for f in manifests[2]["files"] if f.startswith("test/good/")}
    assert len(test_a) == len(test_c) == 6 and test_a != test_c
    assert {h for f, h in manifests[0]["files"].items() if "good" not in f} == {h for f, h in manifests[2]["files"].items() if "good" not in f}


def test_second_run_verifies_and_reports_mismatches(tmp_path, capsys):
    source, _, (report,) = _convert("brainmri", tmp_path)
    before = {p: p.stat().st_mtime_ns for p in report.folder.rglob("*")}
    (again,) = prepare("brainmri", source, tmp_path / "data", progress=False)
    assert again.action == "verified" and again.problems == [] and again.counts == report.counts
    assert {p: p.stat().st_mtime_ns for p in report.folder.rglob("*")} == before  # nothing written, nothing duplicated
    changed = next((report.folder / "train/good").iterdir())
    changed.write_bytes(changed.read_bytes() + b"\0")
    removed = next((report.folder / "test/defect").iterdir())
    removed.unlink()
    (report.folder / "test/good/extra.png").write_bytes(b"x")
    (again,) = prepare("brainmri", source, tmp_path / "data", progress=False)
    assert sorted(p.split()[0] for p in again.problems) == ["changed", "missing", "unexpected"]
    assert main(["brainmri", str(source), str(tmp_path / "data"), "--no-progress"]) == 1
    assert "fix: re-run with --force" in capsys.readouterr().out
    (rebuilt,) = prepare("brainmri", source, tmp_path / "data", force=True, progress=False)
    assert rebuilt.action == "converted"
    assert main(["brainmri", str(source), str(tmp_path / "data"), "--no-progress"]) == 0


def test_existing_folder_without_manifest_or_with_another_seed(tmp_path):
    source, _ = make_headct(tmp_path / "download")
    (tmp_path / "data/headct/train/good").mkdir(parents=True)
    with pytest.raises(ConfigError, match="has no manifest .* pass --force"):
        prepare("headct", source, tmp_path / "data", progress=False)
    prepare("headct", source, tmp_path / "data", force=True, progress=False)
    with pytest.raises(ConfigError, match="converted with seed 42; pass --seed 42 to verify it or --force"):
        prepare("headct", source, tmp_path / "data", seed=3, progress=False)


def test_one_line_errors_for_bad_arguments(tmp_path, capsys):
    source, _ = make_headct(tmp_path / "download")
    cases = [
        (("headtc", source, tmp_path / "data"), r"'headtc' is not one of .*did you mean 'headct'\?"),
        (("headct", tmp_path / "nowhere", tmp_path / "data"), r"source folder .*nowhere does not exist; pass the folder .*labels.csv"),
        (("headct", tmp_path / "download", tmp_path / "data"), rf"is not the root of the headct download; did you mean {source}\?"),
        (("headct", source / "head_ct", tmp_path / "data"), rf"did you mean {source}\?"),
        (("brainmri", source, tmp_path / "data"), r"not the root of the brainmri download; expected yes/ and no/"),
        (("headct", source / "labels.csv", tmp_path / "data"), r"is a file, not a folder"),
    ]
    for args, pattern in cases:
        with pytest.raises(ConfigError, match=pattern) as error:
            prepare(*args, progress=False)
        assert "\n" not in str(error.value)
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=r"cannot create DATA_ROOT .*file/data.*choose a folder you can write to"):
        prepare("headct", source, tmp_path / "file" / "data", progress=False)
    assert main(["headtc", str(source), str(tmp_path / "data")]) == 2
    assert capsys.readouterr().err.startswith("error: parameter 'NAME': 'headtc'")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_data_root_not_writable(tmp_path):
    source, _ = make_headct(tmp_path / "download")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(ConfigError, match="is not writable"):
        prepare("headct", source, locked, progress=False)


def test_brainmri_is_found_one_level_down(tmp_path):
    source, _ = make_brainmri(tmp_path / "download")
    with pytest.raises(ConfigError, match=rf"did you mean {source}\?"):
        prepare("brainmri", source.parent, tmp_path / "data", progress=False)


def test_mvtec_already_in_place_is_not_converted_onto_itself(tmp_path):
    source, _ = MAKERS["mvtecad"](tmp_path)
    data_root = tmp_path / "data"
    data_root.mkdir()
    source.rename(data_root / "mvtecad")
    with pytest.raises(ConfigError, match=r"is already .*mvtecad/grid: nothing to convert; check it with python -m osad_lib.data.check"):
        prepare("mvtecad", data_root / "mvtecad", data_root, progress=False)
