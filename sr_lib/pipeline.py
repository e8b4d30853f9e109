"""`sr-lib report`: run every study's runs (side by side in worker processes on a CPU with
several cores), then the notebooks that show them, then write `reports/index.md`.

Order: 00_data and 01_degradation (papermill) show the data; each study's runs train (or
are reused), sharing the prepared data cached on disk; 10_train is executed only for the runs a
study shows in detail; each study's tables and difference maps are written in-process; 30
shows the ablation studies, 80 and 90 every study (run on their own in JupyterLab, they write them).
Executed notebooks are stripped of widget state and of this machine's absolute paths.
A run that fails is recorded as failed and the report goes on. With `executor` ('local' or
'slurm') the runs train as submitit jobs instead, one per run (`_run_with_executor`).

Progress goes through `logging` (logger `sr_lib.pipeline`): one line per finished run and
notebook, and status records (`extra={"status": "update"}`) saying which study, run and step
is training, which `sr-lib` draws as one line updated in place on a terminal. Workers send
their steps to the parent through their pipe (`sr_lib.train.progress_hook`). Papermill's and
the kernel's known noise is dropped (`run_notebook`); anything else they say is passed on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any

import pandas as pd
import papermill
import submitit
import torch

from sr_lib.atomic import terminate_as_interrupt, write_text
from sr_lib.experiment import RunConfig
from sr_lib.findings import FINDINGS, evaluate_findings, write_findings
from sr_lib.paths import PROJECT_ROOT, environment, notebooks_dir, reports_dir
from sr_lib.prepare import data_fingerprint, prepare_data
from sr_lib.report import (
    check_options, study_configs, study_figures, study_runs, tidy_metrics, vary_config, write_all_summaries,
    write_study_report,
)
from sr_lib.runs import is_finished, run_experiment
from sr_lib.seams import seam_table, write_seam_tables
from sr_lib.studies import Study, get_studies
from sr_lib.train import DEVICE_ENV, Runtime, check_device_name, pick_device, progress_hook

KERNEL = "python3"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"

logger = logging.getLogger(__name__)


def status(message: str, *args: Any, end: bool = False) -> None:
    """Log a live status line (`end`: the line that closes it), see the module docstring."""
    logger.info(message, *args, extra={"status": "end" if end else "update"})


# ----------------------------------------------------------------------------- notebooks

# What the notebook kernel prints on its stderr that says nothing about the notebook: every
# kernel warns that it runs over TCP (local, loopback), and jupyter_client interrupts a
# kernel before shutting it down, which it logs as an error.
KERNEL_NOISE = (
    re.compile(r"\[IPKernelApp\] WARNING \| Kernel is running over TCP without encryption"),
    re.compile(r"\[IPKernelApp\] ERROR \| KeyboardInterrupt caught in kernel"),
)


def _kernel_manager(log: IO[bytes]) -> type:
    """A kernel manager class whose kernels write their stdout and stderr to `log`."""
    from jupyter_client import AsyncKernelManager

    class CapturedKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw: Any) -> None:
            kw.setdefault("stdout", log)
            kw.setdefault("stderr", log)
            await super().start_kernel(**kw)

    return CapturedKernelManager


def kernel_messages(text: str) -> list[str]:
    """The lines of a kernel's captured output that are not `KERNEL_NOISE` (nor blank)."""
    return [line for line in text.splitlines() if line.strip() and not any(p.search(line) for p in KERNEL_NOISE)]


def notebook_parameters(path: Path) -> set[str]:
    """The names the notebook's `parameters` cell assigns."""
    notebook = json.loads(Path(path).read_text(encoding="utf-8"))
    names: set[str] = set()
    for cell in notebook.get("cells", []):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell.get("source", []))
            names |= set(re.findall(r"^([A-Za-z_]\w*)\s*(?::[^=]*)?=", source, flags=re.MULTILINE))
    return names


PAPERMILL_LOGGERS = ("papermill", "papermill.translators")  # a logger's filters see only its own records


class _PapermillNoise(logging.Filter):
    """On papermill's logger: demotes to DEBUG its 'Unable to parse line' (its parser misreads
    some comments of a parameters cell; the parameters are injected all the same) and its
    'Passed unknown parameter' for a parameter the cell does assign. Everything else passes."""

    def __init__(self, defined: set[str]) -> None:
        super().__init__()
        self.defined = defined

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        unknown = re.match(r"Passed unknown parameter: (\w+)$", message)
        if message.startswith("Unable to parse line") or (unknown and unknown.group(1) in self.defined):
            logger.debug("papermill: %s", message)
            return False
        return True


@contextlib.contextmanager
def _quiet_papermill(notebook: Path) -> Iterator[None]:
    """Papermill's noise about `notebook` demoted (`_PapermillNoise`), and nbformat's
    MissingIDFieldWarning (papermill reads notebooks saved without cell ids) ignored."""
    from nbformat.validator import MissingIDFieldWarning

    noise = _PapermillNoise(notebook_parameters(notebook))
    loggers = [logging.getLogger(name) for name in PAPERMILL_LOGGERS]
    for papermill_logger in loggers:
        papermill_logger.addFilter(noise)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=MissingIDFieldWarning)
            yield
    finally:
        for papermill_logger in loggers:
            papermill_logger.removeFilter(noise)


@dataclasses.dataclass
class NotebookOutcome:
    notebook: str
    output: Path
    ok: bool
    seconds: float
    error: str = ""


