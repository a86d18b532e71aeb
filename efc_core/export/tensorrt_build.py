"""Build a TensorRT engine from an exported ONNX graph, on the target machine (DEPLOY.md).

Written against the TensorRT 8.5 - 10.x Python API: ``Builder``, explicit-batch network (the flag
exists and is required before 10.0, is ignored after), ``OnnxParser`` with every error reported,
``set_memory_pool_limit``, FP16/INT8 flags (absent from 11: refused with a reason), one
optimisation profile for dynamic H/W, a persisted timing cache and ``build_serialized_network``.
In FP16/INT8 the warp grids, GridSample and flow arithmetic are pinned to FP32 through layer
precision plus ``OBEY_PRECISION_CONSTRAINTS`` (``precision_plan``).

The engine ``<stem>.<gpu>.sm<cc>.trt<ver>.<precision>.engine`` gets a sidecar
``<engine>.json`` (``tensorrt_plan.SIDECAR_KEYS``) that the TensorRT runtime backend checks.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import Any

from efc_core.errors import BackendError, ModelError
from efc_core.export.precision_plan import flow_branch_nodes, flow_fp32_nodes, layer_precision
from efc_core.export.tensorrt_plan import (
    EngineKey,
    TensorRTFeatures,
    engine_filename,
    file_sha256,
    key_mismatches,
    profile_shapes,
    read_sidecar,
    timing_cache_filename,
    write_sidecar,
)

LOG = logging.getLogger(__name__)


def detect_gpu(device: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability ``"major.minor"``) of CUDA device ``device``.

    Uses pycuda where installed (the robot), else ``nvidia-smi``; ``BackendError`` without a GPU.
    """
    try:
        import pycuda.driver as cuda
    except ImportError:
        cuda = None
    if cuda is not None:
        cuda.init()
        gpu = cuda.Device(device)
        major, minor = gpu.compute_capability()
        return gpu.name(), f"{major}.{minor}"
    query = ["nvidia-smi", f"--id={device}", "--query-gpu=name,compute_cap", "--format=csv,noheader"]
    try:
        line = subprocess.run(query, check=True, capture_output=True, text=True, timeout=30).stdout.strip()
        name, capability = (part.strip() for part in line.splitlines()[0].rsplit(",", 1))
        return name, capability
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as error:
        raise BackendError(f"cannot identify CUDA device {device} (no pycuda, nvidia-smi failed: {error})") from None


def manifest_dict_for(onnx_path: Path) -> dict[str, Any]:
    """The validated export manifest of ``X.onnx`` / ``X.encoder.onnx`` / ``X.decoder.onnx`` as a dict."""
    from efc_core.manifest import load_manifest

    return load_manifest(onnx_path).to_dict()


def _import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as error:
        raise BackendError(f"TensorRT is not installed here ({error}); build engines on the target device") from None
    return trt


def _parse_onnx(trt, builder, onnx_path: Path, features: TensorRTFeatures, logger):
    flags = 0
    if features.needs_explicit_batch_flag:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(index)) for index in range(parser.num_errors)]
        raise ModelError(f"TensorRT cannot parse {onnx_path}: " + " | ".join(errors or ["unknown parser error"]))
    return network, parser


def _pin_precisions(trt, network, precision: str, graph) -> dict[str, int]:
    """Apply ``layer_precision`` to every layer; returns counts per forced precision."""
    dtypes = {"fp32": trt.float32, "fp16": trt.float16}
    fp32_nodes = frozenset(flow_fp32_nodes(graph))
    fp16_nodes = frozenset(flow_branch_nodes(graph)) if precision == "int8" else frozenset()
    counts = {"fp32": 0, "fp16": 0}
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        outputs = [layer.get_output(i) for i in range(layer.num_outputs)]
        inputs = [tensor for tensor in (layer.get_input(i) for i in range(layer.num_inputs)) if tensor is not None]
        if any(output.is_shape_tensor for output in outputs):
            continue  # shape arithmetic runs on the host in int32/int64
        decision = layer_precision(
            layer.type.name, layer.name, [output.dtype.name for output in outputs],
            input_dtypes=[tensor.dtype.name for tensor in inputs],
            precision=precision, fp32_nodes=fp32_nodes, fp16_nodes=fp16_nodes,
        )
        if decision is None:
            continue
        layer.precision = dtypes[decision]
        for i in range(layer.num_outputs):
            layer.set_output_type(i, dtypes[decision])
        counts[decision] += 1
    return counts


