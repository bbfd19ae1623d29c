"""Fault injection: damaged result files, full disks, damaged caches, checkpoints and run state,
bad options and Ctrl-C. Each case asserts the one-line message, the exit code where there is
one, and that a rerun recovers every row of an undamaged run.

A full disk is a real 1 MB tmpfs where this test may mount one (root), else a patched writer
that fails with ``ENOSPC`` (the same code path: the error surfaces from the write).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import run_all
from osad_lib import paths, runner
from osad_lib.components import features
from osad_lib.data import tensors
from osad_lib.data.mvtec import read_mvtec_layout
from osad_lib.data.synthetic import SyntheticConfig, write_synthetic
from osad_lib.results import COLUMNS, Experiment, ResultsSchemaError, ResultsStore
from osad_lib.results.__main__ import main as results_main
from osad_lib.seeding import seed_everything
from osad_lib.training import BalancedBatchSampler, TrainConfig, fit, save_checkpoint
from osad_lib.validate import ConfigError

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "notebooks"
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def one_line(text: str) -> str:
    """The only line of ``text`` (fails when there are none or several)."""
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


@contextlib.contextmanager
def small_filesystem(folder: Path, read_only: bool = False) -> Iterator[Path | None]:
    """A 1 MB tmpfs mounted at ``folder`` (None where this process cannot mount one)."""
    folder.mkdir(parents=True, exist_ok=True)
    options = "size=1m" + (",ro" if read_only else "")
    if os.geteuid() != 0 or not shutil.which("mount") or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True).returncode != 0:
        yield None
        return
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def leftovers(folder: Path) -> list[str]:
    """Temporary files and folders of atomic writes and cache builds under ``folder``."""
    return sorted(p.name for p in folder.rglob(".*") if not p.name.endswith(".lock"))


# --------------------------------------------------------------------------------------------
# results integrity

def experiment(seed: int, variant: str = "") -> Experiment:
    return Experiment(notebook="01_devnet", paper="devnet", table="table4", dataset="elpv", method="devnet",
                      variant=variant, seed=seed, profile="smoke", setting="general", n_shots=10)


EXPERIMENTS = [experiment(s, v) for s in (0, 1) for v in ("", "flos")]


def metrics(e: Experiment) -> dict[str, float]:
    return {"auroc": 0.8 + e.seed / 100, "aupr": 0.5 + len(e.variant) / 100, "pixel_auroc": 0.9}


def run_grid(store: ResultsStore) -> list[str]:
    """Run every experiment (resume); return those that were computed."""
    computed = []
    for e in EXPERIMENTS:
        store.run_experiment(e, lambda e=e: computed.append(e.experiment_id) or metrics(e))
    return computed


def comparable(rows: pd.DataFrame) -> pd.DataFrame:
    return (rows.drop(columns=["wall_time_s", "timestamp"]).sort_values(["experiment_id", "metric"])
            .reset_index(drop=True))


@pytest.fixture()
def clean_store(tmp_path) -> tuple[ResultsStore, pd.DataFrame]:
    store = ResultsStore(tmp_path / "results" / "01_devnet.csv")
    run_grid(store)
    return store, comparable(store.read())


def _cut_mid_row(lines: list[str]) -> list[str]:
    return lines[:-1] + [lines[-1][:len(lines[-1]) // 2]]


def _field(lines: list[str], row: int, column: int, value: str) -> list[str]:
    fields = lines[row].rstrip("\n").split(",")
    fields[column] = value
    return lines[:row] + [",".join(fields) + "\n"] + lines[row + 1:]


#: damage → (lines → damaged lines, damaged line number, experiments lost)
DAMAGE = {
    "cut inside its last row": (_cut_mid_row, 13, 1),
    "a garbage line appended": (lambda lines: lines + ["garbage\n"], 14, 0),
    "a value that is not a number": (lambda lines: _field(lines, 4, COLUMNS.index("value"), "0.8O"), 5, 1),
    "a row without experiment id": (lambda lines: _field(lines, 7, COLUMNS.index("experiment_id"), ""), 8, 1),
    "a row without status": (lambda lines: _field(lines, 2, COLUMNS.index("status"), ""), 3, 1),
    "an over-long line": (lambda lines: _field(lines, 10, COLUMNS.index("setting"), "general,extra"), 11, 1),
    "a stray quote": (lambda lines: lines[:6] + ['"oops,\n'] + lines[6:], 7, 0),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_malformed_rows_are_quarantined_and_a_rerun_recovers_every_row(clean_store, damage, capsys):
    store, clean = clean_store
    corrupt, line, n_lost = DAMAGE[damage]
    lines = store.path.read_text().splitlines(keepends=True)
    store.path.write_text("".join(corrupt(lines)))
    rows = store.read()
    notice = one_line(capsys.readouterr().err)
    assert str(store.path) in notice and f"line {line}:" in notice and store.quarantine_path.name in notice
    assert len(rows) == len(clean) - 3 * n_lost  # the damaged row's experiment counts as not done
    assert "".join(corrupt(lines)).splitlines()[line - 1] in store.quarantine_path.read_text()
    assert len(run_grid(store)) == n_lost  # resume recomputes exactly the lost experiment
    pd.testing.assert_frame_equal(comparable(store.read()), clean)
    assert capsys.readouterr().err == ""  # healed: later reads are silent


def test_results_of_an_older_schema_are_migrated_in_place(clean_store, capsys):
    store, clean = clean_store
    pd.read_csv(store.path, dtype=str, keep_default_na=False).drop(columns=["torch_version", "timestamp"]) \
        .to_csv(store.path, index=False)
    rows = store.read()
    assert "older schema without columns ['torch_version', 'timestamp']" in one_line(capsys.readouterr().err)
    assert len(rows) == len(clean) and run_grid(store) == []  # every experiment still counts as done
    assert store.path.read_text().startswith("notebook,paper,") and "torch_version" in store.path.read_text()


def test_foreign_columns_are_named_and_a_migration_keeps_every_row_it_can(clean_store, capsys):
    store, clean = clean_store
    original = pd.read_csv(store.path, dtype=str, keep_default_na=False)
    original.assign(gpu_hours="0.1").to_csv(store.path, index=False)
    with pytest.raises(ResultsSchemaError) as info:
        store.read()
    message = one_line(str(info.value))
    assert "unexpected ['gpu_hours']" in message and "python -m osad_lib.results migrate" in message
    assert results_main(["migrate", str(store.path)]) == 0
    pd.testing.assert_frame_equal(comparable(store.read()), clean)
    assert "gpu_hours" in store.quarantine_path.read_text()  # the dropped column is kept aside
    original.drop(columns=["experiment_id"]).to_csv(store.path, index=False)
    with pytest.raises(ResultsSchemaError, match=r"missing \['experiment_id'\], unexpected \[\]"):
        store.read()


# --------------------------------------------------------------------------------------------
# full disks

class FullDisk:
    """A writable file whose writes fail with ENOSPC once ``capacity`` bytes were written."""

    def __init__(self, handle, capacity: int):
        self.handle, self.capacity = handle, capacity

    def write(self, data: bytes) -> int:
        if self.capacity < len(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.capacity -= len(data)
        return self.handle.write(data)

    def __getattr__(self, name: str):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.handle.close()


WRITERS = {
    "results row": lambda folder: ResultsStore(folder / "r.csv").append(
        experiment(0).rows({"auroc": 0.5, **{f"m{i}": 0.5 for i in range(20_000)}}, 0.1)),
    "checkpoint": lambda folder: save_checkpoint(folder / "c.pt", {"weights": torch.zeros(400_000)}),
}


@pytest.mark.parametrize("disk", ["tmpfs", "patched writer"])
@pytest.mark.parametrize("writer", WRITERS)
def test_a_full_disk_leaves_no_temporary_file_and_raises_the_original_error(writer, disk, tmp_path, monkeypatch):
    folder = tmp_path / "disk"
    with small_filesystem(folder) if disk == "tmpfs" else contextlib.nullcontext(folder) as mounted:
        if mounted is None:
            pytest.skip("cannot mount a tmpfs here; the patched writer covers this case")
        folder.mkdir(exist_ok=True)
        ResultsStore(folder / "r.csv").append(experiment(1).rows({"auroc": 0.5}, 0.1))
        kept = (folder / "r.csv").read_text()
        if disk == "patched writer":
            real = os.fdopen
            monkeypatch.setattr(paths.os, "fdopen", lambda fd, mode: FullDisk(real(fd, mode), 4096))
        with pytest.raises(OSError) as info:
            WRITERS[writer](folder)
        assert info.value.errno == errno.ENOSPC and "No space left on device" in str(info.value)
        assert leftovers(folder) == [] and sorted(p.name for p in folder.iterdir()) == ["r.csv", "r.csv.lock"]
        assert (folder / "r.csv").read_text() == kept


@pytest.fixture()
def dataset(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("OSAD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(tensors, "_VERIFIED", set())  # as in a fresh process
    root = tmp_path / "weave"
    write_synthetic(root, "weave", SyntheticConfig(n_train=6, n_test_normal=4, n_per_class=3, image_size=48, seed=1))
    return root


@pytest.mark.parametrize("how", ["free-space check", "tmpfs", "allocation fails"])
def test_a_tensor_cache_build_on_a_full_disk_is_one_line_and_leaves_nothing(dataset, how, tmp_path, monkeypatch):
    cache = tmp_path / "small"
    with small_filesystem(cache) if how == "tmpfs" else contextlib.nullcontext(cache) as mounted:
        if mounted is None:
            pytest.skip("cannot mount a tmpfs here; the other cases cover the check")
        monkeypatch.setenv("OSAD_CACHE", str(cache))
        if how == "free-space check":
            monkeypatch.setattr(paths.shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(10**9, 10**9 - 5000, 5000))
        if how == "allocation fails":  # the check passes, then the disk fills up under us
            monkeypatch.setattr(paths, "require_free_space", lambda *a: None)
            monkeypatch.setattr(tensors.os, "posix_fallocate", lambda *a: (_ for _ in ()).throw(ENOSPC))
        with pytest.raises(ConfigError) as info:
            tensors.load_images(dataset, read_mvtec_layout(dataset), 128)
        message = one_line(str(info.value))
        assert f"needs {paths.format_size(25 * 4 * 128 * 128)} in {cache / 'tensors'}" in message
        assert "OSAD_CACHE" in message and ("is free" in message or "disk is full" in message)
        assert leftovers(cache) == []


def test_a_build_killed_outright_leaves_nothing_for_the_next(dataset):
    samples = read_mvtec_layout(dataset)
    key = tensors._cache_key(dataset, sorted(samples, key=lambda s: s.path), 32)
    killed = paths.cache_dir() / "tensors" / f".{key}.building-x1y2"
    killed.mkdir(parents=True)
    (killed / "images.npy").write_bytes(b"\0" * 100_000)  # what a SIGKILL mid-build leaves
    tensors.load_images(dataset, samples, 32)
    assert not killed.exists() and leftovers(paths.cache_dir()) == []


def test_the_notebooks_own_error_comes_before_a_full_disk_while_recording(tmp_path, monkeypatch, capsys):
    failed = runner.NotebookOutcome("01_toy", "failed", 1.0, tmp_path / "01_toy.ipynb",
                                    "cell 3 (execution 3) raised OSError: [Errno 28] No space left on device")
    monkeypatch.setattr(runner.execute, "execute_notebook", lambda *a, **k: failed)

    def full(path, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(runner.state, "atomic_write_text", full)
    code = run_all.main(["--notebooks-dir", str(FIXTURES), "--profile", "smoke", "--only", "01",
                         "--output-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 1 and "01_toy: failed in 1.0 s — cell 3 (execution 3) raised OSError" in out
    line = one_line(err)
    assert "No space left on device" in line and "run_state.json" in line and "rerun" in line


# --------------------------------------------------------------------------------------------
# damaged derived files

@pytest.mark.parametrize("damage", ["truncated", "a flipped byte"])
def test_a_damaged_tensor_cache_is_named_and_rebuilt(dataset, damage, capsys, monkeypatch):
    samples = read_mvtec_layout(dataset)
    first = tensors.load_images(dataset, samples, 32)
    [folder] = [p for p in (paths.cache_dir() / "tensors").iterdir() if not p.name.startswith(".")]
    data = bytearray((folder / "images.npy").read_bytes())
    if damage == "truncated":
        data = data[:len(data) // 3]
    else:
        data[-100] ^= 0xFF
    (folder / "images.npy").write_bytes(bytes(data))
    monkeypatch.setattr(tensors, "_VERIFIED", set())  # a new process
    again = tensors.load_images(dataset, samples, 32)
    line = one_line(capsys.readouterr().err)
    assert str(folder) in line and "images.npy" in line and "rebuilding" in line
    assert torch.equal(first.images, again.images)
    tensors.load_images(dataset, samples, 32)
    assert capsys.readouterr().err == ""


def _train(checkpoint: Path, epochs: int) -> list[float]:
    seed_everything(0)
    x = torch.linspace(-1, 1, 32).unsqueeze(1)
    model = torch.nn.Linear(1, 1)
    config = TrainConfig(epochs=epochs, steps_per_epoch=3, lr=0.05, progress=False)
    return fit(model, lambda m, idx: torch.nn.functional.mse_loss(m(x[idx]), 3 * x[idx]),
               BalancedBatchSampler({"all": range(32)}, {"all": 8}, 0), config, checkpoint=checkpoint)


@pytest.mark.parametrize("damage", ["empty", "truncated", "a flipped byte", "empty, no digest"])
def test_a_damaged_checkpoint_is_discarded_and_the_experiment_restarts(damage, tmp_path, capsys):
    fresh = _train(tmp_path / "fresh.pt", 3)
    ckpt = tmp_path / "run.pt"
    _train(ckpt, 2)
    data = bytearray(ckpt.read_bytes())
    data = bytearray() if damage.startswith("empty") else data[:len(data) // 2] if damage == "truncated" else data
    if damage == "a flipped byte":
        data[len(data) // 2] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    if damage.endswith("no digest"):
        ckpt.with_name("run.pt.sha256").unlink()
    history = _train(ckpt, 3)
    line = one_line(capsys.readouterr().err)
    assert f"checkpoint {ckpt} is damaged" in line and "restarts from its first epoch" in line
    assert history == fresh  # all three epochs trained again


def test_a_damaged_feature_cache_is_recomputed(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OSAD_CACHE", str(tmp_path))
    calls = []

    def compute():
        calls.append(1)
        return {"levels": [torch.arange(12.0).reshape(3, 4)]}

    features.cached_dataset_features("frozen", "k1", compute)
    file = tmp_path / "frozen" / "k1.pt"
    file.write_bytes(file.read_bytes()[:-50])
    again = features.cached_dataset_features("frozen", "k1", compute)
    assert len(calls) == 2 and torch.equal(again["levels"][0], torch.arange(12.0).reshape(3, 4))
    assert "feature cache" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("content", ["", "{\"01_toy\": {\"status\": \"ok\"", "[1, 2]", "\x00\x01"])
def test_a_damaged_run_state_is_reconstructed_from_the_results_store(clean_store, content, capsys):
    store, clean = clean_store
    state_file = store.path.parent.parent / "run_state.json"
    state_file.write_text(content)
    state = runner.RunState(state_file)
    line = one_line(capsys.readouterr().err)
    assert str(state_file) in line and "reconstructed from the results store" in line and "01_devnet (12 rows)" in line
    assert not state.is_done("01_devnet", "any") and json.loads(state_file.read_text())["01_devnet"]["rows"] == 12


# --------------------------------------------------------------------------------------------
# bad options: one line, exit 2, no kernel started

@contextlib.contextmanager
def read_only_folder(folder: Path) -> Iterator[Path | None]:
    """A folder nothing can be written in (None where this process cannot make one)."""
    if os.geteuid() == 0:  # permission bits do not stop root; a read-only mount does
        with small_filesystem(folder, read_only=True) as mounted:
            yield mounted
        return
    folder.mkdir(parents=True)
    folder.chmod(0o555)
    try:
        yield folder
    finally:
        folder.chmod(0o755)


BAD_OPTIONS = [
    ("negative seed", ["--seeds=-1"], {}, "seeds must be non-negative"),
    ("no seed", ["--seeds", ","], {}, "names no seed"),
    ("empty --only", ["--only", ""], {}, "--only: an empty notebook name"),
    ("paper without datasets", ["--profile", "paper"], {}, "--profile paper needs your datasets"),
    ("data root that does not exist", ["--data-root", "{tmp}/nowhere"], {}, "--data-root"),
    ("OSAD_CACHE naming a file", [], {"OSAD_CACHE": "{tmp}/a_file"}, "OSAD_CACHE"),
    ("output folder under a file", ["--output-dir", "{tmp}/a_file/out"], {}, "cannot be created"),
    ("read-only output folder", ["--output-dir", "{tmp}/ro"], {}, "point it at a writable folder"),
    ("CUDA on a machine without", ["--device", "cuda"], {}, "--device cuda: torch sees no CUDA device"),
]


@pytest.mark.parametrize("args, env, fragment", [c[1:] for c in BAD_OPTIONS], ids=[c[0] for c in BAD_OPTIONS])
def test_bad_options_exit_2_with_one_line_before_any_kernel(args, env, fragment, tmp_path, monkeypatch, capsys):
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.delenv("OSAD_DATA", raising=False)
    monkeypatch.setenv("OSAD_CACHE", str(tmp_path / "cache"))
    (tmp_path / "a_file").write_text("")
    for key, value in env.items():
        monkeypatch.setenv(key, value.format(tmp=tmp_path))
    monkeypatch.setattr(runner.execute, "execute_notebook", lambda *a, **k: pytest.fail("a notebook started"))
    args = [a.format(tmp=tmp_path) for a in args]
    base = ["--notebooks-dir", str(FIXTURES), "--profile", "smoke", "--only", "01", "--output-dir", str(tmp_path / "out")]
    with read_only_folder(tmp_path / "ro") if str(tmp_path / "ro") in args else contextlib.nullcontext(tmp_path) as ok:
        if ok is None:
            pytest.skip("cannot make a read-only folder here")
        code = run_all.main(base + args)  # the later option wins
    line = one_line(capsys.readouterr().err)
    assert code == 2 and fragment in line and line.startswith("run_all.py: error: "), line


# --------------------------------------------------------------------------------------------
# whole runs: Ctrl-C, and a rerun after damage

def _run_all(out: Path, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "run_all.py"), "--notebooks-dir", str(FIXTURES), "--profile",
                             "smoke", "--only", "01", "--output-dir", str(out)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def _rows(out: Path) -> pd.DataFrame:
    return comparable(ResultsStore(out / "runs" / "smoke" / "results" / "01_toy.csv").read())


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """A complete run of the toy notebook, and its rows as they were then."""
    out = tmp_path_factory.mktemp("clean")
    proc = _run_all(out)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    return out, _rows(out)


def test_ctrl_c_is_one_line_exit_130_and_a_rerun_resumes(clean_run, tmp_path):
    for attempt in range(3):  # on a loaded machine the toy notebook may finish before the signal lands
        out_dir = tmp_path / f"attempt{attempt}"
        proc = _run_all(out_dir, start_new_session=True)
        results = out_dir / "runs" / "smoke" / "results" / "01_toy.csv"
        deadline = time.time() + 120
        while not (results.exists() and len(results.read_text().splitlines()) > 1) and time.time() < deadline:
            time.sleep(0.02)  # stop it inside the notebook, with some experiments stored
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
        out, err = proc.communicate(timeout=120)
        if proc.returncode != 0:
            break
    assert proc.returncode == 130, out + err
    assert "interrupted" in one_line(err) and "rerun the same command to resume" in err
    rerun = _run_all(out_dir)
    assert rerun.wait(timeout=300) == 0
    pd.testing.assert_frame_equal(_rows(out_dir), clean_run[1])


def test_a_rerun_after_damage_recovers_every_row_of_an_undamaged_run(clean_run):
    out, reference = clean_run  # damaged in place: the same parameters, so the notebook counts as completed
    runs = out / "runs" / "smoke"
    text = (runs / "results" / "01_toy.csv").read_text()
    (runs / "results" / "01_toy.csv").write_text(text[:-30] + "\ngarbage\n")  # cut inside its last row, then junk
    rerun = _run_all(out)
    stdout, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0 and "01_toy: ok" in stdout, stdout + err  # not "skipped": its results were damaged
    assert "line 13:" in one_line(err) and "01_toy.csv.quarantine" in err
    pd.testing.assert_frame_equal(_rows(out), reference)
    (runs / "run_state.json").write_text("")
    rerun = _run_all(out)
    stdout, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0 and "01_toy: ok" in stdout and "reconstructed from the results store" in one_line(err)
    pd.testing.assert_frame_equal(_rows(out), reference)
    rerun = _run_all(out)
    assert "01_toy: skipped" in rerun.communicate(timeout=300)[0]  # healed: completed again


# --------------------------------------------------------------------------------------------
# permissions and cache keys

@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_written_files_follow_the_umask(umask, mode, tmp_path):
    old = os.umask(umask)
    try:
        ResultsStore(tmp_path / "r.csv").append(experiment(0).rows({"auroc": 0.5}, 0.1))
        save_checkpoint(tmp_path / "c.pt", {"w": torch.zeros(3)})
    finally:
        os.umask(old)
    for name in ("r.csv", "c.pt", "c.pt.sha256"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name


def test_the_tensor_cache_serves_a_moved_dataset_and_a_copied_cache(dataset, tmp_path, monkeypatch):
    decoded = []
    real = tensors.decode_sample
    monkeypatch.setattr(tensors, "decode_sample", lambda *a: decoded.append(1) or real(*a))
    first = tensors.load_images(dataset, read_mvtec_layout(dataset), 32)
    assert len(decoded) == 25
    moved = tmp_path / "elsewhere" / "weave"
    shutil.copytree(dataset, moved)  # new paths, new modification times, same content
    copy = tmp_path / "copied-cache"
    shutil.copytree(paths.cache_dir(), copy)
    monkeypatch.setenv("OSAD_CACHE", str(copy))
    again = tensors.load_images(moved, read_mvtec_layout(moved), 32)
    assert len(decoded) == 25 and torch.equal(first.images, again.images)
    assert np.array_equal(first.labels.numpy(), again.labels.numpy())
