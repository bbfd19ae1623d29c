"""Paired differences over seeds: the one rule behind every "does method A beat method B" verdict.

Two methods trained on the same split with the same seed share everything but the method, so
their difference per seed is paired; over ``n`` seeds the verdict reads the mean difference
against its standard error (``std / √n``). :func:`paired_differences` builds the table (one row
per split: both means, the mean difference, its standard error, the seeds and how many improved,
and the paper's claimed difference when given); :func:`verdict` turns a row into a sentence that
says whether the difference is beyond two standard errors, and how it compares with the paper's.
Used by 02_dra (DRA − DevNet, clean − faithful), 05_ahl (AHL − its base) and the report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

#: Columns of :func:`paired_differences`, after the split keys.
PAIRED_COLUMNS = ["treatment", "control", "treatment_mean", "control_mean", "diff_mean", "diff_se", "n_seeds",
                  "n_improved", "paper_diff", "verdict"]
#: A difference counts as real when it exceeds this many standard errors (and at least 2 seeds).
SE_FACTOR = 2.0


def paired_differences(rows: pd.DataFrame, treatment: tuple[str, str], control: tuple[str, str],
                       keys: Sequence[str] = ("dataset", "subset", "setting", "n_shots"),
                       paper_diff: Callable[[tuple], float] | None = None,
                       names: tuple[str, str] | None = None) -> pd.DataFrame:
    """Per split (``keys``), ``treatment`` − ``control`` over the seeds both ran.

    ``rows``: result rows of one metric (``value``, ``seed``, ``method``, ``variant`` and the keys;
    only ``status == "ok"`` rows count); ``treatment``/``control``: (method, variant) pairs;
    ``paper_diff(key) -> float``: the paper's difference for a split (NaN when it has none);
    ``names``: how the verdict sentences call the two (default the method names).
    """
    keys = list(keys)
    ok = rows[rows["status"] == "ok"] if "status" in rows else rows
    label = np.where((ok["method"] == treatment[0]) & (ok["variant"] == treatment[1]), "t",
                     np.where((ok["method"] == control[0]) & (ok["variant"] == control[1]), "c", ""))
    ok = ok.assign(_arm=label)
    ok = ok[ok["_arm"] != ""]
    names = names or (treatment[0], control[0])
    out = []
    if not ok.empty:
        wide = ok.pivot_table(index=[*keys, "seed"], columns="_arm", values="value", aggfunc="mean")
        if {"t", "c"} <= set(wide.columns):
            wide = wide[["t", "c"]].dropna()
            wide["diff"] = wide["t"] - wide["c"]
            for key, part in wide.groupby(level=keys, sort=False):
                key = key if isinstance(key, tuple) else (key,)
                n = len(part)
                se = float(part["diff"].std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
                rec = dict(zip(keys, key))
                rec.update(treatment=names[0], control=names[1], treatment_mean=float(part["t"].mean()),
                           control_mean=float(part["c"].mean()), diff_mean=float(part["diff"].mean()), diff_se=se,
                           n_seeds=n, n_improved=int((part["diff"] > 0).sum()),
                           paper_diff=float(paper_diff(key)) if paper_diff is not None else float("nan"))
                rec["verdict"] = verdict(rec)
                out.append(rec)
    return pd.DataFrame(out, columns=[*keys, *PAIRED_COLUMNS])


def status(row: dict | pd.Series) -> str:
    """The short verdict of a :func:`paired_differences` row (``treatment``, ``control``,
    ``diff_mean``, ``diff_se``, ``n_seeds``): better / worse beyond :data:`SE_FACTOR` standard
    errors, within seed noise, or a single seed cannot separate the two."""
    t, c, d, se, n = row["treatment"], row["control"], row["diff_mean"], row["diff_se"], int(row["n_seeds"])
    if n < 2 or not np.isfinite(se):
        return f"a single seed cannot separate {t} from {c}"
    if d > SE_FACTOR * se:
        return f"{t} is better beyond {SE_FACTOR:g} standard errors"
    if d < -SE_FACTOR * se:
        return f"{t} is worse beyond {SE_FACTOR:g} standard errors"
    return f"within seed noise ({SE_FACTOR:g} standard errors)"


def verdict(row: dict | pd.Series) -> str:
    """One sentence for a :func:`paired_differences` row: the difference ± its standard error,
    the seeds improved, its :func:`status`, and the paper's difference."""
    t, c, d, se, n = row["treatment"], row["control"], row["diff_mean"], row["diff_se"], int(row["n_seeds"])
    spread = f" ± {se:.3f}" if np.isfinite(se) else ""
    paper = row.get("paper_diff", float("nan"))
    claim = f"; paper {paper:+.3f}" if paper is not None and np.isfinite(paper) else ""
    return (f"{t} − {c}: {d:+.3f}{spread} (s.e., {n} seeds, {int(row['n_improved'])} improved): "
            f"{status(row)}{claim}.")


def summary_sentence(table: pd.DataFrame, where: Callable[[pd.Series], str]) -> str:
    """All verdicts of a :func:`paired_differences` table, one clause per split named by ``where``."""
    if table.empty:
        return "no paired runs yet"
    return " ".join(f"{where(row)}: {row['verdict']}" for _, row in table.iterrows())


__all__ = ["PAIRED_COLUMNS", "SE_FACTOR", "paired_differences", "status", "summary_sentence", "verdict"]
