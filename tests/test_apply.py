"""Applying a trained run to a researcher's own NIfTI files: geometry for oblique,
anisotropic, non-RAS and scaled-integer inputs; values in the input's units; bad files in a
batch; refusing to overwrite inputs; folder and glob inputs."""

from __future__ import annotations

import types
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from sr_lib.apply import apply_run, expand_inputs
from sr_lib.io import resampled_affine, voxel_sizes
from sr_lib.runs import RunConfig, run_experiment

SCENARIO_FACTORS = (2, 2, 1)  # SR-B x2: in-plane (RAS x, y) upsampling, slices along RAS z


def rotation_z(degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def make_affine(columns: np.ndarray, degrees: float = 0.0, origin=(12.0, -30.0, 41.0)) -> np.ndarray:
    """Voxel axes `columns` (3x3, one world direction * size per column), rotated about z."""
    affine = np.eye(4)
    affine[:3, :3] = rotation_z(degrees) @ columns
    affine[:3, 3] = origin
    return affine


# voxel -> world columns: 0.9 x 0.9 mm in-plane, 3 mm slices; input voxel-order factors
GEOMETRIES = {
    "oblique-ras": (make_affine(np.diag([0.9, 0.9, 3.0]), 20), (2, 2, 1)),
    "lps": (make_affine(np.diag([-0.9, -0.9, 3.0])), (2, 2, 1)),
    # voxel axis 0 runs along world z (the thick slices), 1 along -x, 2 along -y; oblique too
    "permuted-flipped-oblique": (make_affine(np.array([[0, -0.9, 0], [0, 0, -0.9], [3.0, 0, 0]]), -20), (1, 2, 2)),
}


def smooth_head(shape, seed: int = 0) -> np.ndarray:
    """A smooth blob in scanner-like units (~0 background, up to ~1000) with a little texture."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    r2 = sum(g**2 for g in grids)
    data = 900 * np.exp(-2.5 * r2) * (1 + 0.1 * np.sin(4 * grids[0] + 2 * grids[1]))
    data[r2 > 0.9] = 0
    return (data + rng.uniform(0, 5, shape)).astype(np.float32)


def write_nifti(path, data, affine, *, dtype=np.float32, slope=None, inter=None):
    image = nib.Nifti1Image(np.asarray(data).astype(dtype), affine)
    image.set_data_dtype(dtype)
    if slope is not None:
        image.header.set_slope_inter(slope, inter)
    nib.save(image, path)
    return path


def shape_for(factors) -> tuple[int, int, int]:
    """An odd-sized input: 9 slices along the unchanged axis, 15 x 13 in-plane."""
    in_plane = iter((15, 13))
    return tuple(9 if f == 1 else next(in_plane) for f in factors)


def fov_centre(affine, shape) -> np.ndarray:
    return (np.asarray(affine) @ np.r_[(np.asarray(shape) - 1) / 2, 1.0])[:3]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SR_LIB_CACHE", str(tmp_path_factory.mktemp("cache")))
        root = tmp_path_factory.mktemp("runs")
        done = {name: run_experiment(RunConfig(method=name, scenario="SR-B", profile="test"), root, progress=False)
                for name in ("bicubic", "nearest", "srcnn")}
        assert all(r.status == "done" for r in done.values()), {n: r.error for n, r in done.items()}
        yield types.SimpleNamespace(**{name: r.folder for name, r in done.items()})


def apply_one(run_dir, path, out_dir):
    (outcome,) = apply_run(run_dir, [path], out_dir, progress=False)
    assert outcome.ok, outcome.error
    return outcome


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
@pytest.mark.parametrize("method", ["bicubic", "srcnn"])
def test_output_geometry_and_units(trained, tmp_path, geometry, method):
    affine, factors = GEOMETRIES[geometry]
    data = smooth_head(shape_for(factors))
    path = write_nifti(tmp_path / "scan.nii.gz", data, affine)
    outcome = apply_one(getattr(trained, method), path, tmp_path / "out")
    assert outcome.output == tmp_path / "out" / f"scan_desc-{method}SRBx2_T2w.nii.gz"
    image = nib.load(outcome.output)
    assert image.shape == tuple(n * f for n, f in zip(data.shape, factors))
    assert image.get_data_dtype() == np.float32
    expected = resampled_affine(affine, 1.0 / np.asarray(factors, dtype=float))
    np.testing.assert_allclose(image.affine, expected, atol=1e-4)
    np.testing.assert_allclose(image.get_qform(), expected, atol=1e-4)
    np.testing.assert_allclose(voxel_sizes(image.affine), voxel_sizes(affine) / factors, atol=1e-5)
    np.testing.assert_allclose(image.header.get_zooms(), voxel_sizes(affine) / factors, atol=1e-5)
    np.testing.assert_allclose(fov_centre(image.affine, image.shape), fov_centre(affine, data.shape), atol=1e-4)
    out = image.get_fdata(dtype=np.float32)
    assert np.isfinite(out).all()
    assert out.mean() == pytest.approx(data.mean(), rel=0.1)
    # spatially aligned with the input: block averages over the upsampling factors match it
    blocks = out.reshape(data.shape[0], factors[0], data.shape[1], factors[1], data.shape[2], factors[2]).mean(axis=(1, 3, 5))
    assert np.corrcoef(blocks.ravel(), data.ravel())[0, 1] > 0.97
    assert np.abs(blocks - data).mean() < 0.1 * data.mean()


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_nearest_output_is_the_input_repeated_in_its_own_voxel_order(trained, tmp_path, geometry):
    # nearest-neighbour upsampling makes every step checkable exactly: reorientation there and
    # back, normalisation, the intensities outside the 0.5 / 99.5 percentiles carried past the
    # model's [0, 1] clamp (issue 14: no clipping) and scaling back to units
    affine, factors = GEOMETRIES[geometry]
    data = smooth_head(shape_for(factors), seed=1)
    path = write_nifti(tmp_path / "scan.nii", data, affine)
    out = nib.load(apply_one(trained.nearest, path, tmp_path).output).get_fdata(dtype=np.float32)
    lo, hi = np.percentile(data, [0.5, 99.5])
    expected = data
    for axis, f in enumerate(factors):
        expected = np.repeat(expected, f, axis=axis)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4 * (hi - lo))


def test_int16_with_slope_and_intercept_comes_back_in_scanner_units(trained, tmp_path):
    affine, factors = GEOMETRIES["permuted-flipped-oblique"]
    raw = np.round(smooth_head(shape_for(factors)) / 2.0).astype(np.int16)
    path = write_nifti(tmp_path / "scaled.nii.gz", raw, affine, dtype=np.int16, slope=2.0, inter=-50.0)
    scanner = raw * 2.0 - 50.0
    image = nib.load(apply_one(trained.bicubic, path, tmp_path / "out").output)
    out = image.get_fdata(dtype=np.float32)
    assert image.get_data_dtype() == np.float32
    assert image.header.get_slope_inter() in ((1.0, 0.0), (None, None))
    np.testing.assert_allclose(image.affine, resampled_affine(affine, 1.0 / np.asarray(factors)), atol=1e-4)
    assert out.mean() == pytest.approx(scanner.mean(), rel=0.1)
    assert out.min() >= scanner.min() - 1e-3 and out.max() <= scanner.max() + 1e-3
    assert np.percentile(out, 1) == pytest.approx(-50.0, abs=5.0)  # background keeps the intercept


def test_bad_files_are_reported_and_the_rest_processed(trained, tmp_path):
    affine = GEOMETRIES["oblique-ras"][0]
    good = [write_nifti(tmp_path / f"good{i}.nii.gz", smooth_head((15, 13, 9), seed=i), affine) for i in (1, 2)]
    truncated = tmp_path / "truncated.nii.gz"
    whole = write_nifti(tmp_path / "whole.nii.gz", smooth_head((15, 13, 9)), affine).read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    (tmp_path / "whole.nii.gz").unlink()
    with_nans = smooth_head((15, 13, 9))
    with_nans[3, 4, 5] = np.nan
    nans = write_nifti(tmp_path / "nans.nii.gz", with_nans, affine)
    missing = tmp_path / "missing.nii.gz"
    out_dir = tmp_path / "out"
    outcomes = apply_run(trained.bicubic, [good[0], truncated, nans, missing, good[1]], out_dir, progress=False)
    assert [o.input for o in outcomes] == [good[0], truncated, nans, missing, good[1]]
    by_input = {o.input: o for o in outcomes}
    for path in good:
        assert by_input[path].ok and by_input[path].output.exists()
    for path, problem in ((truncated, "truncated"), (nans, "NaN"), (missing, "no such file")):
        outcome = by_input[path]
        assert not outcome.ok and outcome.output is None
        assert str(path) in outcome.error and problem in outcome.error
        assert "\n" not in outcome.error
    assert sorted(p.name for p in out_dir.iterdir()) == ["good1_desc-bicubicSRBx2_T2w.nii.gz",
                                                         "good2_desc-bicubicSRBx2_T2w.nii.gz"]


def test_an_output_that_would_overwrite_an_input_is_refused(trained, tmp_path):
    affine = GEOMETRIES["lps"][0]
    first = write_nifti(tmp_path / "scan.nii.gz", smooth_head((15, 13, 9), seed=3), affine)
    # named exactly like the output of `first`, in the folder the outputs go to
    clash = write_nifti(tmp_path / "scan_desc-bicubicSRBx2_T2w.nii.gz", smooth_head((15, 13, 9), seed=4), affine)
    before = clash.read_bytes()
    outcomes = {o.input: o for o in apply_run(trained.bicubic, [tmp_path], tmp_path, progress=False)}
    assert set(outcomes) == {first, clash}
    assert not outcomes[first].ok and "overwrite" in outcomes[first].error and str(first) in outcomes[first].error
    assert clash.read_bytes() == before
    assert outcomes[clash].ok and outcomes[clash].output == tmp_path / "scan_desc-bicubicSRBx2_desc-bicubicSRBx2_T2w.nii.gz"


def test_folder_and_glob_inputs_expand(tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    files = [tmp_path / "b.nii.gz", tmp_path / "a.nii", tmp_path / "sub" / "c.nii.gz", tmp_path / "sub" / "deeper" / "d.nii"]
    for path in files:
        path.write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub" / "meta.json").write_text("{}")
    (tmp_path / "a.nii.gz.bak").write_bytes(b"")
    every = sorted(files)
    assert expand_inputs([tmp_path]) == every
    assert expand_inputs([str(tmp_path / "*.nii.gz")]) == [tmp_path / "b.nii.gz"]
    assert expand_inputs([str(tmp_path / "**" / "*.nii")]) == sorted([tmp_path / "a.nii", tmp_path / "sub" / "deeper" / "d.nii"])
    assert expand_inputs([str(tmp_path / "sub" / "?.nii.gz")]) == [tmp_path / "sub" / "c.nii.gz"]
    # duplicates across a file, a folder and a glob appear once, in first-seen order
    assert expand_inputs([tmp_path / "b.nii.gz", tmp_path, str(tmp_path / "**" / "*.nii.gz")]) == [
        tmp_path / "b.nii.gz", *[p for p in every if p != tmp_path / "b.nii.gz"]]
    # a plain name or a glob that matches nothing is kept, so that it is reported
    assert expand_inputs([tmp_path / "nope.nii.gz"]) == [tmp_path / "nope.nii.gz"]
    assert expand_inputs([str(tmp_path / "nope*.nii.gz")]) == [tmp_path / "nope*.nii.gz"]


def test_folder_input_applies_to_every_file_inside(trained, tmp_path):
    affine = GEOMETRIES["oblique-ras"][0]
    src = tmp_path / "scans"
    (src / "nested").mkdir(parents=True)
    inputs = [write_nifti(src / "one.nii.gz", smooth_head((15, 13, 9), seed=5), affine),
              write_nifti(src / "nested" / "two.nii", smooth_head((15, 13, 9), seed=6), affine)]
    outcomes = apply_run(trained.bicubic, [src], tmp_path / "out", progress=False)
    assert [o.input for o in outcomes] == sorted(inputs)
    assert all(o.ok for o in outcomes)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["one_desc-bicubicSRBx2_T2w.nii.gz",
                                                                    "two_desc-bicubicSRBx2_T2w.nii.gz"]
    missing = apply_run(trained.bicubic, [str(src / "*.nii.xz")], tmp_path / "out", progress=False)
    assert len(missing) == 1 and not missing[0].ok and "no such file" in missing[0].error


# --- names (issue 13): BIDS-derivative outputs that `check` accepts, --overwrite, contrast check ---


@pytest.mark.parametrize("config, name, expected", [
    # the example, and a session, run and acq- kept in order
    (dict(method="srcnn", scenario="kspace-2x"), "sub-01_T2w.nii.gz", "sub-01_desc-srcnnKspace2x_T2w.nii.gz"),
    (dict(method="srcnn", scenario="kspace-2x"), "sub-01_ses-2_acq-fast_run-1_T2w.nii",
     "sub-01_ses-2_acq-fast_run-1_desc-srcnnKspace2x_T2w.nii.gz"),
    (dict(method="srcnn", scenario="kspace-2x"), "sub-01_desc-preproc_T2w.nii.gz",
     "sub-01_desc-preprocSrcnnKspace2x_T2w.nii.gz"),
    (dict(method="7t-m5", scenario="kspace-2x2x2"), "sub-01_T2.nii.gz", "sub-01_desc-7tM5Kspace2x2x2_T2w.nii.gz"),
    # scenarios that take several scales name it
    (dict(method="srresnet", scenario="SR-B", scale=4), "sub-01_T2w.nii.gz", "sub-01_desc-srresnetSRBx4_T2w.nii.gz"),
    (dict(method="gan-circle", scenario="SR-N-B", contrast="PD"), "sub-01_PDw.nii.gz", "sub-01_desc-ganCircleSRNBx2_PDw.nii.gz"),
    # other names: the name less its contrast token, or all of it
    (dict(method="srcnn", scenario="kspace-2x"), "IXI002-Guys-0828-T2.nii.gz", "IXI002-Guys-0828_desc-srcnnKspace2x_T2w.nii.gz"),
    (dict(method="srcnn", scenario="kspace-2x", contrast="PD"), "scan-PD.nii", "scan_desc-srcnnKspace2x_PDw.nii.gz"),
    (dict(method="srcnn", scenario="kspace-2x"), "scan.nii.gz", "scan_desc-srcnnKspace2x_T2w.nii.gz"),
    (dict(method="srcnn", scenario="kspace-2x"), "sub-01_mask.nii.gz", "sub-01_mask_desc-srcnnKspace2x_T2w.nii.gz"),
])
def test_output_names_are_bids_derivatives(config, name, expected):
    from sr_lib.apply import output_name
    from sr_lib.data.folders import parse_bids, parse_name

    config = RunConfig(**config)
    out = output_name(Path("in") / name, config)
    assert out == expected
    assert parse_name(Path(out))[1] == config.contrast  # check reads the run's contrast
    bids = parse_bids(Path(out))
    if name.startswith("sub-") and "mask" not in name:
        assert bids is not None and bids.get("desc").isalnum() and bids.suffix == out.split("_")[-1].split(".")[0]


def test_outputs_pass_check_and_keep_the_entities(trained, tmp_path):
    from sr_lib.check import check_paths

    affine = GEOMETRIES["oblique-ras"][0]
    names = ["sub-01/ses-1/anat/sub-01_ses-1_T2w.nii.gz", "sub-01/ses-2/anat/sub-01_ses-2_run-2_T2w.nii.gz",
             "IXI002-Guys-0828-T2.nii.gz", "case7-t2.nii", "scan.nii.gz"]
    for i, name in enumerate(names):
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        write_nifti(tmp_path / "in" / name, smooth_head((15, 13, 9), seed=i), affine)
    outcomes = apply_run(trained.nearest, [tmp_path / "in"], tmp_path / "out", progress=False)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "IXI002-Guys-0828_desc-nearestSRBx2_T2w.nii.gz", "case7_desc-nearestSRBx2_T2w.nii.gz",
        "scan_desc-nearestSRBx2_T2w.nii.gz", "sub-01_ses-1_desc-nearestSRBx2_T2w.nii.gz",
        "sub-01_ses-2_run-2_desc-nearestSRBx2_T2w.nii.gz"]
    notes = {o.input.name: o.note for o in outcomes}
    assert notes["scan.nii.gz"] == "name gives no contrast; taken as T2w, the run's"
    assert [name for name, note in notes.items() if note] == ["scan.nii.gz"]
    table = check_paths([tmp_path / "out"], progress=False)
    assert (table["problem"] == "").all(), table[["path", "problem"]].to_string()
    assert set(table["contrast"]) == {"T2"}
    assert sorted(table["subject"]) == ["IXI002-Guys-0828_desc-nearestSRBx2", "case7_desc-nearestSRBx2",
                                        "scan_desc-nearestSRBx2", "sub-01_ses-1_desc-nearestSRBx2",
                                        "sub-01_ses-2_run-2_desc-nearestSRBx2"]
    # the input without a contrast is what check flags; its output is not
    assert "name gives no contrast" in check_paths([tmp_path / "in" / "scan.nii.gz"], progress=False)["problem"][0]


@pytest.mark.parametrize("name, claimed", [("sub-01_T1w.nii.gz", "T1w"), ("sub-01_ses-1_PDw.nii", "PDw"),
                                           ("IXI002-Guys-0828-PD.nii.gz", "PDw"), ("case-t1.nii", "T1w"),
                                           ("sub-01_FLAIR.nii.gz", "FLAIR")])
def test_a_name_giving_another_contrast_is_refused_naming_both(trained, tmp_path, name, claimed):
    scan = write_nifti(tmp_path / name, smooth_head((15, 13, 9)), GEOMETRIES["lps"][0])
    other = write_nifti(tmp_path / "sub-02_T2w.nii.gz", smooth_head((15, 13, 9), seed=1), GEOMETRIES["lps"][0])
    outcomes = {o.input: o for o in apply_run(trained.nearest, [scan, other], tmp_path / "out", progress=False)}
    refused = outcomes[scan]
    assert not refused.ok and refused.output is None
    assert refused.error.startswith(f"{scan}: the name gives contrast {claimed} but the run was trained on T2w")
    assert "\n" not in refused.error
    assert outcomes[other].ok  # the rest of the batch goes on
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["sub-02_desc-nearestSRBx2_T2w.nii.gz"]


def test_an_existing_output_stops_the_batch_unless_overwrite(trained, tmp_path):
    affine = GEOMETRIES["lps"][0]
    (tmp_path / "in").mkdir()
    first = write_nifti(tmp_path / "in" / "sub-01_T2w.nii.gz", smooth_head((15, 13, 9)), affine)
    (done,) = apply_run(trained.nearest, [first], tmp_path / "out", progress=False)
    assert done.ok and done.note == ""
    stamp = done.output.stat().st_mtime_ns
    second = write_nifti(tmp_path / "in" / "sub-02_T2w.nii.gz", smooth_head((15, 13, 9), seed=1), affine)
    with pytest.raises(FileExistsError) as err:
        apply_run(trained.nearest, [tmp_path / "in"], tmp_path / "out", progress=False)
    message = str(err.value)
    assert message.startswith(f"{done.output}: output exists") and "--overwrite" in message and "\n" not in message
    assert "nothing written" in message
    assert [p.name for p in (tmp_path / "out").iterdir()] == [done.output.name]  # not even the new input's
    assert done.output.stat().st_mtime_ns == stamp
    outcomes = apply_run(trained.nearest, [tmp_path / "in"], tmp_path / "out", progress=False, overwrite=True)
    assert [(o.input, o.ok, o.note) for o in outcomes] == [(first, True, "replaced an earlier sr_lib output"),
                                                          (second, True, "")]
    assert done.output.stat().st_mtime_ns != stamp
