"""Export of trained EFC models: ONNX graphs with their manifest, TensorRT engines, INT8 calibration.

``export_onnx`` needs torch; ``build_engine`` needs tensorrt (on the target device). Both are
imported lazily so that ``precision_plan`` (pure Python) loads anywhere; the engine names, keys
and sidecars the runtime also reads live in the numpy tier (``efc_core.runtime.engine_plan``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["export_onnx", "build_engine"]


def __getattr__(name: str) -> Any:
    if name == "export_onnx":
        from efc_core.export.onnx_export import export_onnx

        return export_onnx
    if name == "build_engine":
        from efc_core.export.tensorrt_build import build_engine

        return build_engine
    raise AttributeError(f"module 'efc_core.export' has no attribute {name!r}")
