"""NIfTI round trip, geometry helpers, normalisation and every bad input of load_volume."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from sr_lib.io import Volume, VolumeError, denormalise, load_volume, normalise, resampled_affine, save_volume

from geometry import oblique_affine  # tests/geometry.py



def write_nifti(path, data, affine=None, dtype=None):
    image = nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine)
    if dtype is not None:
        image.set_data_dtype(dtype)
    nib.save(image, path)
    return path


def test_round_trip_keeps_affine_voxel_size_and_data(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.random((7, 9, 5), dtype=np.float32) + 0.1
    volume = Volume(data, oblique_affine())
    path = save_volume(volume, tmp_path / "out.nii.gz", description="made by a test")
    back = load_volume(path)
    np.testing.assert_allclose(back.affine, volume.affine, atol=1e-5)
    np.testing.assert_allclose(back.voxel_size, (0.9375, 0.9375, 1.2), atol=1e-6)
    np.testing.assert_array_equal(back.data, data)
    assert back.header["descrip"].tobytes().startswith(b"made by a test")
    image = nib.load(path)
    np.testing.assert_allclose(image.header.get_zooms(), (0.9375, 0.9375, 1.2), atol=1e-6)
    np.testing.assert_allclose(image.get_qform(), volume.affine, atol=1e-4)


def test_int16_with_scaling_loads_in_scanner_units(tmp_path):
    raw = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6) + 1
    image = nib.Nifti1Image(raw, np.eye(4))
    image.header.set_data_dtype(np.int16)
    image.header.set_slope_inter(2.5, 10.0)
    nib.save(image, tmp_path / "scaled.nii")
    volume = load_volume(tmp_path / "scaled.nii")
    assert volume.data.dtype == np.float32
    np.testing.assert_allclose(volume.data, raw * 2.5 + 10.0)


def test_resampled_affine_is_cell_centred():
    affine = oblique_affine()
    small = resampled_affine(affine, (2, 2, 1))
    np.testing.assert_allclose(np.sqrt((small[:3, :3] ** 2).sum(0)), (1.875, 1.875, 1.2))
    # LR voxel 0 sits between HR voxels 0 and 1; upsampling back recovers the HR grid
    np.testing.assert_allclose(small @ [0, 0, 0, 1], affine @ [0.5, 0.5, 0, 1])
    np.testing.assert_allclose(resampled_affine(small, (0.5, 0.5, 1)), affine, atol=1e-12)


def test_normalise_is_invertible_inside_the_range():
    rng = np.random.default_rng(1)
    data = (rng.random((10, 10, 10)) * 900 + 50).astype(np.float32)
    volume = normalise(Volume(data, np.eye(4)), lower_percentile=0, upper_percentile=100)
    assert volume.data.min() == 0 and volume.data.max() == 1
    np.testing.assert_allclose(denormalise(volume).data, data, rtol=1e-5)


def test_normalise_saturates_the_top_percentile():
    data = np.ones((10, 10, 10), dtype=np.float32)
    data[0, 0, 0] = 1e6  # one hot voxel must not squash the rest
    data[5:] = 0
    volume = normalise(Volume(data, np.eye(4)))
    assert volume.data.max() == 1.0 and volume.data[6, 0, 0] == 0.0 and volume.data[1, 1, 1] == 1.0


def test_constant_volume_cannot_be_normalised():
    with pytest.raises(VolumeError, match="constant"):
        normalise(Volume(np.ones((4, 4, 4), np.float32), np.eye(4)))


def test_4d_needs_a_volume_index(tmp_path):
    data = np.random.default_rng(2).random((4, 5, 6, 3)).astype(np.float32) + 0.1
    path = write_nifti(tmp_path / "dwi.nii.gz", data)
    with pytest.raises(VolumeError, match=r"dwi.nii.gz: 4D volume .*volume_index"):
        load_volume(path)
    np.testing.assert_allclose(load_volume(path, volume_index=2).data, data[..., 2])
    with pytest.raises(VolumeError, match="out of range"):
        load_volume(path, volume_index=3)


def test_singleton_fourth_axis_is_dropped(tmp_path):
    data = np.ones((4, 5, 6, 1), np.float32)
    assert load_volume(write_nifti(tmp_path / "x.nii", data)).shape == (4, 5, 6)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, "no such file"),
        (lambda p: (p.write_text("hello"), p)[1], "not a readable NIfTI"),
        (lambda p: (p.with_suffix(".txt").write_text("x"), p.with_suffix(".txt"))[1], "not a NIfTI file"),
        (lambda p: write_nifti(p, np.ones((5, 6), np.float32)), "2D image"),
        (lambda p: write_nifti(p, np.zeros((4, 4, 4), np.float32)), "empty volume"),
        (lambda p: write_nifti(p, np.full((4, 4, 4), np.nan, np.float32)), "NaN or Inf"),
        (lambda p: write_nifti(p, np.where(np.eye(4, dtype=bool)[..., None], np.inf, 1.0).astype(np.float32)), "4 voxels are NaN or Inf"),
    ],
    ids=["missing", "garbage", "not-nifti-suffix", "2d", "empty", "nan", "inf"],
)
def test_bad_inputs_give_one_line_errors_naming_the_file(tmp_path, make, message):
    path = make(tmp_path / "bad.nii.gz")
    with pytest.raises(VolumeError, match=message) as info:
        load_volume(path)
    text = str(info.value)
    assert str(path) in text and "\n" not in text


def test_truncated_gzip_is_reported(tmp_path):
    path = write_nifti(tmp_path / "full.nii.gz", np.random.default_rng(3).random((32, 32, 32)).astype(np.float32))
    blob = path.read_bytes()
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(VolumeError, match=r"truncated.nii.gz: (truncated or corrupt|not a readable)"):
        load_volume(truncated)
    assert gzip.decompress(blob)  # the original was fine


def test_save_refuses_other_suffixes_and_leaves_nothing(tmp_path):
    with pytest.raises(VolumeError, match="must end with .nii"):
        save_volume(Volume(np.ones((2, 2, 2), np.float32), np.eye(4)), tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []
