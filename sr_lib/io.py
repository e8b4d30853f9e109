"""NIfTI volumes in and out, with their geometry and the intensity scaling that was applied.

`load_volume` returns scanner units; `normalise` maps to [0, 1] with a robust percentile and
records how, so that `denormalise` can put a prediction back into the input's units. All
problems with an input file raise `VolumeError` with a one-line message that names the file.
`validate_volume` is the one list of what makes a loaded volume unusable (geometry and
intensities); `check` reports it and `apply` refuses on it, so the two cannot disagree.
"""

from __future__ import annotations

import dataclasses
import errno
import gzip
import os
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from sr_lib.atomic import atomic_path


VOXEL_MM = (0.01, 20.0)  # plausible voxel edge lengths for MRI, mm
GZIP_MAX_RATIO = 1032  # deflate cannot compress better than about 1032:1


class VolumeError(ValueError):
    """A volume file or array that cannot be used; the message names the file and the problem."""


@dataclasses.dataclass(frozen=True)
class Intensity:
    """How a volume was scaled: ``normalised = (raw - offset) / scale`` (then clipped to [0, 1])."""

    offset: float
    scale: float


@dataclasses.dataclass
class Volume:
    """A 3D image: float32 `data` (x, y, z), the voxel->world `affine`, and where it came from.

    `intensity` is None while `data` is in scanner units, and records the scaling once
    `normalise` has mapped it to [0, 1].
    """

    data: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header | None = None
    path: Path | None = None
    subject: str = ""
    contrast: str = ""
    intensity: Intensity | None = None

    def __post_init__(self) -> None:
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise VolumeError(f"{self.name}: affine must be 4x4, got {self.affine.shape}")

    @property
    def name(self) -> str:
        return str(self.path) if self.path else (self.subject or "<array>")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape)  # type: ignore[return-value]

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """Voxel edge lengths in mm, read from the affine's columns."""
        return tuple(float(v) for v in voxel_sizes(self.affine))  # type: ignore[return-value]

    def replace(self, **changes) -> "Volume":
        """A copy with some fields changed (e.g. new `data` and `affine` after resampling)."""
        return dataclasses.replace(self, **changes)


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """Voxel sizes (mm) of a 4x4 affine: the norms of its first three columns."""
    return np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))


def voxel_size_text(affine: np.ndarray) -> str:
    """Voxel sizes as `check` prints them and compares them: '0.9x0.9x3' (3 significant digits)."""
    return "x".join(f"{v:.3g}" for v in voxel_sizes(affine))


def odd_voxel_sizes(sizes: dict[str, str], what: str) -> dict[str, str]:
    """Name -> why, for each entry of `sizes` (name -> `voxel_size_text`) whose voxel size
    differs from the most common one among `what` (e.g. "T2 files"). `check` warns with it,
    and so does training on a folder: the workbench treats all subjects as alike."""
    counts: dict[str, int] = {}
    for size in sizes.values():
        counts[size] = counts.get(size, 0) + 1
    if len(counts) < 2:
        return {}
    common = max(counts, key=counts.get)
    return {name: f"voxel size {size} mm differs from the other {what} ({counts[common]} of {len(sizes)} are {common} mm)"
            for name, size in sizes.items() if size != common}


def resampled_affine(affine: np.ndarray, factors) -> np.ndarray:
    """Affine of a grid whose voxel ``i`` lies at old voxel ``f * i + (f - 1) / 2`` per axis.

    That is the cell-centred convention of area averaging, bicubic interpolation with
    ``align_corners=False`` and our k-space cropping: ``f > 1`` shrinks the grid (voxels grow
    by ``f``), ``f = 1 / s`` is an ``s``-fold upsampling. The field of view is kept.
    """
    f = np.broadcast_to(np.asarray(factors, dtype=np.float64), (3,))
    step = np.eye(4)
    step[:3, :3] = np.diag(f)
    step[:3, 3] = (f - 1.0) / 2.0
    return np.asarray(affine, dtype=np.float64) @ step


def check_array(data: np.ndarray, name: str) -> np.ndarray:
    """Validate a 3D array: right rank, not empty, finite. Returns it as float32."""
    data = np.asarray(data)
    if data.ndim == 2:
        raise VolumeError(f"{name}: 2D image with shape {data.shape}; a 3D volume is needed")
    if data.ndim != 3:
        raise VolumeError(f"{name}: expected a 3D volume, got shape {data.shape}")
    if data.size == 0 or min(data.shape) == 0:
        raise VolumeError(f"{name}: empty volume with shape {data.shape}")
    data = data.astype(np.float32, copy=False)
    bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise VolumeError(f"{name}: {bad} voxels are NaN or Inf")
    if not np.any(data):
        raise VolumeError(f"{name}: empty volume (every voxel is zero)")
    return data


