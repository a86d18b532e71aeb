"""CamVid validation through the deployed path: mIoU, per-class IoU, temporal consistency, latency.

The model runs exactly as the node runs it (``efc_core.perceptor.Perceptor`` on ONNX Runtime or
torch, frames fed in order with 15 Hz stamps), and its segmentation is scored at CamVid's native
480x360 against the labels (void ignored). CamVid's val split is one sequence (0016E5) at 15 Hz,
so consecutive val frames form the pairs of the temporal-consistency measures:

* ``tc_miou``: mIoU between the labels of frame t and the labels of frame t+1 warped back to t
  (``efc_core.metrics.TemporalConsistency``), over pixels the occlusion mask keeps;
* ``tc_pixel_agreement``: the plain share of those pixels whose two labels agree.

On a split of several sequences (``--split train``: 0001TP, 0006R0, 0016E5) each sequence is its
own stream (its own ``frame_id``, so no pair and no temporal fusion spans two sequences) and the
report adds ``miou_per_sequence``.

The model's own flow is the node's: refined by default (``--flow-refinement off``: the network's).
Both are given with the model's own flow and occlusion (what a user of the node gets) and with
OpenCV DIS-medium flow (a flow that does not come from the model, so a model cannot look
consistent by predicting no motion), each with and without the runtime's temporal fusion.

    python -m training.camvid_eval models/efc_camvid_tiny.onnx --root ../shared/data/real/camvid \
        --fusion 0 0.5 --output models/efc_camvid_tiny.camvid_val.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from efc_core.contract import IGNORE_LABEL
from efc_core.data.formats import natural_sort_key, read_rgb
from efc_core.errors import EfcError
from efc_core.flow_refinement import FLOW_REFINEMENTS
from efc_core.metrics import SegmentationMetrics, TemporalConsistency
from training.real_eval import dis_flow_fn

#: CamVid's 15 Hz val sequence: one processed frame every 1/15 s.
VAL_PERIOD_NS = 66_666_667
#: CamVid label id 11 is void.
CAMVID_VOID_ID = 11


def camvid_val_frames(root: Path, split: str = "val") -> list[tuple[Path, Path]]:
    """(image, label) paths of ``split`` in time order; ``FileNotFoundError`` if the folder is absent."""
    image_dir, label_dir = root / split, root / f"{split}annot"
    if not image_dir.is_dir() or not label_dir.is_dir():
        raise FileNotFoundError(f"CamVid split {split!r} not found under {root} (need {split}/ and {split}annot/)")
    images = sorted((p for p in image_dir.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")),
                    key=natural_sort_key)
    pairs = [(image, label_dir / f"{image.stem}.png") for image in images]
    missing = [str(label) for _, label in pairs if not label.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} CamVid label(s) missing, e.g. {missing[0]}")
    return pairs


def camvid_sequence(image_path: Path) -> str:
    """The sequence of a CamVid frame file: its name before the first underscore (``0016E5_07959.png``)."""
    return image_path.name.split("_", 1)[0]


def read_camvid_label(path: Path) -> np.ndarray:
    """(H, W) uint8 CamVid class ids 0..10, void (11) -> 255."""
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None or label.ndim != 2:
        raise ValueError(f"{path} is not a single-channel label image")
    return np.where(label >= CAMVID_VOID_ID, IGNORE_LABEL, label).astype(np.uint8)


def build_perceptor(model_path: Path, threads: int, temporal_fusion: float, flow_refinement: str = "variational"):
    """The node's pipeline on ``model_path`` (.onnx / .json: ONNX Runtime; .pt: torch), node defaults otherwise."""
    from efc_core.perceptor_config import PerceptorConfig, build_perceptor

    kind = "torch" if model_path.suffix == ".pt" else "onnxruntime"
    return build_perceptor(PerceptorConfig(backend=kind, model_path=str(model_path), threads=threads,
                                           temporal_fusion=temporal_fusion, flow_refinement=flow_refinement))


