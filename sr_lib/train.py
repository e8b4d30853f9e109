"""The training engine: the one loop every learned method trains through.

What it does so methods do not have to: seeding, the runtime (device, AMP, rank), one
`optimise` call per network (backward, gradient clipping, optimiser step), a `frozen`
context that always restores `requires_grad`, per-network learning rates and schedules (a
schedule scales each parameter group's own initial rate), critic iterations that draw fresh
batches, an optional EMA of the generator, validation, early stopping on validation PSNR
with patience (the best weights are restored at the end), a CSV log, atomic checkpoints,
exact resume, and progress hooks (`progress_hook`) through which the report shows the step.

Resuming restores the nets, optimisers, EMA, early-stopping state, the patch sampler's
generator and the global torch RNG, so an interrupted run continues to the same weights an
uninterrupted one reaches (on CPU; CUDA kernels may not be bit-deterministic).

One run over several processes (torchrun, `sr_lib.distributed`) is this same loop: each rank
trains on its shard of the same global batch, `optimise` averages the gradients over the
ranks, and only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import os
import random
import re
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from sr_lib import distributed
from sr_lib.atomic import atomic_path
from sr_lib.metrics import psnr_torch, ssim_torch

if TYPE_CHECKING:
    from sr_lib.methods.base import NetMethod

CHECKPOINT_FORMAT = 2
CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "log.csv"
SCHEDULES = ("constant", "step", "linear", "cosine")
DEVICE_ENV = "SR_LIB_DEVICE"  # what 'auto' means in this process and its children (`sr-lib --device` sets it)

logger = logging.getLogger(__name__)


class TrainingInterrupted(KeyboardInterrupt):
    """Raised after SIGINT/SIGTERM once the loop has saved a checkpoint (a KeyboardInterrupt,
    so `except Exception` in sweeps does not swallow it)."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


# ----------------------------------------------------------------------------- runtime


SWITCHES_ENV = "SR_LIB_SWITCHES"  # `sr-lib --switch NAME=on|off` sets it, so report workers and kernels follow


@dataclasses.dataclass(frozen=True)
class Switches:
    """The speed switches of the GPU path, each measured by `sr-lib bench --switches`.

    Each is on by default where it helps and off where it does not; a switch that does not
    apply on a device (bf16 autocast and cuDNN on a CPU) does nothing there. None changes
    what a run is (its identity): they change speed, and bf16 the last bits of the numbers.

    - `amp`: bf16 autocast of forward passes (CUDA only; bf16 needs no loss scaling).
    - `channels_last`: 2D nets and their batches in NHWC, the layout of tensor-core and oneDNN
      convolutions (on 2 CPU cores too: SRCNN 76 -> 43 ms per quick training step). Critics
      under a gradient penalty stay NCHW (`NetMethod.double_backward_nets`).
    - `channels_last_3d`: 3D nets in NDHWC (on 2 CPU cores too: a quick DCSRN step 1.41 ->
      1.01 s, 3D SRCNN 1.50 -> 1.15 s).
    - `preload`: training volumes live on the device and patches are cut there, so no CPU
      loader feeds the GPU; off, volumes stay in host memory and each batch is copied over.
    - `cudnn_benchmark`: cuDNN picks the fastest convolution algorithm per shape (patch sizes
      are fixed, so it tunes once).
    - `fused_adam`: Adam's update as one fused kernel per step (`torch.optim.Adam(fused=True)`).
    - `compile`: `torch.compile` the nets (off by default: minutes of compilation per run,
      which the quick profile's short runs never earn back).
    """

    amp: bool = True
    channels_last: bool = True
    channels_last_3d: bool = True
    preload: bool = True
    cudnn_benchmark: bool = True
    fused_adam: bool = True
    compile: bool = False

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def parse(cls, text: str | Sequence[str] | None, base: "Switches | None" = None) -> "Switches":
        """`base` (default: all defaults) with `NAME=on|off` settings applied, given as a list or
        one comma-separated string (the form `$SR_LIB_SWITCHES` holds); a bad one is a ValueError."""
        items = text.split(",") if isinstance(text, str) else list(text or [])
        values: dict[str, bool] = {}
        for item in (i.strip() for i in items):
            if not item:
                continue
            name, sep, value = item.partition("=")
            name, value = name.strip().replace("-", "_"), value.strip().lower()
            if name not in cls.names():
                raise ValueError(f"switch {item!r}: unknown name; choose from {', '.join(cls.names())}")
            if not sep or value not in ("on", "off", "1", "0", "true", "false"):
                raise ValueError(f"switch {item!r}: expected {name}=on or {name}=off")
            values[name] = value in ("on", "1", "true")
        return dataclasses.replace(base or cls(), **values)

    @classmethod
    def from_env(cls) -> "Switches":
        """The defaults with `$SR_LIB_SWITCHES` applied."""
        return cls.parse(os.environ.get(SWITCHES_ENV))

    def changed(self) -> str:
        """The settings that differ from the defaults, as `parse` reads them ('' when none)."""
        default = Switches()
        return ",".join(f"{name}={'on' if getattr(self, name) else 'off'}"
                        for name in self.names() if getattr(self, name) != getattr(default, name))

    def effective(self, device: torch.device) -> dict[str, bool]:
        """What each switch does on `device` (a run's status records it)."""
        cuda = device.type == "cuda"
        return {"amp": self.amp and cuda, "channels_last": self.channels_last,
                "channels_last_3d": self.channels_last_3d, "preload": self.preload and cuda,
                "cudnn_benchmark": self.cudnn_benchmark and cuda, "fused_adam": self.fused_adam,
                "compile": self.compile}