def affine_problems(affine: np.ndarray) -> list[str]:
    """What makes a voxel->world affine unusable: NaN/Inf, a zero or dependent column, odd voxel size."""
    affine = np.asarray(affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)):
        return ["affine has NaN or Inf entries (no usable orientation)"]
    sizes = voxel_sizes(affine)
    shown = "x".join(f"{v:.3g}" for v in sizes)
    if np.any(sizes < 1e-6):
        return [f"affine has a zero column (voxel size {shown} mm, no usable orientation)"]
    if abs(np.linalg.det(affine[:3, :3])) < 1e-3 * float(np.prod(sizes)):
        return ["degenerate affine (voxel axes are not independent, no usable orientation)"]
    low, high = VOXEL_MM
    if not np.all((sizes >= low) & (sizes <= high)):
        return [f"implausible voxel size {shown} mm (expected {low:g} to {high:g} mm)"]
    return []


def intensity_problems(data: np.ndarray) -> list[str]:
    """What makes voxel values unusable: NaN/Inf, every voxel zero, every voxel the same."""
    bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
    if bad:
        return [f"{bad} voxels are NaN or Inf"]
    low, high = float(np.min(data)), float(np.max(data))
    if low == high == 0:
        return ["empty volume (every voxel is zero)"]
    if low == high:
        return [f"intensities are constant (every voxel is {low:g}), cannot normalise"]
    return []


def validate_volume(volume: Volume) -> list[str]:
    """Every problem that makes `volume` unusable, as short phrases (empty list: usable).

    The single source of truth for `sr-lib check` (reports them) and `sr-lib apply`
    (refuses the file), so that what one passes the other accepts.
    """
    data = np.asarray(volume.data)
    if data.ndim != 3 or data.size == 0:
        return [f"expected a non-empty 3D volume, got shape {data.shape}"]
    return affine_problems(volume.affine) + intensity_problems(data)


def check_data_size(path: Path, header: nib.Nifti1Header) -> None:
    """Refuse, before allocating, a file that cannot hold the voxels its header promises.

    An uncompressed file must be at least offset + voxels * bytes long; a gzip file cannot
    expand more than `GZIP_MAX_RATIO` times (a header claiming 2000^3 floats over a few
    hundred bytes would otherwise ask for 32 GB and end in a MemoryError).
    """
    shape = tuple(int(n) for n in header.get_data_shape())
    needed = int(np.prod(shape, dtype=np.float64) * header.get_data_dtype().itemsize) + int(header.get_data_offset())
    size = path.stat().st_size
    limit = size * GZIP_MAX_RATIO if path.name.endswith(".gz") else size
    if needed > limit:
        raise VolumeError(
            f"{path}: truncated, data smaller than the header says "
            f"({'x'.join(map(str, shape))} {header.get_data_dtype()} needs {needed} bytes, the file has {size})"
        )


