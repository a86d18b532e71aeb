"""Edge-aware smoothness: analytic values on constant, affine and discontinuous flows."""

from __future__ import annotations

import pytest
import torch

from efc_core.losses.smoothness import edge_weights, smoothness_loss

torch.set_num_threads(1)
HEIGHT, WIDTH = 20, 24


def random_image(seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(seed))


def affine_flow(a: float = 0.1, b: float = -0.03, c: float = 0.02, d: float = 0.05) -> torch.Tensor:
    """(1, 2, H, W) flow ``u = a x + b y + 1.5``, ``v = c x + d y - 2`` (a zoom + shear)."""
    ys, xs = torch.meshgrid(torch.arange(HEIGHT, dtype=torch.float32), torch.arange(WIDTH, dtype=torch.float32),
                            indexing="ij")
    return torch.stack((a * xs + b * ys + 1.5, c * xs + d * ys - 2.0))[None]


@pytest.mark.parametrize("order", (1, 2))
def test_constant_flow_costs_nothing(order: int) -> None:
    flow = torch.tensor([3.5, -1.25]).view(1, 2, 1, 1).expand(1, 2, HEIGHT, WIDTH)
    assert smoothness_loss(flow, random_image(), order=order).item() == pytest.approx(0.0, abs=1e-7)


def test_affine_flow_is_free_for_second_order_only() -> None:
    flow = affine_flow()
    assert smoothness_loss(flow, random_image(), order=2, alpha=0.0).item() == pytest.approx(0.0, abs=1e-5)
    # First order, alpha = 0 (unit weights): mean over channels of |du/dx|, |dv/dx| is (0.1 + 0.02) / 2,
    # of |du/dy|, |dv/dy| is (0.03 + 0.05) / 2; the loss is the mean of the two.
    expected = 0.5 * ((0.1 + 0.02) / 2 + (0.03 + 0.05) / 2)
    assert smoothness_loss(flow, random_image(), order=1, alpha=0.0).item() == pytest.approx(expected, rel=1e-5)


def test_second_order_penalises_a_kink() -> None:
    flow = torch.zeros(1, 2, HEIGHT, WIDTH)
    flow[:, 0, :, WIDTH // 2 :] = torch.arange(WIDTH - WIDTH // 2, dtype=torch.float32)  # slope 0 then 1
    # One column of |u_xx| = 1 among W - 2, channel v is zero: mean = 1 / (2 (W - 2)), halved.
    expected = 0.5 * (1.0 / (2 * (WIDTH - 2)))
    assert smoothness_loss(flow, torch.zeros(1, 3, HEIGHT, WIDTH), order=2).item() == pytest.approx(expected, rel=1e-5)


def test_motion_edge_on_an_image_edge_is_cheaper() -> None:
    image = torch.zeros(1, 3, HEIGHT, WIDTH)
    image[..., WIDTH // 2 :] = 1.0  # a vertical image edge between columns W/2 - 1 and W/2
    aligned = torch.zeros(1, 2, HEIGHT, WIDTH)
    aligned[:, 0, :, WIDTH // 2 :] = 4.0
    misaligned = torch.zeros(1, 2, HEIGHT, WIDTH)
    misaligned[:, 0, :, WIDTH // 2 - 4 :] = 4.0
    cost_aligned = smoothness_loss(aligned, image, order=1, alpha=150.0).item()
    cost_misaligned = smoothness_loss(misaligned, image, order=1, alpha=150.0).item()
    assert cost_aligned < 1e-6
    assert cost_misaligned == pytest.approx(0.5 * 4.0 / (2 * (WIDTH - 1)), rel=1e-5)


def test_edge_weights_are_one_on_flat_images_and_small_on_edges() -> None:
    image = torch.zeros(1, 3, HEIGHT, WIDTH)
    image[..., HEIGHT // 2 :, :] = 0.5
    wx, wy = edge_weights(image, alpha=10.0)
    assert wx.shape == (1, 1, HEIGHT, WIDTH - 1) and wy.shape == (1, 1, HEIGHT - 1, WIDTH)
    assert torch.all(wx == 1.0)
    assert wy[..., HEIGHT // 2 - 1, :].max().item() == pytest.approx(float(torch.exp(torch.tensor(-5.0))), rel=1e-5)


def test_coarse_flow_uses_a_resized_image() -> None:
    flow = torch.zeros(1, 2, HEIGHT // 2, WIDTH // 2)
    assert smoothness_loss(flow, random_image(), order=1).item() == 0.0


def test_invalid_order_is_rejected() -> None:
    with pytest.raises(ValueError, match="3"):
        smoothness_loss(torch.zeros(1, 2, 8, 8), torch.zeros(1, 3, 8, 8), order=3)
