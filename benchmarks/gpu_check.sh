#!/usr/bin/env bash
# One check for a machine with an NVIDIA GPU (a Jetson, a workstation, a lent H200): prints what is
# installed, then runs what it can, each step under its own time limit, in under ten minutes:
#
#   1. torch CUDA latency of each model preset at 1024x512 (two frames, FP32 and FP16 autocast)
#   2. ONNX Runtime with the CUDA / TensorRT execution providers, if present, on the shipped model
#   3. efc build-engine FP32, FP16 (+ streaming pair) and INT8 (synthetic calibration frames)
#      -> efc verify against ONNX Runtime -> efc bench (with and without CUDA graphs)
#   4. the GPU tests (real TensorRT engines; they skip themselves where something is missing)
#   5. per-layer precisions of the FP16 engine from IEngineInspector (grid / GridSample / Gather)
#
# Steps that need TensorRT, a CUDA Python layer or a GPU are skipped with the reason when those are
# missing; the script never fails because of a missing package, only reports it. Results and logs
# go to $OUT (default: outputs/gpu_check/<timestamp>); the summary table comes last.
#
# Usage: bash benchmarks/gpu_check.sh [MODEL.onnx]     (default: models/efc_demo_tiny.onnx)
#        PYTHON=/path/to/python  OUT=/some/folder  DEVICE=0  STEP_TIMEOUT=240  (environment overrides)
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
MODEL=${1:-models/efc_demo_tiny.onnx}
OUT=${OUT:-outputs/gpu_check/$(date +%Y%m%d-%H%M%S)}
DEVICE=${DEVICE:-0}
STEP_TIMEOUT=${STEP_TIMEOUT:-150}
TOTAL_BUDGET=${TOTAL_BUDGET:-570}   # seconds for the whole script; later steps get what is left
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_LOCALHOST_ONLY=1
START=$(date +%s)
declare -a SUMMARY=()

note() { printf '%s\n' "$*" | tee -a "$OUT/gpu_check.log"; }
record() { SUMMARY+=("$(printf '%-44s %-8s %s' "$1" "$2" "$3")"); }

# run_step NAME LIMIT_S COMMAND...: runs with a time limit, logs to $OUT/NAME.log, records the result.
run_step() {
  local name=$1 limit=$2; shift 2
  local log="$OUT/${name//[^A-Za-z0-9_.-]/_}.log" begin=$SECONDS status
  local left=$((TOTAL_BUDGET - SECONDS))
  if [ "$left" -lt 20 ]; then skip "$name" "time budget of ${TOTAL_BUDGET}s used up"; return 0; fi
  [ "$limit" -gt "$left" ] && limit=$left
  note ""
  note "== $name (limit ${limit}s)"
  timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
  status=$?
  tail -n 25 "$log" | tee -a "$OUT/gpu_check.log"
  local took=$((SECONDS - begin))
  case $status in
    0) record "$name" "ok" "${took}s" ;;
    124|137) record "$name" "TIMEOUT" "after ${took}s (see $log)" ;;
    *) record "$name" "FAILED" "exit $status after ${took}s (see $log)" ;;
  esac
  return $status
}

skip() { note ""; note "== $1: skipped ($2)"; record "$1" "skipped" "$2"; }

# ---------------------------------------------------------------------------------------------
# What is installed
# ---------------------------------------------------------------------------------------------
note "GPU check $(date -u +%FT%TZ) on $(hostname); python: $PY; model: $MODEL; output: $OUT"
"$PY" - "$DEVICE" <<'EOF' 2>&1 | tee "$OUT/installed.txt" | tee -a "$OUT/gpu_check.log"
import importlib, importlib.metadata as md, shutil, subprocess, sys

device = int(sys.argv[1])
rows = []

def version(dist):
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None

def add(what, value):
    rows.append((what, value if value else "-"))

