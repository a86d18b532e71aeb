"""Pre- and post-processing: geometry, normalisation, and undoing the resize exactly."""

from __future__ import annotations

import numpy as np
import pytest

from efc_core.contract import IMAGENET_MEAN, IMAGENET_STD
from efc_core.errors import InputError
from efc_core.manifest import Manifest
from efc_core.postprocess import (
    flow_to_input,
    fuse_probabilities,
    labels_to_input,
    occlusion_to_input,
    probabilities_to_input,
    softmax_content,
)
from efc_core.preprocess import check_image, compute_geometry, plan_geometry, preprocess


def _manifest(height: int | None, width: int | None) -> Manifest:
    return Manifest(model_name="m", graphs={"single": "m.onnx"}, input_height=height, input_width=width,
                    num_classes=3)


def test_letterbox_geometry_is_centred_and_keeps_aspect() -> None:
    geometry = compute_geometry((48, 96), (64, 64), "letterbox")
    assert (geometry.content_height, geometry.content_width) == (32, 64)
    assert (geometry.offset_y, geometry.offset_x) == (16, 0)
    assert geometry.scale_x == pytest.approx(64 / 96) and geometry.scale_y == pytest.approx(32 / 48)
    tall = compute_geometry((101, 33), (128, 128), "letterbox")
    assert tall.content_height == 128 and tall.content_width == round(33 * 128 / 101)
    assert tall.offset_x == (128 - tall.content_width) // 2


def test_stretch_and_pad_geometry() -> None:
    stretch = compute_geometry((48, 96), (64, 64), "stretch")
    assert (stretch.content_height, stretch.content_width, stretch.offset_y, stretch.offset_x) == (64, 64, 0, 0)
    pad = compute_geometry((37, 91), (64, 128), "pad")
    assert pad.is_identity and (pad.offset_y, pad.offset_x) == (0, 0)
    with pytest.raises(ValueError, match="resize mode 'zoom'"):
        compute_geometry((48, 96), (64, 64), "zoom")


def test_plan_geometry_fixed_dynamic_and_requested() -> None:
    assert plan_geometry(_manifest(64, 128), (480, 640)).model_size == (64, 128)
    with pytest.raises(ValueError, match=r"differs from the fixed model size \(64, 128\)"):
        plan_geometry(_manifest(64, 128), (480, 640), (128, 128))
    padded = plan_geometry(_manifest(None, None), (37, 91))
    assert padded.model_size == (64, 128) and padded.is_identity
    assert plan_geometry(_manifest(None, None), (480, 640), (256, 320)).model_size == (256, 320)
    with pytest.raises(ValueError, match="pad_multiple=64"):
        plan_geometry(_manifest(None, None), (480, 640), (250, 320))


def test_preprocess_normalises_content_and_zeroes_padding() -> None:
    colour = np.array([200, 100, 50], np.uint8)
    image = np.broadcast_to(colour, (48, 96, 3)).copy()
    geometry = compute_geometry((48, 96), (64, 64))
    tensor = preprocess(image, geometry, IMAGENET_MEAN, IMAGENET_STD)
    assert tensor.shape == (1, 3, 64, 64) and tensor.dtype == np.float32
    expected = (colour / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(tensor[0, :, 16:48, :].reshape(3, -1).T, np.tile(expected, (32 * 64, 1)), atol=1e-5)
    assert not tensor[0, :, :16].any() and not tensor[0, :, 48:].any()


def test_preprocess_without_resize_matches_a_direct_formula() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (37, 91, 3), dtype=np.uint8)
    geometry = plan_geometry(_manifest(None, None), (37, 91))
    tensor = preprocess(image, geometry, IMAGENET_MEAN, IMAGENET_STD)
    reference = ((image / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)
    np.testing.assert_allclose(tensor[0, :, :37, :91], reference, atol=1e-5)
    assert not tensor[0, :, 37:].any() and not tensor[0, :, :, 91:].any()
    # A non-contiguous view (e.g. a BGR -> RGB flip) gives the same as its copy.
    flipped = image[:, :, ::-1]
    np.testing.assert_array_equal(preprocess(flipped, geometry, IMAGENET_MEAN, IMAGENET_STD),
                                  preprocess(flipped.copy(), geometry, IMAGENET_MEAN, IMAGENET_STD))


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((4, 4), np.uint8), r"shape \(H, W, 3\), got \(4, 4\)"),
        (np.zeros((4, 4, 4), np.uint8), r"got \(4, 4, 4\)"),
        (np.zeros((4, 4, 3), np.float32), "dtype float32"),
        ([[0, 0, 0]], "numpy array, got list"),
    ],
)
def test_bad_images_raise_input_error_naming_them(image, message: str) -> None:
    with pytest.raises(InputError, match=message):
        check_image(image)


