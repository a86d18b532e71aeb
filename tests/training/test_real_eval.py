"""Real-data flow evaluation: analytic residuals, RubberWhale EPE, occlusion F1, the CLI."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from tests.data.fixtures import write_rgb
from training import real_eval
from training.real_eval import (
    PerceptorEstimator, dis_flow_fn, evaluate_sequence, flyingchairsocc_f1, occlusion_f1, photometric_residual,
    rubberwhale_epe, zero_flow_fn,
)

SHIFT = (3, 2)  # (dx, dy): the content moves right by 3 and down by 2 pixels from frame 1 to 2


def _texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 smooth random texture (bilinear-friendly, strong gradients)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(height // 4, width // 4, 3)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def _shifted_pair(height: int = 48, width: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """frame2(p + SHIFT) = frame1(p) exactly (integer shift of one big texture)."""
    dx, dy = SHIFT
    big = _texture(height + 16, width + 16, seed)
    frame1 = big[8:8 + height, 8:8 + width]
    frame2 = big[8 - dy:8 - dy + height, 8 - dx:8 - dx + width]
    return np.ascontiguousarray(frame1), np.ascontiguousarray(frame2)


def _true_flow(image: np.ndarray) -> np.ndarray:
    return np.broadcast_to(np.array(SHIFT, np.float32), (*image.shape[:2], 2)).copy()


def test_true_flow_has_no_residual_and_zero_flow_a_large_one() -> None:
    frame1, frame2 = _shifted_pair()
    residual, inside = photometric_residual(frame1, frame2, _true_flow(frame1))
    assert residual < 1e-3
    # targets x + 3 > 63 or y + 2 > 47 leave frame 2 and are not counted (they would be |I1 - 0|)
    assert inside == pytest.approx((64 - 3) * (48 - 2) / (64 * 48))
    zero, zero_inside = photometric_residual(frame1, frame2, zero_flow_fn(frame1, frame2))
    assert zero > 10 and zero_inside == 1.0


def test_out_of_frame_targets_are_excluded() -> None:
    frame1, frame2 = _shifted_pair()
    flow = _true_flow(frame1)
    flow[:, :8] = (-50.0, 0.0)  # the left columns point far outside frame 2: wrong, but not judged
    residual, inside = photometric_residual(frame1, frame2, flow)
    assert residual < 1e-3 and inside == pytest.approx((64 - 3 - 8) * (48 - 2) / (64 * 48))
    with pytest.raises(ValueError, match="share"):
        photometric_residual(frame1, frame2, flow[:10])


def test_sequence_pairs_every_and_gap(tmp_path) -> None:
    big = _texture(80, 120)
    frames = []
    for k in range(7):  # frame k is the texture shifted right by 3k, down by 2k
        path = tmp_path / f"{k:05d}.png"
        write_rgb(path, np.ascontiguousarray(big[20 - 2 * k:68 - 2 * k, 30 - 3 * k:94 - 3 * k]))
        frames.append(path)
    result = evaluate_sequence("shift", frames, lambda a, b: _true_flow(a), every=2, gap_frames=1)
    assert result.pairs == 3  # (0, 1), (2, 3), (4, 5)
    assert result.residual < 1e-3 and result.reduction > 0.99 and result.zero_residual > 10
    doubled = evaluate_sequence("shift", frames, lambda a, b: 2 * _true_flow(a), every=3, gap_frames=2)
    assert doubled.pairs == 2 and doubled.residual < 1e-3  # (0, 2), (3, 5): gap 2 is twice the shift
    mask = lambda a, b: np.eye(*a.shape[:2], dtype=bool)  # noqa: E731
    assert evaluate_sequence("shift", frames, zero_flow_fn, mask).occluded_fraction == pytest.approx(48 / (48 * 64))


def test_dis_recovers_the_shift() -> None:
    frame1, frame2 = _shifted_pair(96, 128)
    residual, _ = photometric_residual(frame1, frame2, dis_flow_fn("medium")(frame1, frame2))
    zero, _ = photometric_residual(frame1, frame2, zero_flow_fn(frame1, frame2))
    assert residual < 0.25 * zero
    with pytest.raises(ValueError, match="slow"):
        dis_flow_fn("slow")


def test_occlusion_f1_on_a_known_mask() -> None:
    truth = np.zeros((4, 5), bool)
    truth[0, :4] = True                      # 4 occluded pixels
    predicted = np.zeros((4, 5), np.float32)
    predicted[0, :2] = 0.9                   # 2 true positives
    predicted[3, :2] = 0.8                   # 2 false positives; 2 false negatives
    predicted[2, 0] = 0.4                    # below the 0.5 threshold: not a positive
    result = occlusion_f1(predicted, truth)
    assert result["precision"] == pytest.approx(0.5) and result["recall"] == pytest.approx(0.5)
    assert result["f1"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 2))


def test_rubberwhale_zero_flow_epe(shared_data) -> None:
    result = rubberwhale_epe(shared_data / "middlebury-rubberwhale", zero_flow_fn)
    assert result["epe"] == pytest.approx(1.256, abs=0.001)
    dis = rubberwhale_epe(shared_data / "middlebury-rubberwhale", dis_flow_fn("medium"))
    assert dis["epe"] < 0.3  # README: 0.223 px with OpenCV 5.0


def test_flyingchairsocc_ground_truth_scores_one(shared_data) -> None:
    root = shared_data / "flyingchairsocc-sample"
    from efc_core.data.formats import read_occlusion_png

    truth = read_occlusion_png(root / "occ_01.png")
    assert flyingchairsocc_f1(root, lambda a, b: truth)["f1"] == 1.0
    assert flyingchairsocc_f1(root, lambda a, b: np.zeros_like(truth))["f1"] == 0.0


def test_cli_on_a_fixture_tree(tmp_path, capsys) -> None:
    big = _texture(80, 120)
    for sequence in ("bear", "dog"):
        for k in range(4):
            write_rgb(tmp_path / "real" / "davis" / sequence / "frames" / f"{k:05d}.jpg",
                      np.ascontiguousarray(big[20 - 2 * k:68 - 2 * k, 30 - 3 * k:94 - 3 * k]))
    output = tmp_path / "report.json"
    assert real_eval.main(["--method", "dis-fast", "--data-root", str(tmp_path), "--every", "1", "--output",
                           str(output)]) == 0
    printed = capsys.readouterr().out
    assert "davis/bear" in printed and "absent (skipped)" in printed
    report = json.loads(output.read_text())
    assert report["davis"]["summary"]["pairs"] == 6 and report["davis"]["summary"]["reduction"] > 0.5
    assert 0 <= report["davis"]["summary"]["occluded_fraction"] < 0.5
    assert "kitti_odometry" not in report
    assert real_eval.main(["--method", "nonsense", "--data-root", str(tmp_path)]) == 2
    assert "nonsense" in capsys.readouterr().err


def test_model_flow_comes_back_at_native_resolution(demo_model) -> None:
    frame1, frame2 = _shifted_pair(90, 150)
    estimator = PerceptorEstimator(demo_model, input_size=None, threads=1)  # the fixed size of the manifest
    flow = estimator.flow_fn(frame1, frame2)
    occlusion = estimator.occlusion_fn(frame1, frame2)  # cached: same pair
    assert flow.shape == (90, 150, 2) and flow.dtype == np.float32 and np.isfinite(flow).all()
    assert occlusion.shape == (90, 150)
