"""Discriminators. Each returns raw logits (N, 1); the losses apply the sigmoid."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from sr_lib.nets.layers import conv_layer, norm_layer


class ConvCritic(nn.Module):
    """The critic that SRGAN, GAN-CPCE and GAN-CIRCLE share: 3x3 convolutions of widths
    `features` x `multipliers`, strides 1 and 2 alternating, a norm after every convolution
    but the first (`norm` builds it from the channel count; None: no norm layer), and
    LeakyReLU(0.2); adaptive average pooling to `pool_size` per axis; then dense(16f) -
    LeakyReLU(0.2) - dense(1). Returns raw scores (N, 1)."""

    def __init__(self, *, in_channels: int, features: int, multipliers: Sequence[int],
                 norm: Callable[[int], nn.Module] | None, pool_size: int = 1, spatial_dims: int = 2) -> None:
        super().__init__()
        if features < 1 or pool_size < 1:
            raise ValueError(f"features and pool_size must be positive, got {features} and {pool_size}")
        layers: list[nn.Module] = []
        channels = in_channels
        for i, mult in enumerate(multipliers):
            out = features * mult
            layers.append(conv_layer(spatial_dims, channels, out, 3, stride=1 + i % 2))
            if i > 0 and norm is not None:
                layers.append(norm(out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            channels = out
        pool = (nn.AdaptiveAvgPool2d if spatial_dims == 2 else nn.AdaptiveAvgPool3d)(pool_size)
        self.features = nn.Sequential(*layers, pool, nn.Flatten())
        self.classifier = nn.Sequential(
            nn.Linear(channels * pool_size**spatial_dims, 16 * features), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(16 * features, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class SRGANDiscriminator(ConvCritic):
    """SRGAN's discriminator (Ledig et al. 2017, Fig. 4): eight 3x3 convs with features
    (f, f, 2f, 2f, 4f, 4f, 8f, 8f), strides alternating 1/2, LeakyReLU(0.2), BN after the
    first; then dense(16f) - LeakyReLU - dense(1).

    Choice: global average pooling before the dense layers, so any patch size works (the
    paper fixed 96x96 crops).
    """

    def __init__(self, *, in_channels: int = 1, features: int = 64, spatial_dims: int = 2, norm: str = "batch"):
        super().__init__(in_channels=in_channels, features=features, multipliers=(1, 1, 2, 2, 4, 4, 8, 8),
                         norm=lambda c: norm_layer(spatial_dims, c, norm), spatial_dims=spatial_dims)
