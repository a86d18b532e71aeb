"""Edge-aware flow smoothness ``L_sm`` (docs/METHOD.md §3), first or second order.

The penalty on flow derivatives is down-weighted across image edges by
``exp(−α · mean_c |∂I|)`` (UFlow, ARFlow), so motion boundaries may follow image boundaries.
``α = 150`` for images in [0, 1] is UFlow's ``smoothness_edge_constant``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SMOOTHNESS_ORDERS = (1, 2)


def image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences.

    Args:
        x: (B, C, H, W).

    Returns:
        gx (B, C, H, W − 1) = ``x[..., 1:] − x[..., :-1]``, gy (B, C, H − 1, W).
    """
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def edge_weights(image: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge-aware weights ``exp(−α · mean_c |∂I|)``.

    Args:
        image: (B, 3, H, W) in [0, 1].
        alpha: edge constant (>= 0; 0 = plain, not edge-aware, smoothness).

    Returns:
        wx (B, 1, H, W − 1), wy (B, 1, H − 1, W) in (0, 1].
    """
    if alpha < 0:
        raise ValueError(f"smoothness edge alpha must be >= 0, got {alpha}")
    gx, gy = image_gradients(image)
    wx = torch.exp(-alpha * gx.abs().mean(dim=1, keepdim=True))
    wy = torch.exp(-alpha * gy.abs().mean(dim=1, keepdim=True))
    return wx, wy


def smoothness_loss(flow: torch.Tensor, image: torch.Tensor, order: int = 1, alpha: float = 150.0) -> torch.Tensor:
    """Edge-aware smoothness of a flow field.

    Args:
        flow: (B, 2, h, w) in pixels of its own resolution.
        image: (B, 3, H, W) in [0, 1]; area-resized to (h, w) when the sizes differ.
        order: 1 penalises ``|∂F|`` (favours constant flow), 2 penalises ``|∂²F|`` (favours
            affine flow, so rotations and zooms are free).
        alpha: edge constant of :func:`edge_weights`.

    Returns:
        scalar, ``(mean(wx·|∂x^k F|) + mean(wy·|∂y^k F|)) / 2`` with the mean over batch, both flow
        channels and pixels; in flow pixels (per pixel^k).
    """
    if order not in SMOOTHNESS_ORDERS:
        raise ValueError(f"smoothness order must be 1 or 2, got {order}")
    if image.shape[-2:] != flow.shape[-2:]:
        image = F.interpolate(image, size=flow.shape[-2:], mode="area")
    wx, wy = edge_weights(image, alpha)
    fx, fy = image_gradients(flow)
    if order == 1:
        return 0.5 * ((wx * fx.abs()).mean() + (wy * fy.abs()).mean())
    if flow.shape[-1] < 3 or flow.shape[-2] < 3:
        raise ValueError(f"second-order smoothness needs a flow of at least 3x3, got {tuple(flow.shape[-2:])}")
    fxx, _ = image_gradients(fx)
    _, fyy = image_gradients(fy)
    # The second difference at column x uses x-1, x, x+1: weight it by the image edge at x,
    # i.e. the first-difference weight between x and x+1 (UFlow crops the same way).
    return 0.5 * ((wx[..., :, 1:] * fxx.abs()).mean() + (wy[..., 1:, :] * fyy.abs()).mean())