def _add_profile(trt, builder, config, network, shapes: dict[str, tuple[int, int]] | None, pad_multiple: int):
    """One optimisation profile covering dynamic H/W; None for fully static graphs."""
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    dims = {tensor.name: [d if d >= 0 else None for d in tensor.shape] for tensor in inputs}
    if all(all(d is not None for d in shape) for shape in dims.values()):
        return None
    if shapes is None:
        raise ValueError("the ONNX graph has dynamic H/W: pass min_shape, opt_shape and max_shape (HxW)")
    profile = builder.create_optimization_profile()
    plan = profile_shapes(dims, shapes["min"], shapes["opt"], shapes["max"], pad_multiple)
    for name, (low, best, high) in plan.items():
        profile.set_shape(name, low, best, high)
    config.add_optimization_profile(profile)
    return profile


def build_engine(
    onnx_path: str | Path,
    *,
    precision: str = "fp16",
    output: str | Path | None = None,
    workspace_mb: int = 2048,
    min_shape: tuple[int, int] | None = None,
    opt_shape: tuple[int, int] | None = None,
    max_shape: tuple[int, int] | None = None,
    timing_cache: str | Path | None = None,
    calibrator: Any = None,
    force: bool = False,
    device: int = 0,
    tf32: bool = True,
) -> Path:
    """Build (or reuse) the TensorRT engine of ``onnx_path`` for this GPU and TensorRT release.

    Args:
        onnx_path: ``X.onnx`` (or ``X.encoder.onnx`` / ``X.decoder.onnx``) with its manifest ``X.json``.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"`` (INT8 needs ``calibrator``, e.g.
            ``calibration.make_entropy_calibrator``; flow branch kept in FP16/FP32).
        output: engine file or folder; default: next to the ONNX file, named by ``engine_filename``.
        workspace_mb: builder workspace memory pool limit in MiB.
        min_shape, opt_shape, max_shape: image (H, W) range of a dynamic graph's profile.
        timing_cache: tactic timing cache file, read if present and written after the build;
            default ``timing.<gpu>.sm<cc>.trt<ver>.cache`` next to the ONNX file.
        force: rebuild even when an engine with a matching sidecar exists.
        tf32: allow TF32 for FP32 layers (TensorRT's default); recorded in the sidecar.
    Returns:
        Path of the engine; its sidecar is ``<engine>.json``.
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX model {onnx_path} not found")
    if precision == "int8" and calibrator is None:
        raise ValueError("precision 'int8' needs a calibrator (efc_core.export.calibration)")
    if workspace_mb <= 0:
        raise ValueError(f"workspace_mb must be positive, got {workspace_mb}")
    shape_args = (min_shape, opt_shape, max_shape)
    if any(shape is not None for shape in shape_args) and any(shape is None for shape in shape_args):
        raise ValueError(f"give all of min/opt/max shapes or none, got {shape_args}")
    shapes = dict(zip(("min", "opt", "max"), shape_args)) if min_shape is not None else None

    trt = _import_tensorrt()
    features = TensorRTFeatures.from_version(trt.__version__)
    features.check_precision(precision)
    manifest = manifest_dict_for(onnx_path)
    gpu_name, capability = detect_gpu(device)
    key = EngineKey(gpu_name, capability, trt.__version__, precision, file_sha256(onnx_path))

    stem = onnx_path.name.removesuffix(".onnx")
    filename = engine_filename(stem, gpu_name, capability, trt.__version__, precision)
    engine_path = onnx_path.with_name(filename) if output is None else Path(output)
    if engine_path.is_dir():
        engine_path = engine_path / filename
    if engine_path.is_file() and not force:
        problems = key_mismatches(read_sidecar(engine_path), key)
        if not problems:
            LOG.info("engine %s is up to date; not rebuilding (force=True rebuilds)", engine_path)
            return engine_path
        raise ModelError(f"engine {engine_path} exists but does not match: {'; '.join(problems)}; pass --force to rebuild")

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _parser = _parse_onnx(trt, builder, onnx_path, features, logger)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if not tf32:
        config.clear_flag(trt.BuilderFlag.TF32)
    if precision in ("fp16", "int8"):
        if not getattr(builder, "platform_has_fast_fp16", True):
            LOG.warning("%s has no fast FP16; the FP16 engine may be slower than FP32", gpu_name)
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        import onnx  # graph analysis only: which nodes compute grids and flow

        pinned = _pin_precisions(trt, network, precision, onnx.load(str(onnx_path), load_external_data=False))
        LOG.info("pinned %d layers to FP32 and %d to FP16", pinned["fp32"], pinned["fp16"])
    profile = _add_profile(trt, builder, config, network, shapes, int(manifest.get("pad_multiple", 64)))
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
        if profile is not None:
            config.set_calibration_profile(profile)

    cache_path = Path(timing_cache) if timing_cache else onnx_path.with_name(
        timing_cache_filename(gpu_name, capability, trt.__version__)
    )
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(serialized))
    cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    write_sidecar(engine_path, key, manifest, tf32=tf32)
    LOG.info("wrote %s (%s, TensorRT %s, %s)", engine_path, gpu_name, trt.__version__, precision)
    return engine_path