def run_notebook(name: str, output: Path, parameters: dict, *, cwd: Path | None = None) -> NotebookOutcome:
    """Execute notebooks/<name>.ipynb with papermill (explicit kernel) into `output`, then
    strip it (see `strip_notebook`). Logs one line (a failure names the error); the kernel's
    own output, less `KERNEL_NOISE`, is logged as a warning, papermill's noise as debug."""
    source = notebooks_dir() / f"{name}.ipynb"
    label = f"{name} ({output.stem})" if output.stem != name else name
    status("notebook %s", label)
    started = time.time()
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile() as kernel_log:
        try:
            with _quiet_papermill(source):
                papermill.execute_notebook(
                    str(source), str(output), parameters=parameters, kernel_name=KERNEL,
                    cwd=str(cwd or notebooks_dir()), progress_bar=False, log_output=False,
                    kernel_manager_class=_kernel_manager(kernel_log),
                )
            outcome = NotebookOutcome(name, output, True, time.time() - started)
        except Exception as err:  # PapermillExecutionError, dead kernel, ...
            if getattr(err, "ename", "") in ("TrainingInterrupted", "KeyboardInterrupt"):
                raise KeyboardInterrupt(f"{name} interrupted; its checkpoint is saved, rerun to resume") from err
            text = str(err).strip()
            message = getattr(err, "evalue", None) or (text.splitlines()[-1] if text else type(err).__name__)
            outcome = NotebookOutcome(name, output, False, time.time() - started,
                                      f"{getattr(err, 'ename', type(err).__name__)}: {message}")
        kernel_log.seek(0)
        said = kernel_messages(kernel_log.read().decode("utf-8", "replace"))
    if said:
        logger.warning("notebook %s: its kernel said:\n  %s", label, "\n  ".join(said))
    if output.exists():
        strip_notebook(output, roots=[output.parent.parent.parent, PROJECT_ROOT])
    if outcome.ok:
        status("notebook %s: ok (%.0f s)", label, outcome.seconds, end=True)
    else:
        logger.warning("notebook %s failed: %s (see %s)", label, outcome.error, output, extra={"status": "end"})
    return outcome


def strip_notebook(path: Path, *, roots: Sequence[Path]) -> None:
    """Make an executed notebook portable: drop widget state and widget outputs (their
    static fallbacks stay), and write paths under `roots` relative to them."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    notebook.get("metadata", {}).pop("widgets", None)
    notebook.get("metadata", {}).get("papermill", {}).pop("input_path", None)
    notebook.get("metadata", {}).get("papermill", {}).pop("output_path", None)
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            output.get("data", {}).pop(WIDGET_MIME, None)
    text = json.dumps(notebook, indent=1, ensure_ascii=False)
    for root in sorted({str(Path(r).resolve()) for r in roots}, key=len, reverse=True):
        text = text.replace(root + "/", "").replace(root, ".")
    write_text(path, text + "\n")


@dataclasses.dataclass
class PlannedRun:
    study: str
    config: RunConfig
    state: str  # "train", "reuse" or "n/a"


def plan(studies: Sequence[Study], runs_root: Path, *, profile: str, dataset: str = "phantom", root: str | None = None,
         scale: int = 2, seeds: int | None = None, force: bool = False, pairing: str | None = None,
         options: Mapping[str, Any] | None = None) -> list[PlannedRun]:
    """Every run of every study (varied by `pairing` and method `options`, see
    `sr_lib.report.study_configs`) and whether it will train, be reused, or is not applicable.
    An option no study's method has raises `sr_lib.report.OptionError`."""
    check_options({m for s in studies for m in s.methods}, options)
    planned = []
    for study in studies:
        for config in study_configs(study, profile=profile, dataset=dataset, root=root, scale=scale, seeds=seeds,
                                    pairing=pairing, options=options):
            experiment = config.resolve()
            if experiment.unsupported:
                planned.append(PlannedRun(study.name, config, "n/a"))
                continue
            fingerprint = data_fingerprint(config)
            folder = runs_root / experiment.folder(fingerprint)
            reuse = not force and is_finished(folder, experiment.identity(fingerprint))
            planned.append(PlannedRun(study.name, config, "reuse" if reuse else "train"))
    return planned


def default_workers(device: str = "auto") -> int:
    """Runs trained side by side: 1 on a GPU (one run fills it); on CPU one per core, at most 4,
    each with an equal share of the cores. Small nets use two threads poorly: on the 2-core
    CPU machine, two 1-thread DCSRN runs side by side took 113 ms per step each against 147 ms
    for one 2-thread run (1.3x the throughput)."""
    if pick_device(device).type == "cuda":
        return 1
    return max(1, min(os.cpu_count() or 1, 4))


PARENT_GONE_GRACE_S = 120  # a worker whose parent died gets this long to checkpoint, then exits
STEP_MESSAGE_INTERVAL_S = 0.5  # a worker sends its step to the parent at most this often
PROGRESS_INTERVAL_S = 0.5  # `on_progress` is called at most this often (and whenever a run starts or ends)


# ----------------------------------------------------------------------------- progress


@dataclasses.dataclass
class RunProgress:
    """A run the report is training: `step` of `steps` once its training loop reports (None
    before, and for methods without one); `trained` once that loop has ended."""

    study: str
    config: RunConfig
    started: float = dataclasses.field(default_factory=time.time)
    step: int | None = None
    steps: int | None = None
    trained: bool = False

    def name(self) -> str:
        c = self.config
        pairing = "" if c.pairing == "paired" else f" {c.pairing}"
        return f"[{self.study}] {c.method} {c.scenario} {c.contrast}{pairing} seed {c.seed}"

    def describe(self) -> str:
        if self.step is None:
            where = "running"  # preparing, or a method without a training loop
        elif self.trained:
            where = f"trained {self.step}/{self.steps} steps, testing"
        else:
            where = f"step {self.step}/{self.steps}"
        return f"{self.name()} · {where}"


@dataclasses.dataclass
class Progress:
    """Where the report's training is: the runs in flight, and how many of `total` are done."""

    running: list[RunProgress]
    done: int
    total: int

    def line(self) -> str:
        """E.g. `[baselines] srcnn kspace-2x T2 seed 0 · step 340/600 · 2 of 14 runs done`."""
        return " | ".join([r.describe() for r in self.running] + [f"{self.done} of {self.total} runs done"])


