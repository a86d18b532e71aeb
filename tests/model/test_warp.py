"""``efc_core.model.warp``: backward warping against exact shifts, masks and flow resizing."""

from __future__ import annotations

import torch

from efc_core.model.warp import backward_warp, inside_mask, pixel_grid, resize_flow

torch.set_num_threads(1)


def test_integer_translation_equals_shifted_copy_in_the_interior() -> None:
    image = torch.randn(2, 3, 12, 16)
    dx, dy = 3, -2
    flow = torch.zeros(2, 2, 12, 16)
    flow[:, 0], flow[:, 1] = dx, dy
    warped = backward_warp(image, flow)
    # out(y, x) = image(y + dy, x + dx); valid where the source lies inside the image.
    expected = image[:, :, 0 : 12 + dy, dx:16]
    torch.testing.assert_close(warped[:, :, -dy:12, 0 : 16 - dx], expected, atol=1e-5, rtol=0)
    # Samples from outside the image are zero (padding_mode="zeros").
    assert torch.all(warped[:, :, :, 16 - dx + 1 :] == 0)


def test_zero_flow_is_identity_and_half_pixel_is_average() -> None:
    image = torch.randn(1, 2, 6, 7)
    torch.testing.assert_close(backward_warp(image, torch.zeros(1, 2, 6, 7)), image, atol=1e-6, rtol=0)
    flow = torch.zeros(1, 2, 6, 7)
    flow[:, 0] = 0.5
    warped = backward_warp(image, flow)
    torch.testing.assert_close(warped[..., :-1], 0.5 * (image[..., :-1] + image[..., 1:]), atol=1e-5, rtol=0)


def test_inside_mask_marks_pixels_whose_target_leaves_the_image() -> None:
    flow = torch.zeros(1, 2, 4, 5)
    flow[:, 0] = 2.0  # two columns move past the right border
    mask = inside_mask(flow)
    assert mask.shape == (1, 1, 4, 5)
    assert torch.all(mask[..., :3] == 1) and torch.all(mask[..., 3:] == 0)


def test_pixel_grid_and_resize_flow_scale_vectors() -> None:
    grid = pixel_grid(3, 4, torch.zeros(1))
    assert grid[0, 0, 2, 3] == 3 and grid[0, 1, 2, 3] == 2
    flow = torch.ones(1, 2, 8, 10)
    flow[:, 1] = -2.0
    resized = resize_flow(flow, (16, 40))
    torch.testing.assert_close(resized[:, 0], torch.full((1, 16, 40), 4.0))
    torch.testing.assert_close(resized[:, 1], torch.full((1, 16, 40), -4.0))
