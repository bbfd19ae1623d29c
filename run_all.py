#!/usr/bin/env python
"""Run every notebook headless through papermill and write figures, tables and results.

    python run_all.py                          # demo profile: embedded real data, CPU or CUDA
    python run_all.py --profile smoke          # seconds-long check of every notebook
    python run_all.py --profile paper --data-root ~/datasets --device cuda
    python run_all.py --only 02_dra,05_ahl --seeds 0,1
    python run_all.py --plan --profile paper   # print the experiment grid, run nothing
    python run_all.py --profile paper --dry-run     # the paper settings, one step per run, generated data
    python run_all.py --profile paper --dry-run ci  # the same, CI-sized (one dataset per family, one run per path)
    python run_all.py --datasets headct,brainmri --data-root ~/datasets --only 01,02,05
    python run_all.py --profile-file my.toml   # a custom profile: base = "demo" plus overrides
    python run_all.py --only 06 -p studies=dra_table4   # a notebook parameter (typed as declared)

Executed notebooks go to runs/<profile>/, figures to figures/<profile>/ (PNG and PDF), tables to
runs/<profile>/tables/ (CSV and Markdown), result rows to runs/<profile>/results/. Interrupted
runs continue where they stopped (--resume, the default). Every option is checked before any
notebook starts. A dry run writes under its own profile (runs/paper-dry-run*/); without --data-root
it generates its data and random-weight backbone files (osad_lib.dryrun). Exit code 0 when every
notebook succeeded, 1 when one failed (or the disk filled up), 2 for bad options, 130 when
interrupted (Ctrl-C; rerun the same command to resume).
A custom profile's outputs go to runs/<name>@<hash of its settings>/ (and figures/ alike).
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from pathlib import Path

from osad_lib import paths, runner
from osad_lib.profiles import PROFILES
from osad_lib.validate import ConfigError, choose


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default=None, help=f"one of {', '.join(PROFILES)} (default demo)")
    parser.add_argument("--profile-file", default="", metavar="FILE",
                        help='a custom profile (TOML or YAML): base = "demo" plus overrides of its fields and '
                             "[methods.<method>] settings; replaces --profile")
    parser.add_argument("--datasets", default="", metavar="NAMES",
                        help="comma-separated registry names (e.g. elpv,headct,mvtecad/bottle) replacing the "
                             "profile's image datasets (notebooks 00, 01, 02, 05); they must be embedded or under "
                             "--data-root")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a notebook parameter (repeatable), typed as its parameters cell declares it, passed "
                             "to the selected notebooks that have it, e.g. -p studies=dra_table4")
    parser.add_argument("--only", default=None, help="comma-separated notebooks, e.g. 02_dra,05_ahl or 02,05")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    parser.add_argument("--data-root", default="", help="your datasets in the MVTec layout (default: OSAD_DATA)")
    parser.add_argument("--seeds", default="", help="comma-separated seeds (default: the profile's)")
    parser.add_argument("--output-dir", default="", help="parent of runs/ and figures/ (default: OSAD_OUTPUT or here)")
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                        help="skip finished notebooks and stored experiments (default on)")
    parser.add_argument("--plan", action="store_true", help="print the experiment grid and its size; run nothing")
    parser.add_argument("--dry-run", nargs="?", const="full", default="", metavar="full|ci",
                        help="with --profile paper: its real settings and every grid cell, but one optimisation step "
                             "per run, a truncated test set and one seed (profile paper-dry-run); 'ci': one dataset "
                             "per family, batches of 4, one run per code path (paper-dry-run-ci). Without --data-root "
                             "on generated data and random-weight backbone files")
    parser.add_argument("--jobs", type=int, default=0, metavar="N",
                        help="worker processes per notebook grid on the CPU, one torch thread each (default 0: one per "
                             "core, at most 4; 1 runs every experiment in the notebook's kernel)")
    parser.add_argument("--executor", default="local", help="local | slurm: where the grid's runs execute (default local)")
    parser.add_argument("--gpus", type=int, default=1, help="local GPUs to spread the grid over, one worker each (default 1)")
    parser.add_argument("--notebooks-dir", default=str(runner.NOTEBOOKS_DIR), help=argparse.SUPPRESS)
    parser.add_argument("--submitit-cluster", default=None, help=argparse.SUPPRESS)  # tests: "local"
    return parser.parse_args(argv)


DRY_RUN_PROFILES = {"full": "paper-dry-run", "ci": "paper-dry-run-ci"}


def options_from(args: argparse.Namespace) -> runner.RunOptions:
    """Validate the command line up front (:func:`osad_lib.runner.validate_options`); every
    error is one line (exit code 2). ``--dry-run`` swaps the paper profile for its dry-run profile."""
    if args.dry_run:
        if args.profile != "paper":
            raise ConfigError(f"--dry-run runs the paper profile's settings; use --profile paper (got {args.profile!r})")
        args.profile = DRY_RUN_PROFILES[choose("--dry-run", args.dry_run, DRY_RUN_PROFILES)]
    choose("--executor", args.executor, ("local", "slurm"))
    if args.gpus < 1:
        raise ConfigError(f"--gpus: {args.gpus} is not a positive number of GPUs; use 1 for no fan-out")
    only = () if args.only is None else tuple(s.strip() for s in args.only.split(","))
    if args.profile is not None and args.profile_file:
        raise ConfigError("--profile and --profile-file: give one; the profile file names its base profile "
                          "(base = \"demo\")")
    paths.absolute_environment()  # the notebooks run in notebooks/: relative folders are the caller's
    options = runner.RunOptions(profile=args.profile or "demo", only=only, device=args.device,
                                data_root=paths.absolute(args.data_root), seeds=args.seeds,
                                output_dir=paths.absolute(args.output_dir), resume=args.resume,
                                notebooks_dir=Path(paths.absolute(args.notebooks_dir)),
                                profile_file=paths.absolute(args.profile_file),
                                datasets=args.datasets, params=tuple(parse_param(p) for p in args.param), jobs=args.jobs)
    return runner.validate_options(options, execute=not args.plan)


def parse_param(text: str) -> tuple[str, str]:
    """``NAME=VALUE`` of ``-p`` as (name, value); a one-line error otherwise."""
    name, equals, value = text.partition("=")
    if not equals or not name.strip().isidentifier():
        raise ConfigError(f"-p {text}: expected NAME=VALUE with a notebook parameter's name, e.g. -p studies=dra_table4")
    return name.strip(), value


def fan_out(args: argparse.Namespace, options: runner.RunOptions) -> bool:
    """With --executor slurm or --gpus N>1, run the grids' seeds as parallel jobs first.

    Returns False when a job failed. The sequential pass that follows finds every experiment in
    the results store and only assembles tables and figures.
    """
    from osad_lib import fanout
    from osad_lib.profiles import get_profile
    from osad_lib.validate import parse_int_list

    selected = runner.select_notebooks(options.only, runner.list_notebooks(options.notebooks_dir))
    notebooks = [n for n in selected if runner.trains_something(n, options)]
    seeds = parse_int_list("--seeds", options.seeds) if options.seeds else get_profile(options.profile).seeds
    chunks = fanout.chunks_for(notebooks, seeds)
    print(f"[run_all] fanning out {len(chunks)} jobs ({args.executor}, {args.gpus} GPU(s))")
    outcomes = fanout.fan_out(chunks, options, args.executor, gpus=args.gpus, cluster=args.submitit_cluster)
    for o in outcomes:
        print(f"[run_all] job {o.output.name}: {o.status} in {o.seconds:.1f} s{' — ' + o.message if o.message else ''}")
    return all(o.status == "ok" for o in outcomes)


def print_plan(options: runner.RunOptions) -> None:
    grid, skipped = runner.plan_with_skips(options)
    if grid.empty:
        print("no experiments in the selected notebooks")
        return
    print(f"Experiment grid of profile {options.profile!r}" + (f" ({options.profile_file})" if options.profile_file else "")
          + (f" on datasets {options.datasets}" if options.datasets else "") + ":")
    from osad_lib import paths
    from osad_lib.profiles import get_profile

    if paths.data_root(options.data_root) is None and get_profile(options.profile).needs_data_root:
        print("  (no data root: every experiment is listed; those whose data are missing are skipped when run)")
    else:
        for line in (line for lines in skipped.values() for line in lines):
            print(f"  {line}")
        if grid["missing"].any():
            print(f"  ({int(grid['missing'].sum())} experiments skipped for missing data are left out below)")
        grid = grid[~grid["missing"]]
    by = ["notebook", "paper", "table", "method"]
    table = grid.groupby(by, dropna=False).agg(
        runs=("seed", "size"), datasets=("dataset", "nunique"), seeds=("seed", "nunique"),
        train_images=("train_images", "sum"), eval_images=("eval_images", "sum")).reset_index()
    print(table.to_string(index=False))
    print(f"\n{len(grid)} training runs in all; {int(grid.train_images.sum()):,} training and "
          f"{int(grid.eval_images.sum()):,} evaluation image passes.")
    rates = runner.measured_throughput(options.output_dir)
    for device, (seconds, basis) in runner.estimate_seconds(grid, get_profile(options.profile).image_size, rates).items():
        print(f"estimated time on {device}: {seconds / 3600:.1f} h ({basis})")
    if not rates:
        print("(a reference CPU rate; run `make bench` on your machine, e.g. a GPU node, for its own estimate)")


def dry_run_inputs(options: runner.RunOptions, scope: str) -> runner.RunOptions:
    """Generate (once) the dry run's datasets (``scope`` full or ci) and random-weight backbone
    files; the notebooks read them as a user's: the data root, and ``TORCH_HOME`` for the kernels'
    torch hub cache."""
    import dataclasses
    import os

    from osad_lib import dryrun

    print(f"[run_all] dry run ({scope}): generating (once) stand-ins of the paper datasets and random-weight "
          "backbone files")
    data_root, torch_home = dryrun.prepare(scope)
    os.environ["TORCH_HOME"] = str(torch_home)
    print(f"[run_all] dry run: data root {data_root}; torch hub cache {torch_home / 'hub'}")
    return dataclasses.replace(options, data_root=str(data_root))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        options = options_from(args)
        if args.plan:
            print_plan(options)
            return 0
        if args.dry_run and not options.data_root:
            options = dry_run_inputs(options, args.dry_run)
        jobs_ok = True
        if args.executor == "slurm" or args.gpus > 1:
            jobs_ok = fan_out(args, options)
        outcomes = runner.run_all(options)
    except ConfigError as exc:
        print(f"run_all.py: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        logging.disable(logging.CRITICAL)  # asyncio's note on the interrupted cell's task, printed at exit
        print("run_all.py: interrupted; finished notebooks and stored experiments are kept, rerun the same command "
              "to resume", file=sys.stderr)
        return 130
    except OSError as exc:  # e.g. the disk filled up while recording progress
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
            raise
        print(f"run_all.py: error: {exc.strerror} ({exc.filename}); finished notebooks and stored experiments are "
              "kept: free space (or fix the folder) and rerun the same command to resume", file=sys.stderr)
        return 1
    table = runner.summary(outcomes)
    print("\n" + (table.to_string(index=False) if len(table) else "no notebooks to run"))
    if len(table):
        print("\n".join(runner.closing_lines(options, outcomes)))
    return 1 if not jobs_ok or (len(table) and (table["status"] == "failed").any()) else 0


if __name__ == "__main__":
    sys.exit(main())
