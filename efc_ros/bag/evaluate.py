"""``efc bag eval``: metrics of a bag's ``/efc/*`` outputs, against ground truth when present.

Always reported (no labels needed): temporal consistency of the segmentation under the model's own
flow (``tc_miou``: mIoU between image1's labels and image2's warped back; ``tc_pixel_agreement``:
the fraction of those pixels that agree), the photometric residual of image2 warped onto image1 by
the flow on non-occluded pixels whose target lies in the frame,
dropped frames (camera frames without an output) and latency when the bag's receive times allow
(bags recorded by ``efc bag replay``). With ``/ground_truth/*`` topics: mIoU, EPE (all/noc/occ),
Fl-all and occlusion F1. Frames are matched by ``header.stamp``; the bag is streamed through a
small window of stamps, so long bags do not have to fit in memory.

Corrupt messages (MCAP chunk CRC, CDR, size fields) are skipped and counted; ground truth with
impossible values (non-finite flow, flow far beyond the image size, class ids outside
``num_classes``) is left out of the metrics. Both are listed under ``integrity`` in the report
and printed as warnings, so a corrupt bag never turns silently into a metric.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from efc_core.edge.bag_io import open_bag
from efc_core.edge.image_decode import decode_image
from efc_core.edge.image_encode import unpack_output
from efc_core.edge.stamps import stamp_to_ns
from efc_core.errors import InputError
from efc_core.flow_ops import inside_image, warp_image
from efc_core.metrics import FlowMetrics, OcclusionMetrics, SegmentationMetrics, TemporalConsistency
from efc_ros.bag.integrity import IntegrityReport
from efc_ros.bag.io import find_image_topic, read_messages
from efc_ros.bag.make_synthetic import GT_FLOW_TOPIC, GT_OCCLUSION_TOPIC, GT_SEGMENTATION_TOPIC
from efc_ros.bag.process import OUTPUT_NAMESPACE

SEG_TOPIC = f"{OUTPUT_NAMESPACE}/segmentation"
#: The node's own class colours (the model's palette): the montage shows these, not a guess.
SEG_COLOR_TOPIC = f"{OUTPUT_NAMESPACE}/segmentation/color"
FLOW_TOPIC = f"{OUTPUT_NAMESPACE}/flow"
OCC_PROB_TOPIC = f"{OUTPUT_NAMESPACE}/occlusion/probability"
OCC_TOPIC = f"{OUTPUT_NAMESPACE}/occlusion"
CAMERA_KEY = "camera"
NUM_SAMPLE_FRAMES = 4
#: Files ``write_report`` writes: the only ones ``--overwrite`` may replace in a report folder.
REPORT_FILES = ("report.json", "report.md", "montage.png", "metrics_over_time.png")
#: Ground-truth flow larger than this many times the image's larger side cannot be real.
MAX_FLOW_IMAGE_FACTOR = 2.0


def implausible_ground_truth(topic: str, array: np.ndarray, num_classes: int) -> str | None:
    """Why a ground-truth array cannot be real (and must not become a metric), or None.

    Args:
        topic: ``GT_FLOW_TOPIC`` (H, W, 2) float pixels, or ``GT_SEGMENTATION_TOPIC`` (H, W) class ids.
    """
    if topic == GT_FLOW_TOPIC:
        finite = np.isfinite(array)
        if not finite.all():
            return f"{int((~finite).sum())} non-finite flow values"
        limit = MAX_FLOW_IMAGE_FACTOR * max(array.shape[:2])
        largest = float(np.abs(array).max()) if array.size else 0.0
        if largest > limit:
            return f"flow of {largest:.3g} px, beyond {limit:.0f} px ({MAX_FLOW_IMAGE_FACTOR:g}x the image size)"
    elif topic == GT_SEGMENTATION_TOPIC:
        bad = (array >= num_classes) & (array != 255)
        if bad.any():
            return f"{int(bad.sum())} class ids >= num_classes {num_classes} (max {int(array.max())})"
    return None


@dataclass
class FrameRecord:
    """Everything known about one stamp: arrays by topic and receive times by topic."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    bag_times: dict[str, int] = field(default_factory=dict)


