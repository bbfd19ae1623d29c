"""The methods on your own data: --datasets, --data-root, -p and profile files from the command line,
custom profiles that inherit their base, missing data skipped the same way in every notebook,
identical images recorded, reported and dropped on request — on small generated downloads in
their original layouts, converted with ``python -m osad_lib.data.prepare``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import run_all
from osad_lib import runner
from osad_lib.data import check
from osad_lib.data.mvtec import Sample, read_mvtec_layout
from osad_lib.data.prepare import MANIFEST, prepare
from osad_lib.data.protocols import Split, make_split
from osad_lib.experiments import module_for, nothing_to_run_line, runnable, skipped_line
from osad_lib.profiles import METHOD_OVERRIDES, PROFILES, configure, derive_profile, load_profile_file
from osad_lib.validate import ConfigError

ROOT = Path(__file__).resolve().parents[2]
#: HeadCT download: normals 100–115, hemorrhages 0–13; 115 is a copy of 114, 13 of 12.
HEADCT_NORMALS, HEADCT_ANOMALIES = range(100, 116), range(14)


def _noise(seed: int) -> np.ndarray:
    """A noise image of one of two brightness families (by the seed's parity), so the normals
    form two groups that AHL's k-means can find (HADG needs two clusters of more than two)."""
    low = 0 if seed % 2 else 96
    return np.random.default_rng(seed).integers(low, low + 160, (20, 20, 3), dtype=np.uint8)


def make_headct_download(folder: Path) -> Path:
    """``labels.csv`` + ``head_ct/NNN.png`` with one pair of identical normals and one of identical
    anomalies (as the real download has copies)."""
    (folder / "head_ct").mkdir(parents=True)
    labels = ["id, hemorrhage"]
    for i in [*HEADCT_ANOMALIES, *HEADCT_NORMALS]:
        seed = {115: 114, 13: 12}.get(i, i)
        Image.fromarray(_noise(seed)).save(folder / "head_ct" / f"{i:03d}.png")
        labels.append(f"{i}, {int(i in HEADCT_ANOMALIES)}")
    (folder / "labels.csv").write_text("\n".join(labels) + "\n")
    return folder


def make_brainmri_download(folder: Path) -> Path:
    """``no/`` (16 normals) and ``yes/`` (14 tumours), JPEG names with spaces as in the download."""
    for sub, n, offset in (("no", 16, 500), ("yes", 14, 600)):
        (folder / sub).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(_noise(offset + i)).save(folder / sub / f"{sub} {i}.png")
    return folder


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("own-data")
    prepare("headct", make_headct_download(tmp / "download" / "headct"), tmp / "data", progress=False)
    prepare("brainmri", make_brainmri_download(tmp / "download" / "brain_tumor_dataset"), tmp / "data", progress=False)
    return tmp / "data"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --------------------------------------------------------------------------------------------
# custom profiles


def test_a_derived_profile_inherits_its_bases_method_settings(tmp_path):
    file = _write(tmp_path / "mine.toml", 'base = "demo"\nname = "headct-demo"\nepochs = 3\nseeds = [0, 1]\n'
                  '[methods.devnet]\nlr = 0.01\n[methods.cross_domain.ahl]\nn_clusters = 4\n')
    mine, demo = load_profile_file(file), PROFILES["demo"]
    assert mine.name.startswith("headct-demo@") and mine.base == "demo" and mine.builtin == "demo"
    assert (mine.epochs, mine.seeds, mine.image_size) == (3, (0, 1), demo.image_size)
    for method in METHOD_OVERRIDES:  # everything the file does not name comes from the base
        if method not in ("devnet", "cross_domain"):
            assert mine.method(method) == demo.method(method), method
    assert mine.method("devnet").config == {**demo.method("devnet").config, "lr": 0.01}
    assert mine.method("devnet").grid == demo.method("devnet").grid
    ahl, demo_ahl = mine.method("cross_domain").part("ahl"), demo.method("cross_domain").part("ahl")
    assert ahl.config == {**demo_ahl.config, "n_clusters": 4}  # nested merge
    assert mine.method("cross_domain").grid == demo.method("cross_domain").grid
    assert "custom profile headct-demo (base demo): epochs=3" in mine.deviations
    assert configure("01_devnet", profile_file=str(file), output_dir=str(tmp_path)).store.path == \
        tmp_path / "runs" / mine.name / "results" / "01_devnet.csv"


def test_the_settings_hash_separates_settings_not_datasets_or_seeds():
    demo = PROFILES["demo"]
    same = derive_profile(demo, "x")
    assert same.name == derive_profile(demo, "x", {"image_datasets": ["headct"], "seeds": [7]}).name
    assert same.name != derive_profile(demo, "x", {"epochs": 7}).name
    assert same.name != derive_profile(demo, "x", methods={"dra": {"lr": 0.5}}).name
    assert same.name != derive_profile(PROFILES["smoke"], "x").name
    # the hash covers the settings in a profile file's form, as before they were typed: the names
    # of custom profiles, and so their stored runs, stay the same
    assert (same.name, derive_profile(PROFILES["smoke"], "x").name) == ("x@19ae01c2", "x@56907777")
    nested = {"ahl": {"dra": {"epochs": 3}}, "ablations": {"options": {"dra_fig3": {"max_seeds": 1}}}}
    assert derive_profile(PROFILES["paper"], "x", methods=nested).name == "x@e21ea28a"
    smoke_like = derive_profile(PROFILES["smoke"], "quick")
    assert smoke_like.builtin == "smoke" and hash(smoke_like)  # the smoke banner; notebook caches hash configs


def test_a_yaml_profile_file_reads_like_toml(tmp_path):
    toml = load_profile_file(_write(tmp_path / "p.toml", 'base = "smoke"\nepochs = 4\n[methods.dra]\nlr = 0.1\n'))
    yaml = load_profile_file(_write(tmp_path / "p.yaml", "base: smoke\nepochs: 4\nmethods:\n  dra:\n    lr: 0.1\n"))
    assert toml.name == yaml.name and toml.method("dra") == yaml.method("dra")


# --------------------------------------------------------------------------------------------
# run_all.py: every bad input is one line, exit 2, nothing run


PROFILE_FILE_CASES = [
    ('base = "smoke"\nepoch = 3\n', "unknown key 'epoch'; did you mean 'epochs'?"),
    ("epochs = 3\n", 'no base profile; add a first line base = "demo"'),
    ('base = "dmeo"\n', "base 'dmeo' is not one of smoke, demo, paper; did you mean 'demo'?"),
    ('base = "smoke"\nepochs = "3"\n', "epochs must be an integer, got '3'"),
    ('base = "smoke"\nseeds = [0, "1"]\n', "every entry of seeds must be an integer"),
    ('base = "smoke"\n[methods.devnt]\nepochs = 3\n', "unknown method [methods.devnt]; did you mean 'devnet'?"),
    ('base = "smoke"\n[methods.devnet]\nepoch = 3\n', "unknown DevNet setting(s) ['epoch']"),
    ('base = "smoke"\n[methods.ablations]\nstudy = []\n', "[methods.ablations]: unknown key(s) ['study']"),
    ("base = smoke\n", "is not valid TOML"),
    ('base = "smoke"\nimage_datasets = ["headtc"]\n', "unknown dataset 'headtc'; did you mean 'headct'?"),
]


@pytest.mark.parametrize("text, fragment", PROFILE_FILE_CASES, ids=[c[1][:30] for c in PROFILE_FILE_CASES])
def test_bad_profile_files_exit_2_in_one_line(text, fragment, tmp_path, capsys):
    file = _write(tmp_path / "bad.toml", text)
    assert run_all.main(["--profile-file", str(file), "--only", "01,06", "--output-dir", str(tmp_path)]) == 2
    message = capsys.readouterr().err.strip()
    assert fragment in message and "\n" not in message and len(message) < 800, message
    assert not (tmp_path / "runs").exists()


OPTION_CASES = [
    (["--datasets", "headtc"], "--datasets: unknown dataset 'headtc'; did you mean 'headct'?"),
    (["--datasets", "headct,,elpv"], "--datasets: an empty dataset name"),
    (["--datasets", "aitex", "--data-root", "{root}"], "--datasets aitex: not found under"),
    (["--datasets", "aitex"], "--datasets aitex: not embedded; pass --data-root DIR"),
    (["--profile-file", "{tmp}/none.toml"], "none.toml does not exist"),
    (["--profile", "demo", "--profile-file", "{tmp}/none.toml"], "--profile and --profile-file: give one"),
    (["-p", "studies"], "-p studies: expected NAME=VALUE"),
    (["-p", "studeis=dra", "--only", "06"], "has a parameter 'studeis'; did you mean 'studies'?"),
    (["-p", "epochs=3", "--only", "01"], "no selected notebook (01_devnet) has a parameter 'epochs'"),
    (["-p", "seeds=1"], "-p seeds: a standard parameter; use --seeds"),
    (["-p", "histogram_runs=two", "--only", "02"], "02_dra declares histogram_runs as int"),
    (["-p", "studies=dra_tabel4", "--only", "06"], "did you mean 'dra_table4'?"),
]


@pytest.mark.parametrize("args, fragment", OPTION_CASES, ids=[c[1][:30] for c in OPTION_CASES])
def test_bad_options_exit_2_in_one_line_and_run_nothing(args, fragment, data_root, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("OSAD_DATA", raising=False)
    args = [a.format(root=data_root, tmp=tmp_path) for a in args]
    assert run_all.main([*args, "--output-dir", str(tmp_path / "out")]) == 2
    message = capsys.readouterr().err.strip()
    assert fragment in message and "\n" not in message, message
    assert not (tmp_path / "out" / "runs").exists()


# --------------------------------------------------------------------------------------------
# --plan reflects --datasets, -p and profile files


def test_plan_reflects_datasets_params_and_profile_files(data_root, tmp_path, capsys):
    options = runner.validate_options(runner.RunOptions(
        profile="demo", only=("01_devnet", "02_dra", "05_ahl"), datasets="headct,brainmri",
        data_root=str(data_root)), execute=False)
    grid = runner.plan(options)
    assert set(grid["dataset"]) == {"headct", "brainmri", "synthetic"}  # synthetic: DevNet's localization stand-in
    assert set(grid.loc[grid["dataset"] != "synthetic", "notebook"]) == {"01_devnet", "02_dra", "05_ahl"}
    assert not grid["missing"].any() and set(grid["seed"]) == set(PROFILES["demo"].seeds)

    assert run_all.main(["--plan", "--only", "06", "-p", "studies=dra_table4"]) == 0
    assert set(runner.plan(runner.validate_options(runner.RunOptions(
        only=("06",), params=(("studies", "dra_table4"),)), execute=False))["table"]) == {"table4"}

    file = _write(tmp_path / "short.toml", 'base = "demo"\nname = "short"\n[methods.devnet]\nepochs = 1\n')
    capsys.readouterr()
    assert run_all.main(["--plan", "--profile-file", str(file), "--datasets", "headct", "--data-root", str(data_root),
                         "--only", "01"]) == 0
    out = capsys.readouterr().out
    assert f"profile '{load_profile_file(file).name}' ({file}) on datasets headct" in out
    short = runner.plan(runner.validate_options(runner.RunOptions(
        profile_file=str(file), only=("01",), datasets="headct", data_root=str(data_root)), execute=False))
    mine = short[(short["dataset"] == "headct") & (short["method"] == "devnet")]
    full = grid[(grid["notebook"] == "01_devnet") & (grid["dataset"] == "headct") & (grid["method"] == "devnet")]
    assert mine["train_images"].sum() * PROFILES["demo"].method("devnet").config["epochs"] == full["train_images"].sum()


# --------------------------------------------------------------------------------------------
# missing data: one rule in every notebook


def test_every_notebook_skips_missing_data_the_same_way(tmp_path, capsys):
    """A profile whose every dataset list names data that are not present: every grid lists the
    experiments, the one rule skips them and names the datasets, and --plan shows the same lines."""
    file = _write(tmp_path / "absent.toml", '\n'.join([
        'base = "smoke"', 'image_datasets = ["aitex", "headct"]',
        '[methods.bgad]', 'table1_datasets = ["aitex"]', 'table2_datasets = []', 'table3_datasets = ["headct"]',
        '[methods.anoonly]', 'image_datasets = ["headct"]', 'files = ["MVTec-AD_bottle"]',
        '[methods.cross_domain]', 'domains = ["aitex", "headct"]']) + "\n")
    expected = {"01_devnet": ["aitex", "headct"], "02_dra": ["aitex", "headct"], "03_bgad": ["aitex", "headct"],
                "04_anoonly": ["headct"], "05_ahl": ["aitex", "headct"], "07_cross_domain": ["aitex", "headct"]}
    for notebook, missing in expected.items():
        cfg = configure(notebook, profile_file=str(file), output_dir=str(tmp_path), check_data=False)
        items = module_for(notebook).grid(cfg)
        ready, skipped = runnable(items)
        assert skipped == missing, notebook
        assert all(i.experiment.manifest_id or not i.experiment.extra_key.get("name") for i in ready)
        assert bool(ready) == (notebook == "04_anoonly"), notebook  # AnoOnly still has its ADBench files
    assert runner.skipped_data("02_dra", runner.RunOptions(profile_file=str(file))) == [
        skipped_line("02_dra", ["aitex", "headct"], None), nothing_to_run_line("02_dra")]
    assert run_all.main(["--plan", "--profile-file", str(file), "--only", "01,04"]) == 0
    out = capsys.readouterr().out
    assert "01_devnet: skipped, data not found (no data root: pass run_all.py --data-root or set OSAD_DATA): " \
           "aitex, headct" in out and "01_devnet: nothing to run on the data at hand" in out
    assert "04_anoonly: skipped, data not found" in out and "04_anoonly: nothing to run" not in out
    cfg = configure("00_datasets", profile_file=str(file), output_dir=str(tmp_path))
    from osad_lib.experiments.datasets import present_datasets

    assert "headct" not in present_datasets(cfg) and "00_datasets: skipped, data not found" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# identical images


def test_prepare_records_identical_images_and_check_warns(data_root, capsys):
    groups = json.loads((data_root / "headct" / MANIFEST).read_text())["duplicates"]
    # the seeded 3:1 split put one copy of the normal pair in train, the other in test
    assert groups == [["test/defect/012.png", "test/defect/013.png"], ["test/good/115.png", "train/good/114.png"]]
    assert json.loads((data_root / "brainmri" / MANIFEST).read_text())["duplicates"] == []
    assert check.main([str(data_root), "--no-progress", "--dataset", "headct"]) == 0  # a warning, not an error
    out = capsys.readouterr().out
    assert "warning headct: 2 groups of identical images" in out and "the files the papers used" in out
    assert f"python -m osad_lib.data.prepare headct SOURCE_DIR {data_root} --dedupe --force" in out
    samples = read_mvtec_layout(data_root / "headct")
    copies = {s.path: s.pixel_group for s in samples if s.pixel_group != s.path}
    assert sorted(copies) == sorted(g[1] for g in groups) and all(s.pixel_group for s in samples)


def test_dedupe_drops_all_but_the_first_copy_and_records_it(tmp_path, capsys):
    source = make_headct_download(tmp_path / "download")
    (report,) = prepare("headct", source, tmp_path / "data", progress=False, dedupe=True)
    manifest = json.loads((tmp_path / "data" / "headct" / MANIFEST).read_text())
    assert manifest["key"]["dedupe"] and manifest["dropped"] == [g[1] for g in manifest["duplicates"]]
    assert not any((tmp_path / "data" / "headct" / p).exists() for p in manifest["dropped"])
    assert sum(report.counts.values()) == 30 - 2 and "2 exact duplicates dropped (--dedupe)" in report.summary()
    frame = check.check_data_root(tmp_path / "data", progress=False)
    assert frame.loc[0, "status"] == "warning" and not any("identical" in w for w in frame.loc[0, "warnings"])
    with pytest.raises(ConfigError, match="was converted with --dedupe; pass the same to verify it, or --force"):
        prepare("headct", source, tmp_path / "data", progress=False)
    assert prepare("headct", source, tmp_path / "data", progress=False, dedupe=True)[0].problems == []


def test_splits_count_test_images_identical_to_training_images():
    normals = [Sample(f"train/good/{i}.png", 0, "good", None, "train", f"train/good/{i}.png") for i in range(6)]
    normals += [Sample("test/good/copy.png", 0, "good", None, "test", "train/good/0.png"),
                Sample("test/good/own.png", 0, "good", None, "test", "test/good/own.png")]
    anomalies = [Sample(f"test/defect/{i}.png", 1, "defect", None, "test", f"test/defect/{i % 4}.png") for i in range(8)]
    split = make_split(normals + anomalies, "general", 3, seed=0)
    labelled = {p for p, _ in split.train_anomaly}
    twins = sum(1 for p, _, _ in split.test if p.startswith("test/defect")
                and any(q != p and int(q[12]) % 4 == int(p[12]) % 4 for q in labelled))
    assert (split.test_copies_of_labelled, split.test_copies_of_normal) == (twins, 1) and twins > 0
    assert split.duplicate_note.startswith(f"{twins} test image(s) identical to a labelled training anomaly, 1 test "
                                           "image(s) identical to a training normal")
    unrecorded = make_split([Sample(s.path, s.label, s.anomaly_class, None, s.split) for s in normals + anomalies],
                            "general", 3, seed=0)
    assert unrecorded.manifest_id == split.manifest_id and unrecorded.duplicate_note == ""  # recorded, not hashed
    assert unrecorded.test_copies_of_labelled is None


def test_result_rows_on_such_splits_say_so(data_root, tmp_path):
    cfg = configure("01_devnet", profile="smoke", data_root=str(data_root), datasets="headct", seeds="0,1,2",
                    output_dir=str(tmp_path))
    from osad_lib.experiments import devnet

    for item in devnet.grid(cfg):
        e = item.experiment
        if e.dataset != "headct":
            continue
        split = make_split(read_mvtec_layout(data_root / "headct"), e.setting, 5, e.seed, dataset="headct")
        assert split.manifest_id == e.manifest_id
        assert (split.duplicate_note in e.deviations) and bool(split.duplicate_note) == bool(
            split.test_copies_of_labelled or split.test_copies_of_normal)
    path = split.to_json(tmp_path / "split.json")
    assert Split.from_json(path) == split and Split.from_json(path).duplicate_note == split.duplicate_note


# --------------------------------------------------------------------------------------------
# done when: the demo's settings on HeadCT and BrainMRI, tables beside the papers' rows


def test_own_datasets_run_end_to_end_with_tables_beside_the_papers(data_root, tmp_path):
    """01/02/05 on HeadCT and BrainMRI converted from their downloads, run through run_all.py with
    a smoke-derived profile file (the demo profile's grid on them: the --plan test above)."""
    quick = _write(tmp_path / "quick.toml", "\n".join([  # the smoke settings, one run per dataset and method
        'base = "smoke"', 'name = "quick"', 'n_shots = [10]', 'settings = ["general"]',  # the papers' 10 anomalies
        '[methods.devnet]', 'methods = ["devnet"]', '[methods.dra]', 'methods = ["dra"]', 'clean_runs = []',
        '[methods.ahl]', 'bases = ["devnet"]', 'general_n_shots = [10]',
        'n_clusters = 2']) + "\n")  # two clusters: the normals' two families
    proc = subprocess.run([sys.executable, str(ROOT / "run_all.py"), "--profile-file", str(quick), "--datasets",
                           "headct,brainmri", "--data-root", str(data_root), "--only", "01_devnet,02_dra,05_ahl",
                           "--output-dir", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    name = load_profile_file(quick).name
    tables = tmp_path / "out" / "runs" / name / "tables"
    for table, method in (("devnet_table2", "devnet"), ("dra_table1_general", "dra"), ("ahl_table1_general", "ahl_devnet")):
        frame = pd.read_csv(tables / f"{table}.csv")
        for dataset in ("headct", "brainmri"):
            row = frame[(frame["dataset"] == dataset) & (frame["method"] == method) & (frame["n_shots"] == 10)
                        & (frame["metric"] == "auroc")]
            assert len(row) and row["measured_mean"].between(0, 1).all() and row["paper_mean"].between(0, 1).all(), \
                (table, dataset)
    rows = pd.read_csv(tmp_path / "out" / "runs" / name / "results" / "01_devnet.csv")
    assert set(rows["profile"]) == {name} and {"headct", "brainmri"} <= set(rows["dataset"])
    note = make_split(read_mvtec_layout(data_root / "headct"), "general", 10, 0, dataset="headct").duplicate_note
    said = rows.loc[rows["dataset"] == "headct", "deviations"].fillna("")
    assert note and said.str.contains(note, regex=False).all()  # the normal pair sits in train and test
