"""Explorers' building blocks: per-slice scores with known values, strip plots, overlaid curves."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from sr_lib.explore import per_slice_scores, plot_per_slice, plot_subject_strips, plot_training_curves  # noqa: E402


@pytest.fixture
def head():
    x, y, z = np.meshgrid(np.linspace(-1, 1, 32), np.linspace(-1, 1, 28), np.linspace(-1, 1, 12), indexing="ij")
    return (0.2 + 0.6 * (x**2 + y**2 < 0.7)).astype(np.float32) * (x**2 + y**2 < 0.9)


def test_per_slice_scores_have_known_values(head):
    offset = head + 0.1  # 0.1 too bright everywhere: 20 dB on every slice's head
    lr = head[::2, ::2, ::2]
    scores = per_slice_scores({"LR": lr, "offset": offset, "same": head.copy(), "HR": head}, axis=2)
    assert set(scores["name"]) == {"offset", "same"}  # the reference and the other grid are left out
    assert list(scores.loc[scores["name"] == "offset", "slice"]) == list(range(12))
    np.testing.assert_allclose(scores.loc[scores["name"] == "offset", "psnr"], 20.0, atol=1e-4)
    assert np.isinf(scores.loc[scores["name"] == "same", "psnr"]).all()
    np.testing.assert_allclose(scores.loc[scores["name"] == "same", "ssim"], 1.0)
    # slices without head are not scored
    empty_top = head.copy()
    empty_top[:, :, -3:] = 0
    fewer = per_slice_scores({"a": empty_top + 0.01, "HR": empty_top})
    assert fewer["slice"].max() == 8
    fig = plot_per_slice(scores[scores["name"] == "offset"])
    (line,) = fig.axes[0].get_lines()
    np.testing.assert_allclose(line.get_ydata(), 20.0, atol=1e-4)
    with pytest.raises(ValueError, match="'HR' is not one of"):
        per_slice_scores({"a": head})


def test_strip_plot_orders_methods_and_draws_every_score():
    rows = [{"method": m, "subject": s, "seed": seed, "region": "brain", "status": "done", "psnr": base + i + 0.1 * seed}
            for m, base in (("good", 30.0), ("bad", 25.0)) for i, s in enumerate(("sub-1", "sub-2", "sub-3"))
            for seed in (0, 1)]
    rows.append({"method": "broken", "subject": "sub-1", "seed": 0, "region": "brain", "status": "failed", "psnr": np.nan})
    fig = plot_subject_strips(pd.DataFrame(rows))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["bad", "good"]  # best on the right; failed left out
    from matplotlib.collections import PathCollection

    points = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections if isinstance(c, PathCollection)])
    assert len(points) == 12 and points.max() == pytest.approx(32.1)


def test_training_curves_overlay_runs_and_name_those_without_the_column():
    def run(method, seed, values):
        log = pd.DataFrame({"step": [100, 200, 300], "val_psnr": values}) if values else pd.DataFrame()
        return SimpleNamespace(config=SimpleNamespace(method=method, seed=seed), log=log)

    fig = plot_training_curves([run("srcnn", 0, [25.0, 26.0, 27.0]), run("srcnn", 1, [24.0, 26.5, 27.5]),
                                run("bicubic", 0, None)], title="t")
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["srcnn seed 0", "srcnn seed 1"]
    assert ax.get_lines()[1].get_linestyle() == "--"
    assert "no val_psnr: bicubic" in ax.get_title()


def test_run_explorer_loads_the_chosen_runs_and_says_when_volumes_are_missing(tmp_path):
    from sr_lib.explore import RunExplorer, case_volumes
    from sr_lib.runs import RunConfig, run_experiment

    runs = [run_experiment(RunConfig(method=m, scenario="SR-B", profile="test", seed=0), tmp_path, progress=False)
            for m in ("nearest", "bicubic")]
    explorer = RunExplorer({"mine": runs, "empty": []})
    assert list(explorer.study.options) == ["mine"]  # a study without finished runs is not offered
    assert explorer.setting.value == ("SR-B", "T2", 2, "paired")
    assert explorer.viewer.volume_names == ["LR", "bicubic", "nearest", "HR"]
    volumes, _, subject = case_volumes(runs, explorer.setting.value, subject_index=explorer.subject.value)
    hr = volumes["HR"].data
    assert subject == explorer.subject.label and volumes["LR"].shape != hr.shape
    assert 0.0 <= hr.min() and hr.max() <= 1.0 + 1e-6 and volumes["bicubic"].shape == hr.shape
    explorer.methods.value = ("nearest",)
    assert explorer.viewer.volume_names == ["LR", "nearest", "HR"]
    for path in (runs[0].folder / "predictions").glob("*.nii.gz"):
        path.unlink()
    viewer = explorer.viewer
    explorer.refresh()
    assert explorer.viewer is viewer  # nothing new was shown
    with pytest.raises(FileNotFoundError, match="not on this machine"):
        case_volumes(runs, explorer.setting.value, methods=["nearest"])
    with pytest.raises(ValueError, match="no study has a finished run"):
        RunExplorer({"empty": []})


def test_studies_runs_finds_the_runs_a_varied_report_made(tmp_path, monkeypatch):
    from sr_lib import studies
    from sr_lib.explore import studies_runs
    from sr_lib.report import study_configs
    from sr_lib.runs import run_experiment
    from sr_lib.studies import Study

    mini = Study(name="mini", title="mini", description="a test study", scenarios=("SR-B",), contrasts=("T2",),
                 methods=("nearest", "srcnn"), seeds=1, detail=("nearest",))
    monkeypatch.setitem(studies.STUDIES, "mini", mini)
    runs_root = tmp_path / "runs" / "test"
    for config in study_configs(mini, profile="test", options={"steps": 3}):
        run_experiment(config, runs_root, progress=False)
    default = studies_runs(tmp_path, profile="test", studies=["mini"])["mini"]
    assert [r.config.method for r in default] == ["nearest"]  # it has no steps: its run is also the default's
    varied = studies_runs(tmp_path, profile="test", studies=["mini", "not-registered"], options={"steps": 3})
    assert list(varied) == ["mini"]
    assert {r.config.method: r.config.options for r in varied["mini"]} == {"nearest": {}, "srcnn": {"steps": 3}}
