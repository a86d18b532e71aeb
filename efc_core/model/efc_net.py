"""The EFC network: shared encoder, segmentation branch, flow + occlusion branch (docs/METHOD.md §2).

Inputs are ImageNet-normalised RGB: ``(x / 255 - contract.IMAGENET_MEAN) / contract.IMAGENET_STD``
per channel, (B, 3, H, W) float32. ``forward`` accepts any H, W: it pads right and bottom to a
multiple of ``contract.PAD_MULTIPLE`` and crops the full-resolution outputs back.

Grids, for the losses: ``seg_logits*``, ``FlowPrediction.flow`` and ``.occlusion`` are at the input
size (H, W). Everything else lives on the **padded** grid (Hp, Wp) = (H, W) rounded up to
``PAD_MULTIPLE``: ``seg_features*`` are (Hp/8, Wp/8), and ``FlowPrediction.flows[l]`` /
``.occlusions[l]`` are (Hp/s, Wp/s) with ``s = config.flow_strides[l]`` (coarsest first; the last
is stride 4), flow in pixels of that level. Feed training crops whose sides are multiples of 64 and
the two grids coincide.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from efc_core.contract import PAD_MULTIPLE, check_padded_size, padded_size
from efc_core.model.config import ModelConfig, preset_config
from efc_core.model.encoder import build_backbone
from efc_core.model.flow_decoder import FlowDecoder, FlowDecoderOutput
from efc_core.model.outputs import EFCOutput, EncoderFeatures, FlowPrediction
from efc_core.model.segmentation_head import SegmentationHead, SegmentationResult


class EFCNet(nn.Module):
    """Joint segmentation, optical flow and occlusion network."""

    def __init__(self, config: ModelConfig, pretrained_backbone: bool = False) -> None:
        super().__init__()
        self.config = config
        self.encoder, layer4, layer4_channels = build_backbone(config, pretrained=pretrained_backbone)
        self.segmentation_head = SegmentationHead(config, layer4, layer4_channels, self.encoder.channels)
        self.flow_decoder = FlowDecoder(config, self.encoder.channels)

    @property
    def flow_strides(self) -> tuple[int, ...]:
        """Stride of each entry of ``FlowPrediction.flows``, coarsest first (ends with 4)."""
        return tuple(self.config.flow_strides)

    def encode(self, image: torch.Tensor) -> EncoderFeatures:
        """Shared encoder on (B, 3, Hp, Wp) normalised images, Hp and Wp multiples of PAD_MULTIPLE."""
        if not torch.jit.is_tracing():
            _check_padded(image)
        return self.encoder(image)

    def segment(self, features: EncoderFeatures, out_size: tuple[int, int] | None = None) -> SegmentationResult:
        """Segmentation of encoded images: logits (B, K, H, W) cropped to ``out_size`` (None: padded size)."""
        return self.segmentation_head(features, out_size)

    def estimate_flow(self, features1: EncoderFeatures, features2: EncoderFeatures,
                      out_size: tuple[int, int] | None = None) -> FlowPrediction:
        """Flow image1 -> image2 on image1's grid and the occlusion of image1's pixels.

        Pass the pair swapped for the backward direction (``flow_bw`` / ``occ_bw``).

        Args:
            features1, features2: encoder pyramids of two equally sized batches (image1, image2).
            out_size: (H, W) crop of the full-resolution flow / occlusion; None keeps the padded size.
        """
        decoded = self.flow_decoder.decode(self.flow_decoder.pyramid(features1), self.flow_decoder.pyramid(features2))
        return _flow_prediction(decoded, out_size)

    def forward(self, image1: torch.Tensor, image2: torch.Tensor, with_flow: bool = True,
                both_directions: bool = True) -> EFCOutput:
        """Segmentation of both frames and flow 1 -> 2 (and 2 -> 1 when ``both_directions``).

        Args:
            image1, image2: (B, 3, H, W) normalised RGB, any H, W.
            with_flow: False skips the flow branch (``forward`` / ``backward`` are None).
            both_directions: also compute ``flow_bw`` (2 -> 1); both directions run as one batch of 2B.
        """
        if image1.dim() != 4 or image1.shape[1] != 3 or image1.shape != image2.shape:
            raise ValueError(f"expected two (B, 3, H, W) images of equal shape, got "
                             f"{tuple(image1.shape)} and {tuple(image2.shape)}")
        batch = image1.shape[0]
        out_size = (int(image1.shape[-2]), int(image1.shape[-1]))
        images = self.pad(torch.cat((image1, image2), dim=0))
        features = self.encode(images)
        segmentation = self.segment(features, out_size)
        logits1, logits2 = segmentation.logits.split(batch)
        seg_features1, seg_features2 = segmentation.features.split(batch)
        output = EFCOutput(seg_logits1=logits1, seg_logits2=logits2,
                           seg_features1=seg_features1, seg_features2=seg_features2)
        if segmentation.aux_logits is not None:
            output.extras["aux_logits1"], output.extras["aux_logits2"] = segmentation.aux_logits.split(batch)
        if not with_flow:
            return output
        # One pyramid per image, shared by both directions.
        pyramid = self.flow_decoder.pyramid(features)
        pyramid1 = [level[:batch] for level in pyramid]
        pyramid2 = [level[batch:] for level in pyramid]
        if not both_directions:
            output.forward = _flow_prediction(self.flow_decoder.decode(pyramid1, pyramid2), out_size)
            return output
        swapped = [torch.cat((level2, level1), dim=0) for level1, level2 in zip(pyramid1, pyramid2)]
        both = _flow_prediction(self.flow_decoder.decode(pyramid, swapped), out_size)
        output.forward, output.backward = _split_prediction(both, batch)
        return output

    def pad(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised images padded right / bottom to ``contract.padded_size``, the
        grid :meth:`encode` needs, with ``config.pad_mode`` (the mode an export records in its
        manifest, so the runtime's preprocessing pads the same way).
        """
        height, width = (int(v) for v in images.shape[-2:])
        padded_height, padded_width = padded_size(height, width)
        if (padded_height, padded_width) == (height, width):
            return images
        mode = "replicate" if self.config.pad_mode == "replicate" else "constant"
        return F.pad(images, (0, padded_width - width, 0, padded_height - height), mode=mode)


