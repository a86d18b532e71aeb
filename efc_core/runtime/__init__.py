"""Inference backends behind one interface; heavy libraries are imported only when used.

``create_backend("onnxruntime", "model.onnx")`` imports onnxruntime, ``"tensorrt"`` imports
tensorrt + cuda-python (or pycuda), ``"torch"`` imports torch. Importing this package imports none of them, so the
ROS node and the ONNX Runtime path run on a robot without PyTorch.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

from efc_core.errors import ModelError
from efc_core.runtime.base import Backend, Features, ModelOutputs

#: Backend kind -> "module:class", imported on first use.
BACKENDS: dict[str, str] = {
    "onnxruntime": "efc_core.runtime.onnxruntime_backend:OnnxRuntimeBackend",
    "tensorrt": "efc_core.runtime.tensorrt_backend:TensorRTBackend",
    "torch": "efc_core.runtime.torch_backend:TorchBackend",
}

__all__ = ["BACKENDS", "Backend", "Features", "ModelOutputs", "create_backend"]


def create_backend(kind: str, model_path: str | Path, **options: Any) -> Backend:
    """Create the inference backend ``kind`` for ``model_path``.

    Args:
        kind: "onnxruntime" (``.onnx`` or its manifest ``.json``), "tensorrt" (``.engine`` with its
            ``.engine.json`` sidecar) or "torch" (a training checkpoint).
        model_path: the model file.
        **options: passed to the backend class (e.g. ``intra_op_threads`` for ONNX Runtime).

    Raises:
        ValueError: unknown ``kind`` or an option ``kind`` does not have (the message lists the
            choices).
        ModelError: ``model_path`` does not exist, or the model / manifest is unusable.
        BackendError: the backend's library is missing or cannot run the model.
    """
    if kind not in BACKENDS:
        raise ValueError(f"unknown backend {kind!r}; expected one of: {', '.join(BACKENDS)}")
    path = Path(model_path).expanduser()
    if not path.exists():
        raise ModelError(f"model file {path} does not exist (backend {kind!r})")
    module_name, class_name = BACKENDS[kind].split(":")
    backend_class = getattr(importlib.import_module(module_name), class_name)
    accepted = [name for name, parameter in inspect.signature(backend_class).parameters.items()
                if parameter.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"backend {kind!r} has no option(s) {unknown}; its options: {', '.join(accepted)}")
    return backend_class(path, **options)
