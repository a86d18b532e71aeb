"""Local cost volume (correlation) of the flow decoder, built from standard ops only.

docs/DEPLOY.md: pad + shifted slices + multiply + mean, so that ONNX export and the TensorRT parser need
no correlation plugin or custom CUDA op. Slices use constant start/stop offsets relative to the
padded borders (never ``start + H``), so a traced graph stays valid for every input size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def num_displacements(max_displacement: int) -> int:
    """Channels of the cost volume: ``(2 d + 1) ** 2``."""
    return (2 * max_displacement + 1) ** 2


def normalise_features(features: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-pixel standardisation over channels: zero mean, unit variance.

    With it, the channel mean of a product in :func:`local_correlation` is the Pearson
    correlation of two feature vectors, in [-1, 1] whatever the feature scale.

    Args:
        features: (B, C, H, W).

    Returns:
        (B, C, H, W).
    """
    centred = features - features.mean(dim=1, keepdim=True)
    variance = (centred * centred).mean(dim=1, keepdim=True)
    return centred * torch.rsqrt(variance + eps)


def local_correlation(features1: torch.Tensor, features2: torch.Tensor, max_displacement: int = 4,
                      normalise: bool = False) -> torch.Tensor:
    """Cost volume ``cost[b, k, y, x] = mean_c f1[b, c, y, x] * f2[b, c, y + dy_k, x + dx_k]``.

    Displacements are enumerated row-major, ``dy`` outer and ``dx`` inner, both from
    ``-max_displacement`` to ``+max_displacement``: channel ``k = (dy + d) (2 d + 1) + (dx + d)``.
    Positions outside ``features2`` count as zero features (zero padding).

    Args:
        features1: (B, C, H, W) features of the reference frame.
        features2: (B, C, H, W) features of the other frame (usually warped towards frame 1).
        max_displacement: d, in pixels of this level; (2 d + 1)^2 output channels.
        normalise: standardise both inputs over channels first (:func:`normalise_features`).

    Returns:
        (B, (2 d + 1)^2, H, W) float tensor.
    """
    if features1.shape != features2.shape:
        raise ValueError(f"feature shapes differ: {tuple(features1.shape)} vs {tuple(features2.shape)}")
    if max_displacement < 0:
        raise ValueError(f"max_displacement must be >= 0, got {max_displacement}")
    if normalise:
        features1 = normalise_features(features1)
        features2 = normalise_features(features2)
    d = max_displacement
    channels = int(features1.shape[1])  # static for a given network: keeps the traced kernel constant
    window = 2 * d + 1
    padded = F.pad(features2, (d, d, d, d))
    span = 2 * d
    # One row of displacements at a time: the (2d+1) shifted copies are stacked on channels, multiplied
    # once, and their channel means taken by a grouped 1x1 convolution with weights 1/C. ONNX Runtime's
    # ReduceMean over NCHW channels was 40 % of the decoder's time; a convolution is the op every
    # runtime (ONNX Runtime, TensorRT) optimises best, and the graph stays free of custom ops.
    reference = features1.repeat(1, window, 1, 1)
    averaging = torch.full((window, channels, 1, 1), 1.0 / channels, dtype=features1.dtype, device=features1.device)
    rows = []
    for row in range(span + 1):
        row_stop = row - span if row < span else None  # negative stop: independent of H
        band = padded[:, :, row:row_stop, :]
        shifted = torch.cat([band[:, :, :, col:(col - span if col < span else None)] for col in range(span + 1)], dim=1)
        rows.append(F.conv2d(shifted * reference, averaging, groups=window))
    return torch.cat(rows, dim=1)
