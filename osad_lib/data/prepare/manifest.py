"""Manifests (build, verify) and the command: :func:`prepare` converts once and verifies on
every later run; :func:`main` is ``python -m osad_lib.data.prepare``."""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from osad_lib.data.mvtec import build_folder_once, read_marker
from osad_lib.validate import ConfigError, choose
from osad_lib.data.prepare.layout import CONVERTER_VERSION, DEFAULT_SEED, MANIFEST, tree_files, with_progress
from osad_lib.data.prepare.sources import CONVERTERS, Converter, source_folder, writable_root
from osad_lib.data.prepare.duplicates import drop_duplicates, duplicate_groups



def _sha1(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha1").hexdigest()


def hash_files(folder: Path, progress: bool = True, desc: str = "sha1") -> dict[str, str]:
    """SHA-1 of every file under ``folder`` by relative POSIX path (sorted)."""
    return {relative: _sha1(folder / relative) for relative in with_progress(tree_files(folder), desc, progress)}


def folder_counts(files: Iterable[str]) -> dict[str, int]:
    """Number of files per folder (``train/good``, ``test/<class>``, ``ground_truth/<class>``)."""
    return dict(sorted(Counter(relative.rpartition("/")[0] for relative in files).items()))


def verify_manifest(folder: Path, progress: bool = True) -> list[str]:
    """Problems of a converted folder against its manifest: missing, changed (SHA-1) and
    unexpected files; empty when everything matches."""
    manifest = read_marker(folder)
    if manifest is None or "files" not in manifest:
        return [f"{folder} has no manifest {MANIFEST}; convert it with python -m osad_lib.data.prepare"]
    expected: dict[str, str] = manifest["files"]
    actual = hash_files(folder, progress, desc=f"verify {folder.name}")
    problems = [f"missing {folder / r}" for r in sorted(set(expected) - set(actual))]
    problems += [f"changed {folder / r} (SHA-1 differs from the manifest)" for r in sorted(set(expected) & set(actual)) if expected[r] != actual[r]]
    problems += [f"unexpected {folder / r} (not in the manifest)" for r in sorted(set(actual) - set(expected))]
    return problems


@dataclass(frozen=True)
class PrepareReport:
    """What :func:`prepare` did for one output folder: ``action`` is ``"converted"`` or
    ``"verified"``; ``problems`` lists manifest mismatches (empty when all is well)."""

    name: str
    folder: Path
    action: str
    counts: dict[str, int]
    problems: list[str] = field(default_factory=list)
    duplicates: list[list[str]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, name: str, folder: Path, action: str, problems: list[str] | None = None) -> PrepareReport:
        """The report of ``folder`` from its manifest."""
        manifest = read_marker(folder) or {}
        return cls(name, folder, action, manifest.get("counts", {}), problems or [], manifest.get("duplicates", []),
                   manifest.get("dropped", []))

    def summary(self) -> str:
        """One line: train normals, test normals, anomalies per class count, masks, duplicates."""
        train = self.counts.get("train/good", 0)
        test = self.counts.get("test/good", 0)
        anomalies = {k[5:]: v for k, v in self.counts.items() if k.startswith("test/") and k != "test/good"}
        masks = sum(v for k, v in self.counts.items() if k.startswith("ground_truth/"))
        state = f"{len(self.problems)} problem(s)" if self.problems else "ok"
        if self.dropped:
            copies = f"; {len(self.dropped)} exact duplicates dropped (--dedupe)"
        elif self.duplicates:
            copies = (f"; {len(self.duplicates)} groups of identical images kept, as in the download "
                      "(--dedupe drops them)")
        else:
            copies = ""
        return (f"{self.name}: {self.action} {self.folder} — {train} train normals, {test} test normals, "
                f"{sum(anomalies.values())} anomalies in {len(anomalies)} classes, {masks} masks{copies} [{state}]")


def _manifest_key(converter: Converter, name: str, source: Path, seed: int, dedupe: bool = False) -> dict[str, Any]:
    key = {"dataset": converter.name, "name": name, "source": str(source),
           "seed": seed if converter.seeded else None, "converter_version": CONVERTER_VERSION}
    return {**key, "dedupe": True} if dedupe else key


def _existing_action(dest: Path, key: dict[str, Any], force: bool) -> str:
    """``"build"`` or ``"verify"`` for an output folder; one-line error when it cannot be reused."""
    if force or not dest.exists():
        return "build"
    manifest = read_marker(dest)
    if manifest is None or "files" not in manifest:
        raise ConfigError(f"{dest} exists but has no manifest {MANIFEST} (not written by prepare); move it away, "
                          "pass --force to replace it, or inspect it with python -m osad_lib.data.check")
    old_seed = manifest.get("key", {}).get("seed")
    if old_seed != key["seed"]:
        raise ConfigError(f"{dest} was converted with seed {old_seed}; pass --seed {old_seed} to verify it "
                          f"or --force to rebuild it with seed {key['seed']}")
    deduped = manifest.get("key", {}).get("dedupe", False)
    if deduped != key.get("dedupe", False):
        raise ConfigError(f"{dest} was converted {'with' if deduped else 'without'} --dedupe; pass the same to verify "
                          f"it, or --force to rebuild it {'with' if not deduped else 'without'} --dedupe")
    return "verify"


def _builder(converter: Converter, name: str, source: Path, seed: int, progress: bool,
             dedupe: bool = False) -> Callable[[Path], dict[str, Any]]:
    """The ``build(tmp)`` of :func:`build_folder_once`: convert, record the groups of identical
    images (and with ``dedupe`` drop all but the first of each), then hash every file."""
    def build(tmp: Path) -> dict[str, Any]:
        notes = converter.convert(source, tmp, seed, progress)
        groups = duplicate_groups(tmp, progress)
        dropped = drop_duplicates(tmp, groups) if dedupe else []
        files = hash_files(tmp, progress, desc=f"sha1 {name}")
        facts = {"counts": folder_counts(files), "notes": notes, "files": files, "duplicates": groups}
        return {**facts, "dropped": dropped} if dedupe else facts
    return build


def prepare(name: str, source: str | os.PathLike, data_root: str | os.PathLike, seed: int = DEFAULT_SEED,
            force: bool = False, progress: bool = True, dedupe: bool = False) -> list[PrepareReport]:
    """Convert dataset ``name`` from its download ``source`` into ``data_root`` (module docstring).

    Existing outputs with a manifest are verified, not converted again (``force`` rebuilds).
    All checks happen before any conversion, so a bad argument leaves ``data_root`` untouched.
    Groups of identical images are recorded in the manifest; ``dedupe`` drops all but the first
    of each (the papers' counts include every copy, so keeping them is the default).
    """
    name = choose("NAME", str(name).strip().lower(), CONVERTERS)
    converter = CONVERTERS[name]
    source_path = source_folder(name, source)
    root = writable_root(data_root)
    plans = []
    for subset, subset_source in converter.outputs(source_path).items():
        dest = root / subset
        if dest.resolve() == subset_source.resolve():
            raise ConfigError(f"{subset_source} is already {dest}: nothing to convert; check it with python -m osad_lib.data.check {root}")
        if subset_source.resolve() in dest.resolve().parents:
            raise ConfigError(f"DATA_ROOT {root} would write {dest} inside the source {subset_source}; choose another DATA_ROOT")
        key = _manifest_key(converter, subset, subset_source, seed, dedupe)
        plans.append((subset, subset_source, dest, key, _existing_action(dest, key, force)))
    reports = []
    for subset, subset_source, dest, key, action in plans:
        if action == "verify":
            reports.append(PrepareReport.of(subset, dest, "verified", verify_manifest(dest, progress)))
            continue
        if force:
            (dest / MANIFEST).unlink(missing_ok=True)  # makes build_folder_once rebuild even for an equal key
        build_folder_once(dest, key, _builder(converter, subset, subset_source, seed, progress, dedupe))
        reports.append(PrepareReport.of(subset, dest, "converted"))
    return reports


def main(argv: list[str] | None = None) -> int:
    """Command line; exit 0 when done, 1 when verification found mismatches, 2 on bad input."""
    layouts = "\n".join(f"  {c.name:12s} {c.expects}" for c in CONVERTERS.values())
    parser = argparse.ArgumentParser(
        prog="python -m osad_lib.data.prepare", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Convert a dataset's original download into DATA_ROOT/<name> in the MVTec layout "
                    "(re-running verifies the output against its manifest).",
        epilog=f"SOURCE_DIR layouts:\n{layouts}")
    parser.add_argument("name", metavar="NAME", help=f"one of {', '.join(CONVERTERS)}")
    parser.add_argument("source", metavar="SOURCE_DIR", help="folder the original download was unpacked into")
    parser.add_argument("data_root", metavar="DATA_ROOT", help="your data root (OSAD_DATA); output goes to DATA_ROOT/<name>")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the 3:1 normal split (default 42)")
    parser.add_argument("--force", action="store_true", help="rebuild an existing output instead of verifying it")
    parser.add_argument("--dedupe", action="store_true",
                        help="drop exact duplicate images (same pixels), keeping the first of each group by sorted "
                             "path; default: keep them, as the papers did (the manifest records them either way)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        reports = prepare(args.name, args.source, args.data_root, args.seed, args.force, not args.no_progress,
                          args.dedupe)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for report in reports:
        print(report.summary())
        for problem in report.problems[:20]:
            print(f"  {problem}")
        if len(report.problems) > 20:
            print(f"  … and {len(report.problems) - 20} more")
        if report.problems:
            print(f"  fix: re-run with --force to rebuild {report.folder} from the source")
    return 1 if any(r.problems for r in reports) else 0

