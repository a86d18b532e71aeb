"""Every ``Perceptor`` setting in one dataclass: defaults, descriptions, limits and validation once.

``PerceptorConfig`` is what the ROS node's parameters (``efc_ros.node_parameters`` derives its
parameter table from ``PERCEPTOR_FIELDS``), ``config/perception.yaml``, the bag tools, ``efc bench``
/ ``efc verify`` and the demo compose; ``build_perceptor(config)`` is the one place a ``Perceptor``
and its backend are built from settings. Numpy tier: importing this loads no inference library.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from efc_core.contract import RESIZE_MODES
from efc_core.flow_refinement import (
    DEFAULT_REFINEMENT_ITERATIONS,
    DEFAULT_REFINEMENT_LEVELS,
    DEFAULT_REFINEMENT_PIXELS,
    FLOW_REFINEMENTS,
)
from efc_core.perceptor import Perceptor
from efc_core.runtime import BACKENDS, Backend

BACKEND_KINDS: tuple[str, ...] = tuple(BACKENDS)
#: "" accepts the model's own precision; otherwise the backend must report this one.
PRECISIONS: tuple[str, ...] = ("", "fp32", "fp16", "int8")


def setting(default: Any, description: str, *, choices: tuple[str, ...] | None = None,
            limits: tuple[float, float] | None = None, runtime: bool = False, ros_name: str = "") -> Any:
    """A dataclass field whose metadata carries what a parameter table needs (see ``FieldSpec``).

    Used by ``PerceptorConfig`` and ``efc_core.edge.render.RenderOptions``; ``field_specs`` reads
    the metadata back.
    """
    metadata = {"description": description, "choices": choices, "limits": limits, "runtime": runtime,
                "ros_name": ros_name}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class PerceptorConfig:
    """The settings of one ``Perceptor`` and its backend. Invalid values raise ``ValueError`` naming them."""

    backend: str = setting(
        "onnxruntime", "Inference backend: onnxruntime (CPU/GPU), tensorrt (engine + cuda-python or pycuda) or "
        "torch (checkpoint).", choices=BACKEND_KINDS)
    model_path: str = setting(
        "", "ONNX model, TensorRT engine or checkpoint, with its .json manifest next to it. Empty: the shipped "
        "real-camera model (share/efc_ros/models/efc_camvid_tiny.onnx, 11 CamVid classes).")
    threads: int = setting(
        0, "Intra-op CPU threads of the onnxruntime and torch backends (0 = library default: all cores).",
        limits=(0, 256), ros_name="num_threads")
    device: int = setting(
        0, "CUDA device index of the tensorrt backend (and of torch when CUDA is available).", limits=(0, 64))
    cuda_graph: bool = setting(
        False, "tensorrt backend: capture and replay CUDA graphs at fixed input sizes (needs cuda-python; falls "
        "back to plain execution with a warning).")
    precision: str = setting(
        "", "Precision the model must run in (fp32, fp16, int8); empty accepts the model's own. A mismatch "
        "refuses to start instead of silently running another engine.", choices=PRECISIONS)
    input_width: int = setting(
        0, "Model input width in pixels (0 = the manifest's size, or the camera size rounded to the pad multiple "
        "for dynamic models). Set with input_height.", limits=(0, 8192))
    input_height: int = setting(
        0, "Model input height in pixels (0 = model default). Set with input_width.", limits=(0, 8192))
    resize_mode: str = setting(
        "letterbox", "How camera frames are fitted to the model input: letterbox (keep aspect, pad) or stretch. "
        "Undone on the outputs. A log line says when letterboxing leaves much of the input unused.",
        choices=RESIZE_MODES)
    max_input_pixels: int = setting(
        0, "Dynamic models without input_width/input_height: frames whose padded size exceeds this many pixels "
        "run at the size of at most this many pixels that fits their aspect (0 = no limit).", limits=(0, 1 << 28))
    streaming: bool = setting(
        True, "Encode each frame once and reuse the previous frame's features (needs encoder/decoder graphs; "
        "falls back to the pair graph).")
    max_frame_gap_s: float = setting(
        0.5, "Largest time in seconds between two paired frames; larger gaps, time going backwards, frame_id or "
        "size changes reset the pair. Frames are paired with the previous *processed* frame, so this must "
        "exceed the inference time when the camera is faster than inference.",
        limits=(0.001, 3600.0), runtime=True, ros_name="max_frame_gap")
    temporal_fusion: float = setting(
        0.0, "Weight of the previous frame's flow-warped class probabilities in the current segmentation "
        "(0 = off).", limits=(0.0, 0.95), runtime=True)
    flow_refinement: str = setting(
        "variational", "variational: the network's flow refined on the two frames by OpenCV's variational "
        "refinement (CPU, about 4 ms per frame at the default working size; sharper small motions); off: the "
        "network's flow as it is. Occlusion is always the network's.", choices=FLOW_REFINEMENTS, runtime=True)
    flow_refinement_iterations: int = setting(
        DEFAULT_REFINEMENT_ITERATIONS, "Fixed-point iterations of the flow refinement per pyramid level (more: slower, "
        "sharper).",
        limits=(1, 100), runtime=True)
    flow_refinement_pixels: int = setting(
        DEFAULT_REFINEMENT_PIXELS, "Working size of the flow refinement's finest level: frames scaled down "
        "(aspect kept) to at most this many pixels.", limits=(64, 1 << 24), runtime=True)
    flow_refinement_levels: int = setting(
        DEFAULT_REFINEMENT_LEVELS, "Pyramid levels of the flow refinement, coarse to fine, each a quarter of the "
        "pixels of the next (1: the finest level alone).", limits=(1, 6), runtime=True)

    def __post_init__(self) -> None:
        for spec in PERCEPTOR_FIELDS:
            reason = spec.check(getattr(self, spec.name), spec.name)
            if reason is not None:
                raise ValueError(reason)
        if (self.input_width == 0) != (self.input_height == 0):
            raise ValueError(f"input_width and input_height must both be 0 (model default) or both set, "
                             f"got input_width={self.input_width}, input_height={self.input_height}")

    @property
    def input_size(self) -> tuple[int, int] | None:
        """(height, width) of the model input, or None for the model's default."""
        return None if self.input_width == 0 else (self.input_height, self.input_width)

    def replace(self, **changes: Any) -> "PerceptorConfig":
        """A validated copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def backend_options(self) -> dict[str, Any]:
        """The ``create_backend`` options this config gives its backend kind."""
        if self.backend == "tensorrt":
            return {"cuda_graph": self.cuda_graph, "device": self.device, "precision": self.precision or None}
        options: dict[str, Any] = {"threads": self.threads} if self.threads > 0 else {}
        if self.backend == "torch":
            options["device"] = f"cuda:{self.device}" if self.device else None
            # A requested input size needs the checkpoint at any size, as a dynamic export would run.
            options["dynamic"] = self.input_size is not None or self.max_input_pixels > 0
        return options


@dataclass(frozen=True)
class FieldSpec:
    """One setting of ``PerceptorConfig`` as a parameter table sees it.

    name: the config field; ros_name: the ROS parameter (the field name unless users already type
    another); limits: inclusive (low, high) for numbers; runtime: may change while running.
    """

    name: str
    ros_name: str
    default: Any
    description: str
    choices: tuple[str, ...] | None = None
    limits: tuple[float, float] | None = None
    runtime: bool = False

    def check(self, value: Any, label: str | None = None) -> str | None:
        """Why ``value`` is invalid for this setting (the message names ``label``), or None."""
        return check_setting(label or self.ros_name, value, self.default, self.choices, self.limits)


def check_setting(label: str, value: Any, default: Any, choices: tuple[str, ...] | None = None,
                  limits: tuple[float, float] | None = None) -> str | None:
    """Why ``value`` is not a valid setting ``label`` (type of ``default``, one of ``choices``, within
    the inclusive ``limits``), or None. The one value check of the config and the ROS parameters.
    """
    if type(value) is not type(default):
        return f"{label} must be of type {type(default).__name__}, got {value!r}"
    if choices is not None and value not in choices:
        return f"{label} must be one of {', '.join(c if c else repr(c) for c in choices)}; got {value!r}"
    if isinstance(value, float) and math.isnan(value):
        return f"{label} must be a number, got {value!r}"
    if limits is not None and not limits[0] <= value <= limits[1]:
        return f"{label} must be in [{limits[0]}, {limits[1]}], got {value!r}"
    return None


def field_specs(settings_class: type) -> tuple[FieldSpec, ...]:
    """The ``FieldSpec`` of every field of the dataclass ``settings_class`` declared with ``setting``.

    Fields declared otherwise (``RenderOptions.palette``) are not settings and are left out.
    """
    specs = []
    for item in dataclasses.fields(settings_class):
        meta = item.metadata
        if "description" not in meta:
            continue
        specs.append(FieldSpec(item.name, meta["ros_name"] or item.name, item.default, meta["description"],
                               meta["choices"], meta["limits"], meta["runtime"]))
    return tuple(specs)


PERCEPTOR_FIELDS: tuple[FieldSpec, ...] = field_specs(PerceptorConfig)


def build_backend(config: PerceptorConfig, model_path: str | None = None) -> Backend:
    """The backend ``config`` names, on ``model_path`` (default ``config.model_path``).

    Raises:
        ValueError: no model path, or the backend's precision is not ``config.precision``.
        ModelError / BackendError: from ``efc_core.runtime.create_backend``.
    """
    from efc_core.runtime import create_backend

    path = model_path or config.model_path
    if not path:
        raise ValueError("model_path is empty: give a model file (the ROS tools default to the shipped demo model)")
    backend = create_backend(config.backend, path, **config.backend_options())
    if config.precision and backend.precision != config.precision:
        backend.close()
        raise ValueError(f"precision {config.precision!r} requested but {path} runs in {backend.precision!r}")
    return backend


def build_perceptor(config: PerceptorConfig, backend: Backend | None = None, **extra: Any) -> Perceptor:
    """The ``Perceptor`` for ``config``: the one place one is built from settings.

    Args:
        config: the settings.
        backend: an existing backend (shared between cameras); None builds ``build_backend(config)``.
        **extra: ``Perceptor`` arguments that are not settings (``output_probabilities``).
    """
    return Perceptor(
        backend if backend is not None else build_backend(config),
        input_size=config.input_size,
        resize_mode=config.resize_mode,
        max_frame_gap_s=config.max_frame_gap_s,
        temporal_fusion=config.temporal_fusion,
        streaming=config.streaming,
        max_input_pixels=config.max_input_pixels,
        flow_refinement=config.flow_refinement,
        refinement_iterations=config.flow_refinement_iterations,
        refinement_max_pixels=config.flow_refinement_pixels,
        refinement_levels=config.flow_refinement_levels,
        **extra,
    )
