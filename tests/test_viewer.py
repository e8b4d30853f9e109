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


def test_widget_builds_and_draws_initial_picture(hr_lr):
    hr, lr = hr_lr
    viewer = show_volumes({"HR": hr, "LR": lr})
    assert isinstance(viewer, widgets.VBox)
    assert viewer.axis == 2 and viewer.index == 10  # middle slice of the finest grid
    assert viewer.slider.max == 19
    # The first frame is already in the Output and in the static fallback of the repr.
    assert len(viewer.output.outputs) == 1
    assert "image/png" in viewer.output.outputs[0]["data"]
    bundle = viewer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "image/png" in bundle


def test_slider_and_axis_update_index_and_title(hr_lr):
    hr, lr = hr_lr
    viewer = show_volumes({"HR": hr, "LR": lr}, index=3)
    assert image_titles(viewer.figure) == ["HR\nz=3 (of 20)", "LR\nz=1 (of 10)"]
    first_png = viewer.output.outputs[0]["data"]["image/png"]
    viewer.slider.value = 12
    assert viewer.indices == {"HR": 12, "LR": 6}
    assert image_titles(viewer.figure) == ["HR\nz=12 (of 20)", "LR\nz=6 (of 10)"]
    assert viewer.output.outputs[0]["data"]["image/png"] != first_png
    viewer.axis_dropdown.value = 0
    assert viewer.slider.max == 31 and viewer.index == 16
    assert image_titles(viewer.figure) == ["HR\nx=16 (of 32)", "LR\nx=8 (of 16)"]


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
    assert "pred − HR" in [ax.get_title() for ax in viewer.figure.axes]


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
