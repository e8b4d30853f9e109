"""What each panel of a side-by-side view shows: one slice per volume, error maps, labels.

The static figure (`viewer.slice_grid`, the report's pictures) and the interactive viewer
(`viewer.VolumeViewer`) both draw what these functions return, so a picture in the report
and the view in JupyterLab cannot disagree.

Geometry, shared by all panels. Every volume covers the same field of view (FOV) with
cell-centred voxels (as `io.resampled_affine` makes them), so an LR volume half the size of
its HR twin has voxels twice as large. A point of the FOV is given in millimetres from the
FOV's corner, ``(x, y, z)`` with ``0 <= x < fov_x``; voxel ``i`` along an axis covers
``[i, i + 1) * voxel``. A slice is normal to `axis`; its horizontal axis is the lower of the
two others and its vertical axis the higher, drawn bottom to top (``origin="lower"``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Union

import nibabel as nib
import numpy as np

from sr_lib.io import Volume
from sr_lib.metrics import foreground_mask, psnr, ssim, ssim_map

VolumeLike = Union[Volume, np.ndarray]

AXIS_NAMES = ("x", "y", "z")
OVERLAYS = ("none", "abs", "signed", "ssim")
OVERLAY_TITLES = {"abs": "|error|", "signed": "signed error", "ssim": "1 − SSIM"}
_OPPOSITE = {"L": "R", "R": "L", "A": "P", "P": "A", "S": "I", "I": "S"}


@dataclass(frozen=True)
class Grid:
    """One volume's data with the geometry the panels need: voxel sizes (mm) and the affine."""

    data: np.ndarray
    voxel: np.ndarray
    affine: np.ndarray | None

    @property
    def fov(self) -> np.ndarray:
        return np.asarray(self.data.shape, dtype=float) * self.voxel


def prepare(volumes: Mapping[str, VolumeLike]) -> dict[str, Grid]:
    """name -> Grid. Raises ValueError on anything but a non-empty dict of 3D volumes.

    A Volume brings its voxel sizes and affine. A plain array is assumed to cover the same
    FOV as the largest plain array, at 1 mm per voxel of that array: a half-size LR array is
    drawn with voxels twice as large, not as a smaller picture.
    """
    if not isinstance(volumes, Mapping) or len(volumes) == 0:
        raise ValueError("volumes must be a non-empty dict of name -> Volume or 3D array")
    arrays: dict[str, np.ndarray] = {}
    found: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
    for name, vol in volumes.items():
        if isinstance(vol, Volume):
            data, geometry = np.asarray(vol.data), (np.asarray(vol.voxel_size, dtype=float), vol.affine)
        else:
            data, geometry = np.asarray(vol), None
        if data.ndim != 3 or min(data.shape) == 0:
            raise ValueError(f"volume {name!r}: expected a non-empty 3D array, got shape {data.shape}")
        if not np.issubdtype(data.dtype, np.number) and data.dtype != bool:
            raise ValueError(f"volume {name!r}: expected numbers, got dtype {data.dtype}")
        arrays[str(name)] = data
        found[str(name)] = geometry
    plain = [a.shape for n, a in arrays.items() if found[n] is None]
    plain_fov = np.max(np.asarray(plain), axis=0).astype(float) if plain else None
    grids = {}
    for name, data in arrays.items():
        if found[name] is not None:
            voxel, affine = found[name]
        else:
            voxel, affine = plain_fov / np.asarray(data.shape, dtype=float), None
        grids[name] = Grid(data, voxel, affine)
    return grids