ProgressCallback = Callable[[Progress], None]


def log_progress(progress: Progress) -> None:
    """The default `on_progress`: the line as a status record (see the module docstring)."""
    status("%s", progress.line())


class _Tracker:
    """The runs in flight and the count done; calls `on_progress` at most every
    `PROGRESS_INTERVAL_S` (and at once when a run starts or ends); logs a line per finished run."""

    def __init__(self, total: int, on_progress: ProgressCallback | None) -> None:
        self.total, self.on_progress = total, on_progress
        self.running: list[RunProgress] = []
        self.done = 0
        self.failed = 0
        self.started = time.time()
        self.last_call = -math.inf

    def start(self, run: PlannedRun) -> RunProgress:
        self.running.append(RunProgress(run.study, run.config))
        self.notify(force=True)
        return self.running[-1]

    def step(self, run: RunProgress, step: int, steps: int, trained: bool) -> None:
        run.step, run.steps, run.trained = step, steps, trained
        self.notify(force=trained)

    def finish(self, run: RunProgress, outcome: str, error: str) -> None:
        self.running.remove(run)
        self.done += 1
        self.failed += outcome == "failed"
        self.notify(force=True)  # first, so that the status line under the run's line is already the new one
        seconds = time.time() - run.started
        count = f"{self.done} of {self.total} runs done"
        if outcome == "failed":
            logger.warning("failed %s after %.0f s: %s · %s", run.name(), seconds, error, count)
        else:
            logger.info("%-7s %s in %.0f s · %s", outcome, run.name(), seconds, count)

    def notify(self, *, force: bool = False) -> None:
        now = time.time()
        if self.on_progress is not None and (force or now - self.last_call >= PROGRESS_INTERVAL_S):
            self.last_call = now
            self.on_progress(Progress(list(self.running), self.done, self.total))

    def close(self) -> None:
        """The line that ends the live status: how many runs trained, in how long."""
        if self.total:
            failed = f", {self.failed} failed" if self.failed else ""
            status("%d of %d runs done in %.1f min%s", self.done, self.total, (time.time() - self.started) / 60,
                   failed, end=True)


# ----------------------------------------------------------------------------- workers


def _exit_with_parent() -> None:
    """In a worker: when the parent process dies, SIGTERM ourselves (training saves a
    checkpoint and stops), and exit outright after `PARENT_GONE_GRACE_S` if that hangs."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(PARENT_GONE_GRACE_S)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class _StepSender:
    """A training progress hook in a worker: sends `("step", done, steps, ended)` to the parent,
    at most every `STEP_MESSAGE_INTERVAL_S` (always the first and the last)."""

    def __init__(self, pipe: Connection) -> None:
        self.pipe = pipe
        self.last = -math.inf

    def __call__(self, done: int, steps: int, ended: bool) -> None:
        now = time.monotonic()
        if ended or now - self.last >= STEP_MESSAGE_INTERVAL_S:
            self.last = now
            try:
                self.pipe.send(("step", done, steps, ended))
            except OSError:  # the parent is gone; `_exit_with_parent` stops us
                pass


def _train_in_worker(config: RunConfig, runs_root: Path, force: bool, threads: int, device: str,
                     report: Connection) -> None:
    """One run in a worker process (no progress bars): sends its steps while training, then
    `("end", status, error)`, with status 'interrupted' when SIGTERM/SIGINT stopped it (its
    checkpoint is saved)."""
    _exit_with_parent()
    torch.set_num_threads(threads)
    try:
        with progress_hook(_StepSender(report)):
            result = run_experiment(config, runs_root, force=force, progress=False, runtime=Runtime.auto(device))
        outcome = (result.status, result.error or "")
    except KeyboardInterrupt as err:  # TrainingInterrupted, or Ctrl-C outside the training loop
        outcome = ("interrupted", str(err))
    except Exception as err:
        outcome = ("failed", f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}")
    report.send(("end", *outcome))
    report.close()


@dataclasses.dataclass
class _Worker:
    run: PlannedRun
    process: multiprocessing.process.BaseProcess
    reader: Connection
    progress: RunProgress
    result: tuple[str, str] | None = None
    drained: bool = False  # the pipe reached its end

    def read(self, tracker: _Tracker) -> None:
        """Take what the worker has sent: steps go to `tracker`, the last message is its outcome."""
        try:
            while not self.drained and self.reader.poll():
                message = self.reader.recv()
                if message[0] == "step":
                    tracker.step(self.progress, *message[1:])
                else:
                    self.result = (message[1], message[2])
        except (EOFError, OSError):
            self.drained = True

    def outcome(self, tracker: _Tracker) -> tuple[str, str]:
        """Its (status, error), once the process has ended."""
        self.process.join()
        self.read(tracker)
        self.reader.close()
        if self.result is not None:
            return self.result
        if self.process.exitcode in (-signal.SIGTERM, -signal.SIGINT):  # stopped outside the training loop
            return "interrupted", f"worker stopped by signal {-self.process.exitcode}"
        return "failed", f"worker process exited with code {self.process.exitcode} (out of memory? killed?)"


def _stop_workers(running: Sequence[_Worker], grace: float = 60.0) -> None:
    """SIGTERM every live worker (each saves a checkpoint), wait up to `grace` s, then kill."""
    for w in running:
        if w.process.is_alive():
            w.process.terminate()
    deadline = time.time() + grace
    for w in running:
        w.process.join(max(0.0, deadline - time.time()))
        if w.process.is_alive():
            w.process.kill()
            w.process.join()
        w.reader.close()


def _run_side_by_side(to_train: Sequence[PlannedRun], runs_root: Path, *, force: bool, workers: int,
                      tracker: _Tracker, device: str = "auto") -> list[tuple[PlannedRun, str, str]]:
    """Train `to_train` in up to `workers` spawned processes, one per run; returns (run,
    status, error) for each. Their steps reach `tracker` through their pipes. An interrupted
    run (Ctrl-C, or SIGTERM to us or to a worker) starts nothing new: the other workers are
    stopped, each saving its checkpoint, and KeyboardInterrupt is raised. Workers also stop
    when this process dies."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")  # no fork of a process that holds torch's thread pools
    pending, running, outcomes = list(to_train), [], []
    try:
        with terminate_as_interrupt():
            while pending or running:
                while pending and len(running) < workers:
                    p = pending.pop(0)
                    reader, writer = context.Pipe(duplex=False)
                    process = context.Process(target=_train_in_worker,
                                              args=(p.config, runs_root, force, threads, device, writer),
                                              name=f"sr-lib {p.config.method} seed {p.config.seed}")
                    with environment(TQDM_DISABLE="1"):  # the live line replaces the workers' bars
                        process.start()
                    writer.close()
                    running.append(_Worker(p, process, reader, tracker.start(p)))
                waiting = [w.process.sentinel for w in running] + [w.reader for w in running if not w.drained]
                ready = multiprocessing.connection.wait(waiting, timeout=PROGRESS_INTERVAL_S)
                for w in running:
                    w.read(tracker)
                tracker.notify()
                for w in [w for w in running if w.process.sentinel in ready]:
                    running.remove(w)
                    status_, error = w.outcome(tracker)
                    if status_ == "interrupted":
                        raise KeyboardInterrupt(f"{w.run.config.method} seed {w.run.config.seed}: {error}")
                    outcomes.append((w.run, status_, error))
                    tracker.finish(w.progress, status_, error)
    finally:
        _stop_workers(running)
    return outcomes