if shutil.which("nvidia-smi"):
    query = subprocess.run(["nvidia-smi", "--query-gpu=index,name,driver_version,compute_cap,memory.total",
                            "--format=csv,noheader"], capture_output=True, text=True)
    for line in query.stdout.strip().splitlines() or ["(nvidia-smi lists no GPU)"]:
        add("GPU (nvidia-smi, PCI order)", line.strip())
else:
    add("GPU (nvidia-smi)", "nvidia-smi not found")
try:
    from cuda.bindings import runtime as rt
except ImportError:
    try:
        from cuda import cudart as rt
    except ImportError:
        rt = None
if rt is not None:
    err, count = rt.cudaGetDeviceCount()
    add("CUDA devices (cuda-python)", f"{count}" if int(err) == 0 else f"error {err}")
    err, driver = rt.cudaDriverGetVersion()
    err2, runtime = rt.cudaRuntimeGetVersion()
    add("CUDA driver / runtime API", f"{driver // 1000}.{driver % 1000 // 10} / {runtime // 1000}.{runtime % 1000 // 10}")
nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
try:
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    add("CUDA toolkit (nvcc)", out.strip().splitlines()[-1] if out else None)
except OSError:
    add("CUDA toolkit (nvcc)", None)
try:
    import tensorrt
    add("TensorRT", tensorrt.__version__ + f" ({tensorrt.__file__})")
except Exception as error:  # noqa: BLE001
    add("TensorRT", f"not importable: {error}")
add("cuda-python / cuda-bindings", " / ".join(str(version(d)) for d in ("cuda-python", "cuda-bindings")))
add("pycuda", version("pycuda"))
try:
    import onnxruntime as ort
    add("onnxruntime", f"{ort.__version__}: {', '.join(ort.get_available_providers())}")
except Exception as error:  # noqa: BLE001
    add("onnxruntime", f"not importable: {error}")
try:
    import torch
    add("torch", f"{torch.__version__}, CUDA {torch.version.cuda}, available={torch.cuda.is_available()}"
        + (f", {torch.cuda.get_device_name(device)}" if torch.cuda.is_available() else ""))
except Exception as error:  # noqa: BLE001
    add("torch", f"not importable: {error}")
width = max(len(what) for what, _ in rows)
print(f"{'component':<{width}}  installed")
print(f"{'-' * width}  ---------")
for what, value in rows:
    print(f"{what:<{width}}  {value}")
EOF

have() { "$PY" -c "$1" >/dev/null 2>&1; }
HAVE_TORCH_CUDA=0; have "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" && HAVE_TORCH_CUDA=1
HAVE_TRT=0; have "import tensorrt" && HAVE_TRT=1
HAVE_CUDA_LAYER=0; have "from efc_core.runtime.cuda_layer import cuda_device_count as c; import sys; sys.exit(0 if c() > 0 else 1)" && HAVE_CUDA_LAYER=1

# ---------------------------------------------------------------------------------------------
# 1. torch CUDA latency per preset at 1024x512
# ---------------------------------------------------------------------------------------------
if [ "$HAVE_TORCH_CUDA" = 1 ]; then
  run_step "torch CUDA latency per preset 1024x512" 120 "$PY" - "$DEVICE" "$OUT/torch_latency.json" <<'EOF'
import json, sys, time
import torch
from efc_core.model import build_model

