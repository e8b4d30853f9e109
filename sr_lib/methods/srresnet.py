"""SRResNet and SRGAN (Ledig et al., CVPR 2017) as workbench methods."""

from __future__ import annotations

from typing import Any

import torch

from sr_lib.losses import adversarial_loss, feature_loss, pixel_loss
from sr_lib.methods.base import LearnedMethod, Task, upsample_input
from sr_lib.nets import SRGANDiscriminator, SRResNet
from sr_lib.perceptual import feature_extractor
from sr_lib.profiles import Profile


class SRResNetMethod(LearnedMethod):
    """SRResNet: residual blocks, pixel-shuffle x2 stages when the grid grows, MSE or L1.

    Size from the profile (`features`, `num_blocks`; the paper: 64 and 16). `loss="mse"`
    is the paper's SRResNet-MSE. Choices: `residual=True` adds the bicubic-interpolated
    input to the output, so the net learns only the missing detail (`residual=False` is the
    paper's form); `norm="none"` drops batch norm, as EDSR (Lim et al. 2017) found better
    for SR and as our foreground-weighted training patches demand (BN's running statistics
    from brain patches do not fit whole slices with background: 29.44 vs 30.00 dB after 400
    quick-profile steps on kspace-2x T2); `norm="batch"` is the paper's form. 2D only.
    """

    name = "srresnet"

    def __init__(self, task: Task, profile: Profile, *, loss: str = "mse", residual: bool = True, norm: str = "none", **options: Any):
        super().__init__(task, profile, loss=loss, residual=residual, norm=norm, **options)
        if loss not in ("l1", "mse"):
            raise ValueError(f"srresnet loss must be 'l1' or 'mse', got {loss!r}")
        self.loss, self.residual = loss, residual
        self.nets["generator"] = SRResNet(features=profile.features, num_blocks=profile.num_blocks, scale=task.upscale, norm=norm)
        self.optimizers["generator"] = self.adam(self.nets["generator"])

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        out = self.nets["generator"](lr)
        return out + upsample_input(lr, self.task.working_factors) if self.residual else out

    def training_step(self, batch: dict[str, torch.Tensor], step: int, total_steps: int) -> dict[str, float]:
        with self.autocast():
            loss = pixel_loss(self.forward(batch["lr"]).float(), batch["hr"], kind=self.loss)
        optimiser = self.optimizers["generator"]
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        return {"loss": loss.item()}


class SRGANMethod(SRResNetMethod):
    """SRGAN: the SRResNet generator against SRGAN's discriminator (BCE, Adam 0.9/0.999).

    Generator loss = pixel MSE + `perceptual_weight` * feature L1 + `adversarial_weight` * BCE
    (SRGAN Eq. 3-6 use VGG MSE + 1e-3 adversarial). Choices, since the paper trains on
    ImageNet with a pretrained SRResNet: the first `warmup` fraction of steps trains the
    generator with the pixel loss alone (the paper's SRResNet initialisation); a pixel term
    stays in the loss afterwards (as the 7T->9.4T pix2pix variants and ESRGAN do) so the
    intensities of quantitative MRI stay anchored; feature distance is L1 on a VGG-19
    layer (relu5_4, SRGAN's VGG54) when the user gives weights, else on the workbench's
    MRI feature net (see `sr_lib.perceptual`). `perceptual_weight` = 0.01 was chosen on the
    validation subject (quick profile, kspace-2x T2: validation PSNR 28.32 dB at 0.01 vs
    26.92 dB at 0.1 after 800 steps), close to SRGAN's own VGG rescaling (1/12.75^2).
    """

    name = "srgan"

    def __init__(
        self,
        task: Task,
        profile: Profile,
        *,
        perceptual_weight: float = 0.01,
        adversarial_weight: float = 1e-3,
        warmup: float = 0.5,
        vgg_weights: str | None = None,
    ):
        super().__init__(
            task, profile, loss="mse", residual=True, norm="none", perceptual_weight=perceptual_weight,
            adversarial_weight=adversarial_weight, warmup=warmup, vgg_weights=vgg_weights,
        )
        self.perceptual_weight, self.adversarial_weight, self.warmup = perceptual_weight, adversarial_weight, warmup
        self.vgg_weights = vgg_weights
        self.nets["discriminator"] = SRGANDiscriminator(features=max(profile.features // 2, 8))
        self.optimizers["discriminator"] = self.adam(self.nets["discriminator"])
        self.features = None
        self.feature_net = "none (not prepared)"

    def prepare(self, sampler: Any, *, seed: int) -> None:
        self.features, self.feature_net = feature_extractor(
            spatial_dims=2, profile=self.profile, sampler=sampler, seed=seed, vgg_weights=self.vgg_weights, device=self.device
        )

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "feature_net": self.feature_net}

    def training_step(self, batch: dict[str, torch.Tensor], step: int, total_steps: int) -> dict[str, float]:
        if step < self.warmup * total_steps:
            return {"pixel": super().training_step(batch, step, total_steps)["loss"]}
        discriminator = self.nets["discriminator"]
        lr, hr = batch["lr"], batch["hr"]
        with self.autocast():
            fake = self.forward(lr)
            d_loss = adversarial_loss(discriminator(hr), True) + adversarial_loss(discriminator(fake.detach()), False)
        self.optimizers["discriminator"].zero_grad(set_to_none=True)
        d_loss.backward()
        self.optimizers["discriminator"].step()

        discriminator.requires_grad_(False)
        with self.autocast():
            fake = fake.float()
            pixel = pixel_loss(fake, hr, kind=self.loss)
            perceptual = feature_loss(self.features, fake, hr, kind="l1")
            adversarial = adversarial_loss(discriminator(fake), True)
            g_loss = pixel + self.perceptual_weight * perceptual + self.adversarial_weight * adversarial
        self.optimizers["generator"].zero_grad(set_to_none=True)
        g_loss.backward()
        self.optimizers["generator"].step()
        discriminator.requires_grad_(True)
        return {"pixel": pixel.item(), "perceptual": perceptual.item(), "adversarial": adversarial.item(), "d_loss": d_loss.item()}
