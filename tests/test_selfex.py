"""SelfEx (Huang et al. 2015, simplified): beats bicubic on a self-similar image, and by more
than the back-projection alone; a rotated copy of a motif is found only by the rotated search;
the back-projection makes the output's bicubic downscale match the input; the search and the
parent geometry are exact; shapes on small and same grids; bad factors and inputs are refused;
a `test`-profile run goes end to end through `run_experiment`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from sr_lib import degrade as D
from sr_lib.methods import METHODS, Observation, build
from sr_lib.methods.selfex import (
    SelfExMethod, SelfExOptions, back_project, exemplars, gaussian_weights, nearest, resize_matrix, transformed_sources,
)
from sr_lib.runs import RunConfig, run_experiment


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((np.asarray(a, np.float64) - b) ** 2)))


def shapes(seed: int, n: int = 64, slices: int = 2) -> np.ndarray:
    """Piecewise-constant rectangles and discs with sharp edges: a step edge looks the same at
    every scale, the self-similarity across scales SelfEx relies on. (n, n, slices) in [0.1, 0.9]."""
    rng = np.random.default_rng(seed)
    out = np.full((n, n, slices), 0.2, np.float32)
    yy, xx = np.mgrid[:n, :n]
    for z in range(slices):
        image = out[:, :, z]
        for _ in range(14):
            value = rng.uniform(0.1, 0.9)
            if rng.random() < 0.5:
                (y0, x0), (h, w) = rng.integers(0, n - 8, 2), rng.integers(6, 24, 2)
                image[y0:y0 + h, x0:x0 + w] = value
            else:
                (cy, cx), r = rng.uniform(0, n, 2), rng.uniform(4, 14)
                image[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = value
    return out


def bicubic(lr: np.ndarray, shape) -> np.ndarray:
    return np.clip(D.resize(lr, size=shape), 0.0, 1.0)


@pytest.fixture(scope="module")
def shapes_case():
    hr = shapes(0)
    return hr, D.downsample(hr, (2, 2, 1))


def test_registered_not_learned_with_paper_values_at_full_and_a_smaller_search_for_test():
    assert METHODS["selfex"] is SelfExMethod and not SelfExMethod.learned
    full = build("selfex", factors=(2, 2, 1), profile="full").options
    assert (full.patch_size, full.patch_sigma, full.max_bias, full.bp_iterations, full.bp_sigma) == (5, 3.0, 0.25, 20, 1.0)
    assert full.scale_step == pytest.approx(2 ** (-1 / 3)) and (full.rotations, full.scales) == (8, 3)
    test = build("selfex", factors=(2, 2, 1), profile="test").options
    assert test.rotations * test.scales < full.rotations * full.scales and test.bp_iterations < 20
    method = build("selfex", factors=(2, 2, 1), profile="test")
    assert method.fit(None, None) == {}  # nothing to learn
    for bad in ({"patch_size": 0}, {"scale_step": 1.0}, {"max_error": -1.0}, {"same_grid_scale": 1}):
        with pytest.raises(ValueError, match="selfex option"):
            SelfExOptions(**bad)


def test_beats_bicubic_and_the_back_projection_alone_on_a_self_similar_image(shapes_case):
    hr, lr = shapes_case
    selfex = build("selfex", factors=(2, 2, 1), profile="test").predict(Observation(lr))
    projected_only = build("selfex", factors=(2, 2, 1), profile="test", max_error=0.0).predict(Observation(lr))
    assert selfex.shape == hr.shape and selfex.dtype == np.float32
    assert selfex.min() >= 0.0 and selfex.max() <= 1.0
    # measured: bicubic 24.91 dB, bicubic + back-projection 25.69 dB, SelfEx 26.80 dB
    assert psnr(selfex, hr) > psnr(bicubic(lr, hr.shape), hr) + 1.5
    assert psnr(selfex, hr) > psnr(projected_only, hr) + 0.7
    np.testing.assert_array_equal(build("selfex", factors=(2, 2, 1), profile="test").predict(Observation(lr)), selfex)


def rotated_motif(seed: int) -> np.ndarray:
    """A random 6 x 6 block motif, large (8 px cells) on the left, and a copy at half the size
    (4 px cells) rotated by 90 degrees on the right: the LR small copy's only good exemplar is
    the rotated downscale of the LR large one."""
    rng = np.random.default_rng(seed)
    pattern = rng.choice([0.15, 0.85], size=(6, 6)).astype(np.float32)
    hr = np.full((64, 96), 0.5, np.float32)
    hr[8:56, 4:52] = np.kron(pattern, np.ones((8, 8), np.float32))
    hr[20:44, 64:88] = np.kron(np.rot90(pattern), np.ones((4, 4), np.float32))
    return hr[:, :, None]


@pytest.mark.parametrize("seed", [0, 1])
def test_a_rotated_copy_is_found_only_by_the_rotated_search(seed):
    hr = rotated_motif(seed)
    lr = D.downsample(hr, (2, 2, 1))
    small = (slice(20, 44), slice(64, 88))
    translated = build("selfex", factors=(2, 2, 1), profile="test", rotations=1, scales=1)
    rotated = build("selfex", factors=(2, 2, 1), profile="test", rotations=4, scales=1)
    out_t, out_r = translated.predict(Observation(lr)), rotated.predict(Observation(lr))
    # measured (seeds 0, 1): bicubic 18.5 / 18.7 dB, translation only 19.6 / 20.0, rotations 27.9 / 28.9
    assert psnr(out_r[small], hr[small]) > psnr(out_t[small], hr[small]) + 5.0
    used = rotated.last_stats["transforms"]
    assert used.get("scale 1.000, rotation 90", 0) > used.get("scale 1.000, rotation 0", 0)
    assert set(translated.last_stats["transforms"]) == {"scale 1.000, rotation 0"}


def test_back_projection_makes_the_bicubic_downscale_match_the_input(shapes_case):
    hr, lr = shapes_case
    without = build("selfex", factors=(2, 2, 1), profile="test", bp_iterations=0).predict(Observation(lr))
    with_bp = build("selfex", factors=(2, 2, 1), profile="test", bp_iterations=20).predict(Observation(lr))

    def inconsistency(out):
        return float(np.sqrt(np.mean((D.resize(out, size=lr.shape) - lr) ** 2)))

    assert inconsistency(with_bp) < 0.003 and inconsistency(with_bp) < 0.2 * inconsistency(without)
    # the matrices are the workbench's bicubic resize itself
    x = torch.from_numpy(hr[:, :, 0])
    np.testing.assert_allclose(resize_matrix(64, 32) @ x @ resize_matrix(64, 32).T, D.resize(x, 2), atol=1e-5)
    # a consistent image is a fixed point
    slices = torch.from_numpy(np.moveaxis(lr, 2, 0).copy())
    up = D.resize_axes(slices, (64, 64), axes=(1, 2))
    again = back_project(up, D.resize_axes(up, (32, 32), axes=(1, 2)), iterations=5, sigma=1.0)
    np.testing.assert_allclose(again, up.clamp(0, 1), atol=1e-5)


def test_nearest_is_the_brute_force_nearest_in_chunks(monkeypatch):
    rng = np.random.default_rng(0)
    queries, candidates = (torch.from_numpy(rng.normal(size=(n, 25)).astype(np.float32)) for n in (300, 700))
    monkeypatch.setattr("sr_lib.methods.selfex.CHUNK_QUERIES", 64)
    index, dist = nearest(queries, candidates)
    brute = torch.cdist(queries.double(), candidates.double()) ** 2
    np.testing.assert_array_equal(index, brute.argmin(1))
    np.testing.assert_allclose(dist, brute.min(1).values, rtol=1e-4)


def test_parents_are_the_source_pixels_over_each_child_and_rotations_are_exact_or_masked():
    image = np.random.default_rng(1).random((23, 27), dtype=np.float32)
    options = SelfExOptions(rotations=8, scales=2, min_std=0.0)
    weights = torch.from_numpy(gaussian_weights(5, 3.0)).float().reshape(-1)
    bank = exemplars(image[None], 2, options, weights)[0]
    first = torch.nonzero(bank.transform == 0)[:, 0]  # identity: children of the crop 22 x 26 downscaled to 11 x 13
    assert first.numel() == (11 - 4) * (13 - 4)
    parents = bank.parents(first).reshape(-1, 10, 10).numpy()
    for k, corner in enumerate(bank.corner[first].tolist()):
        row, col = divmod(corner, 26)
        np.testing.assert_array_equal(parents[k], image[row:row + 10, col:col + 10])
    sources = transformed_sources(np.stack([image, 1 - image]), options)
    assert len(sources) == 16 and len(bank.names) == 16
    name, turned, valid = sources[2]
    assert name == "scale 1.000, rotation 90" and valid.all()
    np.testing.assert_array_equal(turned, np.stack([np.rot90(image), np.rot90(1 - image)]))
    name, tilted, valid = sources[1]
    np.testing.assert_allclose(tilted[0], ndimage.rotate(image, 45, reshape=True, order=3, mode="nearest"), atol=1e-6)
    assert name == "scale 1.000, rotation 45" and not valid[0, 0] and valid[valid.shape[0] // 2, valid.shape[1] // 2]


@pytest.mark.parametrize("factors, lr_shape, hr_shape", [
    ((2, 2, 1), (13, 15, 3), (26, 30, 3)),
    ((1, 2, 2), (3, 11, 9), (3, 22, 18)),  # slices along x
    ((3, 3, 1), (12, 13, 2), (36, 39, 2)),
])
def test_small_grid_shapes_and_a_constant_stays_constant(factors, lr_shape, hr_shape):
    method = build("selfex", factors=factors, profile="test")
    lr = np.random.default_rng(0).random(lr_shape, dtype=np.float32)
    out = method.predict(Observation(lr))
    assert out.shape == hr_shape and out.dtype == np.float32 and np.isfinite(out).all()
    holes = np.zeros(lr_shape, np.float32)
    holes[:4, :4] = 1.0
    np.testing.assert_array_equal(method.predict(Observation(lr, mask=holes)), out)  # the hole mask is ignored
    flat = method.predict(Observation(np.full(lr_shape, 0.4, np.float32)))
    np.testing.assert_allclose(flat, 0.4, atol=1e-6)


def test_same_grid_keeps_the_grid_takes_the_factor_from_params_and_beats_the_zero_filled_input():
    hr = shapes(2, n=63, slices=2)  # odd: padded to a multiple of 2 inside, cropped back
    lr = D.kspace_truncate(hr, (2, 2, 1), grid="same")
    params = {"factors": [2, 2, 1], "grid": "same"}
    method = build("selfex", factors=(1, 1, 1), profile="test")
    out = method.predict(Observation(lr, params=params))
    assert out.shape == hr.shape and out.min() >= 0.0 and out.max() <= 1.0
    assert psnr(out, hr) > psnr(lr, hr) + 0.5
    option = build("selfex", factors=(1, 1, 1), profile="test", same_grid_scale=2).predict(Observation(lr))
    np.testing.assert_allclose(option, out, atol=1e-6)


def test_bad_factors_and_inputs_raise_one_line_errors():
    with pytest.raises(ValueError, match="2D slices only"):  # the framework: every axis changes
        build("selfex", factors=(2, 2, 2), profile="test")
    assert "2D method cannot" in SelfExMethod.support.reason_not(grid="small", factors=(2, 2, 2), pairing="paired",
                                                                   holes=False)
    with pytest.raises(ValueError, match=r"same factor on both in-plane axes, got \(2, 3\)"):
        build("selfex", factors=(2, 3, 1), profile="test")
    same = build("selfex", factors=(1, 1, 1), profile="test")
    lr = np.zeros((8, 8, 2), np.float32)
    with pytest.raises(ValueError, match="whole resolution factor >= 2 on the same grid, got 1.5"):
        same.predict(Observation(lr, params={"factors": [1.5, 1.5, 1]}))
    with pytest.raises(ValueError, match=r"same factor on both in-plane axes, got \(2.0, 3.0\)"):
        same.predict(Observation(lr, params={"factors": [2, 3, 1]}))
    with pytest.raises(ValueError, match="needs the resolution factor"):
        same.predict(Observation(lr))
    small = build("selfex", factors=(2, 2, 1), profile="test")
    with pytest.raises(ValueError, match=r"\(x, y, z\) volumes, got shape \(8, 8\)"):
        small.predict(Observation(lr[:, :, 0]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        small.predict(Observation(np.full((8, 8, 2), np.nan, np.float32)))


def test_predicts_end_to_end_through_run_experiment(tmp_path, monkeypatch):
    monkeypatch.setenv("SR_LIB_CACHE", str(tmp_path / "cache"))
    config = dict(scenario="SR-B", contrast="T2", scale=2, profile="test")
    selfex = run_experiment(RunConfig(method="selfex", **config), tmp_path / "runs", progress=False)
    assert selfex.status == "done", selfex.error
    baseline = run_experiment(RunConfig(method="bicubic", **config), tmp_path / "runs", progress=False)
    ours, theirs = selfex.scores("brain"), baseline.scores("brain")
    assert len(ours) == 2 and ours["psnr"].notna().all()
    assert ours["psnr"].mean() > theirs["psnr"].mean()
