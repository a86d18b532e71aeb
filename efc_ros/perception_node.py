"""The perception node: camera images in; segmentation, optical flow and occlusion out.

Topics (relative, so a namespace or remapping separates cameras):

* in: ``image`` (``sensor_msgs/Image``) or, with ``use_compressed``, ``<image>/compressed`` (image_transport
  naming: ``-r image:=/cam/image_raw`` listens on ``/cam/image_raw/compressed``); refused frames
  (non-intensity encoding, above ``max_image_pixels``, corrupt, repeated stamp) are counted per kind;
* out: ``segmentation`` mono8 class ids, ``segmentation/color`` rgb8, ``overlay`` rgb8,
  ``flow`` 32FC2 (dx, dy) pixels, ``flow/color`` rgb8, ``flow/prev_stamp``, ``occlusion`` mono8
  (0/255), ``occlusion/color`` rgb8, ``occlusion/probability`` 32FC1 (optional); ``/diagnostics``.
  Rendered by ``efc_core.edge.render`` (the same renderer ``efc bag process`` uses).

Every output carries the input image's header (stamp and frame_id). Flow and occlusion describe
the pair (previous frame, this frame); ``flow/prev_stamp`` is a ``sensor_msgs/TimeReference`` whose
``header`` equals the flow message's header and whose ``time_ref`` is the previous frame's stamp,
so a consumer can match it to ``flow`` by stamp (e.g. an exact-time synchroniser). Flow and
occlusion are only published for frames with a valid predecessor; segmentation for every frame.

Only outputs with a subscriber are computed and published (``OutputPublishers``). With
``flow_scale`` s < 1, ``flow`` and ``flow/color`` are round(s·H) x round(s·W) images and the flow
vectors are in pixels *of that image* (so ``p + flow(p)`` stays inside it): a consumer gets camera
pixels by multiplying dx by ``camera width / flow.width`` and dy by ``camera height / flow.height``.

The subscription callback only stores the message; a single worker thread decodes the newest one,
runs the ``Perceptor`` and publishes (latest-frame-wins, see ``inference_worker``).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, TimeReference
from std_msgs.msg import Header

from efc_core.edge import render
from efc_core.edge.image_decode import decode_image
from efc_core.edge.input_limits import error_kind
from efc_core.edge.stamps import stamp_to_ns
from efc_core.errors import BackendError, InputError, ModelError
from efc_core.perceptor import Perceptor, PerceptionResult
from efc_core.perceptor_config import PERCEPTOR_FIELDS, build_backend, build_perceptor
from efc_ros.diagnostics import NodeStatistics, diagnostic_array
from efc_ros.node_startup import create_or_exit_code
from efc_ros.image_conversions import rendered_to_msg
from efc_ros.inference_worker import LatestFrameWorker
from efc_ros.node_parameters import (
    PerceptionParameters,
    check_parameter_changes,
    declare_perception_parameters,
)
from efc_ros.model_paths import default_model_path
from efc_ros.dds_profile import use_large_image_profile

NODE_NAME = "efc_perception"
#: Perceptor settings the node reads while running, applied in place (a setter) instead of by a rebuild.
_APPLIED_IN_PLACE = ("temporal_fusion",)
#: The other runtime Perceptor settings: changing one at runtime rebuilds it (the pair restarts).
_PERCEPTOR_PARAMETERS = tuple(spec.ros_name for spec in PERCEPTOR_FIELDS
                              if spec.runtime and spec.ros_name not in _APPLIED_IN_PLACE)

BackendProvider = Callable[[PerceptionParameters], Any]


class NonFiniteOutputError(BackendError):
    """The network produced NaN or infinite values for a frame."""


#: Error class -> the kind counted in diagnostics and used as logger name (first match wins).
_ERROR_KINDS: tuple[tuple[type, str], ...] = (
    (NonFiniteOutputError, "non_finite_output"),
    (InputError, "input"),
    (ModelError, "model"),
    (BackendError, "backend"),
)


@dataclass(frozen=True)
class _ReceivedFrame:
    msg: Image | CompressedImage
    received: float  # time.perf_counter() in the callback


def load_backend(settings: PerceptionParameters) -> Any:
    """Create the backend named by ``settings.backend`` on ``settings.model_path`` (empty: the demo model).

    Raises:
        ModelError: the model file or its manifest is missing or inconsistent.
        BackendError: the backend library is missing or cannot run the model.
        ValueError: the model's precision is not the ``precision`` parameter.
    """
    config = settings.perceptor_config()
    return build_backend(config, config.model_path or str(default_model_path()))


class OutputPublishers:
    """The node's output topics (``efc_core.edge.render.OUTPUT_TOPICS``), rendered by ``render_outputs``.

    An output nobody subscribes to is neither computed nor serialised: ``rclpy`` converts and
    serialises a message on ``publish`` even without subscribers (0.7 ms for a 640x480 flow image
    here), and the flow resize, colour LUTs and overlay cost more; so each frame first asks
    ``demand`` which topics have subscribers (``rviz2``, ``ros2 bag record`` and ``efc bag replay``
    count as subscribers). ``flow/prev_stamp`` is tiny and published for every paired frame, so
    consumers can always tell which frames were paired.
    """

    def __init__(self, node: Node, manifest: Any, *, depth: int) -> None:
        """Create the publishers on ``node``: reliable, keep last ``depth`` (matches best-effort and reliable
        subscribers alike). ``occlusion/probability`` is always advertised so that configs can name it.
        """
        qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        self.palette = np.asarray(manifest.palette, dtype=np.uint8)  # (K, 3) RGB per class id
        self.publishers = {
            topic: node.create_publisher(TimeReference if topic == render.FLOW_PREV_STAMP else Image, topic, qos)
            for topic in render.OUTPUT_TOPICS
        }

    def destroy(self, node: Node) -> None:
        """Destroy every publisher on ``node``."""
        for publisher in self.publishers.values():
            node.destroy_publisher(publisher)

    def render_options(self, settings: PerceptionParameters) -> render.RenderOptions:
        """The parameters' render options for the topics with at least one subscriber now
        (``occlusion/probability`` also needs ``publish_occlusion_probability``).
        """
        demand = {topic for topic, publisher in self.publishers.items() if publisher.get_subscription_count() > 0}
        demand.add(render.FLOW_PREV_STAMP)
        if not settings.publish_occlusion_probability:
            demand.discard(render.OCCLUSION_PROBABILITY)
        return render.RenderOptions(
            palette=self.palette, demand=frozenset(demand), occlusion_threshold=settings.occlusion_threshold,
            flow_color_max=settings.flow_color_max, overlay_alpha=settings.overlay_alpha)

    def publish(self, result: PerceptionResult, rgb: np.ndarray, header: Header,
                options: render.RenderOptions) -> None:
        """Render and publish one frame's demanded outputs, all with ``header`` (the input's stamp and frame_id).

        Args:
            result: the Perceptor's output for the frame, computed for ``options``.
            rgb: (H, W, 3) uint8 input image (for the overlay).
            options: what ``render_options`` returned before the frame was processed.
        """
        for topic, (values, encoding) in render.render_outputs(result, rgb, options).items():
            self.publishers[topic].publish(rendered_to_msg(values, encoding, header))


class PerceptionCallbacks:
    """Frame handling shared by ``PerceptionNode`` and the lifecycle variant (mixed into an rclpy node).

    ``_load`` creates the model and the output publishers, ``_start_io`` the worker, the input
    subscription and the diagnostics timer; ``_stop_io`` and ``_unload`` undo them.
    """

    settings: PerceptionParameters

    def _load(self, backend_provider: BackendProvider | None) -> None:
        """Create the backend, the Perceptor and the publishers (ModelError/BackendError/ValueError)."""
        self._owns_backend = backend_provider is None
        self.backend = (backend_provider or load_backend)(self.settings)
        self._perceptor = self._build_perceptor(self.settings)  # checks input size against the model
        self._perceptor_settings = self.settings
        self.statistics = NodeStatistics()
        self._error_loggers: dict[tuple[str, float], Any] = {}
        self._outputs = OutputPublishers(self, self.backend.manifest, depth=self.settings.qos_depth)
        self._diagnostics_publisher = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

    def _start_io(self) -> None:
        """Start the worker, subscribe to the camera and start the diagnostics timer."""
        self._worker: LatestFrameWorker[_ReceivedFrame] = LatestFrameWorker(
            self._process_frame, self._on_frame_error, on_drop=lambda _: self.statistics.record_dropped()
        )
        reliability, depth = self.settings.qos_reliability, self.settings.qos_depth
        input_qos = self._input_qos(reliability, depth)
        if self.settings.use_compressed:
            self._subscription = self.create_subscription(
                CompressedImage, self._compressed_topic(), self._on_image, input_qos)
        else:
            self._subscription = self.create_subscription(Image, "image", self._on_image, input_qos)
        self._diagnostics_timer = self.create_timer(self.settings.diagnostics_period, self._publish_diagnostics)
        self.get_logger().info(
            f"{self.backend.name} ({self.backend.precision}) model {self.backend.manifest.model_name!r}; "
            f"subscribed to {self._subscription.topic_name} ({reliability}, depth {depth})"
        )

    def _stop_io(self) -> None:
        """Unsubscribe, stop the timer and join the worker (the frame in flight finishes first)."""
        if getattr(self, "_diagnostics_timer", None) is not None:
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = None
        if getattr(self, "_subscription", None) is not None:
            self.destroy_subscription(self._subscription)
            self._subscription = None
        if getattr(self, "_worker", None) is not None:
            self._worker.stop(timeout=10.0)
            self._worker = None

    def _unload(self) -> None:
        """Destroy the publishers and close the backend if this node created it."""
        if getattr(self, "_outputs", None) is not None:
            self._outputs.destroy(self)
            self.destroy_publisher(self._diagnostics_publisher)
            self._outputs = None
        if getattr(self, "backend", None) is not None and getattr(self, "_owns_backend", False):
            self.backend.close()
        self.backend = None

    def _compressed_topic(self) -> str:
        """image_transport's name: ``<base>/compressed`` of the (remapped) ``image`` topic.

        ``-r image:=/cam/image_raw`` gives ``/cam/image_raw/compressed``; an explicit remapping of
        ``image/compressed`` itself still wins.
        """
        direct = self.resolve_topic_name("image/compressed")
        if direct != self.resolve_topic_name("image/compressed", only_expand=True):
            return direct
        return self.resolve_topic_name("image") + "/compressed"

    @staticmethod
    def _input_qos(reliability: str, depth: int) -> QoSProfile:
        if reliability == "best_effort":
            profile = QoSProfile(depth=depth)
            profile.reliability = qos_profile_sensor_data.reliability
            profile.durability = qos_profile_sensor_data.durability
            profile.history = HistoryPolicy.KEEP_LAST
            return profile
        return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)

    def _build_perceptor(self, settings: PerceptionParameters) -> Perceptor:
        return build_perceptor(settings.perceptor_config(), self.backend)

    # ---- callbacks (executor thread): never block on inference ----

    def _on_image(self, msg: Image | CompressedImage) -> None:
        self.statistics.record_received(stamp_to_ns(msg.header.stamp), msg.header.frame_id)
        self._worker.submit(_ReceivedFrame(msg, time.perf_counter()))

    def _on_set_parameters(self, parameters: list[Any]) -> SetParametersResult:
        changes = {parameter.name: parameter.value for parameter in parameters}
        ours = {name: value for name, value in changes.items() if hasattr(self.settings, name)}
        reason = check_parameter_changes(self.settings, ours, self._writable_now())
        if reason is not None:
            self.get_logger().warning(f"rejected parameter change {changes}: {reason}")
            return SetParametersResult(successful=False, reason=reason)
        # Humble has no post-set callback: apply here; the worker picks the snapshot up per frame.
        self.settings = self.settings.replace(ours)
        return SetParametersResult(successful=True)

    def _writable_now(self) -> frozenset[str]:
        """Read-only parameters that may change at this moment (none in the plain node)."""
        return frozenset()

    def _publish_diagnostics(self) -> None:
        info = {
            "backend": self.backend.name,
            "precision": self.backend.precision,
            "model": self.backend.manifest.model_name,
            "model_path": self.settings.model_path or "(shipped demo model)",
            "input_topic": self._subscription.topic_name,
            "streaming": str(self._perceptor.streaming),
        }
        status = self.statistics.report(
            name=f"efc_ros: {self.get_fully_qualified_name()}",
            hardware_id=f"{self.backend.name}/{self.backend.precision}",
            info=info,
            period_s=self.settings.diagnostics_period,
        )
        self._diagnostics_publisher.publish(diagnostic_array([status], self.get_clock().now().to_msg()))

    # ---- worker thread ----

    def _process_frame(self, frame: _ReceivedFrame) -> None:
        settings = self.settings
        if any(getattr(settings, name) != getattr(self._perceptor_settings, name) for name in _PERCEPTOR_PARAMETERS):
            self._perceptor = self._build_perceptor(settings)
            self._perceptor_settings = settings
        self._perceptor.temporal_fusion = settings.temporal_fusion
        start = time.perf_counter()
        rgb, image_format = self._decode(frame.msg, settings)
        decoded = time.perf_counter()
        header = Header(stamp=frame.msg.header.stamp, frame_id=frame.msg.header.frame_id)
        options = self._outputs.render_options(settings)
        result = self._perceptor.process(rgb, stamp_to_ns(header.stamp), header.frame_id, image_format=image_format,
                                         with_flow=options.needs_flow, with_occlusion=options.needs_occlusion,
                                         flow_scale=settings.flow_scale)
        self._check_finite(result)
        before_publish = time.perf_counter()
        self._outputs.publish(result, rgb, header, options)
        done = time.perf_counter()
        timings = {stage: result.timings_ms.get(stage, float("nan"))
                   for stage in ("preprocess", "inference", "postprocess")}
        timings.update(queue=(start - frame.received) * 1e3, decode=(decoded - start) * 1e3,
                       publish=(done - before_publish) * 1e3, end_to_end=(done - frame.received) * 1e3)
        self.statistics.record_processed(timings, pair_reset=result.prev_stamp_ns is None)
        if result.pair_reset_reason not in (None, "first frame"):
            # Throttled: when inference takes longer than max_frame_gap, every processed frame resets
            # (latest-frame-wins pairs consecutive *processed* frames).
            self._logger_for("pairing").info(
                f"no flow for {header.frame_id!r} {stamp_to_ns(header.stamp)} ns: pair reset "
                f"({result.pair_reset_reason}); resets so far: {self.statistics.pair_resets}",
                throttle_duration_sec=max(settings.log_throttle_sec, 1e-3))

    def _decode(self, msg: Image | CompressedImage, settings: PerceptionParameters) -> tuple[np.ndarray, str]:
        """(H, W, 3) RGB and the format it came from; ``InputError`` (with a ``kind``) when refused.

        A compressed frame the decoder reports as corrupt is refused, or with
        ``corrupt_image_policy: publish`` counted, logged and processed.
        """
        decoded = decode_image(msg, max_pixels=settings.max_image_pixels,
                               allow_corrupt=settings.corrupt_image_policy == "publish")
        if decoded.warnings:
            problem = f"corrupt {len(msg.data)}-byte image: {'; '.join(decoded.warnings)}"
            count = self.statistics.record_warning("input_corrupt_image", problem)
            self._logger_for("input_corrupt_image").warning(
                f"frame {msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d} published although {problem} "
                f"[#{count}]", throttle_duration_sec=max(settings.log_throttle_sec, 1e-3))
        return decoded.rgb, decoded.image_format

    def _check_finite(self, result: PerceptionResult) -> None:
        for name in ("flow", "occlusion"):
            values = getattr(result, name)
            if values is not None and not np.isfinite(values).all():
                # The frame must not become the partner of the next one either.
                self._perceptor.reset()
                raise NonFiniteOutputError(f"{name} output has {int((~np.isfinite(values)).sum())} non-finite values")

    def _logger_for(self, kind: str) -> Any:
        """A child logger per message kind and throttle value.

        rclpy throttles per call site and logger and refuses a changed throttle at one call site,
        so one logger per (kind, throttle) keeps one kind of error from hiding another.
        """
        key = (kind, float(self.settings.log_throttle_sec))
        logger = self._error_loggers.get(key)
        if logger is None:
            logger = self._error_loggers[key] = self.get_logger().get_child(kind)
        return logger

    def _on_frame_error(self, frame: _ReceivedFrame, error: BaseException) -> None:
        if not self.context.ok():
            return  # shutting down: publishers are gone, nothing to report
        kind = next((name for error_type, name in _ERROR_KINDS if isinstance(error, error_type)), type(error).__name__)
        if kind == "input" and error_kind(error) != "input":
            kind = f"input_{error_kind(error)}"  # each kind of bad input counted on its own
        count = self.statistics.record_error(kind, str(error))
        stamp = frame.msg.header.stamp
        throttle = float(self.settings.log_throttle_sec)
        logger = self._logger_for(kind)
        message = (f"frame {stamp.sec}.{stamp.nanosec:09d} ({frame.msg.header.frame_id!r}) skipped "
                   f"[{kind} error #{count}]: {error}")
        if throttle > 0:
            logger.error(message, throttle_duration_sec=throttle)
        else:
            logger.error(message)


class PerceptionNode(PerceptionCallbacks, Node):
    """rclpy node around one ``efc_core.perceptor.Perceptor`` (see the module docstring for topics)."""

    def __init__(self, node_name: str = NODE_NAME, *, backend_provider: BackendProvider | None = None,
                 **node_kwargs: Any) -> None:
        """Declare parameters, load the model and start the worker.

        Args:
            node_name: ROS node name.
            backend_provider: returns the inference backend for the parameters; default creates
                one with ``efc_core.runtime.create_backend`` (``multi_camera`` passes a shared one).
            node_kwargs: passed to ``rclpy.node.Node`` (namespace, context, parameter_overrides...).

        Raises:
            ParameterError, ModelError, BackendError: the node cannot start (bad parameter, missing
            or mismatched model); nothing is left running.
        """
        super().__init__(node_name, **node_kwargs)
        try:
            self.settings = declare_perception_parameters(self)
            self._load(backend_provider)
        except Exception:
            self.destroy_node()
            raise
        self._start_io()
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def destroy_node(self) -> None:
        """Stop and join the worker, close the backend we created, then destroy the ROS node."""
        self._stop_io()
        self._unload()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Console script ``perception_node``: run the node until SIGINT; exit 1 when it cannot start."""
    use_large_image_profile()  # before the first DDS participant (README: large images over DDS)
    rclpy.init(args=args)
    try:
        node, exit_code = create_or_exit_code(PerceptionNode, NODE_NAME)
        if node is None:
            return exit_code
        try:
            rclpy.spin(node)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            node.destroy_node()
    finally:
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
