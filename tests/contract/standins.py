"""Strict stand-ins for ``tensorrt``, ``cuda.bindings.runtime`` and ``pycuda.driver``, generated
from the recorded API surface (``api_surface.json``, see ``record_api.py``). For call-contract tests.

What they check (and what a real install would also reject, only later, on a robot):

* every module attribute, class member, property write and enum member against the recorded
  release: a name the release lacks raises ``AttributeError`` naming the release;
* every call's arguments against the recorded signatures (positional count, keyword names,
  required arguments, every pybind overload);
* every TensorRT and CUDA call that needs a CUDA context runs on a thread that made the device
  current (``cudaSetDevice`` / a pushed pycuda context); this is *stricter* than the CUDA runtime,
  which would silently use device 0, and catches work done on the wrong thread or device;
* TensorRT rules the code must respect: explicit-batch networks before 10, a profile for
  dynamic inputs, an ordinary enqueue after a shape change before CUDA graph capture, no
  synchronisation inside capture, bound addresses that are device allocations large enough.

What they are not: TensorRT. A "built engine" is a JSON plan that remembers the ONNX file; its
``execute_async_v3`` computes the outputs with ONNX Runtime from the bytes in the bound device
buffers, so tests can check which buffer went where. Nothing here says anything about TensorRT's
numerics, tactics, speed or the precision it really picks. These are call-contract tests, never
inference tests.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import json
import re
import sys
import threading
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

SURFACE_PATH = Path(__file__).with_name("api_surface.json")
SURFACE: dict[str, Any] = json.loads(SURFACE_PATH.read_text())

#: Versions the contract tests run against: label -> (recorded TensorRT surface, cuda-bindings surface).
TENSORRT_VERSIONS: dict[str, tuple[str, str]] = {
    "8.5.2": ("8.5.2", "12.9.4"),
    "8.6.1": ("8.6.1", "12.9.4"),
    "10.3.0": ("10.3.0", "12.9.4"),
    "11.4.0": ("11.4.0.106", "13.5.0"),
}


class ContractViolation(AssertionError):
    """The code under test broke a rule of the real API (wrong thread, bad address, ...)."""


# ----------------------------------------------------------------------------- signatures


def check_call(owner: str, overloads: list[list[str]], args: tuple, kwargs: dict, release: str) -> None:
    """Raise ``TypeError`` unless ``args`` / ``kwargs`` bind to one recorded overload.

    Each overload is a list of parameter names (``"name="`` has a default; pybind's ``argN``
    names are positional-only).
    """
    for params in overloads:
        names = [p.rstrip("=") for p in params]
        if len(args) > len(names):
            continue
        bound = set(names[: len(args)])
        ok = True
        for key in kwargs:
            if key not in names or key in bound or re.fullmatch(r"arg\d+", key):
                ok = False
                break
            bound.add(key)
        if ok and all(p.endswith("=") or p.rstrip("=") in bound for p in params):
            return
    shown = " | ".join(f"({', '.join(p)})" for p in overloads) or "(no recorded signature)"
    raise TypeError(f"{owner}: arguments {len(args)} positional + {sorted(kwargs)} do not match {release} "
                    f"signature {shown}")


# ----------------------------------------------------------------------------- enums


class EnumValue(int):
    """A pybind-like enum member: an int with ``name`` that equals only members of its own enum."""

    def __new__(cls, enum: str, name: str, value: int) -> "EnumValue":
        obj = super().__new__(cls, value)
        obj.enum, obj.name = enum, name
        return obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EnumValue) and other.enum == self.enum and int(other) == int(self)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash((self.enum, int(self)))

    def __repr__(self) -> str:
        return f"<{self.enum}.{self.name}: {int(self)}>"

    @property
    def value(self) -> int:
        return int(self)


class EnumType:
    """An enum with exactly the recorded members."""

    def __init__(self, name: str, members: dict[str, int], release: str) -> None:
        self._name, self._release = name, release
        self.__members__ = {k: EnumValue(name, k, v) for k, v in members.items()}

    def __getattr__(self, item: str) -> EnumValue:
        members = self.__dict__.get("__members__", {})
        if item in members:
            return members[item]
        raise AttributeError(f"{self._name} has no member {item!r} in {self._release}")

    def __call__(self, value: int) -> EnumValue:
        for member in self.__members__.values():
            if int(member) == int(value):
                return member
        raise ValueError(f"{value} is not a {self._name} in {self._release}")


# ----------------------------------------------------------------------------- fake GPU


@dataclass
class FakeDevice:
    name: str
    major: int
    minor: int
    total_memory: int = 8 << 30


@dataclass
class Allocation:
    device: int
    array: np.ndarray

    @property
    def ptr(self) -> int:
        return int(self.array.ctypes.data)


@dataclass
class FakeStream:
    handle: int
    device: int
    capturing: bool = False
    capture_thread: int | None = None
    recorded: list[Callable[[], None]] = field(default_factory=list)

    def __int__(self) -> int:
        return self.handle


class FakeGpu:
    """Devices, memory, streams and graphs shared by the TensorRT and CUDA stand-ins."""

    def __init__(self, devices: Iterable[FakeDevice] | None = None) -> None:
        self.devices = list(devices or [FakeDevice("NVIDIA Orin", 8, 7), FakeDevice("NVIDIA RTX A2000", 8, 6)])
        self._current = threading.local()
        self.device_memory: dict[int, Allocation] = {}
        self.host_memory: dict[int, np.ndarray] = {}
        self.streams: dict[int, FakeStream] = {}
        self.graphs: dict[int, list[Callable[[], None]]] = {}
        self._next_handle = 0x1000
        self.lock = threading.RLock()
        self.log: list[tuple[str, int | None, str]] = []  # (call, device, thread name)
        self.fail_next_capture_enqueue = False

    def handle(self) -> int:
        with self.lock:
            self._next_handle += 16
            return self._next_handle

    # --- the current device of the calling thread --------------------------------------------

    def set_current(self, device: int | None) -> None:
        self._current.device = device

    def current(self) -> int | None:
        return getattr(self._current, "device", None)

    def require_context(self, what: str) -> int:
        device = self.current()
        self.log.append((what, device, threading.current_thread().name))
        if device is None:
            raise ContractViolation(f"{what} called on thread {threading.current_thread().name!r}, which has no "
                                    "current CUDA context (call it on the thread that activated the device)")
        return device

    # --- memory -------------------------------------------------------------------------------

    def malloc(self, nbytes: int) -> int:
        device = self.require_context("cudaMalloc")
        allocation = Allocation(device, np.zeros(max(1, int(nbytes)), np.uint8))
        self.device_memory[allocation.ptr] = allocation
        return allocation.ptr

    def free(self, pointer: int) -> None:
        self.require_context("cudaFree")
        if self.device_memory.pop(int(pointer), None) is None:
            raise ContractViolation(f"cudaFree of {pointer:#x}, which is not a live device allocation")

    def check_device_range(self, pointer: int, nbytes: int, what: str) -> Allocation:
        allocation = self.device_memory.get(int(pointer))
        if allocation is None:
            raise ContractViolation(f"{what}: {pointer:#x} is not the start of a device allocation")
        if allocation.array.nbytes < nbytes:
            raise ContractViolation(f"{what}: {nbytes} bytes at {pointer:#x} overrun its {allocation.array.nbytes}")
        if allocation.device != self.current():
            raise ContractViolation(f"{what}: memory of device {allocation.device} used on device {self.current()}")
        return allocation

    def malloc_host(self, nbytes: int) -> int:
        self.require_context("cudaMallocHost")
        array = np.zeros(max(1, int(nbytes)), np.uint8)
        self.host_memory[int(array.ctypes.data)] = array
        return int(array.ctypes.data)

    def free_host(self, pointer: int) -> None:
        self.require_context("cudaFreeHost")
        if self.host_memory.pop(int(pointer), None) is None:
            raise ContractViolation(f"cudaFreeHost of {pointer:#x}, which is not pinned memory")

    def is_pinned(self, pointer: int, nbytes: int) -> bool:
        for base, array in self.host_memory.items():
            if base <= pointer and pointer + nbytes <= base + array.nbytes:
                return True
        return False

    # --- streams ------------------------------------------------------------------------------

    def stream(self, handle: Any) -> FakeStream:
        key = int(handle)
        if key not in self.streams:
            raise ContractViolation(f"{key:#x} is not a live stream (the default stream is not used by this code)")
        return self.streams[key]

    def enqueue(self, stream: FakeStream, operation: Callable[[], None]) -> None:
        if stream.capturing:
            stream.recorded.append(operation)
        else:
            operation()


# ----------------------------------------------------------------------------- strict objects


class StrictObject:
    """Proxy that exposes only the recorded members of TensorRT class ``cls`` in ``api.release``."""

    __slots__ = ("_sim", "_cls", "_api")

    def __init__(self, sim: Any, cls: str, api: "TensorRTStandIn") -> None:
        object.__setattr__(self, "_sim", sim)
        object.__setattr__(self, "_cls", cls)
        object.__setattr__(self, "_api", api)

    def _entry(self) -> dict:
        return self._api.classes[self._cls]

    def __getattr__(self, name: str) -> Any:
        entry, api = self._entry(), self._api
        if name in entry["properties"] or name in entry["attributes"]:
            return api.wrap(getattr(self._sim, name))
        if name in entry["methods"]:
            function = getattr(self._sim, name, None)
            if function is None:
                raise NotImplementedError(f"the stand-in does not simulate {self._cls}.{name}")

            def checked(*args: Any, **kwargs: Any) -> Any:
                check_call(f"{self._cls}.{name}", entry["methods"][name], args, kwargs, api.release)
                return api.wrap(function(*(api.unwrap(a) for a in args),
                                         **{k: api.unwrap(v) for k, v in kwargs.items()}))

            return checked
        raise AttributeError(f"'{self._cls}' has no attribute {name!r} in {api.release}")

    def __setattr__(self, name: str, value: Any) -> None:
        mode = self._entry()["properties"].get(name)
        if mode is None:
            raise AttributeError(f"'{self._cls}' has no property {name!r} in {self._api.release}")
        if mode != "rw":
            raise AttributeError(f"{self._cls}.{name} is read-only in {self._api.release}")
        setattr(self._sim, name, self._api.unwrap(value))

    def __bytes__(self) -> bytes:
        if self._cls != "IHostMemory":  # only IHostMemory exposes the buffer protocol
            raise TypeError(f"cannot convert '{self._cls}' to bytes")
        return bytes(self._sim)

    def __repr__(self) -> str:
        return f"<stand-in {self._api.release} {self._cls}>"


class StrictClass:
    """A recorded class as a callable module attribute (``trt.Builder(logger)``)."""

    def __init__(self, api: "TensorRTStandIn", cls: str, factory: Callable[..., Any] | None) -> None:
        self._api, self._cls, self._factory = api, cls, factory

    def __call__(self, *args: Any, **kwargs: Any) -> StrictObject:
        entry = self._api.classes[self._cls]
        check_call(f"{self._cls}.__init__", entry["methods"].get("__init__", [[]]), args, kwargs, self._api.release)
        if self._factory is None:
            raise NotImplementedError(f"the stand-in does not simulate constructing {self._cls}")
        return self._api.wrap(self._factory(*(self._api.unwrap(a) for a in args), **kwargs))

    def __getattr__(self, name: str) -> Any:
        entry = self._api.classes[self._cls]
        if name in entry["attributes"]:
            return self._api.class_attributes[self._cls][name]
        raise AttributeError(f"type object '{self._cls}' has no attribute {name!r} in {self._api.release}")


# ----------------------------------------------------------------------------- TensorRT simulation

_TRT_DTYPES = {"float32": "FLOAT", "float16": "HALF", "int8": "INT8", "int32": "INT32", "int64": "INT64",
               "bool": "BOOL", "uint8": "UINT8", "bfloat16": "BF16", "fp8": "FP8"}
_NP_OF = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
          "BOOL": np.bool_, "UINT8": np.uint8}
_LAYER_TYPE = {
    "Conv": "CONVOLUTION", "ConvTranspose": "DECONVOLUTION", "Add": "ELEMENTWISE", "Sub": "ELEMENTWISE",
    "Mul": "ELEMENTWISE", "Div": "ELEMENTWISE", "Pow": "ELEMENTWISE", "Equal": "ELEMENTWISE",
    "Max": "ELEMENTWISE", "Min": "ELEMENTWISE", "GridSample": "GRID_SAMPLE", "Gather": "GATHER",
    "Slice": "SLICE", "Pad": "SLICE", "Tile": "SLICE", "Expand": "SLICE", "Concat": "CONCATENATION",
    "Relu": "ACTIVATION", "LeakyRelu": "ACTIVATION", "Sigmoid": "ACTIVATION", "Tanh": "ACTIVATION",
    "Resize": "RESIZE", "Reshape": "SHUFFLE", "Transpose": "SHUFFLE", "Unsqueeze": "SHUFFLE",
    "Squeeze": "SHUFFLE", "Flatten": "SHUFFLE", "ReduceMean": "REDUCE", "ReduceSum": "REDUCE",
    "Shape": "SHAPE", "Cast": "CAST", "ConstantOfShape": "FILL", "Where": "SELECT", "Sqrt": "UNARY",
    "Reciprocal": "UNARY", "Exp": "UNARY", "Abs": "UNARY", "Neg": "UNARY", "MaxPool": "POOLING",
    "AveragePool": "POOLING", "BatchNormalization": "SCALE", "Softmax": "SOFTMAX", "MatMul": "MATRIX_MULTIPLY",
    "Gemm": "MATRIX_MULTIPLY", "Identity": "IDENTITY",
}
_BROADCASTING = {"Add", "Sub", "Mul", "Div", "Pow", "Equal", "Max", "Min", "Where"}


@dataclass
class SimTensor:
    name: str
    dtype: EnumValue
    shape: tuple[int, ...]
    is_shape_tensor: bool = False
    location: Any = None
    is_network_input: bool = False
    is_network_output: bool = False


class SimLayer:

    def __init__(self, type_: EnumValue, inputs: list[SimTensor], outputs: list[SimTensor]) -> None:
        self.type, self._inputs, self._outputs = type_, inputs, outputs
        self.name = ""
        self.metadata = ""
        self.precision_set: Any = None
        self.output_types: dict[int, Any] = {}

    @property
    def num_inputs(self) -> int:
        return len(self._inputs)

    @property
    def num_outputs(self) -> int:
        return len(self._outputs)

    def get_input(self, index: int) -> SimTensor | None:
        return self._inputs[index] if 0 <= index < len(self._inputs) else None

    def get_output(self, index: int) -> SimTensor | None:
        return self._outputs[index] if 0 <= index < len(self._outputs) else None

    @property
    def precision(self) -> Any:
        return self.precision_set

    @precision.setter
    def precision(self, value: Any) -> None:
        self.precision_set = value

    @property
    def precision_is_set(self) -> bool:
        return self.precision_set is not None

    def set_output_type(self, index: int, dtype: Any) -> None:
        if not 0 <= index < len(self._outputs):
            raise IndexError(f"layer {self.name} has no output {index}")
        self.output_types[index] = dtype


class SimNetwork:

    def __init__(self, api: "TensorRTStandIn", flags: int) -> None:
        self.api, self.flags = api, flags
        self.layers: list[SimLayer] = []
        self.inputs: list[SimTensor] = []
        self.outputs: list[SimTensor] = []
        self.onnx_path: str | None = None
        self._layer_names: set[str] = set()
        self._counter = 0

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    def get_layer(self, index: int) -> SimLayer:
        return self.layers[index]

    def get_input(self, index: int) -> SimTensor:
        return self.inputs[index]

    def get_output(self, index: int) -> SimTensor:
        return self.outputs[index]

    def unique_layer_name(self, basename: str) -> str:
        """onnx-tensorrt's generateUniqueName: ``basename``, else ``basename_<global counter>``."""
        candidate = basename
        while candidate in self._layer_names:
            candidate = f"{basename}_{self._counter}"
            self._counter += 1
        self._layer_names.add(candidate)
        return candidate


