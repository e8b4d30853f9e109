"""The 7T->9.4T paper's two fully convolutional baselines (its Sec. 6.2, Fig. 3a-b): FCN 1 keeps
the image size in every layer, FCN 2 goes down with max pooling and back up with transposed
convolutions, without skip connections. 2D (N, C, H, W) and 3D (N, C, X, Y, Z).

The paper's Fig. 3 (kernel sizes and filter numbers) did not survive in the text we hold;
what is not in its words is our choice and says so.
"""

from __future__ import annotations

import torch
from torch import nn

from sr_lib.nets.layers import conv_layer, norm_layer
from sr_lib.nets.unet import pad_to_multiple


def _conv_block(spatial_dims: int, cin: int, cout: int, kernel_size: int, norm: str) -> list[nn.Module]:
    return [conv_layer(spatial_dims, cin, cout, kernel_size), norm_layer(spatial_dims, cout, norm), nn.ReLU(inplace=True)]


class FCN1(nn.Module):
    """FCN 1: `num_layers` (4) convolutions, each followed by batch norm and ReLU, all with
    `features` maps and the image size kept ("similar to Bahrami et al.": the paper's words),
    then a convolution to `out_channels`.

    Ours: `kernel_size` 5 and `features` 64 (the paper's Fig. 3a is lost; with these the 2D
    net has 311,169 parameters, near Table 2's 308,545, which no uniform width and kernel
    reproduces exactly); the output convolution has the same kernel.
    """

    def __init__(self, *, in_channels: int = 1, out_channels: int = 1, features: int = 64, num_layers: int = 4,
                 kernel_size: int = 5, spatial_dims: int = 2, norm: str = "batch") -> None:
        super().__init__()
        if num_layers < 1 or features < 1 or kernel_size % 2 == 0:
            raise ValueError(f"FCN1 needs num_layers >= 1, features >= 1 and an odd kernel, got {num_layers}, {features}, {kernel_size}")
        layers: list[nn.Module] = []
        for i in range(num_layers):
            layers += _conv_block(spatial_dims, in_channels if i == 0 else features, features, kernel_size, norm)
        layers.append(conv_layer(spatial_dims, features, out_channels, kernel_size))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class FCN2(nn.Module):
    """FCN 2: an encoder that halves the grid with 2x max pooling `levels` times and a decoder
    that doubles it back with 2x2 transposed convolutions of stride 2; no skip connections
    (the paper's distinction from a U-Net).

    Ours (Fig. 3b is lost): each encoder level is two 3x3 conv-BN-ReLU at `features * 2^i`
    maps, the bottleneck two more at `features * 2^levels`; each decoder level is the
    transposed convolution with BN-ReLU, then two 3x3 conv-BN-ReLU; a 1x1 convolution gives
    `out_channels`. With `features` 16 and 2 levels the 2D net has 105,969 parameters (the
    paper's Table 2: 155,681). Any input size: `forward` pads to a multiple of 2^levels
    (edge replication) and crops the output back.
    """

    def __init__(self, *, in_channels: int = 1, out_channels: int = 1, features: int = 16, levels: int = 2,
                 spatial_dims: int = 2, norm: str = "batch") -> None:
        super().__init__()
        if levels < 1 or features < 1:
            raise ValueError(f"FCN2 needs levels >= 1 and features >= 1, got {levels}, {features}")
        self.levels = levels
        pool = nn.MaxPool2d if spatial_dims == 2 else nn.MaxPool3d
        up = nn.ConvTranspose2d if spatial_dims == 2 else nn.ConvTranspose3d
        layers: list[nn.Module] = []
        channels = in_channels
        for i in range(levels):
            width = features * 2 ** i
            layers += _conv_block(spatial_dims, channels, width, 3, norm) + _conv_block(spatial_dims, width, width, 3, norm)
            layers.append(pool(2))
            channels = width
        width = features * 2 ** levels
        layers += _conv_block(spatial_dims, channels, width, 3, norm) + _conv_block(spatial_dims, width, width, 3, norm)
        channels = width
        for i in range(levels - 1, -1, -1):
            width = features * 2 ** i
            layers += [up(channels, width, 2, stride=2), norm_layer(spatial_dims, width, norm), nn.ReLU(inplace=True)]
            layers += _conv_block(spatial_dims, width, width, 3, norm) + _conv_block(spatial_dims, width, width, 3, norm)
            channels = width
        layers.append(conv_layer(spatial_dims, channels, out_channels, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, crop = pad_to_multiple(x, 2 ** self.levels)
        return self.body(x)[crop]
