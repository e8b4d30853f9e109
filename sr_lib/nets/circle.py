"""GAN-CIRCLE's nets (You et al. 2019; used for 2x MRI SR by Lyu et al. 2018): the generator
used for both G (LR -> HR) and F (HR -> LR), and the Wasserstein critic. 2D only, tensors
(N, C, H, W).
"""

from __future__ import annotations

import torch
from torch import nn

from sr_lib.nets.discriminators import ConvCritic


def decaying_widths(num_blocks: int = 12, first: int = 64, last: int = 16, gamma: float = 1.5) -> list[int]:
    """Filters of the feature-extraction blocks: from `first` down to `last` along
    ``int((first - last) * (1 - (i / (n - 1)) ** (1 / gamma)) + last)`` (the decay of
    DCSCN, Yamanaka et al. 2017, on which GAN-CIRCLE's generator is built). With the defaults
    it gives You et al. 2019's 64, 54, 48, 43, 39, 35, 31, 28, 25, 22, 18, 16."""
    if num_blocks < 1 or last < 1 or first < last:
        raise ValueError(f"need num_blocks >= 1 and first >= last >= 1, got {num_blocks}, {first}, {last}")
    if num_blocks == 1:
        return [first]
    return [int((first - last) * (1 - (i / (num_blocks - 1)) ** (1 / gamma)) + last) for i in range(num_blocks)]


def _block(in_channels: int, out_channels: int, kernel_size: int, slope: float, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
                         nn.LeakyReLU(slope, inplace=True), nn.Dropout(dropout))


class CircleGenerator(nn.Module):
    """GAN-CIRCLE's generator (You et al. 2019, Fig. 2; Lyu et al. 2018, Sec. II.2).

    Feature extraction: `num_blocks` (12) blocks of 3x3 convolution with bias, LeakyReLU
    (slope 0.1) and dropout, with `decaying_widths(num_blocks, features, min_features)`
    filters (64 ... 16 in the paper). Every block's output is kept and all are concatenated
    (the skip connections), which is the input of the reconstruction network: branch A is a
    1x1 convolution (`reconstruction[0]` filters, 64 in the authors' code); branch B a 1x1
    convolution (`reconstruction[1]`, 32) followed by a 3x3 convolution (`reconstruction[2]`,
    8), each with LeakyReLU and dropout ("network in network", as DCSCN; the authors' code
    leaves the last one linear). The two branches are
    concatenated; when `scale` > 1 a transposed convolution (kernel 2 * scale, stride scale,
    `upsample_features` filters, 32 in the paper) grows the grid; a final 3x3 convolution
    gives `out_channels` maps. The output is the residual: the caller adds the input (on the
    HR grid), as GAN-CIRCLE's residual learning does.

    `dropout` is the probability of dropping a unit (0.2 = DCSCN's keep rate 0.8).

    Weights are He-initialised for LeakyReLU(`negative_slope`), biases zero (DCSCN's
    initialisation; the authors' code uses He for the reconstruction layers). PyTorch's
    default initialisation shrinks the signal by about 6x per block, so the deep blocks start
    silent: with it a quick-profile G trained on L1 alone stayed at the input for 300 steps
    (validation 26.10 dB against the input's 26.0), with He it rose to 26.5 dB.
    """

    def __init__(self, *, in_channels: int = 1, out_channels: int = 1, features: int = 64, min_features: int = 16,
                 num_blocks: int = 12, reconstruction: tuple[int, int, int] = (64, 32, 8), upsample_features: int = 32,
                 scale: int = 1, dropout: float = 0.2, negative_slope: float = 0.1) -> None:
        super().__init__()
        if scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout is a probability in [0, 1), got {dropout}")
        if len(reconstruction) != 3 or min(reconstruction) < 1:
            raise ValueError(f"reconstruction needs three positive widths (A1, B1, B2), got {reconstruction}")
        self.widths = decaying_widths(num_blocks, features, min_features)
        blocks, channels = [], in_channels
        for width in self.widths:
            blocks.append(_block(channels, width, 3, negative_slope, dropout))
            channels = width
        self.blocks = nn.ModuleList(blocks)
        concatenated = sum(self.widths)
        a1, b1, b2 = reconstruction
        self.branch_a = _block(concatenated, a1, 1, negative_slope, dropout)
        self.branch_b = nn.Sequential(_block(concatenated, b1, 1, negative_slope, dropout),
                                      _block(b1, b2, 3, negative_slope, dropout))
        channels = a1 + b2
        if scale > 1:
            self.upsample: nn.Module = nn.Sequential(
                nn.ConvTranspose2d(channels, upsample_features, 2 * scale, stride=scale, padding=scale // 2),
                nn.LeakyReLU(negative_slope, inplace=True))
            channels = upsample_features
        else:
            self.upsample = nn.Identity()
        self.out = nn.Conv2d(channels, out_channels, 3, padding=1)
        for layer in self.modules():  # He initialisation, as DCSCN and the authors' reconstruction layers
            if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(layer.weight, a=negative_slope, nonlinearity="leaky_relu")
                nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = []
        for block in self.blocks:
            x = block(x)
            maps.append(x)
        features = torch.cat(maps, dim=1)
        recon = torch.cat([self.branch_a(features), self.branch_b(features)], dim=1)
        return self.out(self.upsample(recon))


class _InstanceNorm(nn.InstanceNorm2d):
    """Affine instance norm that passes a one-pixel map through unchanged (instance norm is
    undefined there; it happens only on patches of 16 pixels or fewer, e.g. the test profile)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] * x.shape[-2] == 1:
            return x
        return super().forward(x)


class CircleDiscriminator(ConvCritic):
    """GAN-CIRCLE's critic (You et al. 2019, Fig. 3; Lyu et al. 2018): 4 stages, each of two
    3x3 convolutions (bias, stride 1 then 2) with instance norm (affine; not after the first
    convolution) and LeakyReLU(0.2); filters (f, f, 2f, 2f, 4f, 4f, 8f, 8f), f = `features`
    (64). Then fully connected layers of 16f (1024) and 1 outputs with a LeakyReLU between; no
    sigmoid (a Wasserstein critic; instance norm, unlike batch norm, keeps the gradient
    penalty per sample).

    Any input size: the last map is average-pooled adaptively to `pool_size` x `pool_size`
    before the dense layers; with `pool_size` = patch edge / 16 that pooling is the identity
    on training patches.
    """

    def __init__(self, *, in_channels: int = 1, features: int = 64, pool_size: int = 4) -> None:
        super().__init__(in_channels=in_channels, features=features, multipliers=(1, 1, 2, 2, 4, 4, 8, 8),
                         norm=lambda c: _InstanceNorm(c, affine=True), pool_size=pool_size)
