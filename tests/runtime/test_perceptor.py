"""Perceptor end to end on real ONNX Runtime with analytically known tiny models."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from efc_core.errors import BackendError, InputError
from efc_core.perceptor import Perceptor
from efc_core.runtime import create_backend
from efc_core.runtime.onnxruntime_backend import OnnxRuntimeBackend

from . import build_models

MS = 1_000_000


class CountingBackend(OnnxRuntimeBackend):
    """Real ONNX Runtime, counting the calls the Perceptor makes."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls = {"encode": 0, "decode": 0, "infer": 0}

    def encode(self, image):
        self.calls["encode"] += 1
        return super().encode(image)

    def decode(self, prev_features, cur_features):
        self.calls["decode"] += 1
        return super().decode(prev_features, cur_features)

    def infer(self, prev, cur):
        self.calls["infer"] += 1
        return super().infer(prev, cur)


def _frames(count: int, size=(48, 80), seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(count)]


@pytest.fixture
def translation_model(tmp_path: Path) -> Path:
    return build_models(tmp_path, flow=(2.0, -3.0), occ_bias=-3.0)


@pytest.mark.parametrize("size", [(48, 96), (37, 91), (101, 33), (64, 64), (1, 1), (240, 320)])
@pytest.mark.parametrize("mode", ["letterbox", "stretch"])
def test_outputs_are_at_input_resolution(translation_model: Path, size, mode: str) -> None:
    perceptor = Perceptor(create_backend("onnxruntime", translation_model, intra_op_threads=1), resize_mode=mode)
    for index, image in enumerate(_frames(2, size)):
        result = perceptor.process(image, (1 + index) * 40 * MS, "cam")
    assert result.segmentation.shape == size and result.segmentation.dtype == np.uint8
    assert result.flow.shape == (*size, 2) and result.flow.dtype == np.float32
    assert result.occlusion.shape == size and result.occlusion.dtype == np.float32
    np.testing.assert_allclose(result.occlusion, 1.0 / (1.0 + np.exp(3.0)), rtol=1e-5)


def test_known_translation_is_rescaled_under_letterboxing(translation_model: Path) -> None:
    # 48x96 into the 64x64 model: content 32x64, so dx scales by 96/64 and dy by 48/32.
    perceptor = Perceptor(create_backend("onnxruntime", translation_model, intra_op_threads=1))
    frames = _frames(2, (48, 96))
    perceptor.process(frames[0], 0, "cam")
    result = perceptor.process(frames[1], 50 * MS, "cam")
    np.testing.assert_allclose(result.flow[..., 0], 2.0 * 96 / 64, rtol=1e-6)
    np.testing.assert_allclose(result.flow[..., 1], -3.0 * 48 / 32, rtol=1e-6)
    assert result.flow_direction == "forward"


def test_dynamic_model_pads_without_resampling(tmp_path: Path) -> None:
    build_models(tmp_path, height=None, width=None, flow=(2.0, -3.0))
    perceptor = Perceptor(create_backend("onnxruntime", tmp_path / "tiny.onnx", intra_op_threads=1))
    frames = _frames(2, (37, 91))
    perceptor.process(frames[0], 0)
    result = perceptor.process(frames[1], 10 * MS)
    assert perceptor.geometry_for((37, 91)).model_size == (64, 128)
    np.testing.assert_allclose(result.flow[..., 0], 2.0)   # no resize: vectors unchanged
    np.testing.assert_allclose(result.flow[..., 1], -3.0)


def test_segmentation_follows_the_strongest_colour(translation_model: Path) -> None:
    # The tiny model's logits are the normalised RGB channels: red -> 0, green -> 1, blue -> 2.
    image = np.zeros((30, 90, 3), np.uint8)
    image[:, :30, 0] = image[:, 30:60, 1] = image[:, 60:, 2] = 255
    result = Perceptor(create_backend("onnxruntime", translation_model, intra_op_threads=1)).process(image, 0)
    expected = np.repeat([0, 1, 2], 30)[None, :].repeat(30, axis=0)
    agreement = (result.segmentation == expected).mean()
    assert agreement > 0.97  # only the two colour boundaries may blur under the resize


