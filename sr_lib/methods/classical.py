"""The baselines: the degraded input itself on a same-grid scenario, and interpolation
(nearest, bicubic in-plane, tricubic) where the grid changes.

No duplicates in a table: on a same-grid scenario (zero-filled k-space) every interpolation
returns the input, so only `input` runs there; `tricubic` differs from `bicubic` only where
the slice axis (z) changes too, so it runs only there.
"""

from __future__ import annotations

import numpy as np

from sr_lib.degrade import resize
from sr_lib.methods.base import Method, Observation, Support


class DegradedInput(Method):
    """The degraded image as it is (e.g. zero-filled k-space on the HR grid): the baseline
    row of same-grid scenarios."""

    name = "input"
    summary = "the degraded input itself (zero-filled, same grid)"
    support = Support(grids=("same",), pairings=("paired", "misaligned", "unpaired"), dims=(2, 3))

    def predict(self, observation: Observation) -> np.ndarray:
        return np.asarray(observation.lr, dtype=np.float32).copy()


class Interpolation(Method):
    """Resize the LR volume onto the HR grid (cell-centred, MATLAB-style kernels)."""

    kind = "bicubic"
    support = Support(grids=("small",), pairings=("paired", "misaligned", "unpaired"), dims=(2, 3))

    def predict(self, observation: Observation) -> np.ndarray:
        lr = np.asarray(observation.lr, dtype=np.float32)
        size = tuple(n * f for n, f in zip(lr.shape, self.task.factors))
        return np.clip(resize(lr, size=size, method=self.kind), 0.0, 1.0)


class Nearest(Interpolation):
    name = kind = "nearest"
    summary = "nearest-neighbour upsampling"


class Bicubic(Interpolation):
    """Keys cubic (a = -0.5, MATLAB imresize) on the axes that change: in-plane for the 2D
    papers' bicubic baseline."""

    name = kind = "bicubic"
    summary = "bicubic interpolation (MATLAB-style, a = -0.5), the 2D papers' baseline"


class Tricubic(Interpolation):
    """Separable cubic on all three axes (Liu et al. 2022's baseline); only where z changes."""

    name = "tricubic"
    kind = "bicubic"
    summary = "separable cubic on all three axes (UDEAN's baseline), where z changes"
    support = Support(grids=("small",), pairings=("paired", "misaligned", "unpaired"), dims=(3,),
                      requires_slice_axis_change=True)
