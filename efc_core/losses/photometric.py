"""Photometric (brightness-constancy) losses: census, SSIM, L1, and their masked mean.

docs/METHOD.md §3: ``L_ph = Σ (1 − E1)·ρ(I1, W(I2, flow_fw)) / Σ (1 − E1)``. Every function here returns a
per-pixel error map ``(B, 1, H, W)``; :func:`masked_mean` does the normalisation by the mask sum,
because a plain mean of ``mask · error`` lets the network lower the loss "for free" by masking.

Images are ``(B, 3, H, W)`` RGB in ``[0, 1]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.transforms.functional import rgb_to_grayscale

from efc_core.model.warp import backward_warp, inside_mask

PHOTOMETRIC_KINDS = ("census", "ssim_l1", "census+ssim_l1")
# Robust exponent and offset of the census distance, (|h| + 0.01)^0.4 (UFlow / DDFlow).
_CENSUS_EPS = 0.01
_CENSUS_Q = 0.4
# SSIM stabilisers for signals in [0, 1] (Wang et al. 2004: (0.01 L)^2 and (0.03 L)^2, L = 1).
_SSIM_C1 = 0.01**2
_SSIM_C2 = 0.03**2
_SSIM_WINDOW = 3


def census_transform(image: torch.Tensor, patch_size: int = 7) -> torch.Tensor:
    """Soft census signature of every pixel.

    Args:
        image: (B, 3, H, W) RGB in [0, 1].
        patch_size: odd window size (7 in docs/METHOD.md).

    Returns:
        (B, patch_size², H, W): for each neighbour ``d`` of the window, ``Δ / sqrt(0.81 + Δ²)`` with
        ``Δ = I(p + d) − I(p)`` on the grey image in 0..255 units (a smooth sign of the difference,
        as in UFlow). Neighbours outside the image read as 0; :func:`census_border_mask` marks the
        pixels whose window is incomplete.
    """
    if patch_size < 1 or patch_size % 2 == 0:
        raise ValueError(f"census patch_size must be odd and positive, got {patch_size}")
    grey = rgb_to_grayscale(image) * 255.0
    # One identity kernel per window position extracts all neighbours in one convolution.
    kernels = torch.eye(patch_size * patch_size, dtype=image.dtype, device=image.device)
    kernels = kernels.view(patch_size * patch_size, 1, patch_size, patch_size)
    neighbours = F.conv2d(grey, kernels, padding=patch_size // 2)
    diff = neighbours - grey
    return diff / torch.sqrt(0.81 + diff.square())


def soft_hamming(census1: torch.Tensor, census2: torch.Tensor) -> torch.Tensor:
    """Soft Hamming distance between census signatures.

    Args:
        census1, census2: (B, P, H, W) from :func:`census_transform`.

    Returns:
        (B, 1, H, W) ``Σ_d s_d / (0.1 + s_d)`` with ``s_d = (c1_d − c2_d)²``; 0 for equal signatures,
        at most ``P``.
    """
    squared = (census1 - census2).square()
    return (squared / (0.1 + squared)).sum(dim=1, keepdim=True)


def census_border_mask(height: int, width: int, patch_size: int, like: torch.Tensor) -> torch.Tensor:
    """(1, 1, H, W) float mask: 1 where the whole census window lies inside the image."""
    radius = patch_size // 2
    mask = torch.zeros(1, 1, height, width, dtype=like.dtype, device=like.device)
    if height > 2 * radius and width > 2 * radius:
        mask[..., radius : height - radius, radius : width - radius] = 1.0
    return mask


def census_error(image1: torch.Tensor, warped2: torch.Tensor, patch_size: int = 7) -> torch.Tensor:
    """Census loss per pixel, ``ρ(h) = (|h| + 0.01)^0.4 − 0.01^0.4`` of the soft Hamming distance.

    The constant ``0.01^0.4`` is subtracted so that a perfect match scores exactly 0; it changes
    neither gradients nor the minimiser.

    Args:
        image1, warped2: (B, 3, H, W) in [0, 1].

    Returns:
        (B, 1, H, W), dimensionless, >= 0.
    """
    distance = soft_hamming(census_transform(image1, patch_size), census_transform(warped2, patch_size))
    return (distance.abs() + _CENSUS_EPS).pow(_CENSUS_Q) - _CENSUS_EPS**_CENSUS_Q


def ssim_error(image1: torch.Tensor, image2: torch.Tensor) -> torch.Tensor:
    """Structural dissimilarity ``clamp((1 − SSIM) / 2, 0, 1)`` over 3×3 windows, mean over channels.

    Args:
        image1, image2: (B, C, H, W) in [0, 1].

    Returns:
        (B, 1, H, W) in [0, 1]; 0 where the two images agree.
    """

    def local_mean(x: torch.Tensor) -> torch.Tensor:
        # Reflect padding keeps the output the input size without inventing dark borders.
        return F.avg_pool2d(F.pad(x, (_SSIM_WINDOW // 2,) * 4, mode="reflect"), kernel_size=_SSIM_WINDOW, stride=1)

    mu1 = local_mean(image1)
    mu2 = local_mean(image2)
    var1 = local_mean(image1 * image1) - mu1.square()
    var2 = local_mean(image2 * image2) - mu2.square()
    cov = local_mean(image1 * image2) - mu1 * mu2
    numerator = (2 * mu1 * mu2 + _SSIM_C1) * (2 * cov + _SSIM_C2)
    denominator = (mu1.square() + mu2.square() + _SSIM_C1) * (var1 + var2 + _SSIM_C2)
    return torch.clamp((1 - numerator / denominator) / 2, 0, 1).mean(dim=1, keepdim=True)


def l1_error(image1: torch.Tensor, image2: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference over channels: (B, C, H, W) x2 -> (B, 1, H, W), image units."""
    return (image1 - image2).abs().mean(dim=1, keepdim=True)


