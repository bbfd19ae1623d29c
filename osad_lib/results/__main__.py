"""``python -m osad_lib.results migrate FILE...``: rewrite results files in the current schema."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from osad_lib.results.store import ResultsStore


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m osad_lib.results migrate FILE...``: rewrite results files in this schema."""
    parser = argparse.ArgumentParser(prog="python -m osad_lib.results", description=main.__doc__)
    parser.add_argument("command", choices=["migrate"])
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for file in args.files:
        rows = ResultsStore(file).migrate()
        print(f"{file}: {len(rows)} rows in the current schema")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
