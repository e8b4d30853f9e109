"""Metrics: hand-computed values, scikit-image as the outside reference for SSIM, masks, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.metrics import structural_similarity

from sr_lib.io import Volume
from sr_lib.metrics import (
    METRIC_FUNCS,
    evaluate,
    evaluate_regions,
    foreground_mask,
    format_mean_std,
    mse,
    psnr,
    psnr_torch,
    scored_slices,
    slice_scores,
    ssim,
    ssim_torch,
    summarise,
)

SHAPES = [(37, 41), (19, 23, 17), (11, 11), (64, 48)]


def skimage_ssim(a, b, data_range=1.0):
    return structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=data_range
    )


def noisy_pair(shape, seed=0, noise=0.1):
    rng = np.random.default_rng(seed)
    target = rng.random(shape)
    pred = np.clip(target + noise * rng.standard_normal(shape), 0, 1)
    return pred, target


def image_like(shape, seed=0):
    """A smooth blob image (a 'head') with a dark hole and mild noise, in [0, 1]."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    r2 = sum(g**2 for g in grid)
    img = np.where(r2 < 0.6, 0.8, 0.0) + np.where(r2 < 0.08, -0.8, 0.0)
    img = ndimage.gaussian_filter(img, 1.0) + 0.01 * rng.standard_normal(shape)
    return np.clip(img, 0, 1)


# ----------------------------------------------------------------------------- MSE and PSNR


def test_mse_known_value():
    target = np.zeros((4, 5))
    pred = np.zeros((4, 5))
    pred[0, 0] = 2.0  # one squared error of 4 among 20 voxels
    assert mse(pred, target) == pytest.approx(0.2)


def test_psnr_by_hand_is_20_db():
    target = np.random.default_rng(0).random((13, 17, 9))
    pred = target + 0.1  # MSE = 0.01 -> 10 log10(1 / 0.01) = 20 dB
    assert mse(pred, target) == pytest.approx(0.01)
    assert psnr(pred, target) == pytest.approx(20.0, abs=1e-9)


def test_psnr_identical_is_inf():
    a = np.random.default_rng(1).random((8, 9))
    assert psnr(a, a) == math.inf


def test_data_range_effect():
    pred, target = noisy_pair((21, 22))
    # PSNR grows by 20 log10(k) when the range grows by k ...
    assert psnr(pred, target, data_range=2.0) == pytest.approx(psnr(pred, target) + 20 * math.log10(2.0))
    # ... and SSIM on data scaled by k with data_range k is the same number.
    assert ssim(255 * pred, 255 * target, data_range=255.0) == pytest.approx(ssim(pred, target), abs=1e-10)
    assert ssim(pred, target, data_range=2.0) != pytest.approx(ssim(pred, target), abs=1e-6)


def test_accepts_tensors_and_volumes():
    pred, target = noisy_pair((19, 23, 17))
    ref = ssim(pred, target)
    assert ssim(torch.from_numpy(pred).float(), torch.from_numpy(target)) == pytest.approx(ref, abs=1e-6)
    vol = lambda a: Volume(data=a.astype(np.float32), affine=np.eye(4))  # noqa: E731
    assert ssim(vol(pred), vol(target)) == pytest.approx(ref, abs=1e-6)
    assert psnr(np.flip(pred), np.flip(target)) == pytest.approx(psnr(pred, target))


# ----------------------------------------------------------------------------- SSIM vs scikit-image


@pytest.mark.parametrize("shape", SHAPES)
def test_ssim_matches_skimage_random(shape):
    pred, target = noisy_pair(shape, seed=len(shape))
    assert ssim(pred, target) == pytest.approx(skimage_ssim(pred, target), abs=1e-3)
    # float64 all the way: in fact it agrees to rounding
    assert ssim(pred, target) == pytest.approx(skimage_ssim(pred, target), abs=1e-10)