def test_first_frame_and_resets_give_segmentation_without_flow(translation_model: Path) -> None:
    perceptor = Perceptor(create_backend("onnxruntime", translation_model, intra_op_threads=1), max_frame_gap_s=0.1)
    frames = _frames(5)
    first = perceptor.process(frames[0], 1_000 * MS, "cam")
    assert first.flow is None and first.occlusion is None and first.prev_stamp_ns is None
    assert first.pair_reset_reason == "first frame" and first.segmentation.shape == (48, 80)
    second = perceptor.process(frames[1], 1_050 * MS, "cam")
    assert second.pair_reset_reason is None and second.prev_stamp_ns == 1_000 * MS and second.flow is not None
    assert perceptor.process(frames[2], 1_000 * MS, "cam").pair_reset_reason == "time went backwards"
    assert perceptor.process(frames[3], 1_500 * MS, "cam").pair_reset_reason == "gap too large"
    assert perceptor.process(frames[4], 1_550 * MS, "other").pair_reset_reason == "frame_id changed"
    resized = perceptor.process(_frames(1, (60, 80))[0], 1_560 * MS, "other")
    assert resized.pair_reset_reason == "resolution changed" and resized.segmentation.shape == (60, 80)
    perceptor.reset()
    assert perceptor.process(frames[0], 1_570 * MS, "other").pair_reset_reason == "first frame"


def test_streaming_encodes_each_frame_once_and_matches_single_graph(tmp_path: Path) -> None:
    build_models(tmp_path, flow=(1.0, 2.0), mix=0.8, occ_weight=2.0, occ_bias=0.0, single=True, streaming=True)
    streaming = CountingBackend(tmp_path / "tiny.onnx", intra_op_threads=1)
    single = CountingBackend(tmp_path / "tiny.onnx", intra_op_threads=1)
    by_stream = Perceptor(streaming, streaming=True)
    by_pair = Perceptor(single, streaming=False)
    frames = _frames(5, (50, 70), seed=3)
    for index, image in enumerate(frames):
        stamp = index * 30 * MS
        a, b = by_stream.process(image, stamp, "cam"), by_pair.process(image, stamp, "cam")
        np.testing.assert_array_equal(a.segmentation, b.segmentation)
        if index == 0:
            assert a.flow is None and b.flow is None
        else:
            # The flow depends on prev - cur: a wrong partner would change it.
            np.testing.assert_allclose(a.flow, b.flow, atol=1e-5)
            np.testing.assert_allclose(a.occlusion, b.occlusion, atol=1e-6)
    assert streaming.calls == {"encode": 5, "decode": 5, "infer": 0}
    assert single.calls == {"encode": 0, "decode": 0, "infer": 5}


def test_flow_uses_the_previous_frame(tmp_path: Path) -> None:
    build_models(tmp_path, height=None, width=None, mix=1.0)
    perceptor = Perceptor(create_backend("onnxruntime", tmp_path / "tiny.onnx", intra_op_threads=1))
    dark, bright = np.full((64, 64, 3), 50, np.uint8), np.full((64, 64, 3), 200, np.uint8)
    perceptor.process(dark, 0)
    result = perceptor.process(bright, 10 * MS)
    # flow_x = prev_R - cur_R in normalised units
    expected = (50 - 200) / 255.0 / 0.229
    np.testing.assert_allclose(result.flow[..., 0], expected, rtol=1e-4)


def test_temporal_fusion_blends_previous_probabilities(tmp_path: Path) -> None:
    build_models(tmp_path, height=None, width=None, flow=(0.0, 0.0), occ_bias=-20.0)
    backend = create_backend("onnxruntime", tmp_path / "tiny.onnx", intra_op_threads=1)
    fused = Perceptor(backend, temporal_fusion=0.5, output_probabilities=True)
    plain = Perceptor(backend, output_probabilities=True)
    red, bluish = np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64, 3), np.uint8)
    red[..., 0] = 255
    bluish[..., 0], bluish[..., 2] = 150, 160   # on its own: blue (class 2) wins narrowly
    p_red = plain.process(red, 0).seg_probabilities
    p_bluish = plain.process(bluish, 10 * MS).seg_probabilities
    assert (plain.process(bluish, 20 * MS).segmentation == 2).all()
    fused.process(red, 0)
    result = fused.process(bluish, 10 * MS)
    np.testing.assert_allclose(result.seg_probabilities, 0.5 * p_red + 0.5 * p_bluish, atol=1e-5)
    assert (result.segmentation == 0).all()     # the red history outweighs the weak blue evidence
    with pytest.raises(ValueError, match="temporal_fusion"):
        Perceptor(backend, temporal_fusion=2.0)


def test_timings_and_input_validation(translation_model: Path) -> None:
    perceptor = Perceptor(create_backend("onnxruntime", translation_model, intra_op_threads=1))
    result = perceptor.process(_frames(1)[0], 0)
    assert set(result.timings_ms) == {"preprocess", "inference", "postprocess", "total"}
    assert all(value >= 0 for value in result.timings_ms.values())
    assert result.timings_ms["total"] >= result.timings_ms["inference"]
    with pytest.raises(InputError, match=r"\(H, W, 3\), got \(48, 80, 4\)"):
        perceptor.process(np.zeros((48, 80, 4), np.uint8), 1)
    with pytest.raises(InputError, match="dtype uint16"):
        perceptor.process(np.zeros((48, 80, 3), np.uint16), 1)
    with pytest.raises(InputError, match="stamp_ns must be an int.*1.5"):
        perceptor.process(np.zeros((48, 80, 3), np.uint8), 1.5)
    with pytest.raises(ValueError, match="resize_mode"):
        Perceptor(perceptor.backend, resize_mode="crop")
    with pytest.raises(ValueError, match="differs from the fixed model size"):
        Perceptor(perceptor.backend, input_size=(128, 128))