@dataclasses.dataclass(frozen=True)
class Runtime:
    """Where and how training runs: device, bf16 autocast (CUDA only), the speed `switches`,
    and the process's rank / world size, which multi-GPU training fills in; one process: 0 / 1."""

    device: torch.device = torch.device("cpu")
    amp: bool = False
    rank: int = 0
    world_size: int = 1
    switches: Switches = Switches()

    @staticmethod
    def auto(device: str = "auto", *, amp: bool | None = None, switches: Switches | None = None) -> "Runtime":
        """'auto' -> CUDA when available, else CPU; `switches` default to `$SR_LIB_SWITCHES`
        over the defaults; AMP (`amp`, else the `amp` switch) only where it helps (CUDA)."""
        dev = pick_device(device)
        switches = switches or Switches.from_env()
        amp = switches.amp if amp is None else amp
        return Runtime(dev, amp and dev.type == "cuda", switches=dataclasses.replace(switches, amp=amp))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA when AMP is on; a no-op otherwise."""
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def effective(self) -> dict[str, bool]:
        """The switches as they act on this device (recorded in a run's status)."""
        return {**self.switches.effective(self.device), "amp": self.amp}


_DEVICE_NAME = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_device_name(name: str) -> str:
    """`name` when it is one of auto, cpu, cuda, cuda:N; else a ValueError naming it."""
    if not isinstance(name, str) or not _DEVICE_NAME.match(name):
        raise ValueError(f"device {name!r}: expected auto, cpu, cuda or cuda:N")
    return name


def pick_device(name: str = "auto") -> torch.device:
    """The torch device for `name` (auto, cpu, cuda, cuda:N). 'auto' is `$SR_LIB_DEVICE` when set
    (so a notebook kernel or worker process follows `sr-lib --device`), else CUDA when
    available, else CPU. A CUDA device this machine lacks is a ValueError naming it, raised
    here rather than at the first tensor moved there."""
    if check_device_name(name) == "auto":
        name = check_device_name(os.environ.get(DEVICE_ENV) or "auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r}: CUDA is not available on this machine (torch {torch.__version__})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- steps


@contextmanager
def frozen(*nets: nn.Module) -> Iterator[None]:
    """Turn off gradients of `nets` (e.g. the discriminator during the generator step) and
    restore each parameter's own `requires_grad` afterwards, also when the body raises."""
    params = [p for net in nets for p in net.parameters()]
    saved = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in zip(params, saved):
            p.requires_grad_(flag)


def optimise(loss: torch.Tensor, optimisers: torch.optim.Optimizer | Sequence[torch.optim.Optimizer], *,
             clip_grad_norm: float | None = None) -> float:
    """The one place a loss becomes a step: zero the gradients, backward, average them over
    the processes of a distributed run (`sr_lib.distributed`: one all-reduce), clip the gradient
    norm of the optimisers' parameters together (when `clip_grad_norm` is set), step each.
    Several optimisers take one loss when several nets learn from it (GAN-CIRCLE's G and F,
    each with its own Adam). bf16 autocast needs no loss scaling. Returns the loss as a float."""
    group = [optimisers] if isinstance(optimisers, torch.optim.Optimizer) else list(optimisers)
    for optimiser in group:
        optimiser.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for optimiser in group for g in optimiser.param_groups for p in g["params"]]
    if distributed.is_active():  # one run over several processes: average gradients (see sr_lib.distributed)
        distributed.all_reduce_gradients(params)
    if clip_grad_norm:
        torch.nn.utils.clip_grad_norm_(params, clip_grad_norm)
    for optimiser in group:
        optimiser.step()
    return float(loss.detach())


class EMA:
    """Exponential moving average of a net's weights (float buffers copied as they are):
    ``ema = decay * ema + (1 - decay) * weights`` after every generator step."""

    def __init__(self, net: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.net = copy.deepcopy(net).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        for ema_value, value in zip(self.net.state_dict().values(), net.state_dict().values()):
            if ema_value.dtype.is_floating_point:
                ema_value.lerp_(value.to(ema_value.dtype), 1.0 - self.decay)
            else:
                ema_value.copy_(value)


# ----------------------------------------------------------------------------- settings


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """How long and how to train. `steps` is the cap; with `patience` > 0 training stops
    after `patience` validations without a gain of `min_delta` dB in validation PSNR, and
    the best weights are restored. Validations before `monitor_from` (a fraction of `steps`,
    e.g. a GAN's pixel-loss warm-up) are logged but not monitored."""

    steps: int
    batch_size: int
    val_every: int = 100
    checkpoint_every: int = 100
    seed: int = 0
    patience: int = 0
    min_delta: float = 0.01
    monitor_from: float = 0.0
    schedule: str = "constant"
    final_lr: float = 2e-6  # 'linear' decays to this (Lyu et al. 2018); 'cosine' to lr * 1e-4 (Liu et al. 2022)

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of {SCHEDULES}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be positive, got {self.steps} and {self.batch_size}")
        if self.patience < 0 or self.val_every < 1 or self.checkpoint_every < 1:
            raise ValueError("patience must be >= 0, val_every and checkpoint_every >= 1")


def schedule_factor(schedule: str, step: int, steps: int, *, base_lr: float = 1.0, final_lr: float = 2e-6) -> float:
    """Multiplier of a parameter group's initial learning rate at `step` (0-based).

    constant: 1; step: halve every quarter of training; linear: 1 for the first half, then
    linear to `final_lr / base_lr` (Lyu et al. 2018: 1e-4 for 50 epochs, then to 2e-6);
    cosine: from 1 to 1e-4 (Liu et al. 2022: 1e-4 -> 1e-8).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
    progress = step / max(steps - 1, 1)
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        return 0.5 ** min(int(progress * 4), 3)
    if schedule == "linear":
        if progress <= 0.5:
            return 1.0
        end = final_lr / base_lr
        return 1.0 + (end - 1.0) * (progress - 0.5) / 0.5
    low = 1e-4
    return low + 0.5 * (1 - low) * (1 + math.cos(math.pi * progress))


def set_learning_rates(method: "NetMethod", settings: TrainSettings, step: int) -> dict[str, float]:
    """Scale every parameter group's `initial_lr` by its net's schedule; returns the rates."""
    rates = {}
    for name, optimiser in method.optimizers.items():
        schedule = method.schedules.get(name, settings.schedule)
        for group in optimiser.param_groups:
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = group["initial_lr"] * schedule_factor(
                schedule, step, settings.steps, base_lr=group["initial_lr"], final_lr=settings.final_lr)
        rates[name] = optimiser.param_groups[0]["lr"]
    return rates


# ----------------------------------------------------------------------------- progress hooks

ProgressHook = Callable[[int, int, bool], None]  # (steps done, step cap, whether training has ended)
_PROGRESS_HOOKS: list[ProgressHook] = []


@contextmanager
def progress_hook(hook: ProgressHook) -> Iterator[None]:
    """While inside, every `train` in this process calls `hook(steps_done, steps, False)` after
    each step and `hook(steps_done, steps, True)` once training has ended (cap reached or
    stopped early). For callers that cannot reach `train`'s arguments: the report's workers
    train through `run_experiment` and a method's `fit`. A hook should be quick; one that
    raises is logged and dropped, and never stops training."""
    _PROGRESS_HOOKS.append(hook)
    try:
        yield
    finally:
        if hook in _PROGRESS_HOOKS:
            _PROGRESS_HOOKS.remove(hook)


def _report_progress(done: int, steps: int, ended: bool) -> None:
    for hook in list(_PROGRESS_HOOKS):
        try:
            hook(done, steps, ended)
        except Exception as err:  # a broken hook must not cost a run
            logger.warning("progress hook %r failed (%s); it is dropped", hook, err)
            _PROGRESS_HOOKS.remove(hook)


# ----------------------------------------------------------------------------- signals and checkpoints


@contextmanager
def stop_on_signals() -> Iterator[dict[str, bool]]:
    """Turn SIGINT/SIGTERM into a flag the loop checks between steps (main thread only)."""
    flag = {"stop": False}

    def handler(signum, frame):  # noqa: ARG001 - signal handler signature
        flag["stop"] = True

    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    else:
        previous = {}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write a training state atomically (tensors, numbers, strings, lists and dicts only)."""
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)


def load_checkpoint(path: Path, *, method_name: str | None = None) -> dict[str, Any]:
    """Read a checkpoint with `weights_only=True`; check its format and method."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no checkpoint here")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt zip, pickle of a non-allowed type, ...
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: unreadable checkpoint ({first})") from None
    if not isinstance(state, dict) or "format" not in state:
        raise CheckpointError(f"{path}: not an sr_lib checkpoint")
    if state["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {state['format']}, this sr_lib reads {CHECKPOINT_FORMAT}; retrain")
    if method_name is not None and state.get("method") != method_name:
        raise CheckpointError(f"{path}: checkpoint is for method {state.get('method')!r}, not {method_name!r}")
    return state


# ----------------------------------------------------------------------------- the loop


@dataclasses.dataclass
class TrainResult:
    log: pd.DataFrame
    steps_done: int
    resumed_from: int
    best_step: int | None = None  # the step whose weights were kept (early stopping)
    stopped_early: bool = False


@dataclasses.dataclass
class _Monitor:
    """Early-stopping state: best validation PSNR so far, its step and weights."""

    best_psnr: float = -math.inf
    best_step: int | None = None
    bad_validations: int = 0
    best_state: dict[str, Any] | None = None
    stopped: bool = False

    def state_dict(self) -> dict[str, Any]:
        return {"best_psnr": self.best_psnr, "best_step": -1 if self.best_step is None else self.best_step,
                "bad_validations": self.bad_validations, "best_state": self.best_state or {}, "stopped": self.stopped}

    @staticmethod
    def from_state(state: dict[str, Any]) -> "_Monitor":
        step = int(state["best_step"])
        return _Monitor(float(state["best_psnr"]), None if step < 0 else step, int(state["bad_validations"]),
                        state["best_state"] or None, bool(state["stopped"]))


def train(
    method: "NetMethod",
    sampler: Any,
    settings: TrainSettings,
    *,
    runtime: Runtime | None = None,
    run_dir: str | os.PathLike | None = None,
    val_batch: dict[str, torch.Tensor] | None = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> TrainResult:
    """Train `method` on batches from `sampler.sample(batch_size, generator)`.

    Per step: each net's learning rate from its schedule; `method.critic_steps` calls of
    `method.critic_step` on fresh batches; one `method.training_step` on a fresh batch; the
    EMA update. `val_batch` (lr, hr) is scored every `val_every` steps and drives early
    stopping. With `run_dir`, `checkpoint.pt` and `log.csv` are written there every
    `checkpoint_every` steps and at the end, and an existing checkpoint is resumed.
    `stop_after` ends the loop after that many steps as an interruption would (tests).
    SIGINT/SIGTERM save a checkpoint and raise `TrainingInterrupted`. With a runtime of
    several ranks (`sr_lib.distributed.init`), each rank draws the same global batch and keeps
    its rows r*B/W .. (r+1)*B/W, so the weights match a one-process run; see `sr_lib.distributed`.
    """
    runtime = runtime or Runtime.auto()
    distributed.check_runtime(runtime, settings.batch_size)
    seed_everything(settings.seed)
    method.to(runtime)
    if runtime.device.type == "cuda":
        torch.backends.cudnn.benchmark = runtime.effective()["cudnn_benchmark"]  # fixed patch sizes: tune once
    with distributed.rank_zero_first():  # rank 0 fills caches (the MRI feature net) before other ranks read them
        method.prepare(sampler, seed=settings.seed)  # before any RNG state is restored, so resume sees the same
    generator = torch.Generator().manual_seed(settings.seed)
    run_dir = Path(run_dir) if run_dir is not None else None
    checkpoint = run_dir / CHECKPOINT_NAME if run_dir else None
    rows: list[dict[str, float]] = []
    monitor = _Monitor()
    start = 0
    if checkpoint is not None and checkpoint.exists():
        state = load_checkpoint(checkpoint, method_name=method.name)
        method.load_training_state(state["method_state"])
        monitor = _Monitor.from_state(state["monitor"])
        generator.set_state(state["rng"]["sampler"])
        torch.set_rng_state(state["rng"]["torch"])
        start = int(state["step"])
        if (run_dir / LOG_NAME).exists():
            rows = pd.read_csv(run_dir / LOG_NAME).query("step <= @start").to_dict("records")
    if distributed.is_active():  # rank 0's weights and RNG everywhere; every rank resumed from the same step
        distributed.start_training([*method.nets.values(), *([method.ema.net] if method.ema else [])], start, run_dir)

    def save(step: int) -> None:
        if checkpoint is None or not runtime.is_main:
            return
        save_checkpoint(checkpoint, {
            "method": method.name, "step": step, "method_state": method.training_state(),
            "monitor": monitor.state_dict(),
            "rng": {"sampler": generator.get_state(), "torch": torch.get_rng_state()},
        })
        with atomic_path(run_dir / LOG_NAME) as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)

    def draw() -> dict[str, torch.Tensor]:
        batch = sampler.sample(settings.batch_size, generator)
        batch = distributed.shard(batch, runtime.rank, runtime.world_size)  # this rank's rows of the global batch
        return {k: (v.to(runtime.device) if torch.is_tensor(v) else v) for k, v in batch.items()}

    last = settings.steps if stop_after is None else min(settings.steps, start + stop_after)
    bar = tqdm(range(start, last), initial=start, total=settings.steps, desc=method.name, disable=not progress, leave=False)
    done = start
    with stop_on_signals() as signals:
        for step in bar:
            if monitor.stopped:
                break
            rates = set_learning_rates(method, settings, step)
            method.train_mode(True)
            losses: dict[str, float] = {}
            for _ in range(method.critic_steps):
                losses.update(method.critic_step(draw(), step))
            losses.update(method.training_step(draw(), step))
            if distributed.is_active():
                distributed.broadcast_buffers(method.nets.values())  # BatchNorm statistics: rank 0's everywhere
            method.update_ema()
            losses = distributed.average_floats(losses)  # the whole batch's losses, as one process logs them
            row = {"step": step + 1, **{f"lr_{k}": v for k, v in rates.items()}, **losses}
            if val_batch is not None and ((step + 1) % settings.val_every == 0 or step + 1 == settings.steps):
                row.update(distributed.average_floats(validate(method, val_batch)))  # equal on every rank
                _monitor(monitor, method, settings, step + 1, row["val_psnr"])
            rows.append(row)
            bar.set_postfix({k: f"{v:.4g}" for k, v in losses.items()}, refresh=False)
            done = step + 1
            _report_progress(done, settings.steps, False)
            if done % settings.checkpoint_every == 0 or done == settings.steps or monitor.stopped:
                save(done)
            if distributed.any_rank(signals["stop"]):  # every rank stops after the same step
                save(done)
                raise TrainingInterrupted(f"training of {method.name} interrupted at step {done}; checkpoint saved")
    bar.close()
    finished = done >= settings.steps or monitor.stopped
    if not finished:  # stop_after: leave a resumable checkpoint
        save(done)
    elif monitor.best_state is not None:
        method.load_weights(monitor.best_state)
    if finished:
        _report_progress(done, settings.steps, True)
    return TrainResult(pd.DataFrame(rows), done, start, monitor.best_step, monitor.stopped)


def _monitor(monitor: _Monitor, method: "NetMethod", settings: TrainSettings, step: int, psnr: float) -> None:
    """Early stopping: remember the best weights; stop after `patience` validations without gain."""
    if step < settings.monitor_from * settings.steps or settings.patience == 0 and settings.monitor_from == 0:
        return
    if psnr > monitor.best_psnr + settings.min_delta or monitor.best_step is None:
        monitor.best_psnr, monitor.best_step, monitor.bad_validations = psnr, step, 0
        monitor.best_state = method.weights()
    else:
        monitor.bad_validations += 1
        if settings.patience and monitor.bad_validations >= settings.patience:
            monitor.stopped = True


def validate(method: "NetMethod", val_batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean PSNR/SSIM of the method's predictions on a fixed validation batch."""
    pred = method.predict_batch(val_batch["lr"], mask=val_batch.get("mask"))
    target = val_batch["hr"].to(pred.device)
    return {
        "val_psnr": float(psnr_torch(pred, target).mean()),
        "val_ssim": float(ssim_torch(pred, target).mean()),
    }
