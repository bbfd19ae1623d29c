"""AnoOnly (Zhou et al.): ``heads`` (the tabular heads Deep SAD, DevNet, FEAWAD and PReNet, with and
without AnoOnly's anomaly-only loss and batch normalisation) and ``losses``. Equations → functions:
``README.md``."""