@dataclass
class EvaluationState:
    """Accumulators carried across frames while streaming."""

    num_classes: int
    segmentation: SegmentationMetrics = None  # type: ignore[assignment]
    flow: FlowMetrics = field(default_factory=FlowMetrics)
    occlusion: OcclusionMetrics = field(default_factory=OcclusionMetrics)
    temporal: TemporalConsistency = None  # type: ignore[assignment]
    previous: FrameRecord | None = None
    previous_stamp: int | None = None
    residual_sum: float = 0.0
    residual_count: int = 0
    camera_frames: int = 0
    output_frames: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    series: dict[str, list[float]] = field(default_factory=lambda: {
        "time_s": [], "epe": [], "photometric_residual": [], "latency_ms": []})
    samples: list[dict[str, np.ndarray]] = field(default_factory=list)
    integrity: IntegrityReport = field(default_factory=IntegrityReport)
    implausible: dict[str, int] = field(default_factory=dict)
    implausible_details: list[str] = field(default_factory=list)
    has_ground_truth: dict[str, bool] = field(default_factory=lambda: {"segmentation": False, "flow": False,
                                                                       "occlusion": False})

    def __post_init__(self) -> None:
        self.segmentation = SegmentationMetrics(self.num_classes)
        self.temporal = TemporalConsistency(self.num_classes)


def _update_frame(state: EvaluationState, stamp: int, record: FrameRecord, first_stamp: int) -> None:
    """Fold one stamp's arrays into the accumulators."""
    arrays = record.arrays
    if CAMERA_KEY in arrays:
        state.camera_frames += 1
    if SEG_TOPIC not in arrays:
        return
    state.output_frames += 1
    seg = arrays[SEG_TOPIC]
    state.series["time_s"].append((stamp - first_stamp) * 1e-9)
    if GT_SEGMENTATION_TOPIC in arrays:
        state.has_ground_truth["segmentation"] = True
        state.segmentation.update(seg, arrays[GT_SEGMENTATION_TOPIC])
    flow = arrays.get(FLOW_TOPIC)
    occlusion = arrays.get(OCC_PROB_TOPIC)
    if occlusion is None and OCC_TOPIC in arrays:
        occlusion = arrays[OCC_TOPIC].astype(np.float32) / 255.0
    epe = float("nan")
    residual = float("nan")
    if flow is not None:
        gt_occluded = arrays[GT_OCCLUSION_TOPIC] > 127 if GT_OCCLUSION_TOPIC in arrays else None
        if GT_FLOW_TOPIC in arrays:
            state.has_ground_truth["flow"] = True
            per_frame = FlowMetrics()
            per_frame.update(flow, arrays[GT_FLOW_TOPIC], occluded=gt_occluded)
            state.flow.update(flow, arrays[GT_FLOW_TOPIC], occluded=gt_occluded)
            epe = per_frame.compute()["epe"]
        if gt_occluded is not None and occlusion is not None:
            state.has_ground_truth["occlusion"] = True
            state.occlusion.update(occlusion, gt_occluded)
        previous = state.previous
        if previous is not None and SEG_TOPIC in previous.arrays:
            # flow_fw of the pair (image1 = previous frame, image2 = this frame) lives on image1's
            # grid: image1(p) ~ image2(p + flow(p)); occlusion is occ_fw, also on image1's grid.
            visible = occlusion <= 0.5 if occlusion is not None else None
            state.temporal.update(previous.arrays[SEG_TOPIC], seg, flow, None if visible is None else ~visible)
            if CAMERA_KEY in arrays and CAMERA_KEY in previous.arrays:
                warped = warp_image(arrays[CAMERA_KEY].astype(np.float32), flow)
                error = np.abs(previous.arrays[CAMERA_KEY].astype(np.float32) - warped).mean(axis=2)
                # Only pixels whose target p + flow(p) lies in image2: elsewhere warp_image returns its
                # border value, and the difference to it says nothing about the flow.
                mask = inside_image(flow) if visible is None else visible & inside_image(flow)
                if mask.any():
                    residual = float(error[mask].mean())
                    state.residual_sum += float(error[mask].sum())
                    state.residual_count += int(mask.sum())
    latency = float("nan")
    if CAMERA_KEY in record.bag_times and SEG_TOPIC in record.bag_times:
        # Offline-processed bags copy the camera's receive time onto the outputs (difference 0):
        # only recorded runs (efc bag replay, ros2 bag record) have a latency to report.
        measured = (record.bag_times[SEG_TOPIC] - record.bag_times[CAMERA_KEY]) * 1e-6
        if measured > 0:
            latency = measured
            state.latencies_ms.append(latency)
    state.series["epe"].append(epe)
    state.series["photometric_residual"].append(residual)
    state.series["latency_ms"].append(latency)
    previous = state.previous
    if (len(state.samples) < NUM_SAMPLE_FRAMES and flow is not None and previous is not None
            and CAMERA_KEY in previous.arrays and state.output_frames % 5 == 2):
        # One row per pair, drawn on image1's grid: the flow and occlusion stamped with image2
        # belong beside image1's camera frame and segmentation, not image2's.
        state.samples.append({key: value for key, value in {
            "image": previous.arrays[CAMERA_KEY], "segmentation": previous.arrays.get(SEG_TOPIC),
            "segmentation_color": previous.arrays.get(SEG_COLOR_TOPIC), "flow": flow,
            "occlusion": occlusion, "gt_segmentation": previous.arrays.get(GT_SEGMENTATION_TOPIC),
            "gt_flow": arrays.get(GT_FLOW_TOPIC), "gt_occlusion": arrays.get(GT_OCCLUSION_TOPIC),
        }.items() if value is not None})


