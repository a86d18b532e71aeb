"""A small CUDA interface for the TensorRT path: device and pinned buffers, streams, events, graphs.

Two implementations behind one class interface (``CudaLayer``):

* ``CudaPythonLayer``: NVIDIA's ``cuda-python`` / ``cuda-bindings`` runtime API
  (``cuda.bindings.runtime``; ``cuda.cudart`` in releases before 12.6). The primary layer: it is
  maintained by NVIDIA, installs from PyPI as a wheel, and has stream capture, so
  ``capture_graph`` records ``execute_async_v3`` into a CUDA graph
  (``cudaStreamBeginCapture`` / ``cudaStreamEndCapture`` / ``cudaGraphInstantiate`` /
  ``cudaGraphLaunch``).
* ``PyCudaLayer``: ``pycuda`` (driver API), the fallback where only pycuda is installed. No
  released pycuda exposes stream capture (``pycuda.driver.Stream`` has ``synchronize``,
  ``is_done``, ``wait_for_event`` and ``handle`` only), so it reports ``supports_graphs = False``.

Threading: a CUDA context is current on one thread at a time. ``activate()`` makes the device
current on the calling thread (``cudaSetDevice``; pycuda: push the device's primary context, the
one the CUDA runtime and so TensorRT use) and that thread becomes the layer's owner; every later
call checks it runs on the owner and raises ``BackendError`` otherwise. ``close()`` (on the owner)
frees what is left and releases the device.

Nothing here imports torch; the CUDA libraries are imported when a layer is opened.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from efc_core.errors import BackendError

LOG = logging.getLogger(__name__)

#: Names accepted by ``open_cuda_layer(prefer=...)``.
CUDA_LAYERS: tuple[str, ...] = ("auto", "cuda-python", "pycuda")

INSTALL_HINT = ("install cuda-python (`pip install 'cuda-python>=12,<13'` for CUDA 12 / JetPack 6, "
                "`cuda-python>=13` for CUDA 13) or pycuda (built from source against the CUDA toolkit)")


@dataclass
class DeviceBuffer:
    """``nbytes`` of device memory at address ``ptr`` (an int TensorRT accepts)."""

    ptr: int
    nbytes: int
    handle: Any = None  # the library's own object (pycuda DeviceAllocation), kept alive here


@dataclass
class Stream:
    """A non-default CUDA stream; ``handle`` is the int TensorRT's ``execute_async_v3`` takes."""

    handle: int
    raw: Any


@dataclass
class Event:
    raw: Any


@dataclass
class Graph:
    """An instantiated CUDA graph (``cudaGraphExec_t``), launched with ``CudaLayer.launch_graph``."""

    raw: Any


