"""The paper elements notebook ``07_cross_domain`` reproduces (:mod:`osad_lib.experiments.protocol`):
AHL's Table 3 and DRA's Table 9 (App. C.3), both trained on one MVTec AD texture and tested on
another."""

from __future__ import annotations

from functools import partial

from osad_lib.experiments.cross_domain.config import TABLES
from osad_lib.experiments.cross_domain.grids import grid
from osad_lib.experiments.cross_domain.run import run_one
from osad_lib.experiments.cross_domain.tables import comparison
from osad_lib.experiments.protocol import PaperElement, elements_by_key, runs_of

ELEMENTS: dict[str, PaperElement] = elements_by_key(
    PaperElement("ahl", TABLES["ahl"], "Table 3", "cross-domain: DRA and AHL (DRA) across the MVTec AD textures",
                 "Trained on one texture and adapted to another, AHL (DRA) generalises better than DRA.",
                 runs_of(grid, TABLES["ahl"]), run_one, partial(comparison, table_id=f"ahl_{TABLES['ahl']}")),
    PaperElement("dra", TABLES["dra"], "Table 9", "cross-domain: DRA across the textures beside KDAD (App. C.3)",
                 "DRA trained on another texture and fine-tuned on the target's normals significantly outperforms KDAD "
                 "trained on the target itself.",
                 runs_of(grid, TABLES["dra"]), run_one, partial(comparison, table_id=f"dra_{TABLES['dra']}")),
)

__all__ = ["ELEMENTS"]
