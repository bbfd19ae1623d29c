"""The published numbers of the five papers, as tidy tables, and a paper-vs-measured join.

Every results table of DevNet, DRA, BGAD, AnoOnly and AHL is one CSV file under
``osad_lib/paper/tables/`` (format: ``README.md`` next to this file). All values are on the
[0, 1] scale, whatever scale the paper printed.

>>> from osad_lib import paper
>>> paper.list_tables()["table_id"].tolist()[:2]
['devnet_table2', 'devnet_table3']
>>> t = paper.load_table("dra_table1")
>>> row = t[(t.dataset == "elpv") & (t.method == "dra") & (t.n_shots == 10)]
>>> paper.format_mean_std(row["mean"].item(), row["std"].item())
'0.845 ± 0.013'
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "COLUMNS", "DEFAULT_KEYS", "INDEX_COLUMNS", "PAPERS", "SHARED_CELLS", "TABLES_DIR",
    "compare", "format_mean_std", "join_notes", "list_tables", "load_all", "load_table", "mean_std_text", "shown",
]

_HERE = Path(__file__).resolve().parent
#: Folder holding one CSV per paper table.
TABLES_DIR = _HERE / "tables"
_INDEX_PATH = _HERE / "index.csv"

#: Columns of every paper table, in file order.
COLUMNS = (
    "paper", "table", "dataset", "subset", "setting", "n_shots", "method", "variant", "source",
    "backbone", "metric", "mean", "std", "note",
)
#: Columns of ``index.csv``.
INDEX_COLUMNS = ("table_id", "paper", "table", "title", "metric_scale", "kind")
#: Paper identifiers used in ``paper`` columns and table ids.
PAPERS = ("devnet", "dra", "bgad", "anoonly", "ahl")
#: Paper tables that reprint cells of another paper's table under the same protocol: result rows
#: labelled with those papers measure the reprinted cells too. BGAD's Table 3 reprints DRA Table 1's
#: baselines (DevNet, FLOS, SAOE, MLEP, DRA, KDAD on ELPV, AITEX, BrainMRI, HeadCT), so 02_dra's
#: rows fill them.
SHARED_CELLS: dict[str, tuple[str, ...]] = {"bgad_table3": ("dra",)}
#: Default join keys of :func:`compare`.
DEFAULT_KEYS = ("dataset", "subset", "setting", "n_shots", "method", "variant", "source", "metric")

_STRING_COLUMNS = tuple(c for c in COLUMNS if c not in ("n_shots", "mean", "std"))
_OUT_VALUES = (
    "paper_mean", "paper_std", "measured_mean", "measured_std", "n_seeds", "delta",
    "within_spread", "settings_differ", "deviations",
)


# --------------------------------------------------------------------------- loading
def list_tables() -> pd.DataFrame:
    """The index of transcribed tables: one row per table (``table_id``, ``paper``, ``table``,
    ``title``, ``metric_scale``, ``kind``), in a stable order (paper, then table number)."""
    index = pd.read_csv(_INDEX_PATH, dtype=str, keep_default_na=False)
    if tuple(index.columns) != INDEX_COLUMNS:
        raise ValueError(
            f"{_INDEX_PATH}: columns {list(index.columns)}, expected {list(INDEX_COLUMNS)}")
    return index


def _check_id(table_id: str) -> None:
    ids = list_tables()["table_id"].tolist()
    if table_id in ids:
        return
    close = difflib.get_close_matches(str(table_id), ids, n=3, cutoff=0.5)
    hint = f"closest: {', '.join(close)}" if close else f"valid ids: {', '.join(ids)}"
    raise ValueError(f"unknown paper table {table_id!r} ({hint})")


def load_table(table_id: str) -> pd.DataFrame:
    """One paper table as a DataFrame with the columns :data:`COLUMNS`.

    String columns hold ``""`` (never NaN) when empty; ``n_shots`` is a nullable integer
    (``Int64``); ``mean``/``std`` are floats on the [0, 1] scale, ``std`` NaN when the paper
    gives none. Raises ``ValueError`` for an unknown id (naming the closest valid ids) or a
    malformed file.
    """
    _check_id(table_id)
    path = TABLES_DIR / f"{table_id}.csv"
    if not path.is_file():
        raise ValueError(f"paper table {table_id!r} is listed in index.csv but {path} is missing")
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    if tuple(raw.columns) != COLUMNS:
        raise ValueError(f"{path.name}: columns {list(raw.columns)}, expected {list(COLUMNS)}")
    out = raw.copy()
    for col in ("mean", "std"):
        num = pd.to_numeric(raw[col].where(raw[col] != ""), errors="coerce")
        bad = num.isna() if col == "mean" else num.isna() & (raw[col] != "")
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(f"{path.name}: bad {col} {raw[col].iloc[row]!r} in data row {row + 1}")
        out[col] = num.astype(float)
    out["n_shots"] = pd.array(
        [pd.NA if s == "" else int(s) for s in raw["n_shots"]], dtype="Int64")
    return out


def load_all() -> pd.DataFrame:
    """All paper tables concatenated, in index order (``paper`` and ``table`` tell them apart)."""
    frames = [load_table(t) for t in list_tables()["table_id"]]
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- comparison
def _is_missing(v: Any) -> bool:
    if v is None or isinstance(v, str):
        return v is None
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):  # array-likes are never "missing"
        return False


def _as_str(v: Any) -> str:
    return "" if _is_missing(v) else str(v).strip()


def _as_shots(v: Any) -> str:
    s = _as_str(v)
    if s == "":
        return ""
    try:
        f = float(s)
    except ValueError:
        raise ValueError(f"n_shots must be an integer or empty, got {v!r}") from None
    if not f.is_integer():
        raise ValueError(f"n_shots must be an integer or empty, got {v!r}")
    return str(int(f))


def _norm_keys(df: pd.DataFrame, keys: Sequence[str], what: str) -> pd.DataFrame:
    """Key columns as strings: ``""`` for empty/NaN, ``n_shots`` as int-or-empty."""
    missing = [k for k in keys if k not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks key column(s) {missing}")
    return pd.DataFrame(
        {k: df[k].map(_as_shots if k == "n_shots" else _as_str) for k in keys}, index=df.index)


def _table_of(s: Any) -> str:
    return _as_str(s).lower().replace(" ", "").replace("_", "").replace(".", "")


def compare(
    measured: pd.DataFrame,
    table_id: str,
    keys: Sequence[str] = DEFAULT_KEYS,
) -> pd.DataFrame:
    """Join measured results (results-store schema) with one paper table.

    ``measured`` needs the ``keys`` columns and ``value``; ``backbone``, ``deviations``,
    ``paper``, ``table`` and ``profile`` are used when present. Rows labelled with another
    paper or table (non-empty ``paper``/``table``) and rows with a non-finite ``value``
    (failed runs) are ignored, except rows of a paper whose cells the table reprints
    (:data:`SHARED_CELLS`), which count for exactly those cells; mixing several profiles raises ``ValueError`` (filter to one
    profile first).

    Measured values are aggregated over seeds per key into ``measured_mean``,
    ``measured_std`` (ddof=1, NaN for one seed) and ``n_seeds``, then outer-joined with the
    paper rows on ``keys`` (keys compared as strings; ``n_shots`` as int-or-empty). Result
    columns: ``keys...``, ``paper_mean``, ``paper_std``, ``measured_mean``, ``measured_std``,
    ``n_seeds``, ``delta`` (measured − paper), ``within_spread`` (``|delta| <=
    max(2·measured_std, paper_std, 0)``, NA unless both means exist), ``settings_differ``
    (measured backbone ≠ paper backbone, or non-empty measured ``deviations``; NA for
    paper-only rows) and ``deviations`` (unique values joined with ``"; "``). Paper rows come
    first in table order (unmeasured ones with NaN measured values), then measured-only rows.
    """
    keys = tuple(keys)
    if "value" not in measured.columns:
        raise ValueError("measured lacks the 'value' column")
    paper_rows = load_table(table_id)
    pk = _norm_keys(paper_rows, keys, f"paper table {table_id!r}")
    dup = pk.duplicated(keep=False)
    if dup.any():
        first = pk[dup].iloc[0].to_dict()
        raise ValueError(
            f"paper table {table_id!r} has several rows per key {first}; "
            "add keys (e.g. 'backbone')")

    m = measured
    p_id, t_id = table_id.split("_", 1)
    shared = pd.Series(False, index=m.index)
    if "paper" in m.columns:  # rows labelled with another paper/table are not ours...
        label = m["paper"].map(_as_str).str.lower()
        shared = label.isin(SHARED_CELLS.get(table_id, ()))  # ...unless this table reprints that paper's cells
        m = m[(label == "") | (label == p_id) | shared]
        shared = shared[m.index]
    if "table" in m.columns:
        label = m["table"].map(_table_of)
        m = m[(label == "") | (label == _table_of(t_id)) | shared]
        shared = shared[m.index]
    if shared.any():  # a reprinted paper's rows count only for the cells the table reprints
        cells = set(map(tuple, pk.to_numpy().tolist()))
        in_table = pd.Series([tuple(k) in cells for k in _norm_keys(m, keys, "measured").to_numpy().tolist()],
                             index=m.index)
        m = m[~shared | in_table]
    values = pd.to_numeric(m["value"], errors="coerce")
    m = m[np.isfinite(values.to_numpy(dtype=float))]
    if "profile" in m.columns and m["profile"].map(_as_str).nunique() > 1:
        profiles = sorted(m["profile"].map(_as_str).unique())
        raise ValueError(f"measured rows mix profiles {profiles}; filter to one profile first")

    mk = _norm_keys(m, keys, "measured")
    mk["_value"] = pd.to_numeric(m["value"]).astype(float)
    mk["_backbone"] = m["backbone"].map(_as_str) if "backbone" in m.columns else ""
    mk["_dev"] = m["deviations"].map(_as_str) if "deviations" in m.columns else ""
    agg = (
        mk.groupby(list(keys), sort=False, dropna=False)
        .agg(
            measured_mean=("_value", "mean"),
            measured_std=("_value", "std"),
            n_seeds=("_value", "size"),
            _backbones=("_backbone", lambda s: frozenset(x.lower() for x in s if x)),
            deviations=("_dev", join_notes),
        )
        .reset_index()
    )

    pf = pk.copy()
    pf["paper_mean"] = paper_rows["mean"].to_numpy()
    pf["paper_std"] = paper_rows["std"].to_numpy()
    pf["_paper_backbone"] = paper_rows["backbone"].str.lower().to_numpy()
    pf["_order"] = np.arange(len(pf))

    out = pf.merge(agg, on=list(keys), how="outer", sort=False)
    out["_order"] = out["_order"].fillna(len(pf)).astype(int)
    out = out.sort_values("_order", kind="stable").reset_index(drop=True)
    out["n_seeds"] = out["n_seeds"].fillna(0).astype(int)
    out["deviations"] = out["deviations"].fillna("")
    out["delta"] = out["measured_mean"] - out["paper_mean"]

    both = out["paper_mean"].notna() & out["measured_mean"].notna()
    tol = np.maximum.reduce([
        2 * out["measured_std"].fillna(0.0).to_numpy(),
        out["paper_std"].fillna(0.0).to_numpy(),
        np.zeros(len(out)),
    ])
    within = pd.array([pd.NA] * len(out), dtype="boolean")
    within[both.to_numpy()] = (out["delta"].abs().to_numpy() <= tol)[both.to_numpy()]
    out["within_spread"] = within

    differ = pd.array([pd.NA] * len(out), dtype="boolean")
    for i, row in out.iterrows():
        if row["n_seeds"] == 0:
            continue
        pb = row["_paper_backbone"] if isinstance(row["_paper_backbone"], str) else ""
        mb = row["_backbones"] if isinstance(row["_backbones"], frozenset) else frozenset()
        differ[i] = bool(row["deviations"]) or bool(pb and mb and mb != {pb})
    out["settings_differ"] = differ

    out = out[list(keys) + list(_OUT_VALUES)]
    if "n_shots" in keys:
        out["n_shots"] = pd.array(
            [pd.NA if s == "" else int(s) for s in out["n_shots"]], dtype="Int64")
    return out


def join_notes(values: Iterable[Any]) -> str:
    """The distinct non-empty notes among ``values`` (e.g. the ``deviations`` of the rows a cell
    averages), sorted and joined with ``"; "``; empty and missing values are left out."""
    return "; ".join(sorted({v for v in values if isinstance(v, str) and v}))


def format_mean_std(mean: Any, std: Any = None, digits: int = 3) -> str:
    """``"0.846 ± 0.012"``; ``"0.846"`` when ``std`` is missing; ``"—"`` when ``mean`` is."""
    if _is_missing(mean):
        return "—"
    if _is_missing(std):
        return f"{float(mean):.{digits}f}"
    return f"{float(mean):.{digits}f} ± {float(std):.{digits}f}"


def mean_std_text(frame: pd.DataFrame, prefix: str) -> list[str]:
    """``<prefix>_mean`` ± ``<prefix>_std`` of every row of ``frame`` as text (:func:`format_mean_std`)."""
    return [format_mean_std(m, s) for m, s in zip(frame[f"{prefix}_mean"], frame[f"{prefix}_std"])]


def shown(comparison: pd.DataFrame, keys: Sequence[str], labels: Mapping[str, str] | None = None,
          extra: Sequence[str] = ()) -> pd.DataFrame:
    """A :func:`compare` frame for reading, the one display of measured numbers beside the paper's:
    the ``keys`` columns (renamed by ``labels``), ``paper`` and ``measured`` as "mean ± std",
    ``delta`` rounded to three digits, ``seeds``, then the ``extra`` columns as they are. A frame
    without rows comes back as it is."""
    if comparison.empty:
        return comparison
    view = comparison[list(keys)].rename(columns=dict(labels or {}))
    view["paper"] = mean_std_text(comparison, "paper")
    view["measured"] = mean_std_text(comparison, "measured")
    view["delta"] = comparison["delta"].round(3)
    view["seeds"] = comparison["n_seeds"]
    for column in extra:
        view[column] = comparison[column]
    return view.reset_index(drop=True)
