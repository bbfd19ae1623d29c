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
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from osad_lib import paths, plots, viz
from osad_lib.data import pseudo
from osad_lib.data.mvtec import anomaly_classes
from osad_lib.data.protocols import SETTINGS
from osad_lib.data.pseudo import GENERATORS
from osad_lib.data.registry import DATASETS, dataset_names, local_folder, subset_info
from osad_lib.experiments.datasets import read_datasets
from osad_lib.profiles import NotebookConfig
from osad_lib.results import read_all
from osad_lib.validate import ConfigError

# --------------------------------------------------------------------------------------------
# the notebook's display, right after configure


def enable_inline_figures() -> None:
    """Let ``display(fig)`` show figures as PNG inside a kernel although the backend is Agg.

    Batch runs force the non-interactive Agg backend (``docs/conventions.md`` "Figures"); without
    this, IPython would show a figure only as ``<Figure size …>`` text. A no-op outside IPython.
    """
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import select_figure_formats
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        select_figure_formats(shell, {"png"}, bbox_inches="tight")


def show_full_text() -> None:
    """Show table cells in full inside a kernel: pandas cuts text at 50 characters by default,
    which hides the report's reasons and the definitions. A no-op outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    if get_ipython() is not None:
        pd.set_option("display.max_colwidth", None)


#: Profiles whose numbers say nothing about the methods: their notebooks open with a banner.
MEANINGLESS_PROFILES = ("smoke",)


def notebook_display(cfg: NotebookConfig) -> None:
    """A notebook's display, set up right after :func:`osad_lib.profiles.configure`: figures
    shown inline as PNG (:func:`enable_inline_figures`), table text in full
    (:func:`show_full_text`), and one line at the top of the results when the profile's numbers
    are meaningless (``smoke``: random-weight backbones, tiny synthetic data, a few steps)."""
    from IPython.display import Markdown, display

    enable_inline_figures()
    show_full_text()
    profile = cfg.profile
    if profile.builtin in MEANINGLESS_PROFILES:
        display(Markdown(f"⚠️ **{profile.name} profile: every number below is meaningless** ({profile.description}); "
                         "it only checks that each cell runs. The demo profile (embedded real data) and the paper "
                         "profile (your datasets) give results."))

# --------------------------------------------------------------------------------------------
# rendering into an Output


def _png_bundle(fig: plt.Figure) -> dict[str, str]:
    """``fig`` as a PNG mime bundle: shown whatever the matplotlib backend (the library forces
    Agg, under which ``display(fig)`` shows only text)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    return {"image/png": base64.b64encode(buffer.getvalue()).decode(),
            "text/plain": f"<Figure: {fig.get_suptitle() or 'figure'}>"}


def _figure_output(fig: plt.Figure) -> dict:
    """``fig`` as a display_data output of an Output widget (the figure is closed)."""
    bundle = _png_bundle(fig)
    plt.close(fig)
    return {"output_type": "display_data", "metadata": {}, "data": bundle}


def _table_output(table: pd.DataFrame) -> dict:
    return {"output_type": "display_data", "metadata": {},
            "data": {"text/html": table.to_html(index=False, float_format="{:.3f}".format, na_rep="—"),
                     "text/plain": table.to_string(index=False)}}


def _text_output(text: str) -> dict:
    return {"output_type": "stream", "name": "stdout", "text": text + "\n"}


class _Panel:
    """An Output redrawn by ``draw() -> [outputs]`` whenever a watched control changes.

    A :class:`~osad_lib.validate.ConfigError` (a combination the data cannot satisfy, e.g.
    more shots than anomalies) is shown as its one-line message instead of a figure.
    """

    def __init__(self, draw: Callable[[], list[dict]]):
        import ipywidgets

        self.draw, self.held = draw, False
        self.output = ipywidgets.Output()

    def watch(self, *controls: Any) -> None:
        for control in controls:
            control.observe(lambda _: self.redraw(), names="value")

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """No redraws inside (while dependent controls are adjusted); redraw once afterwards."""
        held, self.held = self.held, True
        try:
            yield
        finally:
            self.held = held

    def redraw(self) -> None:
        if self.held:
            return
        try:
            outputs = self.draw()
        except ConfigError as exc:
            outputs = [_text_output(str(exc))]
        self.output.outputs = tuple(outputs)


def _box(rows: Sequence[Any], panel: _Panel) -> Any:
    """VBox of the rows (a tuple of controls becomes an HBox), then the panel's Output (the last child)."""
    import ipywidgets

    return ipywidgets.VBox([ipywidgets.HBox(list(row)) if isinstance(row, tuple) else row for row in rows] + [panel.output])


_STYLE = {"description_width": "initial"}
#: Sliders report a value when released, not at every step of a drag: each value is a full
#: redraw (a figure, often a model pass), and a drag would queue dozens of them.
_ON_RELEASE = {"continuous_update": False}

