"""PWC-Net style flow decoder with an occlusion head in every block (docs/METHOD.md §2).

Coarse to fine over ``config.flow_strides`` (e.g. 64, 32, 16, 8, 4): at each level the previous
flow is upsampled x2 (values x2), image2's features are warped towards image1 with
``backward_warp``, a local cost volume is computed, and estimator convs on
``[cost, image1 features, upsampled flow, upsampled estimator features]`` predict a flow residual.
[paper] "in each block of the flow branch, two conv layers and a sigmoid" estimate occlusion from
the estimator's features. A dilated context network refines the stride-4 flow.

No BatchNorm in this branch: self-supervised flow training is sensitive to batch statistics, and
the forward / backward halves of a batched pass must not influence each other.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from efc_core.model.config import ModelConfig
from efc_core.model.cost_volume import local_correlation, num_displacements
from efc_core.model.outputs import EncoderFeatures
from efc_core.model.warp import backward_warp

_SLOPE = 0.1  # LeakyReLU slope of PWC-Net


def conv_lrelu(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
               dilation: int = 1) -> nn.Sequential:
    """Conv (same padding) + LeakyReLU(0.1)."""
    padding = dilation * (kernel_size // 2)
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation),
        nn.LeakyReLU(_SLOPE, inplace=True),
    )


class FlowEstimator(nn.Module):
    """Conv stack -> (features (B, C_last, h, w), flow residual (B, 2, h, w) in pixels of the level)."""

    def __init__(self, in_channels: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        layers, previous = [], in_channels
        for width in channels:
            layers.append(conv_lrelu(previous, width))
            previous = width
        self.body = nn.Sequential(*layers)
        self.flow_head = nn.Conv2d(previous, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return features, self.flow_head(features)


class OcclusionHead(nn.Module):
    """Two convs on the estimator features; ``forward`` returns logits (B, 1, h, w), sigmoid outside."""

    def __init__(self, in_channels: int, hidden_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_lrelu(in_channels, hidden_channels), nn.Conv2d(hidden_channels, 1, 3, padding=1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.body(features)


class ContextNetwork(nn.Module):
    """Dilated convs on ``[features, flow]`` -> flow residual (B, 2, h, w) (PWC-Net's context net)."""

    def __init__(self, in_channels: int, channels: tuple[int, ...], dilations: tuple[int, ...]) -> None:
        super().__init__()
        layers, previous = [], in_channels
        for width, dilation in zip(channels, dilations):
            layers.append(conv_lrelu(previous, width, dilation=dilation))
            previous = width
        layers.append(nn.Conv2d(previous, 2, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class FlowDecoderOutput(NamedTuple):
    """Per level, coarsest first, on the padded grid: level ``l`` has stride ``flow_strides[l]``.

    flows: (B, 2, Hp/s, Wp/s) in pixels of that level; the last (stride 4) is context-refined.
    occlusion_logits: (B, 1, Hp/s, Wp/s); ``sigmoid`` gives the occlusion probability.
    """

    flows: list[torch.Tensor]
    occlusion_logits: list[torch.Tensor]


class FlowDecoder(nn.Module):
    """Flow image1 -> image2 and occlusion of image1 from their encoder pyramids (swap for the backward direction)."""

    def __init__(self, config: ModelConfig, encoder_channels: tuple[int, int, int]) -> None:
        super().__init__()
        self.strides = tuple(config.flow_strides)
        self.max_displacement = config.max_displacement
        self.normalise_correlation = config.normalize_correlation
        c4, c8, c16 = encoder_channels
        source_channels = {4: c4, 8: c8, 16: c16, 32: config.extra_stage_channels, 64: config.extra_stage_channels}
        # Cheap stride-2 stages above layer3 widen the search range for large motion.
        stages, previous = [], c16
        for _ in range(config.num_extra_stages):
            stages.append(nn.Sequential(conv_lrelu(previous, config.extra_stage_channels, stride=2),
                                        conv_lrelu(config.extra_stage_channels, config.extra_stage_channels)))
            previous = config.extra_stage_channels
        self.extra_stages = nn.ModuleList(stages)
        feature_channels = config.flow_feature_channels
        self.projections = nn.ModuleList(
            conv_lrelu(source_channels[stride], feature_channels, kernel_size=1) for stride in self.strides
        )
        self.feature_channels = config.estimator_channels[-1]
        in_channels = num_displacements(config.max_displacement) + feature_channels + 2 + self.feature_channels
        num_estimators = 1 if config.shared_estimator else len(self.strides)
        self.estimators = nn.ModuleList(
            FlowEstimator(in_channels, config.estimator_channels) for _ in range(num_estimators)
        )
        self.occlusion_head_detached = config.occlusion_head_detached
        self.occlusion_heads = nn.ModuleList(
            OcclusionHead(self.feature_channels, config.occlusion_hidden_channels) for _ in self.strides
        )
        self.context = ContextNetwork(self.feature_channels + 2, config.context_channels, config.context_dilations)

    def pyramid(self, features: EncoderFeatures) -> list[torch.Tensor]:
        """Projected flow features per level, coarsest first: (B, C_flow, Hp/s, Wp/s) for s in strides."""
        by_stride = {4: features.feat4, 8: features.feat8, 16: features.feat16}
        x = features.feat16
        for index, stage in enumerate(self.extra_stages):
            x = stage(x)
            by_stride[32 * 2**index] = x
        return [project(by_stride[s]) for project, s in zip(self.projections, self.strides)]

    def decode(self, pyramid1: list[torch.Tensor], pyramid2: list[torch.Tensor]) -> FlowDecoderOutput:
        """Flow image1 -> image2 on image1's grid and occlusion of image1, every level (:class:`FlowDecoderOutput`)."""
        if len(pyramid1) != len(self.strides) or len(pyramid2) != len(self.strides):
            raise ValueError(f"expected {len(self.strides)} pyramid levels, got {len(pyramid1)} and {len(pyramid2)}")
        flows: list[torch.Tensor] = []
        occlusion_logits: list[torch.Tensor] = []
        flow = estimator_features = None
        for level, (feat1, feat2) in enumerate(zip(pyramid1, pyramid2)):
            if flow is None or estimator_features is None:
                # Coarsest level: no prior flow; zeros_like keeps the graph shape-generic.
                up_flow = torch.zeros_like(feat1[:, :2])
                up_features = torch.zeros_like(feat1[:, :1]).expand(-1, self.feature_channels, -1, -1)
                warped2 = feat2
            else:
                up_flow = _upsample2(flow) * 2.0  # pixels double with the resolution
                up_features = _upsample2(estimator_features)
                warped2 = backward_warp(feat2, up_flow)
            cost = F.leaky_relu(
                local_correlation(feat1, warped2, self.max_displacement, self.normalise_correlation), _SLOPE
            )
            estimator = self.estimators[0 if len(self.estimators) == 1 else level]
            estimator_features, residual = estimator(torch.cat((cost, feat1, up_flow, up_features), dim=1))
            flow = up_flow + residual
            head_input = estimator_features.detach() if self.occlusion_head_detached else estimator_features
            occlusion_logits.append(self.occlusion_heads[level](head_input))
            if level == len(self.strides) - 1:
                flow = flow + self.context(torch.cat((estimator_features, flow), dim=1))
            flows.append(flow)
        return FlowDecoderOutput(flows=flows, occlusion_logits=occlusion_logits)


def _upsample2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
