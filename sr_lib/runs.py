"""Runs: one (dataset, contrast, scenario, scale, pairing, method, profile, seed) -> a folder
with `config.json`, `checkpoint.pt`, `log.csv`, per-test-subject `metrics.csv`, test
predictions as NIfTI and `status.json`.

A finished run whose folder holds the same config is reused, not retrained. A run that
raises is recorded as failed (with the one-line error) instead of sinking a sweep.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from sr_lib.atomic import atomic_path, write_json
from sr_lib.data import PairedPatchSampler, UnpairedPatchSampler, load_dataset, split_subjects
from sr_lib.degrade import PAIRINGS, degrade_volume, get_scenario, make_training_pairs
from sr_lib.io import Volume, VolumeError, denormalise, load_volume, save_volume
from sr_lib.methods import LearnedMethod, Method, build, method_spec
from sr_lib.metrics import evaluate, foreground_mask
from sr_lib.profiles import get_profile
from sr_lib.train import CHECKPOINT_NAME, TrainSettings, load_checkpoint, pick_device, seed_everything, train

STATUS_NAME = "status.json"
CONFIG_NAME = "config.json"
METRICS_NAME = "metrics.csv"


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run; its hash names the run folder."""

    method: str
    scenario: str = "kspace-2x"
    contrast: str = "T2"
    scale: int = 2
    pairing: str = "paired"
    profile: str = "quick"
    seed: int = 0
    dataset: str = "phantom"
    root: str | None = None
    schedule: str = "constant"
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        method_spec(self.method)
        get_profile(self.profile)
        get_scenario(self.scenario, scale=self.scale)
        if self.pairing not in PAIRINGS:
            raise ValueError(f"unknown pairing {self.pairing!r}; choose one of {PAIRINGS}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def key(self) -> str:
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:10]

    @property
    def folder(self) -> str:
        return f"{self.scenario}_{self.contrast}_x{self.scale}_{self.pairing}/{self.method}-{self.profile}-seed{self.seed}-{self.key}"


@dataclasses.dataclass
class RunResult:
    config: RunConfig
    folder: Path
    status: str  # "done" or "failed"
    metrics: pd.DataFrame
    log: pd.DataFrame
    info: dict[str, Any]

    @property
    def error(self) -> str | None:
        return self.info.get("error")


@dataclasses.dataclass
class ExperimentData:
    """Normalised HR volumes and their degraded versions for one (dataset, contrast, scenario, ...)."""

    split: Any
    train_pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]
    val_pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]
    test: list[tuple[Volume, Volume, Volume | None]]  # (hr, lr, mask) per test subject
    factors: tuple[int, int, int]  # HR / LR voxel counts per axis (1s on same grid)


def grid_factors(scenario: str, scale: int) -> tuple[int, int, int]:
    """HR / LR voxel counts per axis for a scenario: its factors on a small grid, else ones."""
    scen = get_scenario(scenario, scale=scale)
    return tuple(int(f) for f in scen.factors) if scen.grid == "small" else (1, 1, 1)


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, *stream])


@functools.lru_cache(maxsize=4)
def prepare_data(
    dataset: str, root: str | None, contrast: str, scenario: str, scale: int, pairing: str, profile: str, seed: int
) -> ExperimentData:
    """Load, normalise, split by subject and degrade; cached per process (methods share it)."""
    prof = get_profile(profile)
    data = load_dataset(dataset, root=root, profile=profile, seed=seed).select(contrast)
    split = split_subjects(data.subjects(), n_val=prof.n_val, n_test=prof.n_test, seed=seed)
    scen = get_scenario(scenario, scale=scale)

    def hr(subject: str) -> Volume:
        return data.load(subject, contrast, normalised=True)

    train_hr = [hr(s).data for s in split.train]
    try:
        train_pairs = make_training_pairs(train_hr, scen, pairing, _rng(seed, 1))
    except ValueError as err:
        raise VolumeError(f"{data.path(split.train[0], contrast)} (training subjects): {err}") from None
    val_pairs = make_training_pairs([hr(s).data for s in split.val], scen, "paired", _rng(seed, 2))
    test = []
    for i, subject in enumerate(split.test):
        volume = hr(subject)
        try:
            lr, mask, _ = degrade_volume(volume, scen, _rng(seed, 3, i))
        except ValueError as err:  # e.g. a scale that does not divide the grid
            raise VolumeError(f"{volume.path}: {err}") from None
        test.append((volume, lr, mask))
    return ExperimentData(split, train_pairs, val_pairs, test, grid_factors(scenario, scale))


