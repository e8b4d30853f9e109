"""The method registry: a name -> its class (which carries its options, support and summary).

Adding a method = one file in this package + one line in `METHODS`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sr_lib.methods.base import (
    ArrayMethod, FitContext, Method, MethodOptions, ModelError, NetMethod, Observation, Support, Task, TrainData,
    TrainOptions, load_model, preset, save_model,
)
from sr_lib.methods.classical import Bicubic, DegradedInput, Nearest, Tricubic
from sr_lib.methods.drcn import DRCNMethod
from sr_lib.methods.gan_circle import GANCircleMethod
from sr_lib.methods.gan_cpce import GANCPCEMethod
from sr_lib.methods.rfsr import RFSRMethod
from sr_lib.methods.selfex import SelfExMethod
from sr_lib.methods.srcnn import SRCNNMethod
from sr_lib.methods.srresnet import SRGANMethod, SRResNetMethod
from sr_lib.methods.synthesis_cnns import PRESETS as SYNTHESIS_CNN_PRESETS
from sr_lib.methods.synthesis_cnns import DCSRNMethod, FCN1Method, FCN2Method, UNetMethod
from sr_lib.methods.synthesis_gans import PRESETS as SYNTHESIS_GAN_PRESETS
from sr_lib.methods.synthesis_gans import DCGANMethod, Pix2PixMethod, UNetGANMethod
from sr_lib.profiles import Profile, get_profile

METHODS: dict[str, type[Method]] = {
    cls.name: cls for cls in (DegradedInput, Nearest, Bicubic, Tricubic, SRCNNMethod, DRCNMethod, SRResNetMethod, SRGANMethod, RFSRMethod, SelfExMethod,
                          GANCPCEMethod, GANCircleMethod,
                          FCN1Method, FCN2Method, DCSRNMethod, UNetMethod, DCGANMethod, UNetGANMethod, Pix2PixMethod,
                          *SYNTHESIS_CNN_PRESETS, *SYNTHESIS_GAN_PRESETS)
}


def method_class(name: str) -> type[Method]:
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; choose one of {sorted(METHODS)}") from None


def resolve_options(name: str, profile: str | Profile, options: Mapping[str, Any] | None = None) -> MethodOptions:
    """The method's options: paper defaults, then the profile's values, then `options`."""
    return method_class(name).Options.resolve(get_profile(profile), options)


def build(name: str, *, factors: Sequence[int], profile: str | Profile, dims: int | None = None, **options: Any) -> Method:
    """Build method `name` for a scenario with per-axis grid `factors` (HR / LR voxel counts)."""
    cls = method_class(name)
    profile = get_profile(profile)
    task = Task.for_scenario(tuple(factors), cls.support.dims, dims)
    return cls(task, cls.Options.resolve(profile, options), profile)


__all__ = [
    "METHODS", "ArrayMethod", "FitContext", "Method", "MethodOptions", "ModelError", "NetMethod", "Observation",
    "Support", "Task", "TrainData", "TrainOptions", "build", "load_model", "method_class", "resolve_options",
    "preset", "save_model",
]
