"""Run folders on disk: what is in one, reading it back safely, and a lock so two processes
never train into the same folder.

A run folder holds `config.json` (what was asked), `status.json` (done / failed /
not applicable, the run's identity, timings, where training stopped), `log.csv`,
`metrics.csv` (per test subject and region), `model/` (the trained state, checked against
the identity when loaded), `checkpoint.pt` while training, and `predictions/*.nii.gz`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import filelock
import pandas as pd

from sr_lib import atomic
from sr_lib.experiment import RunConfig

CONFIG_NAME = "config.json"
STATUS_NAME = "status.json"
METRICS_NAME = "metrics.csv"
LOG_NAME = "log.csv"
MODEL_DIR = "model"
PREDICTIONS = "predictions"


class RunFolderError(ValueError):
    """A run folder that cannot be used; the message names the file and the problem."""


class RunLocked(RuntimeError):
    """Another process holds the run folder's lock."""


def read_json(path: Path) -> dict[str, Any]:
    """`atomic.read_json`, raising `RunFolderError` (still one line naming the file)."""
    try:
        return atomic.read_json(path)
    except ValueError as err:
        raise RunFolderError(str(err)) from None


def read_config(folder: Path) -> RunConfig:
    path = Path(folder) / CONFIG_NAME
    return RunConfig.from_dict(read_json(path), source=str(path))


def read_status(folder: Path) -> dict[str, Any] | None:
    """The status, or None when the run never finished; an unreadable status is an error."""
    path = Path(folder) / STATUS_NAME
    if not path.exists():
        return None
    status = read_json(path)
    if "status" not in status:
        raise RunFolderError(f"{path}: not a run status (no 'status' field)")
    return status


def read_csv(path: Path) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame()
    try:
        return pd.read_csv(path)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise RunFolderError(f"{path}: unreadable CSV ({(str(err).splitlines() or [''])[0]})") from None


@contextmanager
def run_lock(folder: Path, *, wait: float = 0.0) -> Iterator[None]:
    """Hold the lock of run `folder` (a file beside it, so clearing the folder keeps the lock).
    The operating system releases it when the process dies, so a crash leaves no stale lock.
    A run over several processes takes it on rank 0 only (`sr_lib.runs.run_experiment`): it
    keeps other jobs out, and the run's own ranks must all get in. Across nodes it excludes
    as far as the shared file system honours file locks."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(folder.parent / f".{folder.name}.lock"))
    try:
        lock.acquire(timeout=wait)
    except filelock.Timeout:
        raise RunLocked(f"{folder}: another process is training this run; wait for it to finish") from None
    try:
        yield
    finally:
        lock.release()


@dataclasses.dataclass
class RunResult:
    config: RunConfig
    folder: Path
    status: str  # "done", "failed", "n/a" or "unfinished"
    metrics: pd.DataFrame  # per test subject and region
    log: pd.DataFrame
    info: dict[str, Any]

    @property
    def error(self) -> str | None:
        return self.info.get("error")

    def scores(self, region: str = "brain") -> pd.DataFrame:
        """Per-subject metrics of one region ('brain' or 'volume')."""
        if self.metrics.empty:
            return self.metrics
        return self.metrics[self.metrics["region"] == region].reset_index(drop=True)


def load_run(folder: str | os.PathLike) -> RunResult:
    """Read a run folder back; a damaged file is a one-line error naming it."""
    folder = Path(folder)
    config = read_config(folder)
    info = read_status(folder) or {"status": "unfinished"}
    return RunResult(config, folder, info.get("status", "unfinished"), read_csv(folder / METRICS_NAME),
                     read_csv(folder / LOG_NAME), info)


def find_runs(root: str | os.PathLike) -> list[RunResult]:
    """Every readable run folder under `root`, sorted; unreadable ones are skipped with a warning."""
    runs = []
    for path in sorted(Path(root).glob(f"**/{CONFIG_NAME}")):
        try:
            runs.append(load_run(path.parent))
        except (KeyError, ValueError, TypeError) as err:
            warnings.warn(f"{path.parent}: skipped, not a readable run of this sr_lib ({err})", stacklevel=2)
    return runs


# ----------------------------------------------------------------------------- listing and cleaning


def runs_table(root: str | os.PathLike) -> pd.DataFrame:
    """One row per run folder under `root`: where it is (relative to `root`), what it ran,
    its status, where training stopped and its brain PSNR/SSIM (mean over test subjects)."""
    root = Path(root)
    rows = []
    for run in find_runs(root):
        brain = run.scores("brain")
        c = run.config
        rows.append({
            "run": run.folder.relative_to(root).as_posix(), "method": c.method, "scenario": c.scenario,
            "contrast": c.contrast, "profile": c.profile, "seed": c.seed, "status": run.status,
            "steps": run.info.get("steps_done"),
            "brain_psnr": float(brain["psnr"].mean()) if len(brain) else float("nan"),
            "brain_ssim": float(brain["ssim"].mean()) if len(brain) else float("nan"),
        })
    return pd.DataFrame(rows, columns=["run", "method", "scenario", "contrast", "profile", "seed", "status", "steps",
                                       "brain_psnr", "brain_ssim"])


def clean_runs(root: str | os.PathLike, *, dry_run: bool = True) -> list[Path]:
    """The run folders under `root` that did not finish (interrupted or failed), removed
    unless `dry_run`. Finished and not-applicable runs are kept; a run that another process
    holds (training now) is skipped. Only folders that hold a `config.json` are touched."""
    root = Path(root)
    chosen = []
    for config in sorted(root.glob(f"**/{CONFIG_NAME}")):
        folder = config.parent
        try:
            status = read_status(folder)
        except RunFolderError:
            status = None  # unreadable: as unfinished
        if status is not None and status["status"] in ("done", "n/a"):
            continue
        try:
            with run_lock(folder):
                if not dry_run:
                    shutil.rmtree(folder)
        except RunLocked:
            continue
        chosen.append(folder)
    return chosen
