"""Notebook ``08_report``: the reproduction report of a run. It trains nothing.

Everything it shows is computed by :mod:`osad_lib.report` from the result rows the other
notebooks stored under the same profile and output folder; :func:`grid` is empty so that
``run_all.py --plan`` lists no experiment for it.
"""

from __future__ import annotations

from osad_lib.experiments import GridItem
from osad_lib.profiles import NotebookConfig


def grid(cfg: NotebookConfig) -> list[GridItem]:
    """No experiments: the report only reads stored results."""
    return []