def evaluate_bag(bag: str | Path, *, camera_topic: str | None = None, num_classes: int = 32,
                 window: int = 8) -> tuple[dict[str, Any], EvaluationState]:
    """Stream ``bag`` and return ``(report, state)``; ``InputError`` if it has no ``/efc`` outputs."""
    with open_bag(bag) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        if SEG_TOPIC not in types:
            raise InputError(f"bag has no {SEG_TOPIC} topic: run 'efc bag process' or 'efc bag replay' first")
        try:
            image_topic, _ = find_image_topic(reader, camera_topic)
        except InputError:
            if camera_topic is not None:
                raise
            image_topic = None
        wanted = [t for t in (SEG_TOPIC, SEG_COLOR_TOPIC, FLOW_TOPIC, OCC_PROB_TOPIC, OCC_TOPIC,
                              GT_SEGMENTATION_TOPIC, GT_FLOW_TOPIC, GT_OCCLUSION_TOPIC) if t in types]
        if OCC_PROB_TOPIC in wanted and OCC_TOPIC in wanted:
            wanted.remove(OCC_TOPIC)
        if image_topic is not None:
            wanted.append(image_topic)
        state = EvaluationState(num_classes=num_classes)
        records: dict[int, FrameRecord] = {}
        first_stamp: int | None = None

        def flush(keep: int) -> None:
            while len(records) > keep:
                stamp = min(records)
                record = records.pop(stamp)
                _update_frame(state, stamp, record, first_stamp or stamp)
                if SEG_TOPIC in record.arrays:
                    state.previous, state.previous_stamp = record, stamp

        for item in read_messages(reader, wanted, state.integrity):
            stamp = stamp_to_ns(item.message.header.stamp)
            first_stamp = stamp if first_stamp is None else min(first_stamp, stamp)
            key = CAMERA_KEY if item.topic == image_topic else item.topic
            try:
                array = decode_image(item.message).rgb if key == CAMERA_KEY else unpack_output(item.message)
            except (InputError, ValueError) as error:
                state.integrity.add(item.topic, 1, f"message at {stamp} ns: {error}")
                continue
            problem = implausible_ground_truth(item.topic, array, num_classes)
            if problem is not None:
                state.implausible[item.topic] = state.implausible.get(item.topic, 0) + 1
                if len(state.implausible_details) < 20:
                    state.implausible_details.append(f"{item.topic} at {stamp} ns: {problem}")
                continue
            record = records.setdefault(stamp, FrameRecord())
            record.arrays[key] = array
            record.bag_times[key] = item.bag_time_ns
            flush(window)
        flush(0)
    return build_report(state, image_topic), state


