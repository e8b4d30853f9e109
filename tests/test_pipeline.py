"""`sr-lib report` end to end on the test profile: every run of a study, a method that fails
is recorded as failed in its study's table and the index while the others' tables and
figures are intact, n/a cells, the dry run, portable executed notebooks, a log without
papermill's and the kernel's noise, workers' steps reaching the parent, and runs varied by
method options and pairing."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sr_lib import studies
from sr_lib.methods import METHODS, Method, Observation
from sr_lib.pipeline import plan, run_all, run_report
from sr_lib.studies import Study


class Broken(Method):
    name = "srresnet"  # stands in for a registered method, in this process only
    learned = True  # so it runs once per seed, as the net it replaces

    def predict(self, observation: Observation) -> np.ndarray:
        raise RuntimeError("predict exploded")


TINY = Study(name="tiny", title="tiny", description="a test study", scenarios=("kspace-2x", "SR-B"), contrasts=("T2",),
             methods=("input", "bicubic", "srresnet"), seeds=2, detail=("input",))


# What papermill and the kernel used to print into every report's log.
NOISE = ("Unable to parse line", "Passed unknown parameter", "Kernel is running over TCP", "KeyboardInterrupt caught",
         "MissingIDFieldWarning", "IPKernelApp")


@pytest.mark.slow
def test_report_with_a_failing_method_keeps_the_others_and_marks_it(tmp_path, monkeypatch, capfd, caplog):
    caplog.set_level(logging.DEBUG, logger="sr_lib")
    monkeypatch.setenv("SR_LIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(studies.STUDIES, "tiny", TINY)
    monkeypatch.setitem(METHODS, "srresnet", Broken)
    out = tmp_path / "reports"
    plan = run_report(studies=["tiny"], profile="test", out=out, dry_run=True)
    assert plan["run"].value_counts().to_dict() == {"train": 6, "n/a": 2}  # input and bicubic learn nothing: one seed
    index = run_report(studies=["tiny"], profile="test", out=out, workers=1)  # the patched method lives in this process
    summary = pd.read_csv(out / "tables" / "summary.csv", keep_default_na=False, na_values=[""])  # "n/a" is a status
    brain = summary[summary["region"] == "brain"].set_index(["scenario", "method"])
    assert brain.loc[("SR-B", "bicubic"), "status"] == "done" and brain.loc[("SR-B", "bicubic"), "n_seeds"] == 1
    assert brain.loc[("kspace-2x", "bicubic"), "status"] == "n/a"
    assert brain.loc[("SR-B", "srresnet"), "status"] == "failed"
    table = (out / "tables" / "tiny.md").read_text()
    assert "n/a" in table and "failed" in table and "predict exploded" in table
    assert (out / "figures" / "tiny_SR-B_T2_x2_paired_test.png").stat().st_size > 10_000
    text = index.read_text()
    assert "srresnet on SR-B T2 seed 0: RuntimeError: predict exploded" in text and "Every notebook ran." in text
    plan_after = run_report(studies=["tiny"], profile="test", out=out, dry_run=True)["run"].value_counts().to_dict()
    assert plan_after == {"reuse": 2, "train": 4, "n/a": 2}  # failed runs are tried again, finished ones reused
    notebooks = list((out / "runs" / "notebooks").rglob("*.ipynb"))
    assert len(notebooks) == 5  # 00, 01, one 10_train (the detail run), 80, 90
    for path in notebooks:
        raw = path.read_text()
        assert str(tmp_path) not in raw and "/work/" not in raw
        assert "widget-view" not in raw and "widgets" not in json.loads(raw)["metadata"]
    # `sr-lib tables` rebuilds the same tables from the runs, training nothing
    from sr_lib.cli import main

    before = (out / "tables" / "tiny.md").read_text()
    (out / "tables" / "tiny.md").unlink()
    monkeypatch.setattr("sr_lib.runs.run_experiment", lambda *a, **k: pytest.fail("tables must not train"))
    assert main(["tables", "--study", "tiny", "--profile", "test", "--out", str(out)]) == 0
    assert (out / "tables" / "tiny.md").read_text() == before
    # the report's log: one line per notebook and run, none of papermill's or the kernel's noise
    logged = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)
    printed = capfd.readouterr()
    for noise in NOISE:
        assert noise not in logged and noise not in printed.err and noise not in printed.out
    assert "notebook 00_data: ok" in logged and "failed [tiny] srresnet SR-B T2 seed 0" in logged
    assert "done    [tiny] bicubic SR-B T2 seed 0" in logged and "of 6 runs done" in logged


def test_training_facts_read_where_a_run_stopped(tmp_path):
    from sr_lib.experiment import RunConfig
    from sr_lib.report import training_facts
    from sr_lib.storage import RunResult

    log = pd.DataFrame({"step": [100, 200, 300, 400, 500], "val_psnr": [27.0, 28.0, 28.5, 28.6, 28.55]})
    info = {"status": "done", "steps_done": 500, "best_step": 400, "stopped_early": True, "method": {"steps": 600}}
    run = RunResult(RunConfig(method="srcnn"), tmp_path, "done", pd.DataFrame(), log, info)
    facts = training_facts(run)
    assert facts["steps_done"] == 500 and facts["steps_cap"] == 600 and facts["best_step"] == 400
    assert facts["stopped_early"] == 1.0 and facts["val_psnr_best"] == 28.6
    assert facts["val_gain_tail"] == pytest.approx(28.55 - 28.6)  # last validation minus the one at step 400
    untrained = training_facts(RunResult(RunConfig(method="bicubic"), tmp_path, "done", pd.DataFrame(), pd.DataFrame(),
                                         {"status": "done"}))
    assert all(np.isnan(v) for v in untrained.values())


@pytest.mark.slow
def test_runs_side_by_side_give_the_same_folders_and_numbers_as_one_by_one(tmp_path, monkeypatch):
    import torch

    from sr_lib.runs import load_run

    monkeypatch.setenv("SR_LIB_CACHE", str(tmp_path / "cache"))
    two = Study(name="two", title="two", description="two seeds", scenarios=("SR-B",), contrasts=("T2",),
                methods=("srcnn",), seeds=2)
    planned = plan([two], tmp_path / "parallel", profile="test")
    assert [p.state for p in planned] == ["train", "train"]
    seen = []  # what the parent's progress callback saw of the workers' training
    assert run_all(planned, tmp_path / "parallel", workers=2, progress=False, on_progress=seen.append) == []
    steps = {(r.config.seed, r.step) for p in seen for r in p.running if r.step is not None and r.steps == 12}
    assert {seed for seed, _ in steps} == {0, 1}  # each worker's steps reached the parent
    assert any(p.running and "step" in p.line() and p.line().startswith("[two] srcnn SR-B T2 seed") for p in seen)
    assert (seen[-1].done, seen[-1].total) == (2, 2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what each of the two workers had on a 2-core machine
    try:
        assert run_all(plan([two], tmp_path / "serial", profile="test"), tmp_path / "serial", workers=1,
                       progress=False) == []
    finally:
        torch.set_num_threads(threads)
    def folders(root):
        return sorted(p.relative_to(root) for p in root.glob("*/*") if not p.name.startswith("."))  # not the locks

    parallel, serial = folders(tmp_path / "parallel"), folders(tmp_path / "serial")
    assert parallel == serial and len(parallel) == 2
    for folder in parallel:
        a, b = load_run(tmp_path / "parallel" / folder), load_run(tmp_path / "serial" / folder)
        assert a.status == b.status == "done"
        np.testing.assert_allclose(a.metrics["psnr"], b.metrics["psnr"], rtol=1e-5)
    assert all(p.state == "reuse" for p in plan([two], tmp_path / "parallel", profile="test"))


_SLOW_REPORT = '''
import sys
from pathlib import Path

from sr_lib.experiment import RunConfig
from sr_lib.pipeline import PlannedRun, run_all

if __name__ == "__main__":
    options = {"steps": 1_000_000, "patience": 0}  # trains until stopped
    planned = [PlannedRun("slow", RunConfig(method="srcnn", scenario="SR-B", profile="test", seed=seed,
                                            options=options), "train") for seed in range(4)]
    try:
        run_all(planned, Path(sys.argv[1]), workers=2, progress=False)
    except KeyboardInterrupt as err:
        print(f"interrupted: {err}", flush=True)
        sys.exit(130)
'''


def _workers_of(pid: int) -> list[int]:
    """The spawned worker processes of `pid` (not multiprocessing's resource tracker)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _start_slow_report(tmp_path: Path) -> tuple[subprocess.Popen, list[int], Path]:
    """A report of four endless runs on two workers, once both workers are training."""
    script, runs = tmp_path / "slow_report.py", tmp_path / "runs"
    script.write_text(_SLOW_REPORT)
    env = {**os.environ, "SR_LIB_CACHE": str(tmp_path / "cache")}
    parent = subprocess.Popen([sys.executable, str(script), str(runs)], env=env, stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        workers = _workers_of(parent.pid)
        if len(workers) == 2 and len(list(runs.glob("*/*/config.json"))) == 2:
            time.sleep(8)  # into the training loop (imports, data, nets)
            return parent, workers, runs
        assert parent.poll() is None, "the report ended before its workers started"
        time.sleep(0.5)
    parent.kill()
    raise AssertionError("the two workers did not start within 120 s")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc to find the workers")
def test_a_report_stops_when_one_worker_is_interrupted_and_starts_nothing_new(tmp_path):
    parent, workers, runs = _start_slow_report(tmp_path)
    os.kill(workers[0], signal.SIGTERM)
    out, _ = parent.communicate(timeout=120)
    assert parent.returncode == 130 and "interrupted" in out
    assert not any(_alive(w) for w in workers)
    folders = [p for p in runs.glob("*/*") if p.is_dir()]
    assert len(folders) == 2  # the two queued runs never started
    for folder in folders:  # both stopped runs saved a checkpoint to resume from, and are not marked done
        assert (folder / "checkpoint.pt").exists() and not (folder / "status.json").exists()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc to find the workers")
def test_workers_stop_and_checkpoint_when_the_report_process_dies(tmp_path):
    parent, workers, runs = _start_slow_report(tmp_path)
    parent.kill()
    parent.wait()
    deadline = time.time() + 90
    while any(_alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.5)
    assert not any(_alive(w) for w in workers)
    folders = [p for p in runs.glob("*/*") if p.is_dir()]
    assert len(folders) == 2 and all((f / "checkpoint.pt").exists() for f in folders)


def test_method_options_and_pairing_vary_the_runs():
    from sr_lib.report import OptionError, check_options, study_configs

    study = Study(name="v", title="v", description="v", scenarios=("SR-B",), contrasts=("T2",),
                  methods=("bicubic", "srcnn", "srgan"), seeds=1)
    default = {c.method: c for c in study_configs(study, profile="test")}
    varied = {c.method: c for c in study_configs(study, profile="test", pairing="misaligned",
                                                 options={"steps": 5, "srgan.adversarial_weight": 0.01})}
    assert varied["bicubic"].options == {} and varied["bicubic"].pairing == "misaligned"  # it has no steps
    assert varied["srcnn"].options == {"steps": 5}
    assert varied["srgan"].options == {"steps": 5, "adversarial_weight": 0.01}
    resolved = varied["srgan"].resolve().options
    assert resolved.steps == 5 and resolved.adversarial_weight == 0.01
    assert default["srgan"].resolve().options.steps == 12  # the test profile's
    for method in ("srcnn", "srgan"):  # a new identity, so a new run folder beside the default one
        assert varied[method].resolve().folder("d") != default[method].resolve().folder("d")
    assert study_configs(study, profile="test", options={"schedule": "constant"})[1].resolve().identity() == \
        default["srcnn"].resolve().identity()  # an option at its default value changes nothing
    check_options(study.methods, {"steps": 5, "srgan.warmup": 0.1})
    for bad, named in [({"no_such": 1}, "no_such"), ({"srcnn.warmup": 0.1}, "srcnn.warmup"),
                       ({"gan-cpce.steps": 1}, "gan-cpce.steps")]:
        with pytest.raises(OptionError, match=named):
            check_options(study.methods, bad)


_TINY_NOTEBOOK = {
    "cells": [
        {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "outputs": [], "execution_count": None,
         "source": ['runs_root = ""          # where run folders go; empty = reports/runs/<profile>\n',
                    "fail = False           # raise in the next cell"]},
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
         "source": ["import os\n", "os.write(2, b'the kernel itself says this\\n')\n",
                    "if fail:\n", "    raise ValueError(f'boom in {runs_root}')"]},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 4,  # no cell ids: nbformat would warn
}


@pytest.mark.slow
def test_a_notebook_runs_without_noise_and_a_failing_one_says_why(tmp_path, monkeypatch, capfd, caplog):
    from sr_lib import pipeline

    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(pipeline, "notebooks_dir", lambda: tmp_path)
    (tmp_path / "tiny.ipynb").write_text(json.dumps(_TINY_NOTEBOOK))
    ok = pipeline.run_notebook("tiny", tmp_path / "out" / "a" / "tiny.ipynb", {"runs_root": "here"})
    failed = pipeline.run_notebook("tiny", tmp_path / "out" / "b" / "tiny.ipynb", {"runs_root": "there", "fail": True})
    assert ok.ok and not failed.ok and failed.error == "ValueError: boom in there"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(m.startswith("notebook tiny failed: ValueError: boom in there") for m in warnings)
    assert sum("its kernel said:\n  the kernel itself says this" in m for m in warnings) == 2  # passed on, not dropped
    shown = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.INFO) + "".join(capfd.readouterr())
    assert not any(noise in shown for noise in NOISE)
    assert any("Unable to parse line" in r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)


def test_the_report_trains_on_the_device_it_is_given(tmp_path, monkeypatch):
    import torch

    from sr_lib.experiment import RunConfig
    from sr_lib.pipeline import PlannedRun

    monkeypatch.setenv("SR_LIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # `auto` would now pick CUDA
    planned = [PlannedRun("d", RunConfig(method="bicubic", scenario="SR-B", profile="test"), "train")]
    assert run_all(planned, tmp_path / "runs", device="cpu", progress=False) == []
    assert json.loads(next((tmp_path / "runs").glob("*/*/status.json")).read_text())["device"] == "cpu"
    with pytest.raises(ValueError, match="cuda:9"):
        run_report(studies=["baselines"], profile="test", out=tmp_path / "r", dry_run=True, device="cuda:9")
