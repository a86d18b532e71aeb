"""Record the Python API surface of the TensorRT bindings and cuda-bindings into ``api_surface.json``.

Run by hand when a TensorRT or cuda-bindings release is added (needs pip access to PyPI and gcc):

    .venv/bin/python tests/contract/record_api.py            # downloads, records, rewrites the JSON
    .venv/bin/python tests/contract/record_api.py --check    # records and compares with the checked-in JSON

What it records, per version: every public module attribute name, and for the classes, enums and
functions the project calls (``TENSORRT_CLASSES``, ``CUDART_FUNCTIONS``...) their methods with
argument names (every pybind overload), properties (read-only or writable), class attributes and
enum members. That is the *call contract*: tests/contract/standins.py builds strict stand-ins from
it that refuse anything a version lacks.

How: ``pip download --no-deps`` fetches the TensorRT *bindings* wheels (``tensorrt-bindings``
8.6.1, ``tensorrt-cu12-bindings`` 10.x, ``tensorrt-cu13-bindings`` 11.x). Their ``tensorrt.so``
cannot be imported without ``libnvinfer``; but it needs only the few factory symbols listed in
``_STUB_SOURCE`` from the TensorRT libraries (everything else is C++ virtual calls), so the
script compiles a stub library exporting those names (they return NULL and are never called
while importing) and imports the module in a subprocess with the stub on ``LD_LIBRARY_PATH``.
pybind11 then reports the exact signatures (``get_tensor_name(self: tensorrt.ICudaEngine,
index: int) -> str``) in each function's docstring. No TensorRT code runs; nothing is executed
on a GPU. cuda-bindings imports without a driver; its Cython functions carry signatures.

TensorRT 8.5 (JetPack 5.1) has no bindings wheel on PyPI: its surface is derived from 8.6.1 minus
the names ``TENSORRT_85_REMOVED`` lists (API added in 8.6, from the TensorRT 8.6 release notes).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "api_surface.json"

#: (recorded version label, pip requirement) of the TensorRT bindings wheels.
TENSORRT_WHEELS: tuple[tuple[str, str], ...] = (
    ("8.6.1", "tensorrt-bindings==8.6.1"),
    ("10.3.0", "tensorrt-cu12-bindings==10.3.0"),
    ("11.4.0.106", "tensorrt-cu13-bindings==11.4.0.106"),
)
#: cuda-bindings releases: 12.x (CUDA 12, JetPack 6) and 13.x (CUDA 13, x86 with TensorRT 11).
CUDA_BINDINGS_WHEELS: tuple[tuple[str, str], ...] = (
    ("12.9.4", "cuda-bindings==12.9.4"),
    ("13.5.0", "cuda-bindings==13.5.0"),
)
#: Classes whose members are recorded (what the project uses, plus what misuse would reach for).
TENSORRT_CLASSES: tuple[str, ...] = (
    "ILogger", "Logger", "Builder", "IBuilderConfig", "INetworkDefinition", "ILayer", "ITensor",
    "OnnxParser", "ParserError", "IOptimizationProfile", "ICudaEngine", "IExecutionContext", "Runtime",
    "ITimingCache", "IHostMemory", "IInt8Calibrator", "IInt8EntropyCalibrator2", "IInt8MinMaxCalibrator",
    "IProgressMonitor", "EngineInspector",
)
TENSORRT_ENUMS: tuple[str, ...] = (
    "BuilderFlag", "MemoryPoolType", "NetworkDefinitionCreationFlag", "TensorIOMode", "DataType", "LayerType",
    "LayerInformationFormat", "ProfilingVerbosity", "CalibrationAlgoType", "TensorLocation",
)
TENSORRT_FUNCTIONS: tuple[str, ...] = ("nptype",)
#: Names removed from the 8.6.1 surface to describe 8.5 (added in 8.6).
TENSORRT_85_REMOVED: dict[str, list[str]] = {"ILayer": ["metadata"],
                                             "BuilderFlag": ["VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME"]}

CUDART_FUNCTIONS: tuple[str, ...] = (
    "cudaGetDeviceCount", "cudaSetDevice", "cudaGetDevice", "cudaGetDeviceProperties", "cudaDeviceGetAttribute",
    "cudaDeviceGetPCIBusId", "cudaDriverGetVersion", "cudaRuntimeGetVersion", "cudaGetErrorName",
    "cudaGetErrorString", "cudaMalloc", "cudaFree", "cudaMallocHost", "cudaFreeHost", "cudaHostAlloc",
    "cudaMemcpy", "cudaMemcpyAsync", "cudaStreamCreate", "cudaStreamCreateWithFlags", "cudaStreamDestroy",
    "cudaStreamSynchronize", "cudaStreamBeginCapture", "cudaStreamEndCapture", "cudaStreamIsCapturing",
    "cudaGraphInstantiate", "cudaGraphInstantiateWithFlags", "cudaGraphLaunch", "cudaGraphExecDestroy",
    "cudaGraphDestroy", "cudaEventCreate", "cudaEventCreateWithFlags", "cudaEventRecord", "cudaEventSynchronize",
    "cudaEventElapsedTime", "cudaEventDestroy", "cudaDeviceSynchronize",
)
CUDART_ENUMS: tuple[str, ...] = (
    "cudaError_t", "cudaMemcpyKind", "cudaStreamCaptureMode", "cudaStreamCaptureStatus", "cudaDeviceAttr",
)
CUDART_FLAGS: tuple[str, ...] = ("cudaStreamNonBlocking", "cudaEventDefault", "cudaEventDisableTiming")

_STUB_SOURCE = r"""
#include <stddef.h>
void* createInferBuilder_INTERNAL(void* a, int b){return NULL;}
void* createInferRefitter_INTERNAL(void* a, void* b, int c){return NULL;}
void* createInferRuntime_INTERNAL(void* a, int b){return NULL;}
void* createNvOnnxParserRefitter_INTERNAL(void* a, void* b, int c){return NULL;}
void* createNvOnnxParser_INTERNAL(void* a, void* b, int c){return NULL;}
void* getBuilderPluginRegistry(int a){return NULL;}
int getNvOnnxParserVersion(void){return 0;}
void* getPluginRegistry(void){return NULL;}
int initLibNvInferPlugins(void* a, const char* b){return 0;}
int getInferLibVersion(void){return 0;}
"""
#: 8.x also links the (removed in 10) UFF and Caffe parsers.
_STUB_PARSERS_8 = r"""
namespace nvuffparser { enum class FieldType : int {}; struct IUffParser; IUffParser* createUffParser(){return nullptr;}
  struct FieldMap { FieldMap(const char*, const void*, FieldType, int); };
  FieldMap::FieldMap(const char*, const void*, FieldType, int){} }