def _finite_mean(values: list[float]) -> float | None:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def build_report(state: EvaluationState, image_topic: str | None) -> dict[str, Any]:
    """The JSON-serialisable report of an evaluation."""
    temporal = state.temporal.compute() if state.output_frames > 1 else {"tc": None, "pixel_agreement": None}
    report: dict[str, Any] = {
        "camera_topic": image_topic,
        "frames": {"camera": state.camera_frames, "outputs": state.output_frames,
                   "dropped": max(state.camera_frames - state.output_frames, 0)},
        "label_free": {
            # Segmentation of image1 against image2's warped back by the model's flow, on visible
            # pixels whose target lies in the frame: mIoU over classes and plain pixel agreement.
            "tc_miou": temporal["tc"],
            "tc_pixel_agreement": temporal["pixel_agreement"],
            "tc_flow": "model",
            "photometric_residual": state.residual_sum / state.residual_count if state.residual_count else None,
            "photometric_residual_units": "mean |image1 - warp(image2, flow_fw)| over non-occluded pixels whose "
                                          "target lies in the frame, 0-255 levels",
        },
        "latency_ms": None,
        "ground_truth": {},
        "integrity": integrity_section(state),
    }
    if state.latencies_ms:
        latencies = np.asarray(state.latencies_ms)
        report["latency_ms"] = {"p50": float(np.percentile(latencies, 50)), "p90": float(np.percentile(latencies, 90)),
                                "p99": float(np.percentile(latencies, 99)), "count": int(latencies.size)}
    if state.has_ground_truth["segmentation"]:
        seg = state.segmentation.compute()
        report["ground_truth"]["segmentation"] = {
            "miou": seg["miou"], "pixel_accuracy": seg["pixel_accuracy"],
            "iou": {k: v for k, v in seg["iou"].items() if v is not None}}
    if state.has_ground_truth["flow"]:
        report["ground_truth"]["flow"] = state.flow.compute()
    if state.has_ground_truth["occlusion"]:
        report["ground_truth"]["occlusion"] = state.occlusion.compute()
    return report


def write_report(report: dict[str, Any], state: EvaluationState, output_dir: str | Path) -> list[Path]:
    """Write ``report.json``, ``report.md`` and the PNG figures; returns the written paths."""
    from efc_ros.bag.figures import metrics_over_time_figure, montage_figure

    directory = Path(output_dir)
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / "report.json", directory / "report.md"]
    paths[0].write_text(json.dumps(report, indent=2, default=float) + "\n")
    paths[1].write_text(markdown_report(report))
    if state.samples:
        paths.append(montage_figure(state.samples, directory / "montage.png"))
    if state.series["time_s"]:
        paths.append(metrics_over_time_figure(state.series, directory / "metrics_over_time.png"))
    return paths


def integrity_section(state: EvaluationState) -> dict[str, Any]:
    """Corrupt messages skipped and implausible ground truth left out, with one warning line each."""
    section = state.integrity.as_dict()
    section["implausible_ground_truth"] = dict(state.implausible)
    section["implausible_details"] = list(state.implausible_details)
    warnings = []
    if state.integrity.total:
        warnings.append(state.integrity.summary())
    if state.implausible:
        counts = ", ".join(f"{topic} {count}" for topic, count in sorted(state.implausible.items()))
        first = state.implausible_details[0] if state.implausible_details else ""
        warnings.append(f"left {sum(state.implausible.values())} ground-truth message(s) with impossible values "
                        f"out of the metrics ({counts}); first: {first}")
    section["warnings"] = warnings
    return section


def _fmt(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown_report(report: dict[str, Any]) -> str:
    """A short human-readable report."""
    frames, free, gt = report["frames"], report["label_free"], report["ground_truth"]
    lines = ["# EFC bag evaluation", "", "| measure | value |", "| --- | --- |",
             f"| camera frames | {frames['camera']} |", f"| output frames | {frames['outputs']} |",
             f"| dropped frames | {frames['dropped']} |",
             f"| temporal consistency mIoU (model flow) | {_fmt(free['tc_miou'])} |",
             f"| temporal consistency pixel agreement (model flow) | {_fmt(free['tc_pixel_agreement'])} |",
             f"| photometric residual (0-255) | {_fmt(free['photometric_residual'])} |"]
    if report["latency_ms"]:
        lat = report["latency_ms"]
        lines.append(f"| latency p50 / p90 / p99 (ms) | {lat['p50']:.1f} / {lat['p90']:.1f} / {lat['p99']:.1f} |")
    if "segmentation" in gt:
        lines.append(f"| mIoU | {_fmt(gt['segmentation']['miou'])} |")
    if "flow" in gt:
        flow = gt["flow"]
        lines += [f"| EPE all / noc / occ (px) | {_fmt(flow['epe'])} / {_fmt(flow.get('epe_noc'))} / "
                  f"{_fmt(flow.get('epe_occ'))} |",
                  f"| Fl-all | {_fmt(flow['fl_all'])} |"]
    if "occlusion" in gt:
        lines.append(f"| occlusion F1 | {_fmt(gt['occlusion']['f1'])} |")
    for warning in report.get("integrity", {}).get("warnings", []):
        lines.append(f"| **warning** | {warning} |")
    lines += ["", "Figures: `montage.png` (sample frames), `metrics_over_time.png`.", ""]
    return "\n".join(lines)
