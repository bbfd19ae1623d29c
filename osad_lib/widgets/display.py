"""The display set-up every notebook starts with (:func:`notebook_display`) and how a widget's
figure is rendered into its ``Output``."""

from __future__ import annotations

import base64
import contextlib
import io
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from osad_lib.profiles import NotebookConfig
from osad_lib.validate import ConfigError



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



def png_bundle(fig: plt.Figure) -> dict[str, str]:
    """``fig`` as a PNG mime bundle: shown whatever the matplotlib backend (the library forces
    Agg, under which ``display(fig)`` shows only text)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    return {"image/png": base64.b64encode(buffer.getvalue()).decode(),
            "text/plain": f"<Figure: {fig.get_suptitle() or 'figure'}>"}


def figure_output(fig: plt.Figure) -> dict:
    """``fig`` as a display_data output of an Output widget (the figure is closed)."""
    bundle = png_bundle(fig)
    plt.close(fig)
    return {"output_type": "display_data", "metadata": {}, "data": bundle}


def table_output(table: pd.DataFrame) -> dict:
    return {"output_type": "display_data", "metadata": {},
            "data": {"text/html": table.to_html(index=False, float_format="{:.3f}".format, na_rep="—"),
                     "text/plain": table.to_string(index=False)}}


def text_output(text: str) -> dict:
    return {"output_type": "stream", "name": "stdout", "text": text + "\n"}


class Panel:
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
            outputs = [text_output(str(exc))]
        self.output.outputs = tuple(outputs)


def widget_box(rows: Sequence[Any], panel: Panel) -> Any:
    """VBox of the rows (a tuple of controls becomes an HBox), then the panel's Output (the last child)."""
    import ipywidgets

    return ipywidgets.VBox([ipywidgets.HBox(list(row)) if isinstance(row, tuple) else row for row in rows] + [panel.output])


CONTROL_STYLE = {"description_width": "initial"}
#: Sliders report a value when released, not at every step of a drag: each value is a full
#: redraw (a figure, often a model pass), and a drag would queue dozens of them.
ON_RELEASE = {"continuous_update": False}
