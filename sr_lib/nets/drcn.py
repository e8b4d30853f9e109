"""DRCN (Kim et al., "Deeply-Recursive Convolutional Network for Image Super-Resolution",
CVPR 2016): one convolution applied recursively with shared weights, every recursion
reconstructed by one shared reconstruction net and supervised, the predictions averaged
with learned weights."""

from __future__ import annotations

import torch
from torch import nn

from sr_lib.nets.layers import conv_layer


class DRCN(nn.Module):
    """The paper's advanced model (its Fig. 3a): recursive supervision and skip connection.

    - Embedding net f1: two 3x3 conv + ReLU layers, `in_channels` -> `features` -> `features`.
    - Inference net f2: ONE 3x3 conv + ReLU, `features` -> `features`, applied `recursions`
      (D) times with the same weights: H_d = max(0, W * H_{d-1} + b), d = 1..D.
    - Reconstruction net f3, shared by all recursions: 3x3 conv + ReLU, then a 3x3 conv to
      `out_channels`; the skip connection adds the input x, so ŷ_d = x + f3(H_d).
    - Output: ŷ = sum_d w_d ŷ_d with D learned ensemble weights w_d.

    Input is the LR image already interpolated to the HR grid, (N, C, H, W) or
    (N, C, X, Y, Z). `forward` returns (ŷ, stacked ŷ_d of shape (D, N, C, ...)).

    Parameters in 2D with one channel and F features (`parameter_count`): (9F + F) for the
    first embedding conv, 3 (9F^2 + F) for the second embedding, the recursive and the first
    reconstruction conv, (9F + 1) for the last, and D ensemble weights. F = 256, D = 16:
    2,560 + 1,770,240 + 2,305 = 1,775,105 conv parameters + 16 = 1,775,121. The 1,774K that
    later papers list for DRCN (Tai et al. 2017, DRRN) is the 1,774,080 conv weights
    without biases (2,304 + 3 * 589,824 + 2,304); changing D changes only the D ensemble
    weights, since the recursion reuses one convolution.

    Initialisation (the paper, Sec. 4 as we read it): He et al. for the non-recursive
    convolutions; the recursive convolution zero except its self-connections (identity:
    the centre tap of channel c to channel c is 1), so at the start every recursion passes
    H_0 on unchanged; biases zero. The ensemble weights start at 1/D (the paper does not
    say; ours). The paper's second reconstruction layer has a ReLU; ours is linear,
    since with the skip connection it predicts a residual that must be able to go negative.
    """

    def __init__(self, *, in_channels: int = 1, out_channels: int = 1, features: int = 256, recursions: int = 16,
                 spatial_dims: int = 2) -> None:
        super().__init__()
        if features < 1 or recursions < 1:
            raise ValueError(f"DRCN needs features >= 1 and recursions >= 1, got {features} and {recursions}")
        if in_channels != out_channels:
            raise ValueError(f"the skip connection adds the input to the output, so in_channels ({in_channels}) "
                             f"must equal out_channels ({out_channels})")
        self.recursions = recursions
        self.embedding = nn.Sequential(
            conv_layer(spatial_dims, in_channels, features, 3), nn.ReLU(inplace=True),
            conv_layer(spatial_dims, features, features, 3), nn.ReLU(inplace=True),
        )
        self.recursive = conv_layer(spatial_dims, features, features, 3)
        self.reconstruction = nn.Sequential(
            conv_layer(spatial_dims, features, features, 3), nn.ReLU(inplace=True),
            conv_layer(spatial_dims, features, out_channels, 3),
        )
        self.ensemble = nn.Parameter(torch.full((recursions,), 1.0 / recursions))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He init for f1 and f3, identity for the recursive convolution, zero biases."""
        with torch.no_grad():
            for module in (*self.embedding, *self.reconstruction):
                if isinstance(module, (nn.Conv2d, nn.Conv3d)):
                    nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                    nn.init.zeros_(module.bias)
            weight = self.recursive.weight
            weight.zero_()
            centre = tuple(k // 2 for k in weight.shape[2:])
            for c in range(weight.shape[0]):
                weight[(c, c, *centre)] = 1.0
            nn.init.zeros_(self.recursive.bias)
            self.ensemble.fill_(1.0 / self.recursions)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, C, ...) -> (ŷ (N, C, ...), ŷ_d stacked (D, N, C, ...))."""
        hidden = self.embedding(x)
        predictions = []
        for _ in range(self.recursions):
            hidden = torch.relu(self.recursive(hidden))
            predictions.append(x + self.reconstruction(hidden))
        stacked = torch.stack(predictions)
        weights = self.ensemble.to(stacked.dtype).view(-1, *([1] * x.ndim))
        return (weights * stacked).sum(0), stacked


def parameter_count(*, in_channels: int = 1, features: int = 256, recursions: int = 16, spatial_dims: int = 2) -> int:
    """The hand count of `DRCN`'s parameters: k = 3^dims taps; conv (c_in -> c_out) has
    k c_in c_out weights + c_out biases; two embedding, one recursive and two reconstruction
    convolutions, plus D ensemble weights (the only term that grows with D)."""
    k, f, c = 3 ** spatial_dims, features, in_channels

    def conv(a: int, b: int) -> int:
        return k * a * b + b

    return conv(c, f) + conv(f, f) + conv(f, f) + conv(f, f) + conv(f, c) + recursions
