"""Every filesystem location the project uses, in one place.

Nothing else in ``osad_lib`` builds a path from scratch: it asks this module, which resolves
an explicit argument first, then an environment variable, then a documented default.

=================  ======================  ===============================================
what               environment variable    default
=================  ======================  ===============================================
data root          ``OSAD_DATA``           none (image datasets other than the embedded
                                           ones need it)
cache              ``OSAD_CACHE``          ``~/.cache/osad-companion``
output root        ``OSAD_OUTPUT``         the project checkout (``runs/``, ``figures/``)
=================  ======================  ===============================================
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _from(explicit: str | os.PathLike | None, env: str) -> Path | None:
    value = str(explicit) if explicit not in (None, "") else os.environ.get(env, "")
    return Path(value).expanduser() if value else None


def data_root(explicit: str | os.PathLike | None = None) -> Path | None:
    """The user's data root (``--data-root`` / ``OSAD_DATA``), or None when not given."""
    return _from(explicit, "OSAD_DATA")


def cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Where converted embedded data, tensor caches and feature caches live."""
    path = _from(explicit, "OSAD_CACHE") or Path("~/.cache/osad-companion").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def output_root(explicit: str | os.PathLike | None = None) -> Path:
    """Parent of ``runs/`` and ``figures/`` (the checkout unless overridden)."""
    return _from(explicit, "OSAD_OUTPUT") or PROJECT_ROOT


def runs_dir(profile: str, output: str | os.PathLike | None = None) -> Path:
    """``<output>/runs/<profile>``: executed notebooks, results, checkpoints, report."""
    path = output_root(output) / "runs" / profile
    path.mkdir(parents=True, exist_ok=True)
    return path


def tables_dir(profile: str, output: str | os.PathLike | None = None) -> Path:
    """``<output>/runs/<profile>/tables``: CSV and Markdown tables."""
    path = runs_dir(profile, output) / "tables"
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_dir(profile: str, output: str | os.PathLike | None = None) -> Path:
    """``<output>/runs/<profile>/results``: one results file per notebook."""
    path = runs_dir(profile, output) / "results"
    path.mkdir(parents=True, exist_ok=True)
    return path


def checkpoints_dir(profile: str, output: str | os.PathLike | None = None) -> Path:
    """``<output>/runs/<profile>/checkpoints``: per-run training checkpoints."""
    path = runs_dir(profile, output) / "checkpoints"
    path.mkdir(parents=True, exist_ok=True)
    return path


def figures_dir(profile: str, output: str | os.PathLike | None = None) -> Path:
    """``<output>/figures/<profile>``: every figure as PNG and PDF."""
    path = output_root(output) / "figures" / profile
    path.mkdir(parents=True, exist_ok=True)
    return path
