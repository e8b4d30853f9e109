"""Runs on the tiny `test` profile: folder contents, config-hash reuse, `force`, failure
recording, the geometry of saved predictions, and rebuilding a trained method."""

from __future__ import annotations

import json
import types

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

import sr_lib.runs as runs_module
from sr_lib.io import denormalise, resampled_affine, voxel_sizes
from sr_lib.methods import METHODS, MethodSpec
from sr_lib.methods.base import Method
from sr_lib.report import write_tables
from sr_lib.runs import RunConfig, find_runs, load_run, load_trained_method, prepare_data, run_experiment

METRIC_COLUMNS = ["psnr", "ssim", "mse", "psnr_fg", "ssim_fg", "mse_fg"]


def config(method: str, **changes) -> RunConfig:
    return RunConfig(method=method, **{"scenario": "SR-B", "contrast": "T2", "scale": 2, "profile": "test", **changes})


def data_of(cfg: RunConfig):
    return prepare_data(cfg.dataset, cfg.root, cfg.contrast, cfg.scenario, cfg.scale, cfg.pairing, cfg.profile, cfg.seed)


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
    """A registered method whose prediction fails with a multi-line message."""

    name = "broken"

    def predict_volume(self, lr):
        raise RuntimeError("predict exploded\nsecond line of the message")


@pytest.mark.parametrize("name", ["bicubic", "srcnn"])
def test_run_folder_has_config_status_metrics_and_predictions(runs, name):
    result = getattr(runs, name)
    folder = result.folder
    assert folder == runs.root / result.config.folder
    assert result.status == "done" and result.error is None
    assert json.loads((folder / "config.json").read_text()) == json.loads(json.dumps(result.config.to_dict()))
    status = json.loads((folder / "status.json").read_text())
    assert status["status"] == "done"
    assert status["task"] == {"factors": [2, 2, 1], "spatial_dims": 2, "axis": 2}
    subjects = status["test_subjects"]
    assert len(subjects) == 2 and not set(subjects) & set(status["train_subjects"])
    metrics = pd.read_csv(folder / "metrics.csv")
    assert set(METRIC_COLUMNS + ["subject"]) <= set(metrics.columns)
    assert sorted(metrics["subject"]) == sorted(subjects)
    assert metrics[METRIC_COLUMNS].notna().all().all()
    assert ((metrics["ssim"] > 0) & (metrics["ssim"] <= 1)).all() and (metrics["psnr"] > 15).all()
    pd.testing.assert_frame_equal(metrics, result.metrics)
    assert sorted(p.name for p in (folder / "predictions").glob("*.nii.gz")) == sorted(f"{s}.nii.gz" for s in subjects)
    if name == "srcnn":
        state = torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=True)
        assert state["method"] == "srcnn" and state["step"] == 12
        assert state["config"] == result.config.to_dict()
        assert state["nets"]
        log = pd.read_csv(folder / "log.csv")
        assert list(log["step"]) == list(range(1, 13)) and log["loss"].notna().all()
        assert log["val_psnr"].notna().sum() == 2  # every 6 steps on the test profile
    else:
        assert not (folder / "checkpoint.pt").exists() and not (folder / "log.csv").exists()


@pytest.mark.parametrize("name", ["bicubic", "srcnn"])
def test_metrics_agree_with_the_saved_predictions(runs, name):
    result = getattr(runs, name)
    for hr, _, _ in data_of(result.config).test:
        saved = nib.load(result.folder / "predictions" / f"{hr.subject}.nii.gz").get_fdata(dtype=np.float32)
        normalised = (saved.astype(np.float64) - hr.intensity.offset) / hr.intensity.scale
        mse = float(np.mean((normalised - hr.data) ** 2))
        row = result.metrics.set_index("subject").loc[hr.subject]
        assert row["mse"] == pytest.approx(mse, rel=1e-4)
        assert row["psnr"] == pytest.approx(10 * np.log10(1.0 / mse), abs=1e-3)


def test_saved_prediction_has_the_hr_geometry(runs):
    # SR-B is a small-grid scenario with factors (2, 2, 1): LR voxels are twice as large in-plane
    result = runs.srcnn
    for hr, lr, _ in data_of(result.config).test:
        image = nib.load(result.folder / "predictions" / f"{hr.subject}.nii.gz")
        assert image.shape == hr.shape == tuple(n * f for n, f in zip(lr.shape, (2, 2, 1)))
        np.testing.assert_allclose(voxel_sizes(image.affine), voxel_sizes(hr.affine), atol=1e-5)
        np.testing.assert_allclose(voxel_sizes(image.affine), voxel_sizes(lr.affine) / [2, 2, 1], atol=1e-5)
        np.testing.assert_allclose(image.affine, hr.affine, atol=1e-5)
        np.testing.assert_allclose(image.header.get_zooms(), voxel_sizes(hr.affine), atol=1e-5)
        np.testing.assert_allclose(resampled_affine(lr.affine, (0.5, 0.5, 1)), hr.affine, atol=1e-9)


