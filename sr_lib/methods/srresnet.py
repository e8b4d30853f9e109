"""SRResNet and SRGAN (Ledig et al. 2017) as workbench methods."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from sr_lib.losses import adversarial_loss, feature_loss, pixel_loss
from sr_lib.methods.base import NetMethod, Support, Task, TrainOptions, upsample_input
from sr_lib.nets import SRGANDiscriminator, SRResNet, zero_init
from sr_lib.perceptual import feature_extractor
from sr_lib.profiles import Profile
from sr_lib.train import frozen


@dataclasses.dataclass(frozen=True)
class SRResNetOptions(TrainOptions):
    """Paper: 64 features, 16 blocks, MSE, batch norm. The profile sizes the net; `residual`,
    `zero_init` and `norm="none"` are our departures (see `SRResNetMethod`)."""

    features: int = 64
    num_blocks: int = 16
    loss: str = "mse"
    residual: bool = True
    zero_init: bool = True
    norm: str = "none"

    def __post_init__(self) -> None:
        if self.loss not in ("l1", "mse"):
            raise ValueError(f"srresnet loss must be 'l1' or 'mse', got {self.loss!r}")

    @classmethod
    def profile_defaults(cls, profile: Profile) -> dict[str, Any]:
        return {**super().profile_defaults(profile), "features": profile.features, "num_blocks": profile.num_blocks}


class SRResNetMethod(NetMethod):
    """SRResNet: residual blocks, pixel-shuffle x2 stages when the grid grows, MSE or L1.

    `loss="mse"` is the paper's SRResNet-MSE. Choices: `residual=True` adds the
    bicubic-interpolated input (the `bicubic` row's MATLAB-style kernel) to the output, so
    the net learns only the missing detail, and `zero_init=True` zeroes the last conv so
    training starts exactly at that baseline (`residual=False` is the paper's form; chosen
    on the validation subject, PSNR after 400 quick steps, T2: 27.82 vs 27.11 dB on
    kspace-2x and 27.52 vs 26.52 dB on SR-B with the zeroed start);
    `norm="none"` drops batch norm, as EDSR (Lim et al. 2017) found better for SR and as our
    foreground-weighted training patches demand (BN's running statistics from brain patches
    do not fit whole slices with background: 29.44 vs 30.00 dB validation PSNR after 400
    quick-profile steps on kspace-2x T2); `norm="batch"` is the paper's form. 2D only.
    """

    name = "srresnet"
    summary = "SRResNet: residual blocks + pixel shuffle, MSE or L1 (Ledig et al. 2017)"
    Options = SRResNetOptions
    support = Support(dims=(2,))

    def __init__(self, task: Task, options: SRResNetOptions, profile: Profile) -> None:
        super().__init__(task, options, profile)
        self.nets["generator"] = SRResNet(features=options.features, num_blocks=options.num_blocks,
                                          scale=task.upscale, norm=options.norm)
        if options.residual and options.zero_init:
            zero_init(self.nets["generator"].tail)
        self.make_optimizers()

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        out = self.generator()(lr)
        return out + upsample_input(lr, self.task.working_factors) if self.options.residual else out

    def pixel_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        with self.autocast():
            loss = pixel_loss(self.forward(batch["lr"]).float(), batch["hr"], kind=self.options.loss)
        return {"pixel": self.optimise("generator", loss)}

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        return self.pixel_step(batch)


@dataclasses.dataclass(frozen=True)
class SRGANOptions(SRResNetOptions):
    """Paper: adversarial weight 1e-3, VGG54 content loss. Ours: `perceptual_weight` 0.01
    (chosen on validation), `warmup` 0.5, a pixel term kept in the generator loss."""

    perceptual_weight: float = 0.01
    adversarial_weight: float = 1e-3
    warmup: float = 0.5
    vgg_weights: str | None = None


class SRGANMethod(SRResNetMethod):
    """SRGAN: the SRResNet generator against SRGAN's discriminator (BCE, Adam 0.9/0.999).

    Generator loss = pixel MSE + `perceptual_weight` * feature L1 + `adversarial_weight` * BCE
    (Ledig et al. 2017, Eq. 3-6: VGG MSE + 1e-3 adversarial). Choices, since the paper trains
    on ImageNet from a pretrained SRResNet: the first `warmup` fraction of the step cap trains
    the generator with the pixel loss alone (the paper's SRResNet initialisation), and early
    stopping watches only the adversarial phase, so the kept weights are a GAN's; a pixel term
    stays in the loss afterwards (as the 7T->9.4T pix2pix variants and ESRGAN do) so the
    intensities stay anchored; feature distance is L1 on VGG-19 relu5_4 (SRGAN's VGG54) when
    the user gives weights, else on the workbench's MRI feature net (see `sr_lib.perceptual`).
    `perceptual_weight` = 0.01 was chosen on the validation subject (quick profile, kspace-2x
    T2: validation PSNR 28.32 dB at 0.01 vs 26.92 dB at 0.1 after 800 steps), close to
    SRGAN's own VGG rescaling (1/12.75^2). The discriminator is frozen during the generator
    step with `frozen`, which restores it even if the step raises.
    """

    name = "srgan"
    summary = "SRGAN: SRResNet + discriminator, pixel + feature + adversarial loss (Ledig et al. 2017)"
    Options = SRGANOptions

    def __init__(self, task: Task, options: SRGANOptions, profile: Profile) -> None:
        super().__init__(task, options, profile)
        self.nets["discriminator"] = SRGANDiscriminator(features=max(options.features // 2, 8))
        self.make_optimizers()
        self.monitor_from = options.warmup
        self.features = None
        self.feature_net = "none (not prepared)"

    def prepare(self, sampler: Any, *, seed: int) -> None:
        self.features, self.feature_net = feature_extractor(
            spatial_dims=2, profile=self.profile, sampler=sampler, seed=seed, vgg_weights=self.options.vgg_weights,
            device=self.runtime.device,
        )

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "feature_net": self.feature_net}

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        if step < self.options.warmup * self.total_steps:
            return self.pixel_step(batch)
        o, discriminator = self.options, self.nets["discriminator"]
        lr, hr = batch["lr"], batch["hr"]
        with self.autocast():
            fake = self.forward(lr)
            d_loss = adversarial_loss(discriminator(hr), True) + adversarial_loss(discriminator(fake.detach()), False)
        d_value = self.optimise("discriminator", d_loss)
        with frozen(discriminator), self.autocast():
            fake = fake.float()
            pixel = pixel_loss(fake, hr, kind=o.loss)
            perceptual = feature_loss(self.features, fake, hr, kind="l1")
            adversarial = adversarial_loss(discriminator(fake), True)
            g_loss = pixel + o.perceptual_weight * perceptual + o.adversarial_weight * adversarial
            self.optimise("generator", g_loss)
        return {"pixel": pixel.item(), "perceptual": perceptual.item(), "adversarial": adversarial.item(), "d_loss": d_value}