def evaluate_camvid(model_path: Path, root: Path, fusions: Sequence[float] = (0.0, 0.5), threads: int = 2,
                    split: str = "val", max_frames: int | None = None, flow_refinement: str = "variational") -> dict:
    """Metrics of ``model_path`` on CamVid ``split`` for every temporal-fusion weight in ``fusions``.

    Returns ``{"model", "split", "frames", "class_names", "runs": [{"temporal_fusion", "miou",
    "pixel_accuracy", "iou": {class: IoU}, "miou_per_sequence": {sequence: mIoU},
    "tc_own_flow": {"tc_miou", "tc_pixel_agreement"}, "tc_dis_medium_flow": {...},
    "ms_per_frame_median", "ms_per_frame_p90", "fps"}]}``.
    """
    frames = camvid_val_frames(root, split)[:max_frames]
    if len(frames) < 2:
        raise ValueError(f"CamVid {split} under {root} has {len(frames)} frame(s); temporal consistency needs 2")
    dis = dis_flow_fn("medium")
    report: dict = {"model": str(model_path), "split": split, "frames": len(frames),
                    "flow_refinement": flow_refinement, "runs": []}
    for fusion in fusions:
        perceptor = build_perceptor(model_path, threads, fusion, flow_refinement)
        names = list(perceptor.manifest.class_names)
        report["class_names"] = names
        segmentation = SegmentationMetrics(len(names), class_names=names)
        per_sequence: dict[str, SegmentationMetrics] = {}
        tc_own = TemporalConsistency(len(names), flow_source="model")
        tc_dis = TemporalConsistency(len(names), flow_source="opencv-dis-medium")
        times_ms: list[float] = []
        previous: tuple[np.ndarray, np.ndarray] | None = None   # (image, labels) of frame t-1
        for index, (image_path, label_path) in enumerate(frames):
            image, sequence = read_rgb(image_path), camvid_sequence(image_path)
            started = time.perf_counter()
            # One frame_id per sequence: the Perceptor never pairs (or fuses) across a cut.
            result = perceptor.process(image, 1_000_000_000 + index * VAL_PERIOD_NS, f"camvid/{sequence}")
            times_ms.append((time.perf_counter() - started) * 1000.0)
            label = read_camvid_label(label_path)
            segmentation.update(result.segmentation, label)
            if sequence not in per_sequence:
                per_sequence[sequence] = SegmentationMetrics(len(names), class_names=names)
            per_sequence[sequence].update(result.segmentation, label)
            if previous is not None and result.flow is not None:
                flow, occlusion = result.flow, result.occlusion
                if result.flow_direction != "forward":
                    raise ValueError(f"{model_path}: TC expects forward flow, the model gives {result.flow_direction}")
                occluded = None if occlusion is None else occlusion > 0.5
                tc_own.update(previous[1], result.segmentation, flow, occluded)
                tc_dis.update(previous[1], result.segmentation, dis(previous[0], image))
            previous = (image, result.segmentation)
        seg = segmentation.compute()
        own, other = tc_own.compute(), tc_dis.compute()
        # The first frames include ONNX Runtime's warm-up; the median is over all of them.
        median = float(np.median(times_ms))
        report["runs"].append({
            "temporal_fusion": fusion, "miou": seg["miou"], "pixel_accuracy": seg["pixel_accuracy"],
            "iou": seg["iou"],
            "miou_per_sequence": {name: metrics.compute()["miou"] for name, metrics in per_sequence.items()},
            "tc_own_flow": {"tc_miou": own["tc"], "tc_pixel_agreement": own["pixel_agreement"]},
            "tc_dis_medium_flow": {"tc_miou": other["tc"], "tc_pixel_agreement": other["pixel_agreement"]},
            "ms_per_frame_median": median, "ms_per_frame_p90": float(np.percentile(times_ms, 90)),
            "fps": 1000.0 / median,
        })
    return _plain(report)


def _plain(value):
    """numpy scalars -> Python numbers, NaN -> None (valid JSON)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def format_table(report: dict) -> str:
    """Plain-text table: one column per temporal-fusion run."""
    runs = report["runs"]
    header = f"{'CamVid ' + report['split'] + ' (' + str(report['frames']) + ' frames)':<34}" + "".join(
        f"{'fusion ' + format(run['temporal_fusion'], 'g'):>14}" for run in runs)

    def row(label: str, values: list) -> str:
        return f"{label:<34}" + "".join(f"{'n/a' if v is None else f'{v:.4f}':>14}" for v in values)

    lines = [header, row("mIoU", [r["miou"] for r in runs]), row("pixel accuracy", [r["pixel_accuracy"] for r in runs])]
    for name in report["class_names"]:
        lines.append(row(f"  IoU {name}", [r["iou"].get(name) for r in runs]))
    sequences = list(runs[0]["miou_per_sequence"])
    if len(sequences) > 1:
        for name in sequences:
            lines.append(row(f"  mIoU sequence {name}", [r["miou_per_sequence"][name] for r in runs]))
    for source in ("tc_own_flow", "tc_dis_medium_flow"):
        lines.append(row(f"TC mIoU ({source[3:]})", [r[source]["tc_miou"] for r in runs]))
        lines.append(row(f"TC pixel agreement ({source[3:]})", [r[source]["tc_pixel_agreement"] for r in runs]))
    lines.append(row("ms per frame (median)", [r["ms_per_frame_median"] for r in runs]))
    lines.append(row("frames per second", [r["fps"] for r in runs]))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="CamVid val through the Perceptor: mIoU, per-class IoU, TC, latency.")
    parser.add_argument("model", type=Path, help="MODEL.onnx (ONNX Runtime) or MODEL.pt (torch)")
    parser.add_argument("--root", type=Path, default=Path("../shared/data/real/camvid"))
    parser.add_argument("--split", default="val")
    parser.add_argument("--fusion", type=float, nargs="+", default=[0.0, 0.5],
                        help="temporal-fusion weights to evaluate (0 = off)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--flow-refinement", default="variational", choices=FLOW_REFINEMENTS,
                        help="the node's default refinement of the network's flow (TC and latency), or off")
    parser.add_argument("--output", type=Path, default=None, help="report JSON")
    args = parser.parse_args(argv)
    cv2.setNumThreads(args.threads)
    try:
        report = evaluate_camvid(args.model, args.root, args.fusion, args.threads, args.split, args.max_frames,
                                 args.flow_refinement)
    except (EfcError, ValueError, FileNotFoundError) as error:
        print(f"camvid_eval: error: {error}", file=sys.stderr)
        return 2
    print(format_table(report))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
