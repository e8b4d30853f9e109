"""The 7T->9.4T paper's GANs (its Sec. 6.3-6.4, Tables 1 and 3) as workbench methods: DCGAN-style
generators against a DCGAN discriminator (Radford et al. 2016; models 1-4), the U-Net generator
against the same discriminator (models 5-8, model 6 with a sharpening kernel), and pix2pix
(Isola et al. 2017: U-Net + PatchGAN; models 9-11); the eleven models are presets `7t-m1` ...
`7t-m11`.

What the paper fixes: BCE adversarial loss (its Eq. 1-2, with D's loss halved), generator loss
lambda1 BCE + lambda2 L1-or-L2 + lambda3 gradient difference + lambda4 perceptual (Eq. 5),
Adam, batch 32, 30 epochs, 64x64 patches, direct generation of the image (it tried residual
learning and found it blurrier), and per model which loss terms are on (Sec. 7.3). What is
lost: its Table 1 (the lambdas, learning rates) and Fig. 13 (layer sizes), so every weight
below that pix2pix does not fix is ours and says so. Common choices (ours): the
discriminator joins after a `warmup` of 25% of the step cap, and an adversarial weight of
1e-3 against L1 weight 1 (SRGAN's ratio) where pix2pix's 1 : 100 does not apply, so the
reconstruction term dominates and the GANs stay above the interpolation baseline in PSNR;
`residual=True` adds the interpolated input to the generator's output (the paper's form is
`residual=False`), so short CPU runs start from the baseline. Adam betas (0.5, 0.999) as
DCGAN and pix2pix (`PairedNetMethod`). 2D only, as the paper (slice-wise).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sr_lib.methods.base import Support, preset
from sr_lib.methods.paired import PairedNetMethod, PairedOptions
from sr_lib.methods.synthesis_cnns import UNetOptions, build_unet, check_net_options
from sr_lib.nets import DCGANDiscriminator, DCGANGenerator, PatchGAN
from sr_lib.nets.dcgan import DCGAN_GENERATORS
from sr_lib.profiles import Profile


def sharpening_kernel(spatial_dims: int = 2) -> torch.Tensor:
    """The fixed sharpening kernel of model 6 (ours: the paper's two kernels are lost from
    the text; it says only that they weight the centre up and the border down and sum to 1).
    2D: [[0, -1, 0], [-1, 5, -1], [0, -1, 0]], the identity minus the 4-neighbour Laplacian;
    3D: 7 at the centre, -1 on the six face neighbours."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    kernel = torch.zeros((3,) * spatial_dims)
    centre = (1,) * spatial_dims
    kernel[centre] = 1 + 2 * spatial_dims
    for axis in range(spatial_dims):
        for side in (0, 2):
            index = list(centre)
            index[axis] = side
            kernel[tuple(index)] = -1
    return kernel


def sharpen(x: torch.Tensor) -> torch.Tensor:
    """Convolve each channel of a (N, C, ...) batch with `sharpening_kernel`, the edges
    replicated: a constant image stays as it is (the kernel sums to 1), a step overshoots."""
    spatial_dims = x.ndim - 2
    channels = x.shape[1]
    kernel = sharpening_kernel(spatial_dims).to(x)[None, None].expand(channels, 1, *(3,) * spatial_dims)
    padded = F.pad(x, [1] * (2 * spatial_dims), mode="replicate")
    conv = F.conv2d if spatial_dims == 2 else F.conv3d
    return conv(padded, kernel, groups=channels)


# ----------------------------------------------------------------------------- DCGAN (models 1-4)