# ----------------------------------------------------------------------------- jobs (submitit)
#
# Why submitit rather than Ray: a SLURM cluster, where MRI labs train, already runs a
# scheduler; submitit speaks to it natively (sbatch, job arrays, requeue on timeout or
# preemption) and needs no service of its own, where Ray would need a cluster started inside
# (or beside) SLURM. A submitit job is a pickled function call whose result comes back as a
# file, which is what a run is: `run_experiment(config, runs_root)` writes a self-contained
# run folder. Its local executor runs the same jobs as processes here, which is how the
# tests exercise this path without a cluster.

EXECUTORS = ("local", "slurm")
JOB_POLL_S = 1.0  # how often the report looks at its jobs (a SLURM job's state is asked of sacct less often)
JOB_STOP_GRACE_S = 60.0  # after Ctrl-C, how long local jobs get to save their checkpoints
# Ours over submitit's defaults (user options win): its local executor kills a job after 2 min
# and SLURM's gets 5 min; a run needs far more. A SLURM job that reaches its limit is requeued
# (`_TrainJob.checkpoint`) and resumes from its last checkpoint, up to 3 times.
EXECUTOR_DEFAULTS: dict[str, dict[str, Any]] = {
    "local": {"name": "sr-lib", "timeout_min": 7 * 24 * 60},
    "slurm": {"name": "sr-lib", "timeout_min": 4 * 60},
}


class ExecutorError(ValueError):
    """An executor name or option that submitit cannot use (a one-line message)."""


def make_executor(kind: str, folder: str | os.PathLike,
                  parameters: Mapping[str, Any] | None = None) -> submitit.AutoExecutor:
    """A submitit executor of `kind` ('local': processes on this machine; 'slurm': sbatch)
    whose jobs keep their pickles and logs in `folder` (`<job id>_0_log.err`, ...), with
    `EXECUTOR_DEFAULTS` updated by `parameters`. The names are submitit's `AutoExecutor`
    vocabulary: timeout_min, gpus_per_node, cpus_per_task, mem_gb, nodes, name, and SLURM's
    own prefixed with `slurm_` (slurm_partition, slurm_account, slurm_qos, slurm_constraint,
    slurm_array_parallelism, ...), which the local executor ignores. SLURM needs `srun` on
    this machine (a login node). Local jobs see the GPUs this process sees (`gpus_per_node`
    of them, default all), where submitit would give them none. Raises `ExecutorError` for
    an unknown kind, option name or value type."""
    if kind not in EXECUTORS:
        raise ExecutorError(f"executor {kind!r}: choose one of {', '.join(EXECUTORS)}")
    try:
        executor = submitit.AutoExecutor(folder=Path(folder), cluster=kind)
        executor.update_parameters(**{**EXECUTOR_DEFAULTS[kind], **(parameters or {})})
        visible = _visible_gpus() if kind == "local" else None
        if visible is not None:  # submitit sets a local job's CUDA_VISIBLE_DEVICES from these two
            local = executor._executor  # the LocalExecutor inside (AutoExecutor does not pass visible_gpus on)
            local.update_parameters(visible_gpus=visible,
                                    gpus_per_node=(parameters or {}).get("gpus_per_node", len(visible)))
    except (AssertionError, NameError, TypeError, ValueError, RuntimeError) as err:  # what submitit raises
        text = str(err).strip()
        raise ExecutorError(f"{kind} executor: {text.splitlines()[0] if text else type(err).__name__}") from err
    return executor


def _visible_gpus() -> tuple[int, ...] | None:
    """The GPU indices this process sees: `$CUDA_VISIBLE_DEVICES` when set, else all of
    torch's; None where that variable names GPUs by UUID (submitit takes indices only)."""
    text = os.environ.get("CUDA_VISIBLE_DEVICES")
    if text is None:
        return tuple(range(torch.cuda.device_count()))
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not all(name.isdigit() for name in names):
        logger.warning("CUDA_VISIBLE_DEVICES=%s names GPUs by UUID: local jobs see the GPUs submitit gives them "
                       "(--executor-option gpus_per_node=N: the first N)", text)
        return None
    return tuple(int(name) for name in names)


