"""The baselines the papers compare against: ``baselines`` (Deep SVDD, Deep SAD, MINNS),
``dra_baselines`` (SAOE, MLEP), ``kdad`` and ``patchcore``. Equations → functions: ``README.md``."""