@pytest.mark.parametrize("shape", [(37, 41), (19, 23, 17)])
def test_ssim_matches_skimage_image_like(shape):
    target = image_like(shape)
    pred = ndimage.gaussian_filter(target, 0.8)  # a blurred reconstruction
    expected = skimage_ssim(pred.astype(np.float32), target.astype(np.float32))
    assert ssim(pred.astype(np.float32), target.astype(np.float32)) == pytest.approx(expected, abs=1e-3)


def test_ssim_identical_is_one():
    a = image_like((23, 29, 19))
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)


def test_ssim_too_small_raises():
    with pytest.raises(ValueError, match="11"):
        ssim(np.zeros((10, 30)), np.zeros((10, 30)))
    with pytest.raises(ValueError, match="2D or 3D"):
        ssim(np.zeros(30), np.zeros(30))


# ----------------------------------------------------------------------------- batched torch path


@pytest.mark.parametrize("shape", [(3, 2, 37, 41), (2, 1, 19, 23, 17)])
def test_torch_batched_equals_reference(shape):
    rng = np.random.default_rng(3)
    target = rng.random(shape).astype(np.float32)
    pred = np.clip(target + 0.1 * rng.standard_normal(shape), 0, 1).astype(np.float32)
    got_ssim = ssim_torch(torch.from_numpy(pred), torch.from_numpy(target))
    got_psnr = psnr_torch(torch.from_numpy(pred), torch.from_numpy(target))
    assert got_ssim.shape == got_psnr.shape == (shape[0],)
    for n in range(shape[0]):
        channels = range(shape[1])
        ref_ssim = np.mean([ssim(pred[n, c], target[n, c]) for c in channels])
        ref_skimage = np.mean([skimage_ssim(pred[n, c], target[n, c]) for c in channels])
        assert float(got_ssim[n]) == pytest.approx(ref_ssim, abs=1e-4)
        assert float(got_ssim[n]) == pytest.approx(ref_skimage, abs=1e-4)
        assert float(got_psnr[n]) == pytest.approx(psnr(pred[n], target[n]), abs=1e-4)


def test_torch_batched_identical_and_grad_free():
    x = torch.rand(2, 1, 16, 16, requires_grad=True)
    assert torch.all(psnr_torch(x, x) == math.inf)
    s = ssim_torch(x, x.detach())
    assert torch.allclose(s, torch.ones(2))
    assert not s.requires_grad


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_torch_batched_on_cuda_equals_cpu():
    x, y = torch.rand(2, 1, 24, 24, 24), torch.rand(2, 1, 24, 24, 24)
    got = ssim_torch(x.cuda(), y.cuda())
    assert got.device.type == "cuda"
    assert torch.allclose(got.cpu(), ssim_torch(x, y), atol=1e-5)
    assert torch.allclose(psnr_torch(x.cuda(), y.cuda()).cpu(), psnr_torch(x, y), atol=1e-4)


def test_torch_batched_errors():
    with pytest.raises(ValueError, match=r"\(3, 16, 16\)"):
        ssim_torch(torch.rand(3, 16, 16), torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match="differ"):
        psnr_torch(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 17))


# ----------------------------------------------------------------------------- masks


def test_psnr_on_mask_equals_psnr_of_masked_voxels_by_hand():
    pred, target = noisy_pair((19, 23, 17), seed=4)
    mask = np.zeros(pred.shape, dtype=bool)
    mask[3:12, 5:20, 2:9] = True
    by_hand = 10 * np.log10(1.0 / np.mean((pred[mask] - target[mask]) ** 2))
    assert psnr(pred, target, mask=mask) == pytest.approx(by_hand)
    assert mse(pred, target, mask=mask.astype(np.uint8)) == pytest.approx(np.mean((pred[mask] - target[mask]) ** 2))


def test_ssim_mask_is_mean_of_skimage_map_over_cropped_mask():
    pred, target = noisy_pair((37, 41), seed=5)
    _, s_map = structural_similarity(
        pred, target, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, full=True
    )
    mask = np.zeros(pred.shape, dtype=bool)
    mask[2:30, 8:40] = True  # reaches into the 5-voxel border, which is never counted
    inner = np.zeros_like(mask)
    inner[5:-5, 5:-5] = True
    assert ssim(pred, target, mask=mask) == pytest.approx(s_map[mask & inner].mean(), abs=1e-10)
    full = np.ones_like(mask)
    assert ssim(pred, target, mask=full) == pytest.approx(ssim(pred, target), abs=1e-12)


