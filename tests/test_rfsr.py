"""RFSR: the NumPy traversal of the saved forest equals sklearn's `predict`; a `test`-profile fit
beats the interpolated input on held-out volumes (same grid and small grid); the model saves as
plain arrays (no pickle), reloads to identical predictions and refuses damaged arrays."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import RandomForestRegressor

from sr_lib import degrade as D
from sr_lib.methods import METHODS, FitContext, ModelError, Observation, TrainData, build
from sr_lib.methods.rfsr import ForestArrays, RFSRMethod, RFSROptions, shifted_stack

SHAPE = (26, 30, 5)  # odd sizes, slices along z


def smooth_volume(seed: int, shape=SHAPE) -> np.ndarray:
    """Blurred noise scaled to [0, 1] with a dark background below its 30th percentile (edges to learn)."""
    v = D.gaussian_blur(np.random.default_rng(seed).random(shape, dtype=np.float32), (1.5, 1.5), axes=(0, 1))
    v = (v - v.min()) / (v.max() - v.min())
    return np.where(v > np.quantile(v, 0.3), v, 0.0).astype(np.float32)


def triples(seeds, factors):
    """(lr, hr, None): in-plane Gaussian blur on the same grid, or bicubic downsampling by `factors`."""
    out = []
    for seed in seeds:
        hr = smooth_volume(seed)
        lr = D.gaussian_blur(hr, (1.0, 1.0), axes=(0, 1)) if factors == (1, 1, 1) else D.downsample(hr, factors)
        out.append((np.asarray(lr, np.float32), hr, None))
    return out


def fitted(factors=(1, 1, 1), seed=0, **options) -> RFSRMethod:
    method = build("rfsr", factors=factors, profile="test", **options)
    method.fit(TrainData(triples([1, 2, 3], factors), triples([4], factors)), FitContext(seed=seed, progress=False))
    return method


def interpolated(method: RFSRMethod, lr: np.ndarray) -> np.ndarray:
    return np.clip(method.interpolate(lr), 0.0, 1.0)


def mse(a, b) -> float:
    return float(np.mean((np.asarray(a, np.float64) - b) ** 2))


@pytest.fixture(scope="module")
def same_grid() -> RFSRMethod:
    return fitted()


def test_rfsr_is_registered_with_paper_values_at_full_and_small_test_values():
    assert METHODS["rfsr"] is RFSRMethod
    full = build("rfsr", factors=(1, 1, 1), profile="full").options
    assert (full.n_trees, full.max_depth, full.radius) == (200, 15, 2)
    test = build("rfsr", factors=(1, 1, 1), profile="test").options
    assert test.n_trees < 10 and test.samples <= 5000
    with pytest.raises(ValueError, match="radius"):
        RFSROptions(radius=0)
    with pytest.raises(ValueError, match="background"):
        RFSROptions(background=1.0)


def test_traversal_equals_sklearn_predict_including_ties_at_thresholds():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3000, 7)).astype(np.float32)
    y = np.sin(3 * x[:, 0]) + x[:, 1] * x[:, 2] + 0.1 * rng.normal(size=3000)
    forest = RandomForestRegressor(n_estimators=5, max_depth=8, max_features=0.6, random_state=0).fit(x, y)
    arrays = ForestArrays.from_sklearn(forest)
    probe = rng.normal(size=(4000, 7)).astype(np.float32)
    inner = arrays.children_left != -1  # features exactly at (float32 roundings of) the split thresholds
    at = np.stack([arrays.threshold[inner].astype(np.float32),
                   np.nextafter(arrays.threshold[inner], np.inf).astype(np.float32)], 1).ravel()
    probe[: at.size, :] = at[:, None]
    np.testing.assert_allclose(arrays.predict(probe), forest.predict(probe), rtol=0, atol=1e-9)
    np.testing.assert_allclose(arrays.predict(x), forest.predict(x), rtol=0, atol=1e-9)


def test_shifted_stack_is_neighbour_minus_centre_with_zero_padding_and_chunks_agree():
    u = np.random.default_rng(0).random((7, 9), dtype=np.float32)
    stack = shifted_stack(u, slice(None), radius=1, intensity=True).reshape(7, 9, 9)
    padded = np.pad(u, 1)
    for k, (dy, dx) in enumerate([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]):
        np.testing.assert_array_equal(stack[..., k], padded[1 + dy: 8 + dy, 1 + dx: 10 + dx] - u)
    np.testing.assert_array_equal(stack[..., -1], u)
    rows = np.concatenate([shifted_stack(u, slice(a, a + 3), radius=2, intensity=False) for a in range(0, 7, 3)])
    np.testing.assert_array_equal(rows, shifted_stack(u, slice(None), radius=2, intensity=False))


def test_fit_lowers_the_error_of_the_interpolated_input_on_held_out_volumes(same_grid):
    (lr, hr, _), = triples([9], (1, 1, 1))
    prediction = same_grid.predict(Observation(lr))
    assert prediction.shape == hr.shape and prediction.dtype == np.float32
    assert prediction.min() >= 0.0 and prediction.max() <= 1.0
    assert mse(prediction, hr) < 0.9 * mse(interpolated(same_grid, lr), hr)


def test_fit_reports_its_facts():
    method = build("rfsr", factors=(1, 1, 1), profile="test")
    facts = method.fit(TrainData(triples([1, 2], (1, 1, 1)), triples([4], (1, 1, 1))), FitContext(progress=False))
    assert facts["samples"] == method.options.samples
    assert facts["foreground_samples"] == round(method.options.samples * (1 - method.options.background))
    assert facts["val_rmse_rfsr"] < facts["val_rmse_interpolated"]


def test_same_seed_same_forest_and_another_seed_another(same_grid):
    (lr, _, _), = triples([9], (1, 1, 1))
    again = fitted(seed=0)
    np.testing.assert_array_equal(again.predict(Observation(lr)), same_grid.predict(Observation(lr)))
    assert not np.array_equal(fitted(seed=1).predict(Observation(lr)), same_grid.predict(Observation(lr)))


def test_growing_in_batches_gives_the_forest_of_one_fit():
    method = build("rfsr", factors=(1, 1, 1), profile="test", n_trees=5)
    data = TrainData(triples([1, 2], (1, 1, 1)), [])
    method.fit(data, FitContext(seed=7, progress=False))
    x, y, _ = method.sample(data.train, method.options.samples, np.random.default_rng([7, 0]))
    opts = method.options
    once = RandomForestRegressor(n_estimators=5, max_depth=opts.max_depth, max_features=opts.max_features,
                                 min_samples_leaf=opts.min_samples_leaf, random_state=7).fit(x, y)
    np.testing.assert_allclose(method.forest.predict(x), once.predict(x), rtol=0, atol=1e-9)


def test_save_load_round_trip_without_pickle(same_grid, tmp_path):
    same_grid.save(tmp_path)
    with np.load(tmp_path / RFSRMethod.ARRAYS, allow_pickle=False) as saved:
        assert set(saved.files) >= {"children_left", "children_right", "feature", "threshold", "value", "tree_offsets"}
        assert all(saved[k].dtype != object for k in saved.files)
    loaded = build("rfsr", factors=(1, 1, 1), profile="test")
    loaded.load(tmp_path)
    (lr, _, _), = triples([9], (1, 1, 1))
    np.testing.assert_array_equal(loaded.predict(Observation(lr)), same_grid.predict(Observation(lr)))


def corrupt(arrays: dict, how: str) -> dict:
    arrays = dict(arrays)
    if how == "missing":
        del arrays["threshold"]
    elif how == "shape":
        arrays["value"] = arrays["value"][:-1]
    elif how == "2d":
        arrays["feature"] = arrays["feature"][:, None]
    elif how == "child":
        left = arrays["children_left"].copy()
        left[0] = 10**6
        arrays["children_left"] = left
    elif how == "feature":
        feature = arrays["feature"].copy()
        feature[0] = 99
        arrays["feature"] = feature
    elif how == "nan":
        value = arrays["value"].copy()
        value[0] = np.nan
        arrays["value"] = value
    elif how == "offsets":
        arrays["tree_offsets"] = arrays["tree_offsets"][::-1]
    return arrays


@pytest.mark.parametrize("how", ["missing", "shape", "2d", "child", "feature", "nan", "offsets"])
def test_damaged_arrays_raise_a_model_error_naming_the_file(same_grid, tmp_path, how):
    path = tmp_path / RFSRMethod.ARRAYS
    with open(path, "wb") as handle:
        np.savez(handle, **corrupt(same_grid.state_arrays(), how))
    with pytest.raises(ModelError, match=f"^{path}: rfsr model arrays: ") as err:
        build("rfsr", factors=(1, 1, 1), profile="test").load(tmp_path)
    assert "\n" not in str(err.value)


def test_a_forest_for_other_features_or_a_missing_file_is_refused(same_grid, tmp_path):
    same_grid.save(tmp_path)
    with pytest.raises(ModelError, match=f"^{tmp_path / RFSRMethod.ARRAYS}: .*takes 25 features.*radius 1"):
        build("rfsr", factors=(1, 1, 1), profile="test", radius=1).load(tmp_path)
    with pytest.raises(ModelError, match=f"^{tmp_path / 'empty' / RFSRMethod.ARRAYS}: unreadable"):
        build("rfsr", factors=(1, 1, 1), profile="test").load(tmp_path / "empty")


def test_small_grid_task_upsamples_and_beats_bicubic():
    method = fitted(factors=(2, 2, 1))
    assert method.task.factors == (2, 2, 1) and method.task.axis == 2
    (lr, hr, _), = triples([9], (2, 2, 1))
    assert lr.shape == (13, 15, 5)
    prediction = method.predict(Observation(lr))
    assert prediction.shape == hr.shape == (26, 30, 5)
    assert mse(prediction, hr) < mse(interpolated(method, lr), hr)


def test_slices_along_another_axis_and_wide_slices_in_chunks(same_grid, monkeypatch):
    method = build("rfsr", factors=(1, 2, 2), profile="test")
    assert method.task.axis == 0
    method.forest = same_grid.forest
    lr = np.random.default_rng(0).random((3, 11, 9), dtype=np.float32)
    whole = method.predict(Observation(lr))
    assert whole.shape == (3, 22, 18)
    monkeypatch.setattr("sr_lib.methods.rfsr.CHUNK_PIXELS", 40)  # two rows per chunk
    np.testing.assert_array_equal(method.predict(Observation(lr)), whole)
    per_slice = [method.predict(Observation(lr[i: i + 1]))[0] for i in range(3)]
    np.testing.assert_array_equal(np.stack(per_slice), whole)
