"""Pure-Python planning for TensorRT engine builds: version features, engine names and keys,
optimisation-profile shapes.

Nothing here imports ``tensorrt`` or ``torch``, so the rules that decide what a build does (and
what the runtime refuses) are unit-tested on machines without a GPU. The builder in
``tensorrt_build.py`` and the runtime backend share the sidecar format defined here:
``X.engine`` plus ``X.engine.json`` with the keys of ``SIDECAR_KEYS``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from efc_core.contract import ENCODER_FEATURES, PAD_MULTIPLE, check_padded_size
from efc_core.errors import ModelError

PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")

#: Keys of the JSON sidecar written next to every engine (``X.engine.json``).
SIDECAR_KEYS: tuple[str, ...] = (
    "gpu_name", "compute_capability", "tensorrt_version", "precision", "onnx_sha256", "manifest",
)
#: The part of the sidecar that must match the machine and request for an engine to be reused.
KEY_FIELDS: tuple[str, ...] = ("gpu_name", "compute_capability", "tensorrt_version", "precision", "onnx_sha256")
#: Sidecar key of the build options that decide reuse at build time (``build_options``); the
#: runtime does not compare them (it cannot know what was asked for).
BUILD_OPTIONS_KEY = "build"

#: Oldest TensorRT with the name-based tensor API (docs/DEPLOY.md); older releases are refused.
MIN_TENSORRT: tuple[int, int] = (8, 5)


#: ONNX opsets the exporter writes. From opset 20 PyTorch writes GridSample mode="linear", which
#: the TensorRT ONNX parser silently treats as nearest (TensorRT issue #4646, docs/DEPLOY.md).
SUPPORTED_OPSETS: tuple[int, ...] = (16, 17)


def check_opset(opset: int) -> int:
    """Return ``opset`` if it is 16 or 17, else ``ValueError`` with the reason."""
    if opset not in SUPPORTED_OPSETS:
        reason = (" (from opset 20 GridSample is written with mode='linear', which the TensorRT ONNX parser "
                  "silently treats as nearest, TensorRT issue #4646)" if opset >= 20 else
                  " (GridSample needs opset >= 16)" if opset < 16 else "")
        raise ValueError(f"opset {opset} is not supported; use 16 or 17{reason}")
    return opset


def parse_version(version: str) -> tuple[int, int, int]:
    """``"10.3.0.26"`` -> ``(10, 3, 0)``; ``ValueError`` naming a string that is not a version."""
    match = re.match(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?", str(version))
    if match is None:
        raise ValueError(f"not a TensorRT version string: {version!r}")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


@dataclass(frozen=True)
class TensorRTFeatures:
    """What the installed TensorRT release offers to the builder (docs/DEPLOY.md, Targets)."""

    version: tuple[int, int, int]

    @classmethod
    def from_version(cls, version: str) -> "TensorRTFeatures":
        return cls(parse_version(version))

    @property
    def supported(self) -> bool:
        """8.5 or newer: the name-based tensor API the runtime relies on exists."""
        return self.version[:2] >= MIN_TENSORRT

    @property
    def needs_explicit_batch_flag(self) -> bool:
        """Before 10.0 a network without EXPLICIT_BATCH is implicit-batch; 10.x ignores the flag."""
        return self.version[0] < 10

    @property
    def has_weak_typing_flags(self) -> bool:
        """FP16 / INT8 builder flags and layer precision constraints exist up to 10.x; 11 removed
        them in favour of strongly typed networks with explicit Q/DQ.
        """
        return self.version[0] <= 10

    @property
    def has_implicit_int8_calibration(self) -> bool:
        """Entropy calibrators (``config.int8_calibrator``) exist up to 10.x only."""
        return self.version[0] <= 10

    def check_precision(self, precision: str) -> None:
        """Raise ``ValueError`` / ``ModelError`` when this release cannot build ``precision``."""
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
        version = ".".join(map(str, self.version))
        if not self.supported:
            raise ModelError(
                f"TensorRT {version} is too old: the name-based tensor API needs >= "
                f"{MIN_TENSORRT[0]}.{MIN_TENSORRT[1]} (JetPack 5.1 or newer)"
            )
        if precision == "fp16" and not self.has_weak_typing_flags:
            raise ModelError(
                f"TensorRT {version} has no FP16 builder flag (removed in 11; strongly typed networks "
                "need an FP16 ONNX export): build with --precision fp32 or use TensorRT 10.x"
            )
        if precision == "int8" and not self.has_implicit_int8_calibration:
            raise ModelError(
                f"TensorRT {version} has no implicit INT8 calibration (removed in 11; it needs an ONNX "
                "graph with explicit Q/DQ nodes): build with fp32 or use TensorRT 10.x"
            )


def _slug(text: str) -> str:
    """Lower-case file-name-safe form: ``"NVIDIA GeForce RTX 4090"`` -> ``"nvidia-geforce-rtx-4090"``."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if not slug:
        raise ValueError(f"cannot build a file name part from {text!r}")
    return slug


