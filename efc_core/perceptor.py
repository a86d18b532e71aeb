"""The transport-free inference pipeline: image in, segmentation + flow + occlusion out.

``Perceptor.process(image, stamp_ns, frame_id)`` is the one call the ROS node, the bag tools and
the benchmarks make. It pairs frames (``pairing``), preprocesses (``preprocess``), runs the backend
and brings the outputs back to the input resolution (``postprocess``).

With a streaming backend (encoder + decoder graphs) each frame is encoded exactly once: its
features are kept as the next pair's ``prev``. Otherwise the preprocessed tensor is kept and the
single graph runs on ``(prev, cur)``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from efc_core.contract import FlowDirection
from efc_core.errors import InputError
from efc_core.pairing import FramePairer
from efc_core.postprocess import (
    flow_content,
    flow_output_size,
    flow_to_input,
    fuse_probabilities,
    labels_from_probabilities,
    labels_to_input,
    occlusion_content,
    occlusion_to_input,
    probabilities_to_input,
    softmax_content,
)
from efc_core.preprocess import RESIZE_MODES, ResizeGeometry, check_image, plan_geometry, preprocess
from efc_core.runtime.base import Backend, Features, ModelOutputs


@dataclass
class PerceptionResult:
    """Everything one frame produces, at the input image's resolution (METHOD.md §6).

    segmentation: (H, W) uint8 class ids. seg_probabilities: (H, W, K) float32 when requested.
    flow: (H, W, 2) float32 (dx, dy) in input pixels, on the grid given by ``flow_direction``
    (forward: previous frame's grid, prev -> cur; backward: current grid, cur -> prev); None
    when the frame had no valid predecessor (``pair_reset_reason`` says why, ``prev_stamp_ns``
    is None) or when the caller did not ask for it (``process(with_flow=False)``); smaller than
    the input with ``flow_scale < 1`` (vectors then in pixels of the flow grid).
    occlusion: (H, W) float32 probability on the flow's grid, or None like ``flow``.
    timings_ms: "preprocess", "inference" (encode + decode), "postprocess", "total".
    """

    stamp_ns: int
    frame_id: str
    prev_stamp_ns: int | None
    segmentation: np.ndarray
    seg_probabilities: np.ndarray | None = None
    flow: np.ndarray | None = None
    occlusion: np.ndarray | None = None
    pair_reset_reason: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    flow_direction: str = FlowDirection.FORWARD.value


@dataclass
class _KeptFrame:
    """What a processed frame leaves for the next pair."""

    features: Features | None = None        # streaming: encoder features
    tensor: np.ndarray | None = None        # single graph: the preprocessed (1, 3, h, w) input
    probabilities: np.ndarray | None = None  # temporal fusion: (h_content, w_content, K)


class Perceptor:
    """Runs a backend on a stream of frames.

    Args:
        backend: any ``efc_core.runtime.Backend``.
        input_size: model input (height, width) for dynamic models (multiples of the manifest's
            ``pad_multiple``); None = the manifest's fixed size, or the image padded up to the
            multiple for dynamic models.
        resize_mode: "letterbox" (keep aspect, pad) or "stretch".
        max_frame_gap_s: largest time between paired frames, seconds.
        temporal_fusion: weight ``a`` in [0, 1] of the flow-warped previous probabilities
            (0 = off). With a forward-flow export the backward flow is approximated by
            ``-forward`` sampled at the same pixel, and the forward occlusion stands in for the
            backward one (good for smooth motion; exact with a backward export).
        streaming: use encode/decode when the backend supports it.
        output_probabilities: also return (H, W, K) class probabilities.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        input_size: tuple[int, int] | None = None,
        resize_mode: str = "letterbox",
        max_frame_gap_s: float = 0.5,
        temporal_fusion: float = 0.0,
        streaming: bool = True,
        output_probabilities: bool = False,
    ) -> None:
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"unknown resize_mode {resize_mode!r}; expected one of {RESIZE_MODES}")
        if not isinstance(temporal_fusion, (int, float)) or not 0.0 <= temporal_fusion <= 1.0:
            raise ValueError(f"temporal_fusion must be in [0, 1], got {temporal_fusion!r}")
        self.backend = backend
        self.manifest = backend.manifest
        self.input_size = tuple(input_size) if input_size is not None else None
        self.resize_mode = resize_mode
        self.temporal_fusion = float(temporal_fusion)
        self.streaming = bool(streaming and backend.supports_streaming)
        self.output_probabilities = bool(output_probabilities)
        self._direction = self.manifest.direction
        self._input_dtype = self.manifest.dtype_of(self.manifest.input_names[1])
        self._pairer: FramePairer[_KeptFrame] = FramePairer(max_frame_gap_s)
        self._geometries: dict[tuple[int, int], ResizeGeometry] = {}
        if self.input_size is not None:
            plan_geometry(self.manifest, self.input_size, self.input_size, resize_mode)  # validate now

    def geometry_for(self, size: tuple[int, int]) -> ResizeGeometry:
        """The (cached) resize geometry for images of ``size`` (H, W)."""
        geometry = self._geometries.get(size)
        if geometry is None:
            geometry = plan_geometry(self.manifest, size, self.input_size, self.resize_mode)
            if len(self._geometries) > 16:  # a camera cycling through sizes must not grow this forever
                self._geometries.clear()
            self._geometries[size] = geometry
        return geometry

    def reset(self) -> None:
        """Forget the previous frame: the next one is processed without a partner."""
        self._pairer.reset()

    def _run_backend(self, tensor: np.ndarray, previous: _KeptFrame | None) -> tuple[ModelOutputs, _KeptFrame]:
        if self.streaming:
            features = self.backend.encode(tensor)
            prev_features = previous.features if previous is not None and previous.features is not None else features
            return self.backend.decode(prev_features, features), _KeptFrame(features=features)
        prev_tensor = previous.tensor if previous is not None and previous.tensor is not None else tensor
        return self.backend.infer(prev_tensor, tensor), _KeptFrame(tensor=tensor)

    def process(self, image: np.ndarray, stamp_ns: int, frame_id: str = "", *,
                image_format: str = "", with_flow: bool = True, with_occlusion: bool = True,
                flow_scale: float = 1.0) -> PerceptionResult:
        """Segment one frame and, when it pairs with the previous one, estimate flow and occlusion.

        Args:
            image: (H, W, 3) uint8 RGB.
            stamp_ns: the image's header stamp in nanoseconds (pairing uses it, never wall time).
            frame_id: the image's ``header.frame_id``.
            image_format: what the image was decoded from (e.g. the ROS encoding); frames of
                different formats never pair.
            with_flow, with_occlusion: bring flow / occlusion back to the input size; False leaves
                ``result.flow`` / ``result.occlusion`` None (the network still computes them; a
                consumer that nobody listens to skips the resize). ``prev_stamp_ns`` still says
                whether the frame was paired.
            flow_scale: size of ``result.flow`` relative to the input, in (0, 1]; vectors are in
                pixels of that smaller grid (see ``postprocess.flow_to_input``).

        Outputs are identified by (stamp, frame_id): a frame with the same stamp and frame_id as
        the previous processed one is refused (``InputError`` of kind ``duplicate_stamp``) rather
        than given a second, different segmentation under the same header.

        Raises:
            InputError: ``image`` is not (H, W, 3) uint8, ``stamp_ns`` is not an int, or the
            frame duplicates the previous one's stamp.
            BackendError: inference failed or produced NaN/Inf (the pair state is unchanged).
        """
        start = time.perf_counter()
        check_image(image)
        if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, (int, np.integer)):
            raise InputError(f"stamp_ns must be an int number of nanoseconds, got {stamp_ns!r}")
        size = (int(image.shape[0]), int(image.shape[1]))
        flow_output_size(size, flow_scale)  # a bad scale fails before inference, paired or not
        geometry = self.geometry_for(size)
        tensor = preprocess(image, geometry, self.manifest.mean, self.manifest.std, self._input_dtype)
        preprocessed = time.perf_counter()

        decision = self._pairer.decide(int(stamp_ns), frame_id, size, image_format)
        kept_before = self._pairer.previous
        if kept_before is not None and kept_before.stamp_ns == int(stamp_ns) and kept_before.frame_id == frame_id:
            raise InputError(f"frame {frame_id!r} at {int(stamp_ns)} ns has the same stamp as the previous "
                             f"processed frame; dropped (outputs are identified by their header)",
                             kind="duplicate_stamp")
        previous = decision.previous.payload if decision.previous is not None else None
        outputs, kept = self._run_backend(tensor, previous)
        inferred = time.perf_counter()

        probabilities_at_input = None
        if self.temporal_fusion > 0.0 or self.output_probabilities:
            probabilities = softmax_content(outputs.seg_logits, geometry)
            if self.temporal_fusion > 0.0 and previous is not None and previous.probabilities is not None:
                probabilities = self._fuse(probabilities, previous.probabilities, outputs, geometry)
            kept.probabilities = probabilities if self.temporal_fusion > 0.0 else None
            segmentation = labels_from_probabilities(probabilities, geometry)
            if self.output_probabilities:
                probabilities_at_input = probabilities_to_input(probabilities, geometry)
        else:
            segmentation = labels_to_input(outputs.seg_logits, geometry)
        flow = occlusion = None
        if decision.previous is not None:
            if with_flow:
                flow = flow_to_input(outputs.flow, geometry, flow_scale)
            if with_occlusion:
                occlusion = occlusion_to_input(outputs.occlusion, geometry)
        done = time.perf_counter()

        self._pairer.accept(int(stamp_ns), frame_id, size, kept, image_format)
        timings = {
            "preprocess": (preprocessed - start) * 1e3,
            "inference": (inferred - preprocessed) * 1e3,
            "postprocess": (done - inferred) * 1e3,
            "total": (done - start) * 1e3,
        }
        return PerceptionResult(
            stamp_ns=int(stamp_ns),
            frame_id=frame_id,
            prev_stamp_ns=decision.prev_stamp_ns,
            segmentation=segmentation,
            seg_probabilities=probabilities_at_input,
            flow=flow,
            occlusion=occlusion,
            pair_reset_reason=decision.reset_reason,
            timings_ms=timings,
            flow_direction=self._direction.value,
        )

    def _fuse(
        self, probabilities: np.ndarray, previous: np.ndarray, outputs: ModelOutputs, geometry: ResizeGeometry
    ) -> np.ndarray:
        """Blend the previous frame's probabilities, warped onto the current grid by the flow."""
        flow = flow_content(outputs.flow, geometry)
        if self._direction is FlowDirection.FORWARD:
            flow = -flow  # backward flow approximated at the same pixel (see the class docstring)
        occlusion = occlusion_content(outputs.occlusion, geometry)
        return fuse_probabilities(probabilities, previous, flow, occlusion, self.temporal_fusion)
