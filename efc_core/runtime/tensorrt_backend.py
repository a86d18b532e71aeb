"""TensorRT backend (TensorRT 8.5 - 10.x name-based tensor API; 11.x for FP32 engines).

CUDA goes through ``efc_core.runtime.cuda_layer``: cuda-python (``cuda-bindings``) when installed,
pycuda as the fallback. Threading: ROS callbacks run on executor threads, and a CUDA context is
current on one thread at a time ("no currently active context" with ``pycuda.autoinit``). So one
dedicated worker thread owns everything CUDA: it activates the device (``cudaSetDevice`` /
the primary context pushed, the context the CUDA runtime and so TensorRT uses), deserialises the
engines, and runs every inference; public methods marshal their call to it through a
single-worker executor (a thread + queue) and wait for the result.

Per engine: one execution context, one non-default stream, page-locked host buffers and device
buffers that are (re)allocated only when input shapes change. ``cuda_graph=True`` captures
``execute_async_v3`` into a CUDA graph at each new set of shapes and replays it with one launch;
capture needs cuda-python (no released pycuda has stream capture). Where capture is unavailable
or fails the backend runs without graphs and says so in a warning; ``cuda_graph_active`` reports
what actually runs.

Engine files: ``X[.encoder|.decoder].<gpu>.sm<cc>.trt<ver>.<precision>.engine`` with the sidecar
``<engine>.json`` written by ``efc_core.export.tensorrt_build`` (keys gpu_name,
compute_capability, tensorrt_version, precision, onnx_sha256, manifest, build options). The key is
checked *before* deserialising: engines are not portable across GPUs or TensorRT releases. For
streaming, pass the encoder engine; the decoder engine is the same name with ``.decoder.``.
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
from efc_core.runtime.cuda_layer import CUDA_LAYERS, CudaLayer, DeviceBuffer, Graph, open_cuda_layer

LOG = logging.getLogger(__name__)


def _import_tensorrt() -> Any:
    """``tensorrt``, or ``BackendError`` saying where it comes from."""
    try:
        import tensorrt as trt
    except ImportError as error:
        raise BackendError(f"backend 'tensorrt' needs the TensorRT Python package ({error}); it ships with "
                           "JetPack / the TensorRT tarball (pip: tensorrt-cu12<11 on x86); use backend "
                           "'onnxruntime' without it") from None
    return trt


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
    from efc_core.runtime.engine_plan import EngineKey, file_sha256, key_mismatches, read_sidecar

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

    def __init__(self, trt: Any, cuda: CudaLayer, runtime: Any, path: Path, sidecar: dict[str, Any],
                 use_cuda_graph: bool) -> None:
        self._trt, self._cuda, self.path = trt, cuda, path
        self.precision = str(sidecar["precision"])
        self.tf32 = bool(sidecar.get("tf32", True))  # TensorRT's default when an old sidecar lacks it
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise ModelError(f"TensorRT could not deserialise {path} (corrupt, or built by another release)")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise BackendError(f"{path}: TensorRT could not create an execution context (out of GPU memory?)")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.stream = cuda.create_stream()
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._host: dict[str, np.ndarray] = {}
        self._device: dict[str, DeviceBuffer] = {}
        self.use_cuda_graph = use_cuda_graph and cuda.supports_graphs
        if use_cuda_graph and not cuda.supports_graphs:
            LOG.warning("cuda_graph requested, but the CUDA layer %s has no stream capture: running %s "
                        "without CUDA graphs (install cuda-python for graphs)", cuda.name, path.name)
        self._graph: Graph | None = None
        self.graph_launches = 0
        self.direct_launches = 0

    def _free_buffers(self) -> None:
        self._drop_graph()
        for buffer in self._device.values():
            self._cuda.free_device(buffer)
        for array in self._host.values():
            self._cuda.free_pinned(array)
        self._device.clear()
        self._host.clear()
        self._shapes = {}

    def _drop_graph(self) -> None:
        if self._graph is not None:
            self._cuda.destroy_graph(self._graph)
            self._graph = None

    def _bind(self, shapes: dict[str, tuple[int, ...]]) -> None:
        """Set input shapes, (re)allocate buffers and bind their addresses (shape changes only)."""
        self._free_buffers()  # also drops a graph captured with the old addresses
        for name, shape in shapes.items():
            if not self.context.set_input_shape(name, shape):
                raise BackendError(f"{self.path}: input {name!r} shape {shape} is outside the engine's "
                                   "optimisation profile (rebuild with a wider --min-size/--max-size)")
        for name in self.inputs + self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            if any(dim < 0 for dim in shape):
                raise BackendError(f"{self.path}: shape of {name!r} is unresolved ({shape})")
            self._host[name] = self._cuda.alloc_pinned(shape, self.dtypes[name])
            self._device[name] = self._cuda.alloc_device(self._host[name].nbytes)
            if not self.context.set_tensor_address(name, self._device[name].ptr):
                raise BackendError(f"{self.path}: TensorRT refused the buffer address of {name!r}")
        self._shapes = dict(shapes)

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self.stream.handle):
            raise BackendError(f"{self.path}: execute_async_v3 failed (see the TensorRT log)")

    def _launch(self) -> None:
        if self.use_cuda_graph and self._graph is None:
            self._capture()
        if self._graph is not None:
            self._cuda.launch_graph(self._graph, self.stream)
            self.graph_launches += 1
            return
        self._enqueue()
        self.direct_launches += 1

    def _capture(self) -> None:
        # TensorRT needs one ordinary enqueue after a shape change before capture (deferred
        # allocations happen there, and they are not allowed while capturing).
        self._enqueue()
        self._cuda.synchronize(self.stream)
        try:
            self._graph = self._cuda.capture_graph(self.stream, self._enqueue)  # ends capture in finally
        except Exception as error:  # noqa: BLE001  # any capture failure: run without graphs, say so
            LOG.warning("CUDA graph capture failed for %s (%s); running without graphs", self.path.name, error)
            self.use_cuda_graph = False
            self._graph = None

    def release(self) -> None:
        """Free graph and buffers, the stream, then the execution context, then the engine."""
        self._free_buffers()
        self._cuda.destroy_stream(self.stream)
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
            self._cuda.copy_to_device(self._device[name], self._host[name], self.stream)
        self._launch()
        for name in self.outputs:
            self._cuda.copy_to_host(self._host[name], self._device[name], self.stream)
        self._cuda.synchronize(self.stream)
        return {name: self._host[name].copy() for name in self.outputs}


class TensorRTBackend:
    """Runs TensorRT engines built by ``efc_core.export.tensorrt_build``.

    Args:
        model_path: the engine (single graph, or the encoder engine of a streaming pair).
        device: CUDA device index (CUDA numbering, as ``efc build-engine --device``).
        precision: refuse engines of another precision ("fp32" / "fp16" / "int8"); None accepts any.
        cuda_graph: capture and replay CUDA graphs at fixed shapes (needs cuda-python).
        cuda_layer: "auto" (cuda-python, else pycuda), "cuda-python" or "pycuda".
    """

    name = "tensorrt"

    def __init__(self, model_path: str | Path, *, device: int = 0, precision: str | None = None,
                 cuda_graph: bool = False, cuda_layer: str = "auto") -> None:
        if cuda_layer not in CUDA_LAYERS:
            raise ValueError(f"cuda_layer must be one of {CUDA_LAYERS}, got {cuda_layer!r}")
        if not isinstance(device, int) or device < 0:
            raise ValueError(f"device must be a CUDA device index >= 0, got {device!r}")
        trt = _import_tensorrt()
        self._trt = trt
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
        self._cuda = open_cuda_layer(device, cuda_layer)
        self._executor: ThreadPoolExecutor | None = ThreadPoolExecutor(max_workers=1, thread_name_prefix="efc-tensorrt")
        self._runners: dict[str, _EngineRunner] = {}
        try:
            self._call(self._open, paths, precision, cuda_graph)
        except BaseException:
            self.close()
            raise
        precisions = {runner.precision for runner in self._runners.values()}
        self.precision = precisions.pop() if len(precisions) == 1 else "mixed"
        #: FP32 layers may run in TF32 (TensorRT's default on Ampere and newer: Orin, Hopper).
        self.tf32 = any(runner.tf32 for runner in self._runners.values())
        self.supports_streaming = "encoder" in self._runners
        self.cuda_layer = self._cuda.name

    @property
    def cuda_graph_active(self) -> bool:
        """Whether inference replays CUDA graphs (False when not requested, unsupported or failed)."""
        return bool(self._runners) and all(runner.use_cuda_graph for runner in self._runners.values())

    def launch_counts(self) -> dict[str, dict[str, int]]:
        """Per engine, how many runs replayed a CUDA graph and how many enqueued directly."""
        return {kind: {"graph": r.graph_launches, "direct": r.direct_launches} for kind, r in self._runners.items()}

    # --- the CUDA thread ---------------------------------------------------------------------

    def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run ``function`` on the CUDA thread and return its result (exceptions re-raised here)."""
        if self._executor is None:
            raise BackendError("tensorrt backend is closed")
        return self._executor.submit(function, *args).result()

    def _open(self, paths: dict[str, Path], precision: str | None, cuda_graph: bool) -> None:
        trt, cuda = self._trt, self._cuda
        cuda.activate()
        gpu_name, capability = cuda.device_info()
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        for kind, path in paths.items():
            sidecar = check_engine_key(path, self.manifest, gpu_name, capability, trt.__version__, precision)
            runner = _EngineRunner(trt, cuda, runtime, path, sidecar, cuda_graph)
            self._runners[kind] = runner
            try:
                self.manifest.check_graph_io(runner.inputs, runner.outputs, kind)
            except ModelError as error:
                raise ModelError(f"{path}: {error}") from None

    def _release(self) -> None:
        try:
            for runner in self._runners.values():  # freed here, while the CUDA context is current
                runner.release()
        finally:
            self._runners.clear()
            self._cuda.close()

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
