"""DevNet (Pang et al., deviation networks for images): ``model`` holds its settings, network,
training and scoring. Equations → functions: ``README.md``."""
