"""`sr-lib report --executor local|slurm`: runs trained as submitit jobs. With submitit's local
executor (jobs are processes on this machine) the run folders and their metrics equal those of
in-process runs; a job that raises or is killed is a failed-run line naming the job and its
log, never a crash. The SLURM executor is checked without a cluster: fake `srun` and `sbatch`
on PATH record the sbatch script submitit writes from the user's options (or refuse it). The
CLI passes --executor and --executor-option through and refuses what it cannot mean."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sr_lib.experiment import RunConfig
from sr_lib.pipeline import ExecutorError, PlannedRun, _TrainJob, make_executor, plan, run_all
from sr_lib.studies import Study

TWO = Study(name="two", title="two", description="a fixed and a learned method", scenarios=("SR-B",),
            contrasts=("T2",), methods=("bicubic", "srcnn"), seeds=1)
JOB_LINE = re.compile(r"\(job (?P<id>[0-9_]+), log (?P<log>\S+_0_log\.err)\)$")


def _files(folder: Path) -> list[str]:
    """Every file of a run folder, relative to it."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _runs(root: Path) -> list[Path]:
    """The run folders under a runs root (not their locks)."""
    return sorted(p.relative_to(root) for p in root.glob("*/*") if p.is_dir())


@pytest.mark.slow
def test_local_jobs_write_the_same_run_folders_and_metrics_as_in_process_runs(tmp_path, monkeypatch):
    import torch

    from sr_lib.runs import load_run

    monkeypatch.setenv("SR_LIB_CACHE", str(tmp_path / "cache"))  # the jobs inherit it
    jobs_root = tmp_path / "jobs" / "runs" / "test"
    planned = plan([TWO], jobs_root, profile="test")
    assert [p.state for p in planned] == ["train", "train"]
    # a run whose job raises (its dataset folder is not there): run_experiment fails before its folder exists
    missing = PlannedRun("two", RunConfig(method="bicubic", scenario="SR-B", profile="test", dataset="folder",
                                          root=str(tmp_path / "no_such_folder")), "train")
    seen = []
    failed = run_all([*planned, missing], jobs_root, executor="local", workers=3, progress=False,
                     on_progress=seen.append)
    assert len(failed) == 1, failed
    assert failed[0].startswith("two: bicubic on SR-B T2 seed 0: ") and "no_such_folder: no such folder" in failed[0]
    where = JOB_LINE.search(failed[0])
    assert where, failed[0]
    log = Path(where["log"])
    assert log.is_file() and log.parent.parent == jobs_root.parent / "jobs" and log.name.startswith(where["id"])
    assert "no such folder" in log.read_text()  # the job's traceback is in the log the line names
    assert (seen[-1].done, seen[-1].total) == (3, 3) and seen[-1].running == []
    assert {r.name() for p in seen for r in p.running} == {"[two] bicubic SR-B T2 seed 0", "[two] srcnn SR-B T2 seed 0"}

    # the same two runs in this process, with the threads each of the three jobs had
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 3))
    try:
        here_root = tmp_path / "here" / "runs" / "test"
        assert run_all(plan([TWO], here_root, profile="test"), here_root, progress=False) == []
    finally:
        torch.set_num_threads(threads)
    assert _runs(jobs_root) == _runs(here_root) and len(_runs(here_root)) == 2
    for folder in _runs(here_root):
        job, here = load_run(jobs_root / folder), load_run(here_root / folder)
        assert job.status == here.status == "done"
        assert _files(jobs_root / folder) == _files(here_root / folder)
        assert job.info["identity"] == here.info["identity"] and job.info["device"] == "cpu"
        a, b = pd.read_csv(jobs_root / folder / "metrics.csv"), pd.read_csv(here_root / folder / "metrics.csv")
        assert list(a.columns) == list(b.columns) and len(a) == len(b) > 0
        scores = [c for c in a.select_dtypes("number").columns if c != "seconds"]  # seconds: the clock's
        assert {"psnr", "ssim", "mse", "psnr_slices", "ssim_slices"} <= set(scores)
        pd.testing.assert_frame_equal(a.drop(columns=[*scores, "seconds"]), b.drop(columns=[*scores, "seconds"]))
        np.testing.assert_allclose(a[scores].to_numpy(), b[scores].to_numpy(), rtol=1e-6, atol=0)  # seeded, CPU
    assert "log.csv" in _files(jobs_root / "SR-B_T2_x2_paired" / next(
        p.name for p in (jobs_root / "SR-B_T2_x2_paired").iterdir() if p.name.startswith("srcnn")))
    assert [p.state for p in plan([TWO], jobs_root, profile="test")] == ["reuse", "reuse"]


