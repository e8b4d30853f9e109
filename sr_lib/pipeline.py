"""`sr-lib report`: run every study's runs (side by side in worker processes on a CPU with
several cores), then the notebooks that show them, then write `reports/index.md`.

Order: 00_data and 01_degradation (papermill) show the data; each study's runs train (or
are reused), sharing the prepared data cached on disk; 10_train is executed only for the runs a
study shows in detail; each study's tables and difference maps are written in-process; 30
shows the ablation studies, 80 and 90 every study (run on their own in JupyterLab, they write them).
Executed notebooks are stripped of widget state and of this machine's absolute paths.
A run that fails is recorded as failed and the report goes on.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import multiprocessing
import multiprocessing.connection
import os
import platform
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path

import pandas as pd
import papermill
import torch
from tqdm.auto import tqdm

from sr_lib.atomic import terminate_as_interrupt, write_text
from sr_lib.experiment import RunConfig
from sr_lib.findings import FINDINGS, evaluate_findings, write_findings
from sr_lib.paths import PROJECT_ROOT, notebooks_dir, reports_dir
from sr_lib.prepare import data_fingerprint, prepare_data
from sr_lib.report import study_figures, study_runs, tidy_metrics, write_all_summaries, write_study_report
from sr_lib.runs import is_finished, run_experiment
from sr_lib.seams import seam_table, write_seam_tables
from sr_lib.studies import Study, get_studies

KERNEL = "python3"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


@dataclasses.dataclass
class NotebookOutcome:
    notebook: str
    output: Path
    ok: bool
    seconds: float
    error: str = ""


def run_notebook(name: str, output: Path, parameters: dict, *, cwd: Path | None = None) -> NotebookOutcome:
    """Execute notebooks/<name>.ipynb with papermill (explicit kernel) into `output`, then
    strip it (see `strip_notebook`)."""
    started = time.time()
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(
            str(notebooks_dir() / f"{name}.ipynb"), str(output), parameters=parameters, kernel_name=KERNEL,
            cwd=str(cwd or notebooks_dir()), progress_bar=False, log_output=False,
        )
        outcome = NotebookOutcome(name, output, True, time.time() - started)
    except Exception as err:  # PapermillExecutionError, dead kernel, ...
        if getattr(err, "ename", "") in ("TrainingInterrupted", "KeyboardInterrupt"):
            raise KeyboardInterrupt(f"{name} interrupted; its checkpoint is saved, rerun to resume") from err
        text = str(err).strip()
        message = getattr(err, "evalue", None) or (text.splitlines()[-1] if text else type(err).__name__)
        outcome = NotebookOutcome(name, output, False, time.time() - started,
                                  f"{getattr(err, 'ename', type(err).__name__)}: {message}")
    if output.exists():
        strip_notebook(output, roots=[output.parent.parent.parent, PROJECT_ROOT])
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
         scale: int = 2, seeds: int | None = None, force: bool = False) -> list[PlannedRun]:
    """Every run of every study and whether it will train, be reused, or is not applicable."""
    planned = []
    for study in studies:
        for config in study.configs(profile=profile, dataset=dataset, root=root, scale=scale, seeds=seeds):
            experiment = config.resolve()
            if experiment.unsupported:
                planned.append(PlannedRun(study.name, config, "n/a"))
                continue
            fingerprint = data_fingerprint(config)
            folder = runs_root / experiment.folder(fingerprint)
            reuse = not force and is_finished(folder, experiment.identity(fingerprint))
            planned.append(PlannedRun(study.name, config, "reuse" if reuse else "train"))
    return planned


def default_workers() -> int:
    """Runs trained side by side: 1 on a GPU (one run fills it); on CPU one per core, at most 4,
    each with an equal share of the cores. Small nets use two threads poorly: on the 2-core
    CPU machine, two 1-thread DCSRN runs side by side took 113 ms per step each against 147 ms
    for one 2-thread run (1.3x the throughput)."""
    if torch.cuda.is_available():
        return 1
    return max(1, min(os.cpu_count() or 1, 4))


PARENT_GONE_GRACE_S = 120  # a worker whose parent died gets this long to checkpoint, then exits


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


def _train_in_worker(config: RunConfig, runs_root: Path, force: bool, threads: int, report: Connection) -> None:
    """One run in a worker process (no progress bars); sends back its status and error, or
    'interrupted' when SIGTERM/SIGINT stopped it (its checkpoint is saved)."""
    _exit_with_parent()
    torch.set_num_threads(threads)
    try:
        result = run_experiment(config, runs_root, force=force, progress=False)
        outcome = (result.status, result.error or "")
    except KeyboardInterrupt as err:  # TrainingInterrupted, or Ctrl-C outside the training loop
        outcome = ("interrupted", str(err))
    except Exception as err:
        outcome = ("failed", f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}")
    report.send(outcome)
    report.close()


@dataclasses.dataclass
class _Worker:
    run: PlannedRun
    process: multiprocessing.process.BaseProcess
    reader: Connection

    def outcome(self) -> tuple[str, str]:
        """Its (status, error), once the process has ended."""
        self.process.join()
        try:
            if self.reader.poll():
                return self.reader.recv()
        except (EOFError, OSError):
            pass
        finally:
            self.reader.close()
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
                      progress: bool) -> list[tuple[PlannedRun, str, str]]:
    """Train `to_train` in up to `workers` spawned processes, one per run; returns (run,
    status, error) for each. An interrupted run (Ctrl-C, or SIGTERM to us or to a worker)
    starts nothing new: the other workers are stopped, each saving its checkpoint, and
    KeyboardInterrupt is raised. Workers also stop when this process dies."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")  # no fork of a process that holds torch's thread pools
    pending, running, outcomes = list(to_train), [], []
    bar = tqdm(total=len(pending), desc=f"runs ({workers} side by side)", unit="run", disable=not progress)
    try:
        with terminate_as_interrupt():
            while pending or running:
                while pending and len(running) < workers:
                    p = pending.pop(0)
                    reader, writer = context.Pipe(duplex=False)
                    process = context.Process(target=_train_in_worker, args=(p.config, runs_root, force, threads, writer),
                                              name=f"sr-lib {p.config.method} seed {p.config.seed}")
                    process.start()
                    writer.close()
                    running.append(_Worker(p, process, reader))
                ended = multiprocessing.connection.wait([w.process.sentinel for w in running])
                for w in [w for w in running if w.process.sentinel in ended]:
                    running.remove(w)
                    status, error = w.outcome()
                    if status == "interrupted":
                        raise KeyboardInterrupt(f"{w.run.config.method} seed {w.run.config.seed}: {error}")
                    outcomes.append((w.run, status, error))
                    bar.set_postfix_str(f"{w.run.config.method} seed {w.run.config.seed} {status}")
                    bar.update()
    finally:
        _stop_workers(running)
        bar.close()
    return outcomes


