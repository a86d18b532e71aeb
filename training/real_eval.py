"""Flow and occlusion on real data: label-free residuals, RubberWhale EPE, FlyingChairsOcc F1.

Any estimator plugs in as ``flow_fn(image1, image2) -> (H, W, 2) float32`` flow 1 -> 2 in pixels on
frame 1's grid (both images (H, W, 3) uint8 RGB), plus optionally ``occlusion_fn(image1, image2)
-> (H, W)`` bool mask or probability (> 0.5 = occluded in frame 1). Baselines: zero flow and
OpenCV DIS (:func:`dis_flow_fn`, with a forward-backward check as its occlusion); a model runs
through ``efc_core``'s ``Perceptor`` (:class:`PerceptorEstimator`), exactly as the node runs it.

Measures:

* **photometric residual** (:func:`photometric_residual`): mean absolute grey-level difference
  (0-255) between frame 1 and frame 2 backward-warped by the flow (bilinear), counted only over
  pixels whose target ``(x + u, y + v)`` lies inside frame 2, since no flow can be judged where the
  target is out of view. Per DAVIS / KITTI odometry sequence, on pairs ``(i, i + gap)`` for
  ``i = 0, every, 2 * every, ...``; the zero-flow residual of the same pairs is reported next to it.
* **occluded share**: fraction of frame-1 pixels the ``occlusion_fn`` marks occluded;
* **RubberWhale EPE** (Middlebury ``.flo``, values >= 1e9 unknown) and **FlyingChairsOcc F1**
  (``occ_01.png``, 255 = occluded in the first frame);
* **ms per pair**: wall time of one ``flow_fn`` call on this CPU (for a model: the whole
  ``Perceptor`` on both frames, occlusion included; for DIS: the flow alone, not its check).

Command line (prints a table, writes JSON)::

    python -m training.real_eval --method dis-medium --data-root ../shared/data --output report.json
    python -m training.real_eval --method models/efc_camvid_tiny.onnx --size 256x192 --output report.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from efc_core.data.datasets.teacher_flow import DIS_PRESETS, grey
from efc_core.data.formats import list_images, natural_sort_key, read_flo, read_occlusion_png, read_rgb
from efc_core.errors import EfcError
from efc_core.flow_ops import forward_backward_occlusion, inside_image, warp_image
from efc_core.flow_refinement import FLOW_REFINEMENTS
from efc_core.metrics import FlowMetrics, OcclusionMetrics

FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
OcclusionFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

BASELINE_METHODS: tuple[str, ...] = ("zero", "dis-ultrafast", "dis-fast", "dis-medium")


def photometric_residual(image1: np.ndarray, image2: np.ndarray, flow: np.ndarray) -> tuple[float, float]:
    """Mean |grey1(p) - grey2(p + flow(p))| over the pixels whose target lies inside frame 2.

    Args:
        image1, image2: (H, W, 3) uint8 RGB (or (H, W) grey) frames of one size.
        flow: (H, W, 2) float flow 1 -> 2 in pixels on frame 1's grid.

    Returns:
        ``(residual, inside_fraction)``: the mean in grey levels (0-255; NaN when no target is
        inside) and the share of frame-1 pixels it was counted over.
    """
    if image1.shape[:2] != image2.shape[:2] or flow.shape != (*image1.shape[:2], 2):
        raise ValueError(f"frames {image1.shape}, {image2.shape} and flow {flow.shape} must share (H, W)")
    grey1 = grey(image1).astype(np.float32)
    warped2 = warp_image(grey(image2).astype(np.float32), flow.astype(np.float32, copy=False), "linear", 0.0)
    inside = inside_image(flow)
    count = int(inside.sum())
    residual = float(np.abs(grey1 - warped2)[inside].mean()) if count else float("nan")
    return residual, count / inside.size


def zero_flow_fn(image1: np.ndarray, image2: np.ndarray) -> np.ndarray:
    """(H, W, 2) zeros: the no-motion baseline."""
    return np.zeros((*image1.shape[:2], 2), np.float32)


def dis_flow_fn(preset: str) -> FlowFn:
    """OpenCV DIS flow 1 -> 2 on grey frames (``preset``: ultrafast | fast | medium)."""
    if preset not in DIS_PRESETS:
        raise ValueError(f"unknown DIS preset {preset!r}; expected one of {sorted(DIS_PRESETS)}")
    dis = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])

    def flow(image1: np.ndarray, image2: np.ndarray) -> np.ndarray:
        return dis.calc(grey(image1), grey(image2), None).astype(np.float32, copy=False)

    return flow


def forward_backward_occlusion_fn(flow_fn: FlowFn) -> OcclusionFn:
    """Occlusion of frame 1 from a forward-backward check of ``flow_fn`` (two extra flow calls)."""

    def occlusion(image1: np.ndarray, image2: np.ndarray) -> np.ndarray:
        return forward_backward_occlusion(flow_fn(image1, image2), flow_fn(image2, image1))

    return occlusion


class PerceptorEstimator:
    """A model (``.onnx`` / ``.pt``) through ``efc_core.perceptor.Perceptor`` as a flow_fn / occlusion_fn.

    Each pair is processed as a fresh two-frame stream (``reset``, frame 1, frame 2 one 15 Hz
    period later); flow and occlusion come back at the native resolution, vectors scaled, as the
    node publishes them. A backward-flow export is fed frame 2 first so that the result is still
    the flow 1 -> 2 on frame 1's grid. The occlusion of the last pair is cached, so calling
    ``occlusion_fn`` after ``flow_fn`` on the same arrays costs nothing.

    Args:
        model_path: ``.onnx`` (or its manifest ``.json``) for ONNX Runtime, ``.pt`` for torch.
        input_size: (H, W) model input, or None for the manifest's.
        threads: inference threads.
        resize_mode: ``letterbox`` (the node's default) or ``stretch``.
        flow_refinement: ``variational`` (the node's default) or ``off`` (the network's flow alone).
    """

    def __init__(self, model_path: str | Path, input_size: tuple[int, int] | None = None, threads: int = 2,
                 resize_mode: str = "letterbox", flow_refinement: str = "variational") -> None:
        from efc_core.perceptor_config import PerceptorConfig, build_perceptor

        path = Path(model_path)
        height, width = input_size if input_size is not None else (0, 0)
        self.perceptor = build_perceptor(PerceptorConfig(
            backend="torch" if path.suffix == ".pt" else "onnxruntime", model_path=str(path), threads=threads,
            input_height=height, input_width=width, resize_mode=resize_mode, flow_refinement=flow_refinement))
        self._backward = self.perceptor.manifest.flow_direction == "backward"
        self._last: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None] | None = None

    def _run(self, image1: np.ndarray, image2: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        last = self._last
        if last is not None and last[0] is image1 and last[1] is image2:
            return last[2], last[3]
        first, second = (image2, image1) if self._backward else (image1, image2)
        self.perceptor.reset()
        self.perceptor.process(first, 1_000_000_000, "eval")
        result = self.perceptor.process(second, 1_000_000_000 + 66_666_667, "eval")
        if result.flow is None:
            raise RuntimeError(f"the model produced no flow for the pair ({result.pair_reset_reason})")
        self._last = (image1, image2, result.flow, result.occlusion)
        return result.flow, result.occlusion

    def flow_fn(self, image1: np.ndarray, image2: np.ndarray) -> np.ndarray:
        return self._run(image1, image2)[0]

    def occlusion_fn(self, image1: np.ndarray, image2: np.ndarray) -> np.ndarray:
        occlusion = self._run(image1, image2)[1]
        return occlusion if occlusion is not None else np.zeros(image1.shape[:2], bool)


@dataclass
class SequenceResult:
    """Residuals of one sequence: grey levels (0-255) and shares in [0, 1]; ms per pair."""

    name: str
    pairs: int
    residual: float
    zero_residual: float
    reduction: float           # 1 - residual / zero_residual
    inside_fraction: float     # share of pixels counted (target inside frame 2)
    occluded_fraction: float | None
    ms_per_pair: float


def _occluded_share(mask_or_probability: np.ndarray) -> float:
    mask = mask_or_probability if mask_or_probability.dtype == np.bool_ else mask_or_probability > 0.5
    return float(mask.mean())


def evaluate_sequence(name: str, frames: Sequence[Path], flow_fn: FlowFn, occlusion_fn: OcclusionFn | None = None,
                      every: int = 3, gap_frames: int = 1) -> SequenceResult:
    """Residuals on pairs ``(frames[i], frames[i + gap_frames])``, ``i = 0, every, ...`` (frame files, any format)."""
    if every < 1 or gap_frames < 1:
        raise ValueError(f"every and gap_frames must be >= 1, got every={every}, gap_frames={gap_frames}")
    starts = list(range(0, len(frames) - gap_frames, every))
    if not starts:
        raise ValueError(f"sequence {name!r} has {len(frames)} frames: no pair {gap_frames} apart")
    residuals, zero, inside, occluded, seconds = [], [], [], [], 0.0
    for start in starts:
        image1, image2 = read_rgb(frames[start]), read_rgb(frames[start + gap_frames])
        began = time.perf_counter()
        flow = flow_fn(image1, image2)
        seconds += time.perf_counter() - began  # the flow only: a baseline's occlusion check is extra
        occlusion = occlusion_fn(image1, image2) if occlusion_fn is not None else None
        residual, share = photometric_residual(image1, image2, flow)
        residuals.append(residual)
        inside.append(share)
        zero.append(photometric_residual(image1, image2, zero_flow_fn(image1, image2))[0])
        if occlusion is not None:
            occluded.append(_occluded_share(occlusion))
    mean, zero_mean = float(np.nanmean(residuals)), float(np.mean(zero))
    return SequenceResult(
        name=name, pairs=len(starts), residual=mean, zero_residual=zero_mean,
        reduction=1.0 - mean / zero_mean if zero_mean > 0 else 0.0, inside_fraction=float(np.mean(inside)),
        occluded_fraction=float(np.mean(occluded)) if occluded else None, ms_per_pair=1e3 * seconds / len(starts),
    )


def sequence_folders(root: Path, frames_subdir: str = "") -> dict[str, list[Path]]:
    """``{name: frame files}`` of every ``root/<name>/<frames_subdir>/`` holding images (natural order)."""
    sequences = {}
    for folder in sorted((p for p in root.iterdir() if p.is_dir()), key=natural_sort_key):
        frames_dir = folder / frames_subdir if frames_subdir else folder
        if frames_dir.is_dir() and (frames := list_images(frames_dir)):
            sequences[folder.name] = frames
    return sequences


def summarise(results: Sequence[SequenceResult]) -> dict[str, float]:
    """Means over sequences (each sequence counts once, as the issue's reference numbers do).

    Residual, zero residual, reduction (of the means), occluded share, ms; plus pair-weighted
    residuals (``*_pair_weighted``) for comparison.
    """
    weights = np.array([r.pairs for r in results], np.float64)
    residual = float(np.mean([r.residual for r in results]))
    zero = float(np.mean([r.zero_residual for r in results]))
    summary = {
        "sequences": len(results), "pairs": int(weights.sum()), "residual": residual, "zero_residual": zero,
        "reduction": 1.0 - residual / zero if zero > 0 else 0.0,
        "residual_pair_weighted": float(np.average([r.residual for r in results], weights=weights)),
        "zero_residual_pair_weighted": float(np.average([r.zero_residual for r in results], weights=weights)),
        "inside_fraction": float(np.mean([r.inside_fraction for r in results])),
        "ms_per_pair": float(np.average([r.ms_per_pair for r in results], weights=weights)),
    }
    if all(r.occluded_fraction is not None for r in results):
        summary["occluded_fraction"] = float(np.mean([r.occluded_fraction for r in results]))
    return summary


def rubberwhale_epe(root: Path, flow_fn: FlowFn) -> dict[str, float]:
    """Mean EPE (px) over known pixels of Middlebury RubberWhale (``frame10/11.png``, ``flow10.flo``)."""
    image1, image2 = read_rgb(root / "frame10.png"), read_rgb(root / "frame11.png")
    began = time.perf_counter()
    flow = flow_fn(image1, image2)
    milliseconds = (time.perf_counter() - began) * 1e3
    metrics = FlowMetrics()
    metrics.update(flow, read_flo(root / "flow10.flo"))  # unknown (>= 1e9) excluded by FlowMetrics
    result = metrics.compute()
    return {"epe": result["epe"], "known_pixels": result["count"], "ms_per_pair": milliseconds}


def occlusion_f1(predicted: np.ndarray, ground_truth: np.ndarray) -> dict[str, float]:
    """F1 / precision / recall of an (H, W) mask or probability (> 0.5) against a bool mask."""
    metrics = OcclusionMetrics()
    metrics.update(predicted, ground_truth)
    return metrics.compute()


def flyingchairsocc_f1(root: Path, occlusion_fn: OcclusionFn) -> dict[str, float]:
    """Occlusion F1 on the FlyingChairsOcc sample (``img_0/1.png``, ``occ_01.png`` 255 = occluded in 0)."""
    image1, image2 = read_rgb(root / "img_0.png"), read_rgb(root / "img_1.png")
    ground_truth = read_occlusion_png(root / "occ_01.png")
    result = occlusion_f1(occlusion_fn(image1, image2), ground_truth)
    result["gt_occluded_fraction"] = float(ground_truth.mean())
    return result


def build_method(method: str, size: tuple[int, int] | None, threads: int, resize_mode: str = "letterbox",
                 flow_refinement: str = "variational") -> tuple[FlowFn, OcclusionFn | None]:
    """``zero`` | ``dis-<preset>`` (occlusion: forward-backward check) | a model path.

    ``size``, ``resize_mode`` and ``flow_refinement`` apply to models only.
    """
    if method == "zero":
        return zero_flow_fn, lambda image1, image2: np.zeros(image1.shape[:2], bool)
    if method.startswith("dis-"):
        flow_fn = dis_flow_fn(method.removeprefix("dis-"))
        return flow_fn, forward_backward_occlusion_fn(flow_fn)
    path = Path(method)
    if path.suffix not in (".onnx", ".pt", ".json"):
        raise ValueError(f"unknown method {method!r}; expected one of {BASELINE_METHODS} or a .onnx / .pt model")
    if not path.is_file():
        raise FileNotFoundError(f"model not found: {path}")
    estimator = PerceptorEstimator(path, size, threads=threads, resize_mode=resize_mode,
                                   flow_refinement=flow_refinement)
    return estimator.flow_fn, estimator.occlusion_fn


def evaluate_real(method: str, data_root: Path, size: tuple[int, int] | None = None, every: int = 3,
                  gap_frames: int = 1, threads: int = 2, resize_mode: str = "letterbox",
                  flow_refinement: str = "variational") -> dict:
    """The full report of ``method`` over whatever of ``data_root``'s sets is present.

    The report keeps the key ``gap`` for ``gap_frames`` (reports already written use it).
    """
    cv2.setNumThreads(threads)
    flow_fn, occlusion_fn = build_method(method, size, threads, resize_mode, flow_refinement)
    report: dict = {"method": method, "input_size_hw": list(size) if size else None, "every": every, "gap": gap_frames,
                    "threads": threads, "missing": []}
    if method not in BASELINE_METHODS:
        report["flow_refinement"] = flow_refinement
    real = data_root / "real"
    for key, folder, subdir in (("davis", real / "davis", "frames"), ("kitti_odometry", real / "kitti_odometry", "")):
        if not folder.is_dir():
            report["missing"].append(str(folder))
            continue
        results = [evaluate_sequence(name, frames, flow_fn, occlusion_fn, every, gap_frames)
                   for name, frames in sequence_folders(folder, subdir).items()]
        report[key] = {"sequences": [asdict(r) for r in results], "summary": summarise(results)}
    for key, folder, function, argument in (
        ("rubberwhale", data_root / "middlebury-rubberwhale", rubberwhale_epe, flow_fn),
        ("flyingchairsocc", data_root / "flyingchairsocc-sample", flyingchairsocc_f1, occlusion_fn),
    ):
        if folder.is_dir() and argument is not None:
            report[key] = function(folder, argument)
        else:
            report["missing"].append(str(folder))
    return report


def format_table(report: dict) -> str:
    """A plain-text table of a report (per sequence, then the sets' summaries)."""
    lines = [f"method {report['method']}  (pairs i -> i+{report['gap']}, i = 0, {report['every']}, "
             f"{2 * report['every']}, ...; residual in grey levels over in-frame targets)",
             f"{'set/sequence':<32}{'pairs':>6}{'resid':>8}{'zero':>8}{'reduct':>8}{'inside':>8}{'occl':>7}{'ms':>8}"]
    for key in ("davis", "kitti_odometry"):
        if key not in report:
            continue
        rows = [*report[key]["sequences"], {"name": f"{key} (all)", **report[key]["summary"]}]
        for row in rows:
            occluded = row.get("occluded_fraction")
            lines.append(f"{key + '/' + row['name'] if '(all)' not in row['name'] else row['name']:<32}"
                         f"{row['pairs']:>6}{row['residual']:>8.2f}{row['zero_residual']:>8.2f}"
                         f"{row['reduction'] * 100:>7.0f}%{row.get('inside_fraction', float('nan')) * 100:>7.0f}%"
                         f"{'' if occluded is None else f'{occluded * 100:.1f}%':>7}{row['ms_per_pair']:>8.1f}")
    if "rubberwhale" in report:
        rw = report["rubberwhale"]
        lines.append(f"RubberWhale EPE {rw['epe']:.3f} px ({rw['known_pixels']} known pixels, "
                     f"{rw['ms_per_pair']:.1f} ms)")
    if "flyingchairsocc" in report:
        fc = report["flyingchairsocc"]
        lines.append(f"FlyingChairsOcc occlusion F1 {fc['f1']:.3f} (precision {fc['precision']:.3f}, "
                     f"recall {fc['recall']:.3f}; {fc['gt_occluded_fraction'] * 100:.1f}% occluded)")
    if report["missing"]:
        lines.append("absent (skipped): " + ", ".join(report["missing"]))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Label-free and ground-truth flow / occlusion evaluation on real data.")
    parser.add_argument("--method", required=True, help=f"{' | '.join(BASELINE_METHODS)} | MODEL.onnx | MODEL.pt")
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"),
                        help="folder holding real/, middlebury-rubberwhale/, flyingchairsocc-sample/")
    parser.add_argument("--size", default=None, help="model input WIDTHxHEIGHT (models only; default: the manifest's)")
    parser.add_argument("--resize-mode", default="letterbox", choices=["letterbox", "stretch"])
    parser.add_argument("--flow-refinement", default="variational", choices=FLOW_REFINEMENTS,
                        help="models only: the node's default refinement of the network's flow, or the network alone")
    parser.add_argument("--every", type=int, default=3, help="use every k-th pair of each sequence")
    parser.add_argument("--gap", dest="gap_frames", type=int, default=1,
                        help="frames between the two frames of a pair")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=None, help="report JSON")
    args = parser.parse_args(argv)
    try:
        from efc_ros.cli import parse_size_wh

        size = parse_size_wh(args.size) if args.size else None
        report = evaluate_real(args.method, args.data_root, size, args.every, args.gap_frames, args.threads,
                               args.resize_mode, args.flow_refinement)
    except (EfcError, ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"real_eval: error: {error}", file=sys.stderr)
        return 2
    print(format_table(report))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
