"""TensorRT backend (TensorRT 8.5 - 10.x name-based tensor API, pycuda).

Threading: ROS callbacks run on executor threads, and a CUDA context is current on one thread at
a time ("no currently active context" with ``pycuda.autoinit``). So one dedicated worker thread
owns everything CUDA: it makes the device's primary context current (the context the CUDA runtime,
and so TensorRT, uses), deserialises the engines, and runs every inference; public methods marshal
their call to it through a single-worker executor (a thread + queue) and wait for the result.

Per engine: one execution context, one non-default stream, page-locked host buffers and device
buffers that are (re)allocated only when input shapes change. Optional CUDA graph capture of
``execute_async_v3`` (``cuda_graph=True``) replays the whole network with one launch at fixed
shapes; it needs pycuda's stream capture (``Stream.begin_capture`` / ``end_capture``, pycuda
2022.2+) and falls back to plain execution, with a warning, where that is missing or fails.

Engine files: ``X[.encoder|.decoder].<gpu>.sm<cc>.trt<ver>.<precision>.engine`` with the sidecar
``<engine>.json`` written by ``efc_core.export.tensorrt_build`` (keys gpu_name,
compute_capability, tensorrt_version, precision, onnx_sha256, manifest). The key is checked
*before* deserialising: engines are not portable across GPUs or TensorRT releases. For streaming,
pass the encoder engine; the decoder engine is the same name with ``.decoder.``.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np

from efc_core.contract import INPUT_CUR, INPUT_IMAGE, INPUT_PREV
from efc_core.errors import BackendError, ModelError
from efc_core.manifest import Manifest, load_manifest
from efc_core.runtime.base import Features, ModelOutputs, check_finite, check_image_tensor, outputs_from_named

LOG = logging.getLogger(__name__)


def _import_gpu_stack() -> tuple[Any, Any]:
    """(tensorrt, pycuda.driver), or ``BackendError`` saying which is missing and why."""
    try:
        import tensorrt as trt
    except ImportError as error:
        raise BackendError(f"backend 'tensorrt' needs the TensorRT Python package ({error}); it ships with "
                           "JetPack / the TensorRT tarball; use backend 'onnxruntime' without it") from None
    try:
        import pycuda.driver as cuda
    except ImportError as error:
        raise BackendError(f"backend 'tensorrt' needs pycuda ({error}); pip install pycuda on the target") from None
    return trt, cuda


def engine_kind(engine_path: Path) -> str:
    """Which manifest graph an engine file holds, from its name (``X.encoder.<key>.engine``...)."""
    parts = engine_path.name.split(".")
    for kind in ("encoder", "decoder"):
        if kind in parts[1:-1]:
            return kind
    return "single"


def check_engine_key(engine_path: Path, manifest: Manifest, gpu_name: str, capability: str,
                     trt_version: str, precision: str | None = None) -> dict[str, Any]:
    """Compare the engine's sidecar with this machine; ``BackendError`` listing every mismatch
    (the engine cannot run here; the file itself is fine), ``ModelError`` when the sidecar is
    missing or unreadable.

    The ONNX hash is checked when the ONNX graph the engine came from is present (a stale engine
    after re-export); an engine shipped without its ONNX is accepted on the other fields.
    """
    from efc_core.export.tensorrt_plan import EngineKey, file_sha256, key_mismatches, read_sidecar

    sidecar = read_sidecar(engine_path)
    kind = engine_kind(engine_path)
    onnx_sha = sidecar["onnx_sha256"]
    if kind in manifest.graphs and manifest.graph_path(kind).is_file():
        onnx_sha = file_sha256(manifest.graph_path(kind))
    expected = EngineKey(gpu_name, capability, trt_version, precision or sidecar["precision"], onnx_sha)
    problems = key_mismatches(sidecar, expected)
    if problems:
        raise BackendError(f"engine {engine_path} does not fit this machine: {'; '.join(problems)}; "
                         "rebuild it here with the engine build CLI (`efc build-engine --force`)")
    return sidecar


class _EngineRunner:
    """One deserialised engine with its context, stream and buffers; used on the CUDA thread only."""

    def __init__(self, trt: Any, cuda: Any, runtime: Any, path: Path, precision: str, use_cuda_graph: bool) -> None:
        self._trt, self._cuda, self.path, self.precision = trt, cuda, path, precision
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise ModelError(f"TensorRT could not deserialise {path} (corrupt, or built by another release)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.stream = cuda.Stream()
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._host: dict[str, np.ndarray] = {}
        self._device: dict[str, Any] = {}
        self._use_cuda_graph = use_cuda_graph and hasattr(self.stream, "begin_capture")
        if use_cuda_graph and not self._use_cuda_graph:
            LOG.warning("this pycuda has no stream capture (needs 2022.2+); CUDA graphs disabled")
        self._graph_exec: Any = None

    def _bind(self, shapes: dict[str, tuple[int, ...]]) -> None:
        """Set input shapes, (re)allocate buffers and bind their addresses (shape changes only)."""
        for name, shape in shapes.items():
            if not self.context.set_input_shape(name, shape):
                raise BackendError(f"{self.path}: input {name!r} shape {shape} is outside the engine's "
                                   "optimisation profile (rebuild with a wider --min/--max shape)")
        for name in self.inputs + self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            if any(dim < 0 for dim in shape):
                raise BackendError(f"{self.path}: shape of {name!r} is unresolved ({shape})")
            self._host[name] = self._cuda.pagelocked_empty(shape, self.dtypes[name])
            self._device[name] = self._cuda.mem_alloc(max(1, self._host[name].nbytes))
            if not self.context.set_tensor_address(name, int(self._device[name])):
                raise BackendError(f"{self.path}: TensorRT refused the buffer address of {name!r}")
        self._shapes = dict(shapes)
        self._graph_exec = None  # captured with the old addresses

    def _launch(self) -> None:
        if self._use_cuda_graph:
            if self._graph_exec is None:
                self._capture()
            if self._graph_exec is not None:
                self._graph_exec.launch(self.stream)
                return
        if not self.context.execute_async_v3(self.stream.handle):
            raise BackendError(f"{self.path}: execute_async_v3 failed (see the TensorRT log)")

    def _capture(self) -> None:
        # TensorRT needs one ordinary enqueue after a shape change before capture (deferred setup).
        if not self.context.execute_async_v3(self.stream.handle):
            raise BackendError(f"{self.path}: execute_async_v3 failed before graph capture")
        self.stream.synchronize()
        try:
            self.stream.begin_capture()
            self.context.execute_async_v3(self.stream.handle)
            graph = self.stream.end_capture()
            self._graph_exec = graph.instance()
        except Exception as error:  # pycuda raises its own error types; fall back, don't fail
            LOG.warning("CUDA graph capture failed for %s (%s); running without graphs", self.path, error)
            self._use_cuda_graph = False
            self._graph_exec = None

    def release(self) -> None:
        """Free buffers, then the execution context, then the engine (TensorRT's required order)."""
        self._graph_exec = None
        self._device.clear()
        self._host.clear()
        self.context = None
        self.engine = None

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Copy inputs in, execute, copy outputs out; returns fresh arrays (buffers are reused)."""
        missing = sorted(set(self.inputs) - set(feeds))
        if missing:
            raise BackendError(f"{self.path}: missing inputs {missing}")
        shapes = {name: tuple(feeds[name].shape) for name in self.inputs}
        if shapes != self._shapes:
            self._bind(shapes)
        for name in self.inputs:
            np.copyto(self._host[name], feeds[name], casting="same_kind")
            self._cuda.memcpy_htod_async(self._device[name], self._host[name], self.stream)
        self._launch()
        for name in self.outputs:
            self._cuda.memcpy_dtoh_async(self._host[name], self._device[name], self.stream)
        self.stream.synchronize()
        return {name: self._host[name].copy() for name in self.outputs}


class TensorRTBackend:
    """Runs TensorRT engines built by ``efc_core.export.tensorrt_build``.

    Args:
        model_path: the engine (single graph, or the encoder engine of a streaming pair).
        device: CUDA device index.
        precision: refuse engines of another precision ("fp32" / "fp16" / "int8"); None accepts any.
        cuda_graph: capture and replay CUDA graphs at fixed shapes.
    """

    name = "tensorrt"

    def __init__(self, model_path: str | Path, *, device: int = 0, precision: str | None = None,
                 cuda_graph: bool = False) -> None:
        trt, cuda = _import_gpu_stack()
        self._trt, self._cuda = trt, cuda
        model_path = Path(model_path)
        if model_path.suffix.lower() != ".engine":
            raise ModelError(f"backend 'tensorrt' needs a .engine file, got {model_path} "
                             "(build one from the ONNX export with the engine build CLI)")
        self.manifest = load_manifest(model_path)
        kind = engine_kind(model_path)
        paths = {kind: model_path}
        if kind == "encoder":
            decoder = model_path.with_name(model_path.name.replace(".encoder.", ".decoder.", 1))
            if not decoder.is_file():
                raise ModelError(f"streaming engine {model_path} needs its decoder engine {decoder}")
            paths["decoder"] = decoder
        elif kind == "decoder":
            raise ModelError(f"{model_path} is a decoder engine; pass the encoder or single-graph engine")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="efc-tensorrt")
        self._context: Any = None
        self._runners: dict[str, _EngineRunner] = {}
        try:
            self._call(self._open, device, paths, precision, cuda_graph)
        except BaseException:
            self.close()
            raise
        sidecar_precisions = {self._runners[k].precision for k in self._runners}
        self.precision = sidecar_precisions.pop() if len(sidecar_precisions) == 1 else "mixed"
        self.supports_streaming = "encoder" in self._runners

    # --- the CUDA thread ---------------------------------------------------------------------

    def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run ``function`` on the CUDA thread and return its result (exceptions re-raised here)."""
        return self._executor.submit(function, *args).result()

    def _open(self, device: int, paths: dict[str, Path], precision: str | None, cuda_graph: bool) -> None:
        cuda, trt = self._cuda, self._trt
        cuda.init()
        gpu = cuda.Device(device)
        self._context = gpu.retain_primary_context()
        self._context.push()
        major, minor = gpu.compute_capability()
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        for kind, path in paths.items():
            sidecar = check_engine_key(path, self.manifest, gpu.name(), f"{major}.{minor}", trt.__version__, precision)
            runner = _EngineRunner(trt, cuda, runtime, path, sidecar["precision"], cuda_graph)
            try:
                self.manifest.check_graph_io(runner.inputs, runner.outputs, kind)
            except ModelError as error:
                raise ModelError(f"{path}: {error}") from None
            self._runners[kind] = runner

    def _release(self) -> None:
        for runner in self._runners.values():  # freed here, while the CUDA context is current
            runner.release()
        self._runners.clear()
        if self._context is not None:
            self._context.pop()
            self._context.detach()
            self._context = None

    def _run(self, kind: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if kind not in self._runners:
            raise BackendError(f"tensorrt backend has no {kind!r} engine loaded")
        return self._call(self._runners[kind].run, feeds)

    # --- Backend interface ---------------------------------------------------------------------

    def infer(self, prev: np.ndarray, cur: np.ndarray) -> ModelOutputs:
        check_image_tensor(prev, INPUT_PREV, self.manifest)
        check_image_tensor(cur, INPUT_CUR, self.manifest)
        if "single" not in self._runners:
            return self.decode(self.encode(prev), self.encode(cur))
        prev_name, cur_name = self.manifest.input_names
        arrays = self._run("single", {prev_name: prev, cur_name: cur})
        return outputs_from_named(arrays, self.manifest, self.name, cur.shape[2:])

    def encode(self, image: np.ndarray) -> Features:
        check_image_tensor(image, INPUT_IMAGE, self.manifest)
        arrays = self._run("encoder", {INPUT_IMAGE: image})
        for name in self.manifest.feature_names:
            check_finite(arrays[name], name, self.name)
        return tuple(arrays[name] for name in self.manifest.feature_names)

    def decode(self, prev_features: Features, cur_features: Features) -> ModelOutputs:
        names = self.manifest.feature_names
        feeds = {f"{INPUT_PREV}_{n}": f for n, f in zip(names, prev_features)}
        feeds.update({f"{INPUT_CUR}_{n}": f for n, f in zip(names, cur_features)})
        return outputs_from_named(self._run("decoder", feeds), self.manifest, self.name)

    def close(self) -> None:
        executor = getattr(self, "_executor", None)
        if executor is None:
            return
        try:
            executor.submit(self._release).result()
        finally:
            executor.shutdown(wait=True)
            self._executor = None
