"""The one rule for the papers' mean cells (a dataset's mean over its subsets), used by every
notebook's tables and by the report alike, so the same cell never shows two numbers.

Which subsets a mean cell averages (:func:`mean_parts`) comes from the dataset registry and the
ADBench groups: MVTec AD's 15 categories (DevNet Table 2, DRA Table 1, BGAD), a dataset's seen
classes in the hard setting (DevNet Table 3, DRA Table 2, AHL), an ADBench group's files
(AnoOnly Table 1).

The rule (:func:`subset_means`), per cell and seed:

* the value is the mean over the parts measured (status ``ok``, finite values);
* a cell measured on every part is a plain mean; on fewer, but at least :data:`MIN_PARTS`, it
  says so in ``deviations`` (``mean over k/n subsets``) and the report counts it as a substitute
  setting; on a single part of several it is no mean and is left out;
* a seed that covers fewer parts than the cell's best-covered seed is left out of the cell, so a
  mean over seeds averages seeds over the same subsets (an interrupted seed does not mix in).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import pandas as pd

from osad_lib.data import registry, tabular
from osad_lib.paper import join_notes

#: The fewest parts a partial mean cell averages (one part of several is not a mean).
MIN_PARTS = 2
#: Columns that identify a measured cell besides its subset, where present in the rows.
CELL_KEYS = ("paper", "table", "dataset", "setting", "n_shots", "method", "variant", "source", "backbone", "seed",
             "profile", "metric", "mode", "report", "version")


def mean_parts(paper_id: str, dataset: str, setting: str) -> dict[str, tuple[str, ...]]:
    """The mean cells of a dataset under a setting and the subsets each averages.

    AnoOnly: the group's ADBench files → subset ``""`` (its Table 1 column). Image datasets
    (registry): hard setting → ``<category>/mean`` over that category's seen classes, or
    ``mean`` over the seen classes of a single-subset dataset; other settings → ``mean`` over the
    subsets of a multi-subset dataset (MVTec AD categories, BTAD products).
    """
    if paper_id == "anoonly":
        group = tabular.GROUPS.get(dataset)
        return {"": group.stems} if group else {}
    info = registry.DATASETS.get(dataset)
    if info is None:
        return {}
    if setting == "hard":
        parts: dict[str, list[str]] = defaultdict(list)
        for sub in info.subsets.values():
            for seen in sub.hard_seen_classes:
                label = registry.hard_subset_label(sub.name, seen)
                parts[f"{label.rpartition('/')[0]}/mean" if "/" in label else "mean"].append(label)
        return {k: tuple(v) for k, v in parts.items()}
    return {"mean": tuple(s.subset for s in info.subsets.values())} if len(info.subsets) > 1 else {}


def mean_cells(rows: pd.DataFrame, members: Sequence[str], part: str = "subset", keys: Sequence[str] = (),
               min_parts: int = MIN_PARTS, noun: str | None = "subsets") -> pd.DataFrame:
    """The module's rule for one kind of mean cell: per cell (``keys``, the columns of
    :data:`CELL_KEYS` present by default, less ``part``) and seed, the mean over the rows whose
    ``part`` is one of ``members``. A seed covering fewer parts than the cell's best-covered seed
    is left out; a cell is kept when it covers every member or at least ``min_parts`` of them
    (then ``deviations`` end with ``mean over k/n <noun>``; ``noun=None``: the caller words it).
    Returns the cells' keys, ``value``,
    ``deviations`` and ``notebook`` (the parts' notes, where present), ``n_parts`` (k),
    ``n_expected`` (n) and ``parts`` (the members measured, in ``members`` order)."""
    keys = [k for k in (keys or CELL_KEYS) if k in rows.columns and k != part]
    mine = rows[rows[part].isin(members)]
    if mine.empty:
        return pd.DataFrame(columns=[*keys, "value", "deviations", "n_parts", "n_expected", "parts"])
    order = {m: i for i, m in enumerate(members)}
    agg = {"value": ("value", "mean"), "n_parts": (part, "nunique"),
           "parts": (part, lambda s: tuple(sorted(set(s), key=order.__getitem__)))}
    agg |= {c: (c, join_notes) for c in ("deviations", "notebook") if c in mine}
    means = mine.groupby(keys, dropna=False, sort=False).agg(**agg).reset_index()
    cell = [k for k in keys if k != "seed"]
    best = means.groupby(cell, dropna=False, sort=False)["n_parts"].transform("max") if cell else means["n_parts"].max()
    n = means["n_parts"]
    means = means[(n == best) & ((n == len(members)) | (n >= min_parts))].assign(n_expected=len(members))
    if noun is not None:
        partial = means["n_parts"] < len(members)
        note = "mean over " + means["n_parts"].astype(str) + f"/{len(members)} {noun}"
        notes = means["deviations"] if "deviations" in means else pd.Series("", index=means.index)
        means["deviations"] = notes.where(~partial, (notes + "; " + note).str.strip("; "))
    return means


def subset_means(rows: pd.DataFrame) -> pd.DataFrame:
    """The mean cells of ``rows`` by the module's rule (:func:`mean_cells` for each of
    :func:`mean_parts`): one row per cell and seed with the cell's keys, ``subset`` = the mean's
    label, ``value``, ``deviations`` (the parts' notes, plus ``mean over k/n subsets`` when
    partial), ``notebook`` (where present), ``status="ok"`` (where present), ``n_parts`` (k) and
    ``n_expected`` (n)."""
    ok = rows
    if "status" in ok:
        ok = ok[ok["status"] == "ok"]
    ok = ok[np.isfinite(pd.to_numeric(ok["value"], errors="coerce"))]
    keys = [c for c in CELL_KEYS if c in ok.columns]
    columns = [*keys, "subset", "value", "deviations", *(["notebook"] if "notebook" in rows else []),
               *(["status"] if "status" in rows else []), "n_parts", "n_expected"]
    out = []
    for (paper_id, dataset, setting), group in ok.groupby(["paper", "dataset", "setting"], sort=False):
        for label, members in mean_parts(paper_id, dataset, setting).items():
            means = mean_cells(group, members, keys=keys)
            if len(means):
                out.append(means.assign(subset=label, **({"status": "ok"} if "status" in rows else {})))
    if not out:
        return pd.DataFrame({c: pd.Series(dtype=rows[c].dtype if c in rows else object) for c in columns})
    return pd.concat(out, ignore_index=True)[columns]


def with_subset_means(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` followed by their mean cells (:func:`subset_means`, without its counts)."""
    means = subset_means(rows).drop(columns=["n_parts", "n_expected"])
    return pd.concat([rows, means], ignore_index=True) if len(means) else rows


__all__ = ["CELL_KEYS", "MIN_PARTS", "mean_cells", "mean_parts", "subset_means", "with_subset_means"]
