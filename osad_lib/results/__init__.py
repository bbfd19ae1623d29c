"""The results store: every measured number is one tidy row in a CSV file per notebook and profile.

Rows are appended atomically (write a temporary file, then ``os.replace``) under an exclusive
file lock, so a process killed at any point leaves either the old file or the new one, never a
half-written one. An *experiment* (one training/evaluation run: dataset × setting × shots ×
seed × method × variant …) writes all of its rows in a single append, so it is either complete
in the store or absent; :meth:`ResultsStore.run_experiment` skips experiments whose rows exist,
which is what ``run_all.py --resume`` relies on.

Nothing read is trusted blindly: every row is checked (field count, experiment id, status,
value types, timestamp). A malformed row — a file cut inside its last row, a garbage line, a
wrong type — is moved to a side file ``<name>.csv.quarantine`` (with its line number and what
was wrong) together with the other rows of its experiment, with one line on stderr; the
experiment then counts as not done, so a rerun recomputes it. A file of an older schema (without
some of :data:`RECORDED_COLUMNS` or :data:`LATER_KEY_COLUMNS`) is migrated in place (``mode`` and
``report``, once written into ``deviations``, are read from there: :func:`legacy_markers`; a
cross-domain row that wrote its source into ``variant`` is set aside and recomputed:
:func:`retire_legacy_source`); any other column mismatch names the
missing and unexpected columns and offers ``python -m osad_lib.results migrate FILE``.

Modules: :mod:`~osad_lib.results.schema` (the columns, :class:`Experiment`, :func:`validate_rows`),
:mod:`~osad_lib.results.file_rows` (a file's rows checked as read, older layouts recognised),
:mod:`~osad_lib.results.store` (:class:`ResultsStore`: locking, healing, resume) and
``__main__`` (the ``migrate`` command).
"""

from osad_lib.paths import atomic_write_text
from osad_lib.results.schema import (
    COLUMNS, KEY_COLUMNS, LATER_KEY_COLUMNS, MAX_OVER_EPOCHS_SUFFIX, MODES, RECORDED_COLUMNS, Experiment,
    ResultsSchemaError, validate_rows, variant_params,
)
from osad_lib.results.store import ResultsStore, device_label, read_all, store_for

__all__ = [
    "COLUMNS", "KEY_COLUMNS", "LATER_KEY_COLUMNS", "MAX_OVER_EPOCHS_SUFFIX", "MODES", "RECORDED_COLUMNS", "Experiment",
    "ResultsSchemaError", "ResultsStore", "atomic_write_text", "device_label", "read_all", "store_for",
    "validate_rows", "variant_params",
]
