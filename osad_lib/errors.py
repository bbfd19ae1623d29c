"""The errors a run raises that the rest of the library reacts to (core layer: imports nothing
from osad_lib). Bad settings raise :class:`osad_lib.validate.ConfigError`."""

from __future__ import annotations


class NonFiniteLossError(FloatingPointError):
    """A training loss became NaN or infinite; the run is stopped and recorded as failed
    (:meth:`osad_lib.results.ResultsStore.run_experiment`)."""


class CudaOutOfMemoryError(RuntimeError):
    """CUDA ran out of memory; the one-line message names the batch size that failed and one to try.

    Unlike :class:`NonFiniteLossError` it is not recorded as a failed run: the same experiment
    can succeed with a smaller batch, so it stops the grid (everything stored so far is kept) and
    a rerun with ``resume`` continues from the experiment that ran out of memory.
    """


__all__ = ["CudaOutOfMemoryError", "NonFiniteLossError"]