def _job_processes(marker: str) -> list[tuple[int, int]]:
    """(pid, parent pid) of the submitit job processes whose command line names `marker`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            cmdline = (stat.parent / "cmdline").read_bytes()
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if b"submitit.core._submit" in cmdline and marker.encode() in cmdline:
            found.append((int(stat.parent.name), ppid))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc to find the job's process")
def test_a_killed_job_is_a_failed_run_naming_the_job_and_its_log(tmp_path, monkeypatch):
    monkeypatch.setenv("SR_LIB_CACHE", str(tmp_path / "cache"))
    runs_root = tmp_path / "runs" / "test"
    killed: list[tuple[int, int]] = []

    def kill_the_job(progress) -> None:  # as the kernel's OOM killer would
        for pid, ppid in [] if killed else _job_processes(str(tmp_path)):
            os.kill(pid, signal.SIGKILL)
            killed.append((pid, ppid))

    run = PlannedRun("k", RunConfig(method="bicubic", scenario="SR-B", profile="test"), "train")
    failed = run_all([run], runs_root, executor="local", progress=False, on_progress=kill_the_job)
    assert len(killed) == 1, "the job's process was never seen"
    (line,) = failed
    assert line.startswith("k: bicubic on SR-B T2 seed 0: job ended without a result"), line
    where = JOB_LINE.search(line)
    assert where and where["id"] == str(killed[0][1])  # a local job's id is the pid of the process that ran ours
    assert Path(where["log"]).is_file()
    assert not list(runs_root.glob("*/*/status.json"))  # nothing recorded as done


def test_slurm_jobs_get_the_options_given_in_their_sbatch_script(tmp_path, monkeypatch):
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    # submitit looks for srun to know it is on a SLURM login node; sbatch records the script and answers as SLURM does
    sbatch = f'cp "$1" {tmp_path}/script.sh\necho "Submitted batch job 4242"'
    for name, body in [("srun", "exit 1"), ("sbatch", sbatch)]:
        (bin_ / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_ / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    executor = make_executor("slurm", tmp_path / "jobs", {"slurm_partition": "gpu", "gpus_per_node": 1,
                                                          "timeout_min": 300, "cpus_per_task": 8, "mem_gb": 32})
    with executor.batch():  # as `_run_with_executor` submits: one job array
        jobs = [executor.submit(_TrainJob(), RunConfig(method="srcnn", seed=seed), tmp_path / "runs", False, "auto",
                                None) for seed in (0, 1)]
    assert [j.job_id for j in jobs] == ["4242_0", "4242_1"]
    script = (tmp_path / "script.sh").read_text().splitlines()
    for flag in ("--partition=gpu", "--gpus-per-node=1", "--time=300", "--cpus-per-task=8", "--mem=32GB",
                 "--job-name=sr-lib", "--array=0-1%2", "--signal=USR2@90",
                 f"--error={tmp_path}/jobs/%A_%a_0_log.err"):
        assert f"#SBATCH {flag}" in script, flag
    assert any(line.startswith("srun ") and f"{sys.executable} -u -m submitit.core._submit" in line for line in script)
    assert str(jobs[1].paths.stderr) == f"{tmp_path}/jobs/4242_1_0_log.err"  # the log a failed-run line names
    default = make_executor("slurm", tmp_path / "jobs2")  # ours, not submitit's 5 minutes
    default.submit(print)
    assert "#SBATCH --time=240" in (tmp_path / "script.sh").read_text().splitlines()


def test_a_refused_slurm_submission_fails_its_runs_not_the_report(tmp_path, monkeypatch):
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    refuse = 'echo "sbatch: error: invalid partition specified: gpux" >&2\nexit 1'
    for name, body in [("srun", "exit 1"), ("sbatch", refuse)]:
        (bin_ / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_ / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SR_LIB_CACHE", str(tmp_path / "cache"))
    planned = [PlannedRun("s", RunConfig(method="bicubic", scenario="SR-B", profile="test", seed=seed), "train")
               for seed in (0, 1)]
    failed = run_all(planned, tmp_path / "runs" / "test", executor="slurm", device="cuda",  # no GPU needed here
                     executor_parameters={"slurm_partition": "gpux"}, progress=False)
    assert failed == [f"s: bicubic on SR-B T2 seed {seed}: not submitted to slurm: sbatch: error: invalid partition "
                      "specified: gpux" for seed in (0, 1)]


def test_executor_names_and_options_are_checked_before_any_work(tmp_path):
    planned = [PlannedRun("s", RunConfig(method="bicubic", scenario="SR-B", profile="test"), "train")]
    with pytest.raises(ExecutorError, match="'bogus': choose one of local, slurm"):
        run_all(planned, tmp_path / "runs", executor="bogus")
    with pytest.raises(ExecutorError, match="need an executor"):
        run_all(planned, tmp_path / "runs", executor_parameters={"timeout_min": 5})
    with pytest.raises(ExecutorError, match="local executor: .*timeout_min"):
        run_all(planned, tmp_path / "runs", executor="local", executor_parameters={"timeout_min": "soon"})
    with pytest.raises(ExecutorError, match="partitionn"):
        make_executor("local", tmp_path / "jobs", {"partitionn": "gpu"})
    make_executor("local", tmp_path / "jobs", {"slurm_partition": "gpu"})  # SLURM's options: ignored here
    assert not list((tmp_path / "runs").rglob("*"))


@pytest.mark.parametrize("visible, options, seen", [("2,3", {}, "2,3"), ("2,3", {"gpus_per_node": 1}, "2"),
                                                    ("", {}, "")])
def test_local_jobs_see_the_gpus_this_process_sees(tmp_path, monkeypatch, visible, options, seen):
    """submitit alone would set a local job's CUDA_VISIBLE_DEVICES to its gpus_per_node first
    indices, none by default: a report on a GPU machine would train its jobs on the CPU."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    executor = make_executor("local", tmp_path / "jobs", options)
    job = executor.submit(os.getenv, "CUDA_VISIBLE_DEVICES", "unset")  # a quick job: no torch to import
    assert job.result() == seen
    if visible:
        with pytest.raises(ExecutorError, match="3 gpus requested"):  # more than there are
            make_executor("local", tmp_path / "jobs", {"gpus_per_node": 3})


