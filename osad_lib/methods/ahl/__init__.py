"""AHL (Zhu et al., CVPR 2024), one module per part of the method: ``config`` (``AHLConfig`` and the
constants of its options), ``hadg`` (HADG's heterogeneous tasks and the training pool they index),
``heads`` (the unified model g's scoring heads on frozen features and their scorer), ``cdl`` (CDL:
inner adaptation, the meta-gradient, the importance estimator ψ and its weights, the trainer of
Alg. 1) and ``ensembles`` (the Table 5 ensembles and ``train_ahl``, the entry point). Imports run
config ← hadg, heads ← cdl ← ensembles. Equations → functions: ``README.md``."""