def test_mask_errors():
    a = np.zeros((16, 16))
    with pytest.raises(ValueError, match="selects no voxels"):
        psnr(a, a + 0.1, mask=np.zeros((16, 16), dtype=bool))
    with pytest.raises(ValueError, match=r"\(16, 15\).*\(16, 16\)"):
        mse(a, a, mask=np.ones((16, 15), dtype=bool))
    with pytest.raises(ValueError, match="border"):
        border_only = np.zeros((16, 16), dtype=bool)
        border_only[0, :] = True
        ssim(a, a, mask=border_only)
    with pytest.raises(ValueError, match="boolean"):
        mse(a, a, mask=np.full((16, 16), 0.5))


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("func", [mse, psnr, ssim, evaluate])
def test_shape_mismatch_names_the_shapes(func):
    with pytest.raises(ValueError, match=r"\(12, 13\) vs \(12, 14\)"):
        func(np.zeros((12, 13)), np.zeros((12, 14)))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_data_range(bad):
    a = np.zeros((12, 12))
    with pytest.raises(ValueError, match="data_range"):
        psnr(a, a, data_range=bad)
    with pytest.raises(ValueError, match="data_range"):
        ssim(a, a, data_range=bad)


# ----------------------------------------------------------------------------- evaluate, mask, summary


def test_evaluate_whole_and_foreground():
    target = image_like((24, 26, 22))
    pred = ndimage.gaussian_filter(target, 0.7)
    mask = foreground_mask(target)
    out = evaluate(pred, target, mask=mask)
    assert set(out) == {"psnr", "ssim", "mse", "psnr_fg", "ssim_fg", "mse_fg"}
    assert out["psnr"] == pytest.approx(psnr(pred, target))
    assert out["ssim"] == pytest.approx(ssim(pred, target))
    assert out["mse"] == pytest.approx(mse(pred, target))
    assert out["psnr_fg"] == pytest.approx(psnr(pred, target, mask=mask))
    assert out["ssim_fg"] == pytest.approx(ssim(pred, target, mask=mask))
    assert out["mse_fg"] == pytest.approx(mse(pred, target, mask=mask))
    assert all(isinstance(v, float) for v in out.values())
    assert set(evaluate(pred, target)) == {"psnr", "ssim", "mse"}
    assert set(METRIC_FUNCS) == {"MSE", "PSNR", "SSIM"}
    assert METRIC_FUNCS["PSNR"](pred, target) == out["psnr"]


def test_foreground_mask_fills_dark_inside():
    target = image_like((40, 40, 30))
    mask = foreground_mask(target)
    assert mask.dtype == bool and mask.shape == target.shape
    assert mask[20, 20, 15] and target[20, 20, 15] < 0.05  # dark 'ventricle' in the middle counts
    assert not mask[0, 0, 0]  # air stays out
    assert mask.sum() >= (target > 0.05).sum()
    assert not foreground_mask(np.zeros((12, 12))).any()
    with pytest.raises(ValueError, match="2D or 3D"):
        foreground_mask(np.zeros(10))


def test_summarise_and_format():
    mean, std = summarise([33.5, 34.0, 33.84])
    assert mean == pytest.approx(np.mean([33.5, 34.0, 33.84]))
    assert std == pytest.approx(np.std([33.5, 34.0, 33.84], ddof=1))
    assert summarise([0.91]) == (0.91, 0.0)
    with pytest.raises(ValueError):
        summarise([])
    assert format_mean_std(33.7812, 0.4149) == "33.78 ± 0.41"
    assert format_mean_std(0.91234, 0.0123, 3) == "0.912 ± 0.012"
    with pytest.raises(ValueError):
        format_mean_std(1.0, 0.1, -1)


