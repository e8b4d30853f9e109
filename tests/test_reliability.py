"""Issue 14, "never lose, corrupt or misplace a user's data": every bad input of `apply`,
`check` and the folder datasets is reported by name on one line, the rest of the batch is
processed, nothing is written outside the output folder or overwritten silently, no partial
file survives SIGTERM, and no NaN is written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import sr_lib.apply as apply_module
from sr_lib.apply import apply_run, expand_inputs, find_inputs
from sr_lib.atomic import atomic_path, is_partial, read_json
from sr_lib.check import check_paths
from sr_lib.cli import main
from sr_lib.data.folders import check_subject_id, folder_dataset, read_manifest
from sr_lib.io import Volume, VolumeError, load_volume, validate_volume
from sr_lib.methods.base import Task
from sr_lib.runs import RunConfig

from test_apply import smooth_head, trained, write_nifti  # noqa: F401 (trained is a fixture)

REPO = Path(__file__).resolve().parents[1]
AFFINE = np.diag([0.9, 0.9, 3.0, 1.0])


class Repeat:
    """Stand-in for a trained slice-wise x2 method: nearest in-plane upsampling, clamped to
    [0, 1] like `LearnedMethod.predict_batch`; `fill` replaces the output (e.g. NaN weights)."""

    def __init__(self, fill: float | None = None) -> None:
        self.task = Task(factors=(2, 2, 1), spatial_dims=2, axis=2)
        self.fill = fill
        self.calls: list[tuple[int, ...]] = []

    def predict_volume(self, lr: np.ndarray) -> np.ndarray:
        self.calls.append(lr.shape)
        out = np.clip(np.repeat(np.repeat(lr, 2, axis=0), 2, axis=1), 0.0, 1.0)
        return out if self.fill is None else np.full_like(out, self.fill)


@pytest.fixture
def fake_run(monkeypatch):
    """`apply` with a `Repeat` method instead of a trained run (fast, and controllable)."""
    method = Repeat()
    monkeypatch.setattr(apply_module, "load_method", lambda run_dir: (method, RunConfig(method="nearest", scenario="SR-B", profile="test")))
    return method


def good(path: Path, seed: int = 0, shape=(15, 13, 9)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_nifti(path, smooth_head(shape, seed=seed), AFFINE)


def with_sform(path: Path, sform: np.ndarray) -> Path:
    """A NIfTI whose raw sform rows are `sform` (qform unset), as a broken converter writes it."""
    header = nib.Nifti1Header()
    header["sform_code"], header["qform_code"] = 2, 0
    for row, name in enumerate(("srow_x", "srow_y", "srow_z")):
        header[name] = sform[row]
    nib.save(nib.Nifti1Image(smooth_head((15, 13, 9)), None, header=header), path)
    return path


def one_line_naming(text: str, path: Path) -> bool:
    return str(path) in text and "\n" not in text


# --- case 1: bad headers and geometry, symlink loops -------------------------------------


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_header_claiming_more_data_than_the_file_holds_is_truncated_not_memory_error(tmp_path, suffix):
    path = tmp_path / f"huge{suffix}"
    nib.save(nib.Nifti1Image(np.ones((10, 10, 4), np.float32), np.eye(4)), path)
    raw = path.read_bytes() if suffix == ".nii" else __import__("gzip").decompress(path.read_bytes())
    header = nib.Nifti1Header.from_fileobj(__import__("io").BytesIO(raw))
    header.set_data_shape((2000, 2000, 2000))
    body = header.binaryblock + raw[348:]
    path.write_bytes(body if suffix == ".nii" else __import__("gzip").compress(body))
    with pytest.raises(VolumeError, match=r"huge\.nii.*truncated.*header") as err:
        load_volume(path)
    assert "\n" not in str(err.value)


BAD_AFFINES = {
    "zero-sform": (np.zeros((4, 4)), "affine"),
    "zero-column": (np.diag([1.0, 0.0, 1.0, 1.0]), "affine"),
    "nan-affine": (np.where(np.eye(4) == 1, np.nan, 0.0), "affine"),
    "huge-voxel": (np.diag([1e6, 1.0, 1.0, 1.0]), "voxel size"),
}


def bad_batch(tmp_path: Path) -> tuple[list[Path], dict[Path, str]]:
    folder = tmp_path / "in"
    goods = [good(folder / "a_T2.nii.gz", 1), good(folder / "z_T2.nii.gz", 2)]
    bad = {with_sform(folder / f"{name}_T2.nii.gz", affine): problem for name, (affine, problem) in BAD_AFFINES.items()}
    constant = folder / "constant_T2.nii.gz"
    write_nifti(constant, np.full((15, 13, 9), 7.0), AFFINE)
    bad[constant] = "constant"
    (folder / "loop_T2.nii.gz").symlink_to("loop_T2.nii.gz")  # a link to itself
    bad[folder / "loop_T2.nii.gz"] = "symlink loop"
    (folder / "sub").mkdir()
    (folder / "sub" / "up").symlink_to("..")  # a folder loop must not recurse forever
    return goods, bad


def test_apply_reports_each_bad_geometry_and_loop_by_name_and_processes_the_rest(fake_run, tmp_path):
    goods, bad = bad_batch(tmp_path)
    outcomes = {o.input: o for o in apply_run("run", [tmp_path / "in"], tmp_path / "out", progress=False)}
    assert set(outcomes) == set(goods) | set(bad)
    for path in goods:
        assert outcomes[path].ok, outcomes[path].error
    for path, problem in bad.items():
        assert not outcomes[path].ok and problem in outcomes[path].error, (path, outcomes[path].error)
        assert one_line_naming(outcomes[path].error, path)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_desc-nearestSRBx2_T2w.nii.gz", "z_desc-nearestSRBx2_T2w.nii.gz"]


def test_check_and_apply_share_one_validation(fake_run, tmp_path):
    goods, bad = bad_batch(tmp_path)
    table = check_paths([tmp_path / "in"], progress=False).set_index("path")
    outcomes = {o.input: o for o in apply_run("run", [tmp_path / "in"], tmp_path / "out", progress=False)}
    for path in goods:
        assert table.loc[str(path), "problem"] == ""
    for path, problem in bad.items():
        assert problem in table.loc[str(path), "problem"]
        assert table.loc[str(path), "problem"] in outcomes[path].error  # the very same words


def test_validate_volume_lists_every_problem():
    data = np.ones((4, 4, 4), np.float32)
    problems = validate_volume(Volume(data, np.diag([1e6, 1.0, np.nan, 1.0])))
    assert any("affine" in p for p in problems) and any("constant" in p for p in problems)
    ramp = np.arange(64, dtype=np.float32).reshape(4, 4, 4)
    assert validate_volume(Volume(ramp, AFFINE)) == []
    mostly_zero = np.zeros((20, 20, 20), np.float32)
    mostly_zero[3, 3, 3] = 5.0  # robust percentiles equal, but not constant: usable
    assert validate_volume(Volume(mostly_zero, AFFINE)) == []


# --- case 2: the same name in two folders ---------------------------------------------------


def test_same_file_name_in_two_folders_is_refused_not_lost(fake_run, tmp_path, capsys):
    a, b = good(tmp_path / "colA" / "s_T2.nii.gz", 1), good(tmp_path / "colB" / "s_T2.nii.gz", 2)
    other = good(tmp_path / "colB" / "t_T2.nii.gz", 3)
    out = tmp_path / "out"
    code = main(["apply", "--run", "run", str(tmp_path / "colA"), str(tmp_path / "colB"), "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 1
    assert "1 written, 2 failed" in printed
    assert [p.name for p in out.iterdir()] == ["t_desc-nearestSRBx2_T2w.nii.gz"]
    for mine, theirs in ((a, b), (b, a)):
        line = next(line for line in printed.splitlines() if line.startswith(f"FAILED  {mine}:"))
        assert str(theirs) in line and "same output" in line
    assert other.exists()


# --- case 3: manifests -----------------------------------------------------------------------


@pytest.mark.parametrize("subject", ["../evil", "a/b", "..", ".hidden", "", "sub 01", "x" * 300])
def test_unsafe_subject_ids_are_refused(subject):
    with pytest.raises(ValueError, match="subject id"):
        check_subject_id(subject)


def test_safe_subject_ids_pass():
    for subject in ("sub-01", "IXI002-Guys-0828", "s_01.a"):
        assert check_subject_id(subject) == subject


def manifest(tmp_path: Path, rows: str, encoding: str = "utf-8") -> Path:
    good(tmp_path / "data" / "one.nii.gz")
    good(tmp_path / "outside.nii.gz")
    path = tmp_path / "data" / "list.csv"
    path.write_bytes(("subject,contrast,path\n" + rows).encode(encoding))
    return path


@pytest.mark.parametrize("rows, problem", [
    ("../evil,T2,one.nii.gz\n", r"line 2: unsafe subject id '\.\./evil'"),
    ("s1,T2,../outside.nii.gz\n", r"line 2: path \.\./outside\.nii\.gz is outside"),
    ("s1,T2,one.nii.gz\ns2,T2,/etc/passwd\n", r"line 3: path /etc/passwd is outside"),
])
def test_manifest_rows_that_escape_are_refused(tmp_path, rows, problem):
    path = manifest(tmp_path, rows)
    with pytest.raises(VolumeError, match=problem) as err:
        read_manifest(path)
    assert one_line_naming(str(err.value), path)


def test_non_utf8_manifest_names_the_file(tmp_path):
    path = manifest(tmp_path, "sujet_é,T2,one.nii.gz\n", encoding="latin-1")
    with pytest.raises(VolumeError, match="not UTF-8") as err:
        read_manifest(path)
    assert one_line_naming(str(err.value), path)


def test_folder_dataset_refuses_unsafe_subject_names_from_files(tmp_path):
    good(tmp_path / "sub 01_T2.nii.gz")
    with pytest.raises(VolumeError, match=r"sub 01_T2\.nii\.gz.*subject id"):
        folder_dataset(tmp_path)


# --- case 4: SIGTERM, partial files ----------------------------------------------------------

CHILD = """
import sys, time
import numpy as np
import nibabel as nib
import sr_lib.apply, sr_lib.io
from sr_lib.cli import main
sys.path.insert(0, {tests!r})
from test_reliability import Repeat
from sr_lib.runs import RunConfig

