"""The paper profile's dry run (``run_all.py --profile paper --dry-run ci``): every notebook at the
paper's settings — 448-px ResNet-18 and the other paper backbones from random-weight files in a
torch hub cache, the papers' heads, grids and batch composition — cut to one step per run, on
generated stand-ins of every paper dataset; each code path of every grid once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from osad_lib import dryrun, limits
from osad_lib.data.mvtec import read_mvtec_layout
from osad_lib.data.registry import DATASETS, subset_info
from osad_lib.experiments import module_for
from osad_lib.results import ResultsStore
from osad_lib.runner import list_notebooks

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = list_notebooks(ROOT / "notebooks")
PROFILE = "paper-dry-run-ci"
#: The dry run of the series is the setup of several tests: more time than the default.
pytestmark = pytest.mark.timeout(1800)


# --------------------------------------------------------------------------------------------
# the generated inputs


def test_generated_datasets_have_every_registry_class_mask_and_image_kind(tmp_path):
    for name in ("mvtecad/carpet", "sdd", "brainmri", "mastcam"):
        info = subset_info(name)
        counts = dryrun.write_dataset(tmp_path / name, name)
        samples = read_mvtec_layout(tmp_path / name)
        anomalies = {s.anomaly_class for s in samples if s.label}
        assert anomalies == set(info.anomaly_classes) and counts["anomalies"] == sum(s.label for s in samples)
        assert all((s.mask_path is not None) == info.has_masks for s in samples if s.label)
        for seen in info.hard_seen_classes:  # 10 labelled + 1 in the hard setting
            assert sum(s.anomaly_class == seen for s in samples) >= 11
        fig7 = info.dataset in ("sdd", "brainmri", "mastcam")  # DevNet Fig. 7 labels up to 40
        assert counts["anomalies"] >= (40 if fig7 else 10) + 7 + len(info.anomaly_classes)
        assert counts["train_normal"] == 30 and counts["test_normal"] == 4
        first = Image.open(tmp_path / name / samples[0].path)
        assert first.mode == ("L" if info.dataset in dryrun.GREYSCALE else "RGB")
        assert first.size == {"sdd": (96, 80), "mastcam": (64, 64)}.get(info.dataset, (96, 96))
    assert set(dryrun.generated_names()) == {n for d in DATASETS.values() if not d.embedded for n in d.names}
    assert len(dryrun.generated_names()) == 15 + 3 + 7 and set(dryrun.CI_DATASETS) <= set(dryrun.generated_names())


def test_random_weight_files_load_through_the_imagenet_path(tmp_path, monkeypatch):
    import torch

    from osad_lib.components.backbones import build_backbone, hub_file_name

    monkeypatch.setattr(dryrun, "PAPER_BACKBONES", ("resnet18",))
    home = dryrun.write_weights(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.delenv("OSAD_ALLOW_DOWNLOAD", raising=False)
    assert (home / "hub" / "checkpoints" / hub_file_name("resnet18")).is_file()
    backbone = build_backbone("resnet18", "imagenet")
    assert backbone.describe() == "resnet18/imagenet"
    with pytest.raises(Exception, match="not found and downloads are off"):
        build_backbone("resnet50", "imagenet")  # a file that is not there fails as for a user


def test_dry_run_applies_to_the_paper_profile_only(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "run_all.py"), "--profile", "demo", "--dry-run"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "--dry-run runs the paper profile's settings" in proc.stderr


# --------------------------------------------------------------------------------------------
# the CI-sized dry run of every notebook


@pytest.fixture(scope="session")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dry-run")
    proc = subprocess.run([sys.executable, str(ROOT / "run_all.py"), "--profile", "paper", "--dry-run", "ci",
                           "--output-dir", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=1500)
    return out, proc


@pytest.mark.dryrun
def test_the_paper_dry_run_executes_every_notebook(dry_run):
    out, proc = dry_run
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for name in NOTEBOOKS:
        assert f"{name}: ok" in proc.stdout
        assert (out / "runs" / PROFILE / f"{name}.ipynb").exists()
    assert not (out / "runs" / "paper").exists()  # dry-run rows never mix with the paper profile's


def _stored(out: Path, notebook: str) -> pd.DataFrame:
    return ResultsStore(out / "runs" / PROFILE / "results" / f"{notebook}.csv").read()


def _path_keys(frame: pd.DataFrame) -> set[str]:
    columns = ["notebook", "paper", "method", "backbone"]
    return {limits.path_key(*row) for row in frame[columns].itertuples(index=False)}


@pytest.mark.dryrun
@pytest.mark.parametrize("notebook", [n for n in NOTEBOOKS if n not in ("00_datasets", "08_report")])
def test_every_code_path_of_the_paper_grid_ran_once_and_says_dry_run(dry_run, notebook, monkeypatch):
    import torch

    from osad_lib.profiles import configure

    out, _ = dry_run
    rows = _stored(out, notebook)
    data_root, torch_home = dryrun.prepare("ci")
    monkeypatch.setenv("TORCH_HOME", str(torch_home))  # the weights the kernels saw: BGAD's grid takes
    monkeypatch.setattr(torch.hub, "_hub_dir", None)   # EfficientNet-B6 only where its file is
    cfg = configure(notebook, profile=PROFILE, data_root=str(data_root), output_dir=str(out))
    try:
        grid = pd.DataFrame([vars(item.experiment) for item in module_for(notebook).grid(cfg)])
    finally:
        limits.install(limits.NONE)
    assert _path_keys(grid) == _path_keys(rows)  # each path of the grid, nothing else
    assert rows["experiment_id"].nunique() == len(_path_keys(rows))  # one experiment per path
    assert (rows["profile"] == PROFILE).all() and (rows["status"] == "ok").all()
    assert rows["deviations"].str.contains("dry run: 1 optimisation step").all()
    assert rows["value"].between(0, 1).all() and np.isfinite(rows["value"]).all()


@pytest.mark.dryrun
def test_kdad_runs_in_the_devnet_and_dra_tables(dry_run):
    """KDAD is one code path per notebook (one run: the CI size runs the first experiment of each
    path), in one of the tables that list it, unsupervised, on its VGG-16 source network."""
    out, _ = dry_run
    for notebook, tables in (("01_devnet", {"table2", "table3"}), ("02_dra", {"table1", "table2"})):
        kdad = _stored(out, notebook).query("method == 'kdad'")
        assert kdad["experiment_id"].nunique() == 1 and set(kdad["table"]) <= tables
        assert (kdad["n_shots"] == 0).all() and (kdad["backbone"] == "vgg16").all()
    table2 = pd.read_csv(out / "runs" / PROFILE / "tables" / "devnet_table2.csv")
    measured = table2[(table2["method"] == "kdad") & (table2["n_seeds"] > 0)]
    assert len(measured) and measured["paper_mean"].notna().all()  # beside the paper's KDAD number