def run_all(planned: Sequence[PlannedRun], runs_root: Path, *, force: bool = False, workers: int = 1,
            progress: bool = True) -> list[str]:
    """Train (or reuse) every planned run; returns one line per failed run. With `workers` > 1
    the runs to train go to that many spawned processes, each with `cpu_count // workers`
    threads; a run shared by two studies trains once (`run_experiment` locks its folder).
    Interrupted (Ctrl-C, SIGTERM), it raises KeyboardInterrupt with every checkpoint saved."""
    def failure(p: PlannedRun, error: str) -> str:
        return f"{p.study}: {p.config.method} on {p.config.scenario} {p.config.contrast} seed {p.config.seed}: {error}"

    unique: dict[str, PlannedRun] = {}
    for p in planned:
        if p.state != "n/a":
            unique.setdefault(json.dumps(p.config.to_dict(), sort_keys=True, default=str), p)
    to_train = [p for p in unique.values() if p.state == "train"]
    if workers <= 1 or len(to_train) < 2:
        failed = []
        bar = tqdm(planned, desc="runs", unit="run", disable=not progress)
        for p in bar:
            bar.set_postfix_str(f"{p.study}: {p.config.scenario} {p.config.method} seed {p.config.seed} ({p.state})")
            result = run_experiment(p.config, runs_root, force=force and p.state == "train", progress=progress)
            if result.status == "failed":
                failed.append(failure(p, result.error or ""))
        return failed
    for p in to_train:  # build each prepared-data cache entry once, before workers race to it
        prepare_data(p.config)
    outcomes = _run_side_by_side(to_train, runs_root, force=force, workers=workers, progress=progress)
    return [failure(p, error) for p, status, error in outcomes if status == "failed"]


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
    force: bool = False,
    out: str | os.PathLike | None = None,
    dry_run: bool = False,
    progress: bool = True,
    workers: int | None = None,
) -> Path | pd.DataFrame:
    """Regenerate the report for `studies` (all by default); returns the path of `index.md`,
    or with `dry_run` the table of runs that would train or be reused. `workers` runs train
    side by side (None: `default_workers()`)."""
    out = Path(out) if out is not None else reports_dir()
    chosen = get_studies(studies)
    runs_root = out / "runs" / profile
    planned = plan(chosen, runs_root, profile=profile, dataset=dataset, root=root, scale=scale, seeds=seeds, force=force)
    if dry_run:
        return plan_table(planned)
    executed = out / "runs" / "notebooks"
    common = {"profile": profile, "dataset": dataset, "root": root or ""}
    outcomes = [run_notebook("00_data", executed / "00_data.ipynb", common),
                run_notebook("01_degradation", executed / "01_degradation.ipynb", {**common, "scale": scale})]
    started = time.time()
    failed_runs = run_all(planned, runs_root, force=force, workers=workers or default_workers(), progress=progress)
    runs_seconds = time.time() - started
    for study in chosen:
        first = [p.config for p in planned if p.study == study.name and p.state != "n/a" and p.config.seed == 0
                 and p.config.scenario == study.scenarios[0] and p.config.method in study.detail]
        for config in first:
            params = {**common, "method": config.method, "scenario": config.scenario, "contrast": config.contrast,
                      "scale": config.scale, "pairing": config.pairing, "seed": config.seed,
                      "runs_root": str(runs_root)}
            name = f"{study.name}_{config.scenario}_{config.contrast}_{config.method}.ipynb"
            outcomes.append(run_notebook("10_train", executed / "10_train" / name, params))
    compute_seconds = write_tables(chosen, out, profile=profile, dataset=dataset, root=root, scale=scale, seeds=seeds)
    params = {"profile": profile, "studies": ",".join(s.name for s in chosen), "dataset": dataset, "root": root or "",
              "scale": scale, "seeds": seeds or 0, "reports_root": str(out), "write": False}
    ablations = [s.name for s in chosen if s.ablation]
    if ablations:
        outcomes.append(run_notebook("30_ablations", executed / "30_ablations.ipynb", {
            **{k: params[k] for k in ("profile", "dataset", "root", "scale", "seeds", "reports_root")},
            "studies": ",".join(ablations)}))
    outcomes += [run_notebook("80_comparison_tables", executed / "80_comparison_tables.ipynb", params),
                 run_notebook("90_difference_maps", executed / "90_difference_maps.ipynb", params)]
    return write_index(out, outcomes, planned, failed_runs, profile=profile, dataset=dataset, runs_seconds=runs_seconds,
                       compute_seconds=compute_seconds)


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
                 scale: int = 2, seeds: int | None = None) -> float:
    """Each study's tables and figures, the summaries and the papers' findings
    (`sr_lib.findings`, for the studies given), from the runs already under
    `out/runs/<profile>` (runs not made yet are left out; nothing trains). Returns the
    seconds those runs took when they were made."""
    runs_root = Path(out) / "runs" / profile
    tidy = []
    compute_seconds = 0.0
    seams = []
    for study in studies:
        runs = study_runs(study, runs_root, profile=profile, dataset=dataset, root=root, scale=scale, seeds=seeds)
        compute_seconds += sum(float(r.info.get("seconds") or 0.0) for r in runs)
        write_study_report(study, runs, out)
        if "seams" in study.analyses:
            seams.append(seam_table(runs))
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
    return compute_seconds


def write_index(out: Path, outcomes: Sequence[NotebookOutcome], planned: Sequence[PlannedRun], failed_runs: Sequence[str],
                *, profile: str, dataset: str, runs_seconds: float, compute_seconds: float = 0.0) -> Path:
    """`reports/index.md`: what made the report, the studies, then links to every table, figure and notebook.
    `runs_seconds` is this invocation's time on runs; `compute_seconds` what the shown runs took
    when they were made (reused runs included), from their `status.json`."""
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
        f"- the runs shown took {compute_seconds / 60:.1f} min to train and test when they were made", "",
        "## Tables", "",
    ]
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
