"""``runs/<profile>/REPORT.md`` and ``REPORT.html``: the report's tables and figures, linked
with every table, figure and executed notebook of a run."""

from __future__ import annotations

import html
import os
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from osad_lib import paths, viz
from osad_lib.paths import atomic_write_text
from osad_lib.profiles import get_profile
from osad_lib.report.cells import cell_table
from osad_lib.report.planned import Coverage, coverage
from osad_lib.report.figures import delta_figure, status_figure
from osad_lib.report.rules import DEFINITIONS, STATUSES, TOLERANCE
from osad_lib.report.scoring import (
    measured_cells, missing_cells, outside_spread, results_overview, scorecard_display, substitute_settings, summarize,
    unmatched_rows, version_pairs,
)
from osad_lib.results import read_all

#: Rows of a long section shown in REPORT.md / REPORT.html (the saved CSV has them all).
MAX_ROWS_SHOWN = 200


def report_tables(rows: pd.DataFrame, cells: pd.DataFrame, tolerance: float = TOLERANCE) -> dict[str, pd.DataFrame]:
    """The report's tables by file name (saved under ``tables/``), in report order."""
    card = summarize(cells, tolerance)
    return {
        "report_results": results_overview(rows),
        "report_scorecard": scorecard_display(card),
        "report_measured_cells": measured_cells(cells),
        "report_outside_spread": outside_spread(cells),
        "report_substitute_settings": substitute_settings(cells),
        "report_versions": version_pairs(cells, tolerance).round(4),
        "report_missing": missing_cells(cells),
        "report_unmatched": unmatched_rows(rows),
    }


_SECTIONS = (
    ("report_results", "Results found", "Result rows stored per notebook under this profile."),
    ("report_scorecard", "Scorecard",
     "One row per paper table. measured = measured/paper cells; reproduced = reproduced/measured on paper "
     "settings; within tol. = within tolerance/measured (any settings); versions disagree = cells whose "
     "faithful/clean (or report) versions disagree / cells with several versions."),
    ("report_outside_spread", "Cells outside their seed spread",
     "Primary cells with |delta| > max(2·measured std, paper std), largest first."),
    ("report_substitute_settings", "Cells measured on substitute settings",
     "Measured primary cells whose backbone or settings differ from the paper, grouped by the recorded deviations."),
    ("report_versions", "Faithful vs clean (and report) versions",
     "Cells measured in several versions: the primary beside each other one; disagree = the difference exceeds "
     "max(2·std of either, tolerance)."),
    ("report_missing", "Why cells are not measured", "Unmeasured cells per table and reason."),
    ("report_unmatched", "Measurements without a paper cell",
     "Keys no paper table has (synthetic data, extra metrics, companion protocols or variants)."),
    ("report_measured_cells", "Every measured cell", "All measured cell versions (primary and others)."),
)


_HEADLINE_CAPTION = ("One row per paper: its main claim, the paper's number, ours and the verdict the project's rules "
                     "give (a level: the report's tolerance rule on the cell; a gain: paired differences over seeds, "
                     "beyond 2 standard errors or not). Mean ± std (or ± s.e. for a paired difference) over the seeds.")


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def _artifacts(profile: str, output: str | os.PathLike | None) -> dict[str, dict[str, list[Path]]]:
    """Tables (CSV/MD), figures (PNG/PDF) and executed notebooks of the run, grouped by file stem."""
    folders = {
        "tables": (paths.tables_dir(profile, output), (".csv", ".md")),
        "figures": (paths.figures_dir(profile, output), (".png", ".pdf")),
        "notebooks": (paths.runs_dir(profile, output), (".ipynb",)),
    }
    out: dict[str, dict[str, list[Path]]] = {}
    for kind, (folder, suffixes) in folders.items():
        groups: dict[str, list[Path]] = defaultdict(list)
        for f in sorted(folder.iterdir()):
            if f.is_file() and f.suffix in suffixes and not f.name.startswith("."):
                groups[f.stem].append(f)
        out[kind] = dict(groups)
    return out


def _md_table(df: pd.DataFrame) -> str:
    """The first :data:`MAX_ROWS_SHOWN` rows as Markdown, deviations as numbered footnotes."""
    if df.empty:
        return "_none_"
    note = f"\n\n_First {MAX_ROWS_SHOWN} of {len(df)} rows; the linked CSV has all._" if len(df) > MAX_ROWS_SHOWN else ""
    return viz.markdown_table(df.head(MAX_ROWS_SHOWN), missing="—") + note


