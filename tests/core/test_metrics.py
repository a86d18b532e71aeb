"""Metrics on hand-made cases with known answers, and incremental accumulation."""

from __future__ import annotations

import numpy as np
import pytest

from efc_core.metrics import FlowMetrics, OcclusionMetrics, SegmentationMetrics, TemporalConsistency


def test_zero_prediction_gives_the_ground_truth_magnitude_as_epe():
    gt = np.zeros((4, 5, 2), np.float32)
    gt[..., 0], gt[..., 1] = 3.0, 4.0  # |gt| = 5 everywhere
    gt[0, 0] = (0.0, 1.0)
    occluded = np.zeros((4, 5), bool)
    occluded[0, :] = True
    metrics = FlowMetrics()
    metrics.update(np.zeros_like(gt), gt, occluded=occluded)
    result = metrics.compute()
    assert result["epe"] == pytest.approx((19 * 5 + 1) / 20)
    assert result["epe_noc"] == pytest.approx(5.0)
    assert result["epe_occ"] == pytest.approx((4 * 5 + 1) / 5)
    assert result["count"] == 20
    assert result["fl_all"] == pytest.approx(19 / 20)  # EPE 1 at the small vector: not > 3 px


def test_fl_all_needs_both_3px_and_5_percent():
    # Columns: (EPE 4, |gt| 100): 4 <= 5 -> inlier; (EPE 4, |gt| 10): outlier; (EPE 2.9, |gt| 1): inlier;
    # (EPE 3.5, |gt| 60): 3.5 > 3 and 3.5 > 3.0 -> outlier.
    gt = np.array([[[100.0, 0.0], [10.0, 0.0], [1.0, 0.0], [60.0, 0.0]]])
    pred = gt + np.array([[[0.0, 4.0], [0.0, 4.0], [2.9, 0.0], [-3.5, 0.0]]])
    metrics = FlowMetrics()
    metrics.update(pred, gt)
    assert metrics.compute()["fl_all"] == pytest.approx(2 / 4)


def test_invalid_and_unknown_pixels_are_skipped_and_undefined_values_are_none():
    gt = np.array([[[1.0, 0.0], [1e10, 0.0], [np.nan, 0.0], [2.0, 0.0]]])
    valid = np.array([[True, True, True, False]])
    metrics = FlowMetrics()
    metrics.update(np.zeros_like(gt), gt, valid=valid)
    result = metrics.compute()
    assert result["count"] == 1 and result["epe"] == pytest.approx(1.0)
    assert result["epe_noc"] is None and result["epe_occ"] is None
    assert FlowMetrics().compute()["epe"] is None


def test_miou_with_ignored_pixels_and_absent_classes():
    gt = np.array([[0, 0, 1, 1], [255, 255, 1, 1]])
    pred = np.array([[0, 1, 1, 1], [3, 3, 1, 0]])  # predictions under 255 are ignored
    metrics = SegmentationMetrics(4, class_names=["a", "b", "c", "d"])
    metrics.update(pred, gt)
    result = metrics.compute()
    # class a: TP 1, union 3 (gt 2 + pred 2 - 1); class b: TP 3, union 5; c, d: absent (None).
    assert result["iou"] == {"a": pytest.approx(1 / 3), "b": pytest.approx(3 / 5), "c": None, "d": None}
    assert result["miou"] == pytest.approx((1 / 3 + 3 / 5) / 2)
    assert result["pixel_accuracy"] == pytest.approx(4 / 6)


def test_a_class_predicted_but_never_present_counts_as_zero():
    metrics = SegmentationMetrics(3)
    metrics.update(np.array([[0, 2]]), np.array([[0, 0]]))
    result = metrics.compute()
    assert result["iou"] == {"0": pytest.approx(0.5), "1": None, "2": 0.0}
    assert result["miou"] == pytest.approx(0.25)


def test_segmentation_rejects_ids_outside_the_classes():
    with pytest.raises(ValueError, match="7"):
        SegmentationMetrics(3).update(np.array([[7]]), np.array([[0]]))


