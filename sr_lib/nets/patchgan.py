"""pix2pix's PatchGAN discriminator (Isola et al. 2017), 2D (N, C, H, W) and 3D (N, C, X, Y, Z)."""

from __future__ import annotations

import torch
from torch import nn

from sr_lib.nets.layers import norm_layer
from sr_lib.nets.unet import pad_to_multiple


def _output_size(n: int, strides: list[int]) -> int:
    for stride in strides:
        n = (n + 2 - 4) // stride + 1
    return n


class PatchGAN(nn.Module):
    """The 70x70 PatchGAN (pix2pix's `NLayerDiscriminator` with `n_layers=3`): C64-C128-C256-C512
    for `features` 64, 4x4 convolutions with padding 1, stride 2 except the last two (C512 and
    the output convolution), no normalisation on C64, LeakyReLU(0.2); then a 4x4 convolution to
    one channel. The output is a map of logits, one per overlapping input patch: (N, 1, h, w).

    Each output logit sees a 70x70 patch of the input: the receptive field is 70 px for
    `num_layers` 3 (4 -> 7 -> 16 -> 34 -> 70 going back through the layers; the tests measure
    it by the gradient of one output pixel). `in_channels` 2: the conditional discriminator judges the
    input stacked with the real or generated image, as pix2pix. Inputs too small for a
    1x1 output (under 24 px per side for 3 layers) are padded (edge replication) up to that
    size (ours; pix2pix trains on 256 px). Convolutions before batch norm have no bias.
    """

    def __init__(self, *, in_channels: int = 2, features: int = 64, num_layers: int = 3, spatial_dims: int = 2,
                 norm: str = "batch") -> None:
        super().__init__()
        if num_layers < 1 or features < 1:
            raise ValueError(f"need num_layers >= 1 and features >= 1, got {num_layers}, {features}")
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        bias = norm != "batch"
        layers: list[nn.Module] = [conv(in_channels, features, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        channels = features
        strides = [2] * num_layers + [1, 1]
        for i in range(1, num_layers + 1):
            width = features * min(2 ** i, 8)
            layers += [conv(channels, width, 4, stride=strides[i], padding=1, bias=bias), norm_layer(spatial_dims, width, norm),
                       nn.LeakyReLU(0.2, inplace=True)]
            channels = width
        layers.append(conv(channels, 1, 4, stride=1, padding=1))
        self.body = nn.Sequential(*layers)
        self.min_size = next(n for n in range(1, 4096) if _output_size(n, strides) >= 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = pad_to_multiple(x, 1, minimum=self.min_size)
        return self.body(x)
