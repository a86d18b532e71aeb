"""``efc bench``: latency percentiles and throughput per backend, precision and resolution.

For every (backend, camera size) it measures, after warm-up, in the same process:

* ``single``: one two-input graph call ``infer(prev, cur)`` (both frames encoded every call);
* ``streaming``: the per-frame cost of the streaming path, ``encode(cur)`` + ``decode(prev, cur)``
  with the previous frame's features cached (each frame encoded once);
* ``pipeline``: ``Perceptor.process`` on a uint8 camera frame end to end, and the share of its
  time spent in pre- and post-processing (resize/normalise, un-letterbox, argmax, flow rescale).

Ratios (torch eager / ONNX Runtime, streaming / single) come from one run on one machine, so they
are comparable where absolute numbers are not. TensorRT runs FP32 layers in TF32 by default.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from efc_ros.verify import BACKEND_BY_SUFFIX

FRAME_PERIOD_NS = 33_000_000  # 30 Hz camera stamps, well inside the pairing gap


def latency_stats(samples_ms: list[float]) -> dict[str, float]:
    """p50/p90/p99/mean (ms) and throughput (calls per second = 1000 / mean) of ``samples_ms``."""
    if not samples_ms:
        raise ValueError("no latency samples")
    values = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    mean = float(values.mean())
    return {"p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "mean_ms": mean,
            "throughput_hz": 1000.0 / mean if mean > 0 else float("inf"), "iters": len(samples_ms)}


def time_calls(call: Callable[[int], object], warmup: int, iters: int) -> list[float]:
    """Run ``call(i)`` ``warmup`` times untimed, then ``iters`` times; latencies in ms."""
    if iters < 1 or warmup < 0:
        raise ValueError(f"need iters >= 1 and warmup >= 0, got iters={iters}, warmup={warmup}")
    for index in range(warmup):
        call(index)
    samples = []
    for index in range(iters):
        start = time.perf_counter()
        call(warmup + index)
        samples.append((time.perf_counter() - start) * 1000.0)
    return samples


def camera_frames(size: tuple[int, int], count: int = 2, seed: int = 0) -> list[np.ndarray]:
    """``count`` (H, W, 3) uint8 RGB frames of a synthetic video at camera ``size`` (H, W)."""
    from efc_core.data.synthetic import SyntheticConfig, generate_sequence

    height, width = size
    sequence = generate_sequence(SyntheticConfig(height=height, width=width, num_frames=count), seed=seed)
    return list(sequence.frames)


def bench_backend(backend, size: tuple[int, int], warmup: int, iters: int, config=None) -> list[dict]:
    """All measurements of one backend at camera ``size`` (H, W); one dict per graph.

    ``config``: the ``PerceptorConfig`` of the pipeline rows (default: the defaults, i.e. the node's).
    """
    from efc_core.perceptor_config import PerceptorConfig, build_perceptor

    config = config if config is not None else PerceptorConfig(backend=backend.name)
    frames = camera_frames(size)
    probe = build_perceptor(config, backend)
    geometry = probe.geometry_for(size)
    # The graph rows get the pipeline's own input tensors (one pass of preprocess through the Perceptor).
    tensors = [_input_tensor(probe, frame) for frame in frames]
    base = {"backend": backend.name, "precision": backend.precision, "camera_size": list(size),
            "model_size": list(geometry.model_size)}
    if backend.name == "tensorrt":
        base.update(cuda_graph=bool(getattr(backend, "cuda_graph_active", False)),
                    tf32=bool(getattr(backend, "tf32", True)))
    rows = [{**base, "graph": "single", **latency_stats(
        time_calls(lambda i: backend.infer(tensors[i % 2], tensors[(i + 1) % 2]), warmup, iters))}]

    if backend.supports_streaming:
        cached = [backend.encode(tensors[0])]

        def streaming_frame(index: int) -> None:
            features = backend.encode(tensors[(index + 1) % 2])
            backend.decode(cached[0], features)
            cached[0] = features

        rows.append({**base, "graph": "streaming", **latency_stats(time_calls(streaming_frame, warmup, iters))})

    stage_samples: dict[str, list[float]] = {}
    for streaming in ((True, False) if backend.supports_streaming else (False,)):
        perceptor = build_perceptor(config.replace(streaming=streaming), backend)
        perceptor.process(frames[0], 0)  # the first frame only fills the pair

        def pipeline_frame(index: int) -> None:
            result = perceptor.process(frames[(index + 1) % 2], (index + 1) * FRAME_PERIOD_NS)
            if index >= warmup:
                for stage, value in result.timings_ms.items():
                    stage_samples.setdefault(stage, []).append(float(value))

        stage_samples.clear()
        wall = latency_stats(time_calls(pipeline_frame, warmup, iters))
        stages = {stage: float(np.median(values)) for stage, values in stage_samples.items()}
        total = stages.get("total") or wall["p50_ms"]
        share = (stages.get("preprocess", 0.0) + stages.get("postprocess", 0.0)) / total if total else 0.0
        rows.append({**base, "graph": "pipeline-streaming" if streaming else "pipeline-single", **wall,
                     "stages_p50_ms": stages, "pre_post_share": share})
    return rows


def _input_tensor(perceptor, frame: np.ndarray) -> np.ndarray:
    """The network input ``perceptor`` makes of ``frame`` (the runtime's preprocessing, copied out)."""
    from efc_core.preprocess import preprocess

    manifest = perceptor.manifest
    return preprocess(frame, perceptor.geometry_for(frame.shape[:2]), manifest.mean, manifest.std,
                      manifest.dtype_of(manifest.input_names[1]), pad_mode=manifest.pad_mode)


def summarise(rows: list[dict]) -> dict:
    """Ratios measured in this run: torch / onnxruntime (single graph p50), streaming saving
    (1 - streaming / single per frame), pre/post-processing share of the pipeline.
    """
    index = {(r["backend"], r["precision"], tuple(r["camera_size"]), r["graph"]): r for r in rows}
    summary: dict[str, dict] = {"torch_over_onnxruntime": {}, "streaming_saving": {}, "pre_post_share": {}}
    for (backend, precision, size, graph), row in index.items():
        label = f"{size[1]}x{size[0]}"
        key = f"{backend}/{precision}/{label}"
        if graph == "single" and backend == "torch":
            ort = next((r for (b, _, s, g), r in index.items() if b == "onnxruntime" and s == size and g == "single"),
                       None)
            if ort is not None:
                summary["torch_over_onnxruntime"][label] = row["p50_ms"] / ort["p50_ms"]
        if graph == "streaming":
            single = index.get((backend, precision, size, "single"))
            if single is not None:
                summary["streaming_saving"][key] = 1.0 - row["p50_ms"] / single["p50_ms"]
        if graph.startswith("pipeline"):
            summary["pre_post_share"][f"{key}/{graph}"] = row["pre_post_share"]
    return summary


def resolve_models(models: list[Path], backends: list[str], workdir: Path) -> dict[str, Path]:
    """Model file per backend: the given file whose suffix fits; ONNX exported (dynamic, with the
    streaming pair) from a given ``.pt`` when ONNX Runtime is asked for and no ``.onnx`` is given.
    """
    from efc_ros.model_paths import default_model_path

    if not models:
        models = [default_model_path(".onnx"), default_model_path(".pt")]
    by_kind: dict[str, Path] = {}
    for path in models:
        kind = BACKEND_BY_SUFFIX.get(path.suffix.lower())
        if kind is None:
            raise ValueError(f"cannot tell the backend of {path} (suffix {path.suffix!r}; expected "
                             f"{sorted(BACKEND_BY_SUFFIX)})")
        if path.exists():
            by_kind.setdefault(kind, path)
    chosen = {}
    for kind in backends:
        if kind in by_kind:
            chosen[kind] = by_kind[kind]
        elif kind == "onnxruntime" and "torch" in by_kind:
            from efc_core.export.onnx_export import export_onnx

            onnx_path = workdir / (by_kind["torch"].stem + ".onnx")
            export_onnx(by_kind["torch"], onnx_path, dynamic=True, split=True)
            chosen[kind] = onnx_path
        else:
            wanted = {"torch": ".pt", "onnxruntime": ".onnx or .pt", "tensorrt": ".engine"}.get(kind, "?")
            raise FileNotFoundError(f"no model for backend {kind!r}: give a {wanted} file")
    return chosen


def perceptor_config(kind: str, path: Path, threads: int | None, cuda_graph: bool = False, device: int = 0):
    """The ``PerceptorConfig`` of one benchmarked backend.

    CPU threads reach onnxruntime / torch only (the config gives TensorRT none); CUDA graph and
    device reach tensorrt.
    """
    from efc_core.perceptor_config import PerceptorConfig

    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    return PerceptorConfig(backend=kind, model_path=str(path), threads=threads or 0, cuda_graph=cuda_graph,
                           device=device)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``efc bench``."""
    parser = subparsers.add_parser("bench", help="latency p50/p90/p99 and throughput per backend and resolution")
    parser.add_argument("models", type=Path, nargs="*",
                        help="model files (.pt, .onnx, .engine); default: the shipped model")
    parser.add_argument("--backends", default="onnxruntime,torch", help="comma-separated: onnxruntime, torch, tensorrt")
    parser.add_argument("--sizes", default="640x480,1280x720", help="comma-separated camera WIDTHxHEIGHT")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads for ONNX Runtime and torch "
                        "(not passed to TensorRT, which runs on the GPU)")
    parser.add_argument("--cuda-graph", action="store_true", help="TensorRT: replay CUDA graphs (needs cuda-python)")
    parser.add_argument("--device", type=int, default=0, help="TensorRT: CUDA device index")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    parser.set_defaults(handler=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    from efc_core.perceptor_config import build_backend
    from efc_ros.cli_args import parse_size_wh

    backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    unknown = sorted(set(backends) - set(BACKEND_BY_SUFFIX.values()))
    if unknown or not backends:
        raise ValueError(f"unknown backends {unknown or backends}; expected {sorted(set(BACKEND_BY_SUFFIX.values()))}")
    sizes = [parse_size_wh(text) for text in args.sizes.split(",") if text.strip()]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="efc-bench-") as workdir:
        models = resolve_models(list(args.models), backends, Path(workdir))
        for kind, path in models.items():
            config = perceptor_config(kind, path, args.threads, args.cuda_graph, args.device)
            backend = build_backend(config)
            try:
                for size in sizes:
                    # Progress on stderr: a 1280x720 torch run takes minutes on a small CPU.
                    print(f"bench: {kind} {size[1]}x{size[0]} ...", file=sys.stderr, flush=True)
                    rows.extend({**row, "model": str(path)}
                                for row in bench_backend(backend, size, args.warmup, args.iters, config))
            finally:
                backend.close()
    report = {"environment": {**environment(args.threads), "cuda_graph": args.cuda_graph},
              "results": rows, "summary": summarise(rows)}
    print(format_table(rows, report["summary"]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def environment(threads: int | None) -> dict:
    """Machine facts that make two runs comparable (or not)."""
    return {"machine": platform.machine(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "threads": threads, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "note": "TensorRT runs FP32 layers in TF32 unless built with --no-tf32"}


def format_table(rows: list[dict], summary: dict) -> str:
    """Results as an aligned text table followed by the same-run ratios."""
    header = ("backend", "prec", "camera", "model", "graph", "p50 ms", "p90 ms", "p99 ms", "Hz", "pre+post")
    lines = [header]
    for row in rows:
        share = f"{row['pre_post_share']:.1%}" if "pre_post_share" in row else ""
        lines.append((row["backend"], row["precision"], f"{row['camera_size'][1]}x{row['camera_size'][0]}",
                      f"{row['model_size'][1]}x{row['model_size'][0]}", row["graph"], f"{row['p50_ms']:.1f}",
                      f"{row['p90_ms']:.1f}", f"{row['p99_ms']:.1f}", f"{row['throughput_hz']:.1f}", share))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)) for line in lines]
    for label, values in summary.items():
        for key, value in values.items():
            text.append(f"{label} [{key}]: {value:.2f}" if label == "torch_over_onnxruntime"
                        else f"{label} [{key}]: {value:.1%}")
    return "\n".join(text)