@dataclasses.dataclass(frozen=True)
class DCGANOptions(PairedOptions):
    """Paper's: BCE adversarial loss, L1 reconstruction (model 2, the best DCGAN of Table 3,
    is this method's default: `architecture` "model2", `gradient` 0); models 1 and 4 add
    the gradient difference loss (presets). Ours: `adversarial_weight` 1e-3 with `l1` 1,
    `gradient` `GRADIENT_WEIGHT` (10) where on, `warmup` 0.25, `discriminator_features` 32, and `features`, the
    width of model 2/3's first layer (16 in the paper; every layer scales with it): the
    paper's 16 at `full`, a quarter of it (4) at `quick` and 2 at `test`. Model 1 keeps the
    paper's widths in every profile (7,065 parameters, under a CPU minute per quick run; a
    quarter of it has 1-8 maps).

    `zero_init` True (ours, chosen on validation; quick, kspace-2x T2, seed 0, where the
    input scores 26.0 dB): the generators add their output to the input (`residual`), and
    with a randomly initialised last layer they start far below it (model 1: 19.4 dB at step
    100) and spend the step cap climbing back (model 1: 25.6 dB at step 600, test brains
    24.31 dB against the input's 24.49 over 2 seeds). With the last layer zeroed, model 1
    starts at the input and reaches 29.23 dB on validation (28.28 dB on the test brains).
    """

    adversarial: str = "bce"
    adversarial_weight: float = 1e-3
    warmup: float = 0.25
    l1: float = 1.0
    gradient: float = 0.0
    zero_init: bool = True
    architecture: str = "model2"
    features: int = 16
    discriminator_features: int = 32
    norm: str = "batch"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_net_options(self, "features", "discriminator_features")
        if self.architecture not in DCGAN_GENERATORS:
            raise ValueError(f"architecture must be one of {', '.join(DCGAN_GENERATORS)}, got {self.architecture!r}")

    @classmethod
    def profile_defaults(cls, profile: Profile) -> dict[str, Any]:
        # the paper's widths at `full`; a quarter at `quick`: at half width models 2-4 took
        # 5-9 CPU minutes per 600 steps, which a 60-minute report cannot hold for 2 seeds
        return {**super().profile_defaults(profile),
                "features": 16 if profile.paper_sized else max(profile.features // 8, 2),
                "discriminator_features": min(32, profile.features)}


class DCGANMethod(PairedNetMethod):
    """The 7T->9.4T paper's DCGAN models (Sec. 6.3): a generator of 5-6 same-size
    convolutions with batch norm against a DCGAN discriminator, BCE + L1 (+ gradient
    difference for models 1 and 4).

    Generators (`sr_lib.nets.DCGANGenerator`): "model1" five layers (sizes lost; ours
    4-8-16-32, 3x3); "model2" 16-64-128-196 maps with 7-5-5-3 kernels and a final 1x1
    convolution; "model3" (models 3 and 4) one more 128-map 5x5 layer. Models 2 and 3 are our
    reconstruction from the text's hints, and match Table 3's parameter counts exactly.
    Discriminator (`DCGANDiscriminator`): four stride-2 4x4 convolutions, BN, LeakyReLU 0.2,
    global average pooling, one logit per image (ours: the paper's discriminators changed with
    their generators, but their sizes are lost). The discriminator judges the image alone
    (the paper's Eq. 1-2). Loss weights, warm-up and `residual` as in the module docstring.
    Model 2 on the validation subject (quick profile, kspace-2x T2, one seed, 600 steps):
    validation PSNR 27.99 dB (the input itself: 26.02 dB), test brains 27.05 dB (input
    24.49 dB).
    """

    name = "dcgan"
    summary = "DCGAN generator (5-6 same-size convs) + DCGAN discriminator, BCE + L1 (7T->9.4T paper, model 2)"
    Options = DCGANOptions
    support = Support(dims=(2,))

    def build_generator(self) -> nn.Module:
        o = self.options
        scale = 1.0 if o.architecture == "model1" else o.features / 16  # model 1 is small: always the paper's
        return DCGANGenerator.paper(o.architecture, width_scale=scale, spatial_dims=self.task.spatial_dims, norm=o.norm)

    def build_discriminator(self, in_channels: int) -> nn.Module:
        return DCGANDiscriminator(in_channels=in_channels, features=self.options.discriminator_features,
                                  spatial_dims=self.task.spatial_dims)


# ----------------------------------------------------------------------------- U-Net GAN (models 5-8)


@dataclasses.dataclass(frozen=True)
class UNetGANOptions(UNetOptions):
    """Paper's: the U-Net generator (pix2pix's, `features` 16, depth 6 at 64 px), "DCGAN 2"
    discriminator, BCE + L1 (model 7, the best U-Net model, is the default); models 5, 6, 8
    add the gradient difference loss, model 6 the `sharpen` kernel (presets). Ours: the
    weights (`adversarial_weight` 1e-3, `l1` 1), `warmup` 0.25, `dropout` 0,
    `discriminator_features` 32, `depth` None (from the training patch, see
    `sr_lib.methods.synthesis_cnns.unet_depth`), `zero_init` True (see `UNetGANMethod`); the
    profile caps the widths. The generator's fields and checks are `UNetOptions`'."""

    adversarial: str = "bce"
    adversarial_weight: float = 1e-3
    warmup: float = 0.25
    gradient: float = 0.0
    sharpen: bool = False
    discriminator_features: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        check_net_options(self, "discriminator_features")

    @classmethod
    def profile_defaults(cls, profile: Profile) -> dict[str, Any]:
        return {**super().profile_defaults(profile), "discriminator_features": min(32, profile.features)}


class UNetGANMethod(PairedNetMethod):
    """The 7T->9.4T paper's U-Net GAN (Sec. 6.3, models 5-8): pix2pix's U-Net generator
    (Table 3's 1,829,025 parameters = `ngf` 16, 6 levels) against the DCGAN discriminator of
    `dcgan`, BCE + L1 (+ gradient difference).

    `sharpen=True` (model 6) convolves the generated image with a fixed 3x3 sharpening
    kernel [[0, -1, 0], [-1, 5, -1], [0, -1, 0]] after the generator, in training and at
    inference (ours: the paper's two kernels are lost; it says they emphasise the centre and
    sum to 1, which this one does; see `sharpening_kernel`). Everything else as `dcgan`.

    `zero_init=True` (ours, also for `unet` and `pix2pix`) zeroes the U-Net's output layer so
    the residual generator starts at the interpolated input. Measured on the validation
    subject (quick profile, kspace-2x T2, model 7, one seed, 600 steps): validation PSNR
    27.23 dB with it, 25.61 dB without (the input itself: 26.02 dB); on the test brains,
    predicted as whole slices, 25.71 vs 16.14 dB (input 24.49 dB): without it the randomly
    initialised U-Net's output, whose innermost levels only ever saw 1-2 px maps of training
    patches, swamps whole slices. The U-Net depth mattered little once zeroed (depth 3, 4, 5:
    27.20, 27.16, 27.23 dB), so the paper's depth rule stays.
    """

    name = "unet-gan"
    summary = "U-Net generator + DCGAN discriminator, BCE + L1 (7T->9.4T paper, model 7)"
    Options = UNetGANOptions
    support = Support(dims=(2,))

    def build_generator(self) -> nn.Module:
        return build_unet(self)

    def build_discriminator(self, in_channels: int) -> nn.Module:
        return DCGANDiscriminator(in_channels=in_channels, features=self.options.discriminator_features,
                                  spatial_dims=self.task.spatial_dims)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        out = super().forward(lr)
        return sharpen(out) if self.options.sharpen else out

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "unet_depth": self.nets["generator"].depth}


