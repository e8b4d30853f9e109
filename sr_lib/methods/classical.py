"""Interpolation baselines: nearest, bicubic (2D, in-plane) and tricubic (3D)."""

from __future__ import annotations

import numpy as np

from sr_lib.degrade import resize
from sr_lib.methods.base import Method, Task
from sr_lib.profiles import Profile


class Interpolation(Method):
    """Resize the LR volume onto the HR grid with `kind` interpolation (cell-centred).

    'bicubic' interpolates only the in-plane axes of a slice-wise task (the slice axis is
    unchanged), as the 2D papers' bicubic baseline; 'tricubic' is separable cubic on all
    three axes (UDEAN's baseline). On same-grid scenarios both return the input unchanged:
    the 'baseline' is then the degraded image itself (e.g. zero-filled k-space).
    """

    learned = False

    def __init__(self, task: Task, profile: Profile, *, kind: str):
        super().__init__(task, profile, kind=kind)
        self.name = kind
        self.kind = kind

    def predict_volume(self, lr: np.ndarray) -> np.ndarray:
        if all(f == 1 for f in self.task.factors):
            return np.asarray(lr, dtype=np.float32).copy()
        method = "bicubic" if self.kind in ("bicubic", "tricubic") else self.kind
        size = tuple(n * f for n, f in zip(lr.shape, self.task.factors))
        out = resize(np.asarray(lr, dtype=np.float32), size=size, method=method)
        return np.clip(out, 0.0, 1.0)
