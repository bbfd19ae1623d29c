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


#: The long free-text column of result tables that :func:`footnoted` moves under the table.
NOTE_SOURCE = "deviations"
#: The column of footnote numbers that replaces it.
NOTE_COLUMN = "deviation_note"


def footnoted(df: pd.DataFrame, column: str = NOTE_SOURCE,
              note_column: str = NOTE_COLUMN) -> tuple[pd.DataFrame, list[str]]:
    """``df`` with its long text ``column`` replaced, in place, by footnote numbers, and the notes.

    Notes are numbered from 1 in order of first appearance; identical strings share one number;
    an empty or missing string gets no number (``<NA>``). ``notes[k - 1]`` is the text of note
    ``k``. A frame without ``column`` comes back unchanged with no notes. The CSV keeps the full
    text: this is for what is displayed and written as Markdown/HTML.
    """
    if column not in df.columns:
        return df, []
    texts = ["" if pd.isna(v) else str(v).strip() for v in df[column]]
    numbers: dict[str, int] = {}
    for text in texts:
        if text and text not in numbers:
            numbers[text] = len(numbers) + 1
    marks = pd.array([numbers[t] if t else pd.NA for t in texts], dtype="Int64")
    out = df.copy()
    out.insert(out.columns.get_loc(column), note_column, marks)
    return out.drop(columns=column), list(numbers)


def notes_markdown(notes: list[str], title: str = "Deviations") -> str:
    """The footnotes of :func:`footnoted` as a numbered Markdown list (``""`` when none)."""
    if not notes:
        return ""
    return f"_{title} ({NOTE_COLUMN}):_\n\n" + "\n".join(f"{k}. {text}" for k, text in enumerate(notes, 1))


def markdown_table(df: pd.DataFrame, floatfmt: str = ".3f", missing: str = "") -> str:
    """``df`` as a Markdown table with its ``deviations`` as numbered footnotes under it
    (:func:`footnoted`); ``|`` in cells escaped; ``missing`` for empty cells."""
    shown, notes = footnoted(df)
    shown = shown.map(lambda v: v.replace("|", "\\|") if isinstance(v, str) else v)
    shown = shown.astype(object).where(shown.notna(), None)
    table = shown.to_markdown(index=False, floatfmt=floatfmt, missingval=missing)
    return table + (f"\n\n{notes_markdown(notes)}" if notes else "")


def show_table(df: pd.DataFrame) -> None:
    """Display ``df`` in a notebook with its ``deviations`` as a ``deviation_note`` number column
    and the numbered notes under it (:func:`footnoted`)."""
    from IPython.display import Markdown, display

    shown, notes = footnoted(df)
    display(shown)
    if notes:
        display(Markdown(notes_markdown(notes)))


def save_table(df: pd.DataFrame, name: str, folder: str | Path, floatfmt: str = ".3f") -> list[Path]:
    """Save a table as ``<folder>/<name>.csv`` (full text) and ``.md`` (:func:`markdown_table`:
    ``deviations`` as numbered footnotes) with atomic writes; return the paths."""
    folder = Path(folder)
    csv, md = folder / f"{name}.csv", folder / f"{name}.md"
    atomic_write_text(csv, df.to_csv(index=False))
    atomic_write_text(md, markdown_table(df, floatfmt) + "\n")
    return [csv, md]
