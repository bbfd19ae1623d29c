"""The score explorer (a trained run's test scores, per head), the results explorer (the results
store beside the papers) and :func:`show`, the one call per notebook."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from osad_lib import plots, viz
from osad_lib.results import read_all
from osad_lib.validate import ConfigError
from osad_lib.widgets.display import (
    ON_RELEASE, CONTROL_STYLE, widget_box, figure_output, Panel, png_bundle, table_output, text_output,
)
from osad_lib.widgets.datasets import (
    dataset_browser, pseudo_playground, static_dataset_browser, static_pseudo_playground,
)



def _row_label(frame: pd.DataFrame, row: int) -> str:
    r = frame.iloc[row]
    where = f" {r['path']}" if "path" in frame.columns else ""
    return f"row {row}: {r['class']} ({r['kind']}) score {r['score']:.3g}{where}"


def score_explorer(scores: pd.DataFrame, images: Any = None, maps: Any = None, masks: Any = None,
                   title: str = "") -> Any:
    """Explore one trained run's test scores: histograms per kind (normal / seen / unseen) of
    the final score and of every head (DRA), the ROC of a chosen score column, and — with
    ``images`` and ``maps`` — the anomaly map of a picked image over it
    (:func:`osad_lib.plots.score_figure`).

    ``scores``: the score frame documented in :mod:`osad_lib.plots` (columns ``score``,
    ``label``, ``class``, ``kind``; optional ``score_<head>``, ``path``, ``map_index``).
    Children: row (score column, bins, overlay opacity), row (image picker, when maps are
    given), Output.
    """
    import ipywidgets as w

    if isinstance(scores, pd.DataFrame) and scores.empty and title:  # no run: the note the title gives
        panel = Panel(lambda: [figure_output(plots.score_figure(scores, title=title))])
        panel.redraw()
        return widget_box([], panel)
    frame = plots.check_score_frame(scores)
    column = w.Dropdown(options=plots.score_columns(frame), value="score", description="ROC of", style=CONTROL_STYLE)
    bins = w.IntSlider(value=30, min=5, max=100, step=5, description="bins", **ON_RELEASE)
    alpha = w.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="map opacity", style=CONTROL_STYLE, **ON_RELEASE)
    rows = plots.mapped_rows(frame) if maps is not None else []
    index = w.Dropdown(options=[(_row_label(frame, r), r) for r in rows], value=rows[0] if rows else None,
                       description="image", layout={"width": "600px"}, disabled=not rows)

    def draw() -> list[dict]:
        return [figure_output(plots.score_figure(frame, column.value, bins.value, index.value, images, masks, maps,
                                                  alpha.value, title))]

    panel = Panel(draw)
    panel.watch(column, bins, alpha, index)
    panel.redraw()
    return widget_box([(column, bins, alpha), (index,)], panel)


def static_score_explorer(scores: pd.DataFrame, images: Any = None, maps: Any = None, masks: Any = None,
                          title: str = "") -> plt.Figure:
    """:func:`score_explorer`'s figure at its default controls (ROC of the final score, 30 bins,
    the highest-scoring image with a map)."""
    return plots.score_figure(scores, "score", 30, None, images, masks, maps, 0.5, title)


# --------------------------------------------------------------------------------------------
# results store vs papers


def _options(values: pd.Series) -> list[tuple[str, str]]:
    return [("all", "")] + [(str(v), str(v)) for v in sorted(set(values.dropna().astype(str))) if str(v)]


def _default_filters(measured: pd.DataFrame) -> dict[str, str]:
    """Default filters of the results explorer: no filter, except metric ``auroc`` when measured
    (hides per-epoch and secondary metrics until asked for)."""
    return {"dataset": "", "method": "", "setting": "", "metric": "auroc" if (measured["metric"] == "auroc").any() else ""}


def _results_title(paper: str, table: str, profile: str) -> str:
    if not paper:
        return f"no stored {profile} results have a paper table yet"
    return f"{paper} {table}: measured ({profile} profile) vs paper"


def results_explorer(profile: str, output_dir: str | os.PathLike | None = None) -> Any:
    """Filter the results store (:func:`osad_lib.results.read_all`) by paper, table, dataset,
    method, setting and metric → the paper-vs-measured table (:func:`osad_lib.paper.compare`)
    and bars of measured mean ± std beside the paper's numbers
    (:func:`osad_lib.viz.paper_vs_measured_bars`).

    Children: row (paper, table, show unmeasured paper rows), row (dataset, method, setting,
    metric), Output (figure, then table).
    """
    import ipywidgets as w

    results = read_all(profile, output_dir)
    tables = plots.result_tables(results)
    papers = list(dict.fromkeys(tables["paper"]))
    paper = w.Dropdown(options=papers, value=papers[0] if papers else None, description="paper")
    table = w.Dropdown(options=[], description="table")
    filters = {name: w.Dropdown(options=[("all", "")], value="", description=name)
               for name in ("dataset", "method", "setting", "metric")}
    unmeasured = w.Checkbox(value=False, description="table: also unmeasured paper rows", indent=False, style=CONTROL_STYLE)

    def draw() -> list[dict]:
        if not papers:
            return [text_output(_results_title("", "", profile) + f" (results under {output_dir or 'the checkout'})")]
        chosen = {k: c.value for k, c in filters.items()}
        comparison = plots.results_comparison(results, paper.value, table.value, **chosen)
        figure = figure_output(viz.paper_vs_measured_bars(comparison, _results_title(paper.value, table.value, profile)))
        if unmeasured.value:
            comparison = plots.results_comparison(results, paper.value, table.value, **chosen, with_unmeasured=True)
        return [figure, table_output(plots.comparison_view(comparison))]

    panel = Panel(draw)

    def use_paper(_: Any = None) -> None:
        with panel.hold():
            table.options = tables.loc[tables["paper"] == paper.value, "table"].tolist()
            table.value = table.options[0]
        use_table()

    def use_table(_: Any = None) -> None:
        if table.value is None:
            return
        with panel.hold():
            measured = plots.results_comparison(results, paper.value, table.value)
            defaults = _default_filters(measured)
            for name, control in filters.items():
                control.options = _options(measured[name])
                control.value = defaults[name]

    if papers:
        use_paper()
    paper.observe(use_paper, names="value")
    table.observe(use_table, names="value")
    panel.watch(paper, table, unmeasured, *filters.values())
    panel.redraw()
    return widget_box([(paper, table, unmeasured), tuple(filters.values())], panel)


def static_results_explorer(profile: str, output_dir: str | os.PathLike | None = None) -> plt.Figure:
    """:func:`results_explorer`'s figure at its default controls (first paper and table with
    stored results; metric ``auroc`` when measured, no other filter)."""
    results = read_all(profile, output_dir)
    tables = plots.result_tables(results)
    if tables.empty:
        return viz.paper_vs_measured_bars(pd.DataFrame(), _results_title("", "", profile))
    first = tables.iloc[0]
    measured = plots.results_comparison(results, first["paper"], first["table"])
    comparison = plots.results_comparison(results, first["paper"], first["table"], **_default_filters(measured))
    return viz.paper_vs_measured_bars(comparison, _results_title(first["paper"], first["table"], profile))


# --------------------------------------------------------------------------------------------
# one call per notebook

_STATIC: dict[Callable[..., Any], Callable[..., plt.Figure]] = {
    dataset_browser: static_dataset_browser,
    pseudo_playground: static_pseudo_playground,
    score_explorer: static_score_explorer,
    results_explorer: static_results_explorer,
}


def show(widget_fn: Callable[..., Any], interactive: bool, **kw: Any) -> Any:
    """Display ``widget_fn(**kw)`` when ``interactive``; otherwise display and return its static
    figure (``static_<name>(**kw)``), so headless runs show the same figure without ipywidgets.

    Returns the widget or the Figure; assign it (``fig = show(...)``) so that Jupyter does not
    display it a second time.
    """
    from IPython.display import display

    if widget_fn not in _STATIC:
        raise ConfigError(f"show: {getattr(widget_fn, '__name__', widget_fn)!r} is not one of "
                          f"{', '.join(f.__name__ for f in _STATIC)} (osad_lib.widgets)")
    if interactive:
        widget = widget_fn(**kw)
        display(widget)
        return widget
    fig = _STATIC[widget_fn](**kw)
    display(png_bundle(fig), raw=True)
    plt.close(fig)
    return fig
