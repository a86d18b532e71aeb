"""The perception node's parameters: one table of specs, descriptors, validation and a typed snapshot.

Every parameter is declared with a ``ParameterDescriptor`` (description, range, read-only where a
change would need a new model or new subscriptions). rclpy itself enforces types, ranges and
read-only; the choices of string parameters and the cross-parameter rules are checked here, both at
start-up and in the node's ``add_on_set_parameters_callback`` (docs/ROS_NODE.md §9).
``config/perception.yaml`` lists the same names with the same defaults (a test checks it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

BACKENDS: tuple[str, ...] = ("onnxruntime", "tensorrt", "torch")
RESIZE_MODES: tuple[str, ...] = ("letterbox", "stretch")
QOS_RELIABILITIES: tuple[str, ...] = ("best_effort", "reliable")
CORRUPT_IMAGE_POLICIES: tuple[str, ...] = ("skip", "publish")
#: Read-only in the plain node, but settable while the lifecycle node is unconfigured (a failed
#: configure is fixed by setting them and configuring again).
UNCONFIGURED_PARAMETERS: frozenset[str] = frozenset({"backend", "model_path"})


class ParameterError(ValueError):
    """A parameter value the node cannot start with (message names the parameter and the value)."""


@dataclass(frozen=True)
class ParameterSpec:
    """One declared parameter: default (its type is the parameter's type), description and limits."""

    name: str
    default: Any
    description: str
    read_only: bool = False
    int_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None

    def descriptor(self) -> ParameterDescriptor:
        """The ``rcl_interfaces/ParameterDescriptor`` to declare this parameter with."""
        descriptor = ParameterDescriptor(name=self.name, description=self.description, read_only=self.read_only)
        descriptor.type = {
            bool: ParameterType.PARAMETER_BOOL,
            int: ParameterType.PARAMETER_INTEGER,
            float: ParameterType.PARAMETER_DOUBLE,
            str: ParameterType.PARAMETER_STRING,
        }[type(self.default)]
        if self.int_range is not None:
            descriptor.integer_range = [IntegerRange(from_value=self.int_range[0], to_value=self.int_range[1], step=1)]
        if self.float_range is not None:
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=self.float_range[0], to_value=self.float_range[1], step=0.0)
            ]
        if self.choices is not None:
            descriptor.additional_constraints = "one of: " + ", ".join(self.choices)
        return descriptor

    def check(self, value: Any) -> str | None:
        """Return why ``value`` is invalid for this parameter, or None when it is valid."""
        if type(value) is not type(self.default):
            return f"{self.name} must be of type {type(self.default).__name__}, got {value!r}"
        if self.choices is not None and value not in self.choices:
            return f"{self.name} must be one of {', '.join(self.choices)}; got {value!r}"
        limits = self.int_range or self.float_range
        if limits is not None and not limits[0] <= value <= limits[1]:
            return f"{self.name} must be in [{limits[0]}, {limits[1]}], got {value!r}"
        return None


