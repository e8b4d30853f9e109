"""Degradations: k-space truncation, resizing, blur, kernel PCA, noise, holes, bias field,
misalignment, scenario presets, Volume geometry and pairing modes."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F

from sr_lib import degrade as D
from sr_lib.io import Volume, voxel_sizes

from geometry import oblique_affine  # tests/geometry.py

SHAPES_2D = [(17, 22), (9, 31)]
SHAPES_3D = [(9, 12, 7), (16, 11, 5)]
DIVISIBLE = [((18, 22), (2, 2)), ((12, 10, 6), (2, 2, 1)), ((12, 10, 6), (2, 2, 2)), ((9, 12), (3, 1))]


def rand(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def blob(shape, sigma=4.0, seed=1) -> np.ndarray:
    """A smooth Gaussian blob with an off-grid centre inside the array."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    centre = [n / 2 + rng.uniform(-0.5, 0.5) for n in shape]
    r2 = sum((g - c) ** 2 for g, c in zip(grids, centre))
    return np.exp(-r2 / (2 * sigma**2)).astype(np.float32)


def as_kind(x: np.ndarray, kind: str):
    return torch.from_numpy(x.copy()) if kind == "torch" else x


def to_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def check_kind(out, kind: str) -> None:
    if kind == "torch":
        assert isinstance(out, torch.Tensor) and out.dtype in (torch.float32, torch.complex64)
    else:
        assert isinstance(out, np.ndarray) and out.dtype in (np.float32, np.complex64)


