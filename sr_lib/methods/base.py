"""What every method is.

A method has typed `Options` (a dataclass with the paper's defaults and a profile hook),
says what it `supports` (scenario grids, pairings, 2D/3D, holes), and implements
`fit(train_data, context)`, `predict(observation)`, `save(dir)` and `load(dir)`.

- `Method`: the interface; interpolation's `fit` does nothing.
- `ArrayMethod`: non-torch state (a forest, a dictionary) saved as named arrays with
  `np.savez` and JSON, never pickle.
- `NetMethod`: nets trained by `sr_lib.train.train`; a subclass names its nets, optimisers
  and one `training_step` (and a `critic_step` for GANs that take several critic steps).

An `Observation` carries everything a method may use at test time: the LR volume, the hole
mask, the degradation parameters and the voxel size. `predict` may optimise (ZSSR-style
test-time training, latent-space inpainting): it is not run under `no_grad`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from sr_lib.atomic import atomic_path, write_json
from sr_lib.degrade import resize_axes
from sr_lib.profiles import Profile
from sr_lib.train import EMA, Runtime, TrainSettings, optimise, train

MODEL_DIR = "model"
MODEL_META = "model.json"


class ModelError(ValueError):
    """A saved model that cannot be used; the message names the file and the problem."""


# ----------------------------------------------------------------------------- task and support


@dataclasses.dataclass(frozen=True)
class Task:
    """The job a method is trained for.

    `factors`: HR / LR voxel-count ratio per volume axis, e.g. (2, 2, 1) for a 2x in-plane
    small-grid scenario, (1, 1, 1) for same-grid scenarios such as k-space truncation.
    `spatial_dims`: 2 = slice-wise along `axis`, 3 = volumetric.
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
    def for_scenario(factors: Sequence[int], supported_dims: Sequence[int], dims: int | None = None) -> "Task":
        """`dims` when given (2 needs an unchanged axis); else slice-wise along an unchanged axis
        (the last one preferred) if the method can, else 3D."""
        factors = tuple(int(f) for f in factors)
        unchanged = [axis for axis in (2, 1, 0) if factors[axis] == 1]
        if dims is not None and dims not in supported_dims:
            raise ValueError(f"this method runs in {' or '.join(f'{d}D' for d in supported_dims)}, not {dims}D")
        if dims in (None, 2) and 2 in supported_dims and unchanged:
            return Task(factors, 2, unchanged[0])
        if dims == 2:
            raise ValueError(f"factors {factors} change every axis; a 2D (slice-wise) method cannot run here")
        if 3 in supported_dims:
            return Task(factors, 3, 2)
        raise ValueError(f"factors {factors} change every axis; this method works on 2D slices only")


@dataclasses.dataclass(frozen=True)
class Support:
    """What a method can be run on. `grids`: 'same' (e.g. zero-filled k-space) and/or
    'small' (a coarser LR grid); `slice_axis_changes`: whether it handles a grid change along
    every axis (3D scenarios such as 2x2x2); `pairings`; `dims` (2 = slice-wise, 3 =
    volumetric); `needs_holes`: an inpainting method that only makes sense with a hole mask."""

    grids: tuple[str, ...] = ("same", "small")
    pairings: tuple[str, ...] = ("paired", "misaligned")
    dims: tuple[int, ...] = (2,)
    needs_holes: bool = False
    requires_slice_axis_change: bool = False

    def reason_not(self, *, grid: str, factors: Sequence[int], pairing: str, holes: bool,
                   dims: int | None = None) -> str | None:
        """Why this method cannot run on a scenario, or None when it can."""
        if grid not in self.grids:
            return f"no {grid}-grid scenarios"
        if pairing not in self.pairings:
            return f"trains on {' or '.join(self.pairings)} data, not {pairing}"
        if self.needs_holes and not holes:
            return "needs a scenario with holes"
        every_axis_changes = all(f != 1 for f in factors)
        if self.requires_slice_axis_change and not every_axis_changes and grid == "small":
            return "only where the slice axis changes too"
        if dims is not None and dims not in self.dims:
            return f"runs in {'/'.join(f'{d}D' for d in self.dims)} only"
        if every_axis_changes and 3 not in self.dims:
            return "every axis changes; a 2D method cannot"
        return None


