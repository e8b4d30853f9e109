"""The 7T->9.4T paper's DCGAN-style image-to-image generators (its models 1-4) and a DCGAN
discriminator (Radford et al. 2016). 2D (N, C, H, W) and 3D (N, C, X, Y, Z).
"""

from __future__ import annotations

import torch
from torch import nn

from sr_lib.nets.layers import conv_layer, norm_layer
from sr_lib.nets.unet import pad_to_multiple

# name -> (hidden widths, hidden kernels, output kernel) at the paper's scale (first width 16
# for models 2 and 3). Models 2 and 3 reproduce Table 3's counts exactly (see DCGANGenerator).
DCGAN_GENERATORS: dict[str, tuple[tuple[int, ...], tuple[int, ...], int]] = {
    "model1": ((4, 8, 16, 32), (3, 3, 3, 3), 5),
    "model2": ((16, 64, 128, 196), (7, 5, 5, 3), 1),
    "model3": ((16, 64, 128, 128, 196), (7, 5, 5, 5, 3), 1),
}


class DCGANGenerator(nn.Module):
    """A stack of same-size convolutions, each hidden one followed by batch norm and ReLU (the
    DCGAN generator's blocks without its up-sampling), and a linear output convolution.

    `widths` / `kernels` give the hidden layers; `out_kernel` the output layer's kernel.
    `DCGANGenerator.paper(name)` builds the 7T->9.4T paper's generators (`DCGAN_GENERATORS`),
    scaled by `width_scale`:

    - "model2": 1 -> 16 (7x7) -> 64 (5x5) -> 128 (5x5) -> 196 (3x3) -> 1 (1x1). The paper: five
      layers, "196 filters at maximum", larger kernels than model 1 and "a 1x1 convolution
      layer in the end"; the widths and kernels are our reconstruction, the only ordered
      choice we found that also gives Table 3's 458,385 parameters exactly (with conv bias
      and BN).
    - "model3": model 2 with a sixth layer (128 maps, 5x5) -> 868,369 parameters, exactly
      Table 3's count for models 3 and 4 ("six convolution layers, larger kernel sizes, and
      more feature maps").
    - "model1": five layers, smaller than model 2; Table 3 gives 6,885 parameters but the
      layer sizes are lost. Ours: 4-8-16-32 maps with 3x3 kernels and a 5x5 output (7,065
      parameters; exactly 6,885 without the BN affine parameters and hidden biases).
    """

    def __init__(self, *, in_channels: int = 1, out_channels: int = 1, widths: tuple[int, ...] = (16, 64, 128, 196),
                 kernels: tuple[int, ...] = (7, 5, 5, 3), out_kernel: int = 1, spatial_dims: int = 2,
                 norm: str = "batch") -> None:
        super().__init__()
        if len(widths) != len(kernels) or not widths or min(widths) < 1 or any(k % 2 == 0 for k in (*kernels, out_kernel)):
            raise ValueError(f"need as many positive widths as odd kernels, got {widths} and {kernels} (+ {out_kernel})")
        layers: list[nn.Module] = []
        channels = in_channels
        for width, kernel in zip(widths, kernels):
            layers += [conv_layer(spatial_dims, channels, width, kernel), norm_layer(spatial_dims, width, norm),
                       nn.ReLU(inplace=True)]
            channels = width
        layers.append(conv_layer(spatial_dims, channels, out_channels, out_kernel))
        self.body = nn.Sequential(*layers)

    @classmethod
    def paper(cls, name: str, *, width_scale: float = 1.0, **kwargs) -> "DCGANGenerator":
        """The paper's generator `name` ("model1", "model2", "model3"), every width times
        `width_scale` (rounded, at least 1)."""
        if name not in DCGAN_GENERATORS:
            raise ValueError(f"unknown DCGAN generator {name!r}; choose one of {', '.join(DCGAN_GENERATORS)}")
        widths, kernels, out_kernel = DCGAN_GENERATORS[name]
        return cls(widths=tuple(max(round(w * width_scale), 1) for w in widths), kernels=kernels, out_kernel=out_kernel,
                   **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class DCGANDiscriminator(nn.Module):
    """Radford et al. 2016's discriminator: `num_layers` 4x4 convolutions of stride 2 with
    `features * 2^i` maps, batch norm after every one but the first, LeakyReLU(0.2); then
    global average pooling and a linear layer to one logit per image, (N, 1).

    Ours: the global average pooling (DCGAN flattens a fixed 4x4 map), so any input size
    works; inputs smaller than 2^num_layers per side are padded (edge replication) to it so
    that every layer has at least one output pixel. The 7T paper's discriminators are
    described only as changing with their generators (model 3's "more feature maps" and max
    pooling); their sizes are lost, so one form serves every model here.
    """

    def __init__(self, *, in_channels: int = 1, features: int = 32, num_layers: int = 4, spatial_dims: int = 2,
                 norm: str = "batch") -> None:
        super().__init__()
        if num_layers < 1 or features < 1:
            raise ValueError(f"need num_layers >= 1 and features >= 1, got {num_layers}, {features}")
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        layers: list[nn.Module] = []
        channels = in_channels
        for i in range(num_layers):
            width = features * 2 ** i
            layers.append(conv(channels, width, 4, stride=2, padding=1, bias=i == 0 or norm != "batch"))
            if i > 0:
                layers.append(norm_layer(spatial_dims, width, norm))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            channels = width
        pool = nn.AdaptiveAvgPool2d(1) if spatial_dims == 2 else nn.AdaptiveAvgPool3d(1)
        self.features = nn.Sequential(*layers, pool, nn.Flatten())
        self.classifier = nn.Linear(channels, 1)
        self.min_size = 2 ** num_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = pad_to_multiple(x, 1, minimum=self.min_size)
        return self.classifier(self.features(x))
