"""Evaluation metrics (docs/METHOD.md §5), accumulated incrementally over a dataset.

Each metric object is fed one frame (or pair) at a time with ``update`` and summarised with
``compute``, which returns a dict of plain Python numbers. Dataset-level values are ratios of
pooled sums (pixels, confusion-matrix entries), so updating with two halves of the data equals
one update with all of it. A value that is undefined because no pixel contributed is ``None``
(JSON ``null``), never NaN.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from efc_core.contract import IGNORE_LABEL
from efc_core.flow_ops import inside_image, warp_image

#: Middlebury marks unknown flow with values >= 1e9.
_UNKNOWN_FLOW = 1e9


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator) / float(denominator) if denominator > 0 else None


def _check_same_size(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    if a.shape[:2] != b.shape[:2]:
        raise ValueError(f"{name_a} size {a.shape[:2]} != {name_b} size {b.shape[:2]}")


class FlowMetrics:
    """End-point error over all / non-occluded / occluded valid pixels, and KITTI Fl-all.

    Fl-all: a pixel is an outlier when its EPE is > 3 px AND > 5 % of the ground-truth magnitude;
    the reported value is the dataset-level ratio of outliers to valid pixels.
    """

    def __init__(self) -> None:
        self.epe_sum = {"all": 0.0, "noc": 0.0, "occ": 0.0}
        self.pixels = {"all": 0, "noc": 0, "occ": 0}
        self.outliers = 0

    def update(self, pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None,
               occluded: np.ndarray | None = None) -> None:
        """Add one flow field.

        Args:
            pred: (H, W, 2) predicted flow, pixels.
            gt: (H, W, 2) ground-truth flow, pixels.
            valid: (H, W) bool pixels with ground truth; default: gt finite and below 1e9.
            occluded: (H, W) bool ground-truth occlusion; without it only ``epe`` and ``fl_all``
                are accumulated.
        """
        if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[2] != 2:
            raise ValueError(f"pred {pred.shape} and gt {gt.shape} must both be (H, W, 2)")
        known = np.all(np.isfinite(gt) & (np.abs(gt) < _UNKNOWN_FLOW), axis=2)
        if valid is not None:
            _check_same_size("valid", valid, "gt", gt)
            known &= valid.astype(bool)
        difference = pred.astype(np.float64) - np.where(known[..., None], gt, 0.0)
        epe = np.sqrt(np.sum(difference * difference, axis=2))
        gt_magnitude = np.sqrt(np.sum(np.where(known[..., None], gt, 0.0) ** 2, axis=2))
        self.epe_sum["all"] += float(epe[known].sum())
        self.pixels["all"] += int(known.sum())
        self.outliers += int(np.count_nonzero(known & (epe > 3.0) & (epe > 0.05 * gt_magnitude)))
        if occluded is not None:
            _check_same_size("occluded", occluded, "gt", gt)
            for key, mask in (("noc", known & ~occluded.astype(bool)), ("occ", known & occluded.astype(bool))):
                self.epe_sum[key] += float(epe[mask].sum())
                self.pixels[key] += int(mask.sum())

    def compute(self) -> dict[str, Any]:
        """``{"epe", "epe_noc", "epe_occ", "fl_all", "count"}``; EPE in pixels, Fl-all a ratio in
        [0, 1], count = valid pixels; ``None`` where no pixel contributed.
        """
        return {
            "epe": _ratio(self.epe_sum["all"], self.pixels["all"]),
            "epe_noc": _ratio(self.epe_sum["noc"], self.pixels["noc"]),
            "epe_occ": _ratio(self.epe_sum["occ"], self.pixels["occ"]),
            "fl_all": _ratio(self.outliers, self.pixels["all"]),
            "count": self.pixels["all"],
        }


def confusion_iou(confusion: np.ndarray) -> np.ndarray:
    """Per-class IoU (K,) of a (K, K) confusion matrix (rows ground truth, columns prediction).

    A class absent from both the ground truth and the predictions has IoU NaN.
    """
    true_positive = np.diag(confusion).astype(np.float64)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - true_positive
    return np.where(union > 0, true_positive / np.maximum(union, 1), np.nan)


class SegmentationMetrics:
    """Confusion matrix over a dataset: per-class IoU, mIoU and pixel accuracy.

    Ground-truth pixels equal to ``ignore_index`` are skipped. A class that appears neither in the
    ground truth nor in the predictions of the whole set has IoU ``None`` and is left out of the
    mean (a class predicted but never present has IoU 0 and counts).
    """

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None,
                 ignore_index: int = IGNORE_LABEL) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} names for num_classes={num_classes}")
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names is not None else [str(k) for k in range(num_classes)]
        self.ignore_index = ignore_index
        self.confusion = np.zeros((num_classes, num_classes), dtype=np.int64)  # rows gt, columns pred

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one frame: ``pred`` and ``gt`` are (H, W) integer class ids."""
        if pred.shape != gt.shape:
            raise ValueError(f"pred shape {pred.shape} != gt shape {gt.shape}")
        keep = gt != self.ignore_index
        gt_ids = gt[keep].astype(np.int64)
        pred_ids = pred[keep].astype(np.int64)
        for name, ids in (("gt", gt_ids), ("pred", pred_ids)):
            if ids.size and (ids.min() < 0 or ids.max() >= self.num_classes):
                bad = ids.max() if ids.max() >= self.num_classes else ids.min()
                raise ValueError(f"{name} class id {bad} outside [0, {self.num_classes}) "
                                 f"(ignore = {self.ignore_index})")
        counts = np.bincount(gt_ids * self.num_classes + pred_ids, minlength=self.num_classes**2)
        self.confusion += counts.reshape(self.num_classes, self.num_classes)

    def compute(self) -> dict[str, Any]:
        """``{"miou", "pixel_accuracy", "iou": {name: IoU or None}}``, ratios in [0, 1]."""
        iou = {name: (None if np.isnan(value) else float(value))
               for name, value in zip(self.class_names, confusion_iou(self.confusion))}
        present = [value for value in iou.values() if value is not None]
        return {
            "miou": float(np.mean(present)) if present else None,
            "pixel_accuracy": _ratio(float(np.trace(self.confusion)), self.confusion.sum()),
            "iou": iou,
        }