def test_a_requeued_job_resumes_its_run_rather_than_starting_it_over(tmp_path):
    config = RunConfig(method="srcnn")
    requeued = _TrainJob().checkpoint(config, tmp_path, True, "cuda", 4)  # what submitit resubmits after a time-out
    assert isinstance(requeued.function, _TrainJob)
    assert requeued.args == (config, tmp_path, False, "cuda", 4)  # forced would clear its checkpoint


def test_report_passes_the_executor_and_its_options_through(tmp_path, monkeypatch, capsys):
    from sr_lib import pipeline
    from sr_lib.cli import main

    calls = []
    monkeypatch.setattr(pipeline, "run_report", lambda **kw: calls.append(kw) or tmp_path / "index.md")
    assert main(["report", "--profile", "test", "--executor", "slurm", "--executor-option", "slurm_partition=gpu",
                 "--executor-option", "gpus_per_node=1", "--executor-option", "mem_gb=7.5"]) == 0
    assert calls[-1]["executor"] == "slurm"
    assert calls[-1]["executor_parameters"] == {"slurm_partition": "gpu", "gpus_per_node": 1, "mem_gb": 7.5}
    assert main(["report", "--profile", "test"]) == 0
    assert calls[-1]["executor"] is None and calls[-1]["executor_parameters"] == {}
    for bad, said in [(["--executor", "bogus"], "invalid choice: 'bogus'"),
                      (["--executor", "local", "--executor-option", "timeout_min"], "expected NAME=VALUE"),
                      (["--executor-option", "timeout_min=5"], "needs --executor"),
                      (["--executor", "local", "--executor-option", "a=1", "--executor-option", "a=2"], "given twice")]:
        capsys.readouterr()
        try:
            code = main(["report", "--profile", "test", *bad])
        except SystemExit as err:  # argparse's own refusal
            code = err.code
        assert code == 2 and said in capsys.readouterr().err, bad
    assert len(calls) == 2


def test_the_cli_offers_the_pipelines_executors():
    from sr_lib import cli, pipeline

    assert tuple(cli.EXECUTORS) == pipeline.EXECUTORS