def test_backend_failure_leaves_the_pair_untouched(tmp_path: Path) -> None:
    build_models(tmp_path, occ_bias=float("nan"))
    perceptor = Perceptor(create_backend("onnxruntime", tmp_path / "tiny.onnx", intra_op_threads=1))
    with pytest.raises(BackendError, match="occlusion"):
        perceptor.process(_frames(1)[0], 0, "cam")
    assert perceptor._pairer.previous is None


def test_image_format_change_resets_and_a_duplicate_stamp_is_refused(translation_model: Path) -> None:
    perceptor = Perceptor(create_backend("onnxruntime", translation_model))
    frames = _frames(4)
    perceptor.process(frames[0], 0, "cam", image_format="rgb8")
    assert perceptor.process(frames[1], 10_000_000, "cam", image_format="rgb8").flow is not None
    changed = perceptor.process(frames[2], 20_000_000, "cam", image_format="mono8")
    assert changed.flow is None and changed.pair_reset_reason == "image format changed"
    with pytest.raises(InputError, match="same stamp") as refused:
        perceptor.process(frames[3], 20_000_000, "cam", image_format="mono8")
    assert refused.value.kind == "duplicate_stamp"
    after = perceptor.process(frames[3], 30_000_000, "cam", image_format="mono8")
    assert after.prev_stamp_ns == 20_000_000  # the refused duplicate never became a partner


def test_flow_scale_shrinks_the_flow_grid_and_its_vectors_alike(translation_model: Path) -> None:
    # 48x96 into the 64x64 model (content 32x64): at scale 0.5 the flow image is 24x48, and a
    # vector is in pixels of that image: dx = 2 * 48/64, dy = -3 * 24/32 (half the input-pixel value).
    perceptor = Perceptor(create_backend("onnxruntime", translation_model, intra_op_threads=1))
    frames = _frames(2, (48, 96))
    perceptor.process(frames[0], 0, "cam", flow_scale=0.5)
    result = perceptor.process(frames[1], 50 * MS, "cam", flow_scale=0.5)
    assert result.flow.shape == (24, 48, 2)
    np.testing.assert_allclose(result.flow[..., 0], 2.0 * 48 / 64, rtol=1e-6)
    np.testing.assert_allclose(result.flow[..., 1], -3.0 * 24 / 32, rtol=1e-6)
    assert result.segmentation.shape == (48, 96) and result.occlusion.shape == (48, 96)
    with pytest.raises(ValueError, match="flow scale must be in"):
        perceptor.process(frames[0], 100 * MS, "cam", flow_scale=1.5)


def test_unrequested_flow_and_occlusion_are_not_computed_but_the_pair_is_kept(translation_model: Path) -> None:
    perceptor = Perceptor(create_backend("onnxruntime", translation_model, intra_op_threads=1))
    frames = _frames(3, (48, 96))
    perceptor.process(frames[0], 0, "cam", with_flow=False, with_occlusion=False)
    skipped = perceptor.process(frames[1], 50 * MS, "cam", with_flow=False, with_occlusion=False)
    assert skipped.flow is None and skipped.occlusion is None
    assert skipped.prev_stamp_ns == 0 and skipped.pair_reset_reason is None  # still paired
    only_occlusion = perceptor.process(frames[2], 100 * MS, "cam", with_flow=False)
    assert only_occlusion.flow is None and only_occlusion.occlusion.shape == (48, 96)


def test_straight_path_calls_each_stage_once_per_frame_into_reused_buffers(tmp_path: Path, monkeypatch) -> None:
    """decode -> preprocess -> infer -> postprocess: each stage once per frame, no stage calling
    back into the Perceptor, and the single-graph input written into two alternating buffers
    (the kept partner's tensor is never overwritten) instead of a fresh tensor per frame.
    """
    import efc_core.perceptor as perceptor_module

    build_models(tmp_path)
    calls: list[str] = []
    for name in ("preprocess", "postprocess"):
        original = getattr(perceptor_module, name)
        monkeypatch.setattr(perceptor_module, name,
                            lambda *a, _name=name, _original=original, **k: calls.append(_name) or _original(*a, **k))
    backend = CountingBackend(tmp_path / "tiny.onnx", intra_op_threads=1)
    perceptor = Perceptor(backend, streaming=False)
    inputs: list[int] = []
    infer = backend.infer
    backend.infer = lambda prev, cur: inputs.append(id(cur)) or infer(prev, cur)
    frames = _frames(5)
    results = [perceptor.process(frame, index * 10 * MS, "camera") for index, frame in enumerate(frames)]
    assert calls == ["preprocess", "postprocess"] * 5 and backend.calls["infer"] == 5
    assert len(set(inputs)) == 2 and inputs[0] != inputs[1] and inputs[0] == inputs[2]
    # The pair still sees the right partner: frame 4's result equals a fresh Perceptor on frames 3, 4.
    fresh = Perceptor(create_backend("onnxruntime", tmp_path / "tiny.onnx", intra_op_threads=1), streaming=False)
    fresh.process(frames[3], 30 * MS, "camera")
    again = fresh.process(frames[4], 40 * MS, "camera")
    np.testing.assert_array_equal(again.flow, results[4].flow)
    np.testing.assert_array_equal(again.segmentation, results[4].segmentation)


