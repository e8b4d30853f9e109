"""The method registry: a name -> how to build it, what it is, where it runs.

Adding a method = one file in this package + one line in `METHODS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from typing import Any

from sr_lib.methods.base import LearnedMethod, Method, Task
from sr_lib.methods.classical import Interpolation
from sr_lib.methods.srcnn import SRCNNMethod
from sr_lib.methods.srresnet import SRGANMethod, SRResNetMethod
from sr_lib.profiles import Profile, get_profile


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    factory: Callable[..., Method]
    summary: str
    dims: tuple[int, ...]  # 2 = slice-wise, 3 = volumetric
    learned: bool


METHODS: dict[str, MethodSpec] = {
    "nearest": MethodSpec(partial(Interpolation, kind="nearest"), "nearest-neighbour upsampling", (2, 3), False),
    "bicubic": MethodSpec(partial(Interpolation, kind="bicubic"), "bicubic in-plane interpolation (the 2D papers' baseline)", (2,), False),
    "tricubic": MethodSpec(partial(Interpolation, kind="tricubic"), "separable cubic on all three axes (UDEAN's baseline)", (3,), False),
    "srcnn": MethodSpec(SRCNNMethod, "SRCNN 9-5-5 on the interpolated input, MSE (Dong et al. 2016)", (2, 3), True),
    "srresnet": MethodSpec(SRResNetMethod, "SRResNet: residual blocks + pixel shuffle, L1 or MSE (Ledig et al. 2017)", (2,), True),
    "srgan": MethodSpec(SRGANMethod, "SRGAN: SRResNet + discriminator, pixel + feature + adversarial loss (Ledig et al. 2017)", (2,), True),
}


def method_spec(name: str) -> MethodSpec:
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; choose one of {sorted(METHODS)}") from None


def build(name: str, *, factors: tuple[int, ...], profile: str | Profile, **options: Any) -> Method:
    """Build method `name` for a scenario with per-axis grid `factors` (HR / LR voxel counts)."""
    spec = method_spec(name)
    task = Task.for_scenario(tuple(factors), spec.dims)
    return spec.factory(task, get_profile(profile), **options)


__all__ = ["METHODS", "MethodSpec", "Method", "LearnedMethod", "Task", "build", "method_spec"]
