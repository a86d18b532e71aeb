"""Flow file formats: exact round trips, corrupt files, and the project's real samples."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from efc_core.data.formats import (
    KITTI_MAX_FLOW,
    read_flo,
    read_kitti_flow,
    read_occlusion_png,
    write_flo,
    write_kitti_flow,
)
from efc_core.flow_ops import inside_image, warp_image


def _random_flow(height: int = 7, width: int = 11, scale: float = 20.0) -> np.ndarray:
    return np.random.default_rng(0).normal(0.0, scale, (height, width, 2)).astype(np.float32)


def test_flo_round_trip_is_exact_and_layout_is_middlebury(tmp_path):
    flow = _random_flow()
    path = tmp_path / "a.flo"
    write_flo(path, flow)
    np.testing.assert_array_equal(read_flo(path), flow)
    raw = path.read_bytes()
    assert np.frombuffer(raw[:4], "<f4")[0] == np.float32(202021.25)
    assert tuple(np.frombuffer(raw[4:12], "<i4")) == (11, 7)  # width, then height
    assert np.frombuffer(raw[12:20], "<f4").tolist() == flow[0, 0].tolist()  # u, v interleaved


def test_flo_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.flo"
    write_flo(path, _random_flow())
    raw = path.read_bytes()
    (tmp_path / "magic.flo").write_bytes(np.float32(1.0).tobytes() + raw[4:])
    with pytest.raises(ValueError, match=r"magic\.flo.*magic"):
        read_flo(tmp_path / "magic.flo")
    (tmp_path / "short.flo").write_bytes(raw[:-4])
    with pytest.raises(ValueError, match=r"short\.flo.*truncated"):
        read_flo(tmp_path / "short.flo")
    (tmp_path / "tiny.flo").write_bytes(raw[:6])
    with pytest.raises(ValueError, match=r"tiny\.flo"):
        read_flo(tmp_path / "tiny.flo")


def test_kitti_round_trip_up_to_1_64_px_and_channel_order(tmp_path):
    flow = _random_flow()
    flow[0, 0] = (3.0, -2.0)
    valid = np.ones(flow.shape[:2], bool)
    valid[1, 2] = False
    path = tmp_path / "flow.png"
    write_kitti_flow(path, flow, valid)
    decoded, decoded_valid = read_kitti_flow(path)
    np.testing.assert_array_equal(decoded_valid, valid)
    assert np.abs(decoded - flow)[valid].max() <= 0.5 / 64 + 1e-5  # rounding to 1/64 px
    np.testing.assert_array_equal(decoded[1, 2], 0.0)
    # KITTI stores RGB = (u, v, valid); OpenCV returns BGR.
    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert bgr.dtype == np.uint16
    assert tuple(bgr[0, 0]) == (1, 2**15 - 2 * 64, 2**15 + 3 * 64)
    # A second round trip of quantised values is exact.
    write_kitti_flow(path, decoded, decoded_valid)
    np.testing.assert_array_equal(read_kitti_flow(path)[0], decoded)


def test_kitti_rejects_out_of_range_and_non_kitti_pngs(tmp_path):
    flow = np.zeros((2, 2, 2), np.float32)
    flow[0, 0, 0] = KITTI_MAX_FLOW + 1
    with pytest.raises(ValueError, match="KITTI"):
        write_kitti_flow(tmp_path / "x.png", flow)
    write_kitti_flow(tmp_path / "x.png", flow, valid=np.array([[False, True], [True, True]]))  # invalid: ignored
    cv2.imwrite(str(tmp_path / "eight_bit.png"), np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match=r"eight_bit\.png"):
        read_kitti_flow(tmp_path / "eight_bit.png")


def test_occlusion_png(tmp_path):
    mask = np.array([[0, 255], [255, 0]], np.uint8)
    cv2.imwrite(str(tmp_path / "occ.png"), mask)
    np.testing.assert_array_equal(read_occlusion_png(tmp_path / "occ.png"), mask == 255)
    with pytest.raises(FileNotFoundError):
        read_occlusion_png(tmp_path / "missing.png")


def test_rubberwhale_ground_truth_matches_the_published_zero_flow_epe(shared_data):
    flow = read_flo(shared_data / "middlebury-rubberwhale" / "flow10.flo")
    assert flow.shape == (388, 584, 2) and flow.dtype == np.float32
    known = np.all(np.abs(flow) < 1e9, axis=2)
    assert 0.9 < known.mean() < 1.0  # the file does contain unknown pixels
    zero_flow_epe = np.linalg.norm(flow[known], axis=1).mean()
    assert zero_flow_epe == pytest.approx(1.256, abs=5e-4)  # data README


def test_rubberwhale_flow_is_read_with_u_and_v_in_the_right_order(shared_data):
    folder = shared_data / "middlebury-rubberwhale"
    frame10 = cv2.imread(str(folder / "frame10.png")).astype(np.float32)
    frame11 = cv2.imread(str(folder / "frame11.png")).astype(np.float32)
    flow = read_flo(folder / "flow10.flo")
    known = np.all(np.abs(flow) < 1e9, axis=2)
    flow = np.where(known[..., None], flow, 0.0).astype(np.float32)

    def residual(candidate: np.ndarray) -> float:
        return float(np.abs(warp_image(frame11, candidate) - frame10).mean(axis=2)[known].mean())

    # Measured: 1.43 grey levels with the ground truth, 5.71 with zero flow, 7.78 with u/v swapped.
    assert residual(flow) < 0.4 * residual(np.zeros_like(flow))
    assert residual(flow) < 0.4 * residual(np.ascontiguousarray(flow[..., ::-1]))


def test_flyingchairsocc_flow_and_occlusion_are_consistent(shared_data):
    folder = shared_data / "flyingchairsocc-sample"
    image0 = cv2.imread(str(folder / "img_0.png")).astype(np.float32)
    image1 = cv2.imread(str(folder / "img_1.png")).astype(np.float32)
    flow01 = read_flo(folder / "flow_01.flo")
    occluded = read_occlusion_png(folder / "occ_01.png")
    assert flow01.shape == (50, 50, 2) and occluded.any() and not occluded.all()
    # The 50x50 crop's occlusion map knows nothing of the crop border: compare pixels landing inside.
    inside = inside_image(flow01)
    error = np.abs(warp_image(image1, flow01) - image0).mean(axis=2)
    visible, hidden = error[~occluded & inside], error[occluded & inside]
    # This crop is highly textured and its motion is sub-pixel (median 0.33 px), so the margins are
    # modest: measured mean 10.4 vs 11.1 and median 4.7 vs 7.0 grey levels.
    assert visible.mean() < hidden.mean()
    assert np.median(visible) < 0.8 * np.median(hidden)
