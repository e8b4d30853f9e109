"""SRCNN (Dong et al., "Image super-resolution using deep convolutional networks", TPAMI 2016)."""

from __future__ import annotations

import torch
from torch import nn

from sr_lib.nets.layers import conv_layer


class SRCNN(nn.Module):
    """The 9-5-5 network: patch extraction (9x9, `features`), non-linear mapping (5x5,
    `features // 2`; the paper's 5x5 variant of its 1x1 layer) and reconstruction (5x5).

    Input is the LR image already interpolated to the HR grid, as in the paper. Choice:
    'same' zero padding keeps the size (the paper trained on valid convolutions), so a
    whole slice or volume goes through in one pass. `spatial_dims=3` gives 9x9x9-5x5x5-5x5x5.
    """

    def __init__(self, *, in_channels: int = 1, out_channels: int = 1, features: int = 64, spatial_dims: int = 2):
        super().__init__()
        self.body = nn.Sequential(
            conv_layer(spatial_dims, in_channels, features, 9),
            nn.ReLU(inplace=True),
            conv_layer(spatial_dims, features, features // 2, 5),
            nn.ReLU(inplace=True),
            conv_layer(spatial_dims, features // 2, out_channels, 5),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
