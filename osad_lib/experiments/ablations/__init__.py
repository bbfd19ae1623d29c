"""Notebook ``06_ablations``: every ablation and sensitivity study of the five papers.

Each study is a :class:`~osad_lib.experiments.protocol.PaperElement` declared by the module of
its paper (``ablations/devnet.py``, ``dra.py``, ``bgad.py``, ``anoonly.py``, ``ahl.py``) from the
options the method modules already expose; :data:`STUDIES` collects them in paper order. The
notebook's ``studies`` parameter picks which run (keys such as ``devnet_table5``, or a paper
name for all of its studies); empty means the profile's selection,
``METHOD_OVERRIDES["ablations"][profile]["studies"]`` (every study when the profile names none).
"""

from __future__ import annotations

from osad_lib.experiments import GridItem
from osad_lib.experiments.ablations import ahl, anoonly, bgad, devnet, dra
from osad_lib.experiments.ablations.base import NOTEBOOK
from osad_lib.experiments.protocol import PaperElement, elements_by_key, overview, run_element
from osad_lib.profiles import NotebookConfig
from osad_lib.validate import ConfigError, choose

#: Every study, in paper order (DevNet, DRA, BGAD, AnoOnly, AHL), keyed by ``PaperElement.key``.
STUDIES: dict[str, PaperElement] = elements_by_key(*(s for module in (devnet, dra, bgad, anoonly, ahl)
                                                     for s in module.STUDIES))

__all__ = ["NOTEBOOK", "STUDIES", "grid", "overview", "run_element", "select"]


def select(cfg: NotebookConfig, studies: str = "") -> list[PaperElement]:
    """The studies named by ``studies`` (comma-separated study keys or paper names; empty: the
    profile's selection), in paper order. Unknown names raise a one-line :class:`ConfigError`
    with the closest match."""
    settings = cfg.profile.method("ablations")
    unknown = sorted(set(settings.parts) - set(STUDIES))
    if unknown:
        raise ConfigError(f"ablations settings: options of unknown stud(ies) {unknown}; 'options' holds settings per "
                          f"study key ({', '.join(STUDIES)})")
    names = [n.strip() for n in studies.split(",") if n.strip()] if studies else None
    if names is None:
        names = list(settings.grid.get("studies", ())) or list(STUDIES)
    papers = {s.paper for s in STUDIES.values()}
    wanted: set[str] = set()
    for name in names:
        if name in papers:
            wanted |= {k for k, s in STUDIES.items() if s.paper == name}
        else:
            wanted.add(choose("studies", name, [*STUDIES, *sorted(papers)]))
    return [s for k, s in STUDIES.items() if k in wanted]


def grid(cfg: NotebookConfig, studies: str = "") -> list[GridItem]:
    """The experiments of the selected studies (see :func:`select`), study by study."""
    return [item for study in select(cfg, studies) for item in study.grid(cfg)]
