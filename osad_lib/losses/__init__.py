"""Losses, one module per family: ``deviation`` (DevNet/DRA/AHL and the focal/BCE criteria),
``bgad`` (maximum likelihood and boundary-guided semi-push-pull), ``ssad`` (AnoOnly heads)."""
