"""The transport-free inference pipeline: image in, segmentation + flow + occlusion out.

``Perceptor.process(image, stamp_ns, frame_id)`` is the one call the ROS node, the bag tools and
the benchmarks make. Per frame it runs one straight line, each step a leaf call made once:
pair decision (``pairing``) -> ``preprocess`` (one resize straight into a preallocated
normalised NCHW buffer) -> backend -> ``postprocess`` (everything back to the input resolution)
-> optional flow refinement (``flow_refinement``).
Decoding before and rendering after belong to the caller.

With a streaming backend (encoder + decoder graphs) each frame is encoded exactly once: its
features are kept as the next pair's image1. Otherwise the preprocessed tensor is kept and the
single graph runs on ``(image1, image2)``; two input buffers alternate so the kept one is never
overwritten by the next frame.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from efc_core.contract import RESIZE_MODES, FlowDirection
from efc_core.errors import InputError
from efc_core.flow_refinement import (
    DEFAULT_REFINEMENT_ITERATIONS,
    DEFAULT_REFINEMENT_LEVELS,
    DEFAULT_REFINEMENT_PIXELS,
    FLOW_REFINEMENTS,
    VariationalFlowRefiner,
    WorkingImages,
)
from efc_core.pairing import FramePairer
from efc_core.postprocess import PostprocessRequest, flow_output_size, postprocess
from efc_core.preprocess import ResizeGeometry, check_image, new_input_tensor, plan_geometry, preprocess
from efc_core.runtime.base import Backend, Features, ModelOutputs

LOG = logging.getLogger(__name__)
#: Below this share of the model input covered by the image a letterboxed geometry is logged
#: with the alternatives (a 1242x375 frame letterboxed into 320x256 uses 38 %).
LOW_INPUT_SHARE = 0.75


@dataclass
class PerceptionResult:
    """Everything one frame produces, at the input image's resolution (docs/METHOD.md §6).

    segmentation: (H, W) uint8 class ids. seg_probabilities: (H, W, K) float32 when requested.
    flow: (H, W, 2) float32 (dx, dy) in input pixels, on the grid given by ``flow_direction``
    (forward: flow_fw, image1 = the previous frame -> image2 = this frame, on image1's grid;
    backward: flow_bw, image2 -> image1 on image2's grid); None
    when the frame had no valid predecessor (``pair_reset_reason`` says why, ``prev_stamp_ns``
    is None) or when the caller did not ask for it (``process(with_flow=False)``); smaller than
    the input with ``flow_scale < 1`` (vectors then in pixels of the flow grid).
    occlusion: (H, W) float32 probability on the flow's grid, or None like ``flow``.
    timings_ms: "preprocess", "inference" (encode + decode), "postprocess" (with the flow
    refinement when it is on), "total".
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
    grey: WorkingImages | None = None        # flow refinement: the grey working images


@dataclass
class _SizePlan:
    """Per camera size: the geometry and the input buffers it is preprocessed into."""

    geometry: ResizeGeometry
    buffers: list[np.ndarray] = field(default_factory=list)


class Perceptor:
    """Runs a backend on a stream of frames.

    Build it from settings with ``efc_core.perceptor_config.build_perceptor``.

    Args:
        backend: any ``efc_core.runtime.Backend``.
        input_size: model input (height, width) for dynamic models (multiples of the manifest's
            ``pad_multiple``); None = the manifest's fixed size, or for dynamic models the image
            padded up to the multiple (or fitted into ``max_input_pixels``).
        resize_mode: "letterbox" (keep aspect, pad) or "stretch".
        max_frame_gap_s: largest time between paired frames, seconds.
        temporal_fusion: weight ``a`` in [0, 1] of the flow-warped previous probabilities
            (0 = off). With a forward-flow export the backward flow is approximated by
            ``-forward`` sampled at the same pixel, and the forward occlusion stands in for the
            backward one (good for smooth motion; exact with a backward export).
        streaming: use encode/decode when the backend supports it.
        output_probabilities: also return (H, W, K) class probabilities.
        max_input_pixels: dynamic models without ``input_size``: a frame whose padded size has more
            pixels than this runs at the size of at most this many pixels that fits its aspect
            best (``preprocess.aspect_fit_size``); 0 = no limit.
        flow_refinement: "off" (the network's flow as it is) or "variational"
            (``efc_core.flow_refinement``: the flow refined on the two frames after the backend;
            occlusion stays the network's, temporal fusion uses the network's flow).
        refinement_iterations, refinement_max_pixels, refinement_levels: its fixed-point
            iterations per level, finest working size and pyramid levels.
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
        max_input_pixels: int = 0,
        flow_refinement: str = "off",
        refinement_iterations: int = DEFAULT_REFINEMENT_ITERATIONS,
        refinement_max_pixels: int = DEFAULT_REFINEMENT_PIXELS,
        refinement_levels: int = DEFAULT_REFINEMENT_LEVELS,
    ) -> None:
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"unknown resize_mode {resize_mode!r}; expected one of {RESIZE_MODES}")
        if not isinstance(temporal_fusion, (int, float)) or not 0.0 <= temporal_fusion <= 1.0:
            raise ValueError(f"temporal_fusion must be in [0, 1], got {temporal_fusion!r}")
        if isinstance(max_input_pixels, bool) or not isinstance(max_input_pixels, int) or max_input_pixels < 0:
            raise ValueError(f"max_input_pixels must be an int >= 0, got {max_input_pixels!r}")
        if flow_refinement not in FLOW_REFINEMENTS:
            raise ValueError(f"unknown flow_refinement {flow_refinement!r}; expected one of {FLOW_REFINEMENTS}")
        self.backend = backend
        self.manifest = backend.manifest
        self.input_size = tuple(input_size) if input_size is not None else None
        self.resize_mode = resize_mode
        self.temporal_fusion = float(temporal_fusion)
        self.streaming = bool(streaming and backend.supports_streaming)
        self.output_probabilities = bool(output_probabilities)
        self.max_input_pixels = max_input_pixels
        self.flow_refinement = flow_refinement
        self._refiner = (VariationalFlowRefiner(refinement_iterations, refinement_max_pixels, refinement_levels)
                         if flow_refinement == "variational" else None)
        self._direction = self.manifest.direction
        self._input_dtype = np.dtype(self.manifest.dtype_of(self.manifest.input_names[1]))
        self._pairer: FramePairer[_KeptFrame] = FramePairer(max_frame_gap_s)
        self._plans: dict[tuple[int, int], _SizePlan] = {}
        if self.input_size is not None:
            plan_geometry(self.manifest, self.input_size, self.input_size, resize_mode)  # validate now

    def geometry_for(self, size: tuple[int, int]) -> ResizeGeometry:
        """The (cached) resize geometry for images of ``size`` (H, W)."""
        return self._plan_for(size).geometry

    def _plan_for(self, size: tuple[int, int]) -> _SizePlan:
        plan = self._plans.get(size)
        if plan is None:
            geometry = plan_geometry(self.manifest, size, self.input_size, self.resize_mode, self.max_input_pixels)
            if geometry.input_share < LOW_INPUT_SHARE:
                LOG.warning(
                    "letterboxing %dx%d frames into the %dx%d model input uses %.0f%% of it; resize_mode=stretch "
                    "uses all of it (distorting the aspect), or run a dynamic export with an input size (or "
                    "max_input_pixels) that fits the frame's aspect", size[1], size[0], geometry.model_width,
                    geometry.model_height, 100.0 * geometry.input_share)
            if len(self._plans) > 16:  # a camera cycling through sizes must not grow this forever
                self._plans.clear()
            plan = self._plans[size] = _SizePlan(geometry)
        return plan

    def _input_buffer(self, plan: _SizePlan, previous: _KeptFrame | None) -> np.ndarray:
        """A preallocated input tensor that is not the partner's kept tensor."""
        for buffer in plan.buffers:
            if previous is None or buffer is not previous.tensor:
                return buffer
        plan.buffers.append(new_input_tensor(plan.geometry, self._input_dtype))
        return plan.buffers[-1]

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
        stamp_ns = int(stamp_ns)
        size = (int(image.shape[0]), int(image.shape[1]))
        flow_output_size(size, flow_scale)  # a bad scale fails before inference, paired or not
        kept_before = self._pairer.previous
        if kept_before is not None and kept_before.stamp_ns == stamp_ns and kept_before.frame_id == frame_id:
            raise InputError(f"frame {frame_id!r} at {stamp_ns} ns has the same stamp as the previous "
                             f"processed frame; dropped (outputs are identified by their header)",
                             kind="duplicate_stamp")
        decision = self._pairer.decide(stamp_ns, frame_id, size, image_format)
        previous = decision.previous.payload if decision.previous is not None else None
        plan = self._plan_for(size)
        manifest = self.manifest
        tensor = preprocess(image, plan.geometry, manifest.mean, manifest.std, self._input_dtype,
                            pad_mode=manifest.pad_mode, out=self._input_buffer(plan, previous))
        preprocessed = time.perf_counter()

        outputs, kept = self._run_backend(tensor, previous)
        inferred = time.perf_counter()

        request = PostprocessRequest(
            paired=previous is not None, with_flow=with_flow, with_occlusion=with_occlusion, flow_scale=flow_scale,
            output_probabilities=self.output_probabilities, fusion_weight=self.temporal_fusion,
            previous_probabilities=previous.probabilities if previous is not None else None,
            flow_is_forward=self._direction is FlowDirection.FORWARD)
        outputs_at_input = postprocess(outputs, plan.geometry, request)
        kept.probabilities = outputs_at_input.content_probabilities
        flow = outputs_at_input.flow
        if self._refiner is not None:
            kept.grey = self._refiner.prepare(image)   # this frame is the next pair's partner too
            if flow is not None and previous is not None and previous.grey is not None:
                # forward: previous frame -> this frame on the previous frame's grid; backward: the reverse.
                forward = self._direction is FlowDirection.FORWARD
                flow = self._refiner.refine(previous.grey if forward else kept.grey,
                                            kept.grey if forward else previous.grey, flow)
        done = time.perf_counter()

        self._pairer.accept(stamp_ns, frame_id, size, kept, image_format)
        timings = {
            "preprocess": (preprocessed - start) * 1e3,
            "inference": (inferred - preprocessed) * 1e3,
            "postprocess": (done - inferred) * 1e3,
            "total": (done - start) * 1e3,
        }
        return PerceptionResult(
            stamp_ns=stamp_ns,
            frame_id=frame_id,
            prev_stamp_ns=decision.prev_stamp_ns,
            segmentation=outputs_at_input.segmentation,
            seg_probabilities=outputs_at_input.probabilities,
            flow=flow,
            occlusion=outputs_at_input.occlusion,
            pair_reset_reason=decision.reset_reason,
            timings_ms=timings,
            flow_direction=self._direction.value,
        )