# --------------------------------------------------------------------------------------------
# datasets


def available_datasets(data_root: str | os.PathLike | None = None) -> list[str]:
    """Registry names whose data are at hand: the synthetic subsets and ELPV (embedded) and every
    dataset found as ``<data_root>/<name>`` (``data_root`` or ``OSAD_DATA``)."""
    names = dataset_names(["synthetic/*", "elpv"])
    root = paths.data_root(data_root)
    if root is not None:
        local = [n for info in DATASETS.values() if not info.embedded for n in info.names]
        names += [n for n in local if local_folder(n, root).is_dir()]
    return names


class _Datasets:
    """(folder, samples) per registry name, read once (embedded data are built on first use)."""

    def __init__(self, data_root: str | os.PathLike | None):
        self.data_root, self.read = data_root, {}

    def __call__(self, name: str) -> tuple[Path, list]:
        if name not in self.read:
            self.read[name] = read_datasets([name], self.data_root)[name]
        return self.read[name]


def _max_shots(samples: list, setting: str, seen_class: str) -> int:
    """The most labelled anomalies a split can take (general: all but one anomaly stays in the
    test set; hard: the seen class's size; :mod:`osad_lib.data.protocols`)."""
    sizes = Counter(s.anomaly_class for s in samples if s.label == 1)
    bound = sizes[seen_class] if setting == "hard" and seen_class in sizes else sum(sizes.values()) - 1
    return max(bound, 1)


def _browser_defaults(name: str, samples: list) -> dict[str, Any]:
    """Default controls of the dataset browser: general setting, training part, shots
    min(10, smallest class), seen class = the paper's first hard-setting class (else the first)."""
    classes = anomaly_classes(samples)
    seen = next((c for c in subset_info(name).hard_seen_classes if c in classes), classes[0])
    smallest = min(Counter(s.anomaly_class for s in samples if s.label == 1).values())
    return {"setting": "general", "seen_class": seen, "n_shots": min(10, smallest), "part": "train", "per_class": 3}


def dataset_browser(data_root: str | os.PathLike | None = None, names: Sequence[str] | None = None,
                    seed: int = 0, image_size: int = 64) -> Any:
    """Browse what a protocol puts into training and test: dataset, setting (general / hard
    with a seen class), n-shot, seed and part → example images per class with masks and
    labels, and images per class (:func:`osad_lib.plots.split_overview`).

    ``names``: registry names to offer (default :func:`available_datasets`; the first is shown).
    Children: controls row (dataset, setting, seen class), row (shots, seed, part, images per
    class), Output.
    """
    import ipywidgets as w

    names = list(names or available_datasets(data_root))
    data = _Datasets(data_root)
    first = _browser_defaults(names[0], data(names[0])[1])
    dataset = w.Dropdown(options=names, value=names[0], description="dataset")
    setting = w.ToggleButtons(options=SETTINGS, value=first["setting"], description="setting",
                              style={**_STYLE, "button_width": "70px"})
    seen = w.Dropdown(options=[first["seen_class"]], value=first["seen_class"], description="seen class", style=_STYLE)
    shots = w.IntSlider(value=first["n_shots"], min=1, max=max(first["n_shots"], 1), description="n-shot", **_ON_RELEASE)
    seed_box = w.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="seed", layout={"width": "160px"})
    part = w.ToggleButtons(options=plots.SPLIT_PARTS, value=first["part"], description="part",
                           style={**_STYLE, "button_width": "60px"})
    per_class = w.IntSlider(value=first["per_class"], min=1, max=6, description="images/class", style=_STYLE, **_ON_RELEASE)

    def draw() -> list[dict]:
        folder, samples = data(dataset.value)
        return [_figure_output(plots.split_overview(
            dataset.value, folder, samples, setting.value, shots.value, seed_box.value, seen.value, part.value,
            per_class.value, image_size))]

    panel = _Panel(draw)

    def adjust(change: dict) -> None:
        samples = data(dataset.value)[1]
        with panel.hold():
            if change["owner"] is dataset:
                seen.options = anomaly_classes(samples)
                seen.value = _browser_defaults(dataset.value, samples)["seen_class"]
            seen.disabled = setting.value != "hard" or len(seen.options) < 2
            shots.max = _max_shots(samples, setting.value, seen.value)

    for control in (dataset, setting, seen):
        control.observe(adjust, names="value")
    adjust({"owner": dataset})
    panel.watch(dataset, setting, seen, shots, seed_box, part, per_class)
    panel.redraw()
    return _box([(dataset, setting, seen), (shots, seed_box, part, per_class)], panel)


