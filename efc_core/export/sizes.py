"""The input size an export of a checkpoint runs at when none is given (pure Python, no torch).

``export_onnx`` uses it for its fixed size and the torch backend runs the checkpoint at the same
size by default, so a checkpoint and its default export see the same pixels and agree within the
export tolerance.
"""

from __future__ import annotations

from typing import Any

from efc_core.contract import padded_size

#: Fixed export size when the checkpoint does not say what it was trained at.
DEFAULT_SIZE: tuple[int, int] = (256, 320)
#: Size traced for dynamic exports when none is given: small, and H != W so axis mix-ups show.
DYNAMIC_TRACE_SIZE: tuple[int, int] = (128, 192)


def training_size(train_config: dict[str, Any]) -> tuple[int, int] | None:
    """(H, W) the checkpoint was trained at, rounded up to ``PAD_MULTIPLE``; None if unknown."""
    data = train_config.get("data") or {}
    if data.get("dataset", "synthetic") == "synthetic":
        source = data.get("synthetic") or {}
    else:
        source = data.get("options") or {}
    height, width = source.get("height"), source.get("width")
    if "crop_size" in source and isinstance(source["crop_size"], (list, tuple)):
        height, width = source["crop_size"]
    if not isinstance(height, int) or not isinstance(width, int):
        return None
    return padded_size(height, width)


def export_size(checkpoint: dict[str, Any], dynamic: bool = False) -> tuple[int, int]:
    """(H, W) an export of ``checkpoint`` runs at when no size is given: its training size rounded
    up to ``PAD_MULTIPLE``, else ``DEFAULT_SIZE`` (``DYNAMIC_TRACE_SIZE`` for dynamic exports).
    The torch backend runs a checkpoint at the same size, so the two agree by default.
    """
    return training_size(checkpoint.get("train_config") or {}) or (DYNAMIC_TRACE_SIZE if dynamic else DEFAULT_SIZE)
