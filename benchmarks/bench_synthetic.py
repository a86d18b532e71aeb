"""CPU benchmark of the synthetic video generator and of the per-frame visualisation.

* frames/s: rendering an 8-frame sequence (textures, motion, frames, labels, layer maps);
* pairs/s: the same sequence plus, for each of its 7 neighbour pairs, flow and occlusion in both
  directions (``SyntheticSequence.pair``); "frames/s with GT" counts its frames over that time;
* viz: ms per 640x480 frame of ``flow_to_color``, ``colorize_labels``, ``occlusion_to_color``
  and ``overlay``, as the ROS node runs them.

All numbers are medians over ``--runs`` runs after one warm-up run, on one OpenCV thread by
default (``--threads``). Rates come from wall time and, in brackets, from the process's CPU time,
which stays meaningful on a machine shared with other jobs.

    .venv/bin/python -m benchmarks.bench_synthetic
    .venv/bin/python -m benchmarks.bench_synthetic --runs 10 --sizes 512x256 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from efc_core import viz
from efc_core.data.synthetic import SYNTHETIC_PALETTE, SyntheticConfig, generate_sequence
from efc_ros.cli_args import parse_size_wh

NUM_FRAMES = 8


def median_seconds(function: Callable[[int], object], runs: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of ``function(run_index)`` over ``runs`` runs after a warm-up."""
    function(runs)  # warm-up with an index the timed runs do not use
    wall, cpu = [], []
    for run in range(runs):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        function(run)
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def bench_generator(height: int, width: int, runs: int) -> dict[str, float]:
    """Frames/s of rendering and pairs/s with neighbour ground truth at (height, width)."""
    config = SyntheticConfig(height=height, width=width, num_frames=NUM_FRAMES)

    def render(seed: int) -> None:
        generate_sequence(config, seed)

    def render_with_pairs(seed: int) -> None:
        sequence = generate_sequence(config, seed)
        for i in range(NUM_FRAMES - 1):
            sequence.pair(i, i + 1)

    render_wall, render_cpu = median_seconds(render, runs)
    pairs_wall, pairs_cpu = median_seconds(render_with_pairs, runs)
    return {
        "frames_per_s": NUM_FRAMES / render_wall,
        "pairs_per_s": (NUM_FRAMES - 1) / pairs_wall,
        "frames_per_s_with_gt": NUM_FRAMES / pairs_wall,
        "frames_per_cpu_s": NUM_FRAMES / render_cpu,
        "pairs_per_cpu_s": (NUM_FRAMES - 1) / pairs_cpu,
        "frames_per_cpu_s_with_gt": NUM_FRAMES / pairs_cpu,
    }


def bench_viz(runs: int, height: int = 480, width: int = 640) -> dict[str, float]:
    """Median ms per frame of each visualisation at (height, width), on synthetic outputs."""
    sequence = generate_sequence(SyntheticConfig(height=height, width=width, num_frames=2), 0)
    pair = sequence.pair(0, 1)
    image, labels = pair.image1, pair.label1
    probability = pair.occ_fw.astype(np.float32) * 0.8 + 0.1
    label_colours = viz.colorize_labels(labels, SYNTHETIC_PALETTE)
    functions = {
        "flow_to_color": lambda _: viz.flow_to_color(pair.flow_fw),
        "colorize_labels": lambda _: viz.colorize_labels(labels, SYNTHETIC_PALETTE),
        "occlusion_to_color": lambda _: viz.occlusion_to_color(probability),
        "overlay": lambda _: viz.overlay(image, label_colours, 0.5),
    }
    timings = {name: median_seconds(function, runs) for name, function in functions.items()}
    return {name: 1e3 * wall for name, (wall, _) in timings.items()} | {
        f"{name}_cpu": 1e3 * cpu for name, (_, cpu) in timings.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=parse_size_wh, default=[(256, 512), (512, 1024)],
                        help="generator sizes WIDTHxHEIGHT (default 512x256 1024x512)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per measurement (median)")
    parser.add_argument("--threads", type=int, default=1, help="cv2.setNumThreads (default 1)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    cv2.setNumThreads(args.threads)
    results: dict[str, dict] = {"generator": {}, "viz_640x480_ms": {}}
    print(f"{'size':>10} {'frames/s':>16} {'pairs/s':>16} {'frames/s incl. GT':>18}   (CPU-time rates)")
    for height, width in args.sizes:
        n = bench_generator(height, width, args.runs)
        results["generator"][f"{width}x{height}"] = n
        print(f"{f'{width}x{height}':>10} {n['frames_per_s']:>7.1f} ({n['frames_per_cpu_s']:>6.1f})"
              f" {n['pairs_per_s']:>7.1f} ({n['pairs_per_cpu_s']:>6.1f})"
              f" {n['frames_per_s_with_gt']:>9.1f} ({n['frames_per_cpu_s_with_gt']:>6.1f})")
    viz_ms = results["viz_640x480_ms"] = bench_viz(args.runs)
    print("viz at 640x480, ms/frame (CPU ms): " + ", ".join(
        f"{name} {viz_ms[name]:.2f} ({viz_ms[name + '_cpu']:.2f})" for name in viz_ms if not name.endswith("_cpu")))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