def check_executor(kind: str | None, parameters: Mapping[str, Any] | None = None) -> None:
    """Raise `ExecutorError` now, before any work, where `make_executor` would (no executor
    with options given is one too)."""
    if kind is None:
        if parameters:
            raise ExecutorError(f"executor options {sorted(parameters)} need an executor (local or slurm)")
        return
    with tempfile.TemporaryDirectory() as folder:
        make_executor(kind, folder, parameters)


class _TrainJob(submitit.helpers.Checkpointable):
    """One run as a submitit job: `run_experiment` in the job's process, returning (status,
    error). A run that fails inside `run_experiment` says so in its status; anything it raises
    (say a dataset folder that is not there) fails the job, and submitit keeps the traceback
    in the job's log. Interrupted (SIGTERM from scancel), training saves a checkpoint and the
    job returns 'interrupted'. Checkpointable: when SLURM signals the time limit or
    preemption, submitit requeues the job through `checkpoint`, and the run resumes from its
    last checkpoint (at most `checkpoint_every` steps are redone)."""

    def __call__(self, config: RunConfig, runs_root: Path, force: bool, device: str,
                 threads: int | None) -> tuple[str, str]:
        threads = threads or int(os.environ.get("SLURM_CPUS_PER_TASK") or 0)
        if threads:
            torch.set_num_threads(threads)
        try:
            result = run_experiment(config, runs_root, force=force, progress=False, runtime=Runtime.auto(device))
        except KeyboardInterrupt as err:  # TrainingInterrupted: its checkpoint is saved
            return "interrupted", str(err) or "interrupted"
        return result.status, result.error or ""

    def checkpoint(self, config: RunConfig, runs_root: Path, force: bool, device: str,
                   threads: int | None) -> submitit.helpers.DelayedSubmission:
        """The requeued call: the same run, never forced (that would clear its checkpoint)."""
        return submitit.helpers.DelayedSubmission(self, config, runs_root, False, device, threads)


@dataclasses.dataclass
class _Job:
    run: PlannedRun
    job: submitit.Job
    progress: RunProgress | None = None  # once the job is seen running


def _raised(err: Exception) -> str:
    """The exception line of a failed job's traceback (what `FailedJobError` quotes)."""
    parts = str(err).split("-" * 22)
    body = parts[1] if len(parts) >= 3 else str(err)
    lines = [line for line in body.splitlines() if line.strip() and not line.startswith((" ", "\t"))]
    return lines[-1].strip() if lines else type(err).__name__


def _job_outcome(job: submitit.Job, *, local: bool) -> tuple[str, str]:
    """(status, error) of a finished job; one that failed names its id and its log."""
    where = f"(job {job.job_id}, log {job.paths.stderr})"

    def ended() -> str:  # SLURM's state says why (TIMEOUT, OUT_OF_MEMORY, CANCELLED, NODE_FAIL, ...)
        state = "" if local else f", state {job.state}"
        return f"job ended without a result{state}: killed, out of memory or out of time? {where}"

    if local and not job.paths.result_pickle.exists():  # no shared file system to wait for here
        return "failed", ended()
    try:
        status_, error = job.result()
    except submitit.core.utils.FailedJobError as err:
        return "failed", f"{_raised(err)} {where}"
    except submitit.core.utils.UncompletedJobError:
        return "failed", ended()
    if status_ == "interrupted":
        return "failed", f"interrupted, checkpoint saved (rerun the report to resume): {error} {where}"
    return status_, error


def _cancel_jobs(jobs: Sequence[_Job], *, local: bool) -> None:
    """Cancel unfinished jobs (local ones get SIGINT, SLURM's scancel sends SIGTERM: training
    saves a checkpoint either way); local ones get `JOB_STOP_GRACE_S` to end."""
    for j in jobs:
        with contextlib.suppress(Exception):
            j.job.cancel(check=False)
    deadline = time.time() + JOB_STOP_GRACE_S
    while local and time.time() < deadline and not all(j.job.done() for j in jobs):
        time.sleep(0.2)


