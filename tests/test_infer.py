"""Whole-volume inference: slice-wise along every axis and 3D sliding windows, checked
against predictors whose exact output is known (nearest-neighbour and trilinear upsampling)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sr_lib.infer import predict_volume
from sr_lib.methods.base import Task


def nearest_up(factors):
    """(N, 1, ...) -> each voxel repeated `factors[i]` times along spatial axis i."""

    def predict(batch: torch.Tensor) -> torch.Tensor:
        for axis, f in enumerate(factors):
            batch = batch.repeat_interleave(int(f), dim=2 + axis)
        return batch

    return predict


def expected_nearest(lr: np.ndarray, factors) -> np.ndarray:
    out = lr
    for axis, f in enumerate(factors):
        out = np.repeat(out, f, axis=axis)
    return out


@pytest.fixture
def lr_odd():
    return np.random.default_rng(0).random((7, 9, 5), dtype=np.float32)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slicewise_nearest_is_exact_along_each_axis(lr_odd, axis):
    factors = [2, 2, 2]
    factors[axis] = 1
    calls = []

    def predictor(batch):
        calls.append(tuple(batch.shape))
        return nearest_up([f for i, f in enumerate(factors) if i != axis])(batch)

    out = predict_volume(predictor, lr_odd, task=Task(tuple(factors), 2, axis), batch_size=3)
    assert out.dtype == np.float32
    assert out.shape == tuple(n * f for n, f in zip(lr_odd.shape, factors))
    np.testing.assert_array_equal(out, expected_nearest(lr_odd, factors))
    # slices go in batches of at most 3, each (N, 1, a, b) with the slice axis removed
    n_slices = lr_odd.shape[axis]
    in_plane = tuple(n for i, n in enumerate(lr_odd.shape) if i != axis)
    assert [c[0] for c in calls] == [3] * (n_slices // 3) + ([n_slices % 3] if n_slices % 3 else [])
    assert all(c[1:] == (1, *in_plane) for c in calls)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slicewise_identity_keeps_slice_order(lr_odd, axis):
    out = predict_volume(lambda b: b.clone(), lr_odd, task=Task((1, 1, 1), 2, axis), batch_size=4)
    np.testing.assert_array_equal(out, lr_odd)


def test_flipped_view_input_is_accepted(lr_odd):
    flipped = lr_odd[::-1, :, ::-1]  # negative strides, as nibabel reorientation produces
    out = predict_volume(nearest_up((2, 2)), flipped, task=Task((2, 2, 1), 2, 2))
    np.testing.assert_array_equal(out, expected_nearest(np.ascontiguousarray(flipped), (2, 2, 1)))


@pytest.mark.parametrize(
    "shape, factors, patch",
    [((13, 11, 9), (2, 2, 2), 8), ((7, 9, 5), (2, 2, 2), 32), ((13, 11, 9), (2, 2, 1), 6), ((11, 7, 9), (1, 2, 2), 5)],
)
def test_sliding_window_nearest_reproduces_predictor(shape, factors, patch):
    lr = np.random.default_rng(1).random(shape, dtype=np.float32)
    out = predict_volume(nearest_up(factors), lr, task=Task(factors, 3), patch_size=patch, batch_size=2)
    assert out.shape == tuple(n * f for n, f in zip(shape, factors))
    assert out.dtype == np.float32
    # a local predictor agrees with itself on every overlapping patch: blending is exact
    np.testing.assert_allclose(out, expected_nearest(lr, factors), atol=1e-5)


def test_sliding_window_trilinear_exact_in_one_window_close_when_tiled():
    # smooth input so the patch seams of a non-local predictor stay small
    grid = np.stack(np.meshgrid(*(np.linspace(0, 1, n) for n in (15, 13, 11)), indexing="ij"))
    lr = (0.5 + 0.2 * np.sin(3 * grid[0]) * np.cos(2 * grid[1]) + 0.1 * grid[2]).astype(np.float32)

    def trilinear(batch):
        return F.interpolate(batch, scale_factor=2.0, mode="trilinear", align_corners=False)

    reference = trilinear(torch.from_numpy(lr)[None, None])[0, 0].numpy()
    # one window covering the whole volume: identical to the predictor on the whole volume
    whole = predict_volume(trilinear, lr, task=Task((2, 2, 2), 3), patch_size=64)
    np.testing.assert_allclose(whole, reference, atol=1e-6)
    # small overlapping windows: exact away from the window borders, close everywhere
    tiled = predict_volume(trilinear, lr, task=Task((2, 2, 2), 3), patch_size=8, overlap=0.5, batch_size=4)
    assert tiled.shape == (30, 26, 22)
    error = np.abs(tiled - reference)
    assert error.max() < 0.01
    assert error.mean() < 1e-3
    assert (error < 1e-5).mean() > 0.5
    # the volume border is only seen by one window edge, exactly as in the reference
    np.testing.assert_allclose(tiled[0, 0, 0], reference[0, 0, 0], atol=1e-6)


@pytest.mark.parametrize("shape", [(8, 8), (2, 4, 4, 4), (5,)])
@pytest.mark.parametrize("dims", [2, 3])
def test_wrong_dimensionality_raises(shape, dims):
    lr = np.ones(shape, dtype=np.float32)
    with pytest.raises(ValueError, match="3D"):
        predict_volume(lambda b: b, lr, task=Task((1, 1, 1), dims))


def test_predictor_with_wrong_output_grid_is_reported(lr_odd):
    with pytest.raises(RuntimeError, match="expected"):
        predict_volume(nearest_up((2, 2)), lr_odd, task=Task((3, 3, 1), 2, 2))
