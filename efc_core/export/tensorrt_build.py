"""Build a TensorRT engine from an exported ONNX graph, on the target machine (docs/DEPLOY.md).

Written against the TensorRT 8.5 - 10.x Python API (11.x for FP32): ``Builder``, explicit-batch
network (the flag exists and is required before 10.0, is gone in 11), ``OnnxParser`` with every
error reported, ``set_memory_pool_limit``, FP16/INT8 flags (absent from 11: refused with a reason
before anything is built), one optimisation profile for dynamic H/W, a persisted timing cache and
``build_serialized_network``. In FP16/INT8 the warp grids, GridSample, the sampling coordinates
and the flow arithmetic are pinned to FP32 through layer precision plus
``OBEY_PRECISION_CONSTRAINTS`` (``precision_plan``).

The build runs on the CUDA device ``device`` (``cudaSetDevice`` through the CUDA layer, before the
builder exists; the INT8 calibrator's buffers live there too). Phases and elapsed time are logged
(``build_progress``), with TensorRT's progress monitor where the release has one.

The engine ``<stem>.<gpu>.sm<cc>.trt<ver>.<precision>.engine`` gets a sidecar
``<engine>.json`` (``efc_core.runtime.engine_plan.SIDECAR_KEYS`` plus the build options) that the runtime backend
checks. An existing engine is reused only when its key *and* its build options (profile, TF32,
workspace, calibration) match the request; otherwise it is rebuilt.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from efc_core.errors import BackendError, ModelError
from efc_core.export.build_progress import BuildLog, make_progress_monitor
from efc_core.export.precision_plan import (
    LayerView,
    flow_branch_nodes,
    flow_fp32_nodes,
    layer_precision,
    resolve_layer_origins,
)
from efc_core.runtime.engine_plan import (
    EngineKey,
    TensorRTFeatures,
    build_option_mismatches,
    build_options,
    engine_filename,
    file_sha256,
    key_mismatches,
    profile_shapes,
    read_sidecar,
    timing_cache_filename,
    write_sidecar,
)

LOG = logging.getLogger(__name__)


def _visible_nvidia_smi_index(device: int, count: int) -> int:
    """nvidia-smi index (PCI order) of CUDA device ``device``, where that can be known without CUDA.

    CUDA numbers devices fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, and after
    ``CUDA_VISIBLE_DEVICES``; nvidia-smi numbers them in PCI order. They agree for one GPU, or in
    PCI order with integer ``CUDA_VISIBLE_DEVICES``.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    indices = list(range(count))
    if visible is not None:
        try:
            indices = [int(part) for part in visible.split(",") if part.strip()]
        except ValueError:
            raise BackendError(f"CUDA_VISIBLE_DEVICES={visible!r} uses UUIDs; without cuda-python or pycuda "
                               "the GPU cannot be identified: install cuda-python") from None
    if device >= len(indices):
        raise BackendError(f"CUDA device {device} does not exist ({len(indices)} visible)")
    if len(indices) > 1 and os.environ.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
        raise BackendError(f"{len(indices)} GPUs visible: CUDA numbers them fastest first, nvidia-smi in PCI order, "
                           "so device numbers may differ; install cuda-python, or set CUDA_DEVICE_ORDER=PCI_BUS_ID")
    return indices[device]


def _nvidia_smi_gpu(device: int) -> tuple[str, str]:
    query = ["nvidia-smi", "--query-gpu=index,name,compute_cap", "--format=csv,noheader"]
    try:
        lines = subprocess.run(query, check=True, capture_output=True, text=True,
                               timeout=30).stdout.strip().splitlines()
        rows = {int(index): (name.strip(), capability.strip())
                for index, name, capability in (line.rsplit(",", 2) for line in lines if line.strip())}
    except (OSError, subprocess.SubprocessError, ValueError) as error:
        raise BackendError(f"cannot identify CUDA device {device} (no cuda-python or pycuda, nvidia-smi failed: "
                           f"{error})") from None
    index = _visible_nvidia_smi_index(device, len(rows))
    if index not in rows:
        raise BackendError(f"nvidia-smi lists no GPU {index} (CUDA device {device}); it lists {sorted(rows)}")
    return rows[index]


