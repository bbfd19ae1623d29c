"""BGAD (Yao et al., CVPR 2023): ``model`` (settings, normalizing-flow detector, training) and
``loss`` (maximum likelihood, boundary-guided semi-push-pull). Equations → functions: ``README.md``."""
