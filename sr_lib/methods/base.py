"""What every method is: a `Task` (grid change and dimensionality), a volume-level
`predict_volume`, and for learned methods their nets, optimisers and one training step.

The loop, checkpointing, AMP, logging and evaluation live in `sr_lib.train` and
`sr_lib.runs`; a method only says what is particular to it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sr_lib.profiles import Profile


@dataclasses.dataclass(frozen=True)
class Task:
    """The job a method is trained for.

    `factors`: HR / LR voxel-count ratio per volume axis, e.g. (2, 2, 1) for a 2x in-plane
    small-grid scenario, (1, 1, 1) for same-grid scenarios such as GAN-CPCE's k-space
    truncation. `spatial_dims`: 2 = slice-wise along `axis`, 3 = volumetric.
    """

    factors: tuple[int, int, int]
    spatial_dims: int = 2
    axis: int = 2

    def __post_init__(self) -> None:
        if self.spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {self.spatial_dims}")
        if self.spatial_dims == 2 and self.factors[self.axis] != 1:
            raise ValueError(
                f"a slice-wise (2D) method cannot change the grid along its slice axis {self.axis} (factors {self.factors})"
            )

    @property
    def working_factors(self) -> tuple[int, ...]:
        """Factors along the axes the nets see: in-plane for 2D, all three for 3D."""
        if self.spatial_dims == 3:
            return tuple(self.factors)
        return tuple(f for i, f in enumerate(self.factors) if i != self.axis)

    @property
    def upscale(self) -> int:
        """The single upsampling factor of nets that need one (isotropic in the working axes)."""
        factors = set(self.working_factors)
        if len(factors) != 1:
            raise ValueError(f"this net needs the same factor on every working axis, got {self.working_factors}")
        return factors.pop()

    @staticmethod
    def for_scenario(factors: tuple[int, ...], supported_dims: tuple[int, ...]) -> "Task":
        """Slice-wise along an unchanged axis (the last one preferred) if the method can; else 3D."""
        factors = tuple(int(f) for f in factors)
        unchanged = [axis for axis in (2, 1, 0) if factors[axis] == 1]
        if 2 in supported_dims and unchanged:
            return Task(factors, 2, unchanged[0])
        if 3 in supported_dims:
            return Task(factors, 3, 2)
        raise ValueError(f"factors {factors} change every axis; this method works on 2D slices only")


def upsample_input(lr: torch.Tensor, factors: tuple[int, ...]) -> torch.Tensor:
    """Interpolate an (N, C, ...) batch onto the HR grid: bicubic in 2D, trilinear in 3D
    (torch has no tricubic), cell-centred (`align_corners=False`) like all workbench grids."""
    if all(f == 1 for f in factors):
        return lr
    mode = "bicubic" if lr.ndim == 4 else "trilinear"
    return F.interpolate(lr, scale_factor=tuple(float(f) for f in factors), mode=mode, align_corners=False)


class Method:
    """Base of every method. Subclasses set `name`, `learned` and implement `predict_volume`
    or (for learned ones) `predict_batch`."""

    name: str = "method"
    learned: bool = False

    def __init__(self, task: Task, profile: Profile, **options: Any):
        self.task = task
        self.profile = profile
        self.options = options

    def describe(self) -> dict[str, Any]:
        """JSON-able facts about this method that the run config and report record."""
        return {"method": self.name, **self.options}

    def predict_volume(self, lr: np.ndarray) -> np.ndarray:
        """Map an LR volume (x, y, z) in [0, 1] to the HR grid."""
        raise NotImplementedError


class LearnedMethod(Method):
    """A method with networks trained by `sr_lib.train.train`.

    Subclasses build `self.nets` (name -> module) and `self.optimizers` (name -> optimiser)
    in `__init__`, implement `training_step` and `forward` (LR batch -> HR batch with the
    generator), and may override `prepare` for work that needs the training data (e.g. a
    feature network for perceptual losses).
    """

    learned = True
    # Supervised methods learn from (LR, HR) patches of the same place; unsupervised ones
    # (cycle / domain-adaptation GANs) add "unpaired" here.
    pairings: tuple[str, ...] = ("paired", "misaligned")

    def __init__(self, task: Task, profile: Profile, **options: Any):
        super().__init__(task, profile, **options)
        self.nets: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.device = torch.device("cpu")
        self.amp = False

    def adam(self, module: nn.Module, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Adam:
        return torch.optim.Adam(module.parameters(), lr=self.profile.lr, betas=betas)

    def to(self, device: torch.device, *, amp: bool = False) -> "LearnedMethod":
        """Move nets (and their optimiser state) to `device`; `amp` enables bf16 autocast.
        On CUDA, 2D nets also switch to channels_last, which tensor cores prefer."""
        self.device, self.amp = torch.device(device), amp and torch.device(device).type == "cuda"
        for net in self.nets.values():
            net.to(self.device)
            if self.device.type == "cuda" and self.task.spatial_dims == 2:
                net.to(memory_format=torch.channels_last)
        for optimiser in self.optimizers.values():
            for state in optimiser.state.values():
                for key, value in state.items():
                    if torch.is_tensor(value):
                        state[key] = value.to(self.device)
        return self

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA when AMP is on; a no-op on CPU."""
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def train_mode(self, training: bool) -> None:
        for net in self.nets.values():
            net.train(training)

    def prepare(self, sampler: Any, *, seed: int) -> None:
        """Hook run once before training (fresh or resumed). Default: nothing."""

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """LR batch (N, 1, ...) -> HR batch with the generator, in the current mode."""
        raise NotImplementedError

    def training_step(self, batch: dict[str, torch.Tensor], step: int, total_steps: int) -> dict[str, float]:
        """One optimisation step on `batch` (keys lr, hr, mask); returns the losses as floats."""
        raise NotImplementedError

    @torch.no_grad()
    def predict_batch(self, lr: torch.Tensor) -> torch.Tensor:
        """Inference: eval mode, autocast, output clamped to [0, 1] (volumes are normalised there)."""
        self.train_mode(False)
        with self.autocast():
            out = self.forward(lr.to(self.device))
        return out.float().clamp_(0.0, 1.0)

    def predict_volume(self, lr: np.ndarray) -> np.ndarray:
        from sr_lib.infer import predict_volume

        return predict_volume(self.predict_batch, lr, task=self.task, batch_size=self.profile.infer_batch,
                              patch_size=self.profile.infer_patch_3d, device=self.device)

    def state_dict(self) -> dict[str, Any]:
        return {
            "nets": {name: net.state_dict() for name, net in self.nets.items()},
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
        }

    def load_state_dict(self, state: dict[str, Any], *, optimizers: bool = True) -> None:
        for name, net in self.nets.items():
            net.load_state_dict(state["nets"][name])
        if optimizers:
            for name, opt in self.optimizers.items():
                opt.load_state_dict(state["optimizers"][name])
        self.to(self.device, amp=self.amp)
