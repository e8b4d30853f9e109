"""Runs on the tiny `test` profile: folder contents, identity-hash reuse, `force`, failure
and n/a recording, the lock, the geometry of saved predictions, and rebuilding a trained
method (only from a finished run, only with a model trained for its config)."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import types

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

import sr_lib.runs as runs_module
from sr_lib.io import denormalise, resampled_affine, voxel_sizes
from sr_lib.methods import METHODS, Method, ModelError, Observation
from sr_lib.prepare import prepare_data
from sr_lib.runs import RunConfig, find_runs, load_run, load_trained_method, run_experiment, run_folder
from sr_lib.storage import RunFolderError, RunLocked, run_lock

METRIC_COLUMNS = ["psnr", "ssim", "mse", "psnr_slices", "ssim_slices"]


def config(method: str, **changes) -> RunConfig:
    return RunConfig(method=method, **{"scenario": "SR-B", "contrast": "T2", "scale": 2, "profile": "test", **changes})


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SR_LIB_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def runs(cache, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return types.SimpleNamespace(
        root=root,
        bicubic=run_experiment(config("bicubic"), root, progress=False),
        srcnn=run_experiment(config("srcnn"), root, progress=False),
    )


class Broken(Method):
    """A method whose prediction fails with a multi-line message."""

    name = "broken"

    def predict(self, observation: Observation) -> np.ndarray:
        raise RuntimeError("predict exploded\nsecond line of the message")


@pytest.mark.parametrize("name", ["bicubic", "srcnn"])
def test_run_folder_has_config_status_metrics_model_and_predictions(runs, name):
    result = getattr(runs, name)
    folder = result.folder
    assert folder == run_folder(result.config, runs.root)
    assert result.status == "done" and result.error is None
    assert json.loads((folder / "config.json").read_text()) == json.loads(json.dumps(result.config.to_dict()))
    status = json.loads((folder / "status.json").read_text())
    assert status["task"] == {"factors": [2, 2, 1], "spatial_dims": 2, "axis": 2}
    assert status["identity"]["options"] == result.config.resolve().options.to_dict()
    subjects = status["test_subjects"]
    assert len(subjects) == 2 and not set(subjects) & set(status["train_subjects"])
    metrics = pd.read_csv(folder / "metrics.csv")
    assert set(METRIC_COLUMNS + ["subject", "region"]) <= set(metrics.columns)
    assert sorted(metrics["region"].unique()) == ["brain", "volume"] and len(metrics) == 4
    assert metrics[METRIC_COLUMNS].notna().all().all()
    assert ((metrics["ssim"] > 0) & (metrics["ssim"] <= 1)).all() and (metrics["psnr"] > 10).all()
    assert sorted(p.name for p in (folder / "predictions").glob("*.nii.gz")) == sorted(f"{s}.nii.gz" for s in subjects)
    assert (folder / "model" / "model.json").exists() and not (folder / "checkpoint.pt").exists()
    if name == "srcnn":
        log = pd.read_csv(folder / "log.csv")
        assert list(log["step"]) == list(range(1, 13)) and log["loss"].notna().all()
        assert log["val_psnr"].notna().sum() == 2  # every 6 steps on the test profile
        assert status["steps_done"] == 12 and not status["stopped_early"]


def test_brain_scores_differ_from_whole_volume_scores(runs):
    """The headline region is the brain: the background inflates whole-volume PSNR."""
    brain, volume = runs.bicubic.scores("brain"), runs.bicubic.scores("volume")
    assert (volume["psnr"].to_numpy() > brain["psnr"].to_numpy()).all()


@pytest.mark.parametrize("name", ["bicubic", "srcnn"])
def test_metrics_agree_with_the_saved_predictions(runs, name):
    result = getattr(runs, name)
    for case in prepare_data(result.config).test:
        hr = case.hr
        saved = nib.load(result.folder / "predictions" / f"{hr.subject}.nii.gz").get_fdata(dtype=np.float32)
        normalised = (saved.astype(np.float64) - hr.intensity.offset) / hr.intensity.scale
        mse = float(np.mean((normalised - hr.data) ** 2))
        row = result.scores("volume").set_index("subject").loc[hr.subject]
        assert row["mse"] == pytest.approx(mse, rel=1e-4)
        assert row["psnr"] == pytest.approx(10 * np.log10(1.0 / mse), abs=1e-3)


def test_saved_prediction_has_the_hr_geometry(runs):
    result = runs.srcnn
    for case in prepare_data(result.config).test:
        hr, lr = case.hr, case.lr
        image = nib.load(result.folder / "predictions" / f"{hr.subject}.nii.gz")
        assert image.shape == hr.shape == tuple(n * f for n, f in zip(lr.shape, (2, 2, 1)))
        np.testing.assert_allclose(image.affine, hr.affine, atol=1e-5)
        np.testing.assert_allclose(image.header.get_zooms(), voxel_sizes(hr.affine), atol=1e-5)
        np.testing.assert_allclose(resampled_affine(lr.affine, (0.5, 0.5, 1)), hr.affine, atol=1e-9)


def test_rerun_of_a_finished_config_is_reused(runs, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a finished run was executed again")

    stamps = {p: p.stat().st_mtime_ns for r in (runs.bicubic, runs.srcnn) for p in (r.folder / "status.json", r.folder / "metrics.csv")}
    monkeypatch.setattr(runs_module, "_execute", fail)
    for before in (runs.bicubic, runs.srcnn):
        again = run_experiment(config(before.config.method), runs.root, progress=False)
        assert again.status == "done" and again.folder == before.folder
        pd.testing.assert_frame_equal(again.metrics, before.metrics)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_force_executes_again_and_clears_the_folder(cache, tmp_path):
    cfg = config("bicubic")
    first = run_experiment(cfg, tmp_path, progress=False)
    (first.folder / "stale.txt").write_text("left from before")
    forced = run_experiment(cfg, tmp_path, force=True, progress=False)
    assert forced.status == "done" and forced.folder == first.folder
    assert not (forced.folder / "stale.txt").exists()
    pd.testing.assert_frame_equal(forced.metrics.drop(columns="seconds"), first.metrics.drop(columns="seconds"))


def test_the_identity_names_the_folder(cache, tmp_path):
    base = run_folder(config("srcnn"), tmp_path)
    assert run_folder(config("srcnn"), tmp_path) == base
    for other in (config("srcnn", seed=1), config("srcnn", options={"residual": False}),
                  config("srcnn", options={"schedule": "cosine"}), config("srcnn", dims=3), config("bicubic"),
                  config("srcnn", contrast="T1"), config("srcnn", data_seed=1)):
        assert run_folder(other, tmp_path) != base
    # an option given explicitly at its resolved value is the same run
    assert run_folder(config("srcnn", options={"residual": True, "features": 64}), tmp_path) == base
    assert run_folder(config("srcnn", seed=1), tmp_path).parent.name == "SR-B_T2_x2_paired"


def test_bad_config_values_raise():
    with pytest.raises(KeyError, match="srcnn"):
        config("no-such-method")
    with pytest.raises(KeyError, match="profile"):
        config("srcnn", profile="huge")
    with pytest.raises(ValueError, match="pairing"):
        config("srcnn", pairing="sideways")
    with pytest.raises(ValueError, match="scale"):
        config("srcnn", scale=3)
    with pytest.raises(ValueError, match="plain name"):
        config("srcnn", contrast="../T2")
    with pytest.raises(TypeError, match="unknown option.*residul"):
        config("srcnn", options={"residul": False}).resolve().options
    with pytest.raises(ValueError, match="runs in 2D"):
        config("srresnet", dims=3).resolve().task


def test_failed_method_is_recorded(runs, tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS, "broken", Broken)
    failed = run_experiment(config("broken"), tmp_path / "runs", progress=False)
    assert failed.status == "failed"
    assert failed.error == "RuntimeError: predict exploded"
    assert "Traceback" in failed.info["traceback"]
    assert not (failed.folder / "metrics.csv").exists() and failed.metrics.empty
    calls = []  # a failed run is not 'finished': running it again executes it again
    monkeypatch.setattr(runs_module, "_execute", lambda *a, **k: calls.append(1) or {})
    run_experiment(config("broken"), tmp_path / "runs", progress=False)
    assert calls == [1]


def test_an_unsupported_combination_is_recorded_as_not_applicable(cache, tmp_path):
    result = run_experiment(config("bicubic", scenario="kspace-2x"), tmp_path, progress=False)
    assert result.status == "n/a" and "same-grid" in result.error
    unpaired = run_experiment(config("srcnn", pairing="unpaired"), tmp_path, progress=False)
    assert unpaired.status == "n/a" and "paired or misaligned" in unpaired.error


def test_find_runs_lists_every_run_folder(runs):
    found = find_runs(runs.root)
    assert [r.folder for r in found] == sorted([runs.bicubic.folder, runs.srcnn.folder])


@pytest.mark.parametrize("name", ["bicubic", "srcnn"])
def test_load_trained_method_predicts_what_the_run_saved(runs, name):
    result = getattr(runs, name)
    method, cfg = load_trained_method(result.folder)
    assert cfg == result.config and method.task.factors == (2, 2, 1)
    for case in prepare_data(cfg).test:
        hr = case.hr
        pred = denormalise(hr.replace(data=method.predict_volume(case.lr.data)), hr.intensity).data
        saved = nib.load(result.folder / "predictions" / f"{hr.subject}.nii.gz").get_fdata(dtype=np.float32)
        atol = (2e-2 if torch.cuda.is_available() and method.learned else 1e-5) * hr.intensity.scale
        np.testing.assert_allclose(pred, saved, rtol=1e-5, atol=atol)


def test_only_a_finished_run_with_its_own_model_is_applied(runs, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        load_trained_method(tmp_path)
    unfinished = tmp_path / "unfinished"
    shutil.copytree(runs.srcnn.folder, unfinished)
    (unfinished / "status.json").unlink()
    with pytest.raises(ModelError, match="did not finish"):
        load_trained_method(unfinished)
    failed = tmp_path / "failed"
    shutil.copytree(runs.srcnn.folder, failed)
    status = json.loads((failed / "status.json").read_text())
    (failed / "status.json").write_text(json.dumps({**status, "status": "failed", "error": "x"}))
    with pytest.raises(ModelError, match="is failed"):
        load_trained_method(failed)
    # a model copied in from another run's folder (another scenario) is refused
    other = run_experiment(config("srcnn", scenario="kspace-2x"), tmp_path / "other", progress=False)
    swapped = tmp_path / "swapped"
    shutil.copytree(runs.srcnn.folder, swapped)
    shutil.rmtree(swapped / "model")
    shutil.copytree(other.folder / "model", swapped / "model")
    with pytest.raises(ModelError, match="another configuration"):
        load_trained_method(swapped)
    # NaN weights are refused, not turned into an all-NaN output
    nan = tmp_path / "nan"
    shutil.copytree(runs.srcnn.folder, nan)
    state = torch.load(nan / "model" / "weights.pt", weights_only=True)
    next(iter(state["weights"]["generator"].values())).fill_(float("nan"))
    torch.save(state, nan / "model" / "weights.pt")
    with pytest.raises(ModelError, match="NaN"):
        load_trained_method(nan)


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2]", b"\xff\xfe"])
def test_a_damaged_status_names_the_file_and_the_run_is_redone(runs, tmp_path, content):
    folder = tmp_path / "damaged"
    shutil.copytree(runs.bicubic.folder, folder)
    path = folder / "status.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(RunFolderError, match="status.json"):
        load_run(folder)
    # `train` is not stuck: the damaged run is redone with a warning
    root = tmp_path / "root"
    target = run_folder(config("bicubic"), root)
    shutil.copytree(folder, target)
    with pytest.warns(UserWarning, match="status.json"):
        again = run_experiment(config("bicubic"), root, progress=False)
    assert again.status == "done"


def _hold_lock(folder, ready, release):
    with run_lock(folder):
        ready.set()
        release.wait(30)


def test_a_second_process_cannot_train_into_a_locked_run(tmp_path):
    folder = tmp_path / "scenario" / "run"
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(folder, ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(RunLocked, match="another process is training"):
            with run_lock(folder):
                pass
    finally:
        release.set()
        holder.join(30)
    with run_lock(folder):  # free again once the holder is gone
        pass


def test_a_changed_folder_dataset_is_not_reused(tmp_path, monkeypatch):
    """Run caches are keyed by the data's content (sizes, mtimes), not only its path."""
    from sr_lib.data import load_dataset

    monkeypatch.setenv("SR_LIB_CACHE", str(tmp_path / "cache"))
    phantom = load_dataset("phantom", profile="test")
    root = tmp_path / "data"
    root.mkdir()
    for subject in phantom.subjects():
        shutil.copy(phantom.path(subject, "T2"), root / f"{subject}_T2.nii.gz")
    cfg = config("bicubic", dataset="folder", root=str(root))
    first = run_experiment(cfg, tmp_path / "runs", progress=False)
    assert first.status == "done", first.error
    victim = sorted(root.iterdir())[0]
    image = nib.load(victim)
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj) * 0.5, image.affine), victim)
    assert run_folder(cfg, tmp_path / "runs") != first.folder


def test_training_on_mixed_voxel_sizes_warns_naming_the_odd_file(tmp_path, monkeypatch):
    """Subjects on another voxel size train as if alike; preparing the data says which file."""
    from sr_lib.data import load_dataset

    monkeypatch.setenv("SR_LIB_CACHE", str(tmp_path / "cache"))
    phantom = load_dataset("phantom", profile="test")
    root = tmp_path / "data"
    root.mkdir()
    for subject in phantom.subjects():
        shutil.copy(phantom.path(subject, "T2"), root / f"{subject}_T2.nii.gz")
    odd = sorted(root.iterdir())[-1]
    image = nib.load(odd)
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), image.affine @ np.diag([1.0, 1.0, 1.5, 1.0])), odd)
    with pytest.warns(UserWarning, match=rf"{odd.name}: voxel size .* differs from the other T2 subjects") as caught:
        prepare_data(config("bicubic", dataset="folder", root=str(root)), use_disk=False)
    assert sum("differs from the other" in str(w.message) for w in caught) == 1
