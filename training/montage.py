"""A picture of what a model sees on real video: one row per pair, every panel on frame 1's grid.

``python -m training.montage MODEL.onnx --frames a.jpg b.jpg [c.jpg d.jpg ...] --output montage.png``
(or ``--davis ROOT --sequences car-roundabout dog --index 10``) runs each pair ``(frame 1, frame 2)``
through the node's pipeline (``Perceptor``) and draws: frame 1 | its segmentation over it | the flow
1 -> 2 (Middlebury colours) | the occlusion of frame 1 (red where the head's probability > 0.5:
pixels that frame 2 covers or that leave the view).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from efc_core.data.formats import list_images, natural_sort_key, read_rgb
from efc_core.errors import EfcError
from efc_core.viz import colorize_labels, flow_to_color, overlay

#: Row height of the montage in pixels (panels keep their aspect).
ROW_HEIGHT = 216


def pair_panels(perceptor, image1: np.ndarray, image2: np.ndarray, palette: np.ndarray,
                threshold: float = 0.5) -> tuple[list[np.ndarray], float]:
    """The four (H, W, 3) uint8 panels of one pair, and the share of frame 1 marked occluded."""
    perceptor.reset()
    result1 = perceptor.process(image1, 1_000_000_000, "montage")
    result2 = perceptor.process(image2, 1_066_666_667, "montage")
    if result2.flow is None or result2.occlusion is None:
        raise ValueError(f"the model gave no flow for the pair ({result2.pair_reset_reason})")
    occluded = result2.occlusion > threshold
    red = np.zeros_like(image1)
    red[occluded] = (255, 0, 0)
    occlusion_panel = np.where(occluded[..., None], overlay(image1, red, 0.7), (image1 * 0.6).astype(np.uint8))
    panels = [image1, overlay(image1, colorize_labels(result1.segmentation, palette), 0.55),
              flow_to_color(result2.flow), occlusion_panel]
    return panels, float(occluded.mean())


def montage(perceptor, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, list[float]]:
    """(rows * ROW_HEIGHT, 4 * width, 3) uint8 RGB montage of ``pairs`` and the occluded share of each."""
    palette = np.asarray(perceptor.manifest.palette, np.uint8)
    rows, shares = [], []
    for image1, image2 in pairs:
        panels, share = pair_panels(perceptor, image1, image2, palette)
        scale = ROW_HEIGHT / image1.shape[0]
        width = int(round(image1.shape[1] * scale))
        rows.append(np.concatenate([cv2.resize(p, (width, ROW_HEIGHT), interpolation=cv2.INTER_AREA)
                                    for p in panels], axis=1))
        shares.append(share)
    widest = max(row.shape[1] for row in rows)
    rows = [np.pad(row, ((0, 0), (0, widest - row.shape[1]), (0, 0))) for row in rows]
    return np.concatenate(rows, axis=0), shares


def davis_pairs(root: Path, sequences: Sequence[str], index: int, gap_frames: int = 1) -> list[tuple[Path, Path]]:
    """Frame paths ``(index, index + gap_frames)`` of each DAVIS sequence (``root/<seq>/frames/*.jpg``)."""
    pairs = []
    for name in sequences:
        frames = sorted(list_images(root / name / "frames"), key=natural_sort_key)
        if index + gap_frames >= len(frames):
            raise ValueError(f"DAVIS sequence {name!r} has {len(frames)} frames; index {index} + gap {gap_frames} "
                             "is past it")
        pairs.append((frames[index], frames[index + gap_frames]))
    return pairs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Montage of segmentation, flow and occlusion on real pairs.")
    parser.add_argument("model", type=Path)
    parser.add_argument("--frames", type=Path, nargs="*", default=[], help="frame paths, two per pair")
    parser.add_argument("--davis", type=Path, default=None, help="DAVIS root (with --sequences)")
    parser.add_argument("--sequences", nargs="*", default=["car-roundabout", "dog", "motocross-jump", "soapbox"])
    parser.add_argument("--index", type=int, default=10, help="DAVIS: first frame of each pair")
    parser.add_argument("--gap", dest="gap_frames", type=int, default=1, help="frames from image1 to image2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, required=True, help="PNG to write")
    args = parser.parse_args(argv)
    try:
        from efc_core.perceptor_config import PerceptorConfig, build_perceptor

        kind = "torch" if args.model.suffix == ".pt" else "onnxruntime"
        perceptor = build_perceptor(PerceptorConfig(backend=kind, model_path=str(args.model), threads=args.threads))
        if len(args.frames) % 2:
            raise ValueError(f"--frames takes two paths per pair, got {len(args.frames)}")
        paths = list(zip(args.frames[::2], args.frames[1::2]))
        if args.davis is not None:
            paths += davis_pairs(args.davis, args.sequences, args.index, args.gap_frames)
        if not paths:
            raise ValueError("no pairs: give --frames or --davis")
        image, shares = montage(perceptor, [(read_rgb(a), read_rgb(b)) for a, b in paths])
    except (EfcError, ValueError, FileNotFoundError) as error:
        print(f"montage: error: {error}", file=sys.stderr)
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.output), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    for (first, _), share in zip(paths, shares):
        print(f"{first}: {share * 100:.1f}% of frame 1 marked occluded")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