device = torch.device(f"cuda:{int(sys.argv[1])}")
results = []
for preset in ("tiny", "realtime", "paper"):
    try:
        model = build_model(preset, 6).to(device).eval()
    except Exception as error:  # noqa: BLE001
        print(f"{preset}: cannot build ({error})")
        continue
    frames = [torch.randn(1, 3, 512, 1024, device=device) for _ in range(2)]
    for mode in ("fp32", "fp16-autocast"):
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=mode != "fp32"):
            for _ in range(5):
                model(*frames, both_directions=False)
            torch.cuda.synchronize(device)
            samples = []
            for _ in range(30):
                start = time.perf_counter()
                model(*frames, both_directions=False)
                torch.cuda.synchronize(device)
                samples.append((time.perf_counter() - start) * 1000)
        samples.sort()
        row = {"preset": preset, "mode": mode, "p50_ms": samples[len(samples) // 2], "p90_ms": samples[int(len(samples) * 0.9)]}
        results.append(row)
        print(f"{preset:<9} {mode:<14} p50 {row['p50_ms']:7.2f} ms  p90 {row['p90_ms']:7.2f} ms  (1024x512, two frames, TF32 "
              f"matmul={torch.backends.cuda.matmul.allow_tf32}, cudnn={torch.backends.cudnn.allow_tf32})")
json.dump(results, open(sys.argv[2], "w"), indent=2)
EOF
else
  skip "torch CUDA latency per preset 1024x512" "torch without CUDA or no GPU"
fi

# ---------------------------------------------------------------------------------------------
# 2. ONNX Runtime CUDA / TensorRT execution providers
# ---------------------------------------------------------------------------------------------
if [ -f "$MODEL" ] && have "import onnxruntime as o, sys; sys.exit(0 if 'CUDAExecutionProvider' in o.get_available_providers() else 1)"; then
  run_step "onnxruntime CUDA/TensorRT providers" 90 "$PY" - "$MODEL" <<'EOF'
import sys, time
import numpy as np
import onnxruntime as ort
from efc_core.runtime import create_backend

model = sys.argv[1]
for providers in (["CUDAExecutionProvider", "CPUExecutionProvider"],
                  ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]):
    if providers[0] not in ort.get_available_providers():
        print(f"{providers[0]}: not available")
        continue
    try:
        backend = create_backend("onnxruntime", model, providers=providers)
    except Exception as error:  # noqa: BLE001
        print(f"{providers[0]}: cannot open ({error})")
        continue
    m = backend.manifest
    shape = (1, 3, m.input_height or 512, m.input_width or 1024)
    prev, cur = (np.random.default_rng(i).normal(size=shape).astype(np.float32) for i in range(2))
    for _ in range(5):
        backend.infer(prev, cur)
    samples = []
    for _ in range(30):
        start = time.perf_counter()
        backend.infer(prev, cur)
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    print(f"{providers[0]:<26} {shape[3]}x{shape[2]}: p50 {samples[15]:.2f} ms, p90 {samples[27]:.2f} ms")
    backend.close()
EOF
else
  skip "onnxruntime CUDA/TensorRT providers" "no CUDAExecutionProvider in this onnxruntime (or no model)"
fi

# ---------------------------------------------------------------------------------------------
# 3. TensorRT: build -> verify -> bench
# ---------------------------------------------------------------------------------------------
EFC=("$PY" -m efc_ros.cli)
ENGINES="$OUT/engines"
mkdir -p "$ENGINES"
engine_of() { grep '^engine: ' "$1" | head -n 1 | sed 's/^engine: //'; }
if [ "$HAVE_TRT" = 0 ]; then
  for step in "build fp32" "build fp16 + streaming" "build int8" "verify" "bench" "layer precisions"; do
    skip "tensorrt $step" "TensorRT is not installed (python -c 'import tensorrt' fails)"
  done
elif [ "$HAVE_CUDA_LAYER" = 0 ]; then
  for step in "build fp32" "build fp16 + streaming" "build int8" "verify" "bench" "layer precisions"; do
    skip "tensorrt $step" "no cuda-python / pycuda, or no visible CUDA device"
  done
else
  COMMON=(--output "$ENGINES" --timing-cache "$ENGINES/timing.cache" --device "$DEVICE")
  run_step "tensorrt build fp32" "$STEP_TIMEOUT" "${EFC[@]}" build-engine "$MODEL" --precision fp32 "${COMMON[@]}"
  FP32=$(engine_of "$OUT/tensorrt_build_fp32.log")
  run_step "tensorrt build fp16 + streaming" "$STEP_TIMEOUT" "${EFC[@]}" build-engine "$MODEL" --precision fp16 --streaming "${COMMON[@]}"
  FP16=$(engine_of "$OUT/tensorrt_build_fp16___streaming.log")
  if "$PY" -c "import tensorrt as t, sys; sys.exit(0 if int(t.__version__.split('.')[0]) <= 10 else 1)"; then
    run_step "tensorrt build int8" "$STEP_TIMEOUT" "${EFC[@]}" build-engine "$MODEL" --precision int8 --calib-synthetic 24 \
      --calib-cache "$ENGINES/int8.cache" "${COMMON[@]}"
    INT8=$(engine_of "$OUT/tensorrt_build_int8.log")
  else
    skip "tensorrt build int8" "TensorRT 11 has no implicit INT8 calibration"
    INT8=""
  fi
  for engine in "$FP32" "$FP16" "$INT8"; do
    [ -n "$engine" ] && [ -f "$engine" ] || continue
    tag=$(basename "$engine" .engine)
    run_step "verify ${tag##*.}" 60 "${EFC[@]}" verify "$MODEL" "$engine" --synthetic 4 --json "$OUT/verify_${tag##*.}.json"
  done
  for engine in "$FP32" "$FP16"; do
    [ -n "$engine" ] && [ -f "$engine" ] || continue
    tag=$(basename "$engine" .engine)
    run_step "bench ${tag##*.}" 60 "${EFC[@]}" bench "$engine" --backends tensorrt --sizes 640x480,1280x720 \
      --warmup 10 --iters 50 --device "$DEVICE" --json "$OUT/bench_${tag##*.}.json"
    run_step "bench ${tag##*.} cuda graph" 60 "${EFC[@]}" bench "$engine" --backends tensorrt --sizes 640x480,1280x720 \
      --warmup 10 --iters 50 --device "$DEVICE" --cuda-graph --json "$OUT/bench_${tag##*.}_graph.json"
  done
  if [ -n "$FP16" ] && [ -f "$FP16" ]; then
    run_step "tensorrt layer precisions (fp16)" 120 "$PY" - "$FP16" "$DEVICE" "$MODEL" <<'EOF'
import collections, json, sys
import onnx
from efc_core.export.precision_plan import flow_fp32_nodes, onnx_nodes_from_metadata
from efc_core.export.tensorrt_build import engine_layer_information

layers = engine_layer_information(sys.argv[1], int(sys.argv[2]))
fp32_nodes = flow_fp32_nodes(onnx.load(sys.argv[3], load_external_data=False))
def precision(layer):
    return ",".join(sorted({str(o.get("Format/Datatype", "?")).split()[0] for o in layer.get("Outputs", [])})) or "?"
counts = collections.Counter(precision(layer) for layer in layers)
print(f"{len(layers)} engine layers; output precisions: {dict(counts)}")
print("layers carrying grid / flow nodes (expected Float):")
wrong = 0
for layer in layers:
    nodes = onnx_nodes_from_metadata(layer.get("Metadata", "")) or [layer.get("Name", "")]
    if any(n in fp32_nodes for n in nodes) or "GridSample" in json.dumps(layer) or "Gather" in layer.get("Name", ""):
        p = precision(layer)
        wrong += "Half" in p
        print(f"  {p:<12} {layer.get('LayerType', '?'):<16} {layer.get('Name', '')[:100]}")
print(f"{wrong} of them have Half outputs" + (" <- check the FP32 pinning" if wrong else ""))
EOF
  fi
fi

# ---------------------------------------------------------------------------------------------
# 4. GPU tests (they skip themselves when TensorRT, a CUDA layer or a GPU is missing)
# ---------------------------------------------------------------------------------------------
run_step "GPU tests (tensorrt backend + build)" 150 "$PY" -m pytest -q -rs -p no:cacheprovider \
  tests/runtime/test_tensorrt_backend.py tests/export/test_tensorrt_build.py

# ---------------------------------------------------------------------------------------------
note ""
note "== summary ($(( $(date +%s) - START )) s; logs in $OUT)"
printf '%-44s %-8s %s\n' "step" "result" "detail" | tee -a "$OUT/gpu_check.log"
for line in "${SUMMARY[@]}"; do note "$line"; done
exit 0