def static_dataset_browser(data_root: str | os.PathLike | None = None, names: Sequence[str] | None = None,
                           seed: int = 0, image_size: int = 64) -> plt.Figure:
    """:func:`dataset_browser`'s figure at its default controls (first dataset of ``names``)."""
    name = list(names or available_datasets(data_root))[0]
    folder, samples = _Datasets(data_root)(name)
    d = _browser_defaults(name, samples)
    return plots.split_overview(name, folder, samples, d["setting"], d["n_shots"], seed, d["seen_class"], d["part"],
                                d["per_class"], image_size)


# --------------------------------------------------------------------------------------------
# pseudo anomalies

#: Playground controls per generator: parameter → (kind, min, max, step) or ("choice", options)
#: or ("bool",). Defaults are the generators' own keyword defaults (:func:`generator_defaults`).
PARAMETER_CONTROLS: dict[str, dict[str, tuple]] = {
    "cutpaste_same_image": {"area_range": ("range", 0.005, 0.5, 0.005), "aspect_ratio": ("float", 0.1, 1.0, 0.05),
                            "jitter": ("float", 0.0, 0.5, 0.05)},
    "cutmix_cross_image": {"area_range": ("range", 0.005, 0.5, 0.005), "aspect_ratio": ("float", 0.1, 1.0, 0.05),
                           "jitter": ("float", 0.0, 0.5, 0.05)},
    "cutpaste_scar": {"width_range": ("range", 1.0, 40.0, 1.0), "length_range": ("range", 4.0, 80.0, 1.0),
                      "max_rotation": ("float", 0.0, 90.0, 5.0)},
    "cutpaste_mix": {"area_range": ("range", 0.005, 0.5, 0.005), "width_range": ("range", 1.0, 40.0, 1.0)},
    "draem_perlin": {"beta_max": ("float", 0.0, 1.0, 0.05), "threshold": ("float", 0.0, 0.9, 0.05),
                     "max_scale_exp": ("int", 0, 6, 1), "augment": ("bool",)},
    "randaug_cutpaste": {"n_ops": ("int", 0, 9, 1), "op_set": ("choice", ("paper", "code")),
                         "random_location": ("bool",), "on_foreground": ("bool",)},
}


def generator_defaults(generator: str) -> dict[str, Any]:
    """Default values of the playground parameters of ``generator``: its keyword defaults
    (``cutpaste_mix`` forwards to ``cutpaste_same_image``/``cutpaste_scar``: theirs), and
    ``on_foreground=False`` (paste anywhere, as the BGAD paper; True: BGAD's code)."""
    spec = pseudo.GENERATORS[generator]
    defaults = {**pseudo.cutpaste_same_image.__kwdefaults__, **pseudo.cutpaste_scar.__kwdefaults__,
                **(spec.fn.__kwdefaults__ or {}), "on_foreground": False}
    return {name: defaults[name] for name in PARAMETER_CONTROLS[generator]}


def _parameter_control(name: str, spec: tuple, value: Any) -> Any:
    import ipywidgets as w

    kind = spec[0]
    if kind == "range":
        return w.FloatRangeSlider(value=tuple(value), min=spec[1], max=spec[2], step=spec[3], description=name, style=_STYLE,
                                  **_ON_RELEASE)
    if kind == "float":
        return w.FloatSlider(value=value, min=spec[1], max=spec[2], step=spec[3], description=name, style=_STYLE, **_ON_RELEASE)
    if kind == "int":
        return w.IntSlider(value=value, min=spec[1], max=spec[2], step=spec[3], description=name, style=_STYLE, **_ON_RELEASE)
    if kind == "choice":
        return w.Dropdown(options=spec[1], value=value, description=name, style=_STYLE)
    return w.Checkbox(value=value, description=name, style=_STYLE, indent=False)


def _playground_dataset(names: Sequence[str]) -> str:
    """An object dataset with masks if offered (BGAD's generator pastes real defects), else any
    with masks, else the first (as :func:`osad_lib.experiments.datasets.gallery_dataset`)."""
    with_masks = [n for n in names if subset_info(n).has_masks]
    objects = [n for n in with_masks if subset_info(n).kind == "object"]
    return (objects or with_masks or list(names))[0]


def _n_normals(samples: list) -> int:
    return sum(s.split == "train" and s.label == 0 for s in samples)


