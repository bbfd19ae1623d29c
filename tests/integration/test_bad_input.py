"""Bad input wherever a user can type or point: every case fails with one line that names what
is wrong (and, where there is one, the closest valid value), before any work starts.

One table covers notebook parameters, run_all.py options, method settings, protocols, data
folders and files; each row is (what the user did, the call, a fragment the message must hold).
"""

from pathlib import Path

import numpy as np
import pytest

import run_all
from osad_lib.data.mvtec import Sample
from osad_lib.data.protocols import make_split
from osad_lib.data.registry import resolve
from osad_lib.data.tabular import adbench_split, group_of, load_npz
from osad_lib.methods.devnet.model import DevNetConfig
from osad_lib.methods.dra import DRAConfig
from osad_lib.profiles import configure, get_profile
from osad_lib.results import ResultsSchemaError, ResultsStore
from osad_lib.validate import ConfigError

SAMPLES = [Sample(f"train/good/{i}.png", 0, "good", None, "train") for i in range(8)] + \
          [Sample(f"test/good/{i}.png", 0, "good", None, "test") for i in range(4)] + \
          [Sample(f"test/{c}/{i}.png", 1, c, None, "test") for c in ("crack", "hole") for i in range(3)]


def _bad_npz(tmp_path: Path) -> Path:
    np.savez(tmp_path / "bad.npz", features=np.zeros((3, 2)))
    return tmp_path / "bad.npz"


CASES = [
    ("profile typo", lambda t: configure("01_devnet", profile="dmeo"), "did you mean 'demo'"),
    ("unknown device", lambda t: configure("01_devnet", device="gpu"), "parameter 'device'"),
    ("seeds not integers", lambda t: configure("01_devnet", seeds="0,one"), "parameter 'seeds'"),
    ("resume as a string", lambda t: configure("01_devnet", resume="yes"), "parameter 'resume'"),
    ("interactive as an int", lambda t: configure("01_devnet", interactive=1), "parameter 'interactive'"),
    ("negative jobs", lambda t: configure("01_devnet", jobs=-1), "parameter 'jobs'"),
    ("data_root that does not exist", lambda t: configure("01_devnet", data_root=str(t / "nope")), "parameter 'data_root'"),
    ("paper profile without data", lambda t: configure("01_devnet", profile="paper"), "needs your datasets"),
    ("unknown profile override", lambda t: get_profile("demo", epoch=3), "unknown profile override"),
    ("dataset typo", lambda t: resolve("elvp"), "did you mean"),
    ("user dataset without a data root", lambda t: resolve("aitex"), "pass data_root"),
    ("multi-subset dataset without a subset", lambda t: resolve("mvtecad"), "name one, e.g. 'mvtecad/"),
    ("DevNet variant typo", lambda t: DevNetConfig(variant="mil-ds"), "did you mean 'mil_ds'"),
    ("DevNet top-K ratio out of range", lambda t: DevNetConfig(topk_ratio=1.5), "topk_ratio must be in (0, 1]"),
    ("DevNet odd batch size", lambda t: DevNetConfig(batch_size=7), "even number"),
    ("DevNet unknown option", lambda t: DevNetConfig.from_overrides({"epoch": 3}), "unknown DevNet setting"),
    ("DRA head typo", lambda t: DRAConfig(heads=("seen", "psuedo")), "did you mean 'pseudo'"),
    ("DRA no reference for the composite head", lambda t: DRAConfig(n_ref=0), "n_ref must be >= 1"),
    ("DRA pseudo probability out of range", lambda t: DRAConfig(pseudo_prob=2.0), "pseudo_prob must be in [0, 1]"),
    ("setting typo", lambda t: make_split(SAMPLES, "genral", 1, 0), "did you mean 'general'"),
    ("zero shots", lambda t: make_split(SAMPLES, "general", 0, 0), "positive integer"),
    ("more shots than anomalies", lambda t: make_split(SAMPLES, "general", 6, 0), "anomalies must leave the test set"),
    ("contamination of 1", lambda t: make_split(SAMPLES, "general", 1, 0, contamination=1.0), "parameter 'contamination'"),
    ("hard setting without a seen class", lambda t: make_split(SAMPLES, "hard", 1, 0), "needs seen_class"),
    ("unknown ADBench file", lambda t: group_of("MVTec_bottle"), "not an ADBench file"),
    ("npz without X and y", lambda t: load_npz(_bad_npz(t)), "needs 'X' and 'y'"),
    ("labelled-anomaly ratio of 0", lambda t: adbench_split(np.zeros((50, 2)), np.r_[np.zeros(45), np.ones(5)], 0, la=0.0),
     "must lie in (0, 1]"),
    ("results file from another version", lambda t: _read_foreign_results(t), "do not match the results schema"),
    ("run_all.py profile typo", lambda t: _run_all(t, "--profile", "smoek"), "did you mean 'smoke'"),
    ("run_all.py notebook typo", lambda t: _run_all(t, "--only", "01_devent"), "did you mean '01_devnet'"),
    ("run_all.py non-integer seeds", lambda t: _run_all(t, "--seeds", "a,b"), "--seeds"),
    ("run_all.py negative jobs", lambda t: _run_all(t, "--jobs", "-2"), "--jobs"),
]


def _read_foreign_results(tmp_path: Path):
    path = tmp_path / "results.csv"
    path.write_text("notebook,auc\n01_devnet,0.8\n")
    return ResultsStore(path).read()


def _run_all(tmp_path: Path, *args: str):
    """run_all.py's own validation (exit code 2) without starting any notebook."""
    code = run_all.main([*args, "--output-dir", str(tmp_path), "--plan"])
    raise ConfigError(f"exit code {code}") if code != 2 else SystemExit(2)


def test_the_table_covers_every_place_a_user_types_or_points():
    """Notebook parameters, run_all.py options, profiles, datasets, method settings, protocols,
    ADBench files and results files: each place has a case, and every case is named once."""
    callees = {c[1].__code__.co_names[0] if c[1].__code__.co_names else "" for c in CASES}
    assert {"configure", "get_profile", "resolve", "DevNetConfig", "DRAConfig", "make_split", "group_of", "load_npz",
            "adbench_split", "_read_foreign_results", "_run_all"} <= callees
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("what, call, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_in_one_line_naming_the_fix(what, call, fragment, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("OSAD_DATA", raising=False)
    with pytest.raises((ConfigError, ResultsSchemaError, SystemExit)) as info:
        call(tmp_path)
    message = capsys.readouterr().err.strip() if info.type is SystemExit else str(info.value)
    assert fragment in message, message
    # one short line, not counting the paths it names (the temporary folder's length varies)
    assert "\n" not in message and len(message.replace(str(tmp_path), "")) < 400, message
