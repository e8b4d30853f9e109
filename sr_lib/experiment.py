"""One run, resolved once: names (what a user types) -> objects (profile, scenario, method
class, task, options), passed down to data preparation, training, evaluation and storage.

`RunConfig` is what a user asks for (JSON-able names and overrides). `Experiment` is that
config resolved: nothing downstream resolves a name again. A run's identity, which names
its folder, is the config with the method's options resolved (paper defaults, profile,
overrides), the dimensionality chosen and, for a folder dataset, a fingerprint of its files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from functools import cached_property
from typing import Any

from sr_lib.degrade import PAIRINGS, Scenario, get_scenario
from sr_lib.methods import Method, MethodOptions, Task, method_class
from sr_lib.profiles import Profile, get_profile

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_name(kind: str, value: str) -> str:
    """A name that becomes part of a path (method, scenario, contrast, ...) must be plain."""
    if not isinstance(value, str) or not _SAFE_NAME.match(value) or ".." in value:
        raise ValueError(f"{kind} {value!r} is not a plain name (letters, digits, '.', '_', '-')")
    return value


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What a user asks for. `seed` seeds training (initialisation, patch sampling);
    `data_seed` seeds the subject split and the degradations, so runs of several seeds see
    the same subjects and the same degraded data and differ only in training. `dims` asks
    for 2D (slice-wise) or 3D where the method has both (None: 2D where possible)."""

    method: str
    scenario: str = "kspace-2x"
    contrast: str = "T2"
    scale: int = 2
    pairing: str = "paired"
    profile: str = "quick"
    seed: int = 0
    dataset: str = "phantom"
    root: str | None = None
    dims: int | None = None
    data_seed: int = 0
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind in ("method", "scenario", "contrast", "profile", "dataset"):
            check_name(kind, getattr(self, kind))
        method_class(self.method)
        get_profile(self.profile)
        get_scenario(self.scenario, scale=self.scale)
        if self.pairing not in PAIRINGS:
            raise ValueError(f"unknown pairing {self.pairing!r}; choose one of {PAIRINGS}")
        if self.dims not in (None, 2, 3):
            raise ValueError(f"dims must be 2, 3 or None, got {self.dims!r}")
        if not isinstance(self.options, dict):
            raise ValueError(f"options must be a dict, got {type(self.options).__name__}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(values: dict[str, Any], *, source: str = "config") -> "RunConfig":
        """A config from JSON; unknown or missing fields name `source` in a one-line error."""
        if not isinstance(values, dict):
            raise ValueError(f"{source}: expected a JSON object, got {type(values).__name__}")
        fields = {f.name for f in dataclasses.fields(RunConfig)}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ValueError(f"{source}: unknown field(s) {', '.join(unknown)}")
        try:
            return RunConfig(**values)
        except (TypeError, KeyError, ValueError) as err:
            text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
            raise ValueError(f"{source}: {text}") from None

    def resolve(self) -> "Experiment":
        return Experiment(self)


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A `RunConfig` resolved: profile, scenario, method class, task and options."""

    config: RunConfig

    @cached_property
    def profile(self) -> Profile:
        return get_profile(self.config.profile)

    @cached_property
    def scenario(self) -> Scenario:
        return get_scenario(self.config.scenario, scale=self.config.scale)

    @cached_property
    def method_class(self) -> type[Method]:
        return method_class(self.config.method)

    @cached_property
    def factors(self) -> tuple[int, int, int]:
        """HR / LR voxel counts per axis: the scenario's factors on a small grid, else ones."""
        scen = self.scenario
        return tuple(int(f) for f in scen.factors) if scen.grid == "small" else (1, 1, 1)

    @cached_property
    def has_holes(self) -> bool:
        return int(self.scenario.options.get("n_holes", 0)) > 0

    @cached_property
    def unsupported(self) -> str | None:
        """Why the method cannot run on this scenario and pairing (None when it can)."""
        return self.method_class.support.reason_not(
            grid=self.scenario.grid, factors=self.scenario.factors, pairing=self.config.pairing,
            holes=self.has_holes, dims=self.config.dims)

    @cached_property
    def task(self) -> Task:
        return Task.for_scenario(self.factors, self.method_class.support.dims, self.config.dims)

    @cached_property
    def options(self) -> MethodOptions:
        return self.method_class.Options.resolve(self.profile, self.config.options)

    def build_method(self) -> Method:
        if self.unsupported:
            raise ValueError(f"{self.config.method} cannot run on {self.config.scenario} ({self.config.pairing}): {self.unsupported}")
        return self.method_class(self.task, self.options, self.profile)

    def identity(self, data_fingerprint: str = "") -> dict[str, Any]:
        """What makes two runs the same: the config with resolved options and dims, and the data."""
        config = self.config.to_dict()
        config.update(options=self.options.to_dict(), dims=None if self.unsupported else self.task.spatial_dims,
                      data=data_fingerprint)
        return json.loads(json.dumps(config, sort_keys=True, default=str))

    def key(self, data_fingerprint: str = "") -> str:
        return hashlib.sha1(json.dumps(self.identity(data_fingerprint), sort_keys=True).encode()).hexdigest()[:10]

    def folder(self, data_fingerprint: str = "") -> str:
        c = self.config
        return f"{c.scenario}_{c.contrast}_x{c.scale}_{c.pairing}/{c.method}-{c.profile}-seed{c.seed}-{self.key(data_fingerprint)}"
