"""The rows of a results file as read, before they are trusted: each checked (field count,
required fields, experiment id, status, number columns, timestamp), a malformed one traced to its
experiment, and the rows of older layouts recognised (:func:`legacy_markers`,
:func:`without_marker_parts`, :func:`retire_legacy_source`). :class:`osad_lib.results.store.ResultsStore` decides what to keep."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import pandas as pd

from osad_lib.results.schema import (
    EXPERIMENT_ID, FLOAT_COLUMNS, INT_COLUMNS, KEY_COLUMNS, MAX_OVER_EPOCHS_SUFFIX, REQUIRED_COLUMNS, TIMESTAMP,
)

#: What the older layout wrote into ``variant`` for a cross-domain row (``source=<domain>``):
#: such rows are set aside when their file is migrated, and the next run recomputes them.
_LEGACY_SOURCE_VARIANT = "source="


@dataclass(frozen=True)
class FileRow:
    """One row of a results file as read: where it starts, its text, its fields, what is wrong."""

    line: int
    raw: str
    fields: list[str]
    problem: str = ""


def shorten(value: str) -> str:
    return repr(value if len(value) <= 24 else value[:24] + "…")


def name_list(columns: Sequence[str], shown: int = 6) -> str:
    """``['a', 'b', …]`` naming at most ``shown`` columns, with the count when there are more."""
    more = f", … {len(columns)} in all" if len(columns) > shown else ""
    return "[" + ", ".join(map(repr, columns[:shown])) + more + "]"


def _is_number(text: str, kind: type) -> bool:
    try:
        kind(text)
    except ValueError:
        return False
    return True


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _row_problem(row: Mapping[str, str], n_fields: int, n_columns: int, ended: bool) -> str:
    """What is wrong with one row ('' when nothing): field count, required fields, id, status,
    number columns, ``params`` (a JSON object or empty), and the timestamp — the last column, so a row cut inside it fails here; it
    may be empty (a migrated row) only on a line that ends (``ended``: not cut after the comma)."""
    if n_fields != n_columns:
        return f"{n_fields} field(s) instead of {n_columns}: cut off or not a results row"
    empty = [c for c in REQUIRED_COLUMNS if not row.get(c)]
    if empty:
        return f"no {empty[0]}"
    if not EXPERIMENT_ID.fullmatch(row["experiment_id"]):
        return f"experiment_id {shorten(row['experiment_id'])} is not an experiment id"
    if row["status"] != "ok" and not row["status"].startswith("failed"):
        return f"status {shorten(row['status'])} is neither ok nor failed"
    for columns, kind, name in ((INT_COLUMNS, int, "an integer"), (FLOAT_COLUMNS, float, "a number")):
        for c in columns:
            if row.get(c) and not _is_number(row[c], kind):
                return f"{c} {shorten(row[c])} is not {name}"
    if row.get("params") and not _is_json_object(row["params"]):
        return f"params {shorten(row['params'])} is not a JSON object"
    stamp = row.get("timestamp", "")
    if not TIMESTAMP.fullmatch(stamp) and (stamp or not ended):
        return f"timestamp {shorten(stamp)} is not a time (cut off?)"
    return ""


def split_rows(lines: Sequence[str], header: Sequence[str]) -> list[FileRow]:
    """Every data row of ``lines`` (``lines[0]`` is the header) with its problem. A malformed
    row that spans several lines (a stray quote swallowing what follows) is judged line by line,
    so one bad line never takes the good rows after it along."""
    rows: list[FileRow] = []
    start = 1
    while start < len(lines):
        reader, consumed, restart = csv.reader(lines[start:]), 0, None
        try:
            for fields in reader:
                first, n = start + consumed, reader.line_num - consumed
                consumed = reader.line_num
                if not fields:
                    continue  # a blank line
                ended = lines[first + n - 1].endswith("\n")
                problem = _row_problem(dict(zip(header, fields)), len(fields), len(header), ended)
                if problem and n > 1:
                    rows.append(FileRow(first + 1, lines[first], [], "an unbalanced quote"))
                    restart = first + 1
                    break
                rows.append(FileRow(first + 1, "".join(lines[first:first + n]), fields, problem))
        except csv.Error as exc:
            first = start + consumed
            rows.append(FileRow(first + 1, lines[first], [], f"unreadable ({exc})"))
            restart = first + 1
        start = len(lines) if restart is None else restart
    return rows


def experiment_of(bad: FileRow, position: int, rows: Sequence[FileRow], header: Sequence[str]) -> str:
    """The experiment a malformed row belonged to ('' if none is recognisable): the experiment
    id among its fields (also when extra or missing fields shifted it), else that of the nearest
    good row before or after it whose key fields the damaged row starts with (an experiment's
    rows are written together, so a row cut short sits among its own)."""
    ids = [f for f in bad.fields if EXPERIMENT_ID.fullmatch(f)]
    if ids:
        return ids[0]
    keys = [(c, v) for c, v in zip(header, bad.fields) if c in KEY_COLUMNS]
    if not keys or not keys[0][1]:
        return ""
    before = next((r for r in reversed(rows[:position]) if not r.problem), None)
    after = next((r for r in rows[position + 1:] if not r.problem), None)
    for neighbour in (before, after):
        theirs = dict(zip(header, neighbour.fields)) if neighbour else {}
        if theirs and all(theirs[c] == v for c, v in keys[:-1]) and theirs[keys[-1][0]].startswith(keys[-1][1]):
            return theirs["experiment_id"]
    return ""


def retire_legacy_source(row: FileRow, header: Sequence[str]) -> FileRow:
    """``row`` marked to be set aside when it is a cross-domain row of the layout before the
    ``source`` column (``variant="source=<domain>"``): its experiment id hashed the old key, so
    keeping it would let the next run store the same cell a second time beside it."""
    if row.problem or not dict(zip(header, row.fields)).get("variant", "").startswith(_LEGACY_SOURCE_VARIANT):
        return row
    return replace(row, problem="a cross-domain row of the layout before the source column (recomputed)")



#: How rows written before the ``mode`` and ``report`` columns existed said them, inside
#: ``deviations``: the first standalone word ``faithful``/``clean``, and a ``report=…`` part.
_LEGACY_MODE = re.compile(r"(?<!\w)(clean|faithful)(?!\w)")
_LEGACY_REPORT = re.compile(r"(?:^|;)\s*report=(\w+)")


#: A ``deviations`` part that was only a marker, written before the markers left that text: the
#: ``mode`` and ``report`` columns say the same.
_MARKER_PART = re.compile(r"^(?:mode|protocol|report)=\w+$")


def without_marker_parts(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the ``deviations`` parts dropped that are nothing but a marker
    (``mode=faithful``, ``report=last_epoch``: :data:`_MARKER_PART`), as rows written before the
    ``mode`` and ``report`` columns took them over still carry; the report then never reads
    markers from text, and a marker alone does not make a row's settings differ."""
    deviations = frame["deviations"].fillna("").astype(str)
    changed = {}
    for text in deviations.unique():
        parts = [part.strip() for part in text.split(";")]
        if any(_MARKER_PART.match(p) for p in parts):
            changed[text] = "; ".join(p for p in parts if p and not _MARKER_PART.match(p))
    if not changed:
        return frame
    frame = frame.copy()
    marked = deviations.isin(changed)
    frame.loc[marked, "deviations"] = [changed[text] or None for text in deviations[marked]]
    return frame


def legacy_markers(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of a file older than the ``mode``/``report`` columns with both filled from their
    ``deviations`` text as the report used to read it (:data:`_LEGACY_MODE`, :data:`_LEGACY_REPORT`)
    and the metric's name: the one place that still parses those markers out of text."""
    deviations = frame["deviations"].fillna("").astype(str)
    metric = frame["metric"].fillna("").astype(str)
    frame = frame.copy()
    frame["mode"] = deviations.str.extract(_LEGACY_MODE, expand=False).fillna("")
    report = deviations.str.extract(_LEGACY_REPORT, expand=False).fillna("")
    frame["report"] = report.where(~metric.str.endswith(MAX_OVER_EPOCHS_SUFFIX), "max_over_epochs")
    return frame

