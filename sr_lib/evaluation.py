"""Test-set evaluation of a fitted method: predict every test subject, score the brain and
the whole volume, save the predictions as NIfTI in scanner units.

Headline numbers are on the brain (the foreground mask of the HR volume, `foreground_mask`):
about two thirds of a volume is background, and whole-volume scores mostly measure how
empty the background is. Whole-volume scores are kept beside them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from sr_lib.io import denormalise, save_volume
from sr_lib.methods import Method, Observation
from sr_lib.metrics import evaluate_regions, foreground_mask, hole_regions
from sr_lib.prepare import TestCase

REGIONS = ("brain", "volume")
HOLE_REGIONS = ("hole", "hole_band", "brain_rest")  # scored too where the scenario has holes


def observation(case: TestCase) -> Observation:
    """What a method may see of a test case: LR, hole mask, degradation params, voxel size."""
    return Observation(case.lr.data, None if case.mask is None else case.mask.data, case.params, case.lr.voxel_size)


def score(pred: np.ndarray, hr: np.ndarray, *, axis: int = 2, hole: np.ndarray | None = None,
          voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> list[dict[str, Any]]:
    """Rows for region 'brain' (inside the HR's foreground mask) and 'volume': 3D PSNR, SSIM
    and MSE, and the 2D papers' convention (`psnr_slices`, `ssim_slices`: per slice along
    `axis`, averaged) so a table can be set beside a paper's. With a `hole` mask (on the LR
    grid, 1 = missing), rows 'hole', 'hole_band' and 'brain_rest' too (`metrics.hole_regions`;
    `voxel_size`: the HR grid's, for the band's width in mm)."""
    brain = foreground_mask(hr)
    regions = None
    if hole is not None and np.any(hole):
        regions = hole_regions(hole_on_grid(hole, hr.shape), brain, voxel_size=voxel_size)
    return evaluate_regions(pred, hr, mask=brain, axis=axis, regions=regions)


def hole_on_grid(hole: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """An LR-grid hole mask on the HR grid `shape` (each LR voxel covers `factor` HR voxels per
    axis, the cell-centred convention of the samplers); a shape that does not divide is an error."""
    hole = np.asarray(hole) > 0
    factors = []
    for n_lr, n_hr in zip(hole.shape, shape):
        if n_hr % n_lr:
            raise ValueError(f"hole mask shape {hole.shape} does not divide the volume shape {tuple(shape)}")
        factors.append(n_hr // n_lr)
    for axis, factor in enumerate(factors):
        hole = np.repeat(hole, factor, axis=axis)
    return hole


def evaluate_on_test(method: Method, test: list[TestCase], predictions: Path | None, *, description: str = "",
                     progress: bool = True) -> pd.DataFrame:
    """Predict and score every test case; with `predictions`, save each as `<subject>.nii.gz`.
    A prediction with NaN or infinite values is an error, never scored or written."""
    rows = []
    for case in tqdm(test, desc=f"{method.name}: test", disable=not progress, leave=False):
        started = time.time()
        pred = np.asarray(method.predict(observation(case)), dtype=np.float32)
        seconds = round(time.time() - started, 3)
        if pred.shape != case.hr.shape:
            raise ValueError(f"{method.name} predicted shape {pred.shape} for {case.hr.subject}, expected {case.hr.shape}")
        if not np.isfinite(pred).all():
            raise ValueError(f"{method.name} predicted NaN or infinite values for {case.hr.subject}")
        hole = None if case.mask is None else case.mask.data
        rows += [{"subject": case.hr.subject, **row, "seconds": seconds}
                 for row in score(pred, case.hr.data, hole=hole, voxel_size=case.hr.voxel_size)]
        if predictions is not None:
            save_volume(denormalise(case.hr.replace(data=pred), case.hr.intensity),
                        predictions / f"{case.hr.subject}.nii.gz", description=description)
    return pd.DataFrame(rows)