def _run_with_executor(to_train: Sequence[PlannedRun], runs_root: Path, *, force: bool, executor: str,
                       tracker: _Tracker, device: str = "auto", workers: int = 1,
                       parameters: Mapping[str, Any] | None = None,
                       folder: str | os.PathLike | None = None) -> list[tuple[PlannedRun, str, str]]:
    """Train `to_train` as submitit jobs, one per run (see `make_executor`); returns (run,
    status, error) for each, as `_run_side_by_side` does. Each job writes its run folder
    under `runs_root`, which for SLURM must be on storage every node shares (so must the
    prepared-data cache, `sr_lib.paths.cache_dir()`, or each job rebuilds it, and this
    Python environment); the report then reads the folders as it reads its own runs. Job
    pickles and logs go to `folder` (default: `runs_root/../jobs/<date-time>-<pid>/`, new for
    each call: a local job's id is its process id, which a later job may get again).

    Local jobs run `workers` at a time, each with `cpu_count // workers` threads; SLURM jobs
    are submitted at once as one job array (the scheduler queues them; limit them with
    `slurm_array_parallelism`) and use `$SLURM_CPUS_PER_TASK` threads when set. `tracker`
    hears when a job starts running and when it ends (not its steps). A job that raises, is
    killed or is cancelled is a failed run whose error names the job id and its log: the
    report goes on. Ctrl-C or SIGTERM cancels the unfinished jobs (each saves a checkpoint)
    and raises KeyboardInterrupt."""
    runs_root = Path(runs_root)
    folder = Path(folder) if folder is not None else (
        runs_root.parent / "jobs" / f"{datetime.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}")
    submitter = make_executor(executor, folder, parameters)
    local = executor == "local"
    limit = max(1, workers) if local else max(1, len(to_train))
    threads = max(1, (os.cpu_count() or 1) // min(limit, max(1, len(to_train)))) if local else None
    pending, running, outcomes = list(to_train), [], []
    logger.info("runs go to %s jobs; their logs to %s", executor, folder)
    try:
        with terminate_as_interrupt():
            while pending or running:
                if pending and len(running) < limit:
                    batch, pending = pending[:limit - len(running)], pending[limit - len(running):]
                    try:
                        with environment(TQDM_DISABLE="1"), submitter.batch():  # submitted as the block ends
                            jobs = [submitter.submit(_TrainJob(), p.config, runs_root, force, device, threads)
                                    for p in batch]
                    except Exception as err:  # sbatch refused (partition, account, ...): these runs fail
                        said = (str(err).strip().splitlines() or [type(err).__name__])[0]
                        text = f"not submitted to {executor}: {said}"
                        for p in batch:
                            tracker.finish(tracker.start(p), "failed", text)
                            outcomes.append((p, "failed", text))
                        continue
                    running += [_Job(p, job) for p, job in zip(batch, jobs)]
                    logger.debug("submitted jobs %s", ", ".join(str(job.job_id) for job in jobs))
                for j in list(running):
                    done = j.job.done()
                    if j.progress is None and (done or j.job.state.upper() in ("RUNNING", "COMPLETING")):
                        j.progress = tracker.start(j.run)
                    if done:
                        running.remove(j)
                        status_, error = _job_outcome(j.job, local=local)
                        outcomes.append((j.run, status_, error))
                        tracker.finish(j.progress, status_, error)
                tracker.notify()
                if running:
                    time.sleep(JOB_POLL_S)
    except KeyboardInterrupt:
        _cancel_jobs(running, local=local)
        raise
    return outcomes


def run_all(planned: Sequence[PlannedRun], runs_root: Path, *, force: bool = False, workers: int = 1,
            progress: bool = True, on_progress: ProgressCallback | None = None, device: str = "auto",
            executor: str | None = None, executor_parameters: Mapping[str, Any] | None = None) -> list[str]:
    """Train (or reuse) every planned run on `device`; returns one line per failed run. With
    `workers` > 1 the runs to train go to that many spawned processes, each with
    `cpu_count // workers` threads; a run shared by two studies trains once (`run_experiment`
    locks its folder). With `executor` ('local' or 'slurm') they go to submitit jobs instead,
    one per run (`_run_with_executor`; `executor_parameters` as `make_executor` takes them;
    local jobs `workers` at a time; for SLURM `device` is checked on the nodes, not here).
    Where training is goes to `on_progress` (default with `progress`: `log_progress`), a line
    per finished run to the log. Interrupted (Ctrl-C, SIGTERM), it raises KeyboardInterrupt
    with every checkpoint saved."""
    def failure(p: PlannedRun, error: str) -> str:
        return f"{p.study}: {p.config.method} on {p.config.scenario} {p.config.contrast} seed {p.config.seed}: {error}"

    check_executor(executor, executor_parameters)
    if executor == "slurm":
        check_device_name(device)  # whether the nodes have it is checked there (a login node may have no GPU)
        runtime = None
    else:
        runtime = Runtime.auto(device)  # a device this machine lacks fails here, before any work
    on_progress = on_progress or (log_progress if progress else None)
    unique: dict[str, PlannedRun] = {}
    for p in planned:
        if p.state != "n/a":
            unique.setdefault(json.dumps(p.config.to_dict(), sort_keys=True, default=str), p)
    to_train = [p for p in unique.values() if p.state == "train"]
    reused = sum(p.state == "reuse" for p in unique.values())
    how = (f" (as {executor} jobs)" if executor and to_train else
           f" ({min(workers, len(to_train))} side by side)" if workers > 1 and len(to_train) > 1 else "")
    logger.info("runs: %d to train%s, %d reused, %d not applicable", len(to_train), how, reused,
                sum(p.state == "n/a" for p in planned))
    tracker = _Tracker(len(to_train), on_progress)
    try:
        if executor is not None and to_train:
            status("preparing the data of %d runs", len(to_train))
            for p in to_train:  # build each prepared-data cache entry once, before jobs race to it
                try:
                    prepare_data(p.config)
                except Exception as err:  # the job meets it again and fails with it, in its log
                    logger.debug("preparing the data of %s: %s", p.config.method, err)
            outcomes = _run_with_executor(to_train, runs_root, force=force, executor=executor, tracker=tracker,
                                          device=device, workers=workers, parameters=executor_parameters)
            return [failure(p, error) for p, status_, error in outcomes if status_ == "failed"]
        if workers <= 1 or len(to_train) < 2:
            failed = []
            for p in planned:
                tracked = tracker.start(p) if any(p is t for t in to_train) else None
                hook = (progress_hook(lambda step, steps, ended: tracker.step(tracked, step, steps, ended))
                        if tracked else contextlib.nullcontext())
                with hook:
                    result = run_experiment(p.config, runs_root, force=force and p.state == "train", progress=False,
                                            runtime=runtime)
                if tracked:
                    tracker.finish(tracked, "failed" if result.status == "failed" else result.status, result.error or "")
                if result.status == "failed":
                    failed.append(failure(p, result.error or ""))
            return failed
        status("preparing the data of %d runs", len(to_train))
        for p in to_train:  # build each prepared-data cache entry once, before workers race to it
            prepare_data(p.config)
        outcomes = _run_side_by_side(to_train, runs_root, force=force, workers=workers, tracker=tracker, device=device)
        return [failure(p, error) for p, status_, error in outcomes if status_ == "failed"]
    finally:
        tracker.close()


def plan_table(planned: Sequence[PlannedRun]) -> pd.DataFrame:
    return pd.DataFrame([{"study": p.study, "scenario": p.config.scenario, "contrast": p.config.contrast,
                          "method": p.config.method, "seed": p.config.seed, "run": p.state} for p in planned])


def run_report(
    *,
    studies: Sequence[str] | None = None,
    profile: str = "quick",
    dataset: str = "phantom",
    root: str | None = None,
    scale: int = 2,
    seeds: int | None = None,
    pairing: str | None = None,
    options: Mapping[str, Any] | None = None,
    force: bool = False,
    out: str | os.PathLike | None = None,
    dry_run: bool = False,
    progress: bool = True,
    workers: int | None = None,
    device: str = "auto",
    on_progress: ProgressCallback | None = None,
    executor: str | None = None,
    executor_parameters: Mapping[str, Any] | None = None,
) -> Path | pd.DataFrame:
    """Regenerate the report for `studies` (all by default); returns the path of `index.md`,
    or with `dry_run` the table of runs that would train or be reused. `workers` runs train
    side by side (None: `default_workers()`) on `device` (auto, cpu, cuda, cuda:N; the
    notebooks' kernels follow it through `$SR_LIB_DEVICE`).

    `pairing` and method `options` vary every study's runs (`sr_lib.report.study_configs`):
    a name `option` applies to every run whose method has it, `method.option` to one method;
    one that no study's method has raises `sr_lib.report.OptionError`. Varied runs get their
    own identities. Notebooks 80 and 90 take the same pairing and options and show the varied
    runs; 10_train and 30, which would show (or train) the studies' own runs, are skipped.

    `executor` ('local' or 'slurm') trains the runs as submitit jobs, one per run, with
    `executor_parameters` (e.g. slurm_partition, gpus_per_node, timeout_min; see
    `make_executor`); their run folders land in `out/runs/<profile>`, which for SLURM must be
    on storage the nodes share, and their logs in `out/runs/jobs/<date-time>-<pid>/`. The notebooks and
    tables then read those folders here, as they read runs trained in-process."""
    out = Path(out) if out is not None else reports_dir()
    chosen = get_studies(studies)
    runs_root = out / "runs" / profile
    check_executor(executor, executor_parameters)  # a bad executor or option fails before any work
    if executor == "slurm":
        check_device_name(device)  # the nodes' devices, not this machine's
    else:
        pick_device(device)  # a bad device fails before any work
    planned = plan(chosen, runs_root, profile=profile, dataset=dataset, root=root, scale=scale, seeds=seeds, force=force,
                   pairing=pairing, options=options)
    defaults = [c for s in chosen for c in s.configs(profile=profile, dataset=dataset, root=root, scale=scale, seeds=seeds)]
    varied = any(vary_config(c, pairing=pairing, options=options).resolve().identity() != c.resolve().identity()
                 for c in defaults)  # an option at its default value varies nothing
    if dry_run:
        return plan_table(planned)
    with environment(**{DEVICE_ENV: None if device == "auto" else device}):
        return _make_report(chosen, planned, out, runs_root, profile=profile, dataset=dataset, root=root, scale=scale,
                            seeds=seeds, pairing=pairing, options=options, varied=varied, force=force, progress=progress,
                            workers=workers or (1 if executor == "slurm" else default_workers(device)), device=device,
                            on_progress=on_progress, executor=executor, executor_parameters=executor_parameters)


def _make_report(chosen: Sequence[Study], planned: Sequence[PlannedRun], out: Path, runs_root: Path, *, profile: str,
                 dataset: str, root: str | None, scale: int, seeds: int | None, pairing: str | None,
                 options: Mapping[str, Any] | None, varied: bool, force: bool, progress: bool, workers: int,
                 device: str, on_progress: ProgressCallback | None, executor: str | None = None,
                 executor_parameters: Mapping[str, Any] | None = None) -> Path:
    """`run_report` after planning: notebooks, runs, tables, index."""
    executed = out / "runs" / "notebooks"
    common = {"profile": profile, "dataset": dataset, "root": root or ""}
    outcomes = [run_notebook("00_data", executed / "00_data.ipynb", common),
                run_notebook("01_degradation", executed / "01_degradation.ipynb", {**common, "scale": scale})]
    started = time.time()
    failed_runs = run_all(planned, runs_root, force=force, workers=workers, progress=progress, on_progress=on_progress,
                          device=device, executor=executor, executor_parameters=executor_parameters)
    runs_seconds = time.time() - started
    if varied:
        logger.info("pairing/options vary the runs: notebooks 10_train and 30 (which show the studies' own runs) "
                    "are skipped; the tables, figures and notebooks 80 and 90 show the varied runs")
    for study in [] if varied else chosen:
        first = [p.config for p in planned if p.study == study.name and p.state != "n/a" and p.config.seed == 0
                 and p.config.scenario == study.scenarios[0] and p.config.method in study.detail]
        for config in first:
            params = {**common, "method": config.method, "scenario": config.scenario, "contrast": config.contrast,
                      "scale": config.scale, "pairing": config.pairing, "seed": config.seed,
                      "runs_root": str(runs_root)}
            name = f"{study.name}_{config.scenario}_{config.contrast}_{config.method}.ipynb"
            outcomes.append(run_notebook("10_train", executed / "10_train" / name, params))
    compute_seconds = write_tables(chosen, out, profile=profile, dataset=dataset, root=root, scale=scale, seeds=seeds,
                                   pairing=pairing, options=options)
    params = {"profile": profile, "studies": ",".join(s.name for s in chosen), "dataset": dataset, "root": root or "",
              "scale": scale, "seeds": seeds or 0, "pairing": pairing or "", "options": dict(options or {}),
              "reports_root": str(out), "write": False}
    ablations = [s.name for s in chosen if s.ablation]
    if ablations and not varied:
        outcomes.append(run_notebook("30_ablations", executed / "30_ablations.ipynb", {
            **{k: params[k] for k in ("profile", "dataset", "root", "scale", "seeds", "reports_root")},
            "studies": ",".join(ablations)}))
    outcomes += [run_notebook("80_comparison_tables", executed / "80_comparison_tables.ipynb", params),
                 run_notebook("90_difference_maps", executed / "90_difference_maps.ipynb", params)]
    variation = {"pairing": pairing, "options": dict(options or {})} if varied else None
    return write_index(out, outcomes, planned, failed_runs, profile=profile, dataset=dataset, runs_seconds=runs_seconds,
                       compute_seconds=compute_seconds, variation=variation)


def machine_description() -> str:
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, {device}, torch {torch.__version__}"


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_tables(studies: Sequence[Study], out: Path, *, profile: str, dataset: str = "phantom", root: str | None = None,
                 scale: int = 2, seeds: int | None = None, pairing: str | None = None,
                 options: Mapping[str, Any] | None = None, device: str = "auto") -> float:
    """Each study's tables and figures, the summaries and the papers' findings
    (`sr_lib.findings`, for the studies given), from the runs already under
    `out/runs/<profile>` (varied by `pairing` and `options` as in `run_report`; runs not made
    yet are left out; nothing trains). The seams analysis predicts on `device`. Returns the
    seconds those runs took when they were made."""
    check_options({m for s in studies for m in s.methods}, options)
    pick_device(device)
    with environment(**{DEVICE_ENV: None if device == "auto" else device}):
        return _write_tables(studies, Path(out), profile=profile, dataset=dataset, root=root, scale=scale, seeds=seeds,
                             pairing=pairing, options=options)


def _write_tables(studies: Sequence[Study], out: Path, *, profile: str, dataset: str, root: str | None, scale: int,
                  seeds: int | None, pairing: str | None, options: Mapping[str, Any] | None) -> float:
    runs_root = Path(out) / "runs" / profile
    tidy = []
    compute_seconds = 0.0
    seams = []
    status("tables and figures")
    started = time.time()
    for study in studies:
        runs = study_runs(study, runs_root, profile=profile, dataset=dataset, root=root, scale=scale, seeds=seeds,
                          pairing=pairing, options=options)
        compute_seconds += sum(float(r.info.get("seconds") or 0.0) for r in runs)
        write_study_report(study, runs, out)
        if "seams" in study.analyses:
            seams.append(seam_table(runs, progress=sys.stderr.isatty()))
            write_seam_tables(seams[-1], Path(out) / "tables", study=study.name)
        study_figures(study, runs, Path(out) / "figures")
        tidy.append(tidy_metrics(runs, study=study.name))
    tidy_all = pd.concat(tidy, ignore_index=True)
    write_all_summaries(tidy_all, out)
    names = {s.name for s in studies}
    checked = [f for f in FINDINGS if f.study in names]
    if checked:
        write_findings(evaluate_findings(tidy_all, pd.concat(seams, ignore_index=True) if seams else None,
                                         findings=checked), Path(out) / "tables")
    status("tables and figures written under %s (%.0f s)", out, time.time() - started, end=True)
    return compute_seconds


def write_index(out: Path, outcomes: Sequence[NotebookOutcome], planned: Sequence[PlannedRun], failed_runs: Sequence[str],
                *, profile: str, dataset: str, runs_seconds: float, compute_seconds: float = 0.0,
                variation: Mapping[str, Any] | None = None) -> Path:
    """`reports/index.md`: what made the report, the studies, then links to every table, figure and notebook.
    `runs_seconds` is this invocation's time on runs; `compute_seconds` what the shown runs took
    when they were made (reused runs included), from their `status.json`; `variation` the
    pairing and options that varied the studies' runs, if any."""
    def link(path: Path) -> str:
        rel = path.relative_to(out).as_posix()
        return f"[{rel}]({rel})"

    counts = plan_table(planned)["run"].value_counts().to_dict() if planned else {}
    lines = [
        "# sr_lib report", "",
        f"- profile: `{profile}`, dataset: `{dataset}`",
        f"- made {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} from commit `{git_commit()}`",
        f"- machine: {machine_description()}",
        f"- runs: {len(planned)} ({counts.get('train', 0)} trained, {counts.get('reuse', 0)} reused, "
        f"{counts.get('n/a', 0)} not applicable) in {runs_seconds / 60:.1f} min; "
        f"notebooks {sum(o.seconds for o in outcomes) / 60:.1f} min",
        f"- the runs shown took {compute_seconds / 60:.1f} min to train and test when they were made",
    ]
    if variation:
        lines.append(f"- runs varied from the studies' own: pairing `{variation.get('pairing') or 'as the study'}`, "
                     f"method options `{json.dumps(variation.get('options') or {}, sort_keys=True)}` "
                     "(notebooks 10_train and 30 skipped: they show the studies' own runs)")
    lines += ["", "## Tables", ""]
    lines += [f"- {link(p)}" for p in sorted((out / "tables").glob("*.md"))]
    lines += ["- " + link(out / "tables" / "summary.csv") + " (tidy, for scripts)", "", "## Figures", ""]
    lines += [f"- {link(p)}" for p in sorted((out / "figures").glob("*.png"))]
    lines += ["", "## Executed notebooks", "", "| notebook | status | minutes |", "| --- | --- | --- |"]
    for o in outcomes:
        status = "ok" if o.ok else f"**failed**: {o.error}"
        lines.append(f"| {link(o.output)} | {status} | {o.seconds / 60:.1f} |")
    failed = [o for o in outcomes if not o.ok]
    lines += ["", f"{len(failed)} of {len(outcomes)} notebooks failed." if failed else "Every notebook ran.", ""]
    lines += ["## Failed runs", ""] + ([f"- {f}" for f in failed_runs] or ["none"]) + [""]
    return write_text(out / "index.md", "\n".join(lines))