def check_axis(axis: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0 (x), 1 (y) or 2 (z), got {axis!r}")
    return int(axis)


def in_plane(axis: int) -> tuple[int, int]:
    """(horizontal, vertical) axes of a slice normal to `axis`."""
    h, v = (d for d in range(3) if d != axis)
    return h, v


def corresponding_index(index: int, n_from: int, n_to: int) -> int:
    """Slice of a grid with `n_to` slices at the relative position of slice `index` of `n_from`.

    Both grids span the same FOV with cell-centred voxels: slice i sits at (i + 0.5) / n, and
    the slice whose cell contains that point is returned.
    """
    return int(min(n_to - 1, max(0, math.floor((index + 0.5) * n_to / n_from))))


def nearest_indices(n_out: int, n_in: int) -> np.ndarray:
    """For each of `n_out` cells of a grid, the cell of an `n_in` grid over the same FOV that
    holds its centre (the vectorised `corresponding_index`)."""
    return np.minimum(((np.arange(n_out) + 0.5) * n_in / n_out).astype(int), n_in - 1)


def reference_name(grids: Mapping[str, Grid], axis: int) -> str:
    """The finest grid along `axis` (most slices; the first such volume): the slider's grid."""
    return max(grids, key=lambda n: grids[n].data.shape[axis])


def slice_count(grids: Mapping[str, Grid], axis: int) -> int:
    return max(g.data.shape[axis] for g in grids.values())


def resolve_index(index: int | None, n: int, axis: int) -> int:
    if index is None:
        return n // 2
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < n:
        raise ValueError(f"index must be an integer in [0, {n - 1}] along axis {AXIS_NAMES[axis]}, got {index!r}")
    return int(index)


def check_reference(reference: str | None, names: Sequence[str]) -> None:
    if reference is not None and reference not in names:
        raise ValueError(f"{reference!r} is not one of the volumes: {', '.join(names)}")


def slice_indices(grids: Mapping[str, Grid], axis: int, index: int) -> dict[str, int]:
    """name -> the slice each volume shows when the slider (finest grid) is at `index`."""
    n = slice_count(grids, axis)
    return {name: corresponding_index(index, n, g.data.shape[axis]) for name, g in grids.items()}


def planes(grids: Mapping[str, Grid], axis: int, index: int) -> dict[str, np.ndarray]:
    """name -> 2D float32 slice, indexed [horizontal, vertical] (draw ``plane.T``, origin lower)."""
    indices = slice_indices(grids, axis, index)
    return {name: np.take(g.data, indices[name], axis=axis).astype(np.float32) for name, g in grids.items()}


def error_plane(kind: str, plane: np.ndarray, reference: np.ndarray, *, data_range: float = 1.0) -> np.ndarray:
    """The overlay of one panel against the reference slice (same shape), float32.

    ``abs``: |plane − reference|; ``signed``: plane − reference (positive: too bright);
    ``ssim``: 1 − the 2D SSIM map (Wang et al. 2004, Gaussian window as `metrics.ssim`), NaN in
    the 5-pixel border the window cannot cover. Raises ValueError for another kind or shape.
    """
    if kind not in OVERLAYS[1:]:
        raise ValueError(f"overlay must be one of {', '.join(OVERLAYS)}, got {kind!r}")
    if plane.shape != reference.shape:
        raise ValueError(f"overlay needs the reference's grid: {plane.shape} against {reference.shape}")
    diff = plane.astype(np.float64) - reference
    if kind == "abs":
        return np.abs(diff).astype(np.float32)
    if kind == "signed":
        return diff.astype(np.float32)
    if min(plane.shape) < 11:
        return np.full(plane.shape, np.nan, dtype=np.float32)
    return (1.0 - ssim_map(plane, reference, data_range=data_range)).astype(np.float32)


def overlays(kind: str, shown: Mapping[str, np.ndarray], reference: str, *,
             data_range: float = 1.0) -> dict[str, np.ndarray]:
    """name -> overlay plane, for every panel but the reference that shares its grid."""
    if kind == "none":
        return {}
    ref = shown[reference]
    return {name: error_plane(kind, plane, ref, data_range=data_range)
            for name, plane in shown.items() if name != reference and plane.shape == ref.shape}


def plane_scores(shown: Mapping[str, np.ndarray], reference: str, *,
                 data_range: float = 1.0) -> dict[str, dict[str, float]]:
    """name -> {"psnr", "ssim"} of the shown slice against the reference slice, on the head.

    The region is the reference slice's foreground (`metrics.foreground_mask`); a slice with
    no foreground, or a side under 11 pixels, gets no score. Panels on another grid (LR) are
    left out: their slice is not the reference's.
    """
    ref = shown[reference]
    scores: dict[str, dict[str, float]] = {}
    mask = foreground_mask(ref)
    if not mask.any() or min(ref.shape) < 11:
        return scores
    for name, plane in shown.items():
        if name == reference or plane.shape != ref.shape:
            continue
        scores[name] = {"psnr": psnr(plane, ref, data_range=data_range, mask=mask),
                        "ssim": ssim(plane, ref, data_range=data_range, mask=mask)}
    return scores


def mask_planes(mask: np.ndarray, grids: Mapping[str, Grid], axis: int, index: int) -> dict[str, np.ndarray]:
    """name -> the hole mask's slice on each panel's own grid (nearest voxel), bool.

    `mask` is 3D on the finest grid of `axis` (the hole of an inpainting task lives on the HR
    grid); coarser panels take, per voxel, the mask voxel that holds its centre.
    """
    mask = np.asarray(mask).astype(bool)
    finest = grids[reference_name(grids, axis)].data.shape
    if mask.shape != finest:
        raise ValueError(f"mask must be on the finest grid {finest}, got {mask.shape}")
    out = {}
    h, v = in_plane(axis)
    m_index = slice_indices(grids, axis, index)[reference_name(grids, axis)]
    m_plane = np.take(mask, m_index, axis=axis)
    for name, g in grids.items():
        ih = nearest_indices(g.data.shape[h], m_plane.shape[0])
        iv = nearest_indices(g.data.shape[v], m_plane.shape[1])
        out[name] = m_plane[np.ix_(ih, iv)]
    return out


def grid_labels(grids: Mapping[str, Grid], axis: int) -> dict[str, str]:
    """`orientation_labels` of the first volume that has an affine (empty if none has)."""
    return orientation_labels(next((g.affine for g in grids.values() if g.affine is not None), None), axis)


def finest_grid(grids: Mapping[str, Grid]) -> Grid:
    """The volume with the most voxels: the grid the crosshair and the readout's voxel use."""
    return max(grids.values(), key=lambda g: g.data.size)


def orientation_labels(affine: np.ndarray | None, axis: int) -> dict[str, str]:
    """Letters for the panel's edges: {"left", "right", "bottom", "top"} (empty without an affine).

    From the voxel axes' directions (`nibabel.aff2axcodes`): an axis coded "R" grows towards the
    patient's right, so its high end (right or top of the panel) reads "R" and its low end "L".
    """
    if affine is None:
        return {}
    codes = nib.aff2axcodes(affine)
    h, v = in_plane(axis)
    if None in (codes[h], codes[v]):
        return {}
    return {"left": _OPPOSITE[codes[h]], "right": codes[h], "bottom": _OPPOSITE[codes[v]], "top": codes[v]}


def world_position(grid: Grid, point_mm: Sequence[float]) -> np.ndarray | None:
    """Scanner coordinates (mm) of a FOV point on `grid`, through its affine (None without one).

    The FOV point ``p`` lies at continuous voxel index ``p / voxel − 0.5`` (voxel centres at
    integers, as NIfTI counts them).
    """
    if grid.affine is None:
        return None
    ijk = np.asarray(point_mm, dtype=float) / grid.voxel - 0.5
    return grid.affine[:3, :3] @ ijk + grid.affine[:3, 3]


def values_at(grids: Mapping[str, Grid], point_mm: Sequence[float]) -> dict[str, float]:
    """name -> the value of the voxel that holds FOV point `point_mm` (x, y, z), each on its grid."""
    point = np.asarray(point_mm, dtype=float)
    out = {}
    for name, g in grids.items():
        ijk = np.clip(np.floor(point / g.voxel).astype(int), 0, np.asarray(g.data.shape) - 1)
        out[name] = float(g.data[tuple(ijk)])
    return out
