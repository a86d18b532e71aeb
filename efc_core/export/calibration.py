"""INT8 calibration data and the TensorRT entropy calibrator (TensorRT <= 10.x, docs/DEPLOY.md).

``CalibrationSet`` turns an image folder (sorted, consecutive frames paired) or a synthetic video
into network inputs with the runtime's own preprocessing (``efc_core.preprocess``: letterbox,
the model's pad mode, the manifest's mean/std); it is numpy only and unit-tested anywhere. The calibrator wraps it
for ``IInt8EntropyCalibrator2`` with device buffers of the CUDA layer (``efc_core.runtime.cuda_layer``:
cuda-python or pycuda, on the device the build runs on) and a calibration cache file, so a rebuild
(another workspace size, a new TensorRT tactic) skips the calibration pass.

The cache is tied to what it was computed from: ``<cache>.json`` next to it records the ONNX graph's
SHA-256, the input shape and the TensorRT release. A cache whose record does not match (the model
was re-exported or retrained, another input size) is ignored with a warning and recalibrated,
instead of silently reusing scales of another network.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from efc_core.contract import IMAGENET_MEAN, IMAGENET_STD, INPUT_CUR, INPUT_IMAGE, INPUT_PREV, UNRECORDED_PAD_MODE
from efc_core.data.formats import IMAGE_SUFFIXES, list_images, read_rgb
from efc_core.errors import InputError
from efc_core.preprocess import ResizeGeometry, compute_geometry, content_geometry, preprocess, resize_to_content

LOG = logging.getLogger(__name__)


@dataclass
class CalibrationSet:
    """Frames to calibrate on, preprocessed exactly as the runtime preprocesses camera frames.

    frames: (h, w, 3) uint8 RGB already resized by ``efc_core.preprocess.resize_to_content`` (the
        runtime's resize); ``geometries`` places each in the (H, W) model input.
    input_names: ``("prev", "cur")`` for the single graph (consecutive frames), ``("image",)``
        for the encoder graph (every frame).
    mean, std, pad_mode: the model's (its manifest's) normalisation and padding.

    ``batches`` runs ``efc_core.preprocess.preprocess`` on them, so an INT8 engine is calibrated on
    the very tensors it will see (letterboxed, padded the model's way), not on stretched frames.
    """

    frames: list[np.ndarray]
    input_names: tuple[str, ...]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    pad_mode: str = UNRECORDED_PAD_MODE
    geometries: list[ResizeGeometry] = field(default_factory=list)

    def __post_init__(self) -> None:
        names = tuple(self.input_names)
        if names not in ((INPUT_PREV, INPUT_CUR), (INPUT_IMAGE,)):
            raise ValueError(f"calibration supports inputs ('prev', 'cur') or ('image',), got {names}")
        needed = 2 if names == (INPUT_PREV, INPUT_CUR) else 1
        if len(self.frames) < needed:
            raise InputError(f"calibration needs at least {needed} frames, got {len(self.frames)}")
        if not self.geometries:  # frames given at the model size: nothing to resize or pad
            self.geometries = [compute_geometry(f.shape[:2], f.shape[:2], "pad") for f in self.frames]
        if len(self.geometries) != len(self.frames):
            raise ValueError(f"{len(self.geometries)} geometries for {len(self.frames)} frames")

    def __len__(self) -> int:
        """Number of batches (of size 1)."""
        return len(self.frames) - 1 if len(self.input_names) == 2 else len(self.frames)

    def tensor(self, index: int) -> np.ndarray:
        """Frame ``index`` as the runtime's (1, 3, H, W) float32 network input."""
        return preprocess(self.frames[index], self.geometries[index], self.mean, self.std, pad_mode=self.pad_mode)

    def batches(self) -> Iterator[dict[str, np.ndarray]]:
        """Yield ``{input name: (1, 3, H, W) float32}`` for each batch, in order."""
        for index in range(len(self)):
            if len(self.input_names) == 2:
                yield {INPUT_PREV: self.tensor(index), INPUT_CUR: self.tensor(index + 1)}
            else:
                yield {INPUT_IMAGE: self.tensor(index)}

    def digest(self) -> str:
        """SHA-256 of the frames, their placement and the normalisation: other inputs, other engine."""
        import hashlib

        described = [list(self.input_names), list(self.mean), list(self.std), self.pad_mode,
                     [dataclasses.astuple(g) for g in self.geometries]]
        digest = hashlib.sha256(json.dumps(described).encode())
        for frame in self.frames:
            digest.update(np.ascontiguousarray(frame).tobytes())
        return digest.hexdigest()

    @classmethod
    def from_frames(
        cls, frames: Sequence[np.ndarray], size: tuple[int, int], input_names: Sequence[str],
        resize_mode: str = "letterbox", **norm: Any,
    ) -> "CalibrationSet":
        """Camera frames of any size, fitted into the model input ``size`` (H, W) with the runtime's
        ``compute_geometry(frame size, size, resize_mode)`` and resize.
        """
        geometries = [compute_geometry(frame.shape[:2], size, resize_mode) for frame in frames]
        contents = [resize_to_content(frame, geometry) for frame, geometry in zip(frames, geometries)]
        return cls(contents, tuple(input_names), geometries=[content_geometry(g) for g in geometries], **norm)

    @classmethod
    def from_image_folder(
        cls, folder: str | Path, size: tuple[int, int], input_names: Sequence[str], limit: int = 100,
        resize_mode: str = "letterbox", **norm: Any,
    ) -> "CalibrationSet":
        """Images of ``folder`` in sorted order (video frames), fitted into ``size`` (H, W) as the
        runtime fits camera frames (``resize_mode``, default letterbox like the node).
        """
        paths = list_images(folder)[:limit]
        if not paths:
            raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
        geometries, contents = [], []
        for path in paths:  # one frame at a time: only the resized contents are kept
            frame = read_rgb(path)
            geometries.append(compute_geometry(frame.shape[:2], size, resize_mode))
            contents.append(resize_to_content(frame, geometries[-1]))
        return cls(contents, tuple(input_names), geometries=[content_geometry(g) for g in geometries], **norm)

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


def calibration_identity(onnx_sha256: str, data: CalibrationSet, tensorrt_version: str) -> dict[str, Any]:
    """What a calibration cache depends on: the ONNX graph, the input names and shape, the release,
    and the calibration tensors themselves (``CalibrationSet.digest``: frames, placement, padding,
    normalisation), so a cache computed on other frames, or on stretched ones, is not reused.
    """
    first = next(data.batches())
    return {"onnx_sha256": onnx_sha256, "inputs": {name: list(array.shape) for name, array in first.items()},
            "tensorrt_version": ".".join(str(tensorrt_version).split(".")[:2]), "frames_sha256": data.digest()}


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
