"""Building blocks several methods share: ImageNet backbones (``backbones``), scoring heads and
the image pyramid (``heads``), conditional normalizing flows (``flows``), frozen-stem features and
their dihedral views (``stems``), and AHL-style feature files per pseudo-anomaly generator
(``features``)."""
