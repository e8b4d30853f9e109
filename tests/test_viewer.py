"""Viewer: the widget builds and reacts, grids correspond, difference maps are symmetric, errors."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import ipywidgets as widgets  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from sr_lib.io import Volume  # noqa: E402
from sr_lib.viewer import corresponding_index, show_volumes, slice_grid  # noqa: E402


@pytest.fixture
def hr_lr():
    rng = np.random.default_rng(0)
    hr = rng.random((32, 30, 20)).astype(np.float32)
    lr = hr.reshape(16, 2, 15, 2, 10, 2).mean(axis=(1, 3, 5))  # 2x area downsampling
    return hr, lr


def image_titles(fig: Figure) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_images() and ax.get_title()]


def _panel(viewer, name: str) -> dict:
    return next(p for p in viewer.panels if p["name"] == name)


def _plane(panel: dict) -> np.ndarray:
    """A panel's float32 rows (top to bottom) back as a [horizontal, vertical] plane."""
    rows = np.frombuffer(panel["data"], dtype=np.float32).reshape(panel["height"], panel["width"])
    return rows[::-1].T


def test_widget_sends_the_middle_slice_and_a_static_picture(hr_lr):
    hr, lr = hr_lr
    viewer = show_volumes({"HR": hr, "LR": lr})
    assert isinstance(viewer, widgets.DOMWidget)
    assert viewer.axis == 2 and viewer.index == 10  # middle slice of the finest grid
    assert viewer.indices == {"HR": 10, "LR": 5}
    np.testing.assert_array_equal(_plane(_panel(viewer, "HR")), hr[:, :, 10])
    np.testing.assert_array_equal(_plane(_panel(viewer, "LR")), lr[:, :, 5])
    assert _panel(viewer, "LR")["fov"] == _panel(viewer, "HR")["fov"] == [32.0, 30.0]
    # Frontends without a widget manager (papermill, GitHub) get the picture slice_grid draws.
    bundle = viewer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "image/png" in bundle


def test_slice_axis_and_crosshair_follow_each_other(hr_lr):
    hr, lr = hr_lr
    viewer = show_volumes({"HR": hr, "LR": lr}, index=3)
    assert _panel(viewer, "HR")["subtitle"].startswith("z=3 of 20")
    assert _panel(viewer, "LR")["subtitle"].startswith("z=1 of 10")
    viewer.index = 12
    assert viewer.indices == {"HR": 12, "LR": 6}
    np.testing.assert_array_equal(_plane(_panel(viewer, "LR")), lr[:, :, 6])
    assert viewer.crosshair[2] == pytest.approx(12.5)  # the crosshair sits on the slice shown
    viewer.crosshair = [7.2, 3.9, 12.5]  # as a click in the browser sets it
    viewer.axis = 0  # the sagittal slice through the crosshair
    assert viewer.index == 7 and viewer.indices == {"HR": 7, "LR": 3}
    np.testing.assert_array_equal(_plane(_panel(viewer, "HR")), hr[7, :, :])
    assert viewer.values_at() == {"HR": pytest.approx(hr[7, 3, 12]), "LR": pytest.approx(lr[3, 1, 6])}


def test_overlays_scores_mask_and_orientation(hr_lr):
    hr, lr = hr_lr
    pred = (hr + 0.05).astype(np.float32)
    hole = np.zeros(hr.shape, dtype=bool)
    hole[10:20, 10:20, :] = True
    volumes = {"LR": Volume(lr, np.diag([-2.0, 2.0, 2.0, 1.0])), "pred": Volume(pred, np.diag([-1.0, 1.0, 1.0, 1.0])),
               "HR": Volume(hr, np.diag([-1.0, 1.0, 1.0, 1.0]))}
    viewer = show_volumes(volumes, difference_to="HR", mask=hole, index=4)
    assert _panel(viewer, "pred")["overlay"] is None  # no overlay until one is chosen
    viewer.overlay = "signed"
    signed = np.frombuffer(_panel(viewer, "pred")["overlay"], dtype=np.float32).reshape(30, 32)[::-1].T
    np.testing.assert_allclose(signed, pred[:, :, 4] - hr[:, :, 4], atol=1e-6)
    assert _panel(viewer, "LR")["overlay"] is None and _panel(viewer, "HR")["overlay"] is None
    viewer.overlay = "ssim"
    dissimilarity = np.frombuffer(_panel(viewer, "pred")["overlay"], dtype=np.float32)
    assert np.isnan(dissimilarity).any() and np.nanmin(dissimilarity) >= -1e-6  # border NaN, 1 - SSIM >= 0
    assert " dB · SSIM " in _panel(viewer, "pred")["subtitle"]
    assert _panel(viewer, "pred")["scores"]["psnr"] == pytest.approx(26.02, abs=0.01)  # 20 log10(1 / 0.05)
    mask_rows = np.frombuffer(_panel(viewer, "LR")["mask"], dtype=np.uint8).reshape(15, 16)
    assert mask_rows[::-1].T[5:10, 5:10].all() and mask_rows.sum() == 25  # the hole on the LR grid
    # x runs to the patient's left (affine -1): the panel's right edge is L
    assert viewer.orientation == {"left": "R", "right": "L", "bottom": "P", "top": "A"}
    np.testing.assert_allclose(viewer.scanner_position([0.5, 0.5, 0.5]), [0.0, 0.0, 0.0])


