"""The notebooks' Jupyter side: the display set-up every notebook starts with
(:func:`notebook_display`) and interactive widgets that teach the methods.

Each widget is a function returning an ipywidgets container — rows of controls, then one
``Output`` (always the last child). A control change re-calls a static figure function of
:mod:`osad_lib.plots` with the control values and puts the figure (PNG) into the Output;
nothing is computed only inside a widget. Each ``static_<widget>(...)`` draws the same figure
from the default control values, for headless runs, and :func:`show` picks one of the two::

    from osad_lib import widgets
    fig = widgets.show(widgets.dataset_browser, interactive, data_root=cfg.data_root)

=====================  ================================================================
widget                 figure function it re-calls
=====================  ================================================================
``dataset_browser``    :func:`osad_lib.plots.split_overview`
``pseudo_playground``  :func:`osad_lib.plots.pseudo_anomaly_example`
``score_explorer``     :func:`osad_lib.plots.score_figure` (score frame: ``osad_lib.plots``)
``results_explorer``   :func:`osad_lib.plots.results_comparison` + :func:`osad_lib.viz.paper_vs_measured_bars`
=====================  ================================================================

``ipywidgets`` is imported only when a widget is built, so ``import osad_lib.widgets`` works
(silently) without it and headless runs never touch it.

Modules: :mod:`.display`, :mod:`.datasets`, :mod:`.explorers`; everything is re-exported here.
"""

from osad_lib.widgets.display import (
    CONTROL_STYLE, MEANINGLESS_PROFILES, ON_RELEASE, enable_inline_figures, figure_output, notebook_display, Panel,
    png_bundle, show_full_text, table_output, text_output, widget_box,
)
from osad_lib.widgets.datasets import (
    PARAMETER_CONTROLS, available_datasets, dataset_browser, generator_defaults, pseudo_playground,
    static_dataset_browser, static_pseudo_playground,
)
from osad_lib.widgets.explorers import (
    results_explorer, score_explorer, show, static_results_explorer, static_score_explorer,
)

__all__ = [
    "CONTROL_STYLE", "MEANINGLESS_PROFILES", "ON_RELEASE", "PARAMETER_CONTROLS", "Panel", "available_datasets",
    "dataset_browser", "enable_inline_figures", "figure_output", "generator_defaults", "notebook_display",
    "png_bundle", "pseudo_playground", "results_explorer", "score_explorer", "show", "show_full_text",
    "static_dataset_browser", "static_pseudo_playground", "static_results_explorer", "static_score_explorer",
    "table_output", "text_output", "widget_box",
]