def detect_gpu(device: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability ``"major.minor"``) of CUDA device ``device`` (CUDA numbering).

    Asks the CUDA layer (cuda-python, else pycuda) on this thread; without one, ``nvidia-smi``
    where its numbering provably matches CUDA's. ``BackendError`` without a GPU.
    """
    with _cuda_device(device, required=False) as cuda:
        if cuda is not None:
            return cuda.device_info()
    return _nvidia_smi_gpu(device)


@contextlib.contextmanager
def _cuda_device(device: int, *, required: bool) -> Iterator[Any]:
    """The CUDA layer activated for ``device`` on this thread (None when none is installed and
    not ``required``), closed afterwards.
    """
    from efc_core.runtime.cuda_layer import open_cuda_layer

    try:
        cuda = open_cuda_layer(device)
    except BackendError:
        if required:
            raise
        cuda = None
    if cuda is None:
        yield None
        return
    cuda.activate()
    try:
        yield cuda
    finally:
        cuda.close()


def manifest_dict_for(onnx_path: Path) -> dict[str, Any]:
    """The validated export manifest of ``X.onnx`` / ``X.encoder.onnx`` / ``X.decoder.onnx`` as a dict."""
    from efc_core.manifest import load_manifest

    return load_manifest(onnx_path).to_dict()


def _import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as error:
        raise BackendError(f"TensorRT is not installed here ({error}); build engines on the target device "
                           "(JetPack: system python3-libnvinfer; x86: pip install 'tensorrt-cu12<11')") from None
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


@dataclass
class PinReport:
    """What ``pin_precisions`` forced: ``(layer name, ONNX node or None, "fp32"/"fp16")`` per layer."""

    pinned: list[tuple[str, str | None, str]] = field(default_factory=list)

    def count(self, precision: str) -> int:
        return sum(1 for _, _, decision in self.pinned if decision == precision)

    def nodes(self, precision: str) -> set[str]:
        return {node for _, node, decision in self.pinned if decision == precision and node is not None}


def network_layer_views(network) -> list[LayerView]:
    """``LayerView`` (name, metadata, tensor names) of every layer of a parsed network."""
    views = []
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        inputs = [layer.get_input(i) for i in range(layer.num_inputs)]
        outputs = [layer.get_output(i) for i in range(layer.num_outputs)]
        views.append(LayerView(
            name=layer.name,
            metadata=getattr(layer, "metadata", "") or "",  # ILayer.metadata: TensorRT 8.6+
            inputs=tuple(t.name for t in inputs if t is not None),
            outputs=tuple(t.name for t in outputs if t is not None),
        ))
    return views


def pin_precisions(trt, network, precision: str, graph) -> PinReport:
    """Apply ``layer_precision`` to every layer of ``network`` parsed from ONNX ``graph``."""
    dtypes = {"fp32": trt.float32, "fp16": trt.float16}
    fp32_nodes = frozenset(flow_fp32_nodes(graph))
    fp16_nodes = frozenset(flow_branch_nodes(graph)) if precision == "int8" else frozenset()
    origins = resolve_layer_origins(network_layer_views(network), graph)
    report = PinReport()
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        outputs = [layer.get_output(i) for i in range(layer.num_outputs)]
        inputs = [tensor for tensor in (layer.get_input(i) for i in range(layer.num_inputs)) if tensor is not None]
        if any(output.is_shape_tensor for output in outputs):
            continue  # shape arithmetic runs on the host in int32/int64
        decision = layer_precision(
            layer.type.name, layer.name, [output.dtype.name for output in outputs],
            input_dtypes=[tensor.dtype.name for tensor in inputs],
            precision=precision, fp32_nodes=fp32_nodes, fp16_nodes=fp16_nodes, onnx_node=origins[index],
        )
        if decision is None:
            continue
        layer.precision = dtypes[decision]
        for i in range(layer.num_outputs):
            layer.set_output_type(i, dtypes[decision])
        report.pinned.append((layer.name, origins[index], decision))
    return report


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
    calibration: Any = None,
    calibration_cache: str | Path | None = None,
    calibrator: Any = None,
    force: bool = False,
    device: int = 0,
    tf32: bool = True,
    detailed_profile: bool = True,
) -> Path:
    """Build (or reuse) the TensorRT engine of ``onnx_path`` for this GPU and TensorRT release.

    Args:
        onnx_path: ``X.onnx`` (or ``X.encoder.onnx`` / ``X.decoder.onnx``) with its manifest ``X.json``.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"`` (INT8: TensorRT <= 10.x, needs ``calibration``;
            flow branch kept in FP16/FP32).
        output: engine file or folder; default: next to the ONNX file, named by ``engine_filename``.
        workspace_mb: builder workspace memory pool limit in MiB.
        min_shape, opt_shape, max_shape: image (H, W) range of a dynamic graph's profile.
        timing_cache: tactic timing cache file, read if present and written after the build;
            default ``timing.<gpu>.sm<cc>.trt<ver>.cache`` next to the ONNX file.
        calibration: INT8 frames, an ``efc_core.export.calibration.CalibrationSet``; the entropy
            calibrator is made here, on the build's device, after the precision check.
        calibration_cache: INT8 calibration cache; default ``<onnx stem>.int8.cache``. It is tied
            to the ONNX hash and input shape (``calibration.calibration_identity``).
        calibrator: an already made ``IInt8Calibrator`` instead of ``calibration`` (advanced).
        force: rebuild even when an engine with a matching sidecar exists.
        device: CUDA device index (CUDA numbering) the engine is built for and on.
        tf32: allow TF32 for FP32 layers (TensorRT's default); recorded in the sidecar.
        detailed_profile: build with ``ProfilingVerbosity.DETAILED`` so that ``IEngineInspector``
            reports per-layer precisions (``engine_layer_information``).

    Returns:
        Path of the engine; its sidecar is ``<engine>.json``.

    Raises:
        ValueError: bad arguments. ModelError: this TensorRT cannot build ``precision``, the ONNX
        does not parse, or an existing engine of another key is in the way (``force``).
        BackendError: no TensorRT / GPU / CUDA layer, or the build failed.
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX model {onnx_path} not found")
    if precision == "int8" and calibration is None and calibrator is None:
        raise ValueError("precision 'int8' needs calibration frames (efc_core.export.calibration.CalibrationSet)")
    if workspace_mb <= 0:
        raise ValueError(f"workspace_mb must be positive, got {workspace_mb}")
    if not isinstance(device, int) or device < 0:
        raise ValueError(f"device must be a CUDA device index >= 0, got {device!r}")
    shape_args = (min_shape, opt_shape, max_shape)
    if any(shape is not None for shape in shape_args) and any(shape is None for shape in shape_args):
        raise ValueError(f"give all of min/opt/max shapes or none, got {shape_args}")
    shapes = dict(zip(("min", "opt", "max"), shape_args)) if min_shape is not None else None

    trt = _import_tensorrt()
    features = TensorRTFeatures.from_version(trt.__version__)
    features.check_precision(precision)  # before any calibrator or GPU work: TensorRT 11 refuses here
    manifest = manifest_dict_for(onnx_path)
    build_log = BuildLog(onnx_path.name)
    with _cuda_device(device, required=device != 0 or precision == "int8") as cuda:
        if cuda is None:
            LOG.warning("no CUDA Python layer (cuda-python / pycuda): building on CUDA device 0 as TensorRT sees it")
            gpu_name, capability = _nvidia_smi_gpu(device)
        else:
            gpu_name, capability = cuda.device_info()
        onnx_sha = file_sha256(onnx_path)
        key = EngineKey(gpu_name, capability, trt.__version__, precision, onnx_sha)
        identity = None
        if precision == "int8" and calibration is not None:
            from efc_core.export.calibration import calibration_identity

            identity = calibration_identity(onnx_sha, calibration, trt.__version__)
        requested = build_options(min_shape=min_shape, opt_shape=opt_shape, max_shape=max_shape, tf32=tf32,
                                  workspace_mb=workspace_mb,
                                  calibration=calibration.digest() if identity is not None else None)

        stem = onnx_path.name.removesuffix(".onnx")
        filename = engine_filename(stem, gpu_name, capability, trt.__version__, precision)
        engine_path = onnx_path.with_name(filename) if output is None else Path(output)
        if engine_path.is_dir():
            engine_path = engine_path / filename
        if engine_path.is_file() and not force:
            sidecar = read_sidecar(engine_path)
            problems = key_mismatches(sidecar, key)
            if problems:
                raise ModelError(f"engine {engine_path} exists but does not match: {'; '.join(problems)}; "
                                 "pass --force to rebuild")
            changed = build_option_mismatches(sidecar, requested)
            if not changed:
                LOG.info("engine %s is up to date; not rebuilding (force=True rebuilds)", engine_path)
                return engine_path
            LOG.info("rebuilding %s: %s", engine_path, "; ".join(changed))

        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        with build_log.phase("parsing ONNX"):
            network, _parser = _parse_onnx(trt, builder, onnx_path, features, logger)
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
        if detailed_profile:
            config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
        if not tf32:
            config.clear_flag(trt.BuilderFlag.TF32)
        if precision in ("fp16", "int8"):
            if not builder.platform_has_fast_fp16:
                LOG.warning("%s has no fast FP16; the FP16 engine may be slower than FP32", gpu_name)
            config.set_flag(trt.BuilderFlag.FP16)
            config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
            import onnx  # graph analysis only: which nodes compute grids and flow

            with build_log.phase("pinning grid and flow layers"):
                report = pin_precisions(trt, network, precision, onnx.load(str(onnx_path), load_external_data=False))
            LOG.info("pinned %d layers to FP32 and %d to FP16", report.count("fp32"), report.count("fp16"))
        profile = _add_profile(trt, builder, config, network, shapes, int(manifest.get("pad_multiple", 64)))
        made_calibrator = None
        if precision == "int8":
            if calibrator is None:
                from efc_core.export.calibration import make_entropy_calibrator

                cache_file = calibration_cache or onnx_path.with_name(f"{stem}.int8.cache")
                calibrator = made_calibrator = make_entropy_calibrator(trt, cuda, calibration, cache_file, identity)
            config.set_flag(trt.BuilderFlag.INT8)
            config.int8_calibrator = calibrator
            if profile is not None:
                config.set_calibration_profile(profile)

        cache_path = Path(timing_cache) if timing_cache else onnx_path.with_name(
            timing_cache_filename(gpu_name, capability, trt.__version__)
        )
        cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
        monitor = make_progress_monitor(trt, build_log)
        if monitor is not None:
            config.progress_monitor = monitor
        try:
            with build_log.phase(f"building the {precision} engine for {gpu_name} (minutes on a Jetson)"):
                if monitor is None:
                    with build_log.heartbeat("building"):
                        serialized = builder.build_serialized_network(network, config)
                else:
                    serialized = builder.build_serialized_network(network, config)
        finally:
            if made_calibrator is not None:
                made_calibrator.release()
        if serialized is None:
            raise BackendError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
        with build_log.phase("writing engine, timing cache and sidecar"):
            engine_path.parent.mkdir(parents=True, exist_ok=True)
            engine_path.write_bytes(bytes(serialized))
            cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
            write_sidecar(engine_path, key, manifest, tf32=tf32, build=requested)
    LOG.info("wrote %s (%s, TensorRT %s, %s) in %.1f s", engine_path, gpu_name, trt.__version__, precision,
             build_log.total_s)
    return engine_path


def engine_layer_information(engine_path: str | Path, device: int = 0) -> list[dict[str, Any]]:
    """Per-layer information of a built engine from ``IEngineInspector`` (JSON format): one dict
    per layer (``Name``, ``LayerType``, ``Inputs``/``Outputs`` with ``Format/Datatype``...). Full
    detail needs an engine built with ``detailed_profile=True``; otherwise only names come back.
    """
    trt = _import_tensorrt()
    with _cuda_device(device, required=device != 0):
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if engine is None:
            raise ModelError(f"TensorRT could not deserialise {engine_path}")
        inspector = engine.create_engine_inspector()
        text = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
        del inspector, engine
    layers = json.loads(text).get("Layers", [])
    return [layer if isinstance(layer, dict) else {"Name": str(layer)} for layer in layers]
