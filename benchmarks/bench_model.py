"""CPU benchmark of the EFC network presets (PyTorch eager) and of the synthetic data generator.

For each preset and input size: parameter count and the median latency of one full forward pass
(segmentation of both frames, flow and occlusion in both directions, batch 1) under
``torch.inference_mode``, after warm-up runs. Then the synthetic generator's pairs per second at
each size (one 2-frame sequence with its ground truth per pair), when ``efc_core.data.synthetic``
is present.

    .venv/bin/python -m benchmarks.bench_model                       # all presets, 512x256 + 1024x512
    .venv/bin/python -m benchmarks.bench_model --presets tiny --sizes 512x256 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from efc_core.model import PRESETS, build_model
from efc_ros.cli_args import parse_size_wh


def time_model(preset: str, height: int, width: int, warmup: int, repeats: int, num_classes: int) -> dict:
    """Median / min forward latency in ms of ``preset`` at (height, width), both flow directions."""
    torch.manual_seed(0)
    model = build_model(preset, num_classes).eval()
    params = sum(p.numel() for p in model.parameters())
    image1 = torch.randn(1, 3, height, width)
    image2 = torch.randn(1, 3, height, width)
    times = []
    with torch.inference_mode():
        for index in range(warmup + repeats):
            start = time.perf_counter()
            model(image1, image2, with_flow=True, both_directions=True)
            if index >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
    return {"preset": preset, "height": height, "width": width, "params_m": params / 1e6,
            "median_ms": statistics.median(times), "min_ms": min(times), "repeats": repeats}


def time_synthetic(height: int, width: int, pairs: int) -> dict | None:
    """Pairs per second of the synthetic generator (sequence + both flows + both occlusions)."""
    try:
        from efc_core.data.synthetic import SyntheticConfig, generate_sequence
    except ImportError:
        return None
    config = SyntheticConfig(height=height, width=width, num_frames=2)
    generate_sequence(config, seed=0).pair(0, 1)  # warm-up (imports, caches)
    start = time.perf_counter()
    for seed in range(pairs):
        generate_sequence(config, seed=seed + 1).pair(0, 1)
    elapsed = time.perf_counter() - start
    return {"height": height, "width": width, "pairs_per_s": pairs / elapsed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--sizes", nargs="+", type=parse_size_wh, default=[(256, 512), (512, 1024)],
                        help="WIDTHxHEIGHT (default 512x256 1024x512)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--paper-repeats", type=int, default=2, help="repeats of the slow paper preset")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--synthetic-pairs", type=int, default=5)
    parser.add_argument("--num-classes", type=int, default=19)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, eager CPU, batch 1, both directions")
    print(f"{'preset':<9} {'size':>9} {'params':>8} {'median ms':>10} {'min ms':>9} {'FPS':>6}")
    results: dict[str, list] = {"model": [], "synthetic": []}
    for preset in args.presets:
        for height, width in args.sizes:
            repeats = args.paper_repeats if preset == "paper" else args.repeats
            warmup = 1 if preset == "paper" else args.warmup
            row = time_model(preset, height, width, warmup, repeats, args.num_classes)
            results["model"].append(row)
            print(f"{preset:<9} {width:>4}x{height:<4} {row['params_m']:>7.2f}M {row['median_ms']:>10.1f} "
                  f"{row['min_ms']:>9.1f} {1e3 / row['median_ms']:>6.2f}", flush=True)
    for height, width in args.sizes:
        row = time_synthetic(height, width, args.synthetic_pairs)
        if row is None:
            print("efc_core.data.synthetic not available: generator not measured")
            break
        results["synthetic"].append(row)
        print(f"synthetic {width:>4}x{height:<4} {row['pairs_per_s']:.2f} pairs/s", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
