"""Backward warping by bilinear sampling, shared by the flow decoder and the losses.

``backward_warp(x, flow)(p) = x(p + flow(p))`` (docs/METHOD.md §3), sampled with ``grid_sample`` and
``align_corners=True`` so that pixel centres map to ``-1 .. 1`` by ``2 p / (W - 1) - 1``. Exports
at opset 16/17 keep ``mode="bilinear"`` (opset >= 20 writes ``"linear"``, which the TensorRT
parser treats as nearest, docs/DEPLOY.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pixel_grid(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """Pixel coordinates ``(1, 2, H, W)``: channel 0 is x (column), channel 1 is y (row)."""
    ys = torch.arange(height, dtype=like.dtype, device=like.device)
    xs = torch.arange(width, dtype=like.dtype, device=like.device)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x, grid_y), dim=0).unsqueeze(0)


def backward_warp(x: torch.Tensor, flow: torch.Tensor, padding_mode: str = "zeros") -> torch.Tensor:
    """Sample ``x`` at ``p + flow(p)``.

    Args:
        x: (B, C, H, W) tensor to sample (image, features, probabilities).
        flow: (B, 2, H, W) displacement in pixels of this resolution, channel 0 = dx, 1 = dy.
        padding_mode: ``grid_sample`` padding for samples outside the image.

    Returns:
        (B, C, H, W) warped tensor.
    """
    if x.shape[-2:] != flow.shape[-2:]:
        raise ValueError(f"x spatial size {tuple(x.shape[-2:])} != flow size {tuple(flow.shape[-2:])}")
    height, width = flow.shape[-2:]
    coords = pixel_grid(height, width, flow) + flow
    # Normalise to [-1, 1] for align_corners=True; max(.., 1) keeps 1-pixel-wide maps finite.
    scale_x = 2.0 / max(width - 1, 1)
    scale_y = 2.0 / max(height - 1, 1)
    grid_x = coords[:, 0] * scale_x - 1.0
    grid_y = coords[:, 1] * scale_y - 1.0
    grid = torch.stack((grid_x, grid_y), dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True)


def inside_mask(flow: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) float mask: 1 where ``p + flow(p)`` lands inside the image."""
    height, width = flow.shape[-2:]
    coords = pixel_grid(height, width, flow) + flow
    inside_x = (coords[:, 0:1] >= 0) & (coords[:, 0:1] <= width - 1)
    inside_y = (coords[:, 1:2] >= 0) & (coords[:, 1:2] <= height - 1)
    return (inside_x & inside_y).to(flow.dtype)


def resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize a flow field to ``size = (H, W)`` and rescale its vectors.

    Args:
        flow: (B, 2, h, w) in pixels of the (h, w) grid.

    Returns:
        (B, 2, H, W) in pixels of the (H, W) grid.
    """
    height, width = size
    in_h, in_w = flow.shape[-2:]
    resized = F.interpolate(flow, size=size, mode="bilinear", align_corners=False)
    scale = torch.tensor([width / in_w, height / in_h], dtype=flow.dtype, device=flow.device)
    return resized * scale.view(1, 2, 1, 1)
