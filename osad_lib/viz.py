"""Output helpers every layer that draws or writes tables uses: one theme, one colour per method,
saving figures and tables (CSV + Markdown with numbered deviation footnotes), and the chart of
paper-versus-measured bars. Imports nothing above the core (paths)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from osad_lib.paths import atomic_write, atomic_write_text  # noqa: E402

if TYPE_CHECKING:
    import torch

METHOD_COLORS = {
    "devnet": "#1f77b4", "dra": "#d62728", "bgad": "#2ca02c", "bgad_fas": "#2ca02c",
    "anoonly": "#9467bd", "ahl_devnet": "#17becf", "ahl_dra": "#ff7f0e",
    "deepsad": "#8c564b", "deepsvdd": "#e377c2", "flos": "#7f7f7f", "minns": "#bcbd22",
    "feawad": "#aec7e8", "prenet": "#98df8a", "patchcore": "#c49c94", "saoe": "#f7b6d2",
    "mlep": "#dbdb8d",
}


def set_theme() -> None:
    """The project's plotting theme (seaborn ``paper`` context, embedded PDF fonts)."""
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid")
    plt.rcParams.update({"pdf.fonttype": 42, "ps.fonttype": 42, "figure.dpi": 100, "savefig.dpi": 200})


def shows_images(fig: plt.Figure) -> bool:
    """Whether ``fig`` draws pixel images (``imshow``: example images, masks, anomaly maps)."""
    return any(ax.images for ax in fig.axes)


def savefig(fig: plt.Figure, name: str, folder: str | Path) -> list[Path]:
    """Save ``fig`` as ``<folder>/<name>.png`` and, for charts, ``.pdf`` (byte-stable metadata);
    return the paths written.

    A figure that shows images (:func:`shows_images`) gets no PDF: it would embed the same pixels
    at several times the PNG's size (≈ 1 MB for a grid of example images) and saving time.
    ``name`` is the paper element the figure regenerates (``devnet_fig4_localization``).
    """
    folder = Path(folder)
    out = [folder / f"{name}.png"]
    atomic_write(out[0], lambda handle: fig.savefig(handle, format="png", bbox_inches="tight",
                                                    metadata={"Software": None}))
    if not shows_images(fig):
        out.append(folder / f"{name}.pdf")
        atomic_write(out[1], lambda handle: fig.savefig(
            handle, format="pdf", bbox_inches="tight", metadata={"Creator": None, "Producer": None, "CreationDate": None}))
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


def show_image(ax: plt.Axes, image: torch.Tensor, mask: torch.Tensor | None) -> None:
    """``image`` (C×H×W in [0, 1]) on ``ax`` without ticks, the ground-truth ``mask`` outlined in red."""
    ax.imshow(image.permute(1, 2, 0).numpy())
    if mask is not None and mask.any():
        ax.contour(mask[0].numpy(), levels=[0.5], colors="red", linewidths=0.8)
    ax.set_xticks([])
    ax.set_yticks([])


def _row_label(row: pd.Series) -> str:
    parts = [row["dataset"] + (f"/{row['subset']}" if row["subset"] else ""), row["setting"],
             f"{row['n_shots']}-shot" if pd.notna(row["n_shots"]) else "", row["method"], row["variant"], row["metric"]]
    return " ".join(str(p) for p in parts if p) + ("" if pd.notna(row["paper_mean"]) else " (no paper row)")


def paper_vs_measured_bars(comparison: pd.DataFrame, title: str, max_rows: int = 40) -> plt.Figure:
    """Measured mean ± std over seeds beside the paper's mean ± std, one pair of bars per
    measured row of a :func:`results_comparison` frame (the first ``max_rows``)."""
    if comparison.empty:
        comparison = pd.DataFrame(columns=["n_seeds", "measured_mean", "measured_std", "paper_mean", "paper_std"])
    measured = comparison[comparison["n_seeds"] > 0].head(max_rows)
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.28 * max(len(measured), 3)), layout="constrained")
    y = np.arange(len(measured))
    ax.barh(y - 0.2, measured["measured_mean"], 0.4, xerr=measured["measured_std"].fillna(0), color="#1f77b4",
            label="measured (mean ± std over seeds)", error_kw={"linewidth": 0.8})
    ax.barh(y + 0.2, measured["paper_mean"], 0.4, xerr=measured["paper_std"].fillna(0), color="#bbbbbb",
            label="paper (reference)", error_kw={"linewidth": 0.8})
    ax.set_yticks(y, [_row_label(r) for _, r in measured.iterrows()], fontsize=6)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("metric value")
    if measured.empty:
        ax.text(0.5, 0.5, "no measured rows for this selection", ha="center", va="center", transform=ax.transAxes)
    ax.legend(fontsize=7, ncol=2, loc="lower left", bbox_to_anchor=(0.0, 1.0), frameon=False)
    cut = f" (first {max_rows} of {int((comparison['n_seeds'] > 0).sum())})" if len(measured) == max_rows else ""
    fig.suptitle(title + cut, fontsize=9)
    return fig
