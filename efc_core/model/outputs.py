"""Typed outputs of the EFC network: one forward, one return type."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class EncoderFeatures:
    """Shared encoder pyramid of one image batch (ResNet ``layer1``, ``layer2``, ``layer3``).

    feat4: (B, C4, H/4, W/4); feat8: (B, C8, H/8, W/8); feat16: (B, C16, H/16, W/16),
    where H, W are the padded input size (multiples of ``contract.PAD_MULTIPLE``).
    """

    feat4: torch.Tensor
    feat8: torch.Tensor
    feat16: torch.Tensor

    def as_tuple(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (self.feat4, self.feat8, self.feat16)


@dataclass
class FlowPrediction:
    """Flow and occlusion of one direction, numbered from its source: flow image1 -> image2 on
    image1's grid (``flow_fw`` / ``occ_fw``); the backward prediction is the same with the pair
    swapped (``flow_bw`` / ``occ_bw``).

    flows: per flow block, coarsest first, each (B, 2, h_l, w_l) in pixels **of that level**.
    occlusions: per flow block, same levels, each (B, 1, h_l, w_l) probability that a pixel of
        the source image has no correspondence in the other.
    flow: (B, 2, H, W) final flow at (unpadded) input resolution, in input pixels.
    occlusion: (B, 1, H, W) final occlusion probability at input resolution.
    """

    flows: list[torch.Tensor]
    occlusions: list[torch.Tensor]
    flow: torch.Tensor
    occlusion: torch.Tensor


@dataclass
class EFCOutput:
    """Everything the losses need from one pair ``(image1, image2)``.

    seg_logits1, seg_logits2: (B, K, H, W) class logits at input resolution.
    seg_features1, seg_features2: (B, C, H/8, W/8) segmentation decoder features before the
        classifier (for the temporal consistency loss on features).
    forward: ``flow_fw`` (image1 -> image2 on image1's grid) with ``occ_fw``; ``None`` when not computed.
    backward: ``flow_bw`` (image2 -> image1 on image2's grid) with ``occ_bw``; ``None`` when not computed.
    """

    seg_logits1: torch.Tensor
    seg_logits2: torch.Tensor
    seg_features1: torch.Tensor
    seg_features2: torch.Tensor
    forward: FlowPrediction | None = None
    backward: FlowPrediction | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
