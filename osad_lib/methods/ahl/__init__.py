"""AHL (Zhu et al., CVPR 2024): ``model`` holds HADG, the heads of the unified model, CDL with the
importance estimator, training and ensembles. Equations → functions: ``README.md``."""