# ----------------------------------------------------------------------------- pix2pix (models 9-11)


@dataclasses.dataclass(frozen=True)
class Pix2PixOptions(UNetOptions):
    """Pix2pix's (Isola et al. 2017): BCE, `adversarial_weight` 1 with `l1` 100, the 70x70
    PatchGAN with `discriminator_features` 64 (the profile caps it: 8 in `test`, 32 in
    `quick`), conditional. The 7T paper's: the U-Net generator (`features` 16), model 9's L1
    (the default), model 10's L2, model 11's L1 + perceptual (presets). Ours: `warmup` 0.25,
    `dropout` 0 (pix2pix: 0.5), `zero_init` True (see `UNetGANMethod`), `perceptual` 10 in
    model 11 (Table 1 is lost)."""

    adversarial: str = "bce"
    adversarial_weight: float = 1.0
    warmup: float = 0.25
    l1: float = 100.0
    discriminator_features: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        check_net_options(self, "discriminator_features")

    @classmethod
    def profile_defaults(cls, profile: Profile) -> dict[str, Any]:
        return {**super().profile_defaults(profile), "discriminator_features": min(64, profile.features)}


class Pix2PixMethod(PairedNetMethod):
    """Pix2pix (Isola et al. 2017) as the 7T->9.4T paper ran it (models 9-11): the U-Net
    generator against the 70x70 PatchGAN (`sr_lib.nets.PatchGAN`), which judges the
    interpolated input stacked with the real or generated image (conditional, 2 channels)
    and returns a map of logits; BCE over the map, generator loss BCE + 100 L1 (pix2pix's
    lambda). The paper found it the weakest of its GANs (background inconsistency, Sec.
    7.3.3). Choices as in the module docstring; the PatchGAN pads inputs under 24 px. Model 9
    on the validation subject (quick profile, kspace-2x T2, one seed, 600 steps): best
    validation PSNR 26.72 dB (input 26.02 dB), test brains 24.99 dB (input 24.49 dB), the
    weakest of the GANs measured, as in the paper.
    """

    name = "pix2pix"
    summary = "pix2pix: U-Net + 70x70 PatchGAN (conditional), BCE + 100 L1 (Isola et al. 2017; 7T->9.4T paper, model 9)"
    Options = Pix2PixOptions
    support = Support(dims=(2,))
    conditional = True

    def build_generator(self) -> nn.Module:
        return build_unet(self)

    def build_discriminator(self, in_channels: int) -> nn.Module:
        return PatchGAN(in_channels=in_channels, features=self.options.discriminator_features,
                        spatial_dims=self.task.spatial_dims)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "unet_depth": self.nets["generator"].depth}


