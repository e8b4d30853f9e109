"""The one training loop: seeding, device, AMP, LR schedule, validation, CSV log,
atomic checkpoints and resume. Every learned method trains through `train`.

Resuming restores the nets, optimisers, the patch sampler's generator and the global
torch RNG, so an interrupted run continues to the same weights an uninterrupted one
reaches (on CPU; CUDA kernels may not be bit-deterministic).
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from sr_lib.atomic import atomic_path
from sr_lib.methods.base import LearnedMethod
from sr_lib.metrics import psnr_torch, ssim_torch

CHECKPOINT_FORMAT = 1
CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "log.csv"
SCHEDULES = ("constant", "step", "linear", "cosine")


class TrainingInterrupted(KeyboardInterrupt):
    """Raised after SIGINT/SIGTERM once the loop has saved a checkpoint (a KeyboardInterrupt,
    so `except Exception` in sweeps does not swallow it)."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    steps: int
    batch_size: int
    lr: float
    schedule: str = "constant"
    val_every: int = 100
    checkpoint_every: int = 100
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bf16 autocast, used on CUDA only
    final_lr: float = 2e-6  # 'linear' decays to this (GAN-CPCE/GAN-CIRCLE), 'cosine' to final_lr * 1e-4 / 2e-6

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of {SCHEDULES}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be positive, got {self.steps} and {self.batch_size}")


def lr_at(settings: TrainSettings, step: int) -> float:
    """Learning rate for `step` (0-based).

    constant; step: halve every quarter of training; linear: constant for the first half,
    then linear to `final_lr` (GAN-CPCE / GAN-CIRCLE: 1e-4 for 50 epochs, then to 2e-6);
    cosine: from `lr` to lr * 1e-4 (UDEAN: 1e-4 -> 1e-8).
    """
    progress = step / max(settings.steps - 1, 1)
    if settings.schedule == "constant":
        return settings.lr
    if settings.schedule == "step":
        return settings.lr * 0.5 ** min(int(progress * 4), 3)
    if settings.schedule == "linear":
        if progress <= 0.5:
            return settings.lr
        return settings.lr + (settings.final_lr - settings.lr) * (progress - 0.5) / 0.5
    low = settings.lr * 1e-4
    return low + 0.5 * (settings.lr - low) * (1 + math.cos(math.pi * progress))


def pick_device(name: str = "auto") -> torch.device:
    """'auto' -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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


def save_checkpoint(path: Path, method: LearnedMethod, step: int, generator: torch.Generator, extra: dict[str, Any]) -> None:
    """Write nets, optimisers, RNG states and `extra` (JSON-like) atomically."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "method": method.name,
        "step": step,
        **method.state_dict(),
        "rng": {"sampler": generator.get_state(), "torch": torch.get_rng_state()},
        **extra,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, *, method_name: str | None = None) -> dict[str, Any]:
    """Read a checkpoint with `weights_only=True`; check its format and method."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no checkpoint here")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt zip, pickle of a non-allowed type, ...
        raise CheckpointError(f"{path}: unreadable checkpoint ({str(err).splitlines()[0] if str(err) else type(err).__name__})") from None
    if not isinstance(state, dict) or "format" not in state:
        raise CheckpointError(f"{path}: not an sr_lib checkpoint")
    if state["format"] > CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {state['format']} is newer than this sr_lib ({CHECKPOINT_FORMAT}); upgrade sr_lib")
    if method_name is not None and state.get("method") != method_name:
        raise CheckpointError(f"{path}: checkpoint is for method {state.get('method')!r}, not {method_name!r}")
    return state


@dataclasses.dataclass
class TrainResult:
    log: pd.DataFrame
    steps_done: int
    resumed_from: int


def train(
    method: LearnedMethod,
    sampler: Any,
    settings: TrainSettings,
    *,
    run_dir: str | os.PathLike | None = None,
    val_batch: dict[str, torch.Tensor] | None = None,
    extra_state: dict[str, Any] | None = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> TrainResult:
    """Train `method` on batches from `sampler.sample(batch_size, generator)`.

    With `run_dir`, checkpoints (`checkpoint.pt`) and the log (`log.csv`) are written there
    every `checkpoint_every` steps and at the end, and an existing checkpoint is resumed.
    `val_batch` (lr, hr) is scored every `val_every` steps. `stop_after` ends the loop
    early after that many steps, checkpointing as an interruption would (tests use it).
    SIGINT/SIGTERM save a checkpoint and raise `TrainingInterrupted`.
    """
    device = pick_device(settings.device)
    seed_everything(settings.seed)
    method.to(device, amp=settings.amp)
    method.prepare(sampler, seed=settings.seed)  # before any RNG state is restored, so resume sees the same
    generator = torch.Generator().manual_seed(settings.seed)
    run_dir = Path(run_dir) if run_dir is not None else None
    checkpoint = run_dir / CHECKPOINT_NAME if run_dir else None
    rows: list[dict[str, float]] = []
    start = 0
    if checkpoint is not None and checkpoint.exists():
        state = load_checkpoint(checkpoint, method_name=method.name)
        method.load_state_dict(state)
        generator.set_state(state["rng"]["sampler"])
        torch.set_rng_state(state["rng"]["torch"])
        start = int(state["step"])
        if (run_dir / LOG_NAME).exists():
            rows = pd.read_csv(run_dir / LOG_NAME).query("step <= @start").to_dict("records")
    extra = dict(extra_state or {})

    def save(step: int) -> None:
        if checkpoint is None:
            return
        save_checkpoint(checkpoint, method, step, generator, extra)
        with atomic_path(run_dir / LOG_NAME) as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)

    last = settings.steps if stop_after is None else min(settings.steps, start + stop_after)
    bar = tqdm(range(start, last), initial=start, total=settings.steps, desc=method.name, disable=not progress, leave=False)
    done = start
    with stop_on_signals() as signals:
        for step in bar:
            lr = lr_at(settings, step)
            for optimiser in method.optimizers.values():
                for group in optimiser.param_groups:
                    group["lr"] = lr
            method.train_mode(True)
            batch = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in sampler.sample(settings.batch_size, generator).items()}
            losses = method.training_step(batch, step, settings.steps)
            row = {"step": step + 1, "lr": lr, **losses}
            if val_batch is not None and ((step + 1) % settings.val_every == 0 or step + 1 == settings.steps):
                row.update(validate(method, val_batch))
            rows.append(row)
            bar.set_postfix({k: f"{v:.4g}" for k, v in losses.items()}, refresh=False)
            done = step + 1
            if done % settings.checkpoint_every == 0 or done == settings.steps:
                save(done)
            if signals["stop"]:
                save(done)
                raise TrainingInterrupted(f"training of {method.name} interrupted at step {done}; checkpoint saved")
    bar.close()
    if done < settings.steps:
        save(done)
    return TrainResult(log=pd.DataFrame(rows), steps_done=done, resumed_from=start)


def validate(method: LearnedMethod, val_batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean PSNR/SSIM of the method's predictions on a fixed validation batch."""
    pred = method.predict_batch(val_batch["lr"])
    target = val_batch["hr"].to(pred.device)
    return {
        "val_psnr": float(psnr_torch(pred, target).mean()),
        "val_ssim": float(ssim_torch(pred, target).mean()),
    }