def test_labels_come_back_at_input_resolution_by_nearest() -> None:
    geometry = compute_geometry((48, 96), (64, 64))   # content rows 16..47
    logits = np.zeros((1, 3, 64, 64), np.float32)
    logits[0, 2, :, 32:] = 5.0                        # right half of the content: class 2
    logits[0, 1, :16] = 9.0                           # padding rows must not leak in
    labels = labels_to_input(logits, geometry)
    assert labels.shape == (48, 96) and labels.dtype == np.uint8
    assert (labels[:, :48] == 0).all() and (labels[:, 48:] == 2).all()


def test_flow_vectors_are_rescaled_for_letterbox_and_stretch() -> None:
    for mode, scale in (("letterbox", (96 / 64, 48 / 32)), ("stretch", (96 / 64, 48 / 64))):
        geometry = compute_geometry((48, 96), (64, 64), mode)
        flow = np.empty((1, 2, 64, 64), np.float32)
        flow[0, 0], flow[0, 1] = 2.0, -4.0
        flow[0, :, : geometry.offset_y] = 100.0       # garbage in the padding is cropped away
        result = flow_to_input(flow, geometry)
        assert result.shape == (48, 96, 2)
        np.testing.assert_allclose(result[..., 0], 2.0 * scale[0], rtol=1e-6)
        np.testing.assert_allclose(result[..., 1], -4.0 * scale[1], rtol=1e-6)


def test_occlusion_and_probabilities_are_bilinear_at_input_resolution() -> None:
    geometry = compute_geometry((30, 50), (64, 64))
    occlusion = np.full((1, 1, 64, 64), 0.25, np.float32)
    np.testing.assert_allclose(occlusion_to_input(occlusion, geometry), 0.25, rtol=1e-6)
    logits = np.random.default_rng(1).normal(size=(1, 3, 64, 64)).astype(np.float32)
    probabilities = softmax_content(logits, geometry)
    assert probabilities.shape == (geometry.content_height, geometry.content_width, 3)
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, rtol=1e-5)
    at_input = probabilities_to_input(probabilities, geometry)
    assert at_input.shape == (30, 50, 3)
    np.testing.assert_allclose(at_input.sum(axis=-1), 1.0, rtol=1e-5)


def test_fusion_blends_the_warped_previous_frame_where_visible() -> None:
    height, width = 8, 10
    previous = np.zeros((height, width, 2), np.float32)
    previous[:, :5, 0] = 1.0                          # class 0 on the left half
    previous[:, 5:, 1] = 1.0
    current = np.full((height, width, 2), 0.5, np.float32)
    flow = np.zeros((height, width, 2), np.float32)
    flow[..., 0] = 1.0                                # current pixel x comes from previous x + 1
    occlusion = np.zeros((height, width), np.float32)
    occlusion[0] = 1.0                                # top row hidden: left as the current frame
    fused = fuse_probabilities(current, previous, flow, occlusion, weight=0.5)
    np.testing.assert_allclose(fused[1:, :4, 0], 0.75)   # x + 1 <= 4 lands in the left half
    np.testing.assert_allclose(fused[1:, 4:9, 1], 0.75)
    np.testing.assert_allclose(fused[0], 0.5)
    np.testing.assert_allclose(fused[:, 9], 0.5)         # x + 1 = 10 leaves the image
    with pytest.raises(ValueError, match="1.5"):
        fuse_probabilities(current, previous, flow, occlusion, weight=1.5)


