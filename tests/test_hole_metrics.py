"""Scores in and around holes: the regions partition the brain, a band has its width in mm,
an LR hole lands on the HR grid, and an error confined to the hole shows there and only there."""

from __future__ import annotations

import numpy as np
import pytest

from sr_lib.evaluation import HOLE_REGIONS, hole_on_grid, score
from sr_lib.metrics import hole_regions


def head(shape=(40, 40, 24)) -> np.ndarray:
    """A smooth ellipsoid 'head' in [0, 1] with a little texture."""
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    r2 = (grid**2).sum(0)
    rng = np.random.default_rng(0)
    return np.where(r2 < 0.8, 0.6 + 0.2 * np.cos(6 * grid[0]) + 0.02 * rng.standard_normal(shape), 0).clip(0, 1).astype(np.float32)


def box(shape, corner, size) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(c, c + s) for c, s in zip(corner, size))] = True
    return mask


def test_the_regions_partition_the_brain_and_the_band_is_measured_in_mm():
    shape = (30, 30, 30)
    brain = np.ones(shape, dtype=bool)
    hole = box(shape, (10, 10, 10), (5, 5, 5))
    regions = hole_regions(hole, brain, voxel_size=(1.0, 1.0, 1.0), band_mm=2.0)
    assert set(regions) == set(HOLE_REGIONS)
    total = sum(r.astype(int) for r in regions.values())
    assert (total == 1).all()  # disjoint, and together the whole brain
    band = regions["hole_band"]
    assert band[8, 12, 12] and band[9, 12, 12] and not band[7, 12, 12]  # 1 and 2 mm away in, 3 mm out
    # 2 mm voxels along x: the band reaches one voxel there, two along y
    coarse = hole_regions(hole, brain, voxel_size=(2.0, 1.0, 1.0), band_mm=2.0)["hole_band"]
    assert coarse[9, 12, 12] and not coarse[8, 12, 12]
    assert coarse[12, 8, 12] and not coarse[12, 7, 12]


def test_the_band_stays_in_the_brain_and_an_empty_hole_leaves_the_brain_whole():
    shape = (20, 20, 20)
    brain = box(shape, (0, 0, 0), (20, 20, 10))
    hole = box(shape, (5, 5, 8), (4, 4, 4))  # straddles the brain's edge
    regions = hole_regions(hole, brain)
    assert not (regions["hole_band"] & ~brain).any() and not (regions["brain_rest"] & ~brain).any()
    empty = hole_regions(np.zeros(shape, bool), brain)
    assert not empty["hole"].any() and not empty["hole_band"].any() and (empty["brain_rest"] == brain).all()


def test_bad_region_inputs_are_one_line_errors():
    with pytest.raises(ValueError, match="shape"):
        hole_regions(np.zeros((4, 4, 4), bool), np.zeros((4, 4, 5), bool))
    with pytest.raises(ValueError, match="band_mm"):
        hole_regions(np.zeros((4, 4, 4), bool), np.zeros((4, 4, 4), bool), band_mm=0)
    with pytest.raises(ValueError, match="does not divide"):
        hole_on_grid(np.zeros((4, 4, 3)), (8, 8, 8))


def test_an_lr_hole_covers_its_hr_voxels():
    lr_hole = np.zeros((4, 4, 2))
    lr_hole[1, 2, 0] = 1
    hr = hole_on_grid(lr_hole, (8, 8, 2))
    assert hr.sum() == 4 and hr[2:4, 4:6, 0].all()


def test_an_error_inside_the_hole_shows_in_the_hole_rows_only():
    hr = head()
    lr_hole = box((20, 20, 24), (6, 6, 8), (4, 4, 6))  # on a 2x in-plane LR grid
    hole = hole_on_grid(lr_hole, hr.shape)
    pred = hr + 0.01 * np.random.default_rng(1).standard_normal(hr.shape).astype(np.float32)
    pred[hole] = 0.3  # a bad fill
    rows = {r["region"]: r for r in score(pred, hr, hole=lr_hole, voxel_size=(1.0, 1.0, 1.0))}
    assert set(rows) == {"brain", "volume", *HOLE_REGIONS}
    assert rows["hole"]["psnr"] < 15 < 35 < rows["brain_rest"]["psnr"]
    assert rows["hole"]["psnr"] < rows["brain"]["psnr"] < rows["brain_rest"]["psnr"]  # the brain averages it away
    assert rows["hole_band"]["psnr"] > 35  # the fill's error does not reach the band
    # without a hole mask, no hole rows
    assert {r["region"] for r in score(pred, hr)} == {"brain", "volume"}
