"""Models: one module per method (devnet, dra, bgad, ssad, ahl); shared backbones and heads."""
