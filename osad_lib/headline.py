"""The headline of a run: one row per paper — its main claim, the paper's number, ours, a verdict.

Nothing here decides anything anew; each row reads the rule that already judges it:

* **DevNet, BGAD** (a level the paper reports): the report's cell (:func:`osad_lib.report.cell_table`,
  primary version) and its :func:`~osad_lib.report.cell_verdict` (within tolerance, on the paper's
  settings or not). DevNet: Table 2, ELPV, 10 labelled anomalies. BGAD: BGAD-FAS image AUROC on
  MVTec AD with 5 anomalies per category (Table 1) or, when that was not measured, on ELPV with
  one anomaly (Table 3).
* **DRA, AHL** (a gain over a base model, paired over seeds): DRA − DevNet
  (:func:`osad_lib.experiments.dra.dra_vs_devnet`) and AHL(DRA) − DRA
  (:func:`osad_lib.experiments.ahl.paired_differences`) on unseen classes (hard setting, mean over
  the seen classes), with :func:`osad_lib.experiments.paired.status` as the verdict.
* **AnoOnly** (a gain per head): AnoOnly − base on the MVTec AD column of Table 1, clean
  organisation, paper split (:func:`osad_lib.experiments.anoonly.paired_gains` beside the paper's
  gains of :func:`~osad_lib.experiments.anoonly.gains`); each head's paired gain gets
  :func:`~osad_lib.experiments.paired.status`, and the verdict counts the heads per status.

A paper whose rows are missing (notebook not run, data absent) gets a row that says so.
:func:`headline_table` builds the table; notebook ``08_report`` saves it as
``runs/<profile>/tables/headline.csv`` (+ ``.md``), REPORT.md opens with it and ``run_all.py``
prints it at the end (:func:`osad_lib.runner.closing_lines`).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from osad_lib import paper, report
from osad_lib.experiments import ahl, anoonly, dra, paired
from osad_lib.profiles import NotebookConfig
from osad_lib.results import read_all

#: Columns of :func:`headline_table` (what ``runner.closing_lines`` reads).
COLUMNS = ("paper", "claim", "measured_on", "paper_value", "ours", "verdict")


@dataclass(frozen=True)
class LevelClaim:
    """A number a paper reports: one cell of one of its tables (first measured candidate wins)."""

    paper: str
    claim: str
    cells: tuple[dict[str, object], ...]  # each: table_id and the cell keys (report.KEYS)


#: DevNet Table 2 (ELPV, 10 anomalies) and BGAD-FAS Table 1 (MVTec AD mean) / Table 3 (ELPV).
LEVEL_CLAIMS = (
    LevelClaim("DevNet", "10 labelled anomalies give a strong detector (ELPV AUROC, Table 2)", (
        dict(table_id="devnet_table2", dataset="elpv", subset="", setting="general", n_shots=10, method="devnet",
             variant="", source="", metric="auroc"),)),
    LevelClaim("BGAD", "BGAD-FAS: image AUROC with a few anomalies (MVTec AD Table 1; else ELPV Table 3)", (
        dict(table_id="bgad_table1", dataset="mvtecad", subset="mean", setting="general", n_shots=5,
             method="bgad_fas", variant="", source="", metric="auroc"),
        dict(table_id="bgad_table3", dataset="elpv", subset="", setting="general", n_shots=1, method="bgad_fas",
             variant="", source="", metric="auroc"))),
)
DRA_CLAIM = "DRA beats DevNet on unseen anomaly classes (hard setting, Table 2)"
AHL_CLAIM = "AHL improves its base model DRA on unseen classes (hard setting, Table 2)"
ANOONLY_CLAIM = "AnoOnly raises every head's AUROC (MVTec AD, Table 1, clean organisation)"


def headline_table(cfg: NotebookConfig, cells: pd.DataFrame | None = None,
                   tolerance: float = report.TOLERANCE) -> pd.DataFrame:
    """One row per paper (DevNet, DRA, BGAD, AnoOnly, AHL) in :data:`COLUMNS`, from the results
    stored under ``cfg``'s profile and output folder (module docstring).

    ``cells``: the report's :func:`~osad_lib.report.cell_table` when the caller has it (its
    reasons then explain unmeasured cells); otherwise the needed tables are joined here.
    """
    if cells is None:
        tables = sorted({c["table_id"] for claim in LEVEL_CLAIMS for c in claim.cells})
        cells = report.cell_table(read_all(cfg.profile.name, cfg.output_dir), None, tolerance, table_ids=tables)
    devnet_row, bgad_row = (level_row(claim, cells) for claim in LEVEL_CLAIMS)
    rows = [devnet_row, dra_row(_sibling(cfg, "02_dra")), bgad_row, anoonly_row(_sibling(cfg, "04_anoonly")),
            ahl_row(_sibling(cfg, "05_ahl"))]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _sibling(cfg: NotebookConfig, notebook: str) -> NotebookConfig:
    """``cfg`` as notebook ``notebook`` sees it (same profile, seeds, output folder): its results store."""
    return dataclasses.replace(cfg, notebook=notebook)


def _where(dataset: str, subset: str, setting: str, n_shots: object) -> str:
    place = "/".join(p for p in (dataset, subset) if p)
    shots = f" {int(n_shots)}-shot" if pd.notna(n_shots) and str(n_shots) != "" else ""
    return f"{place}, {setting}{shots}"


def _seeds(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''}"


def level_row(claim: LevelClaim, cells: pd.DataFrame) -> dict[str, str]:
    """The row of a :class:`LevelClaim`: the first candidate cell measured (primary version),
    else the first candidate with the reason it was not measured."""
    found = []
    for cand in claim.cells:
        mask = cells["primary"] & (cells["table_id"] == cand["table_id"])
        for key in report.KEYS:
            column = cells[key]
            if key == "n_shots":
                mask &= pd.to_numeric(column, errors="coerce").astype(float).to_numpy() == cand[key]
            else:
                mask &= column.fillna("").astype(str) == cand[key]
        found.append(cells[mask])
    measured = [f[f["n_seeds"] > 0] for f in found]
    hit = next((m.iloc[0] for m in measured if len(m)), None)
    first = claim.cells[0]
    if hit is None:
        reason = next((str(f["reason"].iloc[0]) for f in found if len(f) and f["reason"].iloc[0]), "")
        reason = "no result rows for this cell" if reason in ("", "not measured") else reason
        paper_value = found[0]["paper_mean"].iloc[0] if len(found[0]) else np.nan
        paper_std = found[0]["paper_std"].iloc[0] if len(found[0]) else np.nan
        return {"paper": claim.paper, "claim": claim.claim,
                "measured_on": f"{first['table_id']}: " + _where(first["dataset"], first["subset"], first["setting"],
                                                                  first["n_shots"]),
                "paper_value": paper.format_mean_std(paper_value, paper_std), "ours": "—",
                "verdict": f"not measured: {reason}"}
    n = int(hit["n_seeds"])
    return {
        "paper": claim.paper, "claim": claim.claim,
        "measured_on": f"{hit['table_id']}: " + _where(hit["dataset"], hit["subset"], hit["setting"], hit["n_shots"])
                       + (f" ({hit['version']})" if hit["version"] else ""),
        "paper_value": paper.format_mean_std(hit["paper_mean"], hit["paper_std"]),
        "ours": f"{paper.format_mean_std(hit['measured_mean'], hit['measured_std'])} (std, {_seeds(n)})",
        "verdict": report.cell_verdict(n, hit["delta"], hit["within_tolerance"], hit["settings_differ"]),
    }


def pick_paired(table: pd.DataFrame, setting: str, n_shots: int = 10) -> pd.Series | None:
    """The row of a :func:`paired.paired_differences` table a headline shows: preferably one the
    paper has a number for, in ``setting``, a dataset mean (``mean``/``<category>/mean``) or a
    single-subset dataset, at ``n_shots``, with the most seeds; None for an empty table."""
    if table.empty:
        return None
    subset = table["subset"].fillna("").astype(str)
    rank = pd.DataFrame({
        "no_paper": ~np.isfinite(table["paper_diff"].astype(float)),
        "setting": table["setting"] != setting,
        "part": ~(subset.str.endswith("mean") | (subset == "")),
        "shots": pd.to_numeric(table["n_shots"], errors="coerce") != n_shots,
        "seeds": -table["n_seeds"].astype(int),
    }, index=table.index)
    order = rank.sort_values(list(rank.columns), kind="stable").index
    return table.loc[order[0]]


def paired_row(name: str, claim: str, table: pd.DataFrame, setting: str, missing: str) -> dict[str, str]:
    """A headline row from a paired-differences table (``missing``: why there is none)."""
    row = pick_paired(table, setting)
    if row is None:
        return {"paper": name, "claim": claim, "measured_on": "—", "paper_value": "—", "ours": "—",
                "verdict": f"not measured: {missing}"}
    se = float(row["diff_se"])
    spread = f" ± {se:.3f}" if np.isfinite(se) else ""
    paper_diff = float(row["paper_diff"])
    where = _where(row["dataset"], row["subset"], row["setting"], row["n_shots"])
    return {
        "paper": name, "claim": claim,
        "measured_on": f"{where}: {row['treatment']} − {row['control']}",
        "paper_value": f"{paper_diff:+.3f}" if np.isfinite(paper_diff) else "— (no paper number for this split)",
        "ours": f"{float(row['diff_mean']):+.3f}{spread} (s.e., {_seeds(int(row['n_seeds']))})",
        "verdict": paired.status(row),
    }


def _missing(cfg: NotebookConfig, what: str) -> str:
    if cfg.store.read().empty:
        return f"notebook {cfg.notebook} has no results under the {cfg.profile.name} profile"
    return f"no {what} runs on the same seeds in {cfg.notebook}"


def dra_row(cfg: NotebookConfig) -> dict[str, str]:
    """DRA − DevNet on unseen classes (:func:`osad_lib.experiments.dra.dra_vs_devnet`)."""
    table, _ = dra.dra_vs_devnet(cfg)
    return paired_row("DRA", DRA_CLAIM, table, "hard", _missing(cfg, "paired DRA/DevNet"))


def ahl_row(cfg: NotebookConfig) -> dict[str, str]:
    """AHL(DRA) − DRA on unseen classes (:func:`osad_lib.experiments.ahl.paired_differences`)."""
    table, _ = ahl.paired_differences(cfg)
    if "base" in table:
        table = table[table["base"] == "dra"]
    return paired_row("AHL", AHL_CLAIM, table, "hard", _missing(cfg, "paired AHL(DRA)/DRA"))


def _span(values: pd.Series, heads: int) -> str:
    low, high = float(values.min()), float(values.max())
    text = f"{low:+.3f}" if np.isclose(low, high) else f"{low:+.3f} … {high:+.3f}"
    return f"{text} over {heads} head{'s' if heads != 1 else ''}"


def anoonly_row(cfg: NotebookConfig, group: str = "mvtecad") -> dict[str, str]:
    """AnoOnly − base per head on ``group`` (Table 1, clean organisation, paper split)."""
    results = cfg.store.read()
    results = results[results["seed"].isin(cfg.seeds)]
    gains = anoonly.paired_gains(results, "auroc")
    gains = gains[gains["dataset"] == group]
    if gains.empty:
        return {"paper": "AnoOnly", "claim": ANOONLY_CLAIM, "measured_on": "—", "paper_value": "—", "ours": "—",
                "verdict": "not measured: " + _missing(cfg, f"AnoOnly/base pairs on {group}")}
    comparison = anoonly.comparison(results, "anoonly_table1")
    published = anoonly.gains(comparison) if len(comparison) else pd.DataFrame(columns=["dataset", "method"])
    published = published[published["dataset"] == group].set_index("method")["paper gain"] if len(published) else \
        pd.Series(dtype=float)
    statuses = []
    for r in gains.itertuples(index=False):
        n = int(r.n_seeds)
        se = float(r.gain_std) / np.sqrt(n) if n > 1 else float("nan")
        statuses.append(paired.status({"treatment": "AnoOnly", "control": "the base", "diff_mean": r.gain_mean,
                                       "diff_se": se, "n_seeds": n}))
    counts = Counter(statuses)
    heads = len(gains)
    verdict = "; ".join(f"{status} ({k}/{heads} heads)" for status, k in counts.most_common())
    paper_gains = published.reindex(gains["method"]).dropna()
    seeds = sorted(set(gains["n_seeds"].astype(int)))
    seed_text = _seeds(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}–{seeds[-1]} seeds"
    return {
        "paper": "AnoOnly", "claim": ANOONLY_CLAIM,
        "measured_on": f"{group}, clean organisation, paper split: heads " + ", ".join(gains["method"]),
        "paper_value": _span(paper_gains, len(paper_gains)) if len(paper_gains) else "—",
        "ours": f"{_span(gains['gain_mean'], heads)} ({seed_text})",
        "verdict": verdict,
    }


__all__ = ["ANOONLY_CLAIM", "AHL_CLAIM", "COLUMNS", "DRA_CLAIM", "LEVEL_CLAIMS", "LevelClaim", "ahl_row",
           "anoonly_row", "dra_row", "headline_table", "level_row", "paired_row", "pick_paired"]
