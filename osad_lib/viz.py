"""Figures: one saving helper, one theme, one colour per method (conventions §2.7)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from osad_lib.paths import atomic_write, atomic_write_text  # noqa: E402

if TYPE_CHECKING:
    from osad_lib.profiles import NotebookConfig

METHOD_COLORS = {
    "devnet": "#1f77b4", "dra": "#d62728", "bgad": "#2ca02c", "bgad_fas": "#2ca02c",
    "anoonly": "#9467bd", "ahl_devnet": "#17becf", "ahl_dra": "#ff7f0e",
    "deepsad": "#8c564b", "deepsvdd": "#e377c2", "flos": "#7f7f7f", "minns": "#bcbd22",
    "feawad": "#aec7e8", "prenet": "#98df8a", "patchcore": "#c49c94", "saoe": "#f7b6d2",
    "mlep": "#dbdb8d",
}


def enable_inline_figures() -> None:
    """Let ``display(fig)`` show figures as PNG inside a kernel although the backend is Agg.

    Batch runs force the non-interactive Agg backend (conventions §2.7); without this, IPython
    would show a figure only as ``<Figure size …>`` text. A no-op outside IPython.
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


def profile_banner(cfg: NotebookConfig) -> None:
    """Display one line at the top of a notebook's results when its profile's numbers are
    meaningless (``smoke``: random-weight backbones, tiny synthetic data, a few steps); nothing
    otherwise."""
    from IPython.display import Markdown, display

    profile = cfg.profile
    if profile.builtin in MEANINGLESS_PROFILES:
        display(Markdown(f"⚠️ **{profile.name} profile: every number below is meaningless** ({profile.description}); "
                         "it only checks that each cell runs. The demo profile (embedded real data) and the paper "
                         "profile (your datasets) give results."))


def set_theme() -> None:
    """The project's plotting theme (seaborn ``paper`` context, embedded PDF fonts)."""
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid")
    plt.rcParams.update({"pdf.fonttype": 42, "ps.fonttype": 42, "figure.dpi": 100, "savefig.dpi": 200})


def savefig(fig: plt.Figure, name: str, folder: str | Path) -> list[Path]:
    """Save ``fig`` as ``<folder>/<name>.png`` and ``.pdf`` (byte-stable metadata); return the paths.

    ``name`` is the paper element the figure regenerates (``devnet_fig4_localization``).
    """
    folder = Path(folder)
    out = [folder / f"{name}.png", folder / f"{name}.pdf"]
    atomic_write(out[0], lambda handle: fig.savefig(handle, format="png", bbox_inches="tight",
                                                    metadata={"Software": None}))
    atomic_write(out[1], lambda handle: fig.savefig(handle, format="pdf", bbox_inches="tight",
                                                    metadata={"Creator": None, "Producer": None, "CreationDate": None}))
    return out


def save_table(df: pd.DataFrame, name: str, folder: str | Path, floatfmt: str = ".3f") -> list[Path]:
    """Save a table as ``<folder>/<name>.csv`` and ``.md`` (atomic writes); return the paths."""
    folder = Path(folder)
    csv, md = folder / f"{name}.csv", folder / f"{name}.md"
    atomic_write_text(csv, df.to_csv(index=False))
    atomic_write_text(md, df.to_markdown(index=False, floatfmt=floatfmt) + "\n")
    return [csv, md]