class SimParser:
    """Builds a ``SimNetwork`` from an ONNX file the way onnx-tensorrt names things."""

    def __init__(self, network: SimNetwork, logger: Any) -> None:
        self.network, self.errors = network, []

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, index: int) -> str:
        return self.errors[index]

    def parse_from_file(self, path: str) -> bool:
        import onnx
        from onnx import shape_inference

        api, network = self.network.api, self.network
        if api.major < 10 and not network.flags & 1:
            self.errors.append("Network must have been created with the EXPLICIT_BATCH flag (TensorRT < 10)")
            return False
        model = shape_inference.infer_shapes(onnx.load(path, load_external_data=False))
        network.onnx_path = str(Path(path).resolve())
        types_of: dict[str, int] = {}
        ranks: dict[str, int] = {}
        for info in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
            types_of[info.name] = info.type.tensor_type.elem_type
            ranks[info.name] = len(info.type.tensor_type.shape.dim)
        for init in model.graph.initializer:
            types_of[init.name] = init.data_type
            ranks[init.name] = len(init.dims)
        tensors: dict[str, SimTensor] = {}
        shape_tensors: set[str] = set()

        def dtype_of(name: str) -> EnumValue:
            elem = types_of.get(name, 1)
            if elem == 7:  # INT64: TensorRT 8 converts to INT32
                return api.DataType.INT64 if api.major >= 10 else api.DataType.INT32
            return {1: api.DataType.FLOAT, 10: api.DataType.HALF, 6: api.DataType.INT32, 9: api.DataType.BOOL,
                    2: api.DataType.UINT8, 3: api.DataType.INT8}.get(elem, api.DataType.FLOAT)

        for graph_input in model.graph.input:
            dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in graph_input.type.tensor_type.shape.dim)
            tensor = SimTensor(graph_input.name, dtype_of(graph_input.name), dims, is_network_input=True)
            tensors[graph_input.name] = tensor
            network.inputs.append(tensor)
        constants = {init.name for init in model.graph.initializer}
        for node in model.graph.node:
            if node.op_type == "Constant":
                constants.update(node.output)  # weights: no layer until used as a tensor
                continue
            created: list[SimLayer] = []
            inputs: list[SimTensor] = []
            out_rank = max((ranks.get(o, 0) for o in node.output), default=0)
            for name in node.input:
                if not name:
                    continue
                if name not in tensors:  # a constant used as a tensor: a CONSTANT layer
                    tensor = SimTensor(name, dtype_of(name), (), is_shape_tensor=dtype_of(name).name != "FLOAT")
                    layer = SimLayer(api.LayerType.CONSTANT, [], [tensor])
                    created.append(layer)
                    tensors[name] = tensor
                source = tensors[name]
                if node.op_type in _BROADCASTING and ranks.get(name, out_rank) < out_rank:
                    # Broadcast: a reshape layer with an unnamed output, registered under this node.
                    reshaped = SimTensor(f"(Unnamed Layer* {len(network.layers) + len(created)}) [Shuffle]_output",
                                         source.dtype, (), is_shape_tensor=source.is_shape_tensor)
                    created.append(SimLayer(api.LayerType.SHUFFLE, [source], [reshaped]))
                    source = reshaped
                inputs.append(source)
            is_shape = node.op_type == "Shape" or (bool(inputs) and all(t.is_shape_tensor for t in inputs)
                                                   and all(dtype_of(o).name != "FLOAT" for o in node.output))
            outputs = [SimTensor(o, dtype_of(o), (), is_shape_tensor=is_shape) for o in node.output if o]
            layer_type = getattr(api.LayerType, _LAYER_TYPE.get(node.op_type, "PLUGIN_V2")
                                 if _LAYER_TYPE.get(node.op_type, "PLUGIN_V2") in api.LayerType.__members__
                                 else "IDENTITY")
            created.append(SimLayer(layer_type, inputs, outputs))
            for o in outputs:
                tensors[o.name] = o
                if is_shape:
                    shape_tensors.add(o.name)
            for layer in created:  # registered in creation order: the first gets the node's name
                layer.name = network.unique_layer_name(node.name or f"node_of_{node.output[0]}")
                if api.has_layer_metadata:
                    layer.metadata = f"[ONNX Layer: {node.name}]"
                network.layers.append(layer)
        for graph_output in model.graph.output:
            tensor = tensors[graph_output.name]
            tensor.is_network_output = True
            network.outputs.append(tensor)
        return True


