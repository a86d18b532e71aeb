"""Flow refinement settings: end-point error against exact flow, and CPU time per pair.

The model's flow (``flow_refinement=off``, through the ``Perceptor`` as the node runs it) on
held-out photo-textured synthetic pairs with exact flow (seeds no training recipe draws), then
``efc_core.flow_refinement.VariationalFlowRefiner`` at each ``--settings`` ITERATIONSxPIXELS[xLEVELS].
Printed per setting: mean EPE over non-occluded pixels, its ratio to the model's own, and the
median milliseconds per pair (wall, and process CPU time in brackets, which stays meaningful on a
shared machine). The defaults of ``flow_refinement_iterations`` / ``flow_refinement_pixels`` were
chosen with this script, not on the real evaluation sets. Two ``flow_refinement_levels`` win here
but lost on the real pairs, so the default stays one level (training/README.md, "Flow refinement").

    .venv/bin/python -m benchmarks.bench_flow_refinement
    .venv/bin/python -m benchmarks.bench_flow_refinement --pairs 40 --settings 10x16384x1 5x16384x2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from efc_core.data.synthetic import SyntheticConfig, generate_sequence
from efc_core.flow_refinement import (
    DEFAULT_REFINEMENT_ITERATIONS,
    DEFAULT_REFINEMENT_LEVELS,
    DEFAULT_REFINEMENT_PIXELS,
    VariationalFlowRefiner,
)
from efc_core.metrics import FlowMetrics
from efc_ros.model_paths import default_model_path

#: First seed of the benchmark's scenes: above every seed range the synthetic datasets draw from.
FIRST_SEED = 5_000_000


def benchmark_config(height: int, width: int) -> SyntheticConfig:
    """Photo-textured scenes with camera and object motion up to ~10 px per pair, noise, blur."""
    return SyntheticConfig(height=height, width=width, num_frames=2, texture_source="photo", min_objects=3,
                           max_objects=7, max_translation=8.0, background_motion=8.0, background_rotation_deg=1.0,
                           background_scale_change=0.02, noise_std=2.0, brightness_change=0.05, blur_sigma_max=0.8)


def parse_setting(text: str) -> tuple[int, int, int]:
    """``"5x16384x2"`` -> (iterations, max_pixels, levels); ``"10x16384"`` is one level."""
    try:
        parts = [int(part) for part in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(f"setting must be ITERATIONSxPIXELS[xLEVELS], e.g. 5x16384x2, got {text!r}")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else 1


def mean_epe(flow: np.ndarray, truth: np.ndarray, occluded: np.ndarray) -> float:
    """Mean end-point error (px) of one pair over pixels that stay visible (``FlowMetrics``' epe_noc)."""
    metrics = FlowMetrics()
    metrics.update(flow, truth, occluded=occluded)
    return float(metrics.compute()["epe_noc"])


def run(model: Path, pairs: int, size: tuple[int, int], settings: list[tuple[int, int, int]], threads: int) -> dict:
    """Model EPE, then EPE / ratio / ms of each refinement setting on the same pairs."""
    from training.real_eval import PerceptorEstimator   # the node's pipeline, refinement off

    cv2.setNumThreads(threads)
    estimator = PerceptorEstimator(model, threads=threads, flow_refinement="off")
    config = benchmark_config(*size)
    cases = []
    for index in range(pairs):
        sequence = generate_sequence(config, FIRST_SEED + index)
        image1, image2 = sequence.frames[0], sequence.frames[1]
        cases.append((image1, image2, sequence.flow(0, 1), sequence.occlusion(0, 1), estimator.flow_fn(image1, image2)))
    model_epe = statistics.fmean(mean_epe(flow, truth, occluded) for _, _, truth, occluded, flow in cases)
    report = {"model": str(model), "pairs": pairs, "size_hw": list(size), "threads": threads,
              "model_epe": model_epe, "settings": []}
    for iterations, pixels, levels in settings:
        refiner = VariationalFlowRefiner(iterations, pixels, levels)
        errors, wall, cpu = [], [], []
        for image1, image2, truth, occluded, flow in cases:
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            refined = refiner.refine(refiner.prepare(image1), refiner.prepare(image2), flow)
            wall.append(time.perf_counter() - start_wall)
            cpu.append(time.process_time() - start_cpu)
            errors.append(mean_epe(refined, truth, occluded))
        epe = statistics.fmean(errors)
        report["settings"].append({"iterations": iterations, "max_pixels": pixels, "levels": levels, "epe": epe,
                                   "epe_ratio": epe / model_epe, "ms_wall": 1e3 * statistics.median(wall),
                                   "ms_cpu": 1e3 * statistics.median(cpu)})
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="ONNX model (default: the shipped one)")
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--size", default="384x288", help="frame WIDTHxHEIGHT")
    parser.add_argument("--settings", type=parse_setting, nargs="+",
                        default=[(DEFAULT_REFINEMENT_ITERATIONS, DEFAULT_REFINEMENT_PIXELS, DEFAULT_REFINEMENT_LEVELS),
                                 (10, 32768, 1), (20, 16384, 1), (5, 16384, 2), (10, 16384, 2), (5, 32768, 2),
                                 (5, 16384, 3)],
                        help="ITERATIONSxPIXELS[xLEVELS]: iterations per level, finest working size, levels")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    from efc_ros.cli_args import parse_size_wh

    height, width = parse_size_wh(args.size)
    model = args.model or default_model_path()
    if not model.is_file():
        print(f"bench_flow_refinement: error: model not found: {model}", file=sys.stderr)
        return 2
    report = run(model, args.pairs, (height, width), args.settings, args.threads)
    print(f"{report['pairs']} synthetic pairs {width}x{height}, {model.name}, {args.threads} thread(s)")
    print(f"{'setting':<22}{'EPE px':>9}{'vs model':>10}{'ms wall':>10}{'(CPU)':>9}")
    print(f"{'model alone':<22}{report['model_epe']:>9.3f}{1.0:>10.2f}")
    for row in report["settings"]:
        label = f"{row['iterations']} it x {row['max_pixels']} px x {row['levels']}"
        print(f"{label:<22}{row['epe']:>9.3f}{row['epe_ratio']:>10.2f}{row['ms_wall']:>10.1f}{row['ms_cpu']:>9.1f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