def _html_table(df: pd.DataFrame) -> str:
    """The first :data:`MAX_ROWS_SHOWN` rows as HTML, deviations as a numbered list under it."""
    if df.empty:
        return "<p><em>none</em></p>"
    note = (f"<p><em>First {MAX_ROWS_SHOWN} of {len(df)} rows; the linked CSV has all.</em></p>"
            if len(df) > MAX_ROWS_SHOWN else "")
    shown, notes = viz.footnoted(df.head(MAX_ROWS_SHOWN))
    footnotes = ""
    if notes:
        footnotes = (f"<p><em>Deviations ({viz.NOTE_COLUMN}):</em></p><ol>"
                     + "".join(f"<li>{html.escape(text)}</li>" for text in notes) + "</ol>")
    return shown.to_html(index=False, na_rep="—", float_format=lambda v: f"{v:.3f}", border=0,
                         classes="data") + footnotes + note


def _summary_line(card: pd.DataFrame) -> str:
    counts = card["status"].value_counts()
    parts = [f"{counts.get(s, 0)} {s}" for s in STATUSES if counts.get(s, 0)]
    return (f"{len(card)} paper tables: {', '.join(parts)}. Cells: {int(card['measured'].sum())} of "
            f"{int(card['cells'].sum())} measured, {int(card['on_paper_settings'].sum())} on the paper's settings, "
            f"{int(card['reproduced'].sum())} reproduced, {int(card['within_tolerance'].sum())} within tolerance "
            f"on any settings.")


def write_report(
    profile: str,
    output: str | os.PathLike | None = None,
    *,
    data_root: str | os.PathLike | None = None,
    tolerance: float = TOLERANCE,
    cover: Coverage | None = None,
    rows: pd.DataFrame | None = None,
    cells: pd.DataFrame | None = None,
    headline: pd.DataFrame | None = None,
) -> dict[str, Path | list[Path]]:
    """Save the report's tables (``viz.save_table``) and figures (``viz.savefig``) and write
    ``runs/<profile>/REPORT.md`` and ``REPORT.html`` linking every table, figure and executed
    notebook of the run (relative links). ``rows``/``cells`` reuse what the caller computed;
    ``headline`` (:func:`osad_lib.headline.headline_table`), when given, is saved as
    ``tables/headline`` and opens both reports.

    Returns ``{"markdown", "html", "tables", "figures"}`` (the last two: files written here).
    """
    import matplotlib.pyplot as plt

    rows = rows if rows is not None else read_all(profile, output)
    if cells is None:
        cells = cell_table(rows, cover if cover is not None else coverage(profile, data_root), tolerance)
    card = summarize(cells, tolerance)
    tables = report_tables(rows, cells, tolerance)
    tables_dir, figures_dir, runs = (paths.tables_dir(profile, output), paths.figures_dir(profile, output),
                                     paths.runs_dir(profile, output))
    if headline is not None:
        tables = {"headline": headline, **tables}
    written_tables = [p for name, df in tables.items() for p in viz.save_table(df, name, tables_dir)]
    written_figures = []
    for name, fig in (("report_deltas", delta_figure(cells, tolerance)), ("report_status", status_figure(card))):
        written_figures += viz.savefig(fig, name, figures_dir)
        plt.close(fig)
    artifacts = _artifacts(profile, output)
    md_path, html_path = runs / "REPORT.md", runs / "REPORT.html"
    atomic_write_text(md_path, _markdown(profile, card, tables, artifacts, runs, tolerance))
    atomic_write_text(html_path, _html(profile, card, tables, artifacts, runs, tolerance))
    return {"markdown": md_path, "html": html_path, "tables": written_tables, "figures": written_figures}


def _intro(profile: str, tolerance: float) -> str:
    prof = get_profile(profile)
    return (f"Profile `{profile}`: {prof.description}. Absolute tolerance: {tolerance:g} (values on the [0, 1] "
            "scale). Paper numbers come from `osad_lib.paper`; measured numbers from the results stores under "
            "`results/`.")


