"""GAN-CPCE's nets: the conveying-path convolutional encoder-decoder (CPCE) generator and its
Wasserstein critic (Shan et al. 2018, CPCE-2D; used for 2x MRI SR by Lyu et al. 2018).
2D only, tensors (N, C, H, W).
"""

from __future__ import annotations

import torch
from torch import nn

from sr_lib.nets.discriminators import ConvCritic

PADDINGS = ("valid", "same")


class CPCE(nn.Module):
    """CPCE-2D (Shan et al. 2018; Lyu et al. 2018, Fig. 1): four 3x3 convolutions with
    `features` filters and ReLU, then three 3x3 transposed convolutions with `features`
    filters and one with `out_channels`; stride 1 throughout.

    Conveying paths: the output of transposed convolution k (k = 1, 2, 3) is concatenated
    with the output of convolution 4 - k (the map of the same size), passed through ReLU and
    a 1x1 convolution back to `features` maps, then ReLU, as in Shan et al.'s CPCE-2D.

    `padding='valid'` is Shan et al.'s form and our default: each unpadded 3x3 convolution
    trims one pixel per side and each unpadded stride-1 3x3 transposed convolution adds one
    back, so the four of each return exactly the input grid for any input of at least 9x9
    pixels, even or odd, and no zero padding enters the encoder. `padding='same'` pads every
    layer instead. `bias=False` as in Shan et al.'s code. `out_activation`: the final ReLU of
    the paper (images are non-negative); a residual use (output added to the input) turns it
    off so the net can subtract.
    """

    def __init__(self, *, in_channels: int = 1, out_channels: int = 1, features: int = 32, padding: str = "valid",
                 bias: bool = False, out_activation: bool = True) -> None:
        super().__init__()
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
        if features < 1:
            raise ValueError(f"features must be positive, got {features}")
        pad = 0 if padding == "valid" else 1
        self.padding = padding
        f = features
        self.encoder = nn.ModuleList(
            nn.Conv2d(in_channels if i == 0 else f, f, 3, padding=pad, bias=bias) for i in range(4))
        self.decoder = nn.ModuleList(
            nn.ConvTranspose2d(f, f, 3, padding=pad, bias=bias) for _ in range(3))
        self.conveying = nn.ModuleList(nn.Conv2d(2 * f, f, 1, bias=bias) for _ in range(3))
        self.out = nn.ConvTranspose2d(f, out_channels, 3, padding=pad, bias=bias)
        self.out_activation = out_activation
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == "valid" and min(x.shape[2:]) < 9:
            raise ValueError(f"CPCE with valid padding needs inputs of at least 9x9 pixels, got {tuple(x.shape[2:])}")
        skips = []
        for conv in self.encoder:
            x = self.relu(conv(x))
            skips.append(x)
        for k, (deconv, squeeze) in enumerate(zip(self.decoder, self.conveying)):
            x = torch.cat([deconv(x), skips[2 - k]], dim=1)  # conveying path from conv 3, 2, 1
            x = self.relu(squeeze(self.relu(x)))
        x = self.out(x)
        return self.relu(x) if self.out_activation else x


class CPCEDiscriminator(ConvCritic):
    """GAN-CPCE's critic (Lyu et al. 2018; Shan et al. 2018): six 3x3 convolutions with
    (f, f, 2f, 2f, 4f, 4f) filters, f = `features` (64 in the paper), strides 1 and 2
    alternating (stride 1 on the odd layers), 'same' padding, LeakyReLU(0.2) after each; then
    fully connected layers of 16f (1024) and 1 outputs with a LeakyReLU between. No sigmoid:
    a Wasserstein critic returns raw scores (N, 1).

    Any input size: the last feature map is average-pooled adaptively to `pool_size` x
    `pool_size` before the first dense layer. With `pool_size` = patch edge / 8 (8 for the
    paper's 64x64 patches) that pooling is the identity on training patches, so the critic
    is exactly the paper's there.
    """

    def __init__(self, *, in_channels: int = 1, features: int = 64, pool_size: int = 8) -> None:
        super().__init__(in_channels=in_channels, features=features, multipliers=(1, 1, 2, 2, 4, 4), norm=None,
                         pool_size=pool_size)
