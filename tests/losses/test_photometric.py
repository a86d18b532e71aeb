"""Photometric losses: zero at the true flow, larger at a wrong one, normalised by the mask sum."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from efc_core.losses.photometric import (
    census_error,
    l1_error,
    masked_mean,
    photometric_error,
    photometric_loss,
    ssim_error,
)

torch.set_num_threads(1)
KINDS = ("census", "ssim_l1", "census+ssim_l1")


def smooth_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(1, 3, H, W) smooth random image in [0.1, 0.9] (upsampled noise)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, height // 4, width // 4, generator=generator)
    image = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    return 0.1 + 0.8 * image.clamp(0, 1)


def translated_pair(shift: tuple[int, int] = (3, -2)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """image1, image2 with image1(p) = image2(p + shift) exactly, and the true flow 1 -> 2."""
    dx, dy = shift
    big = smooth_image(48, 64)
    image2 = big[..., 8:40, 8:56]
    image1 = big[..., 8 + dy : 40 + dy, 8 + dx : 56 + dx]
    flow = torch.zeros(1, 2, 32, 48)
    flow[:, 0], flow[:, 1] = dx, dy
    return image1, image2, flow


def synthetic_pair() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A pair from the synthetic video: images, the exact flow 1 -> 2 and its visibility mask."""
    synthetic = pytest.importorskip("efc_core.data.synthetic")
    config = synthetic.SyntheticConfig(height=64, width=96, num_frames=2, min_objects=2, max_objects=3)
    sequence = synthetic.generate_sequence(config, seed=3)
    to_tensor = lambda frame: torch.from_numpy(frame.astype(np.float32) / 255.0).permute(2, 0, 1)[None]  # noqa: E731
    flow = torch.from_numpy(sequence.flow(0, 1)).permute(2, 0, 1)[None]
    visible = torch.from_numpy(~sequence.occlusion(0, 1)).float()[None, None]
    return to_tensor(sequence.frames[0]), to_tensor(sequence.frames[1]), flow, visible


@pytest.mark.parametrize("kind", KINDS)
def test_zero_at_true_integer_translation_and_larger_when_wrong(kind: str) -> None:
    image1, image2, flow = translated_pair()
    at_truth = photometric_loss(image1, image2, flow, kind=kind)
    wrong = photometric_loss(image1, image2, flow + torch.tensor([2.0, 1.0]).view(1, 2, 1, 1), kind=kind)
    assert at_truth.item() < 1e-5
    assert wrong.item() > 0.02


# Loss at the true flow of a synthetic pair, as a fraction of the loss 2 px off (measured:
# census ~0.42-0.58, ssim_l1 ~0.06-0.11 over seeds 0-3). Census stays well above 0 there: the
# synthetic textures are smooth (median grey gradient ~1.7 levels/px) and the soft census sign,
# whose scale is 0.9 grey levels, sees the bilinear-resampling and uint8 residual (~0.6 levels).
TRUTH_TO_WRONG_RATIO = {"census": 0.65, "ssim_l1": 0.2, "census+ssim_l1": 0.65}


@pytest.mark.parametrize("kind", KINDS)
def test_synthetic_pair_true_flow_is_small_and_the_minimum(kind: str) -> None:
    image1, image2, flow, visible = synthetic_pair()

    def loss_at(offset_x: float, offset_y: float) -> float:
        offset = torch.tensor([offset_x, offset_y]).view(1, 2, 1, 1)
        return photometric_loss(image1, image2, flow + offset, visible, kind=kind).item()

    at_truth = loss_at(0.0, 0.0)
    assert at_truth < TRUTH_TO_WRONG_RATIO[kind] * loss_at(2.0, 2.0)
    if kind == "ssim_l1":
        assert at_truth < 0.02
    # The true flow beats every sub-pixel and pixel offset around it.
    offsets = (-1.0, -0.5, 0.0, 0.5, 1.0)
    others = [loss_at(dx, dy) for dx in offsets for dy in offsets if (dx, dy) != (0.0, 0.0)]
    assert at_truth < min(others)


def test_census_ignores_brightness_offset_where_l1_does_not() -> None:
    image = smooth_image(32, 32)
    brighter = image + 0.1
    # Interior only: the zero padding of the window at the image border is not offset-invariant.
    assert census_error(image, brighter)[..., 3:-3, 3:-3].max().item() < 1e-5
    assert l1_error(image, brighter).mean().item() == pytest.approx(0.1, abs=1e-6)


def test_census_detects_structure_change() -> None:
    image = smooth_image(32, 32)
    flipped = image.flip(-1)
    assert census_error(image, flipped)[..., 3:-3, 3:-3].mean().item() > 0.5


def test_ssim_is_zero_for_equal_images_and_positive_otherwise() -> None:
    image = smooth_image(24, 24)
    assert ssim_error(image, image).abs().max().item() < 1e-5
    noisy = (image + 0.1 * torch.randn(image.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert ssim_error(image, noisy).mean().item() > 0.05


def test_census_border_band_is_not_valid() -> None:
    image = smooth_image(16, 20)
    _, valid = photometric_error(image, image, "census", census_size=7)
    assert valid[..., 3:-3, 3:-3].min().item() == 1.0
    assert valid.sum().item() == (16 - 6) * (20 - 6)


@pytest.mark.parametrize("kind", ("ssim_l1", "census+ssim_l1"))
def test_masking_half_of_a_uniform_error_leaves_the_loss_unchanged(kind: str) -> None:
    image1 = torch.full((1, 3, 24, 32), 0.6)
    image2 = torch.full((1, 3, 24, 32), 0.4)
    flow = torch.zeros(1, 2, 24, 32)
    full = photometric_loss(image1, image2, flow, kind=kind)
    half_mask = torch.zeros(1, 1, 24, 32)
    half_mask[..., :, :16] = 1.0
    half = photometric_loss(image1, image2, flow, half_mask, kind=kind)
    assert full.item() > 0.05
    assert half.item() == pytest.approx(full.item(), rel=1e-5)


def test_masked_mean_is_the_mean_over_the_mask_and_zero_when_empty() -> None:
    error = torch.arange(8.0).view(1, 1, 2, 4)
    mask = torch.tensor([[1.0, 0, 1, 0], [0, 0, 0, 1]]).view(1, 1, 2, 4)
    assert masked_mean(error, mask).item() == pytest.approx((0 + 2 + 7) / 3, rel=1e-5)
    empty = masked_mean(error, torch.zeros_like(mask))
    assert torch.isfinite(empty) and empty.item() == 0.0


def test_gradient_reaches_the_flow() -> None:
    image1, image2, flow = translated_pair()
    flow = (flow + 0.5).requires_grad_(True)
    photometric_loss(image1, image2, flow, kind="census").backward()
    assert flow.grad is not None and flow.grad.abs().sum().item() > 0


def test_unknown_kind_is_rejected_by_name() -> None:
    image = smooth_image(8, 8)
    with pytest.raises(ValueError, match="charbonnier"):
        photometric_error(image, image, "charbonnier")
