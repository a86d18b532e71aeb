"""INT8 calibration data and the TensorRT entropy calibrator (TensorRT <= 10.x, DEPLOY.md).

``CalibrationSet`` turns an image folder (sorted, consecutive frames paired) or a synthetic video
into normalised network inputs; it is numpy only and unit-tested anywhere. The calibrator wraps it
for ``IInt8EntropyCalibrator2`` with device buffers of the CUDA layer (``efc_core.runtime.cuda_layer``:
cuda-python or pycuda, on the device the build runs on) and a calibration cache file, so a rebuild
(another workspace size, a new TensorRT tactic) skips the calibration pass.

The cache is tied to what it was computed from: ``<cache>.json`` next to it records the ONNX graph's
SHA-256, the input shape and the TensorRT release. A cache whose record does not match (the model
was re-exported or retrained, another input size) is ignored with a warning and recalibrated,
instead of silently reusing scales of another network.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2
import numpy as np

from efc_core.contract import IMAGENET_MEAN, IMAGENET_STD, INPUT_CUR, INPUT_IMAGE, INPUT_PREV
from efc_core.data.formats import IMAGE_SUFFIXES, list_images, read_rgb
from efc_core.errors import InputError

LOG = logging.getLogger(__name__)


@dataclass
class CalibrationSet:
    """Frames to calibrate on, resized to the engine's input size.

    frames: list of (H, W, 3) uint8 RGB at the input size (H, W).
    input_names: ``("prev", "cur")`` for the single graph (consecutive frames), ``("image",)``
        for the encoder graph (every frame).
    """

    frames: list[np.ndarray]
    input_names: tuple[str, ...]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        names = tuple(self.input_names)
        if names not in ((INPUT_PREV, INPUT_CUR), (INPUT_IMAGE,)):
            raise ValueError(f"calibration supports inputs ('prev', 'cur') or ('image',), got {names}")
        needed = 2 if names == (INPUT_PREV, INPUT_CUR) else 1
        if len(self.frames) < needed:
            raise InputError(f"calibration needs at least {needed} frames, got {len(self.frames)}")

    def __len__(self) -> int:
        """Number of batches (of size 1)."""
        return len(self.frames) - 1 if len(self.input_names) == 2 else len(self.frames)

    def normalise(self, frame: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (1, 3, H, W) float32, ``(x / 255 - mean) / std``."""
        scaled = frame.astype(np.float32) / 255.0
        scaled = (scaled - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(scaled.transpose(2, 0, 1)[None])

    def batches(self) -> Iterator[dict[str, np.ndarray]]:
        """Yield ``{input name: (1, 3, H, W) float32}`` for each batch, in order."""
        for index in range(len(self)):
            if len(self.input_names) == 2:
                yield {INPUT_PREV: self.normalise(self.frames[index]), INPUT_CUR: self.normalise(self.frames[index + 1])}
            else:
                yield {INPUT_IMAGE: self.normalise(self.frames[index])}

    def digest(self) -> str:
        """SHA-256 of the frames and normalisation: an engine calibrated on other frames differs."""
        import hashlib

        digest = hashlib.sha256(json.dumps([list(self.input_names), list(self.mean), list(self.std)]).encode())
        for frame in self.frames:
            digest.update(np.ascontiguousarray(frame).tobytes())
        return digest.hexdigest()

    @classmethod
    def from_image_folder(
        cls, folder: str | Path, size: tuple[int, int], input_names: Sequence[str], limit: int = 100, **norm: Any
    ) -> "CalibrationSet":
        """Images of ``folder`` in sorted order (video frames), resized (stretched) to ``size`` (H, W)."""
        paths = list_images(folder)[:limit]
        if not paths:
            raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
        frames = [_resize(read_rgb(path), size) for path in paths]
        return cls(frames, tuple(input_names), **norm)

    @classmethod
    def synthetic(
        cls, count: int, size: tuple[int, int], input_names: Sequence[str], seed: int = 0, **norm: Any
    ) -> "CalibrationSet":
        """``count`` frames of a synthetic layered video (efc_core.data.synthetic) at ``size``."""
        from efc_core.data.synthetic import SyntheticConfig, generate_sequence

        if count < 2:
            raise ValueError(f"synthetic calibration needs count >= 2, got {count}")
        height, width = size
        sequence = generate_sequence(SyntheticConfig(height=height, width=width, num_frames=count), seed=seed)
        return cls(list(sequence.frames), tuple(input_names), **norm)


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    shrinking = image.shape[0] > height or image.shape[1] > width
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def calibration_identity(onnx_sha256: str, data: CalibrationSet, tensorrt_version: str) -> dict[str, Any]:
    """What a calibration cache depends on: the ONNX graph, the input names and shape, the release."""
    first = next(data.batches())
    return {"onnx_sha256": onnx_sha256, "inputs": {name: list(array.shape) for name, array in first.items()},
            "tensorrt_version": ".".join(str(tensorrt_version).split(".")[:2])}


def _identity_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def read_calibration_cache(path: str | Path | None, identity: dict[str, Any] | None = None) -> bytes | None:
    """Bytes of an existing calibration cache, or None (TensorRT then calibrates).

    With ``identity`` (``calibration_identity``), a cache is used only when its ``<cache>.json``
    record matches; otherwise it is ignored with a warning naming the difference.
    """
    if path is None or not Path(path).is_file():
        return None
    path = Path(path)
    data = path.read_bytes()
    if not data:
        return None
    if identity is not None:
        try:
            recorded = json.loads(_identity_path(path).read_text())
        except (OSError, json.JSONDecodeError):
            recorded = None
        if recorded != identity:
            differences = ("no record of what it was computed from" if not isinstance(recorded, dict) else
                           ", ".join(f"{key} {recorded.get(key)!r} != {value!r}" for key, value in identity.items()
                                     if recorded.get(key) != value))
            LOG.warning("ignoring INT8 calibration cache %s (%s); recalibrating", path, differences)
            return None
    return data


def write_calibration_cache(path: str | Path | None, cache: Any, identity: dict[str, Any] | None = None) -> None:
    """Persist the calibration table TensorRT hands back (a buffer) and, with ``identity``, its record."""
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(cache))
    if identity is not None:
        _identity_path(path).write_text(json.dumps(identity, indent=2, sort_keys=True) + "\n")