PARAMETER_SPECS: tuple[ParameterSpec, ...] = (
    ParameterSpec(
        "backend", "onnxruntime",
        "Inference backend: onnxruntime (CPU/GPU), tensorrt (engine + cuda-python or pycuda) or torch (checkpoint).",
        read_only=True, choices=BACKENDS,
    ),
    ParameterSpec(
        "model_path", "",
        "ONNX model, TensorRT engine or checkpoint, with its .json manifest next to it. Empty: the shipped "
        "demo model (share/efc_ros/models/efc_demo_tiny.onnx).",
        read_only=True,
    ),
    ParameterSpec(
        "num_threads", 0,
        "Intra-op CPU threads of the onnxruntime backend (0 = library default: all cores).",
        read_only=True, int_range=(0, 256),
    ),
    ParameterSpec(
        "cuda_graph", False,
        "tensorrt backend: capture and replay CUDA graphs at fixed input sizes (needs cuda-python; falls back "
        "to plain execution with a warning).",
        read_only=True,
    ),
    ParameterSpec(
        "input_width", 0,
        "Model input width in pixels (0 = the manifest's size, or the camera size rounded to the pad multiple "
        "for dynamic models). Set with input_height.",
        read_only=True, int_range=(0, 8192),
    ),
    ParameterSpec(
        "input_height", 0,
        "Model input height in pixels (0 = model default). Set with input_width.",
        read_only=True, int_range=(0, 8192),
    ),
    ParameterSpec(
        "resize_mode", "letterbox",
        "How camera frames are fitted to the model input: letterbox (keep aspect, pad) or stretch. Undone on "
        "the outputs.",
        read_only=True, choices=RESIZE_MODES,
    ),
    ParameterSpec(
        "streaming", True,
        "Encode each frame once and reuse the previous frame's features (needs encoder/decoder graphs; falls "
        "back to the pair graph).",
        read_only=True,
    ),
    ParameterSpec(
        "max_frame_gap", 0.5,
        "Largest time in seconds between two paired frames; larger gaps, time going backwards, frame_id or "
        "size changes reset the pair. Frames are paired with the previous *processed* frame, so this must "
        "exceed the inference time when the camera is faster than inference.",
        float_range=(0.001, 3600.0),
    ),
    ParameterSpec(
        "temporal_fusion", 0.0,
        "Weight of the previous frame's flow-warped class probabilities in the current segmentation (0 = "
        "off).",
        float_range=(0.0, 0.95),
    ),
    ParameterSpec(
        "occlusion_threshold", 0.5,
        "Occlusion probability above which a pixel is published as occluded (255) in the occlusion mask.",
        float_range=(0.0, 1.0),
    ),
    ParameterSpec(
        "flow_color_max", 0.0,
        "Flow magnitude in pixels shown at full colour saturation in flow/color (0 = each frame's own "
        "maximum).",
        float_range=(0.0, 10000.0),
    ),
    ParameterSpec(
        "flow_scale", 1.0,
        "Size of the flow and flow/color images relative to the camera image (1 = camera resolution). Below 1 "
        "the vectors are in pixels of the smaller flow image: multiply dx by camera width / flow width, dy by "
        "camera height / flow height for camera pixels.",
        float_range=(0.05, 1.0),
    ),
    ParameterSpec(
        "overlay_alpha", 0.5,
        "Opacity of the segmentation colours in the overlay image.",
        float_range=(0.0, 1.0),
    ),
    ParameterSpec(
        "publish_occlusion_probability", False,
        "Also publish occlusion/probability (32FC1).",
    ),
    ParameterSpec(
        "use_compressed", False,
        "Subscribe to <image>/compressed (sensor_msgs/CompressedImage, jpeg or png) instead of image; as with "
        "image_transport, a remapped image topic is followed (-r image:=/cam/image_raw -> /cam/image_raw/compressed).",
        read_only=True,
    ),
    ParameterSpec(
        "qos_reliability", "best_effort",
        "Reliability of the image subscription: best_effort (sensor data, default) or reliable.",
        read_only=True, choices=QOS_RELIABILITIES,
    ),
    ParameterSpec(
        "qos_depth", 5,
        "History depth (keep last) of the image subscription and of the output publishers.",
        read_only=True, int_range=(1, 1000),
    ),
    ParameterSpec(
        "diagnostics_period", 1.0,
        "Seconds between two DiagnosticArray messages on /diagnostics.",
        read_only=True, float_range=(0.1, 60.0),
    ),
    ParameterSpec(
        "max_image_pixels", 1 << 25,
        "Largest input frame in pixels (width * height); larger frames are refused before decoding (a small "
        "PNG/JPEG can declare a huge size). Default 2^25 = 33.5 MP: 8K UHD fits.",
        int_range=(1, 1 << 31),
    ),
    ParameterSpec(
        "corrupt_image_policy", "skip",
        "What to do with a compressed frame the JPEG/PNG decoder reports as corrupt: skip (count, log, no "
        "outputs) or publish (count, log, process it anyway). Both are counted in /diagnostics.",
        choices=CORRUPT_IMAGE_POLICIES,
    ),
    ParameterSpec(
        "log_throttle_sec", 5.0,
        "At most one log line per kind of per-frame error in this many seconds (every error is still "
        "counted).",
        float_range=(0.0, 3600.0),
    ),
)

