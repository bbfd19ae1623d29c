"""The notebook series: static checks, and every notebook executing end to end on the smoke profile."""

import json
import os
import re
import subprocess
from pathlib import Path

import papermill
import pytest

import smoke_numbers
from series import SeriesRun
from osad_lib.experiments import module_for
from osad_lib.results import ResultsStore
from osad_lib.runner import STANDARD_PARAMETERS, list_notebooks

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = list_notebooks(ROOT / "notebooks")
#: The kernel `make venv` installs (its display name is what JupyterLab writes into a notebook).
#: The smoke run of the whole series is the setup of several tests: more time than the default.
pytestmark = pytest.mark.timeout(1800)
KERNEL_DISPLAY_NAME = re.search(r'--display-name "([^"]+)"', (ROOT / "Makefile").read_text()).group(1)


def test_series_exists():
    assert NOTEBOOKS and NOTEBOOKS[0] == "00_datasets"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_clean_and_parameterised(name):
    path = ROOT / "notebooks" / f"{name}.ipynb"
    nb = json.loads(path.read_text())
    # what JupyterLab writes on opening with the project's kernel, so the notebook is not marked modified
    assert nb["metadata"]["kernelspec"] == {"display_name": KERNEL_DISPLAY_NAME, "language": "python", "name": "python3"}
    assert {"codemirror_mode", "mimetype", "pygments_lexer", "version"} <= set(nb["metadata"]["language_info"])
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and not c.get("execution_count") for c in code), "commit without outputs"
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    declared = papermill.inspect_notebook(str(path))
    assert set(STANDARD_PARAMETERS) <= set(declared)
    assert declared["profile"]["default"] == '"demo"'
    assert declared["interactive"]["default"] == "True"  # widgets in Jupyter; run_all.py passes False
    display_cell = next(k for k, c in enumerate(code) if "widgets.notebook_display(cfg)" in "".join(c["source"]))
    imported = "".join("".join(c["source"]) for c in code[:display_cell])
    assert re.search(r"^from osad_lib import [\w, ]*\bwidgets\b", imported, re.M), "import widgets before the display"
    assert nb["cells"][0]["cell_type"] == "markdown"  # opens with the paper's claim


@pytest.fixture(scope="session")
def smoke_run(smoke_series: SeriesRun) -> tuple[Path, SeriesRun]:
    """Where the smoke run of the whole series wrote, and how it ended (``tests/series.py``)."""
    return smoke_series.out, smoke_series


def test_every_notebook_runs_on_the_smoke_profile(smoke_run):
    out, proc = smoke_run
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for name in NOTEBOOKS:
        assert f"{name}: ok" in proc.stdout
        assert (out / "runs" / "smoke" / f"{name}.ipynb").exists()


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_smoke_run_writes_results_tables_and_figures(smoke_run, name):
    out, _ = smoke_run
    module = module_for(name)
    results = out / "runs" / "smoke" / "results" / f"{name}.csv"
    if module is not None and name not in ("00_datasets", "08_report"):
        rows = ResultsStore(results).read()
        assert len(rows) > 0 and (rows["status"] == "ok").all()
        assert rows["value"].between(0, 1).all()
        assert (rows["profile"] == "smoke").all() and (rows["dataset"] != "").all()
    assert any((out / "figures" / "smoke").glob("*.png")) and any((out / "runs" / "smoke" / "tables").glob("*.csv"))


def test_smoke_numbers_are_the_locked_ones(smoke_run):
    """Nothing but code moved: every result row of the smoke run has its locked value (issue: lock
    the numbers before the architecture changes). ``make lock-smoke`` rewrites the lock on purpose."""
    out, _ = smoke_run
    moved = smoke_numbers.differences(smoke_numbers.collect(out), smoke_numbers.read_lock())
    assert moved.empty, f"{len(moved)} smoke numbers differ from tests/expected/smoke_results.csv " \
        f"(left_only: new row, right_only: row gone):\n{moved.head(30).to_string()}"


def test_the_smoke_lock_catches_a_moved_number():
    locked = smoke_numbers.read_lock()
    assert len(locked) > 400 and locked["notebook"].nunique() == 7  # 01-07 store rows; 00 and 08 only read
    halved = locked.assign(value=locked["value"] / 2)
    assert len(smoke_numbers.differences(halved, locked)) == (locked["value"] != 0).sum()
    assert len(smoke_numbers.differences(locked.iloc[1:], locked)) == 1
    nudged = locked.assign(value=locked["value"] + smoke_numbers.TOLERANCE / 2)
    assert smoke_numbers.differences(nudged, locked).empty


def test_make_lab_works_as_root():
    dry = subprocess.run(["make", "-n", "-o", "venv", "-o", ".venv/.osad-installed", "lab"], capture_output=True,
                         text=True, cwd=ROOT)
    assert dry.returncode == 0 and "jupyter lab notebooks/" in dry.stdout
    assert ("--allow-root" in dry.stdout) == (os.geteuid() == 0)


def test_smoke_notebooks_print_no_warning_and_show_the_smoke_banner(smoke_run):
    out, _ = smoke_run
    for name in NOTEBOOKS:
        nb = json.loads((out / "runs" / "smoke" / f"{name}.ipynb").read_text())
        outputs = [o for cell in nb["cells"] for o in cell.get("outputs", [])]
        stderr = ["".join(o["text"]) for o in outputs if o.get("name") == "stderr"]
        assert stderr == [], (name, stderr[0][:1000])  # warnings, notices and tracebacks all go to stderr
        shown = ["".join(o.get("data", {}).get("text/markdown", "")) for o in outputs]
        assert any("smoke profile: every number below is meaningless" in text for text in shown), name


def test_smoke_results_have_no_widget_errors(smoke_run):
    out, _ = smoke_run
    for name in NOTEBOOKS:
        nb = json.loads((out / "runs" / "smoke" / f"{name}.ipynb").read_text())
        for cell in nb["cells"]:
            for output in cell.get("outputs", []):
                assert output.get("output_type") != "error", name
                text = "".join(output.get("text", "")) if output.get("name") == "stderr" else ""
                assert "Widget" not in text and "Traceback" not in text, (name, text[:500])
