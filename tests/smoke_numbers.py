"""The smoke profile's numbers, locked: every result row a smoke run of the whole series stores,
keyed by what it measured (not by its experiment id, which hashes the configuration's layout), with
the value it had when the lock was written. A change to the code that moves any of them fails
``tests/notebooks/test_notebooks.py``; a change that is meant to move them rewrites the lock with

    python -m tests.smoke_numbers RUN_OUTPUT_DIR      # the --output-dir of a smoke run

(``make lock-smoke`` runs the smoke profile and does that) and the diff of ``tests/expected/smoke_results.csv``
shows in review which numbers moved.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

#: The columns that say what a row measured (unique over a smoke run).
KEY = ("notebook", "table", "dataset", "subset", "setting", "n_shots", "method", "variant", "source",
       "backbone", "seed", "metric")
#: Where the lock lives.
LOCK = Path(__file__).resolve().parent / "expected" / "smoke_results.csv"
#: The largest difference a value may show against the lock. Same code, same seed and a 2-core CPU
#: give the same numbers (two smoke runs on the development machine agreed exactly); the tolerance
#: covers floating-point summation order on another CPU model, far below what any real change moves.
TOLERANCE = 1e-6


def collect(output_dir: Path) -> pd.DataFrame:
    """Every stored result row of the smoke run written under ``output_dir``, key and value only,
    sorted by key."""
    files = sorted((Path(output_dir) / "runs" / "smoke" / "results").glob("*.csv"))
    rows = pd.concat([pd.read_csv(f, dtype={"seed": "Int64", "n_shots": "Int64"}, keep_default_na=False,
                                  na_values=[""]) for f in files], ignore_index=True)
    rows = rows[rows["status"] == "ok"]
    return _keyed(rows[list(KEY) + ["value"]])


def read_lock(path: Path = LOCK) -> pd.DataFrame:
    """The locked rows, in the same form as :func:`collect`."""
    return _keyed(pd.read_csv(path, dtype={"seed": "Int64", "n_shots": "Int64"}, keep_default_na=False, na_values=[""]))


def _keyed(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with its text keys as strings (empty for missing), sorted by :data:`KEY`."""
    table = table.copy()
    for column in KEY:
        if column not in ("seed", "n_shots"):
            table[column] = table[column].fillna("").astype(str)
    return table.sort_values(list(KEY)).reset_index(drop=True)


def differences(measured: pd.DataFrame, locked: pd.DataFrame, tolerance: float = TOLERANCE) -> pd.DataFrame:
    """Rows that are only in one of the two, or whose values differ by more than ``tolerance``:
    columns ``value_measured``, ``value_locked`` and ``_merge`` (``left_only``: new, ``right_only``: gone)."""
    joined = measured.merge(locked, on=list(KEY), how="outer", suffixes=("_measured", "_locked"), indicator=True)
    moved = (joined["value_measured"] - joined["value_locked"]).abs() > tolerance
    return joined[(joined["_merge"] != "both") | moved].reset_index(drop=True)


def write_lock(output_dir: Path, path: Path = LOCK) -> int:
    """Rewrite the lock from the smoke run under ``output_dir``; returns the number of rows."""
    table = collect(output_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    table.to_csv(tmp, index=False, float_format="%.10g")
    tmp.replace(path)
    return len(table)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.smoke_numbers RUN_OUTPUT_DIR (the --output-dir of a smoke run)")
    print(f"{write_lock(Path(sys.argv[1]))} rows written to {LOCK}")