namespace nvcaffeparser1 { struct ICaffeParser; ICaffeParser* createCaffeParser(){return nullptr;}
  void shutdownProtobufLibrary(){} }
"""
_STUB_NAMES = ("libnvinfer.so.{v}", "libnvonnxparser.so.{v}", "libnvinfer_plugin.so.{v}")

# --------------------------------------------------------------------------- introspection (subprocess)

_INTROSPECT = r'''
import importlib.util, inspect, json, sys
mode, target, classes, enums, functions, flags = sys.argv[1], sys.argv[2], *(json.loads(a) for a in sys.argv[3:7])

def doc_signatures(obj, name):
    """Parameter lists of every overload in a pybind / Cython docstring: [["a", "b="], ...]."""
    doc = getattr(obj, "__doc__", None) or ""
    found = []
    for line in doc.splitlines():
        line = line.strip()
        line = line.split(". ", 1)[1] if line[:1].isdigit() and ". " in line[:4] else line
        if not line.startswith(name + "("):
            continue
        depth, start, end = 0, len(name), None
        for index in range(start, len(line)):
            char = line[index]
            if char in "([{<":
                depth += 1
            elif char in ")]}>":
                depth -= 1
                if depth == 0:
                    end = index
                    break
        if end is None:
            continue
        params, depth, current = [], 0, ""
        for char in line[start + 1:end]:
            if char in "([{<":
                depth += 1
            elif char in ")]}>":
                depth -= 1
            if char == "," and depth == 0:
                params.append(current)
                current = ""
            else:
                current += char
        if current.strip():
            params.append(current)
        names = []
        for param in params:
            param = param.strip()
            has_default = "=" in param.split(":", 1)[0] or " = " in param
            head = param.split("=", 1)[0] if has_default else param
            head = head.split(":", 1)[0].strip()
            head = head.split()[-1] if head else head        # Cython: "size_t size" -> "size"
            head = head.lstrip("*")
            if head == "self":
                continue
            names.append(head + ("=" if has_default else ""))
        found.append(names)
    return found

def enum_members(enum):
    members = getattr(enum, "__members__", None)
    if members is None:
        members = {k: v for k, v in vars(enum).items() if not k.startswith("_") and isinstance(v, int)}
    return {name: int(value) for name, value in members.items()}

if mode == "tensorrt":
    spec = importlib.util.spec_from_file_location("tensorrt", target)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
else:
    sys.path.insert(0, target) if target != "-" else None
    import importlib
    try:
        module = importlib.import_module("cuda.bindings.runtime")
    except ImportError:
        module = importlib.import_module("cuda.cudart")
out = {"module": sorted(n for n in dir(module) if not n.startswith("_"))}
if mode == "tensorrt":
    out["classes"] = {}
    for cname in classes:
        cls = getattr(module, cname, None)
        if cls is None:
            continue
        entry = {"bases": [b.__name__ for b in cls.__mro__[1:] if b.__module__ == "tensorrt"],
                 "methods": {}, "properties": {}, "attributes": []}
        for attr in sorted(dir(cls)):
            if attr.startswith("__") and attr not in ("__init__", "__enter__", "__exit__"):
                continue
            raw = inspect.getattr_static(cls, attr)
            if isinstance(raw, property):
                entry["properties"][attr] = "rw" if raw.fset is not None else "r"
            elif callable(raw) or isinstance(raw, (staticmethod, classmethod)):
                sigs = doc_signatures(getattr(cls, attr), attr)
                if sigs or attr == "__init__":
                    entry["methods"][attr] = sigs
            else:
                entry["attributes"].append(attr)
        out["classes"][cname] = entry
    out["enums"] = {name: enum_members(getattr(module, name)) for name in enums if hasattr(module, name)}
    out["functions"] = {name: doc_signatures(getattr(module, name), name)
                        for name in functions if hasattr(module, name)}
    dtype_names = ("float32", "float16", "int8", "int32", "int64", "bool", "bfloat16", "uint8", "fp8")
    out["dtypes"] = sorted(n for n in dtype_names if hasattr(module, n))
else:
    out["functions"] = {}
    for name in functions:
        function = getattr(module, name, None)
        if function is None:
            continue
        try:
            params = [p.name + ("=" if p.default is not inspect.Parameter.empty else "")
                      for p in inspect.signature(function).parameters.values()]
            out["functions"][name] = [params]
        except (TypeError, ValueError):
            out["functions"][name] = doc_signatures(function, name)
    out["enums"] = {name: enum_members(getattr(module, name)) for name in enums if hasattr(module, name)}
    out["flags"] = {name: int(getattr(module, name)) for name in flags if hasattr(module, name)}
    prop_names = ("name", "major", "minor", "pciBusID", "totalGlobalMem", "multiProcessorCount")
    out["struct_fields"] = {"cudaDeviceProp": sorted(n for n in prop_names if hasattr(module.cudaDeviceProp(), n))}
print(json.dumps(out))
'''


def _pip_download(requirement: str, folder: Path) -> Path:
    """Download one wheel (no dependencies) into ``folder``; return its path."""
    before = set(folder.glob("*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(folder), requirement],
                   check=True)
    name = re.split(r"[=<>]", requirement)[0].replace("-", "_")
    wheels = [w for w in folder.glob("*.whl") if w.name.lower().startswith(name.lower() + "-")]
    if not wheels:
        raise RuntimeError(f"pip download {requirement} produced no wheel (had {sorted(map(str, before))})")
    return sorted(wheels)[-1]


def _build_stubs(folder: Path) -> Path:
    """Compile the stub TensorRT libraries (``libnvinfer.so.N``...) into ``folder``."""
    source = folder / "stub.c"
    source.write_text(_STUB_SOURCE)
    library = folder / "libstub.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    for major in ("8", "10", "11"):
        for pattern in _STUB_NAMES:
            (folder / pattern.format(v=major)).write_bytes(library.read_bytes())
    parsers = folder / "parsers.cpp"
    parsers.write_text(_STUB_PARSERS_8)
    subprocess.run(["g++", "-shared", "-fPIC", "-o", str(folder / "libnvparsers.so.8"), str(parsers)], check=True)
    return folder


def _introspect(mode: str, target: str, env: dict[str, str], classes, enums, functions, flags=()) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", _INTROSPECT, mode, target,
         *(json.dumps(list(x)) for x in (classes, enums, functions, flags))],
        check=True, capture_output=True, text=True, env=env, timeout=300,
    )
    return json.loads(result.stdout)


def _add_package_python(data: dict, init_py: Path) -> None:
    """The package ``__init__.py`` wraps the extension (``from .tensorrt import *``) and adds Python
    helpers (``nptype``, ``volume``...) and ``__version__``: record those too (read with ``ast``).
    """
    import ast

    tree = ast.parse(init_py.read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            data["functions"][node.name] = [[a.arg + ("=" if i >= len(node.args.args) - len(node.args.defaults) else "")
                                             for i, a in enumerate(node.args.args)]]
            data["module"] = sorted(set(data["module"]) | {node.name})
        elif isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets):
            data["version"] = ast.literal_eval(node.value)


def _derive_85(surface_86: dict) -> dict:
    derived = json.loads(json.dumps(surface_86))
    for owner, names in TENSORRT_85_REMOVED.items():
        if owner in derived["classes"]:
            for name in names:
                derived["classes"][owner]["methods"].pop(name, None)
                derived["classes"][owner]["properties"].pop(name, None)
        if owner in derived["enums"]:
            for name in names:
                derived["enums"][owner].pop(name, None)
    derived["derived_from"] = "8.6.1"
    derived["version"] = "8.5.2.2"
    return derived


def record(workdir: Path) -> dict:
    """Download every wheel into ``workdir`` and return the complete surface dict."""
    stubs = _build_stubs(workdir / "stubs")
    env = {**os.environ, "LD_LIBRARY_PATH": f"{stubs}:{os.environ.get('LD_LIBRARY_PATH', '')}"}
    surface: dict = {"format": 1, "tensorrt": {}, "cuda_bindings": {},
                     "note": "Generated by tests/contract/record_api.py from the bindings wheels; do not edit."}
    for label, requirement in TENSORRT_WHEELS:
        wheel = _pip_download(requirement, workdir)
        unpacked = workdir / wheel.stem
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(unpacked)
        so = next(unpacked.glob("tensorrt*/tensorrt*.so"))
        data = _introspect("tensorrt", str(so), env, TENSORRT_CLASSES, TENSORRT_ENUMS, TENSORRT_FUNCTIONS)
        _add_package_python(data, next(unpacked.glob("tensorrt*/__init__.py")))
        data["wheel"] = wheel.name
        surface["tensorrt"][label] = data
    surface["tensorrt"]["8.5.2"] = _derive_85(surface["tensorrt"]["8.6.1"])
    for label, requirement in CUDA_BINDINGS_WHEELS:
        wheel = _pip_download(requirement, workdir)
        target = workdir / wheel.stem
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                       check=True)
        data = _introspect("cuda", str(target), dict(os.environ), (), CUDART_ENUMS, CUDART_FUNCTIONS, CUDART_FLAGS)
        data["wheel"] = wheel.name
        data.pop("module")  # thousands of names; the functions and enums above are the contract
        surface["cuda_bindings"][label] = data
    return surface


def _compact(surface: dict) -> str:
    return json.dumps(surface, indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the checked-in JSON instead of writing it")
    parser.add_argument("--workdir", type=Path, help="keep downloads here (default: a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="efc-api-") as temporary:
        workdir = args.workdir or Path(temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "stubs").mkdir(exist_ok=True)
        text = _compact(record(workdir))
    if args.check:
        same = OUTPUT.is_file() and OUTPUT.read_text() == text
        sys.stderr.write("api_surface.json is up to date\n" if same else "api_surface.json differs from the wheels\n")
        return 0 if same else 1
    OUTPUT.write_text(text)
    sys.stderr.write(f"wrote {OUTPUT} ({len(text) // 1024} KiB)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
