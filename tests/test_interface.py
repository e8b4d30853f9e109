"""The method interface carries methods unlike the nets: a toy non-torch method whose state is
arrays (saved without pickle) and a toy method that optimises at test time, both run through
`run_experiment`, reloaded with `load_trained_method` and applied with `apply_run`."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sr_lib.apply import apply_run
from sr_lib.methods import METHODS, ArrayMethod, Method, ModelError, Observation, Support
from sr_lib.methods.base import upsample_input
from sr_lib.prepare import prepare_data
from sr_lib.runs import RunConfig, load_trained_method, run_experiment


def upsample(lr: np.ndarray, factors) -> np.ndarray:
    return upsample_input(torch.from_numpy(np.asarray(lr, dtype=np.float32))[None, None], factors)[0, 0].numpy()


class GainOffset(ArrayMethod):
    """Toy non-torch method: bicubic, then the least-squares gain and offset to the HR."""

    name = "toy-gain"
    support = Support(grids=("small",), dims=(3,))

    def fit(self, data, context):
        up = np.concatenate([upsample(lr, self.task.factors).ravel() for lr, _, _ in data.train])
        hr = np.concatenate([np.asarray(hr, dtype=np.float32).ravel() for _, hr, _ in data.train])
        self.coef = np.linalg.lstsq(np.stack([up, np.ones_like(up)], 1), hr, rcond=None)[0].astype(np.float32)
        return {"n_voxels": int(up.size)}

    def predict(self, observation: Observation) -> np.ndarray:
        return (self.coef[0] * upsample(observation.lr, self.task.factors) + self.coef[1]).astype(np.float32)

    def state_arrays(self):
        return {"coef": self.coef}

    def load_arrays(self, arrays):
        self.coef = arrays["coef"]


class DataConsistency(Method):
    """Toy test-time optimisation: from the bicubic estimate, Adam steps on the estimate itself
    so that its area-downsampled version matches the LR (gradients inside `predict`, as ZSSR or
    DCGAN latent-space inpainting need)."""

    name = "toy-tto"
    support = Support(grids=("small",), dims=(3,))
    losses: list[tuple[float, float]] = []  # (first, last) data-consistency loss per call

    def predict(self, observation: Observation) -> np.ndarray:
        factors = tuple(int(f) for f in self.task.factors)
        lr = torch.from_numpy(np.asarray(observation.lr, dtype=np.float32))[None, None]
        estimate = upsample_input(lr, factors).clone().requires_grad_(True)
        optimiser = torch.optim.Adam([estimate], lr=1e-2)
        history = []
        for _ in range(20):
            loss = F.mse_loss(F.avg_pool3d(estimate, factors, factors), lr)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            history.append(loss.item())
        DataConsistency.losses.append((history[0], history[-1]))
        return estimate.detach()[0, 0].clamp(0, 1).numpy()


@pytest.fixture
def toys(monkeypatch, tmp_path):
    monkeypatch.setenv("SR_LIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(METHODS, GainOffset.name, GainOffset)
    monkeypatch.setitem(METHODS, DataConsistency.name, DataConsistency)
    DataConsistency.losses = []
    return tmp_path


def config(method: str) -> RunConfig:
    return RunConfig(method=method, scenario="SR-B", contrast="T2", scale=2, profile="test")


def scan(path, shape=(10, 12, 6)):
    data = np.random.default_rng(0).random(shape, dtype=np.float32) * 100
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), path)
    return path


def test_a_non_torch_method_fits_saves_arrays_without_pickle_and_reloads(toys):
    result = run_experiment(config("toy-gain"), toys / "runs", progress=False)
    assert result.status == "done", result.error
    arrays = result.folder / "model" / GainOffset.ARRAYS
    with np.load(arrays, allow_pickle=False) as saved:
        assert saved.files == ["coef"] and saved["coef"].shape == (2,)
    method, _ = load_trained_method(result.folder)
    data = prepare_data(result.config)
    lr, hr, _ = data.train.train[0]
    fitted = method.predict(Observation(np.asarray(lr)))
    plain = upsample(lr, method.task.factors)
    assert np.mean((fitted - hr) ** 2) <= np.mean((plain - hr) ** 2)  # least squares includes gain 1, offset 0
    case = data.test[0]
    saved_prediction = nib.load(result.folder / "predictions" / f"{case.hr.subject}.nii.gz")
    assert saved_prediction.shape == case.hr.data.shape


def test_model_arrays_that_would_need_pickle_are_refused(toys):
    result = run_experiment(config("toy-gain"), toys / "runs", progress=False)
    arrays = result.folder / "model" / GainOffset.ARRAYS
    with open(arrays, "wb") as handle:
        np.savez(handle, coef=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(ModelError, match=f"{arrays}: unreadable model arrays"):
        load_trained_method(result.folder)


def test_a_method_may_optimise_at_test_time_in_evaluation_and_in_apply(toys):
    result = run_experiment(config("toy-tto"), toys / "runs", progress=False)
    assert result.status == "done", result.error
    n_test = len(result.scores("brain"))
    assert len(DataConsistency.losses) == n_test
    assert all(last < first for first, last in DataConsistency.losses)  # the optimisation ran and helped
    (outcome,) = apply_run(result.folder, [scan(toys / "scan.nii.gz")], toys / "out", progress=False)
    assert outcome.ok, outcome.error
    assert nib.load(outcome.output).shape == (20, 24, 6)
    assert len(DataConsistency.losses) > n_test
