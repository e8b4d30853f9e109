"""Discriminators. Each returns raw logits (N, 1); the losses apply the sigmoid."""

from __future__ import annotations

import torch
from torch import nn

from sr_lib.nets.layers import conv_layer, norm_layer


class SRGANDiscriminator(nn.Module):
    """SRGAN's discriminator (Ledig et al. 2017, Fig. 4): eight 3x3 convs with features
    (f, f, 2f, 2f, 4f, 4f, 8f, 8f), strides alternating 1/2, LeakyReLU(0.2), BN after the
    first; then dense(16f) - LeakyReLU - dense(1).

    Choice: global average pooling before the dense layers, so any patch size works (the
    paper fixed 96x96 crops).
    """

    def __init__(self, *, in_channels: int = 1, features: int = 64, spatial_dims: int = 2, norm: str = "batch"):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for i, mult in enumerate((1, 1, 2, 2, 4, 4, 8, 8)):
            out = features * mult
            layers.append(conv_layer(spatial_dims, channels, out, 3, stride=1 + i % 2))
            if i > 0:
                layers.append(norm_layer(spatial_dims, out, norm))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            channels = out
        pool = nn.AdaptiveAvgPool2d(1) if spatial_dims == 2 else nn.AdaptiveAvgPool3d(1)
        self.features = nn.Sequential(*layers, pool, nn.Flatten())
        self.classifier = nn.Sequential(
            nn.Linear(channels, features * 16), nn.LeakyReLU(0.2, inplace=True), nn.Linear(features * 16, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