class CudaLayer:
    """Common interface; see the module docstring. Subclasses implement the ``_``-less methods."""

    name = "none"
    supports_graphs = False

    def __init__(self, device: int) -> None:
        if not isinstance(device, int) or device < 0:
            raise ValueError(f"CUDA device index must be an int >= 0, got {device!r}")
        self.device = device
        self._owner: int | None = None

    # --- ownership ----------------------------------------------------------------------------

    def _claim(self) -> None:
        self._owner = threading.get_ident()

    def check_thread(self) -> None:
        """``BackendError`` unless called on the thread that ``activate``-d this layer."""
        if self._owner is None:
            raise BackendError(f"{self.name}: CUDA device {self.device} is not active (call activate() first)")
        if threading.get_ident() != self._owner:
            raise BackendError(f"{self.name}: CUDA call from thread {threading.current_thread().name!r}, which "
                               f"does not hold the context of device {self.device}; marshal it to the CUDA thread")

    # --- interface ----------------------------------------------------------------------------

    def activate(self) -> None:
        """Make the device current on this thread; this thread becomes the owner."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the device on the owner thread (buffers must have been freed)."""
        raise NotImplementedError

    def device_info(self) -> tuple[str, str]:
        """(name, compute capability ``"major.minor"``) of the device."""
        raise NotImplementedError

    def alloc_device(self, nbytes: int) -> DeviceBuffer:
        raise NotImplementedError

    def free_device(self, buffer: DeviceBuffer) -> None:
        raise NotImplementedError

    def alloc_pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A page-locked host array of ``shape`` / ``dtype`` (async copies need pinned memory)."""
        raise NotImplementedError

    def free_pinned(self, array: np.ndarray) -> None:
        raise NotImplementedError

    def create_stream(self) -> Stream:
        raise NotImplementedError

    def destroy_stream(self, stream: Stream) -> None:
        raise NotImplementedError

    def copy_to_device(self, dst: DeviceBuffer, src: np.ndarray, stream: Stream) -> None:
        """Asynchronous host -> device copy of ``src`` (pinned, C-contiguous) on ``stream``."""
        raise NotImplementedError

    def copy_to_host(self, dst: np.ndarray, src: DeviceBuffer, stream: Stream) -> None:
        """Asynchronous device -> host copy into ``dst`` (pinned, C-contiguous) on ``stream``."""
        raise NotImplementedError

    def synchronize(self, stream: Stream) -> None:
        raise NotImplementedError

    def create_event(self) -> Event:
        raise NotImplementedError

    def record_event(self, event: Event, stream: Stream) -> None:
        raise NotImplementedError

    def elapsed_ms(self, start: Event, end: Event) -> float:
        """Milliseconds between two recorded events (waits for ``end``)."""
        raise NotImplementedError

    def destroy_event(self, event: Event) -> None:
        raise NotImplementedError

    def capture_graph(self, stream: Stream, enqueue: Callable[[], None]) -> Graph:
        """Record what ``enqueue()`` puts on ``stream`` into an instantiated CUDA graph."""
        raise BackendError(f"{self.name} has no CUDA stream capture; CUDA graphs need cuda-python")

    def launch_graph(self, graph: Graph, stream: Stream) -> None:
        raise BackendError(f"{self.name} has no CUDA graphs")

    def destroy_graph(self, graph: Graph) -> None:
        pass


def _check_size(nbytes: int) -> int:
    if not isinstance(nbytes, (int, np.integer)) or nbytes < 0:
        raise ValueError(f"buffer size must be an int >= 0 bytes, got {nbytes!r}")
    return max(1, int(nbytes))  # zero-size tensors still get an address


class CudaPythonLayer(CudaLayer):
    """``cuda-python`` runtime API (``cuda.bindings.runtime``)."""

    name = "cuda-python"
    supports_graphs = True

    def __init__(self, device: int = 0, cudart: Any = None) -> None:
        super().__init__(device)
        self._rt = cudart if cudart is not None else import_cudart()
        self._pinned: dict[int, int] = {}  # array data address -> cudaMallocHost pointer

    def _call(self, what: str, result: Any) -> Any:
        """Check a ``(cudaError_t, *values)`` result; return the value(s), ``BackendError`` on error."""
        error, values = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
        if error != self._rt.cudaError_t.cudaSuccess:
            name = getattr(error, "name", str(error))
            raise BackendError(f"{what} failed on CUDA device {self.device}: {name}")
        if not values:
            return None
        return values[0] if len(values) == 1 else values

    def activate(self) -> None:
        self._call(f"cudaSetDevice({self.device})", self._rt.cudaSetDevice(self.device))
        self._claim()

    def close(self) -> None:
        if self._owner is None:
            return
        self.check_thread()
        for pointer in list(self._pinned.values()):
            self._rt.cudaFreeHost(pointer)
        self._pinned.clear()
        self._owner = None

    def device_info(self) -> tuple[str, str]:
        self.check_thread()
        properties = self._call("cudaGetDeviceProperties", self._rt.cudaGetDeviceProperties(self.device))
        name = properties.name
        if isinstance(name, (bytes, bytearray)):
            name = bytes(name).split(b"\0", 1)[0].decode(errors="replace")
        return str(name).strip(), f"{properties.major}.{properties.minor}"

    def alloc_device(self, nbytes: int) -> DeviceBuffer:
        self.check_thread()
        size = _check_size(nbytes)
        pointer = self._call(f"cudaMalloc({size})", self._rt.cudaMalloc(size))
        return DeviceBuffer(int(pointer), size)

    def free_device(self, buffer: DeviceBuffer) -> None:
        self.check_thread()
        self._call("cudaFree", self._rt.cudaFree(buffer.ptr))

    def alloc_pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        self.check_thread()
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        size = _check_size(count * dtype.itemsize)
        pointer = int(self._call(f"cudaMallocHost({size})", self._rt.cudaMallocHost(size)))
        raw = (ctypes.c_byte * size).from_address(pointer)
        array = np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)
        self._pinned[array.ctypes.data] = pointer
        return array

    def free_pinned(self, array: np.ndarray) -> None:
        self.check_thread()
        pointer = self._pinned.pop(array.ctypes.data, None)
        if pointer is not None:
            self._call("cudaFreeHost", self._rt.cudaFreeHost(pointer))

    def create_stream(self) -> Stream:
        self.check_thread()
        raw = self._call("cudaStreamCreateWithFlags",
                         self._rt.cudaStreamCreateWithFlags(self._rt.cudaStreamNonBlocking))
        return Stream(int(raw), raw)

    def destroy_stream(self, stream: Stream) -> None:
        self.check_thread()
        self._call("cudaStreamDestroy", self._rt.cudaStreamDestroy(stream.raw))

    def copy_to_device(self, dst: DeviceBuffer, src: np.ndarray, stream: Stream) -> None:
        self.check_thread()
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call("cudaMemcpyAsync(host->device)",
                   self._rt.cudaMemcpyAsync(dst.ptr, src.ctypes.data, src.nbytes, kind, stream.raw))

    def copy_to_host(self, dst: np.ndarray, src: DeviceBuffer, stream: Stream) -> None:
        self.check_thread()
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call("cudaMemcpyAsync(device->host)",
                   self._rt.cudaMemcpyAsync(dst.ctypes.data, src.ptr, dst.nbytes, kind, stream.raw))

    def synchronize(self, stream: Stream) -> None:
        self.check_thread()
        self._call("cudaStreamSynchronize", self._rt.cudaStreamSynchronize(stream.raw))

    def create_event(self) -> Event:
        self.check_thread()
        return Event(self._call("cudaEventCreate", self._rt.cudaEventCreate()))

    def record_event(self, event: Event, stream: Stream) -> None:
        self.check_thread()
        self._call("cudaEventRecord", self._rt.cudaEventRecord(event.raw, stream.raw))

    def elapsed_ms(self, start: Event, end: Event) -> float:
        self.check_thread()
        self._call("cudaEventSynchronize", self._rt.cudaEventSynchronize(end.raw))
        return float(self._call("cudaEventElapsedTime", self._rt.cudaEventElapsedTime(start.raw, end.raw)))

    def destroy_event(self, event: Event) -> None:
        self.check_thread()
        self._call("cudaEventDestroy", self._rt.cudaEventDestroy(event.raw))

    def capture_graph(self, stream: Stream, enqueue: Callable[[], None]) -> Graph:
        """Capture ``enqueue()`` on ``stream``. Capture is always ended (in ``finally``), so a
        failure inside ``enqueue`` cannot leave the stream in capture mode; the error is re-raised.
        """
        self.check_thread()
        rt = self._rt
        mode = rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self._call("cudaStreamBeginCapture", rt.cudaStreamBeginCapture(stream.raw, mode))
        end_result: Any = None
        try:
            enqueue()
        finally:
            end_result = rt.cudaStreamEndCapture(stream.raw)
        graph = self._call("cudaStreamEndCapture", end_result)
        try:
            # ...WithFlags(graph, flags): the same signature from CUDA 11.4 to 13, where plain
            # cudaGraphInstantiate changed its arguments in CUDA 12.
            executable = self._call("cudaGraphInstantiateWithFlags", rt.cudaGraphInstantiateWithFlags(graph, 0))
        finally:
            rt.cudaGraphDestroy(graph)  # the instantiated graph does not need its template
        return Graph(executable)

    def launch_graph(self, graph: Graph, stream: Stream) -> None:
        self.check_thread()
        self._call("cudaGraphLaunch", self._rt.cudaGraphLaunch(graph.raw, stream.raw))

    def destroy_graph(self, graph: Graph) -> None:
        self.check_thread()
        self._call("cudaGraphExecDestroy", self._rt.cudaGraphExecDestroy(graph.raw))


class PyCudaLayer(CudaLayer):
    """``pycuda`` driver API with the device's primary context pushed on the owner thread."""

    name = "pycuda"
    supports_graphs = False

    def __init__(self, device: int = 0, driver: Any = None) -> None:
        super().__init__(device)
        self._cuda = driver if driver is not None else import_pycuda()
        self._context: Any = None
        self._gpu: Any = None

    def activate(self) -> None:
        cuda = self._cuda
        cuda.init()
        if not 0 <= self.device < cuda.Device.count():
            raise BackendError(f"CUDA device {self.device} does not exist ({cuda.Device.count()} visible)")
        self._gpu = cuda.Device(self.device)
        self._context = self._gpu.retain_primary_context()
        self._context.push()
        self._claim()

    def close(self) -> None:
        if self._owner is None:
            return
        self.check_thread()
        self._context.pop()
        self._context.detach()
        self._context = None
        self._owner = None

    def device_info(self) -> tuple[str, str]:
        self.check_thread()
        major, minor = self._gpu.compute_capability()
        return self._gpu.name(), f"{major}.{minor}"

    def alloc_device(self, nbytes: int) -> DeviceBuffer:
        self.check_thread()
        size = _check_size(nbytes)
        allocation = self._cuda.mem_alloc(size)
        return DeviceBuffer(int(allocation), size, allocation)

    def free_device(self, buffer: DeviceBuffer) -> None:
        self.check_thread()
        if buffer.handle is not None:
            buffer.handle.free()
            buffer.handle = None

    def alloc_pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        self.check_thread()
        return self._cuda.pagelocked_empty(tuple(shape), np.dtype(dtype))

    def free_pinned(self, array: np.ndarray) -> None:
        self.check_thread()
        base = getattr(array, "base", None)
        if base is not None and hasattr(base, "free"):
            base.free()

    def create_stream(self) -> Stream:
        self.check_thread()
        raw = self._cuda.Stream()
        return Stream(int(raw.handle), raw)

    def destroy_stream(self, stream: Stream) -> None:
        self.check_thread()  # pycuda destroys streams when the object goes away

    def copy_to_device(self, dst: DeviceBuffer, src: np.ndarray, stream: Stream) -> None:
        self.check_thread()
        self._cuda.memcpy_htod_async(dst.ptr, src, stream.raw)

    def copy_to_host(self, dst: np.ndarray, src: DeviceBuffer, stream: Stream) -> None:
        self.check_thread()
        self._cuda.memcpy_dtoh_async(dst, src.ptr, stream.raw)

    def synchronize(self, stream: Stream) -> None:
        self.check_thread()
        stream.raw.synchronize()

    def create_event(self) -> Event:
        self.check_thread()
        return Event(self._cuda.Event())

    def record_event(self, event: Event, stream: Stream) -> None:
        self.check_thread()
        event.raw.record(stream.raw)

    def elapsed_ms(self, start: Event, end: Event) -> float:
        self.check_thread()
        end.raw.synchronize()
        return float(start.raw.time_till(end.raw))

    def destroy_event(self, event: Event) -> None:
        self.check_thread()