def test_foreground_mask_ignores_noisy_background():
    """T1-like case: Rician-like background noise above 0.05 must not be taken for tissue."""
    rng = np.random.default_rng(0)
    zz, yy, xx = np.mgrid[:40, :40, :40]
    ball = (zz - 20) ** 2 + (yy - 20) ** 2 + (xx - 20) ** 2 < 12**2
    target = np.where(ball, 0.6, 0.0) + np.abs(rng.normal(0, 0.06, ball.shape))  # noise mean 0.048, tail > 0.1
    assert (target[~ball] > 0.05).mean() > 0.4
    mask = foreground_mask(target)
    assert mask[ball].all()
    assert (mask & ~ball).sum() < 0.35 * ball.sum()  # only the one-voxel dilation rim around the ball
    assert foreground_mask(target, 0.05).mean() > 0.9  # a fixed low threshold takes nearly everything


# ----------------------------------------------------------------------------- per-slice convention and regions


def _by_hand_slices(pred, target, axis, mask=None):
    """The papers' loop, written out with scikit-image: 2D PSNR/SSIM per slice, then the mean."""
    ps, ss = [], []
    for k in range(target.shape[axis]):
        p2, t2 = np.take(pred, k, axis), np.take(target, k, axis)
        if mask is None:
            if not t2.any():
                continue
            ps.append(10 * np.log10(1.0 / np.mean((p2 - t2) ** 2)))
            ss.append(skimage_ssim(p2, t2))
        else:
            m2 = np.take(mask, k, axis)
            if m2.mean() < 0.01 or not m2[5:-5, 5:-5].any():
                continue
            _, s_map = structural_similarity(
                p2, t2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, full=True
            )
            inner = np.zeros_like(m2)
            inner[5:-5, 5:-5] = True
            ps.append(10 * np.log10(1.0 / np.mean((p2[m2] - t2[m2]) ** 2)))
            ss.append(s_map[m2 & inner].mean())
    return np.mean(ps), np.mean(ss)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_slice_scores_equal_skimage_per_slice(axis):
    target = image_like((23, 19, 17), seed=2)
    pred = np.clip(ndimage.gaussian_filter(target, 0.8) + 0.02 * np.random.default_rng(1).standard_normal(target.shape), 0, 1)
    got = slice_scores(pred, target, axis=axis)
    assert set(got) == {"psnr_slices", "ssim_slices"}
    want_psnr, want_ssim = _by_hand_slices(pred, target, axis % 3)
    assert got["psnr_slices"] == pytest.approx(want_psnr, abs=1e-9)
    assert got["ssim_slices"] == pytest.approx(want_ssim, abs=1e-10)


def test_slice_scores_single_slice_is_skimage_2d():
    pred, target = noisy_pair((31, 1, 27), seed=7)
    got = slice_scores(pred, target, axis=1)
    assert got["ssim_slices"] == pytest.approx(skimage_ssim(pred[:, 0], target[:, 0]), abs=1e-12)
    assert got["psnr_slices"] == pytest.approx(psnr(pred[:, 0], target[:, 0]), abs=1e-12)


def test_slice_scores_masked_and_slice_rule():
    target = image_like((26, 24, 21), seed=3)
    pred = ndimage.gaussian_filter(target, 0.7)
    mask = foreground_mask(target)
    mask[:, :, :3] = False  # three slices without brain
    mask[:, :, 3] = False
    mask[12, 12, 3] = True  # one pixel: 1/624 < 1% of the slice, so slice 3 does not count
    got = slice_scores(pred, target, axis=2, mask=mask)
    want_psnr, want_ssim = _by_hand_slices(pred, target, 2, mask)
    assert got["psnr_slices"] == pytest.approx(want_psnr, abs=1e-9)
    assert got["ssim_slices"] == pytest.approx(want_ssim, abs=1e-10)
    kept = scored_slices(target, axis=2, mask=mask)
    assert kept[0] >= 4 and 3 not in kept
    assert 3 in scored_slices(target, axis=2, mask=mask, min_fraction=0.0)
    # without a mask, empty target slices are skipped and the rest all count
    padded = np.pad(target, ((0, 0), (0, 0), (2, 0)))
    assert list(scored_slices(padded, axis=2)) == list(range(2, padded.shape[2]))
    assert slice_scores(np.pad(pred, ((0, 0), (0, 0), (2, 0))), padded)["ssim_slices"] == pytest.approx(
        slice_scores(pred, target)["ssim_slices"], abs=1e-12
    )


