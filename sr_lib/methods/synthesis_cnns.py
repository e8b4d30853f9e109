"""The 7T->9.4T paper's supervised CNN baselines (its Sec. 6.2 and Table 2) as workbench methods:
FCN 1, FCN 2, DCSRN (Chen et al. 2018) and a U-Net (Ronneberger et al. 2015) trained alone,
plus the DCSRN loss ablation of Table 2 as presets.

All four are `PairedNetMethod`s: the generator sees the LR input interpolated onto the HR grid
(the `bicubic` row's kernel; on same-grid scenarios the input itself), and trains on the
reconstruction losses of `PairedOptions` (no discriminator). What the paper fixes and what
we chose is listed in each class's docstring. The paper (cited as "the 7T->9.4T paper"; its
authors are not established, see `sr_lib.papers`) trained every CNN with Adam, batch 32, lr
1e-3, on 64x64 patches; the workbench's profile sets steps, batch, learning rate and patch
size instead, and the profile's `features` caps every width (the paper's widths in `quick`
and `full`, smaller in `test`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from torch import nn

from sr_lib.methods.base import Support, Task, preset
from sr_lib.methods.paired import PairedNetMethod, PairedOptions
from sr_lib.nets import DCSRN, FCN1, FCN2, UNet
from sr_lib.profiles import Profile

NORMS = ("batch", "instance", "none")


def check_net_options(options: Any, *widths: str) -> None:
    """Shared checks: a known `norm` and positive widths."""
    if options.norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {options.norm!r}")
    for name in widths:
        if getattr(options, name) < 1:
            raise ValueError(f"{name} must be positive, got {getattr(options, name)}")


def unet_depth(depth: int | None, task: Task, profile: Profile) -> int:
    """`depth`, or when None the paper's form: halve the training patch down to 1 px (its
    64 px patches -> 6 levels), at most 6 levels and at least 2."""
    if depth is not None:
        return depth
    patch = profile.patch_size if task.spatial_dims == 2 else profile.patch_size_3d
    return max(2, min(6, int(math.log2(patch))))


@dataclasses.dataclass(frozen=True)
class FCN1Options(PairedOptions):
    """Paper's: MSE (`l2` 1, `l1` 0; its Fig. 6 trains the FCNs with L2), batch norm.
    Ours: `features` 64 and `kernel_size` 5 (the paper's Fig. 3a is lost), capped by the
    profile's `features` (8 in `test`, 32 in `quick`); `residual` (see `FCN1Method`)."""

    l1: float = 0.0
    l2: float = 1.0
    features: int = 64
    kernel_size: int = 5
    norm: str = "batch"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_net_options(self, "features")
        if self.kernel_size % 2 == 0 or self.kernel_size < 1:
            raise ValueError(f"kernel_size must be odd and positive, got {self.kernel_size}")

    @classmethod
    def profile_defaults(cls, profile: Profile) -> dict[str, Any]:
        return {**super().profile_defaults(profile), "features": min(64, profile.features)}


class FCN1Method(PairedNetMethod):
    """FCN 1 (the 7T->9.4T paper, Sec. 6.2, "similar to Bahrami et al."): four convolutions,
    each followed by batch norm and ReLU, the image size kept throughout, then an output
    convolution; trained with MSE.

    Paper's: the four conv-BN-ReLU layers at one size, the MSE loss. Ours: 64 maps of 5x5
    (311,169 parameters in 2D against Table 2's 308,545; the figure with the real sizes is
    lost); `residual=True` adds the interpolated input to the output (the paper generates
    the image directly, `residual=False`), which lets a short CPU run start from the
    baseline instead of from a blank image; `norm` can drop batch norm (the paper's is
    "batch"). 2D (the paper) and 3D (5x5x5 kernels; mind the cost).
    """

    name = "fcn1"
    summary = "FCN 1: 4 same-size conv-BN-ReLU layers + output conv, MSE (7T->9.4T paper)"
    Options = FCN1Options
    support = Support(dims=(2, 3))

    def build_generator(self) -> nn.Module:
        o = self.options
        return FCN1(features=o.features, kernel_size=o.kernel_size, spatial_dims=self.task.spatial_dims, norm=o.norm)


@dataclasses.dataclass(frozen=True)
class FCN2Options(PairedOptions):
    """Paper's: MSE (`l2` 1, `l1` 0), max pooling down, transposed convolutions up, no skips.
    Ours: `features` 16 and `levels` 2 (Fig. 3b is lost), capped by the profile's `features`;
    `zero_init` True, chosen on validation (quick profile, kspace-2x T2, seed 0; the input
    scores ~26.0 dB there): without it the best validation PSNR in 600 steps was 25.99 dB,
    below the input, as the bottleneck without skips first has to learn to pass the image
    through; with it, 28.03 dB (still rising)."""

    l1: float = 0.0
    l2: float = 1.0
    features: int = 16
    levels: int = 2
    norm: str = "batch"
    zero_init: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_net_options(self, "features", "levels")

    @classmethod
    def profile_defaults(cls, profile: Profile) -> dict[str, Any]:
        return {**super().profile_defaults(profile), "features": min(16, profile.features)}


class FCN2Method(PairedNetMethod):
    """FCN 2 (the 7T->9.4T paper, Sec. 6.2): down-sampling with max pooling, up-sampling with
    transposed convolutions back to the input size, and no connections between encoder and
    decoder (unlike a U-Net); trained with MSE.

    Paper's: that structure and the loss. Ours: two levels of two 3x3 conv-BN-ReLU each,
    16 maps doubling per level (105,969 parameters in 2D; Table 2: 155,681, Fig. 3b lost);
    `residual=True` as for `fcn1` (the paper's form is `residual=False`). Any image size
    (the net pads to a multiple of 4 and crops back). 2D and 3D.
    """

    name = "fcn2"
    summary = "FCN 2: max-pool encoder, transposed-conv decoder, no skips, MSE (7T->9.4T paper)"
    Options = FCN2Options
    support = Support(dims=(2, 3))

    def build_generator(self) -> nn.Module:
        o = self.options
        return FCN2(features=o.features, levels=o.levels, spatial_dims=self.task.spatial_dims, norm=o.norm)


@dataclasses.dataclass(frozen=True)
class DCSRNOptions(PairedOptions):
    """Paper's (the 7T paper's DCSRN, after Chen et al. 2018): `features` 24 (first conv),
    `growth` 24, `num_units` 4, batch norm, and L1 (`l1` 1), its best loss in Table 2 (the
    presets `dcsrn-l2` and `dcsrn-perceptual` are the other two rows). The profile caps
    `features` and `growth` (8 in `test`)."""

    l1: float = 1.0
    features: int = 24
    growth: int = 24
    num_units: int = 4
    norm: str = "batch"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_net_options(self, "features", "growth", "num_units")

    @classmethod
    def profile_defaults(cls, profile: Profile) -> dict[str, Any]:
        width = min(24, profile.features)
        return {**super().profile_defaults(profile), "features": width, "growth": width}


class DCSRNMethod(PairedNetMethod):
    """DCSRN (Chen et al. 2018) as the 7T->9.4T paper ran it (Sec. 6.2, Table 2): a 3x3
    convolution with 24 filters, one densely connected block of 4 BN-ELU-conv units of growth
    24, and an output convolution (see `sr_lib.nets.DCSRN`; our BN-ELU before the output
    convolution makes the 2D net exactly Table 2's 53,977 parameters).

    Paper's: the net, L1 as the default loss (Table 2: L1 beat L2 and the VGG-16 perceptual
    loss on PSNR, MSE and SSIM). Ours: `residual=True` (the paper generates the image
    directly, `residual=False`): on the validation subject (quick profile, kspace-2x T2, one
    seed) the best validation PSNR in 600 steps was 27.83 dB with it and 27.42 dB without
    (the input itself: 26.02 dB), test brains 26.78 vs 26.60 dB (input 24.49 dB); the perceptual preset's features come from a VGG-16 weights
    file when the user gives one, else the workbench's MRI feature net (`sr_lib.perceptual`),
    and VGG's inputs are normalised with ImageNet statistics where the paper standardised each
    image. 2D as in the 7T paper and 3D (3x3x3) as in Chen et al. 2018.
    """

    name = "dcsrn"
    summary = "DCSRN: conv 24 + dense block of 4 BN-ELU-conv units (growth 24), L1 (Chen et al. 2018; 7T->9.4T paper)"
    Options = DCSRNOptions
    support = Support(dims=(2, 3))

    def build_generator(self) -> nn.Module:
        o = self.options
        return DCSRN(features=o.features, growth=o.growth, num_units=o.num_units, spatial_dims=self.task.spatial_dims,
                     norm=o.norm)


@dataclasses.dataclass(frozen=True)
class UNetOptions(PairedOptions):
    """`features` 16 and depth 6 at 64 px patches are the 7T paper's U-Net generator (its
    models 5-11); `depth` None halves the training patch to 1 px, at most 6 levels. `l1` 1 is
    ours (the paper has no U-Net CNN; L1 was its best loss everywhere). `dropout` 0 is ours
    (pix2pix: 0.5). `zero_init` True is ours (see `UNetGANMethod`). The profile caps
    `features` (8 in `test`)."""

    l1: float = 1.0
    zero_init: bool = True
    features: int = 16
    depth: int | None = None
    dropout: float = 0.0
    norm: str = "batch"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_net_options(self, "features")
        if self.depth is not None and self.depth < 2:
            raise ValueError(f"depth must be at least 2 (or None for the profile's), got {self.depth}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout is a probability in [0, 1), got {self.dropout}")

    @classmethod
    def profile_defaults(cls, profile: Profile) -> dict[str, Any]:
        return {**super().profile_defaults(profile), "features": min(16, profile.features)}


def build_unet(method: PairedNetMethod) -> UNet:
    """The U-Net generator of a method whose options have features, depth, dropout and norm."""
    o = method.options
    return UNet(features=o.features, depth=unet_depth(o.depth, method.task, method.profile),
                spatial_dims=method.task.spatial_dims, norm=o.norm, dropout=o.dropout)


class UNetMethod(PairedNetMethod):
    """The 7T->9.4T paper's U-Net generator (pix2pix's, Isola et al. 2017: 4x4 stride-2
    convolutions, skip concatenations, `ngf` 16, 6 levels at 64 px) trained alone with L1:
    the CNN counterpart of its U-Net GAN, which the paper lacked ("the network architecture
    used for the GAN generator is not consistent with any of our CNN architectures").

    Ours: the method itself (not a row of the paper), L1, `residual=True` with `zero_init`
    (the output layer zeroed, so training starts at the interpolated input; the paper's GAN
    generators produce the image directly: `residual=False`; why, see `UNetGANMethod`), the
    depth from the training patch when `depth` is None. Any image size (padding inside the
    net). 2D and 3D. On the validation subject (quick profile, kspace-2x T2, one seed, 600
    steps): validation PSNR 27.10 dB (input 26.02 dB), test brains 25.57 dB (input 24.49 dB).
    """

    name = "unet"
    summary = "U-Net (pix2pix's generator, ngf 16) trained alone with L1 (7T->9.4T paper's GAN generator)"
    Options = UNetOptions
    support = Support(dims=(2, 3))

    def build_generator(self) -> nn.Module:
        return build_unet(self)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "unet_depth": self.nets["generator"].depth}


PRESETS = (
    preset(DCSRNMethod, "dcsrn-l1", "7T Table 2: DCSRN with L1 loss (the paper's best CNN)", l1=1.0, l2=0.0, perceptual=0.0),
    preset(DCSRNMethod, "dcsrn-l2", "7T Table 2: DCSRN with L2 (MSE) loss", l1=0.0, l2=1.0, perceptual=0.0),
    preset(DCSRNMethod, "dcsrn-perceptual",
           "7T Table 2: DCSRN with the perceptual loss alone (L1 on VGG-16 relu1_2, 2_2, 3_3, 4_3)",
           l1=0.0, l2=0.0, perceptual=1.0),
)
