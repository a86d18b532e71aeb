"""The backend interface shared by ONNX Runtime, TensorRT and PyTorch (docs/DEPLOY.md, Runtime).

Every backend takes normalised (1, 3, H, W) float32 tensors (``efc_core.preprocess``) and returns
numpy ``ModelOutputs`` in the manifest's layout. Streaming backends also expose ``encode`` (once
per frame) and ``decode`` (per pair), so that a video costs one encoder pass per frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from efc_core.contract import OUTPUT_FLOW, OUTPUT_OCCLUSION, OUTPUT_SEG_LOGITS, padded_size
from efc_core.errors import BackendError, InputError
from efc_core.manifest import Manifest

Features = tuple[np.ndarray, ...]


@dataclass
class ModelOutputs:
    """Raw network outputs at model resolution (before ``postprocess``).

    seg_logits: (1, K, H, W) float32 class logits of the current frame.
    flow: (1, 2, H, W) float32 (dx, dy) in model pixels, direction per ``manifest.flow_direction``.
    occlusion: (1, 1, H, W) float32 probability in [0, 1], on the flow's grid.
    """

    seg_logits: np.ndarray
    flow: np.ndarray
    occlusion: np.ndarray


@runtime_checkable
class Backend(Protocol):
    """What the Perceptor needs from an inference engine."""

    manifest: Manifest
    name: str
    precision: str
    supports_streaming: bool

    def infer(self, prev: np.ndarray, cur: np.ndarray) -> ModelOutputs:
        """Run the pair ``(prev, cur)``: each (1, 3, H, W) float32, normalised."""
        ...

    def encode(self, image: np.ndarray) -> Features:
        """Encoder features of one (1, 3, H, W) image, in ``manifest.feature_names`` order."""
        ...

    def decode(self, prev_features: Features, cur_features: Features) -> ModelOutputs:
        """Decode a pair from cached encoder features."""
        ...

    def close(self) -> None:
        """Release sessions, engines and device memory (idempotent)."""
        ...


def check_image_tensor(tensor: np.ndarray, name: str, manifest: Manifest) -> None:
    """``InputError`` naming ``tensor`` unless it is (1, 3, H, W) with H, W accepted by the model."""
    if not isinstance(tensor, np.ndarray) or tensor.ndim != 4 or tensor.shape[:2] != (1, 3):
        shape = getattr(tensor, "shape", type(tensor).__name__)
        raise InputError(f"{name} must be a (1, 3, H, W) array, got {shape}")
    height, width = tensor.shape[2:]
    if not manifest.is_dynamic and (height, width) != (manifest.input_height, manifest.input_width):
        raise InputError(f"{name} is {height}x{width} but model {manifest.model_name!r} takes "
                         f"{manifest.input_height}x{manifest.input_width}")
    if manifest.is_dynamic and (height, width) != padded_size(height, width, manifest.pad_multiple):
        raise InputError(f"{name} is {height}x{width}; sides must be multiples of {manifest.pad_multiple}")


def check_finite(array: np.ndarray, output_name: str, backend_name: str) -> None:
    """``BackendError`` naming the output when it holds NaN or Inf.

    A float32 sum is non-finite exactly when some element is (or when values near 1e38 overflow,
    which is as broken), and costs one pass instead of ``isfinite`` + ``all``'s two.
    """
    if not np.isfinite(np.sum(array, dtype=np.float32)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise BackendError(f"{backend_name}: output {output_name!r} has {bad} non-finite value(s) "
                           f"(NaN/Inf) of {array.size}")


def outputs_from_named(
    arrays: Mapping[str, np.ndarray], manifest: Manifest, backend_name: str, size: Sequence[int] | None = None
) -> ModelOutputs:
    """Check named raw outputs (shape, finiteness) and pack them into ``ModelOutputs``.

    Args:
        arrays: output name -> array, names as in the contract (seg_logits, flow, occlusion).
        size: (H, W) of the input the outputs belong to; None takes the size of ``seg_logits``
            (streaming decoders, whose inputs are features) and checks the others against it.
    """
    if size is None:
        logits = np.asarray(arrays.get(OUTPUT_SEG_LOGITS, np.empty(0)))
        if logits.ndim != 4:
            raise BackendError(f"{backend_name}: output {OUTPUT_SEG_LOGITS!r} must be (1, K, H, W), got {logits.shape}")
        size = logits.shape[2:]
    height, width = int(size[0]), int(size[1])
    expected = {
        OUTPUT_SEG_LOGITS: (1, manifest.num_classes, height, width),
        OUTPUT_FLOW: (1, 2, height, width),
        OUTPUT_OCCLUSION: (1, 1, height, width),
    }
    packed = {}
    for name, shape in expected.items():
        if name not in arrays:
            raise BackendError(f"{backend_name}: the model returned no {name!r} output (got {sorted(arrays)})")
        array = np.asarray(arrays[name])
        if array.shape != shape:
            raise BackendError(f"{backend_name}: output {name!r} has shape {array.shape}, expected {shape}")
        if array.dtype != np.float32:
            array = array.astype(np.float32)
        check_finite(array, name, backend_name)
        packed[name] = array
    return ModelOutputs(packed[OUTPUT_SEG_LOGITS], packed[OUTPUT_FLOW], packed[OUTPUT_OCCLUSION])


def precision_from_dtypes(manifest: Manifest) -> str:
    """Return "fp16" when the manifest declares half-precision inputs, else "fp32"."""
    return "fp16" if "float16" in manifest.dtypes.values() else "fp32"
