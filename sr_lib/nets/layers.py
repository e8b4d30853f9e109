"""Layer factories so one class serves 2D and 3D (the MONAI `spatial_dims` idea)."""

from __future__ import annotations

import torch
from torch import nn


def _check_dims(spatial_dims: int) -> None:
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")


def conv_layer(
    spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, bias: bool = True
) -> nn.Module:
    """A 'same'-padded convolution (for stride 1) in 2D or 3D."""
    _check_dims(spatial_dims)
    conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
    return conv(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=bias)


def norm_layer(spatial_dims: int, channels: int, kind: str = "batch") -> nn.Module:
    """Batch or instance normalisation in 2D or 3D; kind 'none' gives an identity."""
    _check_dims(spatial_dims)
    if kind == "batch":
        return (nn.BatchNorm2d if spatial_dims == 2 else nn.BatchNorm3d)(channels)
    if kind == "instance":
        return (nn.InstanceNorm2d if spatial_dims == 2 else nn.InstanceNorm3d)(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose batch, instance or none")


def zero_init(layer: nn.Module) -> nn.Module:
    """Zero a layer's weight and bias in place. On the last layer of a net whose output is
    added to the interpolated input, the net starts exactly at that interpolation."""
    with torch.no_grad():
        for name in ("weight", "bias"):
            if getattr(layer, name, None) is not None:
                getattr(layer, name).zero_()
    return layer
