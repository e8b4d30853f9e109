"""DRCN (Kim et al. 2016), one of HLH-GAN's (Zhu et al.) baselines, as a workbench method."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from sr_lib.losses import pixel_loss
from sr_lib.methods.base import NetMethod, Support, Task, TrainOptions, upsample_input
from sr_lib.nets.drcn import DRCN
from sr_lib.profiles import Profile


@dataclasses.dataclass(frozen=True)
class DRCNOptions(TrainOptions):
    """`features` 256 and `recursions` 16 are the paper's (3x3 filters everywhere);
    `weight_decay` is its beta = 1e-4; `alpha` is the starting weight of the recursive
    supervision (the paper's 1), which falls linearly to 0 at `alpha_zero_at` of the steps
    (ours: the paper says only that alpha decays). `clip_grad_norm` is ours (see
    `DRCNMethod`). Below the paper-sized profile the net shrinks: `features` = the
    profile's width, `recursions` = a quarter of it within [3, 16] (test: 8 and 3,
    quick: 32 and 8)."""

    features: int = 256
    recursions: int = 16
    alpha: float = 1.0
    alpha_zero_at: float = 0.5
    weight_decay: float = 1e-4
    clip_grad_norm: float | None = 0.1

    def __post_init__(self) -> None:
        if self.features < 1 or self.recursions < 1:
            raise ValueError(f"features and recursions must be positive, got {self.features} and {self.recursions}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha weighs the recursive supervision, in [0, 1]; got {self.alpha}")
        if not 0.0 < self.alpha_zero_at <= 1.0:
            raise ValueError(f"alpha_zero_at is a fraction of the steps in (0, 1], got {self.alpha_zero_at}")
        if self.weight_decay < 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")

    @classmethod
    def profile_defaults(cls, profile: Profile) -> dict[str, Any]:
        values = super().profile_defaults(profile)
        if not profile.paper_sized:
            values.update(features=profile.features, recursions=min(16, max(3, profile.features // 4)))
        return values


class DRCNMethod(NetMethod):
    """DRCN on the bicubic-interpolated input: embedding net, one recursive 3x3 conv + ReLU
    applied D times with shared weights, a shared reconstruction net whose every
    intermediate prediction gets the input added (skip connection), and a learned weighted
    average of the D predictions (`sr_lib.nets.drcn.DRCN`).

    Loss (the paper's training objective, its Sec. 3.3; the paper's text is not among our
    seeds, so equations are named here, not numbered):
    L = alpha * l1 + (1 - alpha) * l2 + beta ||theta||^2, where l1 = (1/D) sum_d MSE(ŷ_d, y)
    is the recursive supervision of every intermediate prediction and
    l2 = MSE(sum_d w_d ŷ_d, y) that of the final output. The paper's 1/(2N) per-image sums
    of squares are per-pixel means here: the same minimiser of the data terms, though beta
    then weighs more against them (by half the pixels of a patch). alpha starts at 1 and
    decays "as training progresses"; ours: linearly to 0 at `alpha_zero_at` (0.5) of the
    steps, then 0 (`alpha_at`).

    Choices: Adam at the profile's learning rate instead of the paper's SGD (momentum 0.9,
    lr 0.01 divided by 10 on validation plateaus down to 1e-6), which converges within
    CPU-sized budgets, as for SRCNN. beta = 1e-4 enters as Adam's L2 weight decay
    (gradient + beta * theta, as the paper's SGD weight decay did). The input is
    interpolated with the `bicubic` row's own kernel (`upsample_input`), as the paper feeds
    the bicubic-interpolated image, and the skip connection makes each recursion predict
    the residual over it; this handles the same-grid (k-space) and small-grid scenarios
    alike.
    Gradient clipping at a global norm of 0.1 is ours (the DRCN paper, as we read it, names
    none; its sibling VDSR, Kim et al. 2016a, clips): the gradient norm is 2 to 60 in the
    first steps and about 0.02 (median) after them, so the clip tames the start. Chosen on
    the validation subject (quick profile, SR-B T2, 600 steps, seed 0): best validation
    PSNR 27.74 dB with the clip, 26.40 dB without (bicubic 22.51 dB on that batch). Runs
    in 2D and 3D (3x3x3 kernels; the paper is 2D only).
    """

    name = "drcn"
    summary = "DRCN: one 3x3 conv recursed D times, recursive supervision, skip, learned ensemble (Kim et al. 2016)"
    Options = DRCNOptions
    support = Support(dims=(2, 3))

    def __init__(self, task: Task, options: DRCNOptions, profile: Profile) -> None:
        super().__init__(task, options, profile)
        net = DRCN(features=options.features, recursions=options.recursions, spatial_dims=task.spatial_dims)
        self.nets["generator"] = net
        self.optimizers["generator"] = torch.optim.Adam(net.parameters(), lr=options.lr,
                                                        weight_decay=options.weight_decay)
        self.make_optimizers()  # the EMA, when asked for

    def alpha_at(self, step: int) -> float:
        """The recursive-supervision weight at `step`: `alpha` at step 0, falling linearly
        to 0 at `alpha_zero_at` * steps, 0 after."""
        end = self.options.alpha_zero_at * self.total_steps
        return self.options.alpha * max(0.0, 1.0 - step / end) if end > 0 else 0.0

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.generator()(upsample_input(lr, self.task.working_factors))[0]

    def losses(self, lr: torch.Tensor, hr: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """The recursive supervision l1, the final output's l2 and their alpha-weighted sum."""
        with self.autocast():
            final, each = self.nets["generator"](upsample_input(lr, self.task.working_factors))
        recursive = pixel_loss(each.float(), hr.unsqueeze(0).expand_as(each), kind="mse")
        output = pixel_loss(final.float(), hr, kind="mse")
        alpha = self.alpha_at(step)
        return {"loss": alpha * recursive + (1.0 - alpha) * output, "recursive": recursive, "output": output}

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        losses = self.losses(batch["lr"], batch["hr"], step)
        return {"loss": self.optimise("generator", losses["loss"]), "recursive": float(losses["recursive"].detach()),
                "output": float(losses["output"].detach()), "alpha": self.alpha_at(step)}