@dataclasses.dataclass(frozen=True)
class Observation:
    """What a method sees at test time. `lr`: (x, y, z) float32 in [0, 1] (the HR grid for
    same-grid scenarios); `mask`: 1 where data is missing, on the LR grid, or None; `params`:
    the scenario's settings and what was sampled; `voxel_size`: the LR grid's, in mm."""

    lr: np.ndarray
    mask: np.ndarray | None = None
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0)


Triple = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]  # (lr, hr, mask)


@dataclasses.dataclass
class TrainData:
    """Training and validation triples (lr, hr, mask) of [0, 1] volumes, and their pairing."""

    train: list[Triple]
    val: list[Triple]
    pairing: str = "paired"


@dataclasses.dataclass
class FitContext:
    """How to fit: the runtime, the seed, where to checkpoint (None: nowhere), progress bars."""

    runtime: Runtime = dataclasses.field(default_factory=Runtime)
    seed: int = 0
    run_dir: Path | None = None
    progress: bool = True


# ----------------------------------------------------------------------------- options


@dataclasses.dataclass(frozen=True)
class MethodOptions:
    """Base of every method's options. Fields carry the paper's defaults; `profile_defaults`
    returns the values a profile changes (sizes, step caps). Resolution order: paper defaults,
    then the profile, then the user's keywords. A run's identity is the resolved options."""

    @classmethod
    def profile_defaults(cls, profile: Profile) -> dict[str, Any]:
        return {}

    @classmethod
    def resolve(cls, profile: Profile, overrides: Mapping[str, Any] | None = None) -> "MethodOptions":
        overrides = dict(overrides or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"unknown option(s) {', '.join(unknown)} for {cls.__name__}; valid: {', '.join(sorted(names))}")
        values = {k: v for k, v in cls.profile_defaults(profile).items() if k in names}
        return cls(**{**values, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))


@dataclasses.dataclass(frozen=True)
class TrainOptions(MethodOptions):
    """Training options every net method shares. `None` = the profile's value.

    `steps` is the cap; `patience` validations without a gain of 0.01 dB in validation PSNR
    stop training early (0 = train to the cap), and the best weights are kept. `lr` applies
    to every net unless a method gives a net its own rate; `schedule` likewise."""

    steps: int | None = None
    patience: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    schedule: str = "constant"
    clip_grad_norm: float | None = None
    ema_decay: float | None = None

    @classmethod
    def profile_defaults(cls, profile: Profile) -> dict[str, Any]:
        return {"steps": profile.steps, "patience": profile.patience, "batch_size": profile.batch_size, "lr": profile.lr}


# ----------------------------------------------------------------------------- methods


class Method:
    """The interface every method implements. Subclasses set `name`, `summary`, `Options`
    and `support`, and override `predict` (and `fit`, `save`, `load` when they learn)."""

    name: ClassVar[str] = "method"
    summary: ClassVar[str] = ""
    Options: ClassVar[type[MethodOptions]] = MethodOptions
    support: ClassVar[Support] = Support()
    learned: ClassVar[bool] = False
    preset_of: ClassVar[str | None] = None  # the method a preset configures (see `preset`)
    preset_options: ClassVar[dict[str, Any]] = {}

    def __init__(self, task: Task, options: MethodOptions, profile: Profile) -> None:
        if not isinstance(options, self.Options):
            raise TypeError(f"{self.name} takes {self.Options.__name__}, got {type(options).__name__}")
        self.task, self.options, self.profile = task, options, profile

    def describe(self) -> dict[str, Any]:
        """JSON-able facts the run status and the report record (e.g. which feature net)."""
        return {"method": self.name, **self.options.to_dict()}

    def fit(self, data: TrainData, context: FitContext) -> dict[str, Any]:
        """Learn from `data`; returns facts for the run's status (steps, where it stopped)."""
        return {}

    def predict(self, observation: Observation) -> np.ndarray:
        """The HR estimate (x, y, z) float32 for one observation."""
        raise NotImplementedError

    def predict_volume(self, lr: np.ndarray) -> np.ndarray:
        """`predict` on a bare LR volume (no mask, no parameters)."""
        return self.predict(Observation(np.asarray(lr, dtype=np.float32)))

    def save(self, directory: Path) -> None:
        """Write what `load` needs into `directory` (which exists)."""

    def load(self, directory: Path) -> None:
        """Read what `save` wrote."""


