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

A location that cannot be a folder (``OSAD_CACHE`` naming a file, a read-only output folder) is
a one-line :class:`~osad_lib.validate.ConfigError` naming the setting to change.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from osad_lib.validate import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: How each location is set, for messages.
CACHE_SETTING = "the cache folder (OSAD_CACHE)"
OUTPUT_SETTING = "the output folder (output_dir parameter, run_all.py --output-dir or OSAD_OUTPUT)"


def make_folder(path: Path, setting: str) -> Path:
    """``mkdir -p path``; a one-line ConfigError naming ``setting`` when it cannot be a folder."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        what = "is a file, not a folder" if isinstance(exc, FileExistsError) else f"cannot be created ({exc.strerror})"
        raise ConfigError(f"{setting}: {path} {what}; point it at a writable folder") from None
    return path


def require_writable(folder: Path, setting: str) -> Path:
    """Create ``folder`` and check that a file can be written in it (a real write: permission
    bits do not stop root, but a read-only mount does); one-line ConfigError otherwise."""
    make_folder(folder, setting)
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot write in {folder} ({exc.strerror}); point it at a writable folder") from None
    return folder


def current_umask() -> int:
    """The process umask (what newly created files and folders lose from their mode)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` atomically: ``write(handle)`` fills a temporary file in the same folder,
    which then replaces ``path``.

    The file gets the permissions of any newly created file (``0666`` less the umask, not
    ``mkstemp``'s ``0600``); on any failure (a full disk, an interrupt) the temporary file is
    removed and the original error propagates, ``path`` untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o666 & ~current_umask())
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda handle: handle.write(text.encode()))


def format_size(n_bytes: float) -> str:
    """``1536`` → ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n_bytes) < 1024 or unit == "GiB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    raise AssertionError("unreachable")


def require_free_space(folder: Path, needed: int, what: str) -> None:
    """Refuse (one line) to start writing ``needed`` bytes of ``what`` into ``folder`` when the
    disk has less free space (plus 64 MiB of headroom): better than dying half-way."""
    free = shutil.disk_usage(folder).free
    if free < needed + 64 * 2**20:
        raise ConfigError(f"{what} needs {format_size(needed)} in {folder} but only {format_size(free)} is free; "
                          "free some space or point OSAD_CACHE at a larger disk")


#: The environment variables that name folders.
PATH_VARIABLES = ("OSAD_DATA", "OSAD_CACHE", "OSAD_OUTPUT", "OSAD_ADBENCH")


def absolute(path: str) -> str:
    """``path`` made absolute against the current folder ("" stays ""). The runner's notebooks
    run with ``notebooks/`` as their folder, so a relative path given to ``run_all.py`` is made
    absolute before it reaches them."""
    return str(Path(path).expanduser().absolute()) if path else ""


def absolute_environment() -> None:
    """Make the folders named by :data:`PATH_VARIABLES` absolute in this process's environment,
    which the notebooks' kernels inherit (see :func:`absolute`)."""
    for name in PATH_VARIABLES:
        if os.environ.get(name):
            os.environ[name] = absolute(os.environ[name])


def _from(explicit: str | os.PathLike | None, env: str) -> Path | None:
    value = str(explicit) if explicit not in (None, "") else os.environ.get(env, "")
    return Path(value).expanduser() if value else None


def data_root(explicit: str | os.PathLike | None = None) -> Path | None:
    """The user's data root (``--data-root`` / ``OSAD_DATA``), or None when not given."""
    return _from(explicit, "OSAD_DATA")


def cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Where converted embedded data, tensor caches and feature caches live."""
    path = _from(explicit, "OSAD_CACHE") or Path("~/.cache/osad-companion").expanduser()
    return make_folder(path, CACHE_SETTING)


def output_root(explicit: str | os.PathLike | None = None) -> Path:
    """Parent of ``runs/`` and ``figures/`` (the checkout unless overridden)."""
    return _from(explicit, "OSAD_OUTPUT") or PROJECT_ROOT


def runs_dir(profile: str, output: str | os.PathLike | None = None) -> Path:
    """``<output>/runs/<profile>``: executed notebooks, results, checkpoints, report."""
    return make_folder(output_root(output) / "runs" / profile, OUTPUT_SETTING)


def tables_dir(profile: str, output: str | os.PathLike | None = None) -> Path:
    """``<output>/runs/<profile>/tables``: CSV and Markdown tables."""
    return make_folder(runs_dir(profile, output) / "tables", OUTPUT_SETTING)


def results_dir(profile: str, output: str | os.PathLike | None = None) -> Path:
    """``<output>/runs/<profile>/results``: one results file per notebook."""
    return make_folder(runs_dir(profile, output) / "results", OUTPUT_SETTING)


def checkpoints_dir(profile: str, output: str | os.PathLike | None = None) -> Path:
    """``<output>/runs/<profile>/checkpoints``: per-run training checkpoints."""
    return make_folder(runs_dir(profile, output) / "checkpoints", OUTPUT_SETTING)


def models_dir(profile: str, output: str | os.PathLike | None = None) -> Path:
    """``<output>/runs/<profile>/models``: trained models shared across notebooks
    (:mod:`osad_lib.experiments.model_store`)."""
    return make_folder(runs_dir(profile, output) / "models", OUTPUT_SETTING)


def figures_dir(profile: str, output: str | os.PathLike | None = None) -> Path:
    """``<output>/figures/<profile>``: every figure as PNG and PDF."""
    return make_folder(output_root(output) / "figures" / profile, OUTPUT_SETTING)
