"""SRCNN (Dong et al., TPAMI 2016) as a workbench method."""

from __future__ import annotations

import torch

from sr_lib.losses import pixel_loss
from sr_lib.methods.base import LearnedMethod, Task, upsample_input
from sr_lib.nets import SRCNN
from sr_lib.profiles import Profile


class SRCNNMethod(LearnedMethod):
    """SRCNN 9-5-5 on the interpolated LR image, MSE loss (the paper's objective).

    Choices: Adam at the profile's learning rate instead of the paper's SGD (1e-4, 1e-5 on
    the last layer), which converges in CPU-sized budgets; `residual=True` adds the
    interpolated input to the output (VDSR-style global residual, a small, standard
    departure that speeds convergence; `residual=False` is the paper's form). Runs in 2D and
    3D (then trilinear interpolation and 9x9x9 kernels).
    """

    name = "srcnn"

    def __init__(self, task: Task, profile: Profile, *, features: int = 64, residual: bool = True):
        super().__init__(task, profile, features=features, residual=residual)
        self.residual = residual
        self.nets["generator"] = SRCNN(features=features, spatial_dims=task.spatial_dims)
        self.optimizers["generator"] = self.adam(self.nets["generator"])

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        up = upsample_input(lr, self.task.working_factors)
        out = self.nets["generator"](up)
        return up + out if self.residual else out

    def training_step(self, batch: dict[str, torch.Tensor], step: int, total_steps: int) -> dict[str, float]:
        with self.autocast():
            loss = pixel_loss(self.forward(batch["lr"]).float(), batch["hr"], kind="mse")
        optimiser = self.optimizers["generator"]
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        return {"loss": loss.item()}
