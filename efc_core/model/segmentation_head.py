"""Segmentation branch: layer4 + ASPP / pyramid pooling + stride-8 / stride-4 fusion + classifier.

[ours] (docs/METHOD.md §2): the context module sees layer4 at stride 16 or 32; its output is fused with
the encoder's stride-8 features (giving ``seg_features``, the input of the temporal consistency
loss) and, DeepLabv3+-style, with the stride-4 features for sharp boundaries.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from efc_core.model.config import ModelConfig
from efc_core.model.outputs import EncoderFeatures


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1) -> nn.Sequential:
    """Conv (same padding) + BatchNorm + ReLU."""
    padding = dilation * (kernel_size // 2)
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLabv3): 1x1, dilated 3x3 per rate, and image pooling.

    (B, C_in, h, w) -> (B, C_out, h, w). The image-pooling branch is broadcast with ``expand_as``
    rather than resized, so the module exports to ONNX with dynamic h, w.
    """

    def __init__(self, in_channels: int, out_channels: int, rates: tuple[int, ...]) -> None:
        super().__init__()
        branches = [conv_bn_relu(in_channels, out_channels, 1)]
        branches += [conv_bn_relu(in_channels, out_channels, 3, dilation=rate) for rate in rates]
        self.branches = nn.ModuleList(branches)
        # No BatchNorm after global pooling: with batch size 1 it would see a single value.
        self.image_pool = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.ReLU(inplace=True))
        self.project = conv_bn_relu(out_channels * (len(branches) + 1), out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.branches]
        pooled = self.image_pool(x.mean(dim=(2, 3), keepdim=True))
        outs.append(pooled.expand_as(outs[0]))
        return self.project(torch.cat(outs, dim=1))


class PyramidPooling(nn.Module):
    """PSPNet pyramid pooling: adaptive average pools to ``bins``, 1x1 convs, upsample, concat.

    (B, C_in, h, w) -> (B, C_out, h, w). ONNX export needs static h, w divisible by every bin
    (adaptive pooling becomes a fixed AvgPool); prefer ASPP for dynamic-shape exports.
    """

    def __init__(self, in_channels: int, out_channels: int, bins: tuple[int, ...]) -> None:
        super().__init__()
        self.bins = tuple(bins)
        reduced = max(out_channels // max(len(bins), 1), 8)
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), nn.Conv2d(in_channels, reduced, 1), nn.ReLU(inplace=True))
            for b in self.bins
        )
        self.project = conv_bn_relu(in_channels + reduced * len(self.bins), out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        outs = [x] + [F.interpolate(s(x), size=size, mode="bilinear", align_corners=False) for s in self.stages]
        return self.project(torch.cat(outs, dim=1))


class SegmentationResult(NamedTuple):
    """logits: (B, K, H, W) at ``out_size`` (padded input size when None); features: (B, C, Hp/8,
    Wp/8) before the classifier; aux_logits: (B, K, H, W) from layer3, or None.
    """

    logits: torch.Tensor
    features: torch.Tensor
    aux_logits: torch.Tensor | None


class SegmentationHead(nn.Module):
    """Segmentation decoder on the shared encoder features (padded grid, strides 4, 8, 16)."""

    def __init__(self, config: ModelConfig, layer4: nn.Module, layer4_channels: int,
                 encoder_channels: tuple[int, int, int]) -> None:
        super().__init__()
        c4, c8, c16 = encoder_channels
        self.layer4 = layer4
        self.context_upscale = config.segmentation_stride // 8
        if config.context_module == "aspp":
            self.context = ASPP(layer4_channels, config.seg_head_channels, config.aspp_rates)
        else:
            self.context = PyramidPooling(layer4_channels, config.seg_head_channels, config.psp_bins)
        self.reduce8 = conv_bn_relu(c8, config.seg_decoder_channels, 1)
        self.fuse8 = conv_bn_relu(config.seg_head_channels + config.seg_decoder_channels,
                                  config.seg_decoder_channels, 3)
        self.fuse_stride4 = config.fuse_stride4
        if config.fuse_stride4:
            self.reduce4 = conv_bn_relu(c4, config.stride4_reduce_channels, 1)
            self.fuse4 = conv_bn_relu(config.seg_decoder_channels + config.stride4_reduce_channels,
                                      config.seg_decoder_channels, 3)
        self.dropout = nn.Dropout2d(config.seg_dropout)
        self.classifier = nn.Conv2d(config.seg_decoder_channels, config.num_classes, 1)
        self.aux: nn.Module | None = None
        if config.aux_head:
            self.aux = nn.Sequential(conv_bn_relu(c16, config.seg_decoder_channels, 3),
                                     nn.Conv2d(config.seg_decoder_channels, config.num_classes, 1))

    def forward(self, features: EncoderFeatures, out_size: tuple[int, int] | None = None) -> SegmentationResult:
        """Class logits for one batch of encoded images.

        Args:
            features: encoder pyramid on the padded grid (Hp, Wp multiples of the strides).
            out_size: (H, W) crop of the upsampled logits (top-left, the model pads right/bottom);
                None keeps the padded size (export wrappers, no shape-dependent slicing).
        """
        context = self.context(self.layer4(features.feat16))
        context = _upsample(context, self.context_upscale)
        seg_features = self.fuse8(torch.cat((context, self.reduce8(features.feat8)), dim=1))
        decoded, scale = seg_features, 8
        if self.fuse_stride4:
            decoded = self.fuse4(torch.cat((_upsample(seg_features, 2), self.reduce4(features.feat4)), dim=1))
            scale = 4
        logits = _crop(_upsample(self.classifier(self.dropout(decoded)), scale), out_size)
        aux_logits = None
        if self.aux is not None:
            aux_logits = _crop(_upsample(self.aux(features.feat16), 16), out_size)
        return SegmentationResult(logits=logits, features=seg_features, aux_logits=aux_logits)


def _upsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Bilinear upsampling by an integer factor (a Resize with constant scales in ONNX)."""
    if factor == 1:
        return x
    return F.interpolate(x, scale_factor=float(factor), mode="bilinear", align_corners=False)


def _crop(x: torch.Tensor, out_size: tuple[int, int] | None) -> torch.Tensor:
    """Top-left crop to ``out_size`` = (H, W); None returns ``x`` unchanged."""
    if out_size is None:
        return x
    return x[..., : out_size[0], : out_size[1]]
