"""Whole-volume inference, three ways (`INFERENCE_MODES`):

- "whole": 2D nets see whole slices along the task's axis; 3D nets fall back to "blend";
- "blend": overlapping patches blended with a Gaussian window (MONAI's sliding-window
  inferer, which also handles an output grid larger than the input), 2D or 3D;
- "stitch": the 7T->9.4T paper's dense patches: patches at a stride, each patch's border
  cropped, overlaps averaged (plain mean, no window). `seam_lines` gives where the
  cropped patches meet, for `sr_lib.seams`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:  # methods import this module
    from sr_lib.methods.base import Task

BatchPredictor = Callable[[torch.Tensor], torch.Tensor]
INFERENCE_MODES = ("whole", "blend", "stitch")


def patch_starts(size: int, patch: int, stride: int) -> list[int]:
    """Corners of patches of `patch` every `stride` along an axis of `size`, the last one
    flush with the end so every voxel is covered (one patch when `patch >= size`)."""
    if patch >= size:
        return [0]
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def _kept(start: int, patch: int, size: int, border: int) -> tuple[int, int]:
    """The part of a patch kept after cropping `border` voxels; borders on the image edge stay."""
    low = start if start == 0 else start + border
    high = start + patch if start + patch == size else start + patch - border
    return low, high


def stitch_patches(
    predict_batch: BatchPredictor,
    images: torch.Tensor,
    *,
    factors: Sequence[int],
    patch: int,
    stride: int,
    border: int,
    batch_size: int = 16,
) -> torch.Tensor:
    """The 7T paper's dense-patch inference on a batch of images (N, 1, *spatial), 2D or 3D.

    Patches of `patch` LR voxels every `stride`; the prediction of each (HR grid, `factors`
    larger) loses `border` HR voxels on every side that is not the image edge; overlaps are
    averaged. Paper: 64-px patches, stride 20, 4-px border."""
    if border * 2 >= patch * min(factors):
        raise ValueError(f"stitching border {border} leaves nothing of a {patch}-voxel patch")
    if stride < 1:
        raise ValueError(f"stitching stride must be >= 1, got {stride}")
    spatial = images.shape[2:]
    sizes = [min(patch, n) for n in spatial]
    starts = [patch_starts(n, p, stride) for n, p in zip(spatial, sizes)]
    out_shape = (images.shape[0], 1, *[n * f for n, f in zip(spatial, factors)])
    total = torch.zeros(out_shape, dtype=torch.float32)
    count = torch.zeros(out_shape, dtype=torch.float32)
    corners = list(itertools.product(*starts))
    for i in range(0, len(corners), max(1, batch_size // images.shape[0])):
        chunk = corners[i : i + max(1, batch_size // images.shape[0])]
        crops = [images[(slice(None), slice(None), *[slice(c, c + p) for c, p in zip(corner, sizes)])] for corner in chunk]
        predictions = predict_batch(torch.cat(crops)).float().cpu().split(images.shape[0])
        for corner, prediction in zip(chunk, predictions):
            kept = [_kept(c * f, p * f, n * f, border) for c, p, n, f in zip(corner, sizes, spatial, factors)]
            local = tuple(slice(lo - c * f, hi - c * f) for (lo, hi), c, f in zip(kept, corner, factors))
            where = (slice(None), slice(None), *[slice(lo, hi) for lo, hi in kept])
            total[where] += prediction[(slice(None), slice(None), *local)]
            count[where] += 1
    return total / count


def seam_lines(size: int, *, factor: int, patch: int, stride: int, border: int) -> list[int]:
    """HR positions along one axis where a cropped stitching patch begins or ends (interior
    of the image only): the places where stitching can leave a seam."""
    lr_patch = min(patch, size)
    edges = set()
    for start in patch_starts(size, lr_patch, stride):
        low, high = _kept(start * factor, lr_patch * factor, size * factor, border)
        edges.update(e for e in (low, high) if 0 < e < size * factor)
    return sorted(edges)


def predict_volume(
    predict_batch: BatchPredictor,
    lr: np.ndarray,
    *,
    task: Task,
    batch_size: int = 16,
    patch_size: int = 32,
    overlap: float = 0.25,
    device: torch.device | str = "cpu",
    mode: str = "whole",
    stitch: tuple[int, int, int] | None = None,
) -> np.ndarray:
    """Apply `predict_batch` ((N, 1, ...) LR -> (N, 1, ...) HR) to a whole (x, y, z) volume.

    2D: slices along `task.axis` in batches of `batch_size`, each whole ("whole"), or cut
    into patches of `patch_size` ("blend", `overlap`, Gaussian weights) or stitched
    ("stitch": `stitch` = (patch, stride, border), see `stitch_patches`). 3D: patches of
    `patch_size` LR voxels blended ("whole" and "blend") or stitched. Returns float32 on
    the HR grid (shape = LR shape * task.factors).
    """
    if mode not in INFERENCE_MODES:
        raise ValueError(f"unknown inference mode {mode!r}; choose one of {', '.join(INFERENCE_MODES)}")
    if mode == "stitch" and stitch is None:
        raise ValueError("stitch inference needs stitch=(patch, stride, border)")
    lr = np.ascontiguousarray(lr, dtype=np.float32)  # torch.from_numpy refuses negative strides (flipped views)
    if lr.ndim != 3:
        raise ValueError(f"predict_volume takes a 3D (x, y, z) volume, got shape {lr.shape}")
    expected = tuple(n * f for n, f in zip(lr.shape, task.factors))
    volume = torch.from_numpy(lr)
    factors = task.working_factors

    def run(images: torch.Tensor) -> torch.Tensor:  # (N, 1, *spatial) -> HR
        images = images.to(device)
        if mode == "stitch":
            patch, stride, border = stitch
            return stitch_patches(predict_batch, images, factors=factors, patch=patch, stride=stride, border=border,
                                  batch_size=batch_size)
        if mode == "whole" and task.spatial_dims == 2:
            return predict_batch(images).float().cpu()
        from monai.inferers import sliding_window_inference  # here: importing monai costs seconds per process

        roi = tuple(min(patch_size, n) for n in images.shape[2:])
        with torch.no_grad():
            return sliding_window_inference(images, roi_size=roi, sw_batch_size=batch_size, predictor=predict_batch,
                                            overlap=overlap, mode="gaussian").float().cpu()

    if task.spatial_dims == 2:
        slices = volume.movedim(task.axis, 0).unsqueeze(1)  # (S, 1, a, b)
        per_call = batch_size if mode == "whole" else 1
        outputs = [run(slices[i : i + per_call]) for i in range(0, len(slices), per_call)]
        out = torch.cat(outputs).squeeze(1).movedim(0, task.axis)
    else:
        out = run(volume[None, None])[0, 0]
    result = out.numpy()
    if result.shape != expected:
        raise RuntimeError(f"inference produced shape {result.shape}, expected {expected}")
    return result