class SimProfile:

    def __init__(self) -> None:
        self.shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {}

    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002  # recorded names
        low, best, high = (tuple(int(v) for v in shape) for shape in (min, opt, max))
        if not all(a <= b <= c for a, b, c in zip(low, best, high)):
            raise ValueError(f"profile of {input}: need min <= opt <= max, got {low} {best} {high}")
        self.shapes[input] = (low, best, high)


class SimTimingCache:

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)

    def serialize(self) -> "SimHostMemory":
        return SimHostMemory(self.data or b"fake-timing-cache")


class SimHostMemory:

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __bytes__(self) -> bytes:
        return self.data

    def __buffer__(self, flags: int) -> memoryview:  # bytes(obj) and memoryview(obj)
        return memoryview(self.data)

    @property
    def nbytes(self) -> int:
        return len(self.data)


class SimConfig:

    def __init__(self, api: "TensorRTStandIn") -> None:
        self.api = api
        self.flag_set: set[str] = {"TF32"} if "TF32" in api.BuilderFlag.__members__ else set()
        self.pools: dict[str, int] = {}
        self.profiles: list[SimProfile] = []
        self.int8_calibrator: Any = None
        self.progress_monitor: Any = None
        self.profiling_verbosity: Any = None
        self.calibration_profile: SimProfile | None = None
        self.timing_cache: SimTimingCache | None = None

    def set_flag(self, flag: EnumValue) -> None:
        self.flag_set.add(flag.name)

    def clear_flag(self, flag: EnumValue) -> None:
        self.flag_set.discard(flag.name)

    def get_flag(self, flag: EnumValue) -> bool:
        return flag.name in self.flag_set

    def set_memory_pool_limit(self, pool: EnumValue, pool_size: int) -> None:
        self.pools[pool.name] = int(pool_size)

    def add_optimization_profile(self, profile: SimProfile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def set_calibration_profile(self, profile: SimProfile) -> bool:
        self.calibration_profile = profile
        return True

    def create_timing_cache(self, serialized_timing_cache: bytes) -> SimTimingCache:
        return SimTimingCache(serialized_timing_cache)

    def set_timing_cache(self, cache: SimTimingCache, ignore_mismatch: bool) -> bool:
        self.timing_cache = cache
        return True

    def get_timing_cache(self) -> SimTimingCache | None:
        return self.timing_cache


class SimBuilder:

    def __init__(self, api: "TensorRTStandIn", logger: Any) -> None:
        api.gpu.require_context("trt.Builder()")
        self.api = api
        self.platform_has_fast_fp16 = True
        self.platform_has_fast_int8 = True
        self.platform_has_tf32 = True

    def create_network(self, flags: int = 0) -> SimNetwork:
        return SimNetwork(self.api, int(flags))

    def create_builder_config(self) -> SimConfig:
        return SimConfig(self.api)

    def create_optimization_profile(self) -> SimProfile:
        return SimProfile()

    def build_serialized_network(self, network: SimNetwork, config: SimConfig) -> SimHostMemory | None:
        api = self.api
        device = api.gpu.require_context("build_serialized_network")
        api.builds.append({"network": network, "config": config, "device": device})
        dynamic = [t for t in network.inputs if any(d < 0 for d in t.shape)]
        if dynamic and not config.profiles:
            api.errors.append("dynamic inputs without an optimization profile")
            return None
        for tensor in dynamic:
            if tensor.name not in config.profiles[0].shapes:
                api.errors.append(f"profile lacks input {tensor.name}")
                return None
        float_names = ("FLOAT", "HALF")
        for layer in network.layers:
            pinned = [layer.precision_set] if layer.precision_set is not None else []
            pinned += list(layer.output_types.values())
            if pinned and any(t.dtype.name not in float_names for t in layer._outputs):
                raise ContractViolation(f"layer {layer.name}: float precision forced on non-float outputs "
                                        f"{[t.dtype.name for t in layer._outputs]} (the build would fail)")
        monitor = config.progress_monitor
        if monitor is not None:
            api.check_subclass(monitor, "IProgressMonitor")
            monitor.phase_start("Building engine", None, 3)
            for step in range(3):
                if not monitor.step_complete("Building engine", step):
                    monitor.phase_finish("Building engine")
                    return None
            monitor.phase_finish("Building engine")
        if "INT8" in config.flag_set:
            calibrator = config.int8_calibrator
            if calibrator is None:
                raise ContractViolation("INT8 flag without int8_calibrator (no dynamic ranges either)")
            api.check_subclass(calibrator, "IInt8EntropyCalibrator2")
            if dynamic and config.calibration_profile is None:
                raise ContractViolation("INT8 calibration of a dynamic network needs set_calibration_profile")
            self._calibrate(network, calibrator)
        precision = "int8" if "INT8" in config.flag_set else "fp16" if "FP16" in config.flag_set else "fp32"
        layers = []
        for layer in network.layers:
            forced = layer.precision_set.name if layer.precision_set is not None else None
            runs = forced or ("HALF" if precision != "fp32" and layer.type.name not in ("SHAPE",
                                                                                        "CONSTANT") else "FLOAT")
            layers.append({"Name": layer.name, "LayerType": layer.type.name, "Metadata": layer.metadata,
                           "Precision": runs, "Forced": forced,
                           "Outputs": [{"Name": t.name, "Format/Datatype": "Half" if runs == "HALF" else "Float"}
                                       for t in layer._outputs]})
        plan = {
            "efc_stand_in_plan": 1, "tensorrt": api.release, "device_name": api.gpu.devices[device].name,
            "onnx_path": network.onnx_path, "precision": precision, "tf32": "TF32" in config.flag_set,
            "inputs": {t.name: [list(t.shape), t.dtype.name] for t in network.inputs},
            "outputs": {t.name: [list(t.shape), t.dtype.name] for t in network.outputs},
            "profile": {k: [list(s) for s in v] for k,
                        v in (config.profiles[0].shapes.items() if config.profiles else [])},
            "workspace": config.pools.get("WORKSPACE"), "layers": layers,
            "detailed": getattr(config.profiling_verbosity, "name", None) == "DETAILED",
        }
        return SimHostMemory(json.dumps(plan).encode())

    def _calibrate(self, network: SimNetwork, calibrator: Any) -> None:
        api = self.api
        if calibrator.get_batch_size() != 1:
            raise ContractViolation("calibrator batch size must be 1 for explicit-batch networks")
        cache = calibrator.read_calibration_cache()
        api.calibration.append({"cache_hit": bool(cache), "batches": 0})
        if cache:
            return
        names = [t.name for t in network.inputs]
        while True:
            pointers = calibrator.get_batch(names)
            if pointers is None:
                break
            if len(pointers) != len(names):
                raise ContractViolation(f"get_batch returned {len(pointers)} pointers for inputs {names}")
            for pointer in pointers:
                api.gpu.check_device_range(int(pointer), 1, "calibration batch")
            api.calibration[-1]["batches"] += 1
        calibrator.write_calibration_cache(b"TRT-STAND-IN-EntropyCalibration2\n")


class SimRuntime:

    def __init__(self, api: "TensorRTStandIn", logger: Any) -> None:
        api.gpu.require_context("trt.Runtime()")
        self.api = api

    def deserialize_cuda_engine(self, serialized_engine: bytes) -> "SimEngine | None":
        api = self.api
        device = api.gpu.require_context("deserialize_cuda_engine")
        try:
            plan = json.loads(bytes(serialized_engine))
        except ValueError:
            return None
        if plan.get("tensorrt") != api.release or plan.get("device_name") != api.gpu.devices[device].name:
            return None  # engines are not portable across releases or GPUs
        return SimEngine(api, plan)


class SimEngine:

    def __init__(self, api: "TensorRTStandIn", plan: dict) -> None:
        self.api, self.plan = api, plan
        self.names = list(plan["inputs"]) + list(plan["outputs"])

    @property
    def num_io_tensors(self) -> int:
        return len(self.names)

    @property
    def num_layers(self) -> int:
        return len(self.plan["layers"])

    def get_tensor_name(self, index: int) -> str:
        return self.names[index]

    def get_tensor_mode(self, name: str) -> EnumValue:
        return self.api.TensorIOMode.INPUT if name in self.plan["inputs"] else self.api.TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> EnumValue:
        spec = self.plan["inputs"].get(name) or self.plan["outputs"][name]
        return getattr(self.api.DataType, spec[1])

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        spec = self.plan["inputs"].get(name) or self.plan["outputs"][name]
        return tuple(spec[0])

    def create_execution_context(self, *args: Any) -> "SimContext":
        self.api.gpu.require_context("create_execution_context")
        return SimContext(self)

    def create_engine_inspector(self) -> "SimInspector":
        return SimInspector(self)


class SimInspector:

    def __init__(self, engine: SimEngine) -> None:
        self.engine = engine

    def get_engine_information(self, format: EnumValue) -> str:  # noqa: A002  # recorded name
        layers = self.engine.plan["layers"]
        if not self.engine.plan["detailed"]:
            layers = [layer["Name"] for layer in layers]
        return json.dumps({"Layers": layers})


class SimContext:

    def __init__(self, engine: SimEngine) -> None:
        self.engine, self.api = engine, engine.api
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.needs_plain_enqueue = True
        self._output_shapes: dict[tuple, dict[str, tuple[int, ...]]] = {}

    def set_input_shape(self, name: str, shape: Any) -> bool:
        shape = tuple(int(d) for d in shape)
        plan = self.engine.plan
        if name not in plan["inputs"]:
            return False
        static = tuple(plan["inputs"][name][0])
        if name in plan["profile"]:
            low, _, high = (tuple(s) for s in plan["profile"][name])
            ok = len(shape) == len(low) and all(a <= d <= b for a, d, b in zip(low, shape, high))
        else:
            ok = shape == static
        if ok and self.shapes.get(name) != shape:
            self.shapes[name] = shape
            self.needs_plain_enqueue = True
        return ok

    def _session(self) -> Any:
        return self.api.session(self.engine.plan["onnx_path"])

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        plan = self.engine.plan
        if name in plan["inputs"]:
            return self.shapes.get(name, tuple(plan["inputs"][name][0]))
        key = tuple(sorted(self.shapes.items()))
        if any(self.get_tensor_shape(i) and min(self.get_tensor_shape(i)) < 0 for i in plan["inputs"]):
            return tuple(plan["outputs"][name][0])
        if key not in self._output_shapes:
            feeds = {i: np.zeros(self.get_tensor_shape(i), _NP_OF[plan["inputs"][i][1]]) for i in plan["inputs"]}
            outputs = self._session().run(None, feeds)
            names = [o.name for o in self._session().get_outputs()]
            self._output_shapes[key] = {n: tuple(a.shape) for n, a in zip(names, outputs)}
        return self._output_shapes[key][name]

    def set_tensor_address(self, name: str, memory: int) -> bool:
        if name not in self.engine.names:
            return False
        itemsize = np.dtype(_NP_OF[self.engine.get_tensor_dtype(name).name]).itemsize
        nbytes = int(np.prod(self.get_tensor_shape(name))) * itemsize
        self.api.gpu.check_device_range(int(memory), nbytes, f"set_tensor_address({name!r})")
        self.addresses[name] = int(memory)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        api, plan = self.api, self.engine.plan
        api.gpu.require_context("execute_async_v3")
        stream = api.gpu.stream(stream_handle)
        missing = [n for n in self.engine.names if n not in self.addresses]
        if missing:
            raise ContractViolation(f"execute_async_v3 before set_tensor_address of {missing}")
        unset = [n for n in plan["inputs"] if n in plan["profile"] and n not in self.shapes]
        if unset:
            raise ContractViolation(f"execute_async_v3 before set_input_shape of dynamic inputs {unset}")
        if stream.capturing:
            if self.needs_plain_enqueue:
                raise ContractViolation("CUDA graph capture of execute_async_v3 right after a shape change: "
                                        "TensorRT needs one ordinary enqueue first")
            if api.gpu.fail_next_capture_enqueue:
                api.gpu.fail_next_capture_enqueue = False
                return False
        else:
            self.needs_plain_enqueue = False
        shapes = {n: self.get_tensor_shape(n) for n in self.engine.names}
        addresses = dict(self.addresses)
        api.gpu.enqueue(stream, lambda: self._run(shapes, addresses))
        api.executions.append("captured" if stream.capturing else "direct")
        return True

    def _run(self, shapes: dict[str, tuple[int, ...]], addresses: dict[str, int]) -> None:
        plan, gpu = self.engine.plan, self.api.gpu
        feeds = {}
        for name in plan["inputs"]:
            dtype = _NP_OF[plan["inputs"][name][1]]
            count = int(np.prod(shapes[name]))
            raw = gpu.device_memory[addresses[name]].array[: count * np.dtype(dtype).itemsize]
            feeds[name] = raw.view(dtype).reshape(shapes[name]).copy()
        session = self._session()
        outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
        for name in plan["outputs"]:
            data = np.ascontiguousarray(outputs[name].astype(_NP_OF[plan["outputs"][name][1]]))
            gpu.device_memory[addresses[name]].array[: data.nbytes] = data.view(np.uint8).reshape(-1)
        self.api.runs += 1


# ----------------------------------------------------------------------------- the tensorrt module


class TensorRTStandIn:
    """Everything of one simulated TensorRT release; ``module`` goes into ``sys.modules``."""

    def __init__(self, release: str, gpu: FakeGpu) -> None:
        self.release_key = release
        data = SURFACE["tensorrt"][release]
        self.release = f"TensorRT {release}"
        self.major = int(release.split(".")[0])
        self.gpu = gpu
        self.classes: dict[str, dict] = data["classes"]
        self.module_names = set(data["module"])
        self.has_layer_metadata = "metadata" in self.classes["ILayer"]["properties"]
        self.builds: list[dict] = []
        self.calibration: list[dict] = []
        self.executions: list[str] = []
        self.errors: list[str] = []
        self.runs = 0
        self._sessions: dict[str, Any] = {}
        self.enums = {name: EnumType(name, members, self.release) for name, members in data["enums"].items()}
        self.enums["ILogger.Severity"] = EnumType("Severity", {n: i for i, n in enumerate(
            ["INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"])}, self.release)
        self.DataType = self.enums["DataType"]
        self.LayerType = self.enums["LayerType"]
        self.TensorIOMode = self.enums["TensorIOMode"]
        self.BuilderFlag = self.enums["BuilderFlag"]
        self.class_attributes = {"Logger": {n: getattr(self.enums["ILogger.Severity"], n)
                                            for n in self.classes["Logger"]["attributes"]}}
        self.module = self._make_module(data)

    def session(self, onnx_path: str) -> Any:
        import onnxruntime as ort

        if onnx_path not in self._sessions:
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            self._sessions[onnx_path] = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        return self._sessions[onnx_path]

    _SIM_CLASS_NAMES = {SimBuilder: "Builder", SimConfig: "IBuilderConfig", SimNetwork: "INetworkDefinition",
                        SimLayer: "ILayer", SimTensor: "ITensor", SimParser: "OnnxParser",
                        SimProfile: "IOptimizationProfile", SimEngine: "ICudaEngine", SimContext: "IExecutionContext",
                        SimRuntime: "Runtime", SimTimingCache: "ITimingCache", SimHostMemory: "IHostMemory",
                        SimInspector: "EngineInspector"}

    def wrap(self, value: Any) -> Any:
        cls = self._SIM_CLASS_NAMES.get(type(value))
        if cls is not None:
            if cls not in self.classes:
                raise AttributeError(f"{cls} does not exist in {self.release}")
            return StrictObject(value, cls, self)
        return value

    @staticmethod
    def unwrap(value: Any) -> Any:
        return object.__getattribute__(value, "_sim") if isinstance(value, StrictObject) else value

    def check_subclass(self, instance: Any, base: str) -> None:
        """A Python subclass of a TensorRT interface: base initialised, methods overridden with the
        recorded parameter counts.
        """
        base_class = self.module_bases[base]
        if not isinstance(instance, base_class):
            raise ContractViolation(f"{type(instance).__name__} is not a {base} subclass")
        if not getattr(instance, "_efc_base_initialised", False):
            raise ContractViolation(f"{type(instance).__name__}.__init__ did not call {base}.__init__(self) "
                                    "(pybind would raise 'No constructor defined' / TypeError)")
        for method, overloads in self.classes[base]["methods"].items():
            if method.startswith("__") or method == "get_algorithm":
                continue
            function = getattr(type(instance), method, None)
            if function is None or function is getattr(base_class, method, None):
                raise ContractViolation(f"{type(instance).__name__} does not implement {base}.{method}")
            import inspect

            wanted = len(overloads[0])
            have = len(inspect.signature(function).parameters) - 1
            if have != wanted:
                raise ContractViolation(f"{type(instance).__name__}.{method} takes {have} arguments; {base}.{method} "
                                        f"is called with {wanted} ({overloads[0]})")

    def _make_module(self, data: dict) -> types.ModuleType:
        api = self
        module = _StrictModule("tensorrt", self)
        module.__version__ = data["version"]
        for name, enum in self.enums.items():
            if "." not in name:
                setattr(module, name, enum)
        for alias, member in _TRT_DTYPES.items():
            if alias in data["dtypes"] and member in self.DataType.__members__:
                setattr(module, alias, getattr(self.DataType, member))
        factories = {"Logger": lambda min_severity=None: _SimLogger(min_severity),
                     "Builder": lambda logger: SimBuilder(api, logger),
                     "Runtime": lambda logger: SimRuntime(api, logger),
                     "OnnxParser": lambda network, logger: SimParser(network, logger)}
        for cls in ("Logger", "Builder", "Runtime", "OnnxParser"):
            setattr(module, cls, StrictClass(self, cls, factories[cls]))
        self._SIM_CLASS_NAMES[_SimLogger] = "Logger"
        self.module_bases = {}
        for base in ("IInt8EntropyCalibrator2", "IProgressMonitor", "ILogger"):
            if base in self.classes:
                self.module_bases[base] = type(base, (_Subclassable,), {"_efc_interface": base})
                setattr(module, base, self.module_bases[base])

        def nptype(trt_type: EnumValue) -> type:
            check_call("nptype", data["functions"]["nptype"], (trt_type,), {}, api.release)
            return _NP_OF[trt_type.name]

        if "nptype" in self.module_names:
            module.nptype = nptype
        return module


class _SimLogger:

    def __init__(self, min_severity: Any = None) -> None:
        self.min_severity = min_severity

    def log(self, severity: Any, msg: str) -> None:
        pass


class _Subclassable:
    """Base of Python subclasses of TensorRT interfaces (calibrators, progress monitors)."""

    def __init__(self) -> None:
        self._efc_base_initialised = True


class _StrictModule(types.ModuleType):

    def __init__(self, name: str, api: TensorRTStandIn) -> None:
        super().__init__(name)
        self._efc_api = api
        self.__spec__ = importlib.machinery.ModuleSpec(name, None)  # importlib.util.find_spec works

    def __getattr__(self, name: str) -> Any:
        api = self.__dict__.get("_efc_api")
        if api is not None and name in api.module_names:
            raise NotImplementedError(f"the stand-in does not simulate tensorrt.{name}")
        raise AttributeError(f"module 'tensorrt' has no attribute {name!r} in {api.release if api else '?'}")


# ----------------------------------------------------------------------------- cuda.bindings.runtime


class CudaRuntimeStandIn:
    """``cuda.bindings.runtime`` with the recorded functions, enums and flags of one release."""

    def __init__(self, release: str, gpu: FakeGpu) -> None:
        data = SURFACE["cuda_bindings"][release]
        self.release, self.gpu, self.data = f"cuda-bindings {release}", gpu, data
        self.module = _StrictCudaModule("cuda.bindings.runtime", self)
        for name, members in data["enums"].items():
            setattr(self.module, name, EnumType(name, members, self.release))
        for name, value in data["flags"].items():
            setattr(self.module, name, value)
        self.ok = self.module.cudaError_t.cudaSuccess
        self.captures_begun = 0
        self.captures_ended = 0
        self.graph_launches = 0
        for name in data["functions"]:
            implementation = getattr(self, "_" + name, None)
            if implementation is not None:
                setattr(self.module, name, self._checked(name, implementation))

    def _checked(self, name: str, implementation: Callable[..., Any]) -> Callable[..., Any]:
        overloads = self.data["functions"][name]

        def call(*args: Any, **kwargs: Any) -> Any:
            check_call(name, overloads, args, kwargs, self.release)
            return implementation(*args, **kwargs)

        call.__name__ = name
        return call

    def _error(self, name: str) -> EnumValue:
        return getattr(self.module.cudaError_t, name)

    # --- devices ------------------------------------------------------------------------------

    def _cudaGetDeviceCount(self) -> tuple:
        return self.ok, len(self.gpu.devices)

    def _cudaSetDevice(self, device: int) -> tuple:
        if not 0 <= int(device) < len(self.gpu.devices):
            return (self._error("cudaErrorInvalidDevice"),)
        self.gpu.set_current(int(device))
        return (self.ok,)

    def _cudaGetDeviceProperties(self, device: int) -> tuple:
        self.gpu.require_context("cudaGetDeviceProperties")
        spec = self.gpu.devices[int(device)]
        return self.ok, types.SimpleNamespace(name=spec.name.encode() + b"\0" * 8, major=spec.major, minor=spec.minor,
                                              totalGlobalMem=spec.total_memory, multiProcessorCount=16, pciBusID=device)

    def _cudaGetErrorName(self, error: Any) -> tuple:
        return self.ok, getattr(error, "name", str(error)).encode()

    # --- memory -------------------------------------------------------------------------------

    def _cudaMalloc(self, size: int) -> tuple:
        return self.ok, self.gpu.malloc(size)

    def _cudaFree(self, devPtr: int) -> tuple:  # noqa: N803  # recorded name
        self.gpu.free(devPtr)
        return (self.ok,)

    def _cudaMallocHost(self, size: int) -> tuple:
        return self.ok, self.gpu.malloc_host(size)

    def _cudaFreeHost(self, ptr: int) -> tuple:
        self.gpu.free_host(ptr)
        return (self.ok,)

    def _cudaMemcpyAsync(self, dst: int, src: int, count: int, kind: Any, stream: Any) -> tuple:
        gpu = self.gpu
        gpu.require_context("cudaMemcpyAsync")
        fake_stream = gpu.stream(stream)
        kinds = self.module.cudaMemcpyKind
        if kind == kinds.cudaMemcpyHostToDevice:
            gpu.check_device_range(dst, count, "cudaMemcpyAsync destination")
            if not gpu.is_pinned(int(src), int(count)):
                raise ContractViolation("asynchronous copy from pageable host memory (allocate it pinned)")
            operation = lambda: ctypes.memmove(int(dst), int(src), int(count))  # noqa: E731
        elif kind == kinds.cudaMemcpyDeviceToHost:
            gpu.check_device_range(src, count, "cudaMemcpyAsync source")
            if not gpu.is_pinned(int(dst), int(count)):
                raise ContractViolation("asynchronous copy into pageable host memory (allocate it pinned)")
            operation = lambda: ctypes.memmove(int(dst), int(src), int(count))  # noqa: E731
        else:
            raise ContractViolation(f"unexpected copy kind {kind!r}")
        gpu.enqueue(fake_stream, operation)
        return (self.ok,)

    # --- streams, events, graphs ----------------------------------------------------------------

    def _cudaStreamCreateWithFlags(self, flags: int) -> tuple:
        device = self.gpu.require_context("cudaStreamCreateWithFlags")
        stream = FakeStream(self.gpu.handle(), device)
        self.gpu.streams[stream.handle] = stream
        return self.ok, stream

    def _cudaStreamDestroy(self, stream: Any) -> tuple:
        self.gpu.require_context("cudaStreamDestroy")
        fake = self.gpu.streams.pop(int(stream), None)
        if fake is None:
            raise ContractViolation("cudaStreamDestroy of an unknown stream")
        if fake.capturing:
            raise ContractViolation("stream destroyed while still capturing")
        return (self.ok,)

    def _cudaStreamSynchronize(self, stream: Any) -> tuple:
        self.gpu.require_context("cudaStreamSynchronize")
        if self.gpu.stream(stream).capturing:
            return (self._error("cudaErrorStreamCaptureUnsupported"),)
        return (self.ok,)

    def _cudaStreamBeginCapture(self, stream: Any, mode: Any) -> tuple:
        self.gpu.require_context("cudaStreamBeginCapture")
        fake = self.gpu.stream(stream)
        if fake.capturing:
            return (self._error("cudaErrorIllegalState"),)
        fake.capturing, fake.capture_thread, fake.recorded = True, threading.get_ident(), []
        self.captures_begun += 1
        return (self.ok,)

    def _cudaStreamEndCapture(self, stream: Any) -> tuple:
        self.gpu.require_context("cudaStreamEndCapture")
        fake = self.gpu.stream(stream)
        if not fake.capturing:
            return self._error("cudaErrorIllegalState"), None
        fake.capturing = False
        self.captures_ended += 1
        handle = self.gpu.handle()
        self.gpu.graphs[handle] = list(fake.recorded)
        return self.ok, types.SimpleNamespace(handle=handle, kind="graph")

    def _cudaStreamIsCapturing(self, stream: Any) -> tuple:
        status = self.module.cudaStreamCaptureStatus
        capturing = self.gpu.stream(stream).capturing
        return self.ok, status.cudaStreamCaptureStatusActive if capturing else status.cudaStreamCaptureStatusNone

    def _cudaGraphInstantiate(self, graph: Any, flags: int) -> tuple:
        self.gpu.require_context("cudaGraphInstantiate")
        operations = self.gpu.graphs.get(graph.handle)
        if operations is None:
            raise ContractViolation("cudaGraphInstantiate of an unknown graph")
        handle = self.gpu.handle()
        self.gpu.graphs[handle] = list(operations)
        return self.ok, types.SimpleNamespace(handle=handle, kind="exec")

    def _cudaGraphInstantiateWithFlags(self, graph: Any, flags: int) -> tuple:
        return self._cudaGraphInstantiate(graph, flags)

    def _cudaGraphDestroy(self, graph: Any) -> tuple:
        self.gpu.graphs.pop(graph.handle, None)
        return (self.ok,)

    def _cudaGraphExecDestroy(self, graphExec: Any) -> tuple:  # noqa: N803
        self.gpu.require_context("cudaGraphExecDestroy")
        if self.gpu.graphs.pop(graphExec.handle, None) is None:
            raise ContractViolation("cudaGraphExecDestroy of an unknown graph")
        return (self.ok,)

    def _cudaGraphLaunch(self, graphExec: Any, stream: Any) -> tuple:  # noqa: N803
        self.gpu.require_context("cudaGraphLaunch")
        fake = self.gpu.stream(stream)
        for operation in self.gpu.graphs[graphExec.handle]:
            self.gpu.enqueue(fake, operation)
        self.graph_launches += 1
        return (self.ok,)

    def _cudaEventCreate(self) -> tuple:
        self.gpu.require_context("cudaEventCreate")
        return self.ok, types.SimpleNamespace(time=0.0)

    def _cudaEventRecord(self, event: Any, stream: Any) -> tuple:
        self.gpu.require_context("cudaEventRecord")
        import time

        event.time = time.perf_counter()
        return (self.ok,)

    def _cudaEventSynchronize(self, event: Any) -> tuple:
        return (self.ok,)

    def _cudaEventElapsedTime(self, start: Any, end: Any) -> tuple:
        return self.ok, (end.time - start.time) * 1000.0

    def _cudaEventDestroy(self, event: Any) -> tuple:
        return (self.ok,)


class _StrictCudaModule(types.ModuleType):

    def __init__(self, name: str, api: CudaRuntimeStandIn) -> None:
        super().__init__(name)
        self._efc_api = api

    def __getattr__(self, name: str) -> Any:
        api = self.__dict__.get("_efc_api")
        known = api is not None and name in api.data["functions"]
        raise AttributeError(f"module 'cuda.bindings.runtime' has no attribute {name!r}"
                             + (" simulated by the stand-in" if known
                                else f" recorded for {api.release if api else '?'}"))


# ----------------------------------------------------------------------------- pycuda.driver


class PyCudaStandIn:
    """``pycuda.driver`` with the members released pycuda has (``src/wrapper/wrap_cudadrv.cpp``):
    notably ``Stream`` has only ``synchronize``, ``is_done``, ``wait_for_event`` and ``handle``.
    """

    def __init__(self, gpu: FakeGpu) -> None:
        self.gpu = gpu
        self.module = types.ModuleType("pycuda.driver")
        standin = self

        class Context:

            def __init__(self, device: int) -> None:
                self._device = device

            def push(self) -> None:
                standin.gpu.set_current(self._device)

            def pop(self) -> None:
                standin.gpu.set_current(None)

            def detach(self) -> None:
                pass

        class Device:

            def __init__(self, index: int) -> None:
                if not 0 <= index < len(standin.gpu.devices):
                    raise RuntimeError(f"cuDeviceGet failed: invalid device ordinal {index}")
                self._index = index

            @staticmethod
            def count() -> int:
                return len(standin.gpu.devices)

            def name(self) -> str:
                return standin.gpu.devices[self._index].name

            def compute_capability(self) -> tuple[int, int]:
                spec = standin.gpu.devices[self._index]
                return spec.major, spec.minor

            def retain_primary_context(self) -> Context:
                return Context(self._index)

        class Stream:
            __slots__ = ("_fake",)

            def __init__(self, flags: int = 0) -> None:
                device = standin.gpu.require_context("pycuda Stream()")
                self._fake = FakeStream(standin.gpu.handle(), device)
                standin.gpu.streams[self._fake.handle] = self._fake

            def synchronize(self) -> None:
                standin.gpu.require_context("Stream.synchronize")

            def is_done(self) -> bool:
                return True

            def wait_for_event(self, event: Any) -> None:
                pass

            @property
            def handle(self) -> int:
                return self._fake.handle

        class DeviceAllocation:

            def __init__(self, pointer: int) -> None:
                self._pointer = pointer

            def __int__(self) -> int:
                return self._pointer

            def free(self) -> None:
                standin.gpu.free(self._pointer)

        def mem_alloc(nbytes: int) -> DeviceAllocation:
            return DeviceAllocation(standin.gpu.malloc(nbytes))

        def pagelocked_empty(shape: Any, dtype: Any, order: str = "C", mem_flags: int = 0) -> np.ndarray:
            dtype = np.dtype(dtype)
            count = int(np.prod(shape))
            pointer = standin.gpu.malloc_host(max(1, count * dtype.itemsize))
            raw = (ctypes.c_byte * max(1, count * dtype.itemsize)).from_address(pointer)
            return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)

        def memcpy_htod_async(dest: Any, src: np.ndarray, stream: Any = None) -> None:
            standin.gpu.require_context("memcpy_htod_async")
            standin.gpu.check_device_range(int(dest), src.nbytes, "memcpy_htod_async")
            standin.gpu.enqueue(standin.gpu.stream(stream.handle),
                                lambda: ctypes.memmove(int(dest), src.ctypes.data, src.nbytes))

        def memcpy_dtoh_async(dest: np.ndarray, src: Any, stream: Any = None) -> None:
            standin.gpu.require_context("memcpy_dtoh_async")
            standin.gpu.check_device_range(int(src), dest.nbytes, "memcpy_dtoh_async")
            standin.gpu.enqueue(standin.gpu.stream(stream.handle),
                                lambda: ctypes.memmove(dest.ctypes.data, int(src), dest.nbytes))

        for name, value in {"init": lambda flags=0: None, "Device": Device, "Context": Context, "Stream": Stream,
                            "mem_alloc": mem_alloc, "pagelocked_empty": pagelocked_empty,
                            "memcpy_htod_async": memcpy_htod_async, "memcpy_dtoh_async": memcpy_dtoh_async}.items():
            setattr(self.module, name, value)


