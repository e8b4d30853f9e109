"""DCSRN, the densely connected super-resolution network (Chen et al. 2018), 3D as Chen et al.
built it and 2D as the 7T->9.4T paper used it. Tensors (N, C, H, W) or (N, C, X, Y, Z).
"""

from __future__ import annotations

import torch
from torch import nn

from sr_lib.nets.layers import conv_layer, norm_layer


class DenseUnit(nn.Module):
    """BN - ELU - 3x3 convolution to `growth` maps; the caller concatenates its output to its input."""

    def __init__(self, in_channels: int, growth: int, *, spatial_dims: int = 2, norm: str = "batch") -> None:
        super().__init__()
        self.body = nn.Sequential(norm_layer(spatial_dims, in_channels, norm), nn.ELU(inplace=False),
                                  conv_layer(spatial_dims, in_channels, growth, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class DCSRN(nn.Module):
    """A 3x3 convolution with `features` maps, one densely connected block of `num_units` units
    (BN - ELU - 3x3 conv with `growth` maps, each seeing the concatenation of every earlier
    map), then BN - ELU - 3x3 convolution to `out_channels`.

    The 7T->9.4T paper's words (Sec. 6.2): first layer kernel 3 with 24 filters, a block of 4
    units of BN, ELU and convolution with 24 more filters each, the earlier outputs
    concatenated at each unit's input, and a final convolution. So the output convolution
    reads `features + num_units * growth` maps (24 + 4 * 24 = 120). The BN - ELU before the
    output convolution is our reading (each unit's pre-activation form carried to the output
    layer): with it the 2D net has 53,977 parameters, exactly the paper's Table 2 count;
    without it, 240 fewer. Chen et al. 2018's first layer had 2 * growth maps; the 7T paper's
    24 is the default here. `spatial_dims=3` gives Chen et al.'s 3x3x3 form.
    """

    def __init__(self, *, in_channels: int = 1, out_channels: int = 1, features: int = 24, growth: int = 24,
                 num_units: int = 4, spatial_dims: int = 2, norm: str = "batch") -> None:
        super().__init__()
        if features < 1 or growth < 1 or num_units < 1:
            raise ValueError(f"DCSRN needs positive features, growth and num_units, got {features}, {growth}, {num_units}")
        self.head = conv_layer(spatial_dims, in_channels, features, 3)
        self.units = nn.ModuleList(
            DenseUnit(features + i * growth, growth, spatial_dims=spatial_dims, norm=norm) for i in range(num_units))
        self.block_channels = features + num_units * growth
        self.tail = nn.Sequential(norm_layer(spatial_dims, self.block_channels, norm), nn.ELU(inplace=False),
                                  conv_layer(spatial_dims, self.block_channels, out_channels, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(x)
        for unit in self.units:
            x = torch.cat([x, unit(x)], dim=1)
        return self.tail(x)