def kept_mask(shape, factors, grid="same") -> np.ndarray:
    """Boolean mask of the kept centre of a centred (fftshift-ed) spectrum."""
    mask = np.ones(shape, bool)
    for axis, (n, f) in enumerate(zip(shape, factors)):
        m = n // f if grid == "small" else int(math.floor(n / f + 0.5))
        keep = np.zeros(n, bool)
        keep[n // 2 - m // 2 : n // 2 - m // 2 + m] = True
        view = [1] * len(shape)
        view[axis] = n
        mask &= keep.reshape(view)
    return mask


def centred_fft(x: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.fftn(x))


# ----------------------------------------------------------------------------- k-space


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("shape", SHAPES_2D + SHAPES_3D)
def test_kspace_same_grid_keeps_the_centre_exactly_and_zeroes_the_rest(shape, kind):
    x = rand(shape)
    factors = (2,) * len(shape)
    out = D.kspace_truncate(as_kind(x, kind), factors, return_complex=True)
    check_kind(out, kind)
    assert tuple(out.shape) == shape
    k_in, k_out = centred_fft(x.astype(np.float64)), centred_fft(to_numpy(out))
    kept = kept_mask(shape, factors)
    np.testing.assert_allclose(k_out[kept], k_in[kept], atol=1e-4 * np.abs(k_in).max())
    assert np.abs(k_out[~kept]).max() < 1e-4 * np.abs(k_in).max()
    assert np.abs(k_in[~kept]).max() > 0.01 * np.abs(k_in).max()  # there was something to remove
    magnitude = D.kspace_truncate(as_kind(x, kind), factors)
    check_kind(magnitude, kind)
    np.testing.assert_allclose(to_numpy(magnitude), np.abs(to_numpy(out)), atol=1e-6)


def test_kspace_2x_keeps_a_quarter_of_2d_kspace_as_gan_cpce():
    x = rand((64, 64))
    k_out = centred_fft(D.kspace_truncate(x, (2, 2), return_complex=True))
    assert np.count_nonzero(np.abs(k_out) > 1e-6 * np.abs(k_out).max()) == 32 * 32


def test_kspace_factor_one_axes_are_untouched_slice_by_slice():
    x = rand((12, 10, 5))
    volume = D.kspace_truncate(x, (2, 2, 1), return_complex=True)
    for z in range(x.shape[2]):
        np.testing.assert_allclose(volume[..., z], D.kspace_truncate(x[..., z], (2, 2), return_complex=True), atol=1e-6)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("shape, factors", DIVISIBLE)
def test_kspace_small_grid_shape_mean_and_kept_spectrum(shape, factors, kind):
    x = rand(shape)
    out = D.kspace_truncate(as_kind(x, kind), factors, grid="small", return_complex=True)
    check_kind(out, kind)
    small = tuple(n // f for n, f in zip(shape, factors))
    assert tuple(out.shape) == small
    out = to_numpy(out)
    np.testing.assert_allclose(out.mean(), x.mean(), rtol=1e-5)  # complex mean = DC, exactly kept
    # the small spectrum is the kept centre times the half-voxel shift ramp, scaled by m / n
    k_in = centred_fft(x.astype(np.float64))
    ramp = np.ones(shape, complex)
    for axis, (n, f) in enumerate(zip(shape, factors)):
        view = [1] * len(shape)
        view[axis] = n
        ramp = ramp * np.exp(2j * np.pi * (np.arange(n) - n // 2) * ((f - 1) / 2) / n).reshape(view)
    expected = (k_in * ramp)[kept_mask(shape, factors, "small")].reshape(small)
    gain = np.prod([s / n for s, n in zip(small, shape)])
    np.testing.assert_allclose(centred_fft(out), gain * expected, atol=1e-4 * np.abs(k_in).max())
    magnitude = to_numpy(D.kspace_truncate(as_kind(x, kind), factors, grid="small"))
    np.testing.assert_allclose(magnitude.mean(), x.mean(), rtol=0.02)


@pytest.mark.parametrize("make", [blob, lambda s: np.add.outer(np.linspace(0.2, 0.5, s[0]), np.linspace(0, 0.3, s[1])).astype(np.float32)])
def test_kspace_small_grid_is_cell_centred_like_area_downsampling(make):
    x = make((64, 48)) if make is not blob else blob((64, 48), sigma=6.0)
    small = D.kspace_truncate(x, 2, grid="small")
    area = D.resize(x, 2, method="area")
    interior = (slice(8, -8), slice(8, -8))
    error = np.abs(small - area)[interior].max()
    assert error < 0.01
    # a half-voxel misplacement (the unshifted crop) would be far worse on the blob
    unshifted = x[::2, ::2]
    if make is blob:
        assert np.abs(unshifted - area)[interior].max() > 3 * error


def test_kspace_bad_arguments():
    with pytest.raises(ValueError, match="scale 2 does not divide axis 1 of size 33"):
        D.kspace_truncate(rand((16, 33)), 2, grid="small")
    with pytest.raises(ValueError, match="grid 'tiny'"):
        D.kspace_truncate(rand((16, 16)), 2, grid="tiny")
    with pytest.raises(ValueError, match="factor 0.5 on axis 0 must be >= 1"):
        D.kspace_truncate(rand((16, 16)), 0.5)
    with pytest.raises(ValueError, match=r"factors \(2.0, 2.0\) has 2 entries for a 3D array"):
        D.kspace_truncate(rand((8, 8, 8)), (2, 2))
    with pytest.raises(ValueError, match="2D .* or 3D"):
        D.kspace_truncate(rand((4, 4, 4, 4)), 2)


# ----------------------------------------------------------------------------- resize


@pytest.mark.parametrize("method", D.RESIZE_METHODS)
@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize(
    "shape, factors, size",
    [((18, 22), 2, None), ((9, 7), 0.5, None), ((12, 9, 6), (2, 3, 1), None), ((5, 6, 7), None, (11, 3, 7))],
)
def test_resize_of_a_constant_stays_constant(shape, factors, size, kind, method):
    x = np.full(shape, 0.37, np.float32)
    out = D.resize(as_kind(x, kind), factors, size=size, method=method)
    check_kind(out, kind)
    expected = size or tuple(int(round(n / f)) for n, f in zip(shape, np.broadcast_to(factors, len(shape))))
    assert tuple(out.shape) == tuple(expected)
    np.testing.assert_allclose(to_numpy(out), 0.37, atol=1e-6)


@pytest.mark.parametrize("shape", [(40, 36), (24, 28, 20)])
def test_bicubic_up_of_bicubic_down_is_close_to_a_smooth_input(shape):
    x = blob(shape, sigma=5.0)
    back = D.resize(D.resize(x, 2), 0.5)
    assert back.shape == x.shape
    assert np.abs(back - x).max() < 0.02


@pytest.mark.parametrize("size", [(20, 18), (13, 11), (80, 72), (37, 50)])
def test_bicubic_matches_torch_antialiased_bicubic_in_the_interior(size):
    # torch's antialias=True bicubic is PIL's (Keys a = -0.5, kernel widened when shrinking),
    # i.e. MATLAB imresize; only the border rule differs (PIL renormalises, MATLAB mirrors)
    x = torch.from_numpy(rand((40, 36), seed=3))
    ref = F.interpolate(x[None, None], size=size, mode="bicubic", antialias=True, align_corners=False)[0, 0]
    out = D.resize(x, size=size)
    border = 4
    np.testing.assert_allclose(out[border:-border, border:-border], ref[border:-border, border:-border], atol=1e-5)


@pytest.mark.parametrize("shape, factors", [((12, 9), (2, 3)), ((8, 6, 4), (2, 2, 2)), ((8, 6, 4), (4, 1, 2))])
def test_area_downsampling_is_the_block_mean(shape, factors):
    x = rand(shape)
    out = D.resize(x, factors, method="area")
    blocks = x.reshape(*[v for n, f in zip(shape, factors) for v in (n // f, f)])
    np.testing.assert_allclose(out, blocks.mean(axis=tuple(range(1, 2 * len(shape), 2))), atol=1e-6)


def test_linear_upsampling_matches_torch_align_corners_false_in_the_interior():
    x = torch.from_numpy(rand((10, 12)))
    ref = F.interpolate(x[None, None], scale_factor=2, mode="bilinear", align_corners=False)[0, 0]
    np.testing.assert_allclose(D.resize(x, 0.5, method="linear")[1:-1, 1:-1], ref[1:-1, 1:-1], atol=1e-6)


def test_tricubic_is_separable_bicubic():
    x = rand((8, 10, 6))
    volume = D.resize(x, size=(16, 20, 12))
    in_plane = np.stack([D.resize(x[..., z], size=(16, 20)) for z in range(6)], axis=-1)
    through = np.stack([D.resize(in_plane[i], size=(20, 12)) for i in range(16)], axis=0)
    np.testing.assert_allclose(volume, through, atol=1e-5)


def test_resize_bad_arguments():
    x = rand((16, 33))
    with pytest.raises(ValueError, match="scale 2 does not divide axis 1 of size 33"):
        D.resize(x, 2)
    with pytest.raises(ValueError, match="exactly one of factors and size"):
        D.resize(x)
    with pytest.raises(ValueError, match="exactly one of factors and size"):
        D.resize(x, 2, size=(8, 11))
    with pytest.raises(ValueError, match="method 'lanczos'"):
        D.resize(x, size=(8, 11), method="lanczos")
    with pytest.raises(ValueError, match=r"size \(8,\) must be 2 positive"):
        D.resize(x, size=(8,))
    with pytest.raises(ValueError, match="factor -1 on axis 0 must be > 0"):
        D.resize(x, (-1, 1))
    with pytest.raises(ValueError, match="must all be >= 1"):
        D.downsample(x, (1, 0.5))
    np.testing.assert_array_equal(D.downsample(rand((8, 6)), 2, method="area"), D.resize(rand((8, 6)), 2, method="area"))


# ----------------------------------------------------------------------------- blur and kernels


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("shape, sigma", [((17, 22), 1.3), ((9, 12, 7), (0.8, 2.0, 1.1)), ((5, 30), 2.5)])
def test_gaussian_blur_matches_scipy_reflect_truncate_3(shape, sigma, kind):
    x = rand(shape)
    out = D.gaussian_blur(as_kind(x, kind), sigma)
    check_kind(out, kind)
    ref = ndi.gaussian_filter(x.astype(np.float64), sigma, mode="reflect", truncate=3.0)
    np.testing.assert_allclose(to_numpy(out), ref, atol=1e-5)


def test_gaussian_blur_on_chosen_axes_only():
    x = rand((10, 12, 8))
    out = D.gaussian_blur(x, (1.5, 0.7), axes=(0, 2))
    ref = ndi.gaussian_filter(x.astype(np.float64), (1.5, 0, 0.7), mode="reflect", truncate=3.0)
    np.testing.assert_allclose(out, ref, atol=1e-5)
    np.testing.assert_array_equal(D.gaussian_blur(x, 0.0), x)


@pytest.mark.parametrize("shape", [(41, 37), (21, 23, 19)])
def test_gaussian_blur_keeps_the_sum_and_removes_high_frequencies(shape):
    x = blob(shape, sigma=2.0) * (1 + 0.5 * np.sign(rand(shape) - 0.5))  # blob with fine texture
    out = D.gaussian_blur(x, 1.5)
    np.testing.assert_allclose(out.sum(), x.sum(), rtol=1e-4)
    high = ~kept_mask(shape, (2,) * len(shape))
    assert (np.abs(centred_fft(out))[high] ** 2).sum() < 0.05 * (np.abs(centred_fft(x))[high] ** 2).sum()


def test_gaussian_blur_bad_arguments():
    with pytest.raises(ValueError, match="sigma .* must be >= 0"):
        D.gaussian_blur(rand((8, 8)), -1.0)
    with pytest.raises(ValueError, match=r"axes \(0, 2\) must be distinct axes of a 2D array"):
        D.gaussian_blur(rand((8, 8)), 1.0, axes=(0, 2))


def test_gaussian_kernel_is_normalised_centred_and_oriented():
    k = D.gaussian_kernel(1.5, 15)
    assert k.shape == (15, 15) and k.dtype == np.float32
    np.testing.assert_allclose(k.sum(), 1.0, atol=1e-6)
    assert np.unravel_index(k.argmax(), k.shape) == (7, 7)
    np.testing.assert_allclose(k, k.T, atol=1e-7)
    wide0 = D.gaussian_kernel((3.0, 1.0), 15)
    assert wide0[:, 7].sum() > wide0[7, :].sum()  # long along axis 0
    np.testing.assert_allclose(D.gaussian_kernel((3.0, 1.0), 15, angle=np.pi / 2), wide0.T, atol=1e-6)
    with pytest.raises(ValueError, match="sigma .* must be > 0"):
        D.gaussian_kernel(0.0, 15)
    with pytest.raises(ValueError, match="kernel size 0"):
        D.gaussian_kernel(1.0, 0)


def test_kernel_pca_projects_and_reconstructs_gaussian_kernels():
    pca = D.fit_kernel_pca((0.5, 3.0), 15)
    assert pca.n_components == 15 and pca.kernel_size == 15
    assert pca.explained_variance_ratio.sum() > 0.95
    kernel = D.gaussian_kernel((2.2, 0.9), 15, angle=0.4)
    code = pca.project(kernel)
    assert code.shape == (15,) and code.dtype == np.float32
    assert np.abs(pca.reconstruct(code) - kernel).max() < 0.1 * kernel.max()
    code_t = pca.project(torch.from_numpy(kernel))
    np.testing.assert_allclose(code_t.numpy(), code, atol=1e-5)
    again = D.fit_kernel_pca((0.5, 3.0), 15)
    np.testing.assert_array_equal(again.components, pca.components)
    # fit from an explicit kernel stack too
    stack = np.stack([D.gaussian_kernel(s, 9) for s in (0.6, 1.0, 1.4, 1.8)])
    assert D.fit_kernel_pca(stack, 3).components.shape == (3, 81)
    with pytest.raises(ValueError, match="n_components 5 must be in 1..4"):
        D.fit_kernel_pca(stack, 5)
    with pytest.raises(ValueError, match=r"kernel shape \(9, 9\) must be \(15, 15\)"):
        pca.project(stack[0])


@pytest.mark.parametrize("shape", [(12, 10), (6, 8, 4)])
def test_degradation_maps_stretch_code_noise_and_hole(shape):
    code = np.array([0.5, -1.0, 2.0], np.float32)
    hole = np.zeros(shape, np.float32)
    hole[2:4] = 1
    maps = D.degradation_maps(code, 0.05, hole, shape)
    assert isinstance(maps, np.ndarray) and maps.shape == (5, *shape) and maps.dtype == np.float32
    for i, v in enumerate(code):
        np.testing.assert_array_equal(maps[i], v)
    np.testing.assert_allclose(maps[3], 0.05)
    np.testing.assert_array_equal(maps[4], hole)
    maps_t = D.degradation_maps(torch.from_numpy(code), 0.05, None, shape)
    assert isinstance(maps_t, torch.Tensor)
    np.testing.assert_array_equal(maps_t[:4].numpy(), maps[:4])
    assert not maps_t[4].any()
    with pytest.raises(ValueError, match="hole_mask shape"):
        D.degradation_maps(code, 0.05, np.zeros((3, 3)), shape)


# ----------------------------------------------------------------------------- noise


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_gaussian_noise_has_the_requested_std(kind):
    x = np.full((256, 256), 0.5, np.float32)
    out = to_numpy(D.add_gaussian_noise(as_kind(x, kind), 0.05, np.random.default_rng(0)))
    assert abs((out - x).std() - 0.05) < 0.002
    assert abs((out - x).mean()) < 0.001


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_rician_noise_bias_on_zero_background_and_std_on_bright_signal(kind):
    sigma = 0.04
    x = np.zeros((256, 256), np.float32)
    x[:, 128:] = 0.8
    out = to_numpy(D.add_rician_noise(as_kind(x, kind), sigma, np.random.default_rng(1)))
    assert out.min() >= 0
    assert abs(out[:, :128].mean() - sigma * math.sqrt(math.pi / 2)) < 0.03 * sigma
    assert abs(out[:, 128:].std() - sigma) < 0.05 * sigma  # Rician ~ Gaussian at high SNR


@pytest.mark.parametrize("add", [D.add_gaussian_noise, D.add_rician_noise])
def test_noise_is_seeded_and_the_same_for_numpy_and_torch(add):
    x = rand((9, 12, 7))
    a = add(x, 0.1, np.random.default_rng(5))
    b = add(x, 0.1, np.random.default_rng(5))
    c = add(x, 0.1, np.random.default_rng(6))
    t = add(torch.from_numpy(x), 0.1, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    np.testing.assert_array_equal(t.numpy(), a)
    with pytest.raises(ValueError, match="noise sigma -0.1 must be >= 0"):
        add(x, -0.1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="rng must be a numpy.random.Generator"):
        add(x, 0.1, 5)


# ----------------------------------------------------------------------------- holes


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("shape", SHAPES_2D + SHAPES_3D + [(32, 40, 24)])
def test_holes_mask_covers_exactly_the_box_and_zeroes_it(shape, kind):
    x = rand(shape) + 0.5
    boxes = D.sample_holes(shape, np.random.default_rng(2), n_holes=2)
    assert json.loads(json.dumps(boxes)) == [[list(r) for r in b] for b in boxes]
    out, mask = D.apply_holes(as_kind(x, kind), boxes)
    check_kind(out, kind)
    check_kind(mask, kind)
    out, mask = to_numpy(out), to_numpy(mask)
    expected = np.zeros(shape, np.float32)
    for box in boxes:
        expected[tuple(slice(a, b) for a, b in box)] = 1
        for axis, (a, b) in enumerate(box):
            n = shape[axis]
            assert 0 <= a < b <= n
            if axis in (0, 1):
                assert round(0.15 * n) - 1 <= b - a <= round(0.3 * n) + 1
            else:
                assert b - a >= math.ceil(n / 2)
    np.testing.assert_array_equal(mask, expected)
    assert np.all(out[mask == 1] == 0)
    np.testing.assert_array_equal(out[mask == 0], x[mask == 0])


def test_holes_are_seeded_and_check_their_arguments():
    a = D.sample_holes((32, 40, 24), np.random.default_rng(3))
    assert a == D.sample_holes((32, 40, 24), np.random.default_rng(3))
    assert a != D.sample_holes((32, 40, 24), np.random.default_rng(4))
    assert D.sample_holes((8, 8), np.random.default_rng(0), n_holes=0) == ()
    with pytest.raises(ValueError, match=r"size_range \(0.5, 0.2\)"):
        D.sample_holes((8, 8), np.random.default_rng(0), size_range=(0.5, 0.2))
    with pytest.raises(ValueError, match=r"axes \(0, 3\)"):
        D.sample_holes((8, 8, 8), np.random.default_rng(0), axes=(0, 3))
    with pytest.raises(ValueError, match=r"box range \(6, 12\) on axis 1 is outside 0..8"):
        D.apply_holes(rand((8, 8)), [((0, 2), (6, 12))])


# ----------------------------------------------------------------------------- bias field


def test_bias_field_is_smooth_positive_seeded_and_2d_is_the_centre_slice():
    params = D.sample_bias_field(np.random.default_rng(0), order=3, strength=0.3)
    assert len(params["coefficients"]) == 20
    assert all(abs(c) <= 0.3 for c in params["coefficients"])
    assert json.loads(json.dumps(params)) == params
    assert params == D.sample_bias_field(np.random.default_rng(0))
    ones = np.ones((16, 12, 9), np.float32)
    field = D.apply_bias_field(ones, params)
    assert field.min() > 0 and field.max() < math.exp(0.3 * 20)
    for axis in range(3):  # log field is a cubic polynomial: 4th differences vanish
        assert np.abs(np.diff(np.log(field), n=4, axis=axis)).max() < 1e-4
    np.testing.assert_allclose(D.apply_bias_field(ones[..., 4], params), field[..., 4], rtol=1e-6)
    t = D.apply_bias_field(torch.from_numpy(ones), params)
    np.testing.assert_allclose(t.numpy(), field, rtol=1e-6)
    zero = D.sample_bias_field(np.random.default_rng(0), strength=0.0)
    np.testing.assert_array_equal(D.apply_bias_field(ones, zero), ones)
    with pytest.raises(ValueError, match="order 2 needs 10 coefficients, got 20"):
        D.apply_bias_field(ones, {"order": 2, "coefficients": params["coefficients"]})


# ----------------------------------------------------------------------------- misalignment

IDENTITY = {"rotation_deg": [0, 0, 0], "translation_mm": [0, 0, 0], "shrink_mm": [0, 0, 0]}


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("shape", SHAPES_2D + SHAPES_3D)
def test_misalignment_identity_and_one_voxel_translation(shape, kind):
    x = rand(shape)
    same = D.apply_misalignment(as_kind(x, kind), IDENTITY)
    check_kind(same, kind)
    np.testing.assert_allclose(to_numpy(same), x, atol=1e-6)
    for axis in (0, len(shape) - 1):
        shift = [0.0, 0.0, 0.0]
        shift[axis if len(shape) == 3 else min(axis, 1)] = 1.0  # 1 mm = 1 voxel at the default 1 mm
        moved = to_numpy(D.apply_misalignment(as_kind(x, kind), {**IDENTITY, "translation_mm": shift}))
        a = min(axis, len(shape) - 1)
        tail = [slice(None)] * len(shape)
        head = [slice(None)] * len(shape)
        tail[a], head[a] = slice(1, None), slice(None, -1)
        np.testing.assert_allclose(moved[tuple(tail)], x[tuple(head)], atol=1e-4)
        first = [slice(None)] * len(shape)
        first[a] = 0
        np.testing.assert_allclose(moved[tuple(first)], 0, atol=1e-4)


def test_misalignment_matches_scipy_affine_transform_in_mm():
    x = rand((14, 11, 9))
    vox = np.array([0.9, 1.2, 2.0])
    params = {"rotation_deg": [1.5, 0.0, -2.0], "translation_mm": [0.7, 0.0, -1.3], "shrink_mm": [1.2, 0.8, 0.0]}
    n = np.array(x.shape, float)
    c = (n - 1) / 2
    ax, az = np.deg2rad(1.5), np.deg2rad(-2.0)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    forward = np.diag(1 / vox) @ rz @ rx @ np.diag(vox) @ np.diag(1 - np.array([1.2, 0.8, 0.0]) / (n * vox))
    a = np.linalg.inv(forward)
    offset = c - a @ (c + np.array([0.7, 0.0, -1.3]) / vox)
    for order in (1, 3):
        ref = ndi.affine_transform(x.astype(np.float64), a, offset=offset, order=order, mode="grid-constant", cval=0.0)
        got = D.apply_misalignment(x, params, voxel_size=vox, order=order)
        np.testing.assert_allclose(got, np.clip(ref, 0, x.max()), atol=1e-5)


def test_translation_in_mm_on_a_2mm_grid_moves_a_blob_by_half_as_many_voxels():
    x = blob((40, 36, 30), sigma=3.0)
    grids = np.meshgrid(*[np.arange(n) for n in x.shape], indexing="ij")

    def centroid(v):
        return np.array([(g * v).sum() / v.sum() for g in grids])

    for k in (1.0, 2.0, 3.0):
        moved = D.apply_misalignment(x, {"translation_mm": [k, 0.0, -k]}, voxel_size=2.0)
        np.testing.assert_allclose(centroid(moved) - centroid(x), [k / 2, 0.0, -k / 2], atol=1e-3)


def test_rotation_is_rigid_in_mm_on_anisotropic_voxels():
    # a 24 mm x 24 mm square on 1 x 2 mm voxels is 24 x 12 voxels; turned by 90 degrees about z
    # it must still be 24 mm x 24 mm, i.e. 24 x 12 voxels (a voxel-unit rotation gives 12 x 24)
    x = np.zeros((48, 24), np.float32)
    x[12:36, 6:18] = 1
    turned = D.apply_misalignment(x, {"rotation_deg": [0, 0, 90.0]}, voxel_size=(1.0, 2.0), order=1)
    np.testing.assert_allclose(turned.sum(), x.sum(), rtol=0.02)
    inside = turned > 0.5
    assert inside.any(axis=1).sum() == 24 and inside.any(axis=0).sum() == 12
    # the same in 3D, about H-F, with the slice axis untouched
    x3 = np.repeat(x[..., None], 5, axis=2)
    turned3 = D.apply_misalignment(x3, {"rotation_deg": [0, 0, 90.0]}, voxel_size=(1.0, 2.0, 3.0), order=1)
    np.testing.assert_allclose(turned3[..., 2], turned, atol=1e-5)


def test_cubic_keeps_a_smooth_pattern_better_than_linear():
    # a smooth 2D cosine pattern (period 9 voxels) rotated by 2 degrees: compare with the exact
    # rotated pattern away from the border; cubic splines are O(h^4), linear O(h^2)
    n = 64
    i, j = np.meshgrid(np.arange(n, dtype=np.float64), np.arange(n, dtype=np.float64), indexing="ij")
    c = (n - 1) / 2

    def pattern(u, v):
        return 0.5 + 0.25 * np.cos(2 * np.pi * u / 9) * np.cos(2 * np.pi * v / 11)

    x = pattern(i - c, j - c).astype(np.float32)
    th = np.deg2rad(2.0)
    u = np.cos(th) * (i - c) + np.sin(th) * (j - c)  # content at q goes to R q: sample at R^-1 p
    v = -np.sin(th) * (i - c) + np.cos(th) * (j - c)
    exact = pattern(u, v)
    inner = (slice(8, -8), slice(8, -8))
    err = {order: np.abs(D.apply_misalignment(x, {"rotation_deg": [0, 0, 2.0]}, order=order) - exact)[inner].max()
           for order in (1, 3)}
    assert err[3] < err[1] / 5, err


def test_quick_profile_shrink_is_under_one_percent_of_the_field_of_view():
    shape, vox = np.array([88, 104, 88]), 2.0  # the quick profile's grid
    rng = np.random.default_rng(0)
    draws = [D.sample_misalignment(rng, voxel_size=vox) for _ in range(300)]
    shrink = np.array([d["shrink_mm"] for d in draws])
    assert shrink.max() <= D.UDEAN_MAX_SHRINK_MM == pytest.approx(1.4)
    assert np.all(shrink / (shape * vox) < 0.01)
    assert (shrink / (shape * vox)).max() > 0.007  # the paper's 0.7-0.9% reached, not undershot


def test_misalignment_shrink_rotation_and_sampling_ranges():
    x = np.zeros((33, 33, 9), np.float32)
    x[4:29, 4:29] = 1
    # the area check uses linear sampling: clipping the cubic's overshoot at the box's sharp
    # edges costs ~1% of its sum (checked just below)
    shrunk = D.apply_misalignment(x, {**IDENTITY, "shrink_mm": [2.0, 2.0, 0.0]}, order=1)
    np.testing.assert_allclose(shrunk.sum(axis=(0, 1)), x.sum(axis=(0, 1)) * (31 / 33) ** 2, rtol=5e-3)
    cubic = D.apply_misalignment(x, {**IDENTITY, "shrink_mm": [2.0, 2.0, 0.0]})
    np.testing.assert_allclose(cubic.sum(axis=(0, 1)), shrunk.sum(axis=(0, 1)), rtol=0.02)
    shrunk2 = D.apply_misalignment(x, {**IDENTITY, "shrink_mm": [4.0, 4.0, 0.0]}, voxel_size=2.0, order=1)
    np.testing.assert_allclose(shrunk2, shrunk, atol=1e-5)  # 4 mm of a 66 mm FOV = 2 of 33 voxels
    turned = D.apply_misalignment(x, {**IDENTITY, "rotation_deg": [0.0, 0.0, 2.0]})
    assert not np.allclose(turned, x)
    np.testing.assert_allclose(turned.sum(), x.sum(), rtol=3e-3)  # cubic + clipping at the edges: 0.12%
    assert turned.min() >= 0 and turned.max() <= 1  # cubic overshoot clipped to the input's range
    np.testing.assert_allclose(turned[..., 4], D.apply_misalignment(x[..., 4], {**IDENTITY, "rotation_deg": [0, 0, 2.0]}), atol=1e-5)
    rng = np.random.default_rng(0)
    draws = [D.sample_misalignment(rng, voxel_size=(0.9, 0.9, 1.2)) for _ in range(200)]
    rot = np.array([d["rotation_deg"] for d in draws])
    trans = np.array([d["translation_mm"] for d in draws])
    shrink = np.array([d["shrink_mm"] for d in draws])
    assert np.abs(rot).max() <= 2 and np.all(rot[:, 1] == 0) and rot[:, 0].min() < 0 < rot[:, 0].max()
    assert np.abs(trans).max() <= 1.4 and np.all(trans[:, 1] == 0) and trans[:, 2].min() < 0 < trans[:, 2].max()
    assert shrink.min() >= 0 and shrink.max() <= 1.4 and np.all(shrink[:, 2] == 0)
    assert all(d["voxel_size_mm"] == [0.9, 0.9, 1.2] for d in draws)
    assert json.loads(json.dumps(draws[0])) == draws[0]
    with pytest.raises(ValueError, match="max_shrink_mm -1 must be >= 0"):
        D.sample_misalignment(rng, max_shrink_mm=-1)


def test_misalignment_is_seeded_and_replays_on_its_grid():
    x = blob((20, 18, 10), sigma=3.0)
    a = D.sample_misalignment(np.random.default_rng(7), voxel_size=(1.0, 1.0, 2.0))
    b = D.sample_misalignment(np.random.default_rng(7), voxel_size=(1.0, 1.0, 2.0))
    assert a == b and a != D.sample_misalignment(np.random.default_rng(8), voxel_size=(1.0, 1.0, 2.0))
    once = D.apply_misalignment(x, a)  # the recorded voxel size is used
    np.testing.assert_array_equal(once, D.apply_misalignment(x, b))
    np.testing.assert_array_equal(once, D.apply_misalignment(x, a, voxel_size=(1.0, 1.0, 2.0)))
    assert not np.allclose(once, D.apply_misalignment(x, {k: v for k, v in a.items() if k != "voxel_size_mm"}))


def test_misalignment_errors():
    x = rand((8, 8, 4))
    with pytest.raises(ValueError, match="'translation'/'shrink' \\(voxels\\) are no longer accepted"):
        D.apply_misalignment(x, {"translation": [1, 0, 0]})
    with pytest.raises(ValueError, match=r"unknown misalignment params \['turn'\]"):
        D.apply_misalignment(x, {"turn": [1, 0, 0]})
    with pytest.raises(ValueError, match="differs from the params' voxel_size_mm"):
        D.apply_misalignment(x, {"voxel_size_mm": [1, 1, 1]}, voxel_size=2.0)
    with pytest.raises(ValueError, match="must be smaller than the field of view"):
        D.apply_misalignment(x, {"shrink_mm": [16.0, 0, 0]}, voxel_size=2.0)
    with pytest.raises(ValueError, match="voxel_size .* must be > 0 mm"):
        D.apply_misalignment(x, IDENTITY, voxel_size=(1, 0, 1))
    with pytest.raises(ValueError, match="order 7 must be a spline order"):
        D.apply_misalignment(x, IDENTITY, order=7)


# ----------------------------------------------------------------------------- numpy == torch, seeds

CALLS = {
    "kspace_same": lambda x, rng: D.kspace_truncate(x, 2),
    "kspace_small": lambda x, rng: D.kspace_truncate(x, (2, 2, 1), grid="small"),
    "resize": lambda x, rng: D.resize(x, (0.5, 2, 1)),
    "blur": lambda x, rng: D.gaussian_blur(x, 1.2),
    "gauss": lambda x, rng: D.add_gaussian_noise(x, 0.1, rng),
    "rician": lambda x, rng: D.add_rician_noise(x, 0.1, rng),
    "holes": lambda x, rng: D.apply_holes(x, D.sample_holes(x.shape, rng))[0],
    "bias": lambda x, rng: D.apply_bias_field(x, D.sample_bias_field(rng)),
    "misalign": lambda x, rng: D.apply_misalignment(x, D.sample_misalignment(rng)),
    "SRI": lambda x, rng: D.get_scenario("SRI").apply(x, rng).lr,
}


@pytest.mark.parametrize("name", list(CALLS))
def test_numpy_and_torch_give_the_same_numbers_and_seeds_repeat(name):
    call = CALLS[name]
    x = rand((12, 10, 8))
    a = call(x, np.random.default_rng(7))
    b = call(x, np.random.default_rng(7))
    t = call(torch.from_numpy(x.copy()), np.random.default_rng(7))
    assert isinstance(a, np.ndarray) and a.dtype == np.float32
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(t.numpy(), a, atol=1e-6)
    if name in ("gauss", "rician", "holes", "bias", "misalign", "SRI"):
        assert not np.allclose(call(x, np.random.default_rng(8)), a)


def test_inputs_are_not_modified():
    x = rand((12, 10, 8))
    keep = x.copy()
    for name, call in CALLS.items():
        call(x, np.random.default_rng(0))
        np.testing.assert_array_equal(x, keep, err_msg=name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("name", list(CALLS))
def test_gpu_gives_the_cpu_numbers(name):
    x = rand((12, 10, 8))
    cpu = CALLS[name](torch.from_numpy(x), np.random.default_rng(7))
    gpu = CALLS[name](torch.from_numpy(x).cuda(), np.random.default_rng(7))
    assert gpu.device.type == "cuda"
    np.testing.assert_allclose(gpu.cpu().numpy(), cpu.numpy(), atol=1e-5)


# ----------------------------------------------------------------------------- scenarios

HR_SHAPE = (32, 40, 24)
EXPECTED_LR = {
    ("SR-N-B", 2): (16, 20, 24), ("SR-N-B", 4): (8, 10, 24), ("SR-B", 2): (16, 20, 24), ("SR-B", 4): (8, 10, 24),
    ("SRI", 2): (16, 20, 24), ("SRI", 4): (8, 10, 24), ("kspace-2x", 2): (32, 40, 24),
    ("kspace-2x2x1", 2): (16, 20, 24), ("kspace-2x2x2", 2): (16, 20, 12),
}


def test_every_preset_is_listed():
    assert set(D.SCENARIOS) == {name for name, _ in EXPECTED_LR}
    for name, scen in D.SCENARIOS.items():
        assert scen.name == name and scen.description and scen.paper and scen.grid in ("same", "small")
        assert len(scen.factors) == 3 and scen.spatial_dims_hint in (2, 3)


@pytest.mark.parametrize("name, scale", list(EXPECTED_LR))
def test_presets_run_with_the_expected_lr_shape(name, scale):
    hr = blob(HR_SHAPE, sigma=8.0)
    scen = D.get_scenario(name, scale=scale)
    result = scen.apply(hr, np.random.default_rng(0))
    assert result.lr.shape == EXPECTED_LR[name, scale] == scen.lr_shape(HR_SHAPE)
    assert result.lr.dtype == np.float32 and np.isfinite(result.lr).all()
    assert json.loads(json.dumps(result.params))["scenario"] == name
    if name == "SRI":
        assert result.mask.shape == result.lr.shape and result.mask.any()
        assert np.all(result.lr[result.mask == 1] == 0)
        assert {"noise_seed", "holes"} <= set(result.params)
    else:
        assert result.mask is None
    again = scen.apply(hr, np.random.default_rng(0))
    np.testing.assert_array_equal(again.lr, result.lr)
    assert again.params == result.params
    torch_result = scen.apply(torch.from_numpy(hr), np.random.default_rng(0))
    assert isinstance(torch_result.lr, torch.Tensor)
    np.testing.assert_allclose(torch_result.lr.numpy(), result.lr, atol=1e-6)


def test_blur_makes_sr_b_blurrier_than_sr_n_b():
    hr = rand(HR_SHAPE)
    plain = D.get_scenario("SR-N-B").apply(hr, np.random.default_rng(0)).lr
    blurred = D.get_scenario("SR-B").apply(hr, np.random.default_rng(0)).lr
    assert blurred.std() < plain.std()


def test_get_scenario_errors_name_the_problem():
    with pytest.raises(KeyError, match="unknown scenario 'SR-X'.*kspace-2x2x2"):
        D.get_scenario("SR-X")
    with pytest.raises(ValueError, match="scenario SR-B takes scale 2 or 4, got scale 3"):
        D.get_scenario("SR-B", scale=3)
    with pytest.raises(ValueError, match="scenario kspace-2x takes the fixed scale 2, got scale 4"):
        D.get_scenario("kspace-2x", scale=4)
    assert D.get_scenario("kspace-2x", scale=2).factors == (2, 2, 1)
    assert D.get_scenario("SR-B", scale=4).options["blur_sigma"] == 2.0
    with pytest.raises(ValueError, match="rng must be"):
        D.SCENARIOS["SRI"].apply(rand(HR_SHAPE), None)



@pytest.mark.parametrize("name", ["SR-N-B", "SRI", "kspace-2x", "kspace-2x2x2"])
def test_degrade_volume_sets_the_lr_geometry(name):
    volume = Volume(blob(HR_SHAPE, sigma=8.0), oblique_affine(), subject="s1", contrast="T2")
    scen = D.get_scenario(name)
    lr, mask, params = D.degrade_volume(volume, name, np.random.default_rng(0))
    assert params["scenario"] == name and lr.subject == "s1" and lr.path is None
    factors = np.array(scen.factors if scen.grid == "small" else (1, 1, 1), float)
    np.testing.assert_allclose(voxel_sizes(lr.affine), voxel_sizes(volume.affine) * factors)
    centre_hr = volume.affine @ np.r_[(np.array(HR_SHAPE) - 1) / 2, 1]
    centre_lr = lr.affine @ np.r_[(np.array(lr.shape) - 1) / 2, 1]
    np.testing.assert_allclose(centre_lr, centre_hr, atol=1e-9)
    # voxel 0 of the LR grid sits at HR voxel (f - 1) / 2: the cell-centred convention
    np.testing.assert_allclose(lr.affine @ [0, 0, 0, 1], volume.affine @ np.r_[(factors - 1) / 2, 1], atol=1e-9)
    assert lr.data.shape == scen.lr_shape(HR_SHAPE) and lr.data.dtype == np.float32
    if name == "SRI":
        assert mask.data.shape == lr.data.shape and mask.intensity is None
        np.testing.assert_array_equal(mask.affine, lr.affine)
    else:
        assert mask is None


# ----------------------------------------------------------------------------- pairings


def test_pairing_modes():
    hrs = [blob((16, 20, 12), sigma=4.0, seed=s) for s in range(5)]
    scen = D.get_scenario("kspace-2x2x1")
    paired = D.make_training_pairs(hrs, scen, "paired", np.random.default_rng(0))
    assert len(paired) == 5
    for (lr, target, mask), hr in zip(paired, hrs):
        assert target is hr and mask is None and lr.shape == (8, 10, 12)
    misaligned = D.make_training_pairs(hrs, "kspace-2x2x1", "misaligned", np.random.default_rng(0))
    for (lr, target, _), (lr_p, _, _), hr in zip(misaligned, paired, hrs):
        np.testing.assert_array_equal(lr, lr_p)  # LR is the same, only the HR target moved
        assert target.shape == hr.shape and not np.allclose(target, hr)
        assert np.corrcoef(target.ravel(), hr.ravel())[0, 1] > 0.7  # moved a few voxels, not scrambled
    unpaired = D.make_training_pairs(hrs, scen, "unpaired", np.random.default_rng(0))
    assert len(unpaired) == 3
    lr_ids = {id(hr) for hr in hrs[:3]}
    targets = [target for _, target, _ in unpaired]
    assert all(any(t is hr for hr in hrs[3:]) for t in targets)
    assert not lr_ids & {id(t) for t in targets}
    for (lr, _, _), hr in zip(unpaired, hrs[:3]):
        np.testing.assert_allclose(lr, D.kspace_truncate(hr, (2, 2, 1), grid="small"), atol=1e-6)
    sri = D.make_training_pairs(hrs, "SRI", "paired", np.random.default_rng(1))
    assert all(mask is not None and mask.shape == lr.shape for lr, _, mask in sri)
    again = D.make_training_pairs(hrs, "SRI", "paired", np.random.default_rng(1))
    for (a, _, ma), (b, _, mb) in zip(sri, again):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ma, mb)


def test_pairing_errors():
    hrs = [rand((8, 8, 4))]
    with pytest.raises(ValueError, match=r"unknown pairing 'shuffled'; choose one of \('paired', 'misaligned', 'unpaired'\)"):
        D.make_training_pairs(hrs, "kspace-2x", "shuffled", np.random.default_rng(0))
    with pytest.raises(ValueError, match="unpaired needs at least 2 subjects, got 1"):
        D.make_training_pairs(hrs, "kspace-2x", "unpaired", np.random.default_rng(0))
    with pytest.raises(ValueError, match="hr_volumes is empty"):
        D.make_training_pairs([], "kspace-2x", "paired", np.random.default_rng(0))


def test_scenario_scales_tell_fixed_presets_apart():
    assert D.scenario_scales("SR-B") == (2, 4)
    assert D.scenario_scales("kspace-2x") == (2,)
    with pytest.raises(KeyError, match="unknown scenario"):
        D.scenario_scales("SR-X")


# ----------------------------------------------------------------------------- provenance


@pytest.mark.parametrize("name", list(D.SCENARIOS))
@pytest.mark.parametrize("scale", [None, 4])
def test_every_preset_says_what_is_the_papers_and_what_is_ours(name, scale):
    if scale is not None and scale not in D.scenario_scales(name):
        pytest.skip("fixed scale")
    scen = D.get_scenario(name, scale)
    assert scen.paper_values and scen.our_choices
    assert not set(scen.paper_values) & set(scen.our_choices)
    assert all(isinstance(v, str) and v for v in [*scen.paper_values.values(), *scen.our_choices.values()])
    d = json.loads(json.dumps(scen.to_dict()))
    assert d["paper_values"] == dict(scen.paper_values) and d["our_choices"] == dict(scen.our_choices)
    text = scen.describe()
    assert "\n    paper: " in text and "\n    ours: " in text
    assert not re.search(r"seed 00\d|\(00\d", scen.paper + text)  # cited by author and year, not file number


def test_provenance_of_the_named_settings():
    assert "blur_sigma" in D.get_scenario("SR-B").our_choices
    sri = D.get_scenario("SRI")
    assert {"noise", "noise_sigma", "hole_size_range"} <= set(sri.our_choices)
    assert "n_holes" in sri.paper_values
    assert "central 25%" in D.get_scenario("kspace-2x").paper_values["factors"]
    assert D.get_scenario("kspace-2x").paper.startswith("Lyu et al. 2018")
    for name in ("kspace-2x2x1", "kspace-2x2x2"):
        scen = D.get_scenario(name)
        assert "2x2x1 and 2x2x2" in scen.paper_values["factors"] and scen.paper.startswith("Liu et al. 2022")


def test_cli_scenarios_prints_the_provenance(capsys):
    from sr_lib.cli import cmd_scenarios

    assert cmd_scenarios(None) == 0
    out = capsys.readouterr().out
    for name in D.SCENARIOS:
        assert re.search(rf"^{re.escape(name)} ", out, re.M)
    assert out.count("\n    paper: ") == len(D.SCENARIOS) and out.count("\n    ours: ") == len(D.SCENARIOS)


def test_misaligned_pairs_use_the_voxel_size():
    hrs = [blob((16, 20, 12), sigma=4.0, seed=s) for s in range(3)]
    one_mm = D.make_training_pairs(hrs, "kspace-2x2x1", "misaligned", np.random.default_rng(0))
    default = D.make_training_pairs(hrs, "kspace-2x2x1", "misaligned", np.random.default_rng(0), voxel_size=1.0)
    coarse = D.make_training_pairs(hrs, "kspace-2x2x1", "misaligned", np.random.default_rng(0),
                                   voxel_size=(2.0, 2.0, 2.0))
    rows = D.make_training_pairs(hrs, "kspace-2x2x1", "misaligned", np.random.default_rng(0),
                                 voxel_size=[(2.0, 2.0, 2.0)] * 3)
    for (_, a, _), (_, b, _), (_, c, _), (_, r, _), hr in zip(one_mm, default, coarse, rows, hrs):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(c, r)
        # the same motion in mm is half as many voxels on the 2 mm grid: closer to the HR
        assert np.abs(c - hr).mean() < np.abs(a - hr).mean()
    with pytest.raises(ValueError, match="voxel_size has 2 rows for 3 volumes"):
        D.make_training_pairs(hrs, "kspace-2x2x1", "misaligned", np.random.default_rng(0), voxel_size=[(1, 1, 1)] * 2)
