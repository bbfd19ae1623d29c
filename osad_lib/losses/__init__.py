"""Losses several methods share: ``deviation`` (DevNet's deviation loss, used by DRA's and AHL's
heads too, and the focal/BCE criteria). A loss of one method lives in its package
(``osad_lib.methods.bgad.loss``, ``osad_lib.methods.anoonly.losses``)."""