def test_rerun_of_a_finished_config_is_reused(runs, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a finished run was executed again")

    stamps = {p: p.stat().st_mtime_ns for r in (runs.bicubic, runs.srcnn)
              for p in (r.folder / "status.json", r.folder / "metrics.csv")}
    stamps[runs.srcnn.folder / "checkpoint.pt"] = (runs.srcnn.folder / "checkpoint.pt").stat().st_mtime_ns
    monkeypatch.setattr(runs_module, "_execute", fail)
    for before in (runs.bicubic, runs.srcnn):
        again = run_experiment(config(before.config.method), runs.root, progress=False)
        assert again.status == "done" and again.folder == before.folder
        pd.testing.assert_frame_equal(again.metrics, before.metrics)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_force_executes_again_and_clears_the_folder(cache, tmp_path, monkeypatch):
    calls = []
    real = runs_module._execute

    def spy(*args, **kwargs):
        calls.append(args[0].method)
        return real(*args, **kwargs)

    monkeypatch.setattr(runs_module, "_execute", spy)
    cfg = config("bicubic")
    first = run_experiment(cfg, tmp_path, progress=False)
    (first.folder / "stale.txt").write_text("left from before")
    run_experiment(cfg, tmp_path, progress=False)
    assert calls == ["bicubic"]
    forced = run_experiment(cfg, tmp_path, force=True, progress=False)
    assert calls == ["bicubic", "bicubic"]
    assert forced.status == "done" and forced.folder == first.folder
    assert not (forced.folder / "stale.txt").exists()
    pd.testing.assert_frame_equal(forced.metrics.drop(columns="seconds"), first.metrics.drop(columns="seconds"))


def test_the_config_hash_names_the_folder():
    base = config("srcnn")
    assert config("srcnn").key == base.key and config("srcnn").folder == base.folder
    for other in (config("srcnn", seed=1), config("srcnn", options={"residual": False}), config("srcnn", schedule="cosine"),
                  config("bicubic"), config("srcnn", contrast="T1")):
        assert other.key != base.key and other.folder != base.folder
    assert config("srcnn", seed=1).folder.startswith("SR-B_T2_x2_paired/srcnn-test-seed1-")


def test_bad_config_values_raise():
    with pytest.raises(KeyError, match="srcnn"):
        config("no-such-method")
    with pytest.raises(KeyError, match="profile"):
        config("srcnn", profile="huge")
    with pytest.raises(ValueError, match="pairing"):
        config("srcnn", pairing="sideways")
    with pytest.raises(ValueError, match="scale"):
        config("srcnn", scale=3)


def test_failed_method_is_recorded_and_the_report_still_written(runs, tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS, "broken", MethodSpec(Broken, "always fails", (2,), False))
    failed = run_experiment(config("broken"), tmp_path / "runs", progress=False)
    assert failed.status == "failed"
    assert failed.error == "RuntimeError: predict exploded"
    assert "\n" not in failed.error and "Traceback" in failed.info["traceback"]
    status = json.loads((failed.folder / "status.json").read_text())
    assert status["status"] == "failed" and status["error"] == failed.error
    assert not (failed.folder / "metrics.csv").exists() and failed.metrics.empty
    assert load_run(failed.folder).status == "failed"

    # a failed run is not 'finished': running it again executes it again
    calls = []
    monkeypatch.setattr(runs_module, "_execute", lambda *a, **k: calls.append(1) or {})
    assert run_experiment(config("broken"), tmp_path / "runs", progress=False).status == "done" and calls == [1]
    monkeypatch.undo()
    monkeypatch.setitem(METHODS, "broken", MethodSpec(Broken, "always fails", (2,), False))

    tables = tmp_path / "tables"
    written = write_tables([runs.bicubic, runs.srcnn, failed], tables)
    assert {p.name for p in written} >= {"summary.csv", "SR-B_x2_paired_test.md", "SR-B_x2_paired_test.tex"}
    summary = pd.read_csv(tables / "summary.csv").set_index("method")
    assert summary.loc["broken", "status"] == "failed" and summary.loc["broken", "n_subjects"] == 0
    assert np.isnan(summary.loc["broken", "psnr_mean"])
    for name in ("bicubic", "srcnn"):
        assert summary.loc[name, "status"] == "done" and summary.loc[name, "n_subjects"] == 2
        assert summary.loc[name, "psnr_mean"] == pytest.approx(getattr(runs, name).metrics["psnr"].mean(), rel=1e-5)
    md = (tables / "SR-B_x2_paired_test.md").read_text()
    broken_row = next(line for line in md.splitlines() if line.startswith("| broken"))
    assert "failed" in broken_row and "±" not in broken_row
    for name in ("bicubic", "srcnn"):
        row = next(line for line in md.splitlines() if line.startswith(f"| {name}"))
        assert "±" in row and "failed" not in row
    assert "broken (T2) failed: RuntimeError: predict exploded" in md
    assert "broken & failed & failed" in (tables / "SR-B_x2_paired_test.tex").read_text()


def test_find_runs_lists_every_run_folder(runs):
    found = find_runs(runs.root)
    assert [r.folder for r in found] == sorted([runs.bicubic.folder, runs.srcnn.folder])
    assert all(r.status == "done" for r in found)
    assert sorted((r.config.method, r.config.key) for r in found) == [
        ("bicubic", runs.bicubic.config.key), ("srcnn", runs.srcnn.config.key)]


@pytest.mark.parametrize("name", ["bicubic", "srcnn"])
def test_load_trained_method_predicts_what_the_run_saved(runs, name):
    result = getattr(runs, name)
    method, cfg = load_trained_method(result.folder)
    assert cfg == result.config
    assert method.task.factors == (2, 2, 1) and method.task.spatial_dims == 2
    for hr, lr, _ in data_of(cfg).test:
        pred = denormalise(hr.replace(data=method.predict_volume(lr.data)), hr.intensity).data
        saved = nib.load(result.folder / "predictions" / f"{hr.subject}.nii.gz").get_fdata(dtype=np.float32)
        # on CUDA the run predicted under bf16 autocast, load_trained_method predicts in fp32
        atol = (2e-2 if torch.cuda.is_available() and method.learned else 1e-5) * hr.intensity.scale
        np.testing.assert_allclose(pred, saved, rtol=1e-5, atol=atol)


def test_load_trained_method_needs_a_run_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        load_trained_method(tmp_path)


def test_example_case_maps_the_prediction_back_to_hr_scaling(runs):
    example = runs_module.example_case(runs.srcnn, 1)
    hr, lr, _ = data_of(runs.srcnn.config).test[1]
    assert example["subject"] == hr.subject
    np.testing.assert_array_equal(example["hr"], hr.data)
    np.testing.assert_array_equal(example["lr"], lr.data)
    assert example["prediction"].shape == hr.shape
    assert -1e-4 < example["prediction"].min() and example["prediction"].max() < 1 + 1e-4
    mse = float(np.mean((example["prediction"].astype(np.float64) - hr.data) ** 2))
    assert example["scores"]["psnr"] == pytest.approx(10 * np.log10(1 / mse), abs=1e-3)


def test_supervised_methods_refuse_unpaired_data(tmp_path, monkeypatch):
    monkeypatch.setenv("SR_LIB_CACHE", str(tmp_path / "cache"))
    result = run_experiment(RunConfig(method="srcnn", scenario="SR-B", pairing="unpaired", profile="test"), tmp_path, progress=False)
    assert result.status == "failed"
    assert result.error == "ValueError: srcnn is supervised: it trains on paired or misaligned data, not unpaired"
    misaligned = run_experiment(RunConfig(method="srcnn", scenario="SR-B", pairing="misaligned", profile="test"), tmp_path, progress=False)
    assert misaligned.status == "done" and len(misaligned.metrics) == 2


def test_a_changed_method_default_invalidates_a_finished_run(tmp_path, monkeypatch):
    monkeypatch.setenv("SR_LIB_CACHE", str(tmp_path / "cache"))
    config = RunConfig(method="srcnn", scenario="SR-B", profile="test")
    first = run_experiment(config, tmp_path, progress=False)
    assert runs_module.is_finished(first.folder, config)
    status = json.loads((first.folder / "status.json").read_text())
    status["options"]["residual"] = not status["options"]["residual"]  # as if the default had changed since
    (first.folder / "status.json").write_text(json.dumps(status))
    assert not runs_module.is_finished(first.folder, config)
    rerun = run_experiment(config, tmp_path, progress=False)  # stale: retrained from scratch, not resumed
    assert rerun.info["resumed_from"] == 0 and runs_module.is_finished(rerun.folder, config)


def test_a_run_without_its_predictions_is_not_reused(tmp_path, monkeypatch):
    """A fresh clone has the committed config/status/metrics but not the git-ignored predictions."""
    monkeypatch.setenv("SR_LIB_CACHE", str(tmp_path / "cache"))
    config = RunConfig(method="bicubic", scenario="SR-B", profile="test")
    first = run_experiment(config, tmp_path, progress=False)
    next((first.folder / "predictions").glob("*.nii.gz")).unlink()
    assert not runs_module.is_finished(first.folder, config)
    again = run_experiment(config, tmp_path, progress=False)
    assert len(list((again.folder / "predictions").glob("*.nii.gz"))) == len(again.metrics) == 2
