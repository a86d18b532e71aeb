"""EFC training losses (torch tier): pure loss functions and the composer (docs/METHOD.md §3)."""

from efc_core.losses.composer import LossConfig, LossWeights, compute_losses
from efc_core.losses.occlusion import (
    forward_backward_occlusion,
    occlusion_loss,
    occlusion_target,
    range_map,
    range_map_occlusion,
)
from efc_core.losses.photometric import (
    census_error,
    census_transform,
    l1_error,
    masked_mean,
    photometric_error,
    photometric_loss,
    soft_hamming,
    ssim_error,
)
from efc_core.losses.semantic import error_mask, seg_occlusion, segmentation_loss, temporal_consistency_loss
from efc_core.losses.smoothness import edge_weights, smoothness_loss

__all__ = [
    "LossConfig",
    "LossWeights",
    "census_error",
    "census_transform",
    "compute_losses",
    "edge_weights",
    "error_mask",
    "forward_backward_occlusion",
    "l1_error",
    "masked_mean",
    "occlusion_loss",
    "occlusion_target",
    "photometric_error",
    "photometric_loss",
    "range_map",
    "range_map_occlusion",
    "seg_occlusion",
    "segmentation_loss",
    "smoothness_loss",
    "soft_hamming",
    "ssim_error",
    "temporal_consistency_loss",
]