def sampler_for(pairs, method: LearnedMethod, device: torch.device, *, pairing: str = "paired") -> PairedPatchSampler | UnpairedPatchSampler:
    """A patch sampler over (lr, hr, mask) pairs, shaped for the method's task and profile.

    `unpaired` data (LR and HR from disjoint subjects) gets independent LR and HR patches;
    `paired` and `misaligned` data get patches cut from the same place of each pair."""
    task, profile = method.task, method.profile
    masks = [m for _, _, m in pairs]
    sampler = UnpairedPatchSampler if pairing == "unpaired" else PairedPatchSampler
    return sampler(
        [torch.from_numpy(np.ascontiguousarray(lr)).to(device) for lr, _, _ in pairs],
        [torch.from_numpy(np.ascontiguousarray(hr)).to(device) for _, hr, _ in pairs],
        factors=task.factors,
        patch_size=profile.patch_size if task.spatial_dims == 2 else profile.patch_size_3d,
        spatial_dims=task.spatial_dims,
        axis=task.axis,
        masks=None if any(m is None for m in masks) else [torch.from_numpy(np.ascontiguousarray(m)).to(device) for m in masks],
    )


def run_experiment(config: RunConfig, out_root: str | os.PathLike, *, force: bool = False, progress: bool = True) -> RunResult:
    """Train (if learned) and evaluate `config` under `out_root`; reuse a finished identical run."""
    folder = Path(out_root) / config.folder
    if not force and is_finished(folder, config):
        return load_run(folder)
    if folder.exists() and (force or (folder / STATUS_NAME).exists()):
        # forced, or a finished/failed run that no longer matches: start clean. Only an
        # interrupted run (checkpoint, no status) is resumed.
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / CONFIG_NAME, config.to_dict())
    started = time.time()
    try:
        info = _execute(config, folder, progress=progress)
    except Exception as err:  # one failed method must not sink the report
        info = {"error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
                "traceback": traceback.format_exc(), "status": "failed"}
    info["seconds"] = round(time.time() - started, 2)
    info.setdefault("status", "done")
    write_json(folder / STATUS_NAME, {**info, "config": config.to_dict()})
    return load_run(folder)


def _execute(config: RunConfig, folder: Path, *, progress: bool) -> dict[str, Any]:
    profile = get_profile(config.profile)
    data = prepare_data(config.dataset, config.root, config.contrast, config.scenario, config.scale,
                        config.pairing, config.profile, config.seed)
    seed_everything(config.seed)  # network initialisation is part of the run
    method = build(config.method, factors=data.factors, profile=profile, **config.options)
    info: dict[str, Any] = {"task": dataclasses.asdict(method.task), "train_subjects": list(data.split.train),
                            "test_subjects": list(data.split.test)}
    device = pick_device("auto")
    if isinstance(method, LearnedMethod):
        if config.pairing not in method.pairings:
            raise ValueError(f"{config.method} is supervised: it trains on {' or '.join(method.pairings)} data, not {config.pairing}")
        method.to(device, amp=True)
        sampler = sampler_for(data.train_pairs, method, device, pairing=config.pairing)
        val_batch = sampler_for(data.val_pairs, method, device).sample(4 * profile.batch_size, torch.Generator().manual_seed(config.seed))
        settings = TrainSettings(
            steps=profile.steps, batch_size=profile.batch_size, lr=profile.lr, schedule=config.schedule,
            val_every=profile.val_every, checkpoint_every=profile.checkpoint_every, seed=config.seed,
        )
        started = time.time()
        result = train(method, sampler, settings, run_dir=folder, val_batch=val_batch, progress=progress,
                       extra_state={"config": config.to_dict(), "task": dataclasses.asdict(method.task)})
        info["train_seconds"] = round(time.time() - started, 2)
        info["resumed_from"] = result.resumed_from
    info["method"] = method.describe()
    info["options"] = method.options  # every option with its default: a changed default means a new run
    info["device"] = str(device)
    rows = []
    for hr, lr, _mask in tqdm(data.test, desc=f"{config.method}: test", disable=not progress, leave=False):
        started = time.time()
        pred = method.predict_volume(lr.data)
        seconds = time.time() - started
        scores = evaluate(pred, hr.data, mask=foreground_mask(hr.data))
        rows.append({"subject": hr.subject, **scores, "seconds": round(seconds, 3)})
        predicted = denormalise(hr.replace(data=pred), hr.intensity)
        save_volume(predicted, folder / "predictions" / f"{hr.subject}.nii.gz",
                    description=f"sr_lib {config.method} {config.scenario} x{config.scale}")
    with atomic_path(folder / METRICS_NAME) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    return info


