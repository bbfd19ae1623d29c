"""MVTec-layout reader: order, masks, BTAD names, and one-line errors for bad folders."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from osad_lib.data.mvtec import Sample, build_folder_once, read_marker, read_mvtec_layout
from osad_lib.validate import ConfigError


def _img(path, size=(8, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros(size[::-1], np.uint8)).save(path)


def make_layout(root, classes=("b_cls", "a_cls"), masks=True, normal="good"):
    for name in ("1.png", "0.PNG", "2.jpg"):
        _img(root / "train" / normal / name)
    _img(root / "test" / normal / "0.png")
    for cls in classes:
        for stem in ("1", "0"):
            _img(root / "test" / cls / f"{stem}.png")
            if masks:
                _img(root / "ground_truth" / cls / f"{stem}_mask.png")
    return root


def test_reads_sorted_samples_with_masks(tmp_path):
    root = make_layout(tmp_path / "ds")
    (root / "train/good/notes.txt").write_text("ignored")
    (root / "train/good/.DS_Store").write_text("ignored")
    samples = read_mvtec_layout(root)
    assert [s.path for s in samples] == [
        "train/good/0.PNG", "train/good/1.png", "train/good/2.jpg", "test/good/0.png",
        "test/a_cls/0.png", "test/a_cls/1.png", "test/b_cls/0.png", "test/b_cls/1.png",
    ]
    assert samples[4] == Sample("test/a_cls/0.png", 1, "a_cls", "ground_truth/a_cls/0_mask.png", "test")
    assert samples[0] == Sample("train/good/0.PNG", 0, "good", None, "train")


def test_a_listing_is_remembered_until_a_folder_changes(tmp_path):
    """Large grids list the same folders thousands of times; an added image, class or mask, or a
    removed one, is seen by the next listing all the same."""
    root = make_layout(tmp_path / "ds")
    first = read_mvtec_layout(root)
    assert read_mvtec_layout(root) == first
    _img(root / "test" / "a_cls" / "2.png")
    _img(root / "ground_truth" / "a_cls" / "2_mask.png")
    assert len(read_mvtec_layout(root)) == len(first) + 1
    _img(root / "test" / "c_cls" / "0.png")
    with pytest.raises(ConfigError, match="no folder 'c_cls'"):
        read_mvtec_layout(root)  # a class without its mask folder, although the others have masks
    _img(root / "ground_truth" / "c_cls" / "0_mask.png")
    assert [s.anomaly_class for s in read_mvtec_layout(root)][-1] == "c_cls"
    (root / "train" / "good" / "2.jpg").unlink()
    assert "train/good/2.jpg" not in {s.path for s in read_mvtec_layout(root)}


def test_dataset_without_masks(tmp_path):
    samples = read_mvtec_layout(make_layout(tmp_path / "ds", masks=False))
    assert all(s.mask_path is None for s in samples)


def test_btad_names(tmp_path):
    root = make_layout(tmp_path / "01", classes=("ko",), masks=False, normal="ok")
    _img(root / "ground_truth/ko/0.bmp")
    _img(root / "ground_truth/ko/1.png")
    samples = read_mvtec_layout(root)
    assert {s.anomaly_class for s in samples} == {"good", "ko"}
    assert [s.mask_path for s in samples if s.label] == ["ground_truth/ko/0.bmp", "ground_truth/ko/1.png"]


def _parent_of_subsets(tmp_path):
    make_layout(tmp_path / "mvtecad" / "carpet")
    make_layout(tmp_path / "mvtecad" / "grid")
    return tmp_path / "mvtecad", f"point at one of them, e.g. {tmp_path / 'mvtecad' / 'carpet'}"


def _inner_folder(tmp_path):
    make_layout(tmp_path / "ds")
    return tmp_path / "ds" / "train", f"point at {tmp_path / 'ds'}"


def _empty_class(tmp_path):
    root = make_layout(tmp_path / "ds")
    (root / "test" / "c_cls").mkdir()
    return root, f"no images in {root / 'test' / 'c_cls'} (it is empty)"


def _class_of_gifs(tmp_path):
    root = make_layout(tmp_path / "ds")
    (root / "test" / "c_cls").mkdir()
    (root / "test" / "c_cls" / "x.gif").write_bytes(b"GIF89a")
    return root, "other entries, e.g. 'x.gif'"


def _missing_mask(tmp_path):
    root = make_layout(tmp_path / "ds")
    (root / "ground_truth" / "a_cls" / "1_mask.png").unlink()
    return root, f"no mask for {root / 'test' / 'a_cls' / '1.png'}"


def _missing_mask_folder(tmp_path):
    root = make_layout(tmp_path / "ds")
    for p in (root / "ground_truth" / "a_cls").iterdir():
        p.unlink()
    (root / "ground_truth" / "a_cls").rmdir()
    return root, "has no folder 'a_cls' although other classes have masks"


def _no_anomaly_classes(tmp_path):
    return make_layout(tmp_path / "ds", classes=()), "has no anomaly class folders"


def _no_test_good(tmp_path):
    root = make_layout(tmp_path / "ds")
    (root / "test" / "good" / "0.png").unlink()
    (root / "test" / "good").rmdir()
    return root, "no " + str(root / "test" / "good") + " folder"


def _empty_root(tmp_path):
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty", "is empty"


def _missing_root(tmp_path):
    return tmp_path / "nowhere", "does not exist"


def _file_root(tmp_path):
    (tmp_path / "f.png").write_bytes(b"")
    return tmp_path / "f.png", "is a file"


def _other_layout(tmp_path):
    _img(tmp_path / "ds" / "images" / "0.png")
    return tmp_path / "ds", "not in the MVTec layout (no train/good; found images)"


@pytest.mark.parametrize("make", [
    _parent_of_subsets, _inner_folder, _empty_class, _class_of_gifs, _missing_mask, _missing_mask_folder,
    _no_anomaly_classes, _no_test_good, _empty_root, _missing_root, _file_root, _other_layout,
])
def test_bad_layouts_give_one_line_errors(tmp_path, make):
    root, message = make(tmp_path)
    with pytest.raises(ConfigError) as err:
        read_mvtec_layout(root)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_build_folder_once_is_atomic_and_reused(tmp_path):
    dest = tmp_path / "built"
    calls = []

    def build(tmp):
        calls.append(tmp)
        make_layout(tmp)
        return {"n": 1}

    assert build_folder_once(dest, {"v": 1}, build) == dest
    assert read_marker(dest) == {"key": {"v": 1}, "n": 1}
    build_folder_once(dest, {"v": 1}, build)
    assert len(calls) == 1

    def failing(tmp):
        make_layout(tmp)
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        build_folder_once(dest, {"v": 2}, failing)
    assert read_marker(dest)["key"] == {"v": 1}  # the previous build is intact
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".lock") == ["built"]  # no temporary leftovers
    build_folder_once(dest, {"v": 2}, build)
    assert len(calls) == 2 and read_marker(dest)["key"] == {"v": 2}
