"""Figures: headless builds with odd shapes, panel titles that name slice and region, PNGs."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from scipy import ndimage  # noqa: E402

from sr_lib.figures import difference_figure, plot_summary, plot_training_log, save_figure  # noqa: E402
from sr_lib.metrics import slice_scores  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def head(shape, seed=0):
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    r2 = sum(g**2 for g in grid)
    img = ndimage.gaussian_filter(np.where(r2 < 0.5, 0.7, 0.0), 1.0) + 0.01 * rng.standard_normal(shape)
    return np.clip(img, 0, 1), r2 < 0.5


def titles(fig):
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


@pytest.mark.parametrize("shape, axis", [((23, 19, 17), 2), ((21, 25, 13), 0), ((17, 16, 15), 1)])
def test_difference_figure_odd_shapes_two_methods(shape, axis):
    hr, mask = head(shape)
    preds = {"bicubic": ndimage.gaussian_filter(hr, 1.0), "unet": hr + 0.02}
    lr_shape = tuple(s if d == axis else (s + 1) // 2 for d, s in enumerate(shape))  # thick slices: LR grid
    lr = hr[tuple(slice(None) if d == axis else slice(None, None, 2) for d in range(3))]
    assert lr.shape == lr_shape
    index = shape[axis] // 2 + 1
    fig = difference_figure(hr, lr, preds, axis=axis, index=index, mask=mask, title="SR-B T1")
    name = "xyz"[axis]
    t = titles(fig)
    for method in preds:
        (panel,) = [s for s in t if s.startswith(method)]
        assert f"slice {name}={index} · brain" in panel and "dB /" in panel
    lr_title = next(s for s in t if s.startswith("LR"))
    assert "LR grid" in lr_title and "dB" not in lr_title
    assert fig._suptitle.get_text().startswith("SR-B T1")


def test_difference_figure_numbers_are_the_displayed_slice_within_the_brain():
    hr, mask = head((24, 22, 20), seed=1)
    pred = ndimage.gaussian_filter(hr, 0.8)
    fig = difference_figure(hr, hr + 0.05, {"blur": pred}, axis=2, index=9, mask=mask)
    s = slice_scores(pred[:, :, 9:10], hr[:, :, 9:10], axis=2, mask=mask[:, :, 9:10], min_fraction=0)
    (panel,) = [t for t in titles(fig) if t.startswith("blur")]
    assert f"{s['psnr_slices']:.2f} dB / {s['ssim_slices']:.4f}" in panel
    (lr_panel,) = [t for t in titles(fig) if t.startswith("LR")]
    assert "slice z=9 · brain" in lr_panel and "26.02 dB" in lr_panel  # same grid: +0.05 everywhere -> 26.02 dB


def test_difference_figure_defaults_and_errors():
    hr, mask = head((20, 20, 18))
    fig = difference_figure(hr, hr, {"id": hr})  # no mask: middle slice, whole slice
    assert any("slice z=9 · slice" in t for t in titles(fig))
    skew = mask.copy()
    skew[:, :, 12:] = False
    skew[:, :, 4] = True  # the slice with the most brain
    assert any("z=4 · brain" in t for t in titles(difference_figure(hr, hr, {"id": hr}, mask=skew)))
    with pytest.raises(ValueError, match="shape"):
        difference_figure(hr, hr, {"bad": hr[:-1]})
    with pytest.raises(ValueError, match="index"):
        difference_figure(hr, hr, {"id": hr}, index=18)
    with pytest.raises(ValueError, match="mask shape"):
        difference_figure(hr, hr, {"id": hr}, mask=mask[:-1])
    with pytest.raises(ValueError, match="at least one"):
        difference_figure(hr, hr, {})


def test_save_figure_writes_png(tmp_path):
    hr, mask = head((18, 17, 15))
    fig = difference_figure(hr, hr[::2, ::2, :], {"a": hr, "b": 0.9 * hr}, mask=mask)
    path = save_figure(fig, tmp_path / "sub" / "diff.png", close=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["diff.png"]


def test_plot_training_log_marks_early_stopping():
    log = pd.DataFrame({"step": np.arange(0, 100, 10), "loss": np.linspace(1, 0.1, 10), "lr": 1e-3,
                        "val_psnr": np.linspace(25, 30, 10), "val_ssim": np.linspace(0.7, 0.9, 10),
                        "best_step": [np.nan] * 9 + [60.0]})
    fig = plot_training_log(log, title="unet")
    lines = [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("best")]
    assert len(lines) == 1 and lines[0].get_xdata()[0] == 60
    assert "best_step" not in [ln.get_label() for ln in fig.axes[0].get_lines()]
    fig = plot_training_log(log.drop(columns="best_step"), best_step=40, stopped_at=90)
    labels = [ln.get_label() for ln in fig.axes[1].get_lines()]
    assert "best (kept) step 40" in labels and "stopped at 90" in labels
    plot_training_log(pd.DataFrame())  # classical method: no log
    with pytest.raises(ValueError, match="step"):
        plot_training_log(pd.DataFrame({"loss": [1.0]}))


def test_plot_summary_bars_with_subject_and_seed_std():
    summary = pd.DataFrame({
        "study": "lyu2018", "scenario": "SR-B", "contrast": ["T1", "T1", "T1", "T1"], "scale": 2,
        "pairing": "paired", "method": ["bicubic", "unet", "zssr", "unet"], "region": ["brain"] * 3 + ["volume"],
        "status": ["done", "done", "n/a", "done"], "psnr_mean": [29.0, 32.0, np.nan, 28.0],
        "psnr_std": [0.5, 0.6, np.nan, 0.4], "psnr_seed_std": [0.1, np.nan, np.nan, 0.2],
    })
    fig = plot_summary(summary)
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == [29.0, 32.0]
    assert "brain" in ax.get_title() and "zssr: n/a" in ax.get_xlabel()
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"± subject std", "± seed std"}
    with pytest.raises(ValueError, match="lacks"):
        plot_summary(summary.drop(columns="psnr_std"))
