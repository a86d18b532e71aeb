"""The perception node's parameters: one table of specs, descriptors, validation and a typed snapshot.

The model and pipeline parameters are not written here: they are ``efc_core.perceptor_config``'s
``PerceptorConfig`` fields (default, description, choices, limits, whether they may change at
runtime), turned into ROS parameters under the names users already type (``num_threads``,
``max_frame_gap``); the renderer's (``occlusion_threshold``, ``flow_color_max``, ``overlay_alpha``)
are ``efc_core.edge.render.RenderOptions`` fields, as ``efc bag process``'s flags are. Only the
node's own parameters (outputs, topics, input checks) are listed here.
Every parameter is declared with a ``ParameterDescriptor`` (description, range, read-only where a
change would need a new model or new subscriptions). rclpy itself enforces types, ranges and
read-only; the choices of string parameters and the cross-parameter rules are checked here (with
the config's one value check), both at start-up and in the node's ``add_on_set_parameters_callback``.
``config/perception.yaml`` lists the same names with the same defaults (a test checks it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

from efc_core.edge.render import RENDER_FIELDS
from efc_core.perceptor_config import PERCEPTOR_FIELDS, FieldSpec, PerceptorConfig, check_setting

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
            descriptor.additional_constraints = "one of: " + ", ".join(c or '""' for c in self.choices)
        return descriptor

    def check(self, value: Any) -> str | None:
        """Return why ``value`` is invalid for this parameter, or None when it is valid."""
        return check_setting(self.name, value, self.default, self.choices, self.int_range or self.float_range)


def _setting_parameter(setting: FieldSpec) -> ParameterSpec:
    """The ROS parameter of one ``PerceptorConfig`` or ``RenderOptions`` field (a ``FieldSpec``)."""
    limits = setting.limits
    is_int = type(setting.default) is int
    return ParameterSpec(
        setting.ros_name, setting.default, setting.description, read_only=not setting.runtime,
        int_range=(int(limits[0]), int(limits[1])) if limits is not None and is_int else None,
        float_range=(float(limits[0]), float(limits[1])) if limits is not None and not is_int else None,
        choices=setting.choices,
    )


#: ROS name -> ``PerceptorConfig`` field, for the parameters that configure the Perceptor.
PERCEPTOR_PARAMETERS: dict[str, str] = {setting.ros_name: setting.name for setting in PERCEPTOR_FIELDS}

#: The renderer's settings (occlusion_threshold, flow_color_max, overlay_alpha) are
#: ``efc_core.edge.render.RENDER_FIELDS``, shared with ``efc bag process``'s flags.
NODE_PARAMETER_SPECS: tuple[ParameterSpec, ...] = tuple(_setting_parameter(setting) for setting in RENDER_FIELDS) + (
    ParameterSpec(
        "flow_scale", 1.0,
        "Size of the flow and flow/color images relative to the camera image (1 = camera resolution). Below 1 "
        "the vectors are in pixels of the smaller flow image: multiply dx by camera width / flow width, dy by "
        "camera height / flow height for camera pixels.",
        float_range=(0.05, 1.0),
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

PARAMETER_SPECS: tuple[ParameterSpec, ...] = (
    tuple(_setting_parameter(setting) for setting in PERCEPTOR_FIELDS) + NODE_PARAMETER_SPECS
)
SPECS_BY_NAME: dict[str, ParameterSpec] = {spec.name: spec for spec in PARAMETER_SPECS}
RUNTIME_PARAMETERS: frozenset[str] = frozenset(spec.name for spec in PARAMETER_SPECS if not spec.read_only)


class _ParameterMethods:
    """Methods of ``PerceptionParameters`` (its fields are generated from ``PARAMETER_SPECS``)."""

    @property
    def input_size(self) -> tuple[int, int] | None:
        """(height, width) of the model input, or None for the model's default."""
        return self.perceptor_config().input_size

    def perceptor_config(self) -> PerceptorConfig:
        """The ``PerceptorConfig`` these parameters give (``ValueError`` on a bad combination)."""
        return PerceptorConfig(**{field: getattr(self, name) for name, field in PERCEPTOR_PARAMETERS.items()})

    def replace(self, changes: Mapping[str, Any]) -> Any:
        """A validated copy with ``changes`` applied; ``ParameterError`` naming the first bad value."""
        candidate = dataclasses.replace(self, **dict(changes))  # type: ignore[type-var]
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
        try:
            self.perceptor_config()  # the config's cross-field rules (input_width with input_height)
        except ValueError as error:
            return str(error)
        return None


#: Typed snapshot of every parameter; field names equal the ROS parameter names, defaults are the
#: specs' (for the Perceptor's parameters: ``PerceptorConfig``'s).
PerceptionParameters = dataclasses.make_dataclass(
    "PerceptionParameters",
    [(spec.name, type(spec.default), dataclasses.field(default=spec.default)) for spec in PARAMETER_SPECS],
    bases=(_ParameterMethods,), frozen=True,
    namespace={"__module__": __name__, "__doc__": "Typed snapshot of every parameter (field names: ROS names)."},
)


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
