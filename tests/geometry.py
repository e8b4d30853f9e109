"""Shared test geometry: an oblique, anisotropic, off-centre affine like a real scan's."""

from __future__ import annotations

import numpy as np


def oblique_affine(angle_deg: float = 17.0, voxel_size=(0.9375, 0.9375, 1.2)) -> np.ndarray:
    """Rotation about z by `angle_deg`, IXI-like voxel sizes, an off-centre origin."""
    angle = np.deg2rad(angle_deg)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(voxel_size)
    affine[:3, 3] = [-90.5, 110.25, -70.0]
    return affine