def _markdown(profile: str, card: pd.DataFrame, tables: Mapping[str, pd.DataFrame],
              artifacts: Mapping[str, Mapping[str, list[Path]]], runs: Path, tolerance: float) -> str:
    figures = artifacts["figures"]
    out = [f"# Reproduction report — profile `{profile}`", ""]
    if "headline" in tables:
        out += ["## Headline", "", _HEADLINE_CAPTION + f" ([csv]({_relative(runs / 'tables' / 'headline.csv', runs)}))",
                "", _md_table(tables["headline"]), ""]
    out += [_intro(profile, tolerance), "", f"**{_summary_line(card)}**", "", "## Definitions", ""]
    out += [f"- **{term}**: {text}" for term, text in DEFINITIONS]
    for name, title, caption in _SECTIONS:
        out += ["", f"## {title}", "", caption + f" ([csv]({_relative(runs / 'tables' / (name + '.csv'), runs)}))", "",
                _md_table(tables[name])]
        if name == "report_scorecard":
            for fig, text in (("report_status", "Share of each table's cells by outcome."),
                              ("report_deltas", "Measured − paper per cell; grey band: the tolerance.")):
                if fig in figures:
                    png = next(p for p in figures[fig] if p.suffix == ".png")
                    out += ["", f"![{text}]({_relative(png, runs)})", "", f"_{text}_"]
    out += ["", "## Files of this run", ""]
    for kind, groups in artifacts.items():
        out += [f"### {kind.capitalize()}", ""]
        out += [f"- {stem}: " + " · ".join(f"[{p.suffix[1:]}]({_relative(p, runs)})" for p in files)
                for stem, files in groups.items()] or ["_none_"]
        out.append("")
    return "\n".join(out)


_CSS = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
        "table.data{border-collapse:collapse;font-size:12px;margin:0.5em 0}"
        "table.data th,table.data td{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}"
        "table.data th{background:#f0f0f0}img{max-width:100%}code{background:#f4f4f4}")


def _html(profile: str, card: pd.DataFrame, tables: Mapping[str, pd.DataFrame],
          artifacts: Mapping[str, Mapping[str, list[Path]]], runs: Path, tolerance: float) -> str:
    esc = html.escape
    figures = artifacts["figures"]
    intro = esc(_intro(profile, tolerance)).replace("`", "")
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>Reproduction report — {esc(profile)}</title><style>{_CSS}</style></head><body>",
           f"<h1>Reproduction report — profile <code>{esc(profile)}</code></h1>"]
    if "headline" in tables:
        out += ["<h2>Headline</h2>", f'<p>{esc(_HEADLINE_CAPTION)} (<a href="tables/headline.csv">csv</a>)</p>',
                _html_table(tables["headline"])]
    out += [f"<p>{intro}</p>",
            f"<p><strong>{esc(_summary_line(card))}</strong></p>", "<h2>Definitions</h2><ul>"]
    out += [f"<li><strong>{esc(term)}</strong>: {esc(text)}</li>" for term, text in DEFINITIONS]
    out.append("</ul>")
    for name, title, caption in _SECTIONS:
        link = esc(_relative(runs / "tables" / f"{name}.csv", runs))
        out += [f"<h2>{esc(title)}</h2>", f'<p>{esc(caption)} (<a href="{link}">csv</a>)</p>', _html_table(tables[name])]
        if name == "report_scorecard":
            for fig, text in (("report_status", "Share of each table's cells by outcome."),
                              ("report_deltas", "Measured − paper per cell; grey band: the tolerance.")):
                if fig in figures:
                    png = esc(_relative(next(p for p in figures[fig] if p.suffix == ".png"), runs))
                    out.append(f'<figure><img src="{png}" alt="{esc(text)}"><figcaption>{esc(text)}</figcaption></figure>')
    out.append("<h2>Files of this run</h2>")
    for kind, groups in artifacts.items():
        out.append(f"<h3>{esc(kind.capitalize())}</h3><ul>")
        out += [f"<li>{esc(stem)}: " + " · ".join(f'<a href="{esc(_relative(p, runs))}">{esc(p.suffix[1:])}</a>'
                                                  for p in files) + "</li>" for stem, files in groups.items()]
        out.append("</ul>" if groups else "<li><em>none</em></li></ul>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


__all__ = ["MAX_ROWS_SHOWN", "report_tables", "write_report"]
