"""Data: synthetic layered video with exact ground truth, flow/label file formats (numpy tier),
and the torch training datasets (``video_dataset``, ``datasets``), which are imported explicitly.

Importing this package stays light on purpose: ``efc_core.data.synthetic`` and
``efc_core.data.formats`` must load on a robot without torch.
"""