sr_lib.apply.load_method = lambda run: (Repeat(), RunConfig(method="nearest", scenario="SR-B", profile="test"))
real_save = nib.save

def slow_save(image, path):
    real_save(image, path)  # the temp file is complete on disk ...
    print("WRITING", path, flush=True)
    time.sleep(60)  # ... and the rename has not happened yet

sr_lib.io.nib.save = slow_save
sys.exit(main(["apply", "--run", "run", sys.argv[1], "--out", sys.argv[2]]))
"""


def test_sigterm_during_a_write_leaves_no_partial_file(tmp_path):
    good(tmp_path / "in" / "scan.nii.gz")
    out = tmp_path / "out"
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(REPO / "tests")))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, str(script), str(tmp_path / "in"), str(out)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = child.stdout.readline()
    assert line.startswith("WRITING"), line + child.stderr.read()
    assert is_partial(Path(line.split()[1]))
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=30)
    assert child.returncode not in (0, -signal.SIGTERM), err
    assert "interrupted" in err
    assert list(out.iterdir()) == []


def test_leftover_partial_files_are_skipped_and_said_so(fake_run, tmp_path, capsys):
    scan = good(tmp_path / "scan_T2.nii.gz")
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "x.nii.gz") as tmp:
            leftover = tmp.with_name(tmp.name.replace("x", "y", 1))
            tmp.write_bytes(b"half")
            leftover.write_bytes(b"half")  # what a SIGKILL leaves behind
            raise RuntimeError
    assert is_partial(leftover) and not is_partial(scan)
    assert expand_inputs([tmp_path]) == [scan]
    assert main(["check", str(tmp_path)]) == 0
    assert f"skipped {leftover}" in capsys.readouterr().out
    assert main(["apply", "--run", "run", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert f"skipped {leftover}" in printed and "1 written, 0 failed" in printed


# --- case 5: --out equal to the input folder -----------------------------------------------


def test_out_equal_to_input_twice_skips_its_own_outputs(fake_run, tmp_path, capsys):
    scan = good(tmp_path / "scan.nii.gz")
    assert main(["apply", "--run", "run", str(tmp_path), "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    output = tmp_path / "scan_desc-nearestSRBx2_T2w.nii.gz"
    first = nib.load(output).get_fdata()
    assert main(["apply", "--run", "run", str(tmp_path), "--out", str(tmp_path), "--overwrite"]) == 0
    printed = capsys.readouterr().out
    assert f"skipped {output}" in printed and "output of sr_lib" in printed
    assert "1 written, 0 failed" in printed and "replaced" in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([output.name, scan.name])
    np.testing.assert_array_equal(nib.load(output).get_fdata(), first)


def test_a_foreign_file_with_the_output_name_is_not_overwritten(fake_run, tmp_path):
    scan = good(tmp_path / "in" / "scan.nii.gz")
    foreign = tmp_path / "out" / "scan_desc-nearestSRBx2_T2w.nii.gz"
    foreign.parent.mkdir()
    foreign.write_bytes(b"someone else's file")
    with pytest.raises(FileExistsError, match="nothing written") as err:  # any existing output, without --overwrite
        apply_run("run", [scan], tmp_path / "out", progress=False)
    assert one_line_naming(str(err.value), foreign)
    (outcome,) = apply_run("run", [scan], tmp_path / "out", progress=False, overwrite=True)
    assert not outcome.ok and "exists" in outcome.error and str(foreign) in outcome.error
    assert foreign.read_bytes() == b"someone else's file"


# --- case 6: a non-finite prediction ---------------------------------------------------------


def test_a_nan_prediction_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(apply_module, "load_method", lambda run: (Repeat(fill=np.nan), RunConfig(method="nearest", scenario="SR-B", profile="test")))
    scan = good(tmp_path / "scan.nii.gz")
    (outcome,) = apply_run("run", [scan], tmp_path / "out", progress=False)
    assert not outcome.ok and "non-finite" in outcome.error and one_line_naming(outcome.error, scan)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


# --- case 7: intensities above the robust range -----------------------------------------------


@pytest.mark.parametrize("method", ["nearest", "bicubic", "srcnn"])
def test_a_small_bright_structure_keeps_its_value(trained, tmp_path, method):
    data = smooth_head((24, 22, 9), seed=7)
    bright = 1.5 * np.percentile(data, 99.5)
    blob = [(12, 11, 4), (11, 11, 4), (13, 11, 4), (12, 10, 4), (12, 12, 4)]
    for index in blob:
        data[index] = bright
    path = write_nifti(tmp_path / "blob.nii.gz", data, AFFINE)
    (outcome,) = apply_run(getattr(trained, method), [path], tmp_path / "out", progress=False)
    assert outcome.ok, outcome.error
    out = nib.load(outcome.output).get_fdata(dtype=np.float32)
    centre = out[2 * 12: 2 * 12 + 2, 2 * 11: 2 * 11 + 2, 4]
    assert centre.mean() == pytest.approx(bright, rel=0.05)
    assert out.max() <= data.max() * 1.001


def test_int16_with_slope_keeps_its_whole_range(trained, tmp_path):
    raw = np.round(smooth_head((15, 13, 9), seed=8) * 4).astype(np.int16)
    raw[7, 6, 4] = 3800  # 7600 in scanner units, far above the rest
    path = write_nifti(tmp_path / "scaled.nii.gz", raw, AFFINE, dtype=np.int16, slope=2.0, inter=0.0)
    (outcome,) = apply_run(trained.nearest, [path], tmp_path / "out", progress=False)
    out = nib.load(outcome.output).get_fdata(dtype=np.float32)
    assert out.max() == pytest.approx(7600, rel=0.01)
    assert out.min() == pytest.approx(raw.min() * 2.0, abs=1.0)


# --- case 8: messages that name the file ------------------------------------------------------


def test_empty_input_folder_says_so_and_fails(fake_run, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["apply", "--run", "run", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 1
    assert f"no NIfTI files found in {tmp_path / 'empty'}" in capsys.readouterr().out
    assert main(["check", str(tmp_path / "empty")]) == 1
    assert f"no NIfTI files found in {tmp_path / 'empty'}" in capsys.readouterr().out


@pytest.mark.parametrize("text, problem", [("", "empty"), ("{not json", "not valid JSON"), ("[1, 2]", "expected a JSON object")])
def test_bad_json_names_the_file(tmp_path, text, problem):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=problem) as err:
        read_json(path)
    assert one_line_naming(str(err.value), path)


def test_a_broken_run_config_is_one_line_naming_it(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{\"method\": ")
    good(tmp_path / "scan.nii.gz")
    assert main(["apply", "--run", str(run), str(tmp_path / "scan.nii.gz"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert str(run / "config.json") in err and len(err.strip().splitlines()) == 1
    (run / "config.json").write_text("{\"method\": \"srcnn\", \"colour\": 3}")
    assert main(["apply", "--run", str(run), str(tmp_path / "scan.nii.gz"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert str(run / "config.json") in err and len(err.strip().splitlines()) == 1


# --- case 9: grids across a folder -------------------------------------------------------------


def test_the_odd_grid_out_is_named(tmp_path):
    for i in range(3):
        good(tmp_path / f"s{i}_T2.nii.gz", i)
    odd = tmp_path / "s3_T2.nii.gz"
    write_nifti(odd, smooth_head((15, 13, 9)), np.diag([1.2, 1.2, 3.0, 1.0]))
    table = check_paths([tmp_path], progress=False).set_index("path")
    assert "voxel size" in table.loc[str(odd), "warning"] and "0.9x0.9x3" in table.loc[str(odd), "warning"]
    assert (table.drop(index=str(odd))["warning"] == "").all()


# --- case 10: streaming -------------------------------------------------------------------------


def test_apply_predicts_slab_by_slab_with_the_same_result(fake_run, tmp_path):
    scan = good(tmp_path / "scan.nii.gz", shape=(15, 13, 40))
    (outcome,) = apply_run("run", [scan], tmp_path / "out", progress=False, slab=16)
    assert outcome.ok
    assert [shape[2] for shape in fake_run.calls] == [16, 16, 8]
    out = nib.load(outcome.output).get_fdata(dtype=np.float32)
    data = nib.load(scan).get_fdata(dtype=np.float32)
    np.testing.assert_allclose(out[::2, ::2], data, rtol=1e-5, atol=1e-3)


def test_srcnn_slabs_match_the_whole_volume(trained, tmp_path):
    scan = good(tmp_path / "scan.nii.gz", shape=(15, 13, 20))
    (whole,) = apply_run(trained.srcnn, [scan], tmp_path / "whole", progress=False, slab=1000)
    (slabs,) = apply_run(trained.srcnn, [scan], tmp_path / "slabs", progress=False, slab=3)
    np.testing.assert_allclose(nib.load(slabs.output).get_fdata(), nib.load(whole.output).get_fdata(), rtol=1e-5, atol=1e-3)


# --- case 11: siblings ----------------------------------------------------------------------------


def test_an_unexpected_error_in_one_file_does_not_stop_the_batch(monkeypatch, tmp_path):
    class Exploding(Repeat):
        def predict_volume(self, lr):
            if lr.shape[0] == 16:
                raise RuntimeError("shape mismatch inside the net")
            return super().predict_volume(lr)

    monkeypatch.setattr(apply_module, "load_method", lambda run: (Exploding(), RunConfig(method="nearest", scenario="SR-B", profile="test")))
    odd = good(tmp_path / "a.nii.gz", shape=(16, 13, 9))
    fine = good(tmp_path / "b.nii.gz")
    outcomes = {o.input: o for o in apply_run("run", [odd, fine], tmp_path / "out", progress=False)}
    assert not outcomes[odd].ok and "shape mismatch" in outcomes[odd].error and one_line_naming(outcomes[odd].error, odd)
    assert outcomes[fine].ok


def test_find_inputs_reports_what_it_skipped(tmp_path):
    scan = good(tmp_path / "scan.nii.gz")
    inputs = find_inputs([tmp_path])
    assert inputs.paths == [scan] and inputs.skipped == []


def test_same_stem_as_nii_and_nii_gz_collides(fake_run, tmp_path):
    a, b = good(tmp_path / "in" / "s_T2.nii"), good(tmp_path / "in" / "s_T2.nii.gz", 1)
    outcomes = {o.input: o for o in apply_run("run", [tmp_path / "in"], tmp_path / "out", progress=False)}
    assert not outcomes[a].ok and str(b) in outcomes[a].error
    assert not outcomes[b].ok and str(a) in outcomes[b].error
    assert not (tmp_path / "out").exists()


def test_check_reports_an_unexpected_load_error_per_file(monkeypatch, tmp_path):
    import sr_lib.check

    fine, broken = good(tmp_path / "a_T2.nii.gz"), good(tmp_path / "b_T2.nii.gz", 1)
    real = sr_lib.check.load_volume

    def load(path):
        if path == broken:
            raise MemoryError("cannot allocate")
        return real(path)

    monkeypatch.setattr(sr_lib.check, "load_volume", load)
    table = check_paths([tmp_path], progress=False).set_index("path")
    assert table.loc[str(fine), "problem"] == ""
    assert "MemoryError" in table.loc[str(broken), "problem"]


def test_undecodable_file_names_are_printed_not_crashed_on(fake_run, tmp_path, capsys):
    folder = os.fsencode(tmp_path / "in")
    os.makedirs(folder)
    name = os.path.join(folder, b"scan\xff_T2.nii.gz")
    good(Path(os.fsdecode(name)))
    assert main(["apply", "--run", "run", str(tmp_path / "in"), "--out", str(tmp_path / "out")]) == 0
    assert "1 written, 0 failed" in capsys.readouterr().out
    assert main(["check", str(tmp_path / "in")]) == 0
