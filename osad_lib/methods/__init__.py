"""One package per method, each with a README that maps its paper's equations to functions:
``devnet``, ``dra``, ``bgad``, ``anoonly``, ``ahl``, and ``baselines`` (Deep SVDD, Deep SAD,
MINNS, SAOE, MLEP, KDAD, PatchCore). A method imports components, losses and data, never another
method's experiments; AHL builds on the DevNet and DRA models it generalises."""
