"""osad_lib: the library behind osad-companion.

A thin, well-factored implementation of five open-set supervised anomaly detection papers
(DevNet, DRA, BGAD, AnoOnly, AHL): data protocols, models, losses, metrics, one training
loop and a results store. Notebooks in ``notebooks/`` only call into this package.
"""

__version__ = "0.1.0"
