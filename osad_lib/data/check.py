"""Integrity check of the datasets under a data root, against the papers' statistics.

    python -m osad_lib.data.check DATA_ROOT [--dataset NAME] [--strict]

For every dataset folder found under ``DATA_ROOT`` (registry names: ``aitex``,
``mvtecad/carpet``, ``btad/01``, …; ``osad_lib.data.registry``) one row with:

* counts of training normals, test normals and anomalies (per class) beside the paper's
  (DevNet Table 1 = DRA Table 5 = AHL Table 6; registry ``PaperCounts``);
* every image and mask decoded (:func:`~osad_lib.data.images.load_rgb` / ``load_mask``):
  unreadable files, masks whose size differs from their image, empty anomaly masks;
* mask coverage: a dataset with pixel masks (registry ``has_masks``) needs a mask for every
  anomaly (:func:`~osad_lib.data.mvtec.read_mvtec_layout` reports the first missing one);
* duplicates by decoded-pixel hash: an image in both train and test, or with two labels;
* the manifest of :mod:`osad_lib.data.prepare`, when present: every file's SHA-1.

Severity (the exit code follows it): **errors** — a broken layout, missing masks, unreadable
files, mask size mismatches, label conflicts (one image under two labels), manifest
mismatches — make the data unfit for the protocol (exit 1). **Warnings** — counts or classes
that differ from the papers, identical images (in train and test, or within one split), empty
masks, a dataset in a folder under an official converter's name — are reported but exit 0
(``--strict`` makes them fail too): several papers' own counts cannot be re-derived from their
stated rules (e.g. SDD's 594/286 split of 880 normals is not 3:1), so a difference is something
to look at, not proof of a bad copy; and identical images are part of the papers' own data
(BrainMRI, HeadCT), recorded by ``prepare`` and dropped only on request (``prepare --dedupe``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from osad_lib.data.images import is_image_file, load_mask, load_rgb, pixel_digest
from osad_lib.data.mvtec import NORMAL_FOLDERS, Sample, read_marker, read_mvtec_layout
from osad_lib.data.prepare import verify_manifest
from osad_lib.data.registry import DATASETS, canonical_name, subset_info
from osad_lib.validate import ConfigError

#: Columns shown by the command (the DataFrame has more: per-class counts, problem lists).
TABLE_COLUMNS = ["dataset", "subset", "train_normal", "test_normal", "anomalies", "classes", "unreadable",
                 "masks", "train_test_duplicates", "manifest", "status"]


def _loose_samples(root: Path) -> list[Sample]:
    """Whatever images lie in ``train/*`` and ``test/*`` (used when the layout is broken, so that
    counts, decoding and duplicates are still checked)."""
    samples = []
    for split in ("train", "test"):
        folder = root / split
        classes = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        for cls in classes:
            normal = cls in NORMAL_FOLDERS
            for name in sorted(n for n in os.listdir(folder / cls) if is_image_file(n)):
                samples.append(Sample(f"{split}/{cls}/{name}", 0 if normal else 1, "good" if normal else cls, None, split))
    return samples


def _decode_all(root: Path, samples: list[Sample], desc: str, progress: bool) -> dict[str, Any]:
    """Decode every image and mask: unreadable files, mask problems, pixel-hash groups."""
    unreadable, size_mismatch, empty_masks = [], [], []
    groups: dict[str, list[Sample]] = defaultdict(list)
    for sample in tqdm(samples, desc=desc, unit="file", disable=not progress):
        try:
            image = load_rgb(root / sample.path)
        except ConfigError:
            unreadable.append(sample.path)
            continue
        groups[pixel_digest(np.asarray(image))].append(sample)
        if sample.mask_path is None:
            continue
        try:
            mask = load_mask(root / sample.mask_path)
        except ConfigError:
            unreadable.append(sample.mask_path)
            continue
        if mask.shape != (image.height, image.width):
            size_mismatch.append(sample.mask_path)
        elif not mask.any():
            empty_masks.append(sample.mask_path)
    return {"unreadable": unreadable, "size_mismatch": size_mismatch, "empty_masks": empty_masks, "groups": groups}


def _duplicates(groups: dict[str, list[Sample]]) -> dict[str, list[tuple[str, ...]]]:
    """Groups of identical images: across train/test, with different labels, or within one split."""
    found: dict[str, list[tuple[str, ...]]] = {"train_test": [], "label_conflict": [], "within_split": []}
    for members in groups.values():
        if len(members) < 2:
            continue
        paths = tuple(s.path for s in members)
        if len({s.split for s in members}) > 1:
            found["train_test"].append(paths)
        elif len({s.anomaly_class for s in members}) > 1:
            found["label_conflict"].append(paths)
        else:
            found["within_split"].append(paths)
    return found


def _example(items: list, fix: str) -> str:
    first = items[0] if not isinstance(items[0], tuple) else " = ".join(items[0])
    return f"e.g. {first}; {fix}"


def _duplicates_warning(name: str, root: Path, duplicates: dict[str, list[tuple[str, ...]]], marker: dict | None) -> str:
    """The warning on groups of identical images: part of the papers' data (so kept by default),
    a leakage risk the split manifests count, and the ``prepare --dedupe`` command that drops them."""
    across, within = duplicates["train_test"], duplicates["within_split"]
    recorded = {frozenset(g) for g in (marker or {}).get("duplicates", [])}
    origin = ("recorded by prepare in its manifest, as in the download: the files the papers used (their counts "
              "include every copy)" if recorded and {frozenset(g) for g in across + within} <= recorded else
              "the papers' counts include such copies where their download has them")
    data_root = root.parents[name.count("/")]
    return (f"{len(across) + len(within)} groups of identical images ({len(across)} in both train and test, "
            f"{len(within)} within one split), e.g. {' = '.join((across or within)[0])}; {origin}. They stay by "
            "default; a test image identical to a training one inflates its scores, which each result row's "
            f"deviations note. To drop all but the first copy: python -m osad_lib.data.prepare "
            f"{DATASETS[subset_info(name).dataset].name} SOURCE_DIR {data_root} --dedupe --force")


def _compare_with_paper(name: str, counts: dict[str, int], per_class: dict[str, int]) -> list[str]:
    """Warnings where the counts or classes differ from the papers / the registry."""
    info = subset_info(name)
    warnings = []
    if info.paper is not None:
        for column, label in (("train_normal", "train normals"), ("test_normal", "test normals"), ("anomalies", "anomalies")):
            paper = getattr(info.paper, column)
            if counts[column] != paper:
                warnings.append(f"{label} {counts[column]} ≠ paper {paper}")
    expected, found = set(info.anomaly_classes), set(per_class)
    if info.anomaly_classes and expected != found:
        missing, extra = sorted(expected - found), sorted(found - expected)
        warnings.append("classes differ from the registry: " + "; ".join(
            part for part in (f"missing {', '.join(missing)}" if missing else "", f"extra {', '.join(extra)}" if extra else "") if part))
    for cls, paper in info.class_counts.items():
        if cls in per_class and per_class[cls] != paper:
            warnings.append(f"{cls} {per_class[cls]} ≠ paper {paper}")
    notes = [n for n in (info.note, info.paper.note if info.paper else "") if n]
    return warnings + [f"note: {n}" for n in notes] if warnings else []


def check_dataset(name: str, folder: str | os.PathLike, progress: bool = True) -> dict[str, Any]:
    """One row of :func:`check_data_root` for dataset ``name`` stored in ``folder``."""
    name, root = canonical_name(name), Path(folder)
    info = subset_info(name)
    errors: list[str] = []
    try:
        samples = read_mvtec_layout(root)
    except ConfigError as exc:
        errors.append(f"layout: {exc}")
        samples = _loose_samples(root)
    anomalies = [s for s in samples if s.label == 1]
    per_class = dict(sorted(
        (cls, sum(1 for s in anomalies if s.anomaly_class == cls)) for cls in {s.anomaly_class for s in anomalies}))
    counts = {"train_normal": sum(1 for s in samples if s.label == 0 and s.split == "train"),
              "test_normal": sum(1 for s in samples if s.label == 0 and s.split == "test"),
              "anomalies": len(anomalies)}
    decoded = _decode_all(root, samples, f"check {name}", progress)
    duplicates = _duplicates(decoded["groups"])
    with_masks = sum(1 for s in anomalies if s.mask_path)
    if info.has_masks and anomalies and not with_masks and not errors:
        errors.append(f"no masks: {name} has pixel masks but {root / 'ground_truth'} is missing; re-run python -m osad_lib.data.prepare")
    if decoded["unreadable"]:
        errors.append(f"{len(decoded['unreadable'])} unreadable files, " + _example(decoded["unreadable"], "re-download or re-convert them"))
    if decoded["size_mismatch"]:
        errors.append(f"{len(decoded['size_mismatch'])} masks differ in size from their image, " + _example(decoded["size_mismatch"], "re-convert the dataset"))
    if duplicates["label_conflict"]:
        errors.append(f"{len(duplicates['label_conflict'])} images with two labels, " + _example(
            duplicates["label_conflict"], "remove the wrongly labelled copy from the download and convert it again"))
    manifest, marker = "absent", read_marker(root)
    if marker is not None and "files" in marker:
        problems = verify_manifest(root, progress)
        manifest = f"{len(problems)} mismatches" if problems else "ok"
        if problems:
            errors.append(f"manifest: {problems[0]} (and {len(problems) - 1} more); re-run prepare with --force")
    warnings = _compare_with_paper(name, counts, per_class)
    if duplicates["train_test"] or duplicates["within_split"]:
        warnings.append(_duplicates_warning(name, root, duplicates, marker))
    if decoded["empty_masks"]:
        warnings.append(f"{len(decoded['empty_masks'])} anomaly masks have no defect pixels, " + _example(decoded["empty_masks"], "check them"))
    paper = info.paper
    return {
        "dataset": info.dataset, "subset": info.subset, "name": name, "folder": str(root), **counts,
        "classes": len(per_class), "class_counts": per_class,
        "paper_train_normal": paper.train_normal if paper else None, "paper_test_normal": paper.test_normal if paper else None,
        "paper_anomalies": paper.anomalies if paper else None, "paper_classes": paper.n_classes if paper else None,
        "unreadable": len(decoded["unreadable"]),
        "masks": f"{with_masks}/{len(anomalies)}" if info.has_masks else "n/a",
        "train_test_duplicates": len(duplicates["train_test"]), "manifest": manifest,
        "status": "error" if errors else "warning" if warnings else "ok",
        "errors": errors, "warnings": warnings,
    }


def _total_row(dataset: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum of a multi-subset dataset's rows, compared with the paper total when all subsets are present."""
    info = DATASETS[dataset]
    complete = len(rows) == len(info.subsets)
    paper = info.paper_total if complete else None
    counts = {c: sum(r[c] for r in rows) for c in ("train_normal", "test_normal", "anomalies", "classes", "unreadable", "train_test_duplicates")}
    warnings = [f"{label} {counts[c]} ≠ paper {getattr(paper, c)}" for c, label in
                (("train_normal", "train normals"), ("test_normal", "test normals"), ("anomalies", "anomalies"))
                if paper and counts[c] != getattr(paper, c)]
    if info.paper_total and not complete:
        warnings.append(f"{len(rows)} of {len(info.subsets)} subsets present; no paper total to compare")
    worst = max((r["status"] for r in rows), key=["ok", "warning", "error"].index)
    status = worst if worst == "error" else "warning" if warnings or worst == "warning" else "ok"
    return {"dataset": dataset, "subset": "(all)", "name": dataset, "folder": "", **counts, "class_counts": {},
            "paper_train_normal": paper.train_normal if paper else None, "paper_test_normal": paper.test_normal if paper else None,
            "paper_anomalies": paper.anomalies if paper else None, "paper_classes": paper.n_classes if paper else None,
            "masks": "", "manifest": "", "status": status, "errors": [], "warnings": warnings}


def _wanted(datasets: Iterable[str] | None) -> list[str]:
    """Registry names to look for (all of them, or those of the given datasets / names)."""
    if datasets is None:
        return [n for info in DATASETS.values() for n in info.names]
    names: list[str] = []
    for raw in datasets:
        names += DATASETS[raw].names if raw in DATASETS else [canonical_name(raw)]
    return names


def _alias_rows(root: Path, names: list[str]) -> list[dict[str, Any]]:
    """Warning rows for datasets stored under an official converter's folder name (e.g. ``AITEX``)."""
    rows = []
    for dataset in dict.fromkeys(n.partition("/")[0] for n in names):
        canonical = root / dataset
        for alias in DATASETS[dataset].folder_aliases:
            if (root / alias).is_dir() and not canonical.exists() and (root / alias) != canonical:
                rows.append({"dataset": dataset, "subset": "", "name": dataset, "folder": str(root / alias), "status": "warning",
                             "errors": [], "warnings": [f"found {root / alias}: rename or symlink it to {canonical} to use and check it"]})
    return rows


def check_data_root(root: str | os.PathLike, datasets: Iterable[str] | None = None, progress: bool = True) -> pd.DataFrame:
    """Check every dataset folder under ``root`` (or those of ``datasets``); one row per
    (sub)dataset plus an ``(all)`` row per multi-subset dataset (module docstring for the
    columns and severities). Raises a one-line ``ConfigError`` when ``root`` is missing or
    holds none of the datasets."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"data root {root} does not exist; pass the folder that holds your converted datasets")
    names = _wanted(datasets)
    rows: list[dict[str, Any]] = []
    for dataset in dict.fromkeys(n.partition("/")[0] for n in names):
        found = [check_dataset(n, root / n, progress) for n in names if n.partition("/")[0] == dataset and (root / n).is_dir()]
        rows += found
        if len(DATASETS[dataset].subsets) > 1 and len(found) > 1:
            rows.append(_total_row(dataset, found))
    rows += _alias_rows(root, names)
    if not rows:
        examples = " or ".join(str(root / n) for n in (names[:2] if datasets is not None else ["aitex", "mvtecad/carpet"]))
        raise ConfigError(f"no datasets under {root} (expected folders such as {examples}); "
                          "convert them with python -m osad_lib.data.prepare NAME SOURCE_DIR " + str(root))
    return pd.DataFrame(rows)


def _cell(value: Any, paper: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return f"{int(value)}" if paper is None or pd.isna(paper) else f"{int(value)} / {int(paper)}"


def format_table(frame: pd.DataFrame) -> str:
    """The check as text: a table (counts shown as ``measured / paper``) and the problems below it."""
    shown = frame.reindex(columns=TABLE_COLUMNS + ["paper_train_normal", "paper_test_normal", "paper_anomalies", "paper_classes"])
    for column in ("train_normal", "test_normal", "anomalies", "classes"):
        shown[column] = [_cell(v, p) for v, p in zip(shown[column], shown[f"paper_{column}"])]
    shown = shown[TABLE_COLUMNS].fillna("")
    lines = [shown.to_string(index=False), "", "counts are 'found / paper' (DevNet Table 1, AHL Table 6)"]
    for _, row in frame.iterrows():
        label = f"{row['dataset']}/{row['subset']}" if row["subset"] else row["dataset"]
        lines += [f"ERROR   {label}: {message}" for message in row["errors"]]
        lines += [f"warning {label}: {message}" for message in row["warnings"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: exit 0 when no errors (warnings allowed unless --strict), 1 on problems, 2 on bad input."""
    parser = argparse.ArgumentParser(prog="python -m osad_lib.data.check",
                                     description="Check the datasets under DATA_ROOT against the papers' statistics.")
    parser.add_argument("data_root", metavar="DATA_ROOT", help="folder holding the converted datasets (OSAD_DATA)")
    parser.add_argument("--dataset", action="append", metavar="NAME",
                        help="only this dataset or subset (e.g. aitex, mvtecad, mvtecad/carpet); repeatable")
    parser.add_argument("--strict", action="store_true", help="fail on warnings (count differences) too")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        frame = check_data_root(args.data_root, args.dataset, progress=not args.no_progress)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(frame))
    failing = {"error", "warning"} if args.strict else {"error"}
    return 1 if frame["status"].isin(failing).any() else 0


if __name__ == "__main__":
    sys.exit(main())