def is_finished(folder: Path, config: RunConfig) -> bool:
    """A finished run of the same config whose method options (defaults included) still match."""
    status = folder / STATUS_NAME
    if not status.exists():
        return False
    saved = json.loads(status.read_text())
    if saved.get("status") != "done" or saved.get("config") != json.loads(json.dumps(config.to_dict(), default=str)):
        return False
    current = build(config.method, factors=grid_factors(config.scenario, config.scale), profile=config.profile, **config.options)
    if saved.get("options") != json.loads(json.dumps(current.options, default=str)):
        return False
    # git keeps a run's config, status and metrics but not its predictions and checkpoint:
    # a run is only reusable while the figures can still be drawn from it
    metrics = folder / METRICS_NAME
    if not metrics.exists():
        return False
    return all((folder / "predictions" / f"{subject}.nii.gz").exists() for subject in pd.read_csv(metrics)["subject"])


def load_run(folder: str | os.PathLike) -> RunResult:
    """Read a run folder back (config, status, metrics, training log)."""
    folder = Path(folder)
    config = RunConfig(**json.loads((folder / CONFIG_NAME).read_text()))
    info = json.loads((folder / STATUS_NAME).read_text()) if (folder / STATUS_NAME).exists() else {"status": "unfinished"}
    metrics = pd.read_csv(folder / METRICS_NAME) if (folder / METRICS_NAME).exists() else pd.DataFrame()
    log = pd.read_csv(folder / "log.csv") if (folder / "log.csv").exists() else pd.DataFrame()
    return RunResult(config, folder, info.get("status", "unfinished"), metrics, log, info)


def find_runs(root: str | os.PathLike) -> list[RunResult]:
    """Every run folder under `root` (those with a config.json), sorted by folder."""
    runs = []
    for path in sorted(Path(root).glob(f"**/{CONFIG_NAME}")):
        try:
            runs.append(load_run(path.parent))
        except (KeyError, ValueError, TypeError) as err:  # e.g. a method that is no longer registered
            warnings.warn(f"{path.parent}: skipped, not a readable run of this sr_lib ({err})", stacklevel=2)
    return runs


def load_trained_method(folder: str | os.PathLike) -> tuple[Method, RunConfig]:
    """Rebuild a run's method and load its checkpoint (weights_only) for inference."""
    folder = Path(folder)
    if not (folder / CONFIG_NAME).exists():
        raise FileNotFoundError(f"{folder}: not a run folder (no {CONFIG_NAME})")
    config = RunConfig(**json.loads((folder / CONFIG_NAME).read_text()))
    method = build(config.method, factors=grid_factors(config.scenario, config.scale), profile=config.profile, **config.options)
    if isinstance(method, LearnedMethod):
        state = load_checkpoint(folder / CHECKPOINT_NAME, method_name=method.name)
        method.load_state_dict(state, optimizers=False)
        method.to(pick_device("auto"), amp=True)  # as in training: bf16 autocast on CUDA
    return method, config


def example_case(result: RunResult, index: int = 0) -> dict[str, Any]:
    """HR, LR (both normalised) and the run's prediction for test subject `index`, plus its scores.

    HR and LR are rebuilt with `prepare_data` (deterministic); the prediction is read from
    the run's NIfTI and mapped back to the HR's [0, 1] scaling.
    """
    c = result.config
    data = prepare_data(c.dataset, c.root, c.contrast, c.scenario, c.scale, c.pairing, c.profile, c.seed)
    hr, lr, mask = data.test[index]
    pred = load_volume(result.folder / "predictions" / f"{hr.subject}.nii.gz")
    scale, offset = hr.intensity.scale, hr.intensity.offset
    row = result.metrics[result.metrics["subject"] == hr.subject].iloc[0]
    return {
        "subject": hr.subject, "hr": hr.data, "lr": lr.data, "mask": None if mask is None else mask.data,
        "prediction": ((pred.data - offset) / scale).astype(np.float32),
        "scores": {"psnr": float(row["psnr"]), "ssim": float(row["ssim"])},
    }
