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
    csv = tmp_path / "bench.csv"
    assert main(["bench", "--profile", "test", "--methods", "bicubic", "srcnn", "--out", str(csv)]) == 0
    import pandas as pd

    table = pd.read_csv(csv)
    assert list(table["method"]) == ["bicubic", "srcnn"]
    assert table["infer_s_per_volume"].gt(0).all() and table["train_ms_per_step"].notna().tolist() == [False, True]


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

