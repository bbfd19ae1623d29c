"""Embedded ELPV: the paper's counts (AHL Table 6), reuse of the converted folder, converter checks."""

from __future__ import annotations

import collections

import numpy as np
import pytest
from PIL import Image

from osad_lib.data.elpv import convert_elpv, elpv_root, packaged_labels_file
from osad_lib.data.mvtec import read_marker, read_mvtec_layout
from osad_lib.data.registry import resolve
from osad_lib.validate import ConfigError


def test_embedded_elpv_has_paper_counts_and_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("OSAD_CACHE", str(tmp_path))
    root = resolve("elpv")
    assert root == tmp_path / "embedded" / "elpv"
    counts = collections.Counter((s.split, s.anomaly_class) for s in read_mvtec_layout(root))
    assert counts == {("train", "good"): 1131, ("test", "good"): 377, ("test", "mono"): 313, ("test", "poly"): 402}
    marker = read_marker(root)
    assert (marker["train_normal"], marker["test_normal"], marker["mono"] + marker["poly"], marker["dropped"]) == (1131, 377, 715, 401)
    stamp = (root / "osad_layout.json").stat().st_mtime_ns
    assert elpv_root() == root and (root / "osad_layout.json").stat().st_mtime_ns == stamp
    cell = Image.open(root / "test" / "mono" / "cell0001.png")  # cell0001: probability 1, mono
    assert cell.size == (300, 300)
    source = packaged_labels_file().parent / "images" / "cell0001.png"
    assert (root / "test" / "mono" / "cell0001.png").read_bytes() == source.read_bytes()


def _fake_elpv(folder, rows):
    (folder / "images").mkdir(parents=True)
    lines = []
    for i, (prob, kind) in enumerate(rows):
        Image.fromarray(np.full((4, 4), i, np.uint8)).save(folder / "images" / f"cell{i:04d}.png")
        lines.append(f"images/cell{i:04d}.png  {prob}  {kind}")
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return folder / "labels.csv"


def test_convert_elpv_protocol_on_small_labels(tmp_path):
    rows = [(0.0, "mono")] * 8 + [(1 / 3, "poly"), (2 / 3, "mono"), (1.0, "mono"), (1.0, "poly"), (1.0, "poly")]
    counts = convert_elpv(_fake_elpv(tmp_path / "src", rows), tmp_path / "out", seed=0)
    assert counts == {"train_normal": 6, "test_normal": 2, "mono": 1, "poly": 2, "dropped": 2}
    samples = read_mvtec_layout(tmp_path / "out")
    assert collections.Counter(s.anomaly_class for s in samples if s.label) == {"mono": 1, "poly": 2}


def test_convert_elpv_bad_inputs(tmp_path):
    labels = _fake_elpv(tmp_path / "src", [(0.0, "mono"), (1.0, "poly")])
    (tmp_path / "src" / "images" / "cell0001.png").unlink()
    with pytest.raises(ConfigError, match="missing, e.g. .*cell0001.png; re-download"):
        convert_elpv(labels, tmp_path / "out")
    labels.write_text("images/cell0000.png  0.0  triangle\n")
    with pytest.raises(ConfigError, match="line 1: cell type 'triangle'"):
        convert_elpv(labels, tmp_path / "out")