def photometric_error(
    image1: torch.Tensor,
    warped2: torch.Tensor,
    kind: str = "census",
    census_size: int = 7,
    ssim_weight: float = 0.85,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel brightness-constancy error and where it is defined.

    Args:
        image1: (B, 3, H, W) in [0, 1].
        warped2: (B, 3, H, W) frame 2 warped onto frame 1's grid.
        kind: ``"census"``, ``"ssim_l1"`` (``w·SSIM + (1 − w)·L1``, Monodepth-style) or
            ``"census+ssim_l1"`` (their sum).
        census_size: census window (odd).
        ssim_weight: ``w`` in [0, 1].

    Returns:
        error (B, 1, H, W) >= 0, and valid (1, 1, H, W) float: 0 on the census border band, where the
        window is incomplete (all ones for ``ssim_l1``).
    """
    if kind not in PHOTOMETRIC_KINDS:
        raise ValueError(f"photometric kind must be one of {PHOTOMETRIC_KINDS}, got {kind!r}")
    if not 0.0 <= ssim_weight <= 1.0:
        raise ValueError(f"ssim_weight must be in [0, 1], got {ssim_weight}")
    height, width = image1.shape[-2:]
    error = torch.zeros_like(image1[:, :1])
    valid = torch.ones(1, 1, height, width, dtype=image1.dtype, device=image1.device)
    if "census" in kind:
        error = error + census_error(image1, warped2, census_size)
        valid = census_border_mask(height, width, census_size, image1)
    if "ssim_l1" in kind:
        error = error + ssim_weight * ssim_error(image1, warped2) + (1 - ssim_weight) * l1_error(image1, warped2)
    return error, valid


def masked_mean(error: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-6) -> torch.Tensor:
    """``Σ mask·error / (Σ mask + eps)``, the mean error over the masked pixels.

    Args:
        error: (B, C, H, W).
        mask: broadcastable to ``error`` (e.g. (B, 1, H, W)), weights in [0, 1]; ``None`` = all ones.

    Returns:
        scalar tensor; 0 (not NaN) when the mask is empty.
    """
    if mask is None:
        return error.mean()
    mask = mask.expand_as(error)
    return (mask * error).sum() / (mask.sum() + eps)


def photometric_loss(
    image1: torch.Tensor,
    image2: torch.Tensor,
    flow_fw: torch.Tensor,
    mask: torch.Tensor | None = None,
    kind: str = "census",
    census_size: int = 7,
    ssim_weight: float = 0.85,
) -> torch.Tensor:
    """``L_ph`` of one direction at one resolution.

    Args:
        image1, image2: (B, 3, H, W) in [0, 1], at the resolution of the flow.
        flow_fw: (B, 2, H, W) flow 1 -> 2 in pixels of this resolution.
        mask: (B, 1, H, W) weights ``1 − E1`` (detached by the caller), ``None`` = all ones.
            Always excluded: pixels whose census / SSIM window samples outside frame 2 and the
            census border band.

    Returns:
        scalar: masked mean of :func:`photometric_error` of ``image1`` vs ``W(image2, flow_fw)``.
    """
    warped2 = backward_warp(image2, flow_fw)
    error, valid = photometric_error(image1, warped2, kind, census_size, ssim_weight)
    # A census or SSIM window that reaches warped samples from outside frame 2 compares against
    # zeros grid_sample invented: keep only pixels whose whole window was sampled inside (erosion).
    window = max(census_size if "census" in kind else 1, _SSIM_WINDOW if "ssim" in kind else 1)
    inside = -F.max_pool2d(-inside_mask(flow_fw), window, stride=1, padding=window // 2)
    weight = valid * inside
    if mask is not None:
        weight = weight * mask
    return masked_mean(error, weight)
