"""Notebook ``04_anoonly``: AnoOnly's Tables 1, 3, 4 and Figs. 4 and 10 beside the paper.

The grid: for every ADBench file present (``osad_lib.data.tabular``; without data, every file
AnoOnly's groups list), each *data setting*, each seed, each head (Deep SAD, DevNet, FEAWAD,
PReNet) with and without AnoOnly. A data setting is one point of the generator's two axes
(:func:`osad_lib.data.tabular.adbench_split`): the **organisation** — ``clean`` (unlabelled
training anomalies dropped: the paper's Tables 1, 3, 4 and §4.3–4.5) or ``contaminated`` (kept
as label-0 rows: the label-noise experiment of §4.6 / Fig. 8) — and the **split** — ``paper``
(ADBench's resample-then-split) or ``no_leak`` (split first; beyond the paper). One experiment =
one file × data setting × seed × head × variant; it measures AUROC (Table 1), AUCPR w.r.t.
anomalies (Table 3), AUCPR w.r.t. normals as the code computes it (Table 4) and AP of the
normals ranked by the negated score (``aupr_normal_neg``, which the paper does not report).

Rows: ``paper="anoonly"``, ``table="table1"`` (the experiment's key; :func:`measured_rows`
files ``aupr`` under ``table3`` and ``aupr_normal`` under ``table4``), ``dataset`` = group
(``mvtecad``, ``cifar10``, …), ``subset`` = file stem, ``method`` = head, ``variant`` = ``""`` or
``"anoonly"``, ``setting`` = :data:`SETTINGS` of (organisation, split) — only
``semi_supervised`` (clean, paper split) joins the paper's tables —, ``backbone`` = the
embedding network; ``extra_key`` holds ``organisation``, ``split``, ``anomaly_only``, the data
and head options. Group means (``subset=""``) are built per seed by :func:`group_means` before
:func:`osad_lib.paper.compare`; a group computed from fewer files than ADBench ships is marked
partial.

Defaults are the paper's method (appendix B); every departure from it — an official-code
behaviour (:data:`osad_lib.methods.anoonly.config.CODE_BEHAVIOUR`), a shortened schedule, the no-leak split,
the contaminated organisation — is named in the row's ``deviations``
(``docs/official_code/anoonly.md`` explains what the code does). ``fidelity`` experiments
(``table="fidelity"``, :data:`FACTORS`) rerun the MVTec column with one such option changed at a
time: the "what changes the number" table.

Beyond the paper (``table="image_devnet"``, :data:`IMAGE_TABLE`): the image DevNet of notebook
``01_devnet`` (:func:`osad_lib.experiments.devnet.run_devnet`) with and without AnoOnly
(``DevNetConfig.anomaly_only``) on the open-set image splits (general and hard settings, the
DevNet notebook's shots and profile settings); rows ``method="devnet"``, ``variant`` ``""`` or
``"anoonly"``, compared per seed by :func:`image_pairs`.

The ablations notebook uses :func:`ablation_grid` (Table 2 BN variants, Figs. 5–9) and
:func:`run_one`; :func:`make_item` builds any single experiment.

Modules: :mod:`.elements` (the paper elements, :data:`ELEMENTS`),
:mod:`.config` (settings, data settings, fidelity factors, deviations from the paper),
:mod:`.grids` (the experiments), :mod:`.run` (one experiment), :mod:`.tables` (the paper's tables,
gains, verdict), :mod:`.figures` (Figs. 4 and 10); everything is re-exported here.
"""

from osad_lib.experiments.anoonly.config import (
    ABLATION_VALUES, FACTORS, IMAGE_SETTINGS, IMAGE_TABLE, NOTEBOOK, PAPER, SETTING_AXES, SETTING_LABELS, SETTINGS,
    SPLIT_TITLES, TABLE2_NORMS, TABLE_OF_METRIC, anoonly_config, AnoOnlyConfig, head_options, paper_deviations,
)
from osad_lib.experiments.anoonly.grids import (
    ablation_grid, factor_grid, grid, image_devnet_config, image_grid, make_item, run_seeds,
    selected_stems, settings_for, variant_label,
)
from osad_lib.experiments.anoonly.run import (
    limited_threads, load_split, required_file, run_image_one, run_one, ssad_config, ssad_metrics, train_experiment,
)
from osad_lib.experiments.anoonly.tables import (
    COMPARISON_COLUMNS, FIDELITY_BANDS, GAIN_COLUMNS, comparison, display_table, fidelity_bands, fidelity_table,
    gains, group_means, image_pairs, leakage_table, measured_rows, normal_precision_table, paired_gains, row_params,
    verdict,
)
from osad_lib.experiments.anoonly.figures import aupr_boxplot, score_tsne
from osad_lib.experiments.anoonly.elements import ELEMENTS, seeded_rows

__all__ = [
    "ELEMENTS", "seeded_rows", "ABLATION_VALUES", "AnoOnlyConfig", "COMPARISON_COLUMNS", "FACTORS", "FIDELITY_BANDS",
    "GAIN_COLUMNS",
    "IMAGE_SETTINGS", "IMAGE_TABLE", "NOTEBOOK", "PAPER", "SETTINGS", "SETTING_AXES", "SETTING_LABELS",
    "SPLIT_TITLES", "TABLE2_NORMS", "TABLE_OF_METRIC", "ablation_grid", "anoonly_config", "aupr_boxplot",
    "comparison", "display_table", "factor_grid", "fidelity_bands", "fidelity_table", "gains", "grid",
    "group_means", "head_options", "image_devnet_config", "image_grid", "image_pairs", "leakage_table",
    "limited_threads", "load_split", "make_item", "measured_rows", "normal_precision_table", "paired_gains",
    "paper_deviations", "required_file", "row_params", "run_image_one", "run_one", "run_seeds",
    "score_tsne",
    "selected_stems", "settings_for", "ssad_config", "ssad_metrics", "train_experiment", "variant_label", "verdict",
]
