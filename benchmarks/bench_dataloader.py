"""Does the Cityscapes data pipeline keep up with training? CPU benchmark.

Writes a Cityscapes-layout tree at full resolution (2048x1024 PNGs, one 30-frame snippet per
city, labelled frame 19), builds the training split with a recipe's data options (default
``cityscapes_realtime.yaml``: resize to 1024x512, random scale, 448x896 crop, flip, jitter) and
measures

* loader pairs/s: a ``DataLoader`` with the recipe's batch size, for each ``--workers`` value
  (PNG decoding of two 2048x1024 frames and a label dominates);
* one training step (forward, losses, backward, optimiser) of the tiny and real-time models on a
  batch of that crop size, as pairs/s;

and says whether the loader is faster than the step. Wall time on a shared machine; the CPU time
of the main process is printed for the step.

    .venv/bin/python -m benchmarks.bench_dataloader
    .venv/bin/python -m benchmarks.bench_dataloader --workers 0 2 4 --batches 6 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from efc_core.data.datasets import build_dataset
from training.config import load_config

FULL_SIZE = (1024, 2048)  # (H, W) of Cityscapes frames
LABEL_IDS = np.array([7, 8, 11, 17, 21, 23, 24, 26, 0], np.uint8)


def natural_looking_frame(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Smooth structure plus fine noise, so the PNG is about as hard to decode as a real frame."""
    coarse = rng.uniform(0, 255, size=(size[0] // 32, size[1] // 32, 3)).astype(np.float32)
    image = cv2.resize(coarse, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
    image += rng.normal(0, 6, size=image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_fixture(root: Path, cities: int) -> None:
    """``cities`` snippets of 30 full-resolution frames with one labelled frame each."""
    rng = np.random.default_rng(0)
    base = natural_looking_frame(rng, FULL_SIZE)
    for city_index in range(cities):
        city = f"city{city_index}"
        frames_dir = root / "leftImg8bit_sequence" / "train" / city
        frames_dir.mkdir(parents=True, exist_ok=True)
        for frame in range(30):
            # Shift the same scene a little per frame: consecutive frames differ as in a video.
            shifted = np.roll(base, shift=3 * frame + 50 * city_index, axis=1)
            cv2.imwrite(str(frames_dir / f"{city}_000000_{frame:06d}_leftImg8bit.png"), shifted)
        label_dir = root / "gtFine" / "train" / city
        label_dir.mkdir(parents=True, exist_ok=True)
        blocks = rng.choice(LABEL_IDS, size=(FULL_SIZE[0] // 64, FULL_SIZE[1] // 64)).astype(np.uint8)
        label = cv2.resize(blocks, (FULL_SIZE[1], FULL_SIZE[0]), interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(label_dir / f"{city}_000000_000019_gtFine_labelIds.png"), label)


def loader_pairs_per_second(dataset, batch_size: int, workers: int, batches: int) -> float:
    """Pairs/s of a shuffled DataLoader over ``batches`` batches after one warm-up batch."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         persistent_workers=False, drop_last=True)
    iterator = iter(loader)
    next(iterator)  # start-up (worker spawn) and warm-up are not counted
    start = time.perf_counter()
    count = 0
    for _ in range(batches):
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            batch = next(iterator)
        count += batch["image1"].shape[0]
    return count / (time.perf_counter() - start)


def training_step_pairs_per_second(preset: str, batch: dict, num_classes: int) -> tuple[float, float]:
    """(pairs/s wall, pairs/s CPU) of one training step after a warm-up step."""
    from efc_core.losses.composer import LossConfig, LossWeights, compute_losses
    from efc_core.model import build_model
    from training.loop import normalise_images

    model = build_model(preset, num_classes=num_classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    weights, config = LossWeights(), LossConfig()

    def step() -> None:
        output = model(normalise_images(batch["image1"]), normalise_images(batch["image2"]))
        losses = compute_losses(output, batch["image1"], batch["image2"], batch["label1"], batch["label2"],
                                weights, config)
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()

    step()
    wall, cpu = time.perf_counter(), time.process_time()
    step()
    pairs = batch["image1"].shape[0]
    return pairs / (time.perf_counter() - wall), pairs / (time.process_time() - cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe",
                        default=str(Path(__file__).resolve().parents[1] / "training/configs/cityscapes_realtime.yaml"))
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batches", type=int, default=4, help="timed batches per worker setting")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the recipe's data.batch_size")
    parser.add_argument("--step-batch", type=int, default=2, help="pairs per timed training step")
    parser.add_argument("--presets", nargs="*", default=["tiny", "realtime"],
                        help="models whose step is timed (none: loader only)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the main process (more oversubscribe a shared CPU)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = load_config(args.recipe)
    batch_size = args.batch_size or config.data.batch_size
    results: dict = {"recipe": Path(args.recipe).name, "batch_size": batch_size, "loader": {}, "step": {}}

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        start = time.perf_counter()
        write_fixture(root, cities=2)
        print(f"fixture: 2 snippets x 30 frames at {FULL_SIZE[1]}x{FULL_SIZE[0]} "
              f"in {time.perf_counter() - start:.1f} s")
        dataset = build_dataset("cityscapes", str(root), "train", **config.data.options)
        print(f"dataset: {len(dataset)} pairs ({dataset.num_labelled_pairs} labelled), "
              f"options from {results['recipe']}")
        for workers in args.workers:
            rate = loader_pairs_per_second(dataset, batch_size, workers, args.batches)
            results["loader"][workers] = rate
            print(f"loader  workers={workers}: {rate:6.2f} pairs/s (recipe workers: {config.data.num_workers})")
        batch = torch.utils.data.default_collate([dataset[i] for i in range(args.step_batch)])
    crop = tuple(batch["image1"].shape[-2:])
    for preset in args.presets:
        wall, cpu = training_step_pairs_per_second(preset, batch, config.model.num_classes)
        results["step"][preset] = {"pairs_per_s": wall, "pairs_per_cpu_s": cpu, "crop": list(crop)}
        best = max(results["loader"].values())
        verdict = "keeps up" if best >= wall else "is the bottleneck"
        print(f"step    {preset:8s}: {wall:6.2f} pairs/s at {crop[1]}x{crop[0]} (CPU time: {cpu:.2f}); "
              f"loader ({best:.2f} pairs/s) {verdict}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