class ArrayMethod(Method):
    """A learned method whose state is named NumPy arrays plus JSON facts (no pickle)."""

    learned = True
    ARRAYS = "arrays.npz"

    def state_arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        raise NotImplementedError

    def save(self, directory: Path) -> None:
        with atomic_path(Path(directory) / self.ARRAYS) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, **self.state_arrays())

    def load(self, directory: Path) -> None:
        path = Path(directory) / self.ARRAYS
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError) as err:
            raise ModelError(f"{path}: unreadable model arrays ({err})") from None
        self.load_arrays(arrays)


def upsample_input(lr: torch.Tensor, factors: Sequence[int]) -> torch.Tensor:
    """An (N, C, ...) batch onto the HR grid with the baseline's interpolation: MATLAB-style
    bicubic (Keys a = -0.5), separable, so tricubic in 3D, cell-centred. This is exactly what
    the `bicubic` / `tricubic` rows compute, so a residual net starts from the baseline."""
    if all(f == 1 for f in factors):
        return lr
    spatial = lr.shape[2:]
    size = [n * f for n, f in zip(spatial, factors)]
    return resize_axes(lr, size, axes=tuple(range(2, lr.ndim)), method="bicubic")


class NetMethod(Method):
    """A method with torch nets trained by `sr_lib.train.train`.

    A subclass builds `self.nets` (name -> module) in `__init__`, calls
    `self.make_optimizers()`, and implements `forward` (LR batch -> HR batch with the
    generator) and `training_step` (one generator step on a batch; returns losses as floats).
    A GAN with several critic steps per generator step sets `critic_steps` and implements
    `critic_step`. `learning_rates()` and `schedules` give nets their own rates and schedules.
    """

    learned = True
    Options: ClassVar[type[MethodOptions]] = TrainOptions
    critic_steps: int = 0
    double_backward_nets: frozenset[str] = frozenset()  # nets under a gradient penalty (kept out of channels_last)
    monitor_from: float = 0.0  # fraction of steps before early stopping watches (a GAN's warm-up)

    def __init__(self, task: Task, options: TrainOptions, profile: Profile) -> None:
        super().__init__(task, options, profile)
        self.nets: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedules: dict[str, str] = {}
        self.runtime = Runtime()
        self.ema: EMA | None = None

    # -- building
    def learning_rates(self) -> dict[str, float]:
        """Initial learning rate per net that has an optimiser (default: `options.lr` for all)."""
        return {name: self.options.lr for name in self.nets}

    def make_optimizers(self, betas: dict[str, tuple[float, float]] | None = None) -> None:
        """One Adam at its own learning rate for each net that has none yet (the five papers
        all use Adam), so a subclass that adds a net calls this again for that net alone."""
        betas = betas or {}
        for name, lr in self.learning_rates().items():
            if name not in self.optimizers:
                self.optimizers[name] = torch.optim.Adam(self.nets[name].parameters(), lr=lr, betas=betas.get(name, (0.9, 0.999)))
        if self.options.ema_decay and self.ema is None:
            self.ema = EMA(self.nets["generator"], self.options.ema_decay)

    def to(self, runtime: Runtime) -> "NetMethod":
        """Move nets, EMA and optimiser state to the runtime's device and apply its switches
        (`sr_lib.train.Switches`): channels_last for 2D nets, except the critics named in
        `double_backward_nets` (a gradient penalty's double backward is 4.6x slower in
        channels_last on the CPU: 1.35 vs 0.29 s for a small SRGAN discriminator);
        channels_last_3d for 3D nets; fused Adam; `torch.compile` of the nets in place (state
        dicts keep their keys; not the critics under a gradient penalty, whose double backward
        compiled autograd does not support)."""
        self.runtime = runtime
        effective = runtime.effective()
        nets = [(name, net) for name, net in self.nets.items()] + ([("ema", self.ema.net)] if self.ema else [])
        for name, net in nets:
            net.to(runtime.device)
            if name in self.double_backward_nets:
                continue
            if self.task.spatial_dims == 2 and effective["channels_last"]:
                net.to(memory_format=torch.channels_last)
            elif self.task.spatial_dims == 3 and effective["channels_last_3d"]:
                net.to(memory_format=torch.channels_last_3d)
        # fused Adam on a CPU only for 2D nets: `sr-lib bench --switches` found it 1.06-1.39x faster
        # there, but 2-8x slower for the 3D nets (channels_last_3d weights), on the busy 2-core CPU
        fused = effective["fused_adam"] and (runtime.device.type != "cpu" or self.task.spatial_dims == 2)
        for optimiser in self.optimizers.values():
            for group in optimiser.param_groups:
                group["fused"], group["foreach"] = (True, False) if fused else (None, None)
            for state in optimiser.state.values():
                for key, value in state.items():
                    if torch.is_tensor(value):
                        state[key] = value.to(runtime.device)
        if effective["compile"] and not getattr(self, "_compiled", False):
            for name, net in self.nets.items():
                if name not in self.double_backward_nets:  # compiled autograd has no double backward
                    net.compile()
            self._compiled = True
        return self

    # -- training
    def autocast(self):
        return self.runtime.autocast()

    def train_mode(self, training: bool) -> None:
        for net in self.nets.values():
            net.train(training)

    def optimise(self, names: str | Sequence[str], loss: torch.Tensor) -> float:
        """Backward, clip and step for net `names` (one name, or several nets that learn from
        one loss; see `sr_lib.train.optimise`)."""
        chosen = [names] if isinstance(names, str) else names
        return optimise(loss, [self.optimizers[name] for name in chosen], clip_grad_norm=self.options.clip_grad_norm)

    def prepare(self, sampler: Any, *, seed: int) -> None:
        """Hook run once before training (fresh or resumed). Default: nothing."""

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        raise NotImplementedError

    def critic_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        raise NotImplementedError(f"{self.name} sets critic_steps but has no critic_step")

    def update_ema(self) -> None:
        if self.ema is not None:
            self.ema.update(self.nets["generator"])

    def generator(self) -> nn.Module:
        """The generator to use now: its EMA at inference when there is one."""
        if self.ema is not None and not self.nets["generator"].training:
            return self.ema.net
        return self.nets["generator"]

    @property
    def total_steps(self) -> int:
        return int(self.options.steps)

    def settings(self, context: FitContext) -> TrainSettings:
        profile = self.profile
        return TrainSettings(
            steps=self.options.steps, batch_size=self.options.batch_size, val_every=profile.val_every,
            checkpoint_every=profile.checkpoint_every, seed=context.seed, patience=self.options.patience,
            monitor_from=self.monitor_from, schedule=self.options.schedule,
        )

    def fit(self, data: TrainData, context: FitContext) -> dict[str, Any]:
        from sr_lib.data import make_sampler

        device = context.runtime.device
        preload = context.runtime.effective()["preload"]  # off: volumes in host memory, each batch copied over
        sampler = make_sampler(data.train, self.task, self.profile, device if preload else "cpu", pairing=data.pairing)
        val_batch = make_sampler(data.val, self.task, self.profile, device).sample(
            4 * self.options.batch_size, torch.Generator().manual_seed(context.seed))
        result = train(self, sampler, self.settings(context), runtime=context.runtime, run_dir=context.run_dir,
                       val_batch=val_batch, progress=context.progress)
        self.train_mode(False)
        return {"steps_done": result.steps_done, "resumed_from": result.resumed_from,
                "best_step": result.best_step, "stopped_early": result.stopped_early}

    # -- inference
    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """LR batch (N, 1, ...) -> HR batch with the generator, in the current mode."""
        raise NotImplementedError

    @torch.no_grad()
    def predict_batch(self, lr: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Inference on a batch: eval mode, autocast, clamped to [0, 1] (volumes live there)."""
        self.train_mode(False)
        with self.autocast():
            out = self.forward(lr.to(self.runtime.device))
        return out.float().clamp_(0.0, 1.0)

    def predict(self, observation: Observation) -> np.ndarray:
        from sr_lib.infer import predict_volume

        return predict_volume(self.predict_batch, observation.lr, task=self.task, batch_size=self.profile.infer_batch,
                              patch_size=self.profile.infer_patch_3d, device=self.runtime.device)

    # -- state
    def weights(self) -> dict[str, Any]:
        """Copies of the weights that inference uses (nets and EMA), on the CPU."""
        nets = {name: {k: v.detach().cpu().clone() for k, v in net.state_dict().items()} for name, net in self.nets.items()}
        if self.ema is not None:
            nets["ema"] = {k: v.detach().cpu().clone() for k, v in self.ema.net.state_dict().items()}
        return nets

    def load_weights(self, weights: Mapping[str, Any]) -> None:
        for name, net in self.nets.items():
            net.load_state_dict(weights[name])
        if self.ema is not None:
            self.ema.net.load_state_dict(weights["ema"])

    def training_state(self) -> dict[str, Any]:
        return {"weights": self.weights(), "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()}}

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        self.load_weights(state["weights"])
        for name, optimiser in self.optimizers.items():
            optimiser.load_state_dict(state["optimizers"][name])
        self.to(self.runtime)

    WEIGHTS = "weights.pt"

    def save(self, directory: Path) -> None:
        with atomic_path(Path(directory) / self.WEIGHTS) as tmp:
            torch.save({"method": self.name, "weights": self.weights()}, tmp)

    def load(self, directory: Path) -> None:
        path = Path(directory) / self.WEIGHTS
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if state.get("method") != self.name:
                raise ModelError(f"{path}: weights of {state.get('method')!r}, not {self.name!r}")
            self.load_weights(state["weights"])
        except ModelError:
            raise
        except Exception as err:  # missing file, corrupt zip, wrong keys or shapes
            first = (str(err).splitlines() or [type(err).__name__])[0]
            raise ModelError(f"{path}: cannot load weights ({first})") from None
        for name, tensors in self.weights().items():
            if any(t.is_floating_point() and not torch.isfinite(t).all() for t in tensors.values()):
                raise ModelError(f"{path}: net {name} has NaN or infinite weights")
        self.to(self.runtime)


# ----------------------------------------------------------------------------- presets


def preset(base: type[Method], name: str, summary: str, **defaults: Any) -> type[Method]:
    """A paper's named configuration of `base` (e.g. the 7T paper's "model 4"): the same
    code under its own registered name, with `defaults` replacing the option defaults. The
    profile's values and the user's `--option`s still apply on top, and a run folder and the
    tables carry the preset's name. `preset_of` and `preset_options` say what it is."""
    fields = {f.name: f for f in dataclasses.fields(base.Options)}
    unknown = sorted(set(defaults) - set(fields))
    if unknown:
        raise TypeError(f"preset {name}: {base.name} has no option(s) {', '.join(unknown)}")
    options = dataclasses.make_dataclass(
        f"{base.Options.__name__}_{name.replace('-', '_')}",
        [(key, fields[key].type, dataclasses.field(default=value)) for key, value in defaults.items()],
        bases=(base.Options,), frozen=True)
    options.__doc__ = f"{base.Options.__name__} with the {name} preset's defaults: " + ", ".join(
        f"{k}={v!r}" for k, v in defaults.items())
    attributes = {"name": name, "summary": summary, "Options": options, "preset_of": base.name,
                  "preset_options": dict(defaults), "__doc__": f"{summary}\n\nPreset of `{base.name}`; see {base.__name__}."}
    return type(f"{base.__name__}_{name.replace('-', '_')}", (base,), attributes)


# ----------------------------------------------------------------------------- saving a whole model


def save_model(method: Method, directory: str | os.PathLike, identity: Mapping[str, Any]) -> Path:
    """`method.save` into `directory` plus `model.json` recording the run identity it was
    trained for, so `load_model` can refuse a model copied from another run."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    method.save(directory)
    write_json(directory / MODEL_META, {"method": method.name, "identity": dict(identity)})
    return directory


def load_model(method: Method, directory: str | os.PathLike, identity: Mapping[str, Any]) -> None:
    """Load `method`'s state from `directory` after checking it was trained for `identity`."""
    directory = Path(directory)
    meta_path = directory / MODEL_META
    if not meta_path.exists():
        raise ModelError(f"{directory}: no trained model here (no {MODEL_META})")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        saved = meta["identity"]
    except (ValueError, KeyError, TypeError) as err:
        raise ModelError(f"{meta_path}: not a model description ({type(err).__name__})") from None
    expected = json.loads(json.dumps(dict(identity), default=str))
    if saved != expected:
        differ = sorted(k for k in set(saved) | set(expected) if saved.get(k) != expected.get(k))
        raise ModelError(f"{meta_path}: model was trained for another configuration (differs in {', '.join(differ)})")
    method.load(directory)
