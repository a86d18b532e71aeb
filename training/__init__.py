"""Training recipes for EFC: ``train.py``, ``evaluate.py``, ``ablation.py`` and ``configs/*.yaml``.

Kept outside the ``efc_core`` library (torchvision "references" style): these are entry points
with exact commands, not an API the robot needs.
"""
