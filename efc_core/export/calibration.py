"""INT8 calibration data and the TensorRT entropy calibrator (TensorRT <= 10.x, DEPLOY.md).

``CalibrationSet`` turns an image folder (sorted, consecutive frames paired) or a synthetic video
into normalised network inputs; it is numpy only and unit-tested anywhere. The calibrator wraps it
for ``IInt8EntropyCalibrator2`` with pycuda device buffers and a calibration cache file, so a
rebuild (another workspace size, a new TensorRT tactic) skips the calibration pass.
"""

from __future__ import annotations

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


def read_calibration_cache(path: str | Path | None) -> bytes | None:
    """Bytes of an existing calibration cache, or None (TensorRT then calibrates)."""
    if path is None or not Path(path).is_file():
        return None
    data = Path(path).read_bytes()
    return data or None


def write_calibration_cache(path: str | Path | None, cache: Any) -> None:
    """Persist the calibration table TensorRT hands back (a buffer)."""
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(bytes(cache))


def make_entropy_calibrator(data: CalibrationSet, cache_path: str | Path | None) -> Any:
    """A ``tensorrt.IInt8EntropyCalibrator2`` feeding ``data`` through pycuda device buffers.

    Needs TensorRT <= 10.x and pycuda (the robot). Buffers are allocated once for the first batch
    shape; every batch of a ``CalibrationSet`` has the same shape.
    """
    import pycuda.autoprimaryctx  # noqa: F401  # primary context: safe with the runtime's contexts
    import pycuda.driver as cuda
    import tensorrt as trt

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._batches = data.batches()
            self._device: dict[str, Any] = {}

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            try:
                batch = next(self._batches)
            except StopIteration:
                return None  # tells TensorRT the calibration set is exhausted
            pointers = []
            for name in names:
                array = batch[name]
                if name not in self._device:
                    self._device[name] = cuda.mem_alloc(array.nbytes)
                cuda.memcpy_htod(self._device[name], array)
                pointers.append(int(self._device[name]))
            return pointers

        def read_calibration_cache(self) -> bytes | None:
            cache = read_calibration_cache(cache_path)
            if cache is not None:
                LOG.info("using INT8 calibration cache %s", cache_path)
            return cache

        def write_calibration_cache(self, cache: Any) -> None:
            write_calibration_cache(cache_path, cache)

    return EntropyCalibrator()
