"""U-Net (Ronneberger et al. 2015) in the form of pix2pix's generator (Isola et al. 2017), used by
the 7T->9.4T paper's U-Net GAN and pix2pix models, and the padding helpers that let
down-sampling nets take any image size. 2D (N, C, H, W) and 3D (N, C, X, Y, Z).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sr_lib.nets.layers import norm_layer


def pad_to_multiple(x: torch.Tensor, multiple: int, *, minimum: int = 1) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Pad the spatial axes of `x` (replicating the edge) up to a multiple of `multiple` and at
    least `minimum`, split as evenly as possible before and after. Returns the padded tensor
    and the index that crops a same-sized output back to `x`'s extent."""
    pads: list[int] = []
    crop: list[slice] = [slice(None), slice(None)]
    for n in x.shape[2:]:
        target = max(-(-n // multiple) * multiple, -(-minimum // multiple) * multiple)
        before = (target - n) // 2
        pads.append((before, target - n - before))
        crop.append(slice(before, before + n))
    if any(b or a for b, a in pads):
        flat = [p for pair in reversed(pads) for p in pair]  # F.pad takes the last axis first
        x = F.pad(x, flat, mode="replicate")
    return x, tuple(crop)


def _conv(spatial_dims: int, transposed: bool, cin: int, cout: int, bias: bool) -> nn.Module:
    cls = {(2, False): nn.Conv2d, (3, False): nn.Conv3d, (2, True): nn.ConvTranspose2d, (3, True): nn.ConvTranspose3d}
    return cls[spatial_dims, transposed](cin, cout, 4, stride=2, padding=1, bias=bias)


class UNet(nn.Module):
    """pix2pix's U-Net generator (Isola et al. 2017, `UnetGenerator`), 2D or 3D.

    Encoder: `depth` 4x4 convolutions of stride 2 with `features * min(2^i, 8)` maps
    (C64-C128-C256-C512-C512-... for features 64); LeakyReLU(0.2) before every one but the
    first, normalisation after every one but the first and the innermost. Decoder: ReLU, a
    4x4 transposed convolution of stride 2, normalisation (not on the output); each decoder
    level sees its input concatenated with the encoder map of the same size (the skips).
    With batch norm only the output layer has a bias, as in pix2pix; `dropout` (pix2pix: 0.5)
    acts in the decoder levels whose maps are 8 * features wide on both sides.

    With features 16 and depth 6 (a 64x64 patch down to 1x1) the 2D net has 1,829,025
    parameters, exactly the 7T->9.4T paper's count for its U-Net models (Table 3), so that is
    pix2pix's generator with `ngf=16`, `num_downs=6`.

    Any input size works: `forward` pads each spatial axis (edge replication) to a multiple
    of 2^depth and crops the output back. The output is linear (pix2pix ends with tanh for
    images in [-1, 1]; ours are [0, 1] or a residual).
    """

    def __init__(self, *, in_channels: int = 1, out_channels: int = 1, features: int = 64, depth: int = 8,
                 spatial_dims: int = 2, norm: str = "batch", dropout: float = 0.0) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"UNet depth must be at least 2, got {depth}")
        if features < 1:
            raise ValueError(f"features must be positive, got {features}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout is a probability in [0, 1), got {dropout}")
        self.depth, self.spatial_dims = depth, spatial_dims
        norm_layer(spatial_dims, 1, norm)  # validates dims and norm
        bias = norm != "batch"
        widths = [features * min(2 ** i, 8) for i in range(depth)]
        self.down = nn.ModuleList()
        for i, width in enumerate(widths):
            layers: list[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2)]
            layers.append(_conv(spatial_dims, False, in_channels if i == 0 else widths[i - 1], width, bias=bias))
            if 0 < i < depth - 1:
                layers.append(norm_layer(spatial_dims, width, norm))
            self.down.append(nn.Sequential(*layers))
        ups: list[nn.Module] = []
        for i, width in enumerate(widths):
            cin = width if i == depth - 1 else 2 * width
            if i == 0:
                layers = [nn.ReLU(), _conv(spatial_dims, True, cin, out_channels, bias=True)]
            else:
                layers = [nn.ReLU(), _conv(spatial_dims, True, cin, widths[i - 1], bias=bias), norm_layer(spatial_dims, widths[i - 1], norm)]
                if dropout and widths[i - 1] == 8 * features and i < depth - 1:
                    layers.append(nn.Dropout(dropout))
            ups.append(nn.Sequential(*layers))
        self.up = nn.ModuleList(reversed(ups))  # in forward order, innermost first: the output layer is registered last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, crop = pad_to_multiple(x, 2 ** self.depth)
        skips = []
        for down in self.down:
            x = down(x)
            skips.append(x)
        y = self.up[0](skips[-1])
        for up, skip in zip(self.up[1:], reversed(skips[:-1])):
            y = up(torch.cat([skip, y], dim=1))
        return y[crop]
