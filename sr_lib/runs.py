"""Runs: one (dataset, contrast, scenario, scale, pairing, method, profile, seed) -> a run
folder (see `sr_lib.storage`).

`run_experiment` resolves the config once, takes the folder's lock, reuses a finished run of
the same identity, and otherwise prepares the data, fits, saves the model, evaluates and
writes the status. A run that raises is recorded as failed (with the one-line error); a
method that does not support the scenario is recorded as not applicable. Neither sinks a
sweep.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from sr_lib import distributed
from sr_lib.atomic import atomic_path, write_json
from sr_lib.evaluation import evaluate_on_test
from sr_lib.experiment import Experiment, RunConfig
from sr_lib.io import load_volume
from sr_lib.methods import FitContext, Method, ModelError, load_model, save_model
from sr_lib.prepare import data_fingerprint, prepare_data
from sr_lib.storage import (
    CONFIG_NAME, METRICS_NAME, MODEL_DIR, PREDICTIONS, RunFolderError, RunResult, find_runs, load_run, read_config,
    read_status, run_lock,
)
from sr_lib.train import TrainingInterrupted, Runtime, seed_everything

__all__ = ["RunConfig", "RunResult", "run_experiment", "run_folder", "load_run", "find_runs", "load_trained_method",
           "example_case", "is_finished"]


def run_folder(config: RunConfig, out_root: str | os.PathLike) -> Path:
    """Where `config`'s run lives under `out_root` (its name hashes the run's identity)."""
    return Path(out_root) / config.resolve().folder(data_fingerprint(config))


def is_finished(folder: Path, identity: dict[str, Any]) -> bool:
    """A finished run of the same identity whose metrics and predictions are all there (git
    keeps a run's config, status and metrics, not its predictions and model)."""
    try:
        status = read_status(folder)
    except RunFolderError as err:
        warnings.warn(f"{err}; the run will be redone", stacklevel=3)
        return False
    if not status or status.get("identity") != identity:
        return False
    if status["status"] == "n/a":
        return True
    if status["status"] != "done" or not (folder / METRICS_NAME).exists():
        return False
    subjects = status.get("test_subjects", [])
    return bool(subjects) and all((folder / PREDICTIONS / f"{s}.nii.gz").exists() for s in subjects)


def run_experiment(config: RunConfig, out_root: str | os.PathLike, *, force: bool = False, progress: bool = True,
                   runtime: Runtime | None = None) -> RunResult:
    """Train (if learned) and evaluate `config` under `out_root`; reuse a finished identical run.

    Over several processes (a runtime from `sr_lib.distributed.init`; call it on every rank):
    rank 0 alone takes the run lock, decides whether to reuse or (re)start the folder, and
    writes config, model, predictions, metrics and status; every rank trains (resuming from
    the folder's checkpoint, so the folder must be on storage all ranks see), then the other
    ranks wait for rank 0's evaluation and every rank returns the same `RunResult`. The lock is
    rank 0's only: it keeps other jobs out of the folder, and the ranks of one run must all
    get in (a lock per rank would have rank 1 wait for rank 0, who waits for rank 1 at the
    first collective). A failure there is recorded by rank 0 and raised on the ranks that hit
    it (torchrun then stops the rest) rather than returned: a rank that returned while its
    peers still train would leave them waiting on it."""
    runtime = runtime or Runtime.auto()
    main, several = runtime.is_main, runtime.world_size > 1
    progress = progress and main
    with distributed.rank_zero_first():  # the phantom and its fingerprint: made once, then read
        experiment = config.resolve()
        fingerprint = data_fingerprint(config)
    identity = experiment.identity(fingerprint)
    folder = Path(out_root) / experiment.folder(fingerprint)
    with run_lock(folder) if main else contextlib.nullcontext():
        reuse = False
        if main:
            reuse = not force and is_finished(folder, identity)
            if not reuse:
                if folder.exists() and (force or (folder / "status.json").exists()):
                    # forced, or a finished/failed run that no longer matches: start clean. Only an
                    # interrupted run (checkpoint, no status) is resumed.
                    shutil.rmtree(folder)
                folder.mkdir(parents=True, exist_ok=True)
                write_json(folder / CONFIG_NAME, config.to_dict())
        if distributed.broadcast_object(reuse):
            return load_run(folder)
        started = time.time()
        try:
            info = _execute(experiment, folder, progress=progress, runtime=runtime)
        except TrainingInterrupted:
            raise
        except Exception as err:  # one failed method must not sink the report
            first = (str(err).splitlines() or [""])[0]
            info = {"status": "failed", "error": f"{type(err).__name__}: {first}", "traceback": traceback.format_exc()}
            if several:
                if main:
                    _write_status(folder, info, started, identity)
                raise
        if main:
            _write_status(folder, info, started, identity)
    distributed.barrier()  # the other ranks wait for rank 0's evaluation and status
    return load_run(folder)


def _write_status(folder: Path, info: dict[str, Any], started: float, identity: dict[str, Any]) -> None:
    info["seconds"] = round(time.time() - started, 2)
    write_json(folder / "status.json", {"status": "done", **info, "identity": identity})


def _execute(experiment: Experiment, folder: Path, *, progress: bool, runtime: Runtime) -> dict[str, Any]:
    """Prepare, fit, and on rank 0 save, evaluate and write metrics; the run's status info."""
    config = experiment.config
    if experiment.unsupported:
        return {"status": "n/a", "error": experiment.unsupported}
    with distributed.rank_zero_first():  # rank 0 fills the prepared-data cache, the other ranks read it
        data = prepare_data(config)
    seed_everything(config.seed)  # network initialisation is part of the run
    method = experiment.build_method()
    info: dict[str, Any] = {"task": {"factors": list(method.task.factors), "spatial_dims": method.task.spatial_dims,
                                     "axis": method.task.axis},
                            "train_subjects": list(data.split.train), "test_subjects": list(data.split.test),
                            "device": str(runtime.device), "switches": runtime.effective()}
    if runtime.world_size > 1:
        info["world_size"] = runtime.world_size
    if method.learned:
        started = time.time()
        info.update(method.fit(data.train, FitContext(runtime, config.seed, folder, progress)))
        info["train_seconds"] = round(time.time() - started, 2)
    if not runtime.is_main:
        return info  # trained in step with rank 0, which saves and evaluates the same weights
    save_model(method, folder / MODEL_DIR, experiment.identity(data.fingerprint))
    info["method"] = method.describe()
    metrics = evaluate_on_test(method, data.test, folder / PREDICTIONS, progress=progress,
                               description=f"sr_lib {config.method} {config.scenario} x{config.scale}")
    with atomic_path(folder / METRICS_NAME) as tmp:
        metrics.to_csv(tmp, index=False)
    (folder / "checkpoint.pt").unlink(missing_ok=True)  # the model is saved; the training state is not needed
    return info


def load_trained_method(folder: str | os.PathLike, *, runtime: Runtime | None = None) -> tuple[Method, RunConfig]:
    """Rebuild a finished run's method and load its model for inference. Refuses a run that
    is not finished (interrupted, failed) and a model trained for another configuration."""
    folder = Path(folder)
    if not (folder / CONFIG_NAME).exists():
        raise FileNotFoundError(f"{folder}: not a run folder (no {CONFIG_NAME})")
    config = read_config(folder)
    status = read_status(folder)
    if status is None:
        raise ModelError(f"{folder}: the run did not finish (interrupted?); rerun `sr-lib train` to resume it")
    if status["status"] != "done":
        raise ModelError(f"{folder}: the run is {status['status']} ({status.get('error', 'no error recorded')})")
    experiment = config.resolve()
    method = experiment.build_method()
    identity = status.get("identity") or {}
    if identity != experiment.identity(identity.get("data", "")):
        raise ModelError(f"{folder / 'status.json'}: the run's identity does not match its config.json")
    load_model(method, folder / MODEL_DIR, identity)
    if hasattr(method, "to"):
        method.to(runtime or Runtime.auto())
    return method, config


def example_case(result: RunResult, index: int = 0) -> dict[str, Any]:
    """HR, LR, mask (normalised) and the run's prediction for test subject `index`, with its
    brain scores. HR and LR are rebuilt with `prepare_data` (deterministic, cached); the
    prediction is read from the run's NIfTI and mapped back to the HR's [0, 1] scaling."""
    data = prepare_data(result.config)
    case = data.test[index]
    pred = load_volume(result.folder / PREDICTIONS / f"{case.hr.subject}.nii.gz")
    scale, offset = case.hr.intensity.scale, case.hr.intensity.offset
    row = result.metrics[(result.metrics["subject"] == case.hr.subject) & (result.metrics["region"] == "brain")].iloc[0]
    return {
        "subject": case.hr.subject, "hr": case.hr.data, "lr": case.lr.data,
        "mask": None if case.mask is None else case.mask.data,
        "prediction": ((pred.data - offset) / scale).astype(np.float32),
        "scores": {"psnr": float(row["psnr"]), "ssim": float(row["ssim"])},
    }
