"""The command line: listings, check, apply and bench exit codes, one-line errors, --debug."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from sr_lib.cli import main
from sr_lib.methods import METHODS
from sr_lib.degrade import SCENARIOS


@pytest.fixture(scope="module")
def bicubic_run(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SR_LIB_CACHE", str(tmp_path_factory.mktemp("cache")))
        out = tmp_path_factory.mktemp("runs")
        assert main(["train", "--method", "bicubic", "--scenario", "SR-B", "--profile", "test", "--out", str(out)]) == 0
        yield next(out.glob("*/bicubic-*"))


def write(path, data, affine=None):
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), np.eye(4) if affine is None else affine), path)
    return path


def test_listings_name_every_method_and_scenario(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in METHODS)
    assert main(["scenarios"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in SCENARIOS)


def test_check_reports_problems_and_exits_non_zero(tmp_path, capsys):
    rng = np.random.default_rng(0)
    write(tmp_path / "sub-01_T2.nii.gz", rng.random((8, 8, 6)) + 0.1)
    write(tmp_path / "sub-01_PD.nii.gz", rng.random((8, 8, 5)) + 0.1)  # T2 and PD must share a grid
    write(tmp_path / "sub-02_T1.nii.gz", np.full((8, 8, 6), np.nan))
    write(tmp_path / "scan.nii.gz", rng.random((8, 8, 6)) + 0.1)
    assert main(["check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "T2 and PD grids differ" in out and "NaN or Inf" in out and "name gives no contrast" in out
    assert "4 files checked, 4 with problems" in out


def test_check_of_clean_files_exits_zero(tmp_path, capsys):
    rng = np.random.default_rng(1)
    for contrast in ("T2", "PD"):
        write(tmp_path / f"sub-01_{contrast}.nii.gz", rng.random((8, 8, 6)) + 0.1)
    assert main(["check", str(tmp_path / "*.nii.gz")]) == 0
    assert "2 files checked, 0 with problems" in capsys.readouterr().out


def test_apply_processes_good_files_and_exits_non_zero_for_a_bad_one(bicubic_run, tmp_path, capsys):
    affine = np.diag([1.0, 1.0, 2.5, 1.0])
    good = write(tmp_path / "good.nii.gz", np.random.default_rng(2).random((12, 10, 7)) * 100 + 5, affine)
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(good.read_bytes()[:200])
    out = tmp_path / "out"
    assert main(["apply", "--run", str(bicubic_run), str(good), str(bad), "--out", str(out)]) == 1
    text = capsys.readouterr().out
    assert "1 written, 1 failed" in text and str(bad) in text
    result = nib.load(next(out.glob("good_*.nii.gz")))
    assert result.shape == (24, 20, 7)
    np.testing.assert_allclose(result.header.get_zooms(), (0.5, 0.5, 2.5))
    assert not list(out.glob("bad*"))


def test_errors_are_one_line_exit_1_and_debug_shows_the_traceback(tmp_path, capsys):
    assert main(["apply", "--run", str(tmp_path / "nothing"), "x.nii.gz", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sr-lib: error:") and "not a run folder" in err and err.count("\n") == 1
    with pytest.raises(FileNotFoundError):
        main(["apply", "--debug", "--run", str(tmp_path / "nothing"), "x.nii.gz", "--out", str(tmp_path)])
    assert main(["train", "--method", "nope", "--profile", "test", "--out", str(tmp_path)]) == 1
    assert "unknown method 'nope'" in capsys.readouterr().err


def test_bench_reports_speed_per_method(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SR_LIB_CACHE", str(tmp_path / "cache"))
    assert main(["bench", "--profile", "test", "--methods", "bicubic", "srcnn", "--device", "cpu",
                 "--out", str(tmp_path / "bench")]) == 0
    import pandas as pd

    table = pd.read_csv(tmp_path / "bench" / "bench-test-cpu.csv")
    assert list(table["method"]) == ["bicubic", "srcnn"]
    assert table["infer_s_per_volume"].gt(0).all() and table["train_ms_per_step"].notna().tolist() == [False, True]
    srcnn = table.iloc[1]
    assert srcnn["patches_per_s"] > 0 and srcnn["voxels_per_s"] > srcnn["patches_per_s"]
    assert 0.0 <= srcnn["input_share"] < 1.0 and srcnn["gflop_per_step"] > 0
    markdown = (tmp_path / "bench" / "bench-test-cpu.md").read_text()
    assert "machine:" in markdown and "commit" in markdown and "| srcnn" in markdown


def test_train_of_a_method_that_does_not_apply_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SR_LIB_CACHE", str(tmp_path / "cache"))
    code = main(["train", "--profile", "test", "--method", "input", "--scenario", "SR-B", "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 1 and "input does not apply here" in err and "run failed" not in err


def test_version_and_python_dash_m(capsys):
    import subprocess
    import sys

    from sr_lib import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"sr-lib {__version__}"
    done = subprocess.run([sys.executable, "-m", "sr_lib", "--version"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.strip() == f"sr-lib {__version__}"


def test_runs_list_show_and_clean(bicubic_run, tmp_path, capsys):
    import shutil

    root = tmp_path / "runs"
    done = root / "SR-B" / bicubic_run.name
    shutil.copytree(bicubic_run, done, ignore=shutil.ignore_patterns("predictions"))
    interrupted = root / "SR-B" / "srcnn-test-seed0-0000000000"
    interrupted.mkdir(parents=True)
    (interrupted / "config.json").write_text('{"method": "srcnn", "scenario": "SR-B", "profile": "test"}')
    (interrupted / "checkpoint.pt").write_bytes(b"half")

    assert main(["runs", "list", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"SR-B/{bicubic_run.name}" in out and "unfinished" in out and "done" in out

    assert main(["runs", "show", str(done)]) == 0
    out = capsys.readouterr().out
    assert '"method": "bicubic"' in out and "status: done" in out and "brain: PSNR" in out

    assert main(["runs", "clean", str(root)]) == 0  # a dry run: lists, removes nothing
    assert f"would remove {interrupted}" in capsys.readouterr().out and interrupted.exists()
    assert main(["runs", "clean", str(root), "--yes"]) == 0
    assert f"removed {interrupted}" in capsys.readouterr().out
    assert not interrupted.exists() and (done / "status.json").exists()  # the finished run is kept


def test_usage_errors_exit_2_and_runtime_errors_exit_1(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--no-such-flag"])
    assert exit_info.value.code == 2 and "usage:" in capsys.readouterr().err
    assert main(["check", str(tmp_path / "missing.nii.gz")]) == 1


def test_apply_writes_names_check_accepts_and_overwrite_replaces_them(bicubic_run, tmp_path, capsys):
    # issue 13: BIDS-derivative names that `check` accepts; an existing output stops the batch
    # (one line naming it, nothing written) unless --overwrite
    scans = tmp_path / "sub-01" / "ses-1" / "anat"
    scans.mkdir(parents=True)
    scan = write(scans / "sub-01_ses-1_T2w.nii.gz", np.random.default_rng(3).random((12, 10, 7)) * 100 + 5)
    out = tmp_path / "out"
    assert main(["apply", "--run", str(bicubic_run), str(tmp_path / "sub-01"), "--out", str(out)]) == 0
    output = out / "sub-01_ses-1_desc-bicubicSRBx2_T2w.nii.gz"
    assert f"ok      {scan} -> {output}\n" in capsys.readouterr().out
    assert main(["check", str(out)]) == 0
    assert "1 files checked, 0 with problems" in capsys.readouterr().out
    stamp = output.stat().st_mtime_ns
    assert main(["apply", "--run", str(bicubic_run), str(scan), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"sr-lib: error: {output}: output exists") and captured.err.count("\n") == 1
    assert "--overwrite" in captured.err and output.stat().st_mtime_ns == stamp
    assert main(["apply", "--run", str(bicubic_run), str(scan), "--out", str(out), "--overwrite"]) == 0
    assert "replaced an earlier sr_lib output" in capsys.readouterr().out
    assert output.stat().st_mtime_ns != stamp


def test_apply_refuses_a_file_whose_name_gives_another_contrast(bicubic_run, tmp_path, capsys):
    t1 = write(tmp_path / "sub-01_T1w.nii.gz", np.random.default_rng(4).random((12, 10, 7)) * 100 + 5)
    assert main(["apply", "--run", str(bicubic_run), str(t1), "--out", str(tmp_path / "out")]) == 1
    printed = capsys.readouterr().out
    assert f"FAILED  {t1}: the name gives contrast T1w but the run was trained on T2w" in printed
    assert "0 written, 1 failed" in printed and not (tmp_path / "out").exists()


def test_every_help_shows_a_description_and_the_defaults(capsys):
    from sr_lib.cli import DESCRIPTIONS
    from sr_lib.train import SCHEDULES

    def help_of(*command):
        with pytest.raises(SystemExit) as exit_info:
            main([*command, "--help"])
        assert exit_info.value.code == 0
        return " ".join(capsys.readouterr().out.split())  # argparse wraps lines

    top = help_of()
    assert all(name in top for name in DESCRIPTIONS) and "-q, --quiet" in top and "-v, --verbose" in top
    for name, description in DESCRIPTIONS.items():
        assert " ".join(description.split()) in help_of(name)
    report = help_of("report")
    assert "sizes of everything (default: quick)" in report and "(default: auto)" in report
    for flag in ("--seeds", "--pairing", "--schedule", "--option", "--device", "--workers", "--dry-run", "-v", "-q"):
        assert flag in report
    assert all(name in report for name in SCHEDULES)  # --schedule's help names every schedule of the engine
    assert "(default: kspace-2x)" in help_of("train") and "(default: T2)" in help_of("train")
    for computing in ("train", "report", "tables", "apply", "bench"):
        assert "--device" in help_of(computing)
    assert "folder that holds run folders (default: runs)" in help_of("runs", "list")


@pytest.mark.parametrize("flags, shown, hidden", [
    ([], ["info line", "warning: warning line"], ["debug line"]),
    (["-q"], ["warning: warning line"], ["info line", "debug line"]),
    (["-v"], ["debug: debug line", "info line", "warning: warning line"], []),
    (["studies", "-v"], ["debug: debug line", "info line"], []),  # after the command, as --debug
    (["studies", "--quiet"], ["warning line"], ["info line"]),
])
def test_quiet_and_verbose_set_the_log_level(monkeypatch, capsys, flags, shown, hidden):
    import logging

    from sr_lib import cli

    def studies(args):
        log = logging.getLogger("sr_lib.some_module")
        log.debug("debug line")
        log.info("info line")
        log.warning("warning line")
        return 0

    monkeypatch.setitem(cli.COMMANDS, "studies", studies)
    argv = flags if flags[:1] == ["studies"] else [*flags, "studies"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert all(line in err for line in shown) and not any(line in err for line in hidden)
    assert logging.getLogger("sr_lib").level == logging.NOTSET  # the command's logging setup is undone


def test_device_is_checked_and_reaches_the_run(bicubic_run, tmp_path, capsys, monkeypatch):
    import json
    import os

    import torch

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--method", "bicubic", "--device", "gpu"])
    assert exit_info.value.code == 2 and "--device: 'gpu'" in capsys.readouterr().err
    if torch.cuda.device_count() < 8:
        assert main(["report", "--dry-run", "--device", "cuda:7"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("sr-lib: error: device 'cuda:7'") and err.count("\n") == 1
    # Pretend a GPU is there: `auto` would pick it, so a run on the CPU shows that --device cpu got through.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    seen = {}
    from sr_lib import runs

    real = runs.run_experiment

    def spy(*args, **kwargs):
        seen["env"] = os.environ.get("SR_LIB_DEVICE")
        return real(*args, **kwargs)

    monkeypatch.setattr(runs, "run_experiment", spy)
    out = tmp_path / "runs"  # (the fixture keeps its data cache set for this module)
    assert main(["train", "--method", "bicubic", "--scenario", "SR-B", "--profile", "test", "--out", str(out),
                 "--device", "cpu"]) == 0
    assert json.loads(next(out.glob("*/bicubic-*/status.json")).read_text())["device"] == "cpu"
    assert seen["env"] == "cpu" and "SR_LIB_DEVICE" not in os.environ  # exported for the command only


def test_a_method_option_no_selected_method_has_is_a_usage_error(capsys):
    assert main(["report", "--dry-run", "--study", "baselines", "--profile", "test", "--option", "no_such=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sr-lib report: error: unknown method option: no_such") and err.count("\n") == 1
    assert main(["report", "--dry-run", "--study", "baselines", "--option", "srgan.no_such=1"]) == 2
    assert "srgan.no_such" in capsys.readouterr().err
    assert main(["report", "--dry-run", "--study", "baselines", "--option", "gan-cpce.steps=5"]) == 2
    assert "gan-cpce is not among the methods run" in capsys.readouterr().err
    assert main(["report", "--dry-run", "--study", "baselines", "--schedule", "wavy"]) == 2
    assert "--schedule 'wavy'" in capsys.readouterr().err
    assert main(["train", "--method", "srcnn", "--option", "no_such=1"]) == 2
    assert "no_such (srcnn has no such option)" in capsys.readouterr().err


def test_the_status_line_is_redrawn_in_place_on_a_terminal_and_throttled_elsewhere(monkeypatch):
    import io
    import logging

    from sr_lib import cli

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    def record(message, status=None, level=logging.INFO):
        rec = logging.LogRecord("sr_lib.pipeline", level, __file__, 1, message, None, None)
        if status:
            rec.status = status
        return rec

    terminal = Terminal()
    handler = cli.ConsoleHandler(terminal)
    handler.setFormatter(cli.ConsoleFormatter())
    handler.emit(record("[s] srcnn kspace-2x T2 seed 0 · step 1/600", "update"))
    handler.emit(record("[s] srcnn kspace-2x T2 seed 0 · step 2/600", "update"))
    handler.emit(record("done    [s] input kspace-2x T2 seed 0"))
    handler.emit(record("2 of 2 runs done", "end"))
    assert terminal.getvalue() == (
        "\r[s] srcnn kspace-2x T2 seed 0 · step 1/600\x1b[K\r[s] srcnn kspace-2x T2 seed 0 · step 2/600\x1b[K"
        "\r\x1b[Kdone    [s] input kspace-2x T2 seed 0\n[s] srcnn kspace-2x T2 seed 0 · step 2/600\x1b[K"
        "\r\x1b[K2 of 2 runs done\n")

    log = io.StringIO()  # not a terminal: a status line only after STATUS_INTERVAL_S without output
    handler = cli.ConsoleHandler(log)
    handler.setFormatter(cli.ConsoleFormatter())
    handler.emit(record("step 1/600", "update"))
    handler.emit(record("a warning", level=logging.WARNING))
    monkeypatch.setattr(cli, "STATUS_INTERVAL_S", 0.0)
    handler.emit(record("step 2/600", "update"))
    assert log.getvalue() == "warning: a warning\nstep 2/600\n"