def test_lr_and_hr_show_corresponding_slices(hr_lr):
    hr, lr = hr_lr
    for i in range(hr.shape[2]):
        j = corresponding_index(i, hr.shape[2], lr.shape[2])
        assert j == i // 2  # HR slices 2j and 2j+1 lie inside LR slice j
    assert corresponding_index(5, 20, 20) == 5
    # upwards, the coarse slice's centre lies between two fine slices: the upper one is taken
    assert corresponding_index(0, 10, 20) == 1 and corresponding_index(9, 10, 20) == 19
    fig = slice_grid({"HR": hr, "LR": lr}, axis=1, index=29)
    hr_img, lr_img = [ax.get_images()[0].get_array() for ax in fig.axes if ax.get_images()]
    np.testing.assert_array_equal(hr_img, hr[:, 29, :].T)
    np.testing.assert_array_equal(lr_img, lr[:, 14, :].T)


def test_volumes_keep_physical_extent(hr_lr):
    hr, lr = hr_lr
    hr_vol = Volume(data=hr, affine=np.eye(4))
    lr_vol = Volume(data=lr, affine=np.diag([2.0, 2.0, 2.0, 1.0]))
    fig = slice_grid({"HR": hr_vol, "LR": lr_vol})
    extents = [ax.get_images()[0].get_extent() for ax in fig.axes if ax.get_images()]
    assert extents[0] == pytest.approx((0, 32, 0, 30))
    assert extents[1] == pytest.approx((0, 32, 0, 30))


def test_difference_row_has_symmetric_limits(hr_lr):
    hr, lr = hr_lr
    pred = np.clip(hr + 0.05, 0, 1)
    fig = slice_grid({"HR": hr, "LR": lr, "pred": pred}, difference_to="HR", index=4)
    diff_images = [im for ax in fig.axes for im in ax.get_images() if im.get_cmap().name == "bwr"]
    assert len(diff_images) == 1  # the reference and the LR (other grid) have no difference map
    low, high = diff_images[0].get_clim()
    assert low == -high and high == pytest.approx(np.abs(pred[:, :, 4] - hr[:, :, 4]).max())
    np.testing.assert_allclose(diff_images[0].get_array(), (pred[:, :, 4] - hr[:, :, 4]).T, atol=1e-7)
    fixed = slice_grid({"HR": hr, "pred": pred}, difference_to="HR", diff_limit=0.2)
    (im,) = [im for ax in fixed.axes for im in ax.get_images() if im.get_cmap().name == "bwr"]
    assert im.get_clim() == (-0.2, 0.2)
    viewer = show_volumes({"HR": hr, "pred": pred}, difference_to="HR")
    assert "pred − HR" in [ax.get_title() for ax in viewer.figure().axes]
    ssim_fig = slice_grid({"HR": hr, "pred": pred}, difference_to="HR", overlay="ssim")
    (ssim_im,) = [im for ax in ssim_fig.axes for im in ax.get_images() if im.get_cmap().name == "magma"]
    assert ssim_im.get_clim() == (0.0, 1.0)


def test_bad_arguments_raise(hr_lr):
    hr, lr = hr_lr
    with pytest.raises(ValueError, match="non-empty"):
        show_volumes({})
    with pytest.raises(ValueError, match="non-empty"):
        slice_grid({})
    for bad_axis in (3, -1, "z", True):
        with pytest.raises(ValueError, match="axis"):
            show_volumes({"HR": hr}, axis=bad_axis)
        with pytest.raises(ValueError, match="axis"):
            slice_grid({"HR": hr}, axis=bad_axis)
    with pytest.raises(ValueError, match="index"):
        slice_grid({"HR": hr}, index=20)
    with pytest.raises(ValueError, match="3D"):
        show_volumes({"slice": hr[:, :, 0]})
    with pytest.raises(ValueError, match="HR, LR"):
        show_volumes({"HR": hr, "LR": lr}, difference_to="SR")
    with pytest.raises(ValueError, match="reference"):
        show_volumes({"HR": hr, "LR": lr}, overlay="abs")
    with pytest.raises(ValueError, match="overlay"):
        show_volumes({"HR": hr, "LR": lr}, difference_to="HR", overlay="fancy")
    with pytest.raises(ValueError, match="mask must be on the finest grid"):
        show_volumes({"HR": hr, "LR": lr}, mask=np.zeros(lr.shape, bool))
    with pytest.raises(ValueError, match="cmap"):
        show_volumes({"HR": hr}, cmap="jet")
