"""Whole-volume inference: slice by slice along any axis, or by overlapping 3D patches
blended with a Gaussian window (MONAI's sliding-window inferer, which also handles an
output grid larger than the input)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from sr_lib.methods.base import Task

BatchPredictor = Callable[[torch.Tensor], torch.Tensor]


def predict_volume(
    predict_batch: BatchPredictor,
    lr: np.ndarray,
    *,
    task: Task,
    batch_size: int = 16,
    patch_size: int = 32,
    overlap: float = 0.25,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Apply `predict_batch` ((N, 1, ...) LR -> (N, 1, ...) HR) to a whole (x, y, z) volume.

    2D: slices along `task.axis` in batches of `batch_size`. 3D: patches of `patch_size`
    LR voxels with `overlap`, Gaussian-weighted blending. Returns float32 on the HR grid
    (shape = LR shape * task.factors).
    """
    lr = np.ascontiguousarray(lr, dtype=np.float32)  # torch.from_numpy refuses negative strides (flipped views)
    if lr.ndim != 3:
        raise ValueError(f"predict_volume takes a 3D (x, y, z) volume, got shape {lr.shape}")
    expected = tuple(n * f for n, f in zip(lr.shape, task.factors))
    volume = torch.from_numpy(lr)
    if task.spatial_dims == 2:
        slices = volume.movedim(task.axis, 0).unsqueeze(1)  # (S, 1, a, b)
        outputs = [predict_batch(slices[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(slices), batch_size)]
        out = torch.cat(outputs).squeeze(1).movedim(0, task.axis)
    else:
        roi = tuple(min(patch_size, n) for n in lr.shape)
        with torch.no_grad():
            out = sliding_window_inference(
                volume[None, None].to(device), roi_size=roi, sw_batch_size=batch_size, predictor=predict_batch,
                overlap=overlap, mode="gaussian",
            )[0, 0].float().cpu()
    result = out.numpy()
    if result.shape != expected:
        raise RuntimeError(f"inference produced shape {result.shape}, expected {expected}")
    return result