SPECS_BY_NAME: dict[str, ParameterSpec] = {spec.name: spec for spec in PARAMETER_SPECS}
RUNTIME_PARAMETERS: frozenset[str] = frozenset(spec.name for spec in PARAMETER_SPECS if not spec.read_only)


@dataclass(frozen=True)
class PerceptionParameters:
    """Typed snapshot of every parameter; field names equal the ROS parameter names."""

    backend: str = "onnxruntime"
    model_path: str = ""
    num_threads: int = 0
    cuda_graph: bool = False
    input_width: int = 0
    input_height: int = 0
    resize_mode: str = "letterbox"
    streaming: bool = True
    max_frame_gap: float = 0.5
    temporal_fusion: float = 0.0
    occlusion_threshold: float = 0.5
    flow_color_max: float = 0.0
    flow_scale: float = 1.0
    overlay_alpha: float = 0.5
    publish_occlusion_probability: bool = False
    use_compressed: bool = False
    qos_reliability: str = "best_effort"
    qos_depth: int = 5
    diagnostics_period: float = 1.0
    max_image_pixels: int = 1 << 25
    corrupt_image_policy: str = "skip"
    log_throttle_sec: float = 5.0

    @property
    def input_size(self) -> tuple[int, int] | None:
        """(height, width) of the model input, or None for the model's default."""
        return None if self.input_width == 0 else (self.input_height, self.input_width)

    def replace(self, changes: Mapping[str, Any]) -> "PerceptionParameters":
        """A validated copy with ``changes`` applied; ``ParameterError`` naming the first bad value."""
        candidate = dataclasses.replace(self, **dict(changes))
        reason = candidate.problem()
        if reason is not None:
            raise ParameterError(reason)
        return candidate

    def problem(self) -> str | None:
        """Why this combination of values is invalid, or None."""
        for spec in PARAMETER_SPECS:
            reason = spec.check(getattr(self, spec.name))
            if reason is not None:
                return reason
        if (self.input_width == 0) != (self.input_height == 0):
            return (
                f"input_width and input_height must both be 0 (model default) or both set, "
                f"got input_width={self.input_width}, input_height={self.input_height}"
            )
        return None


def check_parameter_changes(current: PerceptionParameters, changes: Mapping[str, Any],
                            writable: frozenset[str] = frozenset()) -> str | None:
    """Why a runtime change cannot be applied (unknown name, read-only, bad value), or None.

    ``writable``: read-only parameters that may change now (the lifecycle node's
    ``UNCONFIGURED_PARAMETERS`` while it is unconfigured).
    """
    for name in changes:
        if name not in SPECS_BY_NAME:
            return f"unknown parameter {name!r}"
        if name not in RUNTIME_PARAMETERS and name not in writable and changes[name] != getattr(current, name):
            if name in UNCONFIGURED_PARAMETERS:
                return (f"{name} is read-only at runtime (restart the node; a lifecycle node takes it while "
                        f"unconfigured)")
            return f"{name} is read-only at runtime (restart the node to change it)"
    try:
        current.replace(changes)
    except ParameterError as error:
        return str(error)
    return None


def declare_perception_parameters(node: Any, not_read_only: frozenset[str] = frozenset()) -> PerceptionParameters:
    """Declare every parameter on ``node`` (an ``rclpy.node.Node``) and return the validated values.

    ``not_read_only``: parameters declared without rclpy's read-only flag because the node itself
    decides when they may change (the lifecycle node: while unconfigured).

    Raises:
        ParameterError: a value given at start-up (``-p`` or a params file) has the wrong type, is
        out of range or is not one of the choices.
    """
    # Imported here so that the spec table stays usable without a ROS context (docs, tests).
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException

    values: dict[str, Any] = {}
    for spec in PARAMETER_SPECS:
        try:
            descriptor = spec.descriptor()
            if spec.name in not_read_only:
                descriptor.read_only = False
            parameter = node.declare_parameter(spec.name, spec.default, descriptor)
        except (InvalidParameterTypeException, InvalidParameterValueException) as error:
            raise ParameterError(f"invalid start-up value for parameter {spec.name}: {error}") from None
        values[spec.name] = parameter.value
    try:
        return PerceptionParameters().replace(values)
    except TypeError as error:  # a field/name mismatch is a programming error, but say which
        raise ParameterError(str(error)) from None