def _check_padded(image: torch.Tensor) -> None:
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"expected a (B, 3, H, W) image batch, got shape {tuple(image.shape)}")
    height, width = (int(v) for v in image.shape[-2:])
    check_padded_size(height, width, PAD_MULTIPLE, "image (pad it as EFCNet.forward does, or resize it)")


def _flow_prediction(decoded: FlowDecoderOutput, out_size: tuple[int, int] | None) -> FlowPrediction:
    """Sigmoid occlusions, and the stride-4 flow / occlusion upsampled x4 (flow values x4) and cropped."""
    occlusions = [torch.sigmoid(logits) for logits in decoded.occlusion_logits]
    flow = F.interpolate(decoded.flows[-1], scale_factor=4.0, mode="bilinear", align_corners=False) * 4.0
    occlusion_logits = F.interpolate(decoded.occlusion_logits[-1], scale_factor=4.0, mode="bilinear",
                                     align_corners=False)
    occlusion = torch.sigmoid(occlusion_logits)
    if out_size is not None:
        flow = flow[..., : out_size[0], : out_size[1]]
        occlusion = occlusion[..., : out_size[0], : out_size[1]]
    return FlowPrediction(flows=list(decoded.flows), occlusions=occlusions, flow=flow, occlusion=occlusion)


def _split_prediction(prediction: FlowPrediction, batch: int) -> tuple[FlowPrediction, FlowPrediction]:
    """Split a batched two-direction prediction into its first and second halves."""
    def half(index: int) -> FlowPrediction:
        def take(x: torch.Tensor) -> torch.Tensor:
            return x[index * batch:(index + 1) * batch]
        return FlowPrediction(flows=[take(f) for f in prediction.flows],
                              occlusions=[take(o) for o in prediction.occlusions],
                              flow=take(prediction.flow), occlusion=take(prediction.occlusion))
    return half(0), half(1)


def build_model(preset: str, num_classes: int, pretrained_backbone: bool = False, **overrides: Any) -> EFCNet:
    """Build an :class:`EFCNet` from a preset (``"tiny"``, ``"realtime"``, ``"paper"``).

    Args:
        preset: name in ``config.PRESETS``; unknown names raise ``ValueError``.
        num_classes: K, number of segmentation classes.
        pretrained_backbone: torchvision ImageNet weights for the ResNet (downloaded on first use;
            not available for the tiny preset's ResNet-10).
        overrides: any :class:`ModelConfig` field; unknown names raise ``ValueError``.
    """
    return EFCNet(preset_config(preset, num_classes, **overrides), pretrained_backbone=pretrained_backbone)