# ----------------------------------------------------------------------------- the paper's eleven models

# lambda3 of Eq. 5 where the gradient difference loss is on (ours: the paper's Table 1 is lost).
# Eq. 4 squares the gradient differences, so the term is small on [0, 1] images: on the quick
# profile's kspace-2x T2 test slices, input vs HR, L1 is 0.025 and the squared term 0.0032. At
# 10 it starts at the L1 term's size, so it shapes training without swamping it.
GRADIENT_WEIGHT = 10.0

PRESETS = (
    preset(DCGANMethod, "7t-m1", "7T model 1: DCGAN, 5 convs (small), + gradient difference loss",
           architecture="model1", l1=1.0, gradient=GRADIENT_WEIGHT),
    preset(DCGANMethod, "7t-m2", "7T model 2: DCGAN, 5 convs up to 196 maps + 1x1 output, BCE + L1 (best DCGAN)",
           architecture="model2", l1=1.0, gradient=0.0),
    preset(DCGANMethod, "7t-m3", "7T model 3: DCGAN, 6 convs, BCE + L1",
           architecture="model3", l1=1.0, gradient=0.0),
    preset(DCGANMethod, "7t-m4", "7T model 4: DCGAN, 6 convs, + gradient difference loss",
           architecture="model3", l1=1.0, gradient=GRADIENT_WEIGHT),
    preset(UNetGANMethod, "7t-m5", "7T model 5: U-Net GAN, + gradient difference loss",
           l1=1.0, gradient=GRADIENT_WEIGHT, sharpen=False),
    preset(UNetGANMethod, "7t-m6", "7T model 6: U-Net GAN, + gradient difference loss, sharpening kernel after the generator",
           l1=1.0, gradient=GRADIENT_WEIGHT, sharpen=True),
    preset(UNetGANMethod, "7t-m7", "7T model 7: U-Net GAN, BCE + L1 only (best U-Net model)",
           l1=1.0, gradient=0.0, sharpen=False),
    preset(UNetGANMethod, "7t-m8", "7T model 8: U-Net GAN, + gradient difference loss at a tenth of model 5's weight (ours)",
           l1=1.0, gradient=GRADIENT_WEIGHT / 10, sharpen=False),
    preset(Pix2PixMethod, "7t-m9", "7T model 9: pix2pix (U-Net + PatchGAN), BCE + 100 L1 (best pix2pix)",
           l1=100.0, l2=0.0, perceptual=0.0),
    preset(Pix2PixMethod, "7t-m10", "7T model 10: pix2pix, BCE + 100 L2",
           l1=0.0, l2=100.0, perceptual=0.0),
    preset(Pix2PixMethod, "7t-m11", "7T model 11: pix2pix, BCE + 100 L1 + perceptual (VGG-16 layers 4, 9, 16, 23)",
           l1=100.0, l2=0.0, perceptual=10.0),
)