def import_cudart() -> Any:
    """``cuda.bindings.runtime`` (cuda-python >= 12.6) or ``cuda.cudart`` (older); ``ImportError``."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        from cuda import cudart as runtime  # cuda-python 11.8 / 12.0 - 12.5
    return runtime


def import_pycuda() -> Any:
    """``pycuda.driver`` (never ``pycuda.autoinit``: that binds a context to the importing thread)."""
    import pycuda.driver as driver

    return driver


def open_cuda_layer(device: int = 0, prefer: str = "auto") -> CudaLayer:
    """A CUDA layer for ``device`` (not yet activated): cuda-python first, pycuda as the fallback.

    Args:
        device: CUDA device index (CUDA's numbering: ``CUDA_VISIBLE_DEVICES`` applied, fastest first
            unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``).
        prefer: ``"auto"``, ``"cuda-python"`` or ``"pycuda"``.

    Raises:
        ValueError: unknown ``prefer``. BackendError: the requested library (or, for ``auto``, both)
        is missing, with how to install them.
    """
    if prefer not in CUDA_LAYERS:
        raise ValueError(f"unknown CUDA layer {prefer!r}; expected one of {CUDA_LAYERS}")
    problems = []
    if prefer in ("auto", "cuda-python"):
        try:
            return CudaPythonLayer(device, import_cudart())
        except ImportError as error:
            problems.append(f"cuda-python: {error}")
    if prefer in ("auto", "pycuda"):
        try:
            return PyCudaLayer(device, import_pycuda())
        except ImportError as error:
            problems.append(f"pycuda: {error}")
    raise BackendError(f"no CUDA Python layer available ({'; '.join(problems)}); {INSTALL_HINT}")


def cuda_device_count() -> int:
    """Number of CUDA devices this process can use; 0 without a driver, a GPU or a CUDA layer."""
    try:
        cudart = import_cudart()
    except ImportError:
        cudart = None
    if cudart is not None:
        result = cudart.cudaGetDeviceCount()
        return int(result[1]) if result[0] == cudart.cudaError_t.cudaSuccess else 0
    try:
        driver = import_pycuda()
        driver.init()
        return int(driver.Device.count())
    except Exception:  # noqa: BLE001  # pycuda raises its own error types for "no driver"
        return 0
