"""Time the demo as a new user meets it: a fresh clone, nothing beside it, an empty cache.

    python -m osad_lib.demo_budget                 # make demo-budget: the demo profile, 30-minute budget
    python -m osad_lib.demo_budget --only 00,01    # some notebooks
    python -m osad_lib.demo_budget --warm-cache    # with this machine's cache (data and features kept)

The repository's files (its tracked and not-ignored files: the working tree, uncommitted edits
included) are copied into a new folder with nothing beside it — no sibling folders, no ``runs/``,
no virtual environment — and ``run_all.py`` runs there with this interpreter (the installation is
not timed), its own ``osad_lib`` first on the path, a new empty cache folder (``OSAD_CACHE``), and
no data, ADBench or output locations from the environment. At the end it prints, and writes as
Markdown beside the run (``--report`` to choose where), the per-notebook wall and CPU times that
``run_all.py`` recorded (``timings.csv``), the machine, the commit, and whether the run stayed
within the budget. Exit code 0 when every notebook succeeded within the budget, 1 otherwise.
Then the bulk is deleted — the clone, the new cache and the stored models, several GB together —
and the report, timings, notebooks, results, tables and figures stay (``--keep``: keep everything).

The README's "Demo time" table comes from this script. It is a benchmark run by hand, not a
timed test: CI's machines are shared, and the demo takes longer than a test suite may.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

import pandas as pd

from osad_lib import paths
from osad_lib.provenance import DIRTY_SUFFIX, code_commit

#: Environment variables that point a run at data or outputs outside the clone.
OUTSIDE_LOCATIONS = ("OSAD_DATA", "OSAD_ADBENCH", "OSAD_OUTPUT", "OSAD_CACHE")
#: Local state that a copy without git leaves out (what a clone does not have).
LOCAL_STATE = (".git", ".venv", "runs", "figures", "cache", ".cache", "__pycache__", "*.egg-info", ".pytest_cache")


def fresh_clone(parent: Path, root: Path = paths.PROJECT_ROOT) -> Path:
    """The repository as a user's clone has it: its tracked and not-ignored files (the working
    tree, so uncommitted edits come along) copied to ``parent/osad-companion``, nothing beside it."""
    clone = parent / "osad-companion"
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                             capture_output=True) if shutil.which("git") else None
    if listing is None or listing.returncode != 0:  # not a git checkout (an unpacked archive)
        shutil.copytree(root, clone, ignore=shutil.ignore_patterns(*LOCAL_STATE))
        return clone
    for name in sorted(n for n in listing.stdout.decode().split("\0") if n and (root / n).is_file()):
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, clone / name)
    return clone


def clone_environment(clone: Path, cache: Path | None) -> dict[str, str]:
    """This process's environment for a run in ``clone``: the clone's ``osad_lib`` first on the path
    of ``run_all.py`` and of its kernels, no data or output locations, the cache at ``cache`` (None:
    this machine's own)."""
    env = {k: v for k, v in os.environ.items() if k not in OUTSIDE_LOCATIONS or (k == "OSAD_CACHE" and cache is None)}
    env["PYTHONPATH"] = str(clone)
    if cache is not None:
        env["OSAD_CACHE"] = str(cache)
    return env


def machine() -> str:
    """One line: CPU model, usable cores, memory, Python and torch versions."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        model = names[0] if names else model
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        total = next((line.split()[1] for line in meminfo.read_text().splitlines() if line.startswith("MemTotal")), "")
        memory = f", {int(total) / 2**20:.0f} GiB memory" if total else ""
    return f"{model}, {cores} cores{memory}; Python {platform.python_version()}, torch {version('torch')}"


def commit(root: Path = paths.PROJECT_ROOT) -> str:
    """The checkout's short commit, with ``+ uncommitted changes`` when its tracked files differ
    (:func:`osad_lib.provenance.code_commit`)."""
    sha = code_commit(root)
    if not sha:
        return "unknown (not a git checkout, or no git)"
    return sha[:7] + (" + uncommitted changes" if sha.endswith(DIRTY_SUFFIX) else "")


def timing_table(timings: pd.DataFrame) -> pd.DataFrame:
    """``timings.csv`` as the README shows it: notebook, status, wall and CPU as m:ss, experiments
    run and reused, and a total row."""
    def clock(seconds: float) -> str:
        return f"{int(seconds // 60)}:{int(round(seconds % 60)):02d}"

    rows = [{"notebook": r.notebook, "status": r.status, "wall": clock(r.wall_s), "kernel CPU": clock(r.cpu_s),
             "experiments run": int(r.experiments_run), "reused": int(r.experiments_reused)}
            for r in timings.itertuples()]
    rows.append({"notebook": "total", "status": "", "wall": clock(timings["wall_s"].sum()),
                 "kernel CPU": clock(timings["cpu_s"].sum()), "experiments run": int(timings["experiments_run"].sum()),
                 "reused": int(timings["experiments_reused"].sum())})
    return pd.DataFrame(rows)


def report(timings: pd.DataFrame, profile: str, budget_min: float, elapsed_s: float, cache: str, returncode: int,
           code: str = "") -> tuple[str, bool]:
    """(the Markdown report, whether the run succeeded within the budget); ``code``: the commit
    that was cloned (:func:`commit`, taken when the clone was made; default: now)."""
    wall = float(timings["wall_s"].sum()) if len(timings) else elapsed_s
    ok = returncode == 0 and len(timings) and (timings["status"] == "ok").all() and wall <= budget_min * 60
    verdict = (f"within the {budget_min:g}-minute budget" if wall <= budget_min * 60 else
               f"over the {budget_min:g}-minute budget by {(wall - budget_min * 60) / 60:.1f} min")
    lines = [f"# Demo time: profile `{profile}` from a fresh clone", "",
             f"- machine: {machine()}", f"- commit: {code or commit()}", f"- cache: {cache}",
             f"- run_all.py exit code {returncode}; notebooks {wall / 60:.1f} min wall "
             f"({elapsed_s / 60:.1f} min with start-up and the closing summary): **{verdict}**", ""]
    if len(timings):
        lines.append(timing_table(timings).to_markdown(index=False))
    return "\n".join(lines) + "\n", bool(ok)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="demo", help="the built-in profile to time (default demo)")
    parser.add_argument("--only", default="", help="comma-separated notebooks (default: all)")
    parser.add_argument("--budget-min", type=float, default=30.0, help="the budget in minutes (default 30)")
    parser.add_argument("--warm-cache", action="store_true",
                        help="use this machine's cache folder instead of a new empty one")
    parser.add_argument("--work-dir", default="", help="where the clone and its outputs go (default: a new "
                                                       "temporary folder, kept)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the clone, its cache and the stored models (default: deleted after the report)")
    parser.add_argument("--report", default="", help="where the Markdown report goes (default: demo_budget.md in "
                                                     "the work folder)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="osad-demo-budget-"))
    work.mkdir(parents=True, exist_ok=True)
    if any((work / name).exists() for name in ("osad-companion", "cache", "out")):
        print(f"demo_budget: {work} holds an earlier run; pass an empty --work-dir", file=sys.stderr)
        return 2
    clone, code = fresh_clone(work), commit()  # the commit cloned, not the one checked out when it ends
    cache = None if args.warm_cache else work / "cache"
    command = [sys.executable, str(clone / "run_all.py"), "--profile", args.profile, "--output-dir", str(work / "out")]
    if args.only:
        command += ["--only", args.only]
    print(f"[demo_budget] fresh clone in {clone}; cache {cache or 'of this machine'}; running {' '.join(command[1:])}",
          flush=True)
    start = time.perf_counter()
    returncode = subprocess.run(command, cwd=clone, env=clone_environment(clone, cache)).returncode
    elapsed = time.perf_counter() - start
    timings_file = work / "out" / "runs" / args.profile / "timings.csv"
    timings = pd.read_csv(timings_file) if timings_file.is_file() else pd.DataFrame()
    text, ok = report(timings, args.profile, args.budget_min, elapsed,
                      "this machine's (warm)" if cache is None else "a new, empty folder", returncode, code)
    destination = Path(args.report) if args.report else work / "demo_budget.md"
    paths.atomic_write_text(destination, text)
    print("\n" + text + f"\n(report: {destination})")
    if not args.keep:
        discard_bulk(work, cache, args.profile)
    return 0 if ok else 1


def discard_bulk(work: Path, cache: Path | None, profile: str) -> None:
    """Delete what a finished timing run no longer needs and takes the most disk: the clone, its
    new cache (None: this machine's, kept) and the run's stored models."""
    for folder in (work / "osad-companion", cache, paths.models_dir(profile, work / "out")):
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