def make_entropy_calibrator(trt: Any, cuda: Any, data: CalibrationSet, cache_path: str | Path | None,
                            identity: dict[str, Any] | None = None) -> Any:
    """A ``trt.IInt8EntropyCalibrator2`` feeding ``data`` through device buffers of ``cuda``.

    Args:
        trt: the imported ``tensorrt`` module (<= 10.x: 11 removed implicit calibration).
        cuda: an activated ``efc_core.runtime.cuda_layer.CudaLayer`` on the build's device; TensorRT
            calls ``get_batch`` on the thread that runs the build, which owns it.
        data: the calibration frames; cache_path / identity: see ``read_calibration_cache``.
    Raises:
        ModelError: this TensorRT has no entropy calibrator.
    """
    from efc_core.errors import ModelError

    base = getattr(trt, "IInt8EntropyCalibrator2", None)
    if base is None:
        raise ModelError(f"TensorRT {getattr(trt, '__version__', '?')} has no IInt8EntropyCalibrator2 (implicit "
                         "INT8 calibration was removed in 11): build fp32, or use TensorRT 10.x for INT8")

    class EntropyCalibrator(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self._batches = data.batches()
            self._device: dict[str, Any] = {}
            self._host: dict[str, np.ndarray] = {}
            self._stream = cuda.create_stream()

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            try:
                batch = next(self._batches)
            except StopIteration:
                return None  # tells TensorRT the calibration set is exhausted
            pointers = []
            for name in names:
                if name not in batch:
                    raise InputError(f"TensorRT asked for calibration input {name!r}; the set has {sorted(batch)}")
                array = batch[name]
                if name not in self._device:
                    self._host[name] = cuda.alloc_pinned(array.shape, array.dtype)
                    self._device[name] = cuda.alloc_device(array.nbytes)
                np.copyto(self._host[name], array)
                cuda.copy_to_device(self._device[name], self._host[name], self._stream)
                pointers.append(self._device[name].ptr)
            cuda.synchronize(self._stream)
            return pointers

        def read_calibration_cache(self) -> bytes | None:
            cache = read_calibration_cache(cache_path, identity)
            if cache is not None:
                LOG.info("using INT8 calibration cache %s", cache_path)
            return cache

        def write_calibration_cache(self, cache: Any) -> None:
            write_calibration_cache(cache_path, cache, identity)

        def release(self) -> None:
            """Free the device and pinned buffers (call on the build thread after the build)."""
            for buffer in self._device.values():
                cuda.free_device(buffer)
            for array in self._host.values():
                cuda.free_pinned(array)
            self._device.clear()
            self._host.clear()
            cuda.destroy_stream(self._stream)

    return EntropyCalibrator()