def pseudo_playground(data_root: str | os.PathLike | None = None, names: Sequence[str] | None = None,
                      seed: int = 0, image_size: int = 96) -> Any:
    """Try every pseudo-anomaly generator (:data:`osad_lib.data.pseudo.GENERATORS`) live:
    dataset, training image, generator, seed and the generator's main parameters (e.g.
    ``area_range`` of CutPaste, ``beta_max``/``threshold`` of DRAEM's Perlin anomalies) →
    original, pseudo anomaly and mask (:func:`osad_lib.plots.pseudo_anomaly_example`).

    Children: row (dataset, generator), row (seed, image), row of the generator's parameters
    (replaced when the generator changes), Output.
    """
    import ipywidgets as w

    names = list(names or available_datasets(data_root))
    data = _Datasets(data_root)
    start = _playground_dataset(names)
    dataset = w.Dropdown(options=names, value=start, description="dataset")
    generator = w.Dropdown(options=list(GENERATORS), value="cutpaste_same_image", description="generator", style=_STYLE)
    seed_slider = w.IntSlider(value=seed, min=0, max=max(99, seed), description="seed", **_ON_RELEASE)
    image = w.IntSlider(value=0, min=0, max=_n_normals(data(start)[1]) - 1, description="image", **_ON_RELEASE)
    parameters = w.HBox([], layout={"flex_flow": "row wrap"})

    def draw() -> list[dict]:
        folder, samples = data(dataset.value)
        values = {c.description: tuple(c.value) if isinstance(c.value, tuple) else c.value for c in parameters.children}
        return [_figure_output(plots.pseudo_anomaly_example(
            dataset.value, folder, samples, generator.value, seed_slider.value, image.value, image_size, **values))]

    panel = _Panel(draw)

    def use_generator(_: Any = None) -> None:
        specs, defaults = PARAMETER_CONTROLS[generator.value], generator_defaults(generator.value)
        parameters.children = [_parameter_control(n, specs[n], defaults[n]) for n in specs]
        panel.watch(*parameters.children)

    def use_dataset(_: Any) -> None:
        with panel.hold():
            image.max = _n_normals(data(dataset.value)[1]) - 1

    use_generator()
    generator.observe(use_generator, names="value")
    dataset.observe(use_dataset, names="value")
    panel.watch(dataset, generator, seed_slider, image)
    panel.redraw()
    return _box([(dataset, generator), (seed_slider, image), parameters], panel)


def static_pseudo_playground(data_root: str | os.PathLike | None = None, names: Sequence[str] | None = None,
                             seed: int = 0, image_size: int = 96) -> plt.Figure:
    """:func:`pseudo_playground`'s figure at its default controls (``cutpaste_same_image``,
    first training image)."""
    name = _playground_dataset(list(names or available_datasets(data_root)))
    folder, samples = _Datasets(data_root)(name)
    return plots.pseudo_anomaly_example(name, folder, samples, "cutpaste_same_image", seed, 0, image_size,
                                        **generator_defaults("cutpaste_same_image"))


# --------------------------------------------------------------------------------------------
# scores of a trained run


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
        panel = _Panel(lambda: [_figure_output(plots.score_figure(scores, title=title))])
        panel.redraw()
        return _box([], panel)
    frame = plots.check_score_frame(scores)
    column = w.Dropdown(options=plots.score_columns(frame), value="score", description="ROC of", style=_STYLE)
    bins = w.IntSlider(value=30, min=5, max=100, step=5, description="bins", **_ON_RELEASE)
    alpha = w.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="map opacity", style=_STYLE, **_ON_RELEASE)
    rows = plots.mapped_rows(frame) if maps is not None else []
    index = w.Dropdown(options=[(_row_label(frame, r), r) for r in rows], value=rows[0] if rows else None,
                       description="image", layout={"width": "600px"}, disabled=not rows)

    def draw() -> list[dict]:
        return [_figure_output(plots.score_figure(frame, column.value, bins.value, index.value, images, masks, maps,
                                                  alpha.value, title))]

    panel = _Panel(draw)
    panel.watch(column, bins, alpha, index)
    panel.redraw()
    return _box([(column, bins, alpha), (index,)], panel)


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
    unmeasured = w.Checkbox(value=False, description="table: also unmeasured paper rows", indent=False, style=_STYLE)

    def draw() -> list[dict]:
        if not papers:
            return [_text_output(_results_title("", "", profile) + f" (results under {output_dir or 'the checkout'})")]
        chosen = {k: c.value for k, c in filters.items()}
        comparison = plots.results_comparison(results, paper.value, table.value, **chosen)
        figure = _figure_output(viz.paper_vs_measured_bars(comparison, _results_title(paper.value, table.value, profile)))
        if unmeasured.value:
            comparison = plots.results_comparison(results, paper.value, table.value, **chosen, with_unmeasured=True)
        return [figure, _table_output(plots.comparison_view(comparison))]

    panel = _Panel(draw)

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
    return _box([(paper, table, unmeasured), tuple(filters.values())], panel)


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
    display(_png_bundle(fig), raw=True)
    plt.close(fig)
    return fig


__all__ = [
    "PARAMETER_CONTROLS", "available_datasets", "dataset_browser", "generator_defaults", "pseudo_playground",
    "results_explorer", "score_explorer", "show", "static_dataset_browser", "static_pseudo_playground",
    "static_results_explorer", "static_score_explorer",
]