def test_replicate_padding_equals_efcnet_padding() -> None:
    """The runtime pads the way the model was built to (manifest ``pad_mode``): EFCNet's replicate
    padding of a normalised image equals ``preprocess(pad_mode="replicate")`` of the uint8 image.
    """
    torch = pytest.importorskip("torch")
    from efc_core.model.efc_net import EFCNet

    image = np.random.default_rng(2).integers(0, 256, (37, 91, 3), dtype=np.uint8)
    geometry = plan_geometry(_manifest(None, None), (37, 91))
    ours = preprocess(image, geometry, IMAGENET_MEAN, IMAGENET_STD, pad_mode="replicate")
    normalised = preprocess(image, compute_geometry((37, 91), (37, 91), "pad"), IMAGENET_MEAN, IMAGENET_STD)
    model = EFCNet.__new__(EFCNet)  # only _pad is used: no weights needed
    model.config = type("Config", (), {"pad_mode": "replicate"})()
    theirs = EFCNet.pad(model, torch.from_numpy(normalised)).numpy()
    assert theirs.shape == ours.shape == (1, 3, 64, 128)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    zeros = preprocess(image, geometry, IMAGENET_MEAN, IMAGENET_STD, pad_mode="zeros")
    assert not zeros[0, :, 37:].any() and ours[0, :, 37:].any()


def test_letterbox_replicate_pads_every_side_and_out_buffer_is_reused() -> None:
    image = np.random.default_rng(3).integers(0, 256, (48, 96, 3), dtype=np.uint8)
    geometry = compute_geometry((48, 96), (64, 64))                  # content rows 16..47
    buffer = np.full((1, 3, 64, 64), 7.0, np.float32)                # stale values must not survive
    tensor = preprocess(image, geometry, IMAGENET_MEAN, IMAGENET_STD, pad_mode="replicate", out=buffer)
    assert tensor is buffer
    np.testing.assert_array_equal(tensor[0, :, :16], np.repeat(tensor[0, :, 16:17], 16, axis=1))
    np.testing.assert_array_equal(tensor[0, :, 48:], np.repeat(tensor[0, :, 47:48], 16, axis=1))
    zeros = preprocess(image, geometry, IMAGENET_MEAN, IMAGENET_STD, out=buffer)
    assert not zeros[0, :, :16].any() and not zeros[0, :, 48:].any()
    with pytest.raises(ValueError, match="pad_mode 'edge'"):
        preprocess(image, geometry, IMAGENET_MEAN, IMAGENET_STD, pad_mode="edge")


def test_wide_frames_fit_the_pixel_budget_by_aspect() -> None:
    """A 1242x375 (KITTI) frame letterboxed into 320x256 uses 38 % of the input; fitted by aspect
    within the same pixel budget it uses 95 %.
    """
    fixed = compute_geometry((375, 1242), (256, 320))
    assert fixed.input_share == pytest.approx(0.38, abs=0.01)
    from efc_core.preprocess import aspect_fit_size

    size = aspect_fit_size((375, 1242), 256 * 320, 64)
    assert size == (128, 448) and size[0] * size[1] <= 256 * 320
    fitted = plan_geometry(_manifest(None, None), (375, 1242), pixel_budget=256 * 320)
    assert fitted.model_size == (128, 448) and fitted.input_share > 0.9
    # Frames already within the budget are only padded, as without a budget.
    assert plan_geometry(_manifest(None, None), (37, 91), pixel_budget=256 * 320).is_identity
