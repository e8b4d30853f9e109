"""SRResNet (Ledig et al., "Photo-realistic single image super-resolution using a GAN", CVPR 2017)."""

from __future__ import annotations

import math

import torch
from torch import nn

from sr_lib.nets.layers import conv_layer, norm_layer


class ResidualBlock(nn.Module):
    """conv-BN-PReLU-conv-BN with an identity skip (SRGAN Fig. 4)."""

    def __init__(self, features: int, *, spatial_dims: int = 2, norm: str = "batch"):
        super().__init__()
        self.body = nn.Sequential(
            conv_layer(spatial_dims, features, features, 3),
            norm_layer(spatial_dims, features, norm),
            nn.PReLU(features),
            conv_layer(spatial_dims, features, features, 3),
            norm_layer(spatial_dims, features, norm),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SRResNet(nn.Module):
    """The SRGAN generator: 9x9 conv + PReLU, `num_blocks` residual blocks, conv-BN with a long
    skip, then one (conv, pixel shuffle x2, PReLU) stage per factor 2 of `scale`, and a 9x9 conv.

    `scale=1` (same-grid scenarios such as GAN-CPCE's k-space truncation) drops the
    upsampling stages. Pixel shuffle exists in 2D only, so `spatial_dims=3` needs `scale=1`.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        out_channels: int = 1,
        features: int = 64,
        num_blocks: int = 16,
        scale: int = 4,
        spatial_dims: int = 2,
        norm: str = "batch",
    ):
        super().__init__()
        if scale < 1 or scale & (scale - 1):
            raise ValueError(f"SRResNet scale must be a power of two, got {scale}")
        if spatial_dims == 3 and scale != 1:
            raise ValueError("SRResNet upsamples with pixel shuffle, which is 2D only; use scale=1 in 3D")
        self.head = nn.Sequential(conv_layer(spatial_dims, in_channels, features, 9), nn.PReLU(features))
        self.blocks = nn.Sequential(*[ResidualBlock(features, spatial_dims=spatial_dims, norm=norm) for _ in range(num_blocks)])
        self.fuse = nn.Sequential(conv_layer(spatial_dims, features, features, 3), norm_layer(spatial_dims, features, norm))
        upsample: list[nn.Module] = []
        for _ in range(int(math.log2(scale))):
            upsample += [conv_layer(spatial_dims, features, features * 4, 3), nn.PixelShuffle(2), nn.PReLU(features)]
        self.upsample = nn.Sequential(*upsample)
        self.tail = conv_layer(spatial_dims, features, out_channels, 9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = self.head(x)
        features = head + self.fuse(self.blocks(head))
        return self.tail(self.upsample(features))