# ----------------------------------------------------------------------------- installation


@dataclass
class StandIns:
    """The installed stand-ins of one test: ``trt``, ``cudart`` (or None), ``pycuda`` (or None)."""

    label: str
    gpu: FakeGpu
    trt: TensorRTStandIn
    cudart: CudaRuntimeStandIn | None
    pycuda: PyCudaStandIn | None


def install(monkeypatch: Any, label: str, *, cuda: str = "cuda-python", devices: Iterable[FakeDevice] | None = None
            ) -> StandIns:
    """Put the stand-ins of ``TENSORRT_VERSIONS[label]`` into ``sys.modules`` for one test.

    Args:
        cuda: which CUDA layer is "installed": ``"cuda-python"``, ``"pycuda"``, ``"both"`` or ``"none"``.
    """
    trt_release, cuda_release = TENSORRT_VERSIONS[label]
    gpu = FakeGpu(devices)
    trt = TensorRTStandIn(trt_release, gpu)
    monkeypatch.setitem(sys.modules, "tensorrt", trt.module)
    cudart = pycuda = None
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart", "pycuda", "pycuda.driver",
                 "pycuda.autoinit", "pycuda.autoprimaryctx"):
        monkeypatch.setitem(sys.modules, name, None)  # None: "import X" raises ImportError
    if cuda in ("cuda-python", "both"):
        cudart = CudaRuntimeStandIn(cuda_release, gpu)
        package = types.ModuleType("cuda")
        bindings = types.ModuleType("cuda.bindings")
        bindings.runtime = cudart.module
        package.bindings = bindings
        package.__path__ = []  # a package, so "from cuda.bindings import runtime" resolves
        bindings.__path__ = []
        for module in (package, bindings, cudart.module):
            module.__spec__ = importlib.machinery.ModuleSpec(module.__name__, None, is_package=True)
        monkeypatch.setitem(sys.modules, "cuda", package)
        monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
        monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cudart.module)
    if cuda in ("pycuda", "both"):
        pycuda = PyCudaStandIn(gpu)
        package = types.ModuleType("pycuda")
        package.driver = pycuda.module
        package.__path__ = []
        for module in (package, pycuda.module):
            module.__spec__ = importlib.machinery.ModuleSpec(module.__name__, None, is_package=True)
        monkeypatch.setitem(sys.modules, "pycuda", package)
        monkeypatch.setitem(sys.modules, "pycuda.driver", pycuda.module)
    return StandIns(label, gpu, trt, cudart, pycuda)
