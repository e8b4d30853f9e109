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
from sr_lib.metrics import evaluate_regions, foreground_mask
from sr_lib.prepare import TestCase

REGIONS = ("brain", "volume")


def observation(case: TestCase) -> Observation:
    """What a method may see of a test case: LR, hole mask, degradation params, voxel size."""
    return Observation(case.lr.data, None if case.mask is None else case.mask.data, case.params, case.lr.voxel_size)


def score(pred: np.ndarray, hr: np.ndarray, *, axis: int = 2) -> list[dict[str, Any]]:
    """Rows for region 'brain' (inside the HR's foreground mask) and 'volume': 3D PSNR, SSIM
    and MSE, and the 2D papers' convention (`psnr_slices`, `ssim_slices`: per slice along
    `axis`, averaged) so a table can be set beside a paper's."""
    return evaluate_regions(pred, hr, mask=foreground_mask(hr), axis=axis)


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
        rows += [{"subject": case.hr.subject, **row, "seconds": seconds} for row in score(pred, case.hr.data)]
        if predictions is not None:
            save_volume(denormalise(case.hr.replace(data=pred), case.hr.intensity),
                        predictions / f"{case.hr.subject}.nii.gz", description=description)
    return pd.DataFrame(rows)
