"""The reproduction report of a run (notebook ``08_report``): every paper table, cell by cell.

Input: the tidy result rows of one profile (:func:`osad_lib.results.read_all`) and the papers'
tables (:mod:`osad_lib.paper`). Output: a per-cell comparison (:func:`cell_table`), a per-table
scorecard (:func:`summarize`, :func:`scorecard`) and ``runs/<profile>/REPORT.md`` /
``REPORT.html`` (:func:`write_report`) linking every table and figure of the run.

Definitions (also printed at the top of the report, :data:`DEFINITIONS`):

* **Cell**: one row of a paper table, i.e. one (dataset, subset, setting, n_shots, method,
  variant, metric). Result rows match a cell by these keys whatever their ``table`` label (DRA's
  Table 7 cells are Table 1 runs, AnoOnly's Tables 3/4 the AUCPR metrics of its Table 1 runs);
  rows of another paper match only the cells a table reprints from it (``paper.SHARED_CELLS``:
  BGAD Table 3's baselines are DRA Table 1's). Mean cells (``subset`` ``mean``, ``<category>/mean``, the
  ADBench group mean ``""`` of AnoOnly) are derived per seed by the one rule of
  :mod:`osad_lib.paper.means`, which every notebook's tables use too: the mean over the parts
  measured, marked ``mean over k/n subsets`` in ``deviations`` when some are missing (a substitute
  setting), seeds covering fewer parts than the best-covered one left out.
* **Version**: the row's ``mode`` column (``faithful`` or ``clean``: the method's own, DRA's and
  AHL's) and its ``report`` column (BGAD: ``last_epoch``; ``max_over_epochs`` for a metric named
  ``<metric>@max_over_epochs``). Neither is read from text: the keys drop the part of the variant
  label that names the row's mode (a rerun in the other mode is keyed ``dra1a;clean``) and the
  metric's suffix, and ``deviations`` holds no marker (rows written before the columns existed, or
  before the markers left ``deviations``, are migrated as the store reads them:
  :func:`osad_lib.results.file_rows.legacy_markers`, :func:`osad_lib.results.file_rows.without_marker_parts`).
  Two versions of a cell = rows equal in every key after removal.
* **Primary version** of a cell (the one that counts): the one closest to how the published
  number was produced — mode ``faithful`` before unmarked before ``clean``, then report
  ``max_over_epochs`` before unmarked before ``last_epoch``. Other versions are shown beside it.
* **Within tolerance**: ``|measured mean − paper mean| <= max(2·measured std, paper std,
  tolerance)`` (std over seeds with ddof=1, taken as 0 for one seed or a missing paper std;
  ``tolerance`` = :data:`TOLERANCE` = 0.02 on the [0, 1] scale).
* **Reproduced**: within tolerance *and* measured on the paper's settings (``settings_differ``
  false: same backbone as the paper and no remaining ``deviations``).
* **Outside seed spread**: :func:`osad_lib.paper.compare`'s ``within_spread`` is false
  (``|delta| > max(2·measured std, paper std)``, no absolute tolerance); only for cells with at
  least two seeds or a paper std.
* **Versions disagree**: the primary and another version of a cell differ by more than
  ``max(2·std of either, tolerance)``.
* **Table status**, from its measured primary cells: ``not run`` (none measured; the reason
  lists why, e.g. ``dataset not present: mvtecad (set the data_root parameter or run_all.py --data-root)``), ``measured on
  substitute settings`` (every measured cell has ``settings_differ``), else among the cells on
  paper settings ``reproduced`` (all reproduced), ``not reproduced`` (none) or ``partial``.
* **Why a cell was not measured** (first that applies; from the notebooks' grids,
  :func:`coverage`): ``not implemented`` (no notebook runs that paper yet), ``method not
  implemented`` / ``variant not implemented`` (no grid under the ``paper`` profile has it),
  ``not in any notebook's grid`` (its dataset/setting/shots), ``dataset not present`` (not
  embedded and not under the data root), ``not in the <profile> profile``, ``no results:
  notebook <nb> not run``, ``runs failed`` (a stored failed run), ``mean not computed`` (fewer
  than two parts measured), ``no result rows``.

Modules: :mod:`~osad_lib.report.rules` (the definitions above as code), :mod:`~osad_lib.report.planned`
(what the grids plan, why a cell is missing), :mod:`~osad_lib.report.cells` (rows → cells),
:mod:`~osad_lib.report.scoring` (per-table status and detail tables), :mod:`~osad_lib.report.figures`,
:mod:`~osad_lib.report.document` (REPORT.md / REPORT.html).
"""

from osad_lib.report.cells import canonical_rows, cell_table
from osad_lib.report.planned import Coverage, coverage, dataset_presence
from osad_lib.report.document import report_tables, write_report
from osad_lib.report.figures import delta_figure, status_figure
from osad_lib.report.rules import (
    DEFINITIONS, KEYS, PLAN_KEYS, STATUSES, TOLERANCE, version_label, version_markers,
)
from osad_lib.report.scoring import (
    cell_verdict, measured_cells, missing_cells, outside_spread, results_overview, scorecard, scorecard_display,
    substitute_settings, summarize, table_status, unmatched_rows, version_pairs,
)

__all__ = [
    "DEFINITIONS", "KEYS", "PLAN_KEYS", "STATUSES", "TOLERANCE", "Coverage", "canonical_rows", "cell_table",
    "cell_verdict", "coverage", "dataset_presence", "delta_figure", "measured_cells", "missing_cells",
    "outside_spread", "report_tables", "results_overview", "scorecard", "scorecard_display", "status_figure",
    "substitute_settings", "summarize", "table_status", "unmatched_rows", "version_label", "version_markers",
    "version_pairs", "write_report",
]
