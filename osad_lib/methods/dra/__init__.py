"""DRA (Ding, Pang, Shen, CVPR 2022): ``model`` holds its settings, the disentangled heads,
training and scoring. Equations → functions: ``README.md``."""
