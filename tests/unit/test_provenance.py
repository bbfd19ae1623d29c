"""Every results row names the commit of the code that produced it (``git_sha``)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from osad_lib.paths import PROJECT_ROOT
from osad_lib.provenance import DIRTY_SUFFIX, code_commit
from osad_lib.results import Experiment

needs_git = pytest.mark.skipif(not shutil.which("git"), reason="needs git")


def _repository(folder):
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    (folder / "a.txt").write_text("one\n")
    for args in (["add", "a.txt"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one"]):
        subprocess.run(["git", *args], cwd=folder, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True).stdout.strip()


@needs_git
def test_the_commit_of_a_checkout_and_its_uncommitted_changes(tmp_path):
    sha = _repository(tmp_path / "clean")
    assert code_commit(tmp_path / "clean") == sha and re.fullmatch(r"[0-9a-f]{40}", sha)
    _repository(tmp_path / "dirty")
    (tmp_path / "dirty" / "a.txt").write_text("two\n")
    assert code_commit(tmp_path / "dirty").endswith(DIRTY_SUFFIX)


@needs_git
def test_a_folder_inside_a_repository_is_not_a_checkout(tmp_path):
    _repository(tmp_path)
    (tmp_path / "site-packages").mkdir()  # an installed package sitting inside someone's repository
    assert code_commit(tmp_path / "site-packages") == ""


def test_a_results_row_records_the_commit():
    rows = Experiment(notebook="01_devnet", paper="devnet", table="table2", dataset="elpv", method="devnet", seed=0,
                      profile="smoke").rows(
        {"auroc": 0.5}, 1.0)
    assert rows[0]["git_sha"] == code_commit(PROJECT_ROOT)