def engine_filename(
    stem: str, gpu_name: str, compute_capability: str, tensorrt_version: str, precision: str
) -> str:
    """Engine file name that records everything an engine is tied to (docs/DEPLOY.md: not portable).

    ``engine_filename("model", "NVIDIA Orin", "8.7", "10.3.0.30", "fp16")`` ->
    ``"model.nvidia-orin.sm87.trt10.3.0.fp16.engine"``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    return f"{stem}.{_target_tag(gpu_name, compute_capability, tensorrt_version)}.{precision}.engine"


def timing_cache_filename(gpu_name: str, compute_capability: str, tensorrt_version: str) -> str:
    """Timing caches are tied to the GPU and release like engines, not to a model or precision."""
    return f"timing.{_target_tag(gpu_name, compute_capability, tensorrt_version)}.cache"


def _target_tag(gpu_name: str, compute_capability: str, tensorrt_version: str) -> str:
    major, minor, patch = parse_version(tensorrt_version)
    capability = compute_capability.replace(".", "")
    if not capability.isdigit():
        raise ValueError(f"compute capability must look like '8.7', got {compute_capability!r}")
    return f"{_slug(gpu_name)}.sm{capability}.trt{major}.{minor}.{patch}"


def sidecar_path(engine_path: str | Path) -> Path:
    """``X.engine`` -> ``X.engine.json``."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class EngineKey:
    """What an engine was built for; an engine is reused only when every field matches."""

    gpu_name: str
    compute_capability: str
    tensorrt_version: str
    precision: str
    onnx_sha256: str

    def sidecar(self, manifest: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        """The sidecar dict: this key, the ONNX manifest the engine was built from, and ``extra``
        build facts (e.g. ``tf32``) that do not decide reuse.
        """
        return {**extra, **asdict(self), "manifest": dict(manifest)}


def write_sidecar(engine_path: str | Path, key: EngineKey, manifest: Mapping[str, Any], **extra: Any) -> Path:
    """Write ``X.engine.json`` and return its path."""
    path = sidecar_path(engine_path)
    path.write_text(json.dumps(key.sidecar(manifest, **extra), indent=2, sort_keys=True) + "\n")
    return path


def build_options(
    *,
    min_shape: tuple[int, int] | None,
    opt_shape: tuple[int, int] | None,
    max_shape: tuple[int, int] | None,
    tf32: bool,
    workspace_mb: int,
    calibration: str | None = None,
) -> dict[str, Any]:
    """The requested build options recorded in the sidecar and compared before an engine is reused.

    Args:
        min_shape, opt_shape, max_shape: optimisation profile image sizes (H, W), or None.
        tf32: whether FP32 layers may use TF32.
        workspace_mb: builder workspace limit in MiB (it bounds the tactics TensorRT may pick).
        calibration: identity of the INT8 calibration (cache/data digest), None otherwise.
    """
    shapes = (min_shape, opt_shape, max_shape)
    profile = None if min_shape is None else {
        # type: ignore[index]
        name: [int(shape[0]), int(shape[1])] for name, shape in zip(("min", "opt", "max"), shapes)
    }
    return {"profile": profile, "tf32": bool(tf32), "workspace_mb": int(workspace_mb), "calibration": calibration}


def build_option_mismatches(sidecar: Mapping[str, Any], requested: Mapping[str, Any]) -> list[str]:
    """Which requested build options differ from those an engine was built with (empty: same).
    A sidecar without build options (written before they were recorded) differs in all of them.
    """
    recorded = sidecar.get(BUILD_OPTIONS_KEY) or {}
    return [f"{name}: engine built with {recorded.get(name)!r}, requested {value!r}"
            for name, value in requested.items() if recorded.get(name) != value]


def read_sidecar(engine_path: str | Path) -> dict[str, Any]:
    """Read and check ``X.engine.json``; ``ModelError`` when missing, unreadable or incomplete."""
    path = sidecar_path(engine_path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"engine sidecar {path} not found (was the engine built with `efc build-engine`?)") from None
    except (OSError, json.JSONDecodeError) as error:
        raise ModelError(f"engine sidecar {path} is unreadable: {error}") from None
    missing = [key for key in SIDECAR_KEYS if key not in data]
    if missing:
        raise ModelError(f"engine sidecar {path} lacks keys {missing}")
    return data


def key_mismatches(sidecar: Mapping[str, Any], expected: EngineKey) -> list[str]:
    """Human-readable differences between a sidecar and the expected key (empty list = match).

    TensorRT versions are compared on major.minor.patch: engines are not portable across
    releases, but build numbers of one release are.
    """
    problems = []
    for field in KEY_FIELDS:
        have, want = sidecar.get(field), getattr(expected, field)
        if field == "tensorrt_version" and have is not None:
            same = parse_version(str(have)) == parse_version(want)
        else:
            same = have == want
        if not same:
            problems.append(f"{field}: engine has {have!r}, this build needs {want!r}")
    return problems


def _stride_of(input_name: str) -> int:
    """Spatial stride of a graph input relative to the image: 1 for images, 4 for ``*_feat4``..."""
    for feature in ENCODER_FEATURES:
        if input_name.endswith(feature):
            return int(feature.removeprefix("feat"))
    return 1


def profile_shapes(
    input_shapes: Mapping[str, Sequence[int | str | None]],
    min_hw: tuple[int, int],
    opt_hw: tuple[int, int],
    max_hw: tuple[int, int],
    pad_multiple: int = PAD_MULTIPLE,
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """Optimisation-profile (min, opt, max) shapes for every input of a dynamic graph.

    Args:
        input_shapes: ONNX input shapes ``(N, C, H, W)``; symbolic dims are strings or None.
            Channel counts must be static. Batch is fixed to 1.
        min_hw, opt_hw, max_hw: image sizes (H, W) in pixels, multiples of ``pad_multiple``;
            feature inputs (``prev_feat8``...) get the image size divided by their stride.
    """
    sizes = {"min": min_hw, "opt": opt_hw, "max": max_hw}
    for label, (height, width) in sizes.items():
        check_padded_size(height, width, pad_multiple, f"{label} shape")
    if not (min_hw[0] <= opt_hw[0] <= max_hw[0] and min_hw[1] <= opt_hw[1] <= max_hw[1]):
        raise ValueError(f"profile sizes must satisfy min <= opt <= max, got {min_hw}, {opt_hw}, {max_hw}")
    shapes = {}
    for name, dims in input_shapes.items():
        if len(dims) != 4 or not isinstance(dims[1], int):
            raise ValueError(f"input {name!r} must be (N, C, H, W) with a static channel count, got {list(dims)}")
        stride = _stride_of(name)
        triple = tuple((1, dims[1], h // stride, w // stride) for h, w in sizes.values())
        shapes[name] = triple  # type: ignore[assignment]
    return shapes