class OcclusionMetrics:
    """Occlusion F1, precision and recall pooled over the set; positive = occluded.

    Corner cases (documented choices): with no predicted positives precision is 1.0 (no false
    alarm), with no ground-truth positives recall is 1.0 (nothing missed); F1 is
    ``2 TP / (2 TP + FP + FN)``, which is 1.0 when neither has any positive and 0.0 when exactly
    one of them has.
    """

    def __init__(self, threshold: float = 0.5) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        self.threshold = threshold
        self.true_positive = self.false_positive = self.false_negative = 0

    def update(self, prob_or_mask: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Add one frame.

        Args:
            prob_or_mask: (H, W) occlusion probability (occluded when > threshold) or bool mask.
            gt: (H, W) bool ground truth, True = occluded.
            valid: optional (H, W) bool pixels to count.
        """
        if prob_or_mask.shape != gt.shape:
            raise ValueError(f"prediction shape {prob_or_mask.shape} != gt shape {gt.shape}")
        predicted = prob_or_mask if prob_or_mask.dtype == np.bool_ else prob_or_mask > self.threshold
        actual = gt.astype(bool)
        if valid is not None:
            predicted, actual = predicted[valid], actual[valid]
        self.true_positive += int(np.count_nonzero(predicted & actual))
        self.false_positive += int(np.count_nonzero(predicted & ~actual))
        self.false_negative += int(np.count_nonzero(~predicted & actual))

    def compute(self) -> dict[str, float]:
        """``{"f1", "precision", "recall"}`` in [0, 1]."""
        tp, fp, fn = self.true_positive, self.false_positive, self.false_negative
        return {
            "f1": 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) > 0 else 1.0,
            "precision": tp / (tp + fp) if (tp + fp) > 0 else 1.0,
            "recall": tp / (tp + fn) if (tp + fn) > 0 else 1.0,
        }


class TemporalConsistency:
    """Temporal consistency: mIoU between labels at t and labels at t+1 warped back to t.

    ``warped(p) = labels_t1(p + flow(p))`` with nearest sampling, compared with ``labels_t`` on
    pixels that are not occluded, land inside the image and are not ignore in either labelling.
    ``flow_source`` (e.g. "ground truth", "model", "opencv-dis") is reported with the result.
    """

    def __init__(self, num_classes: int, flow_source: str = "unspecified", ignore_index: int = IGNORE_LABEL) -> None:
        self.flow_source = flow_source
        self.ignore_index = ignore_index
        self._agreement = SegmentationMetrics(num_classes, ignore_index=ignore_index)

    def update(self, labels_t: np.ndarray, labels_t1: np.ndarray, flow_t_to_t1: np.ndarray,
               occluded_t: np.ndarray | None = None) -> None:
        """Add one pair.

        Args:
            labels_t: (H, W) integer class ids at t.
            labels_t1: (H, W) integer class ids at t+1.
            flow_t_to_t1: (H, W, 2) flow t -> t+1 on t's grid, pixels.
            occluded_t: (H, W) bool, pixels of t with no correspondence at t+1 (excluded).
        """
        if labels_t.shape != labels_t1.shape:
            raise ValueError(f"labels_t shape {labels_t.shape} != labels_t1 shape {labels_t1.shape}")
        _check_same_size("flow", flow_t_to_t1, "labels", labels_t)
        warped = warp_image(labels_t1, flow_t_to_t1, "nearest", border_value=self.ignore_index)
        keep = inside_image(flow_t_to_t1) & (warped != self.ignore_index) & (labels_t != self.ignore_index)
        if occluded_t is not None:
            _check_same_size("occluded_t", occluded_t, "labels", labels_t)
            keep &= ~occluded_t.astype(bool)
        self._agreement.update(warped[keep], labels_t[keep])

    def compute(self) -> dict[str, Any]:
        """``{"tc", "pixel_agreement", "flow_source"}``: mIoU and fraction of agreeing pixels in
        [0, 1] (``None`` before any pixel), and the flow's provenance.
        """
        result = self._agreement.compute()
        return {"tc": result["miou"], "pixel_agreement": result["pixel_accuracy"], "flow_source": self.flow_source}