def test_incremental_updates_equal_one_update_over_everything():
    rng = np.random.default_rng(0)
    labels_gt = rng.integers(0, 5, (20, 30))
    labels_gt[rng.random((20, 30)) < 0.1] = 255
    labels_pred = np.where(rng.random((20, 30)) < 0.7, labels_gt % 255 % 5, rng.integers(0, 5, (20, 30)))
    flow_gt = rng.normal(0, 5, (20, 30, 2))
    flow_pred = flow_gt + rng.normal(0, 3, (20, 30, 2))
    occluded = rng.random((20, 30)) < 0.2
    probability = rng.random((20, 30))
    whole = (SegmentationMetrics(5), FlowMetrics(), OcclusionMetrics())
    halves = (SegmentationMetrics(5), FlowMetrics(), OcclusionMetrics())
    whole[0].update(labels_pred, labels_gt)
    whole[1].update(flow_pred, flow_gt, occluded=occluded)
    whole[2].update(probability, occluded)
    for rows in (slice(0, 10), slice(10, 20)):
        halves[0].update(labels_pred[rows], labels_gt[rows])
        halves[1].update(flow_pred[rows], flow_gt[rows], occluded=occluded[rows])
        halves[2].update(probability[rows], occluded[rows])
    for one, two in zip(whole, halves):
        a, b = one.compute(), two.compute()
        for key in a:
            assert a[key] == pytest.approx(b[key]), key


def test_occlusion_f1_counts_and_corner_cases():
    metrics = OcclusionMetrics(threshold=0.5)
    metrics.update(np.array([[0.9, 0.6, 0.2, 0.5]]), np.array([[True, False, True, False]]))
    result = metrics.compute()  # TP 1, FP 1 (0.6), FN 1 (0.2); 0.5 is not > 0.5
    assert result == {"f1": pytest.approx(0.5), "precision": pytest.approx(0.5), "recall": pytest.approx(0.5)}
    nothing = OcclusionMetrics()
    nothing.update(np.zeros((3, 3)), np.zeros((3, 3), bool))
    assert nothing.compute() == {"f1": 1.0, "precision": 1.0, "recall": 1.0}
    missed = OcclusionMetrics()
    missed.update(np.zeros((2, 2)), np.ones((2, 2), bool))
    assert missed.compute() == {"f1": 0.0, "precision": 1.0, "recall": 0.0}
    false_alarm = OcclusionMetrics()
    false_alarm.update(np.ones((2, 2), bool), np.zeros((2, 2), bool))
    assert false_alarm.compute() == {"f1": 0.0, "precision": 0.0, "recall": 1.0}


def _translated_labels(shift: int):
    """Labels at t (three vertical stripes of classes 0, 1, 2) and at t+1 moved right by shift."""
    labels_t = np.zeros((12, 24), np.uint8)
    labels_t[:, 8:16], labels_t[:, 16:] = 1, 2
    labels_t1 = np.zeros_like(labels_t)
    labels_t1[:, :shift] = 0
    labels_t1[:, shift:] = labels_t[:, :-shift]
    flow = np.zeros((12, 24, 2), np.float32)
    flow[..., 0] = shift
    return labels_t, labels_t1, flow


def test_temporal_consistency_is_one_for_consistent_labels_and_lower_when_corrupted():
    labels_t, labels_t1, flow = _translated_labels(shift=3)
    consistent = TemporalConsistency(3, flow_source="ground truth")
    consistent.update(labels_t, labels_t1, flow)
    result = consistent.compute()
    assert result["tc"] == pytest.approx(1.0) and result["pixel_agreement"] == pytest.approx(1.0)
    assert result["flow_source"] == "ground truth"
    corrupted_t1 = labels_t1.copy()
    corrupted_t1[:6, 12:20] = 0
    corrupted = TemporalConsistency(3)
    corrupted.update(labels_t, corrupted_t1, flow)
    assert corrupted.compute()["tc"] < 0.9
    # Excluding the corrupted pixels as occluded restores full consistency.
    occluded = np.zeros(labels_t.shape, bool)
    occluded[:6, 9:17] = True
    masked = TemporalConsistency(3)
    masked.update(labels_t.astype(np.int64), corrupted_t1.astype(np.int64), flow, occluded)
    assert masked.compute()["tc"] == pytest.approx(1.0)
    # Without the flow, the same labels disagree at the stripe edges.
    no_flow = TemporalConsistency(3)
    no_flow.update(labels_t, labels_t1, np.zeros_like(flow))
    assert no_flow.compute()["tc"] < 0.8
