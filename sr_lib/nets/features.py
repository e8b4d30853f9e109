"""Feature networks for perceptual (content) and texture losses.

`VGGFeatures` has torchvision's `vgg16().features` / `vgg19().features` layout, so a torchvision state dict
(`features.0.weight`, ...) saved by the user loads into it; nothing is downloaded.
`MRIFeatureNet` is the fallback the workbench trains itself on MRI (see
`sr_lib.perceptual`). Both map a 1-channel image in [0, 1] to named feature maps.
"""

from __future__ import annotations

import torch
from torch import nn

from sr_lib.nets.layers import conv_layer

_VGG_CONFIGS: dict[str, tuple[int | str, ...]] = {
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


def _vgg_layer_names(config: tuple[int | str, ...]) -> dict[str, int]:
    """Map 'relu3_1'-style names to indices in torchvision's `features` Sequential."""
    names, block, conv, index = {}, 1, 1, 0
    for item in config:
        if item == "M":
            block, conv, index = block + 1, 1, index + 1
        else:
            names[f"relu{block}_{conv}"] = index + 1
            conv, index = conv + 1, index + 2
    return names


VGG_LAYERS: dict[str, dict[str, int]] = {variant: _vgg_layer_names(config) for variant, config in _VGG_CONFIGS.items()}
VGG19_LAYERS = VGG_LAYERS["vgg19"]


class VGGFeatures(nn.Module):
    """VGG-16 or VGG-19's convolutional part (Simonyan & Zisserman 2015) returning chosen ReLU
    outputs ('relu4_3'-style names; VGG-16's relu1_2, relu2_2, relu3_3, relu4_3 are the
    7T->9.4T paper's "layers 4, 9, 16, 23", VGG-19's relu5_4 is SRGAN's VGG54 and the
    16th conv layer of GAN-CPCE).

    Grey input is repeated to three channels and normalised with the ImageNet statistics
    that torchvision's weights expect. Weights are frozen.
    """

    def __init__(self, layers: tuple[str, ...] = ("relu5_4",), *, variant: str = "vgg19"):
        super().__init__()
        if variant not in VGG_LAYERS:
            raise ValueError(f"unknown VGG variant {variant!r}; choose {' or '.join(VGG_LAYERS)}")
        names = VGG_LAYERS[variant]
        unknown = [name for name in layers if name not in names]
        if unknown:
            raise ValueError(f"unknown {variant} layers {unknown}; choose from {sorted(names)}")
        modules: list[nn.Module] = []
        channels = 3
        for item in _VGG_CONFIGS[variant]:
            if item == "M":
                modules.append(nn.MaxPool2d(2, 2))
            else:
                modules += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU(inplace=False)]
                channels = int(item)
        self.variant = variant
        self.layers = tuple(layers)
        self._indices = {names[name]: name for name in layers}
        self.features = nn.Sequential(*modules[: max(self._indices) + 1])
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.requires_grad_(False)

    def load_torchvision(self, path: str) -> "VGGFeatures":
        """Load `features.*` weights from a torchvision VGG state-dict file (weights_only)."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        wanted = {k: v for k, v in state.items() if k.startswith("features.")}
        own = self.state_dict()
        missing = [k for k in own if k.startswith("features.") and k not in wanted]
        wrong = [k for k in own if k in wanted and wanted[k].shape != own[k].shape]
        if missing or wrong:
            raise ValueError(f"{path}: not a torchvision {self.variant} state dict ({'missing' if missing else 'wrong shape of'} {(missing or wrong)[0]})")
        self.load_state_dict({**own, **{k: wanted[k] for k in own if k in wanted}})
        return self

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.ndim != 4:
            raise ValueError(f"VGGFeatures takes (N, C, H, W) images, got shape {tuple(x.shape)}")
        x = (x.expand(-1, 3, -1, -1) - self.mean) / self.std
        out: dict[str, torch.Tensor] = {}
        for i, module in enumerate(self.features):
            x = module(x)
            if i in self._indices:
                out[self._indices[i]] = x
        return out


class VGG19Features(VGGFeatures):
    """`VGGFeatures` with `variant="vgg19"`."""

    def __init__(self, layers: tuple[str, ...] = ("relu5_4",)):
        super().__init__(layers, variant="vgg19")


class MRIFeatureNet(nn.Module):
    """A small three-stage conv encoder (f, 2f, 4f features; stride 2 between stages) plus a
    light decoder used only to train it as a denoising autoencoder on MRI patches.

    `forward` returns the encoder's stage outputs ('stage1'..'stage3') like VGG's ReLU
    layers; `reconstruct` runs the decoder too (training only).
    """

    layer_names = ("stage1", "stage2", "stage3")

    def __init__(self, *, in_channels: int = 1, features: int = 16, spatial_dims: int = 2):
        super().__init__()
        f = features

        def stage(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(
                conv_layer(spatial_dims, cin, cout, 3, stride=stride), nn.ReLU(),
                conv_layer(spatial_dims, cout, cout, 3), nn.ReLU(),
            )

        self.stages = nn.ModuleList([stage(in_channels, f, 1), stage(f, 2 * f, 2), stage(2 * f, 4 * f, 2)])
        mode = "bilinear" if spatial_dims == 2 else "trilinear"
        self.decoder = nn.Sequential(
            nn.Upsample(scale_factor=4, mode=mode, align_corners=False),
            conv_layer(spatial_dims, 4 * f, f, 3), nn.ReLU(),
            conv_layer(spatial_dims, f, in_channels, 3),
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for name, stage in zip(self.layer_names, self.stages):
            x = stage(x)
            out[name] = x
        return out

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.forward(x)["stage3"])