def load_volume(
    path: str | os.PathLike,
    *,
    volume_index: int | None = None,
    subject: str = "",
    contrast: str = "",
) -> Volume:
    """Read a 3D NIfTI (.nii or .nii.gz) in scanner units (scl_slope/inter applied).

    A 4D file needs `volume_index`; a trailing singleton 4th axis is dropped.
    Raises `VolumeError` naming the file for: missing, not NIfTI, truncated, 2D, 4D, empty,
    NaN/Inf.
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise VolumeError(f"{path}: {_link_problem(path)}")
    if not path.exists():
        raise VolumeError(f"{path}: no such file")
    if path.is_dir():
        raise VolumeError(f"{path}: is a folder, not a NIfTI file")
    if not (path.name.endswith(".nii") or path.name.endswith(".nii.gz")):
        raise VolumeError(f"{path}: not a NIfTI file (expected .nii or .nii.gz)")
    try:
        image = nib.load(path)
    except Exception as err:  # nibabel raises several kinds for unreadable headers
        raise VolumeError(f"{path}: not a readable NIfTI file ({_one_line(err)})") from None
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise VolumeError(f"{path}: not a NIfTI file ({type(image).__name__})")
    check_data_size(path, image.header)
    shape = image.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) == 4:
        if volume_index is None:
            raise VolumeError(f"{path}: 4D volume with shape {image.shape}; choose one with volume_index")
        if not 0 <= volume_index < shape[3]:
            raise VolumeError(f"{path}: volume_index {volume_index} out of range for {shape[3]} volumes")
    elif len(shape) > 4:
        raise VolumeError(f"{path}: expected a 3D volume, got shape {image.shape}")
    try:
        proxy = image.dataobj
        if len(shape) == 4:
            data = np.asarray(proxy[..., volume_index])
        else:
            data = np.asarray(proxy).reshape(shape)
    except MemoryError:
        raise VolumeError(f"{path}: too large to load in this machine's memory (shape {image.shape})") from None
    except (EOFError, OSError, zlib.error, gzip.BadGzipFile, ValueError) as err:
        raise VolumeError(f"{path}: truncated or corrupt data ({_one_line(err)})") from None
    data = check_array(data, str(path))
    return Volume(
        data=data,
        affine=image.affine,
        header=image.header.copy(),
        path=path,
        subject=subject,
        contrast=contrast,
    )


def save_volume(volume: Volume, path: str | os.PathLike, *, description: str | None = None) -> Path:
    """Write `volume` as float32 NIfTI atomically, with its affine (qform and sform) and voxel size.

    The source header is kept (orientation codes, units, intent); dimensions, scaling and
    voxel sizes are updated to match the data and affine. `description` goes into `descrip`.
    """
    path = Path(path)
    if not (path.name.endswith(".nii") or path.name.endswith(".nii.gz")):
        raise VolumeError(f"{path}: output must end with .nii or .nii.gz")
    data = np.asarray(volume.data, dtype=np.float32)
    header = volume.header.copy() if volume.header is not None else None
    image = nib.Nifti1Image(data, volume.affine, header=header)
    image.set_data_dtype(np.float32)
    image.header.set_slope_inter(1.0, 0.0)
    qcode = int(header["qform_code"]) if header is not None and int(header["qform_code"]) else 1
    scode = int(header["sform_code"]) if header is not None and int(header["sform_code"]) else 1
    image.set_qform(volume.affine, code=qcode)
    image.set_sform(volume.affine, code=scode)
    if description is not None:
        image.header["descrip"] = description.encode("ascii", "replace")[:79]
    with atomic_path(path) as tmp:
        nib.save(image, tmp)
    return path


def normalise(
    volume: Volume, *, lower_percentile: float = 0.5, upper_percentile: float = 99.5
) -> Volume:
    """Map intensities to [0, 1]: ``(x - p_low) / (p_high - p_low)``, clipped; records `Intensity`.

    Percentiles are over the whole volume, so the mostly-empty background sets the low end
    (about 0 for magnitude MRI) and the top 0.5% of voxels (vessels, fat) saturate.
    """
    data = np.asarray(volume.data, dtype=np.float32)
    intensity = robust_range(data, volume.name, lower_percentile=lower_percentile, upper_percentile=upper_percentile)
    scaled = np.clip((data - intensity.offset) / intensity.scale, 0.0, 1.0).astype(np.float32)
    return volume.replace(data=scaled, intensity=intensity)


def robust_range(data: np.ndarray, name: str, *, lower_percentile: float = 0.5, upper_percentile: float = 99.5) -> Intensity:
    """The `Intensity` of `normalise`: the percentile range, or min-max where those coincide
    (a mostly-zero volume with a small object); `VolumeError` only for a constant volume."""
    lo, hi = np.percentile(data, [lower_percentile, upper_percentile]).astype(np.float64)
    if not hi > lo:
        lo, hi = float(np.min(data)), float(np.max(data))
    if not hi > lo:
        raise VolumeError(f"{name}: intensities are constant, cannot normalise")
    return Intensity(offset=float(lo), scale=float(hi - lo))


def denormalise(volume: Volume, intensity: Intensity | None = None) -> Volume:
    """Invert `normalise`: back to scanner units with `intensity` (default: the volume's own)."""
    intensity = intensity or volume.intensity
    if intensity is None:
        raise VolumeError(f"{volume.name}: not normalised, nothing to invert")
    data = (np.asarray(volume.data, dtype=np.float64) * intensity.scale + intensity.offset).astype(np.float32)
    return volume.replace(data=data, intensity=None)


def _link_problem(path: Path) -> str:
    """Why a symbolic link cannot be opened: a loop, or a target that does not exist."""
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symlink loop (the link points back to itself)"
    return f"broken symlink (its target {os.readlink(path)} does not exist)"


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