def test_slice_scores_identical_and_offset():
    target = image_like((20, 18, 16))
    assert slice_scores(target, target) == {"psnr_slices": math.inf, "ssim_slices": pytest.approx(1.0, abs=1e-12)}
    assert slice_scores(target + 0.1, target)["psnr_slices"] == pytest.approx(20.0, abs=1e-9)


def test_slice_scores_errors():
    a = np.random.default_rng(0).random((16, 16, 12))
    with pytest.raises(ValueError, match="3D"):
        slice_scores(a[..., 0], a[..., 0])
    with pytest.raises(ValueError, match="axis"):
        slice_scores(a, a, axis=3)
    with pytest.raises(ValueError, match=r"\(16, 16, 12\) vs \(16, 16, 11\)"):
        slice_scores(a, a[..., :11])
    with pytest.raises(ValueError, match="in-plane"):
        slice_scores(a[..., :10], a[..., :10], axis=0)  # slices of 16 x 10: too small for the 11-tap window
    with pytest.raises(ValueError, match="non-zero"):
        slice_scores(np.zeros((12, 12, 4)), np.zeros((12, 12, 4)))
    with pytest.raises(ValueError, match="1%"):
        tiny = np.zeros(a.shape, dtype=bool)
        tiny[8, 8, 5] = True
        slice_scores(a, a, mask=tiny)
    with pytest.raises(ValueError, match="data_range"):
        slice_scores(a, a, data_range=0)


def test_evaluate_regions_rows():
    target = image_like((24, 26, 22), seed=4)
    pred = ndimage.gaussian_filter(target, 0.7)
    mask = foreground_mask(target)
    rows = evaluate_regions(pred, target, mask=mask, axis=2)
    assert [r["region"] for r in rows] == ["brain", "volume"]
    brain, volume = rows
    assert set(brain) == set(volume) == {"region", "psnr", "ssim", "mse", "psnr_slices", "ssim_slices"}
    assert brain["psnr"] == pytest.approx(psnr(pred, target, mask=mask))
    assert brain["ssim"] == pytest.approx(ssim(pred, target, mask=mask))
    assert brain["mse"] == pytest.approx(mse(pred, target, mask=mask))
    assert volume["psnr"] == pytest.approx(psnr(pred, target))
    assert volume["ssim"] == pytest.approx(ssim(pred, target))
    assert brain["psnr_slices"] == pytest.approx(slice_scores(pred, target, mask=mask)["psnr_slices"])
    assert volume["ssim_slices"] == pytest.approx(slice_scores(pred, target)["ssim_slices"])
    assert brain["ssim_slices"] != pytest.approx(volume["ssim_slices"], abs=1e-6)


def test_evaluate_regions_offset_is_20_db_everywhere_and_identical_is_inf():
    target = image_like((22, 20, 18), seed=5)
    mask = foreground_mask(target)
    for row in evaluate_regions(target + 0.1, target, mask=mask):
        assert row["psnr"] == pytest.approx(20.0, abs=1e-9)
        assert row["psnr_slices"] == pytest.approx(20.0, abs=1e-9)
        assert row["mse"] == pytest.approx(0.01)
    for row in evaluate_regions(target, target, mask=mask):
        assert row["psnr"] == row["psnr_slices"] == math.inf
        assert row["ssim"] == pytest.approx(1.0) and row["ssim_slices"] == pytest.approx(1.0)


def test_evaluate_regions_errors():
    a = image_like((16, 16, 14))
    with pytest.raises(ValueError, match="mask"):
        evaluate_regions(a, a, mask=None)
    with pytest.raises(ValueError, match="selects no voxels"):
        evaluate_regions(a, a, mask=np.zeros(a.shape, dtype=bool))
    with pytest.raises(ValueError, match="differs"):
        evaluate_regions(a, a, mask=np.ones((16, 16, 13), dtype=bool))