def test_low_input_share_is_logged_with_the_alternatives(translation_model: Path, caplog) -> None:
    perceptor = Perceptor(create_backend("onnxruntime", translation_model, intra_op_threads=1))
    with caplog.at_level("WARNING", logger="efc_core.perceptor"):
        perceptor.process(np.zeros((64, 256, 3), np.uint8), 0, "wide")      # 64x64 model: 25 % used
        perceptor.process(np.zeros((64, 256, 3), np.uint8), 10 * MS, "wide")  # logged once per size
    lines = [r.getMessage() for r in caplog.records if "uses" in r.getMessage()]
    assert len(lines) == 1 and "256x64 frames into the 64x64 model input uses 25%" in lines[0]
    assert "resize_mode=stretch" in lines[0]
    stretched = Perceptor(perceptor.backend, resize_mode="stretch")
    caplog.clear()
    with caplog.at_level("WARNING", logger="efc_core.perceptor"):
        stretched.process(np.zeros((64, 256, 3), np.uint8), 0, "wide")
    assert not caplog.records


def _translated_texture_pair(size: tuple[int, int], dx: float, dy: float) -> tuple[np.ndarray, np.ndarray]:
    """A blocky blurred texture and the same texture moved by (dx, dy) input pixels."""
    from efc_core.flow_ops import warp_image

    height, width = size
    rng = np.random.default_rng(3)
    blocks = np.kron(rng.integers(0, 2, (height // 6 + 1, width // 6 + 1)), np.ones((6, 6)))[:height, :width]
    grey = cv2.GaussianBlur((blocks * 255).astype(np.float32), (0, 0), 1.5)
    frame1 = np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)
    shift = np.empty((height, width, 2), np.float32)
    shift[..., 0], shift[..., 1] = -dx, -dy          # frame2(x) = frame1(x - d): flow 1 -> 2 is d
    frame2 = np.clip(warp_image(frame1.astype(np.float32), shift), 0, 255).astype(np.uint8)
    return frame1, frame2


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_flow_refinement_moves_the_network_flow_towards_the_true_motion(tmp_path: Path, direction: str) -> None:
    # The analytic model answers a constant flow 0.7 px off the true translation (3, -2) input px
    # (96x128 letterboxed into 64x64: model pixels are 2 input pixels). A backward export's flow
    # is frame2 -> frame1, so its truth is (-3, 2): refining it on the wrong frame order would
    # pull it away from the truth instead.
    sign = 1.0 if direction == "forward" else -1.0
    model = build_models(tmp_path, flow=(sign * 1.75, sign * -1.25), flow_direction=direction)
    frame1, frame2 = _translated_texture_pair((96, 128), 3.0, -2.0)
    truth = np.array([sign * 3.0, sign * -2.0], np.float32)

    def flow_of(refinement: str) -> np.ndarray:
        perceptor = Perceptor(create_backend("onnxruntime", model, intra_op_threads=1), flow_refinement=refinement)
        first = perceptor.process(frame1, 0, "cam")
        assert first.flow is None   # nothing to refine without a partner
        return perceptor.process(frame2, 50 * MS, "cam").flow

    def error(flow: np.ndarray) -> float:
        return float(np.hypot(*(flow[10:-10, 10:-10] - truth).transpose(2, 0, 1)).mean())

    network = flow_of("off")
    np.testing.assert_allclose(network[48, 64], sign * np.array([3.5, -2.5]), rtol=1e-6)  # the model's, untouched
    refined = flow_of("variational")
    assert refined.shape == network.shape and refined.dtype == np.float32
    assert error(refined) < 0.75 * error(network), (error(refined), error(network))


def test_unknown_flow_refinement_is_refused(translation_model: Path) -> None:
    with pytest.raises(ValueError, match="flow_refinement 'dis'"):
        Perceptor(create_backend("onnxruntime", translation_model, intra_op_threads=1), flow_refinement="dis")
