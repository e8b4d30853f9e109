"""One generator, one optional discriminator, any mix of losses: the paired methods.

Most supervised methods of the five papers differ only in their generator, their
discriminator and the weights of a common set of losses (You et al. 2019's GAN-CPCE, the
7T->9.4T paper's FCNs, DCSRN, DCGAN, U-Net GAN and pix2pix). `PairedNetMethod` holds what
they share; a subclass builds its nets and sets the paper's defaults in its `Options`.

Every loss is an option of every paired method: `l1`, `l2`, `ssim`, `gradient` (gradient
difference, the 7T paper's Eq. 4), `perceptual` and `texture` (on VGG-16/19 layers from a
local weights file, else the workbench's MRI feature net) and `tv`, each a weight; plus an
adversarial term (`adversarial` = bce, lsgan or wgan-gp, with `adversarial_weight`,
`critic_steps` and `gp_weight`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from sr_lib.infer import INFERENCE_MODES, predict_volume
from sr_lib.losses import RECONSTRUCTION_TERMS, adversarial_loss, gradient_penalty, reconstruction_loss
from sr_lib.methods.base import NetMethod, Observation, Task, TrainOptions, upsample_input
from sr_lib.nets import zero_init
from sr_lib.perceptual import feature_extractor
from sr_lib.profiles import Profile
from sr_lib.train import frozen

ADVERSARIAL_KINDS = ("none", "bce", "lsgan", "wgan-gp")


@dataclasses.dataclass(frozen=True)
class PairedOptions(TrainOptions):
    """Loss weights and the adversarial set-up shared by every paired method.

    `perceptual_net` / `perceptual_layers` name the VGG and its ReLU layers used when a
    weights file is given (`vgg_weights`, or `$SR_LIB_VGG16` / `$SR_LIB_VGG19`); without one
    the workbench's MRI feature net stands in (see `sr_lib.perceptual`). The texture (Gram)
    loss uses the same layers. `warmup`: the fraction of the step cap trained with the
    reconstruction losses alone before the discriminator joins (early stopping watches only
    after it). `residual` adds the interpolated input to the generator's output;
    `zero_init` then zeroes the generator's last layer so training starts at that input.

    `inference`: "whole" slices (2D; 3D nets blend), "blend" (Gaussian-weighted sliding
    window) or "stitch" (the 7T paper's dense patches, see `sr_lib.infer`). Stitching uses
    `stitch_patch` LR voxels every `stitch_stride`, cropping `stitch_border` HR voxels; the
    paper's 64 / 20 / 4 px are scaled to the training patch by default (patch = the
    training patch, stride 20/64 and border 4/64 of it, at least 1)."""

    l1: float = 1.0
    l2: float = 0.0
    ssim: float = 0.0
    gradient: float = 0.0
    perceptual: float = 0.0
    texture: float = 0.0
    tv: float = 0.0
    perceptual_net: str = "vgg16"
    perceptual_layers: str = "relu1_2,relu2_2,relu3_3,relu4_3"
    vgg_weights: str | None = None
    adversarial: str = "none"
    adversarial_weight: float = 0.0
    critic_steps: int = 1
    gp_weight: float = 10.0
    discriminator_lr: float | None = None
    warmup: float = 0.0
    residual: bool = True
    zero_init: bool = False
    inference: str = "whole"
    stitch_patch: int | None = None
    stitch_stride: int | None = None
    stitch_border: int | None = None

    def __post_init__(self) -> None:
        if self.inference not in INFERENCE_MODES:
            raise ValueError(f"inference must be one of {', '.join(INFERENCE_MODES)}, got {self.inference!r}")
        if self.adversarial not in ADVERSARIAL_KINDS:
            raise ValueError(f"adversarial must be one of {', '.join(ADVERSARIAL_KINDS)}, got {self.adversarial!r}")
        if self.perceptual_net not in ("vgg16", "vgg19"):
            raise ValueError(f"perceptual_net must be vgg16 or vgg19, got {self.perceptual_net!r}")
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"warmup is a fraction of the steps in [0, 1), got {self.warmup}")
        if self.critic_steps < 1:
            raise ValueError(f"critic_steps must be at least 1, got {self.critic_steps}")
        if not any(self.loss_weights().values()) and (self.adversarial == "none" or self.warmup > 0):
            raise ValueError("every loss weight is zero, so there is nothing to train on without the adversarial term")

    def loss_weights(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in RECONSTRUCTION_TERMS}

    @property
    def uses_features(self) -> bool:
        return bool(self.perceptual or self.texture)


def last_conv(net: nn.Module) -> nn.Module:
    """The last convolution (or transposed convolution) registered in `net`: its output layer
    in every generator here, whose modules are registered in forward order."""
    convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d))]
    if not convs:
        raise ValueError(f"{type(net).__name__} has no convolution to zero")
    return convs[-1]


class PairedNetMethod(NetMethod):
    """A generator trained on (LR, HR) pairs with `PairedOptions`' losses, and a discriminator
    when `adversarial` is not 'none'.

    A subclass implements `build_generator()` and, for adversarial training,
    `build_discriminator(in_channels)`. By default the generator sees the LR input already
    interpolated onto the HR grid (the `bicubic` row's kernel; on same-grid scenarios the
    input itself), as FCN, DCSRN, U-Net and GAN-CPCE do; a generator that upsamples itself
    sets `upsamples_inside`. A conditional discriminator (`conditional`, pix2pix) sees the
    interpolated input stacked with the real or generated image.

    Optimisers: Adam for both nets, with betas (0.5, 0.999) for BCE/LSGAN adversarial
    training (Radford et al. 2016's DCGAN setting, which pix2pix keeps), (0.5, 0.9) for
    WGAN-GP (Gulrajani et al. 2017 use (0, 0.9) or (0.5, 0.9)), and (0.9, 0.999) without a
    discriminator. The critic takes `critic_steps` steps per generator step on fresh batches.
    """

    Options: ClassVar[type[PairedOptions]] = PairedOptions
    upsamples_inside: ClassVar[bool] = False
    conditional: ClassVar[bool] = False

    def __init__(self, task: Task, options: PairedOptions, profile: Profile) -> None:
        super().__init__(task, options, profile)
        self.nets["generator"] = self.build_generator()
        if options.residual and options.zero_init:
            zero_init(last_conv(self.nets["generator"]))
        betas = {"none": (0.9, 0.999), "bce": (0.5, 0.999), "lsgan": (0.5, 0.999), "wgan-gp": (0.5, 0.9)}[options.adversarial]
        if self.adversarial:
            self.nets["discriminator"] = self.build_discriminator(2 if self.conditional else 1)
            self.critic_steps = options.critic_steps
            if options.adversarial == "wgan-gp":
                self.double_backward_nets = frozenset({"discriminator"})
        self.make_optimizers({name: betas for name in self.nets})
        self.monitor_from = options.warmup if self.adversarial else 0.0
        self.features = None
        self.feature_net = "none"

    # -- what a subclass gives
    def build_generator(self) -> nn.Module:
        raise NotImplementedError

    def build_discriminator(self, in_channels: int) -> nn.Module:
        raise NotImplementedError(f"{self.name} has no discriminator; use adversarial='none'")

    # -- set-up
    @property
    def adversarial(self) -> bool:
        return self.options.adversarial != "none"

    def learning_rates(self) -> dict[str, float]:
        rates = super().learning_rates()
        if "discriminator" in rates and self.options.discriminator_lr is not None:
            rates["discriminator"] = self.options.discriminator_lr
        return rates

    def prepare(self, sampler: Any, *, seed: int) -> None:
        if self.options.uses_features and self.features is None:
            layers = tuple(name.strip() for name in self.options.perceptual_layers.split(",") if name.strip())
            self.features, self.feature_net = feature_extractor(
                spatial_dims=self.task.spatial_dims, profile=self.profile, sampler=sampler, seed=seed,
                vgg_weights=self.options.vgg_weights, vgg_layers=layers, vgg_variant=self.options.perceptual_net,
                device=self.runtime.device,
            )

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "feature_net": self.feature_net}

    # -- the model
    def interpolate(self, lr: torch.Tensor) -> torch.Tensor:
        return upsample_input(lr, self.task.working_factors)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        up = self.interpolate(lr)
        out = self.generator()(lr if self.upsamples_inside else up)
        return out + up if self.options.residual else out

    def critic_input(self, lr: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """What the discriminator judges: the image, or the input stacked with it (conditional)."""
        return torch.cat([self.interpolate(lr), image], dim=1) if self.conditional else image

    def in_warmup(self, step: int) -> bool:
        return step < self.options.warmup * self.total_steps

    def stitch_settings(self) -> tuple[int, int, int]:
        """(patch, stride, border) for stitched inference: the options, else the paper's
        64 / 20 / 4 px scaled to this profile's training patch."""
        o = self.options
        hr_patch = self.profile.patch_size if self.task.spatial_dims == 2 else self.profile.patch_size_3d
        patch = o.stitch_patch or max(hr_patch // max(self.task.working_factors), 4)
        stride = o.stitch_stride or max(round(patch * 20 / 64), 1)
        border = o.stitch_border if o.stitch_border is not None else max(round(hr_patch * 4 / 64), 1)
        return patch, stride, border

    def predict(self, observation: Observation) -> np.ndarray:
        """The whole volume with the run's `inference` mode."""
        return predict_volume(self.predict_batch, observation.lr, task=self.task, batch_size=self.profile.infer_batch,
                              patch_size=self.profile.infer_patch_3d, device=self.runtime.device,
                              mode=self.options.inference, stitch=self.stitch_settings())

    # -- training
    def critic_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        """One discriminator update on a fresh batch (skipped during the warm-up)."""
        if self.in_warmup(step):
            return {}
        o, critic = self.options, self.nets["discriminator"]
        lr, hr = batch["lr"], batch["hr"]
        with torch.no_grad(), self.autocast():
            fake = self.forward(lr).float()
        real_in, fake_in = self.critic_input(lr, hr), self.critic_input(lr, fake)
        with self.autocast():
            if o.adversarial == "wgan-gp":
                loss = (adversarial_loss(critic(real_in), True, kind="wgan")
                        + adversarial_loss(critic(fake_in), False, kind="wgan"))
                loss = loss.float() + o.gp_weight * gradient_penalty(lambda x: critic(x).float(), real_in, fake_in)
            else:  # halved, as pix2pix does, so D learns at half the rate of G
                loss = 0.5 * (adversarial_loss(critic(real_in).float(), True, kind=o.adversarial)
                              + adversarial_loss(critic(fake_in).float(), False, kind=o.adversarial))
        return {"d_loss": self.optimise("discriminator", loss)}

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        """One generator update: weighted reconstruction losses, plus the adversarial term
        after the warm-up (the discriminator frozen meanwhile)."""
        o = self.options
        lr, hr = batch["lr"], batch["hr"]
        with self.autocast():
            fake = self.forward(lr).float()
        loss, values = reconstruction_loss(fake, hr, o.loss_weights(), features=self.features)
        if self.adversarial and not self.in_warmup(step):
            critic = self.nets["discriminator"]
            with frozen(critic), self.autocast():
                kind = "wgan" if o.adversarial == "wgan-gp" else o.adversarial
                adversarial = adversarial_loss(critic(self.critic_input(lr, fake)).float(), True, kind=kind)
            loss = loss + o.adversarial_weight * adversarial
            values["adversarial"] = float(adversarial.detach())
        values["g_loss"] = self.optimise("generator", loss)
        return values
