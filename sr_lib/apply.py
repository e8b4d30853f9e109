"""Apply a trained run to a researcher's own scans and write correct NIfTI back.

Each input is reoriented to the closest RAS voxel order (the orientation the workbench
trains in, so slice-wise methods see the same kind of slices), normalised as in
training, predicted, put back in the input's voxel order, mapped back to the input's
intensity units, and written atomically with the right affine and voxel size.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform
from tqdm.auto import tqdm

from sr_lib.io import Volume, VolumeError, denormalise, load_volume, normalise, resampled_affine, save_volume
from sr_lib.methods import Method
from sr_lib.runs import RunConfig, load_trained_method

RAS = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)


def to_ras(volume: Volume) -> tuple[Volume, np.ndarray]:
    """The volume in the closest RAS voxel order (same world positions) and the orientation used."""
    ornt = io_orientation(volume.affine)
    data = np.ascontiguousarray(apply_orientation(volume.data, ornt))
    affine = volume.affine @ inv_ornt_aff(ornt, volume.shape)
    return volume.replace(data=data, affine=affine), ornt


def from_ras(volume: Volume, ornt: np.ndarray) -> Volume:
    """Undo `to_ras`: back to the original voxel order."""
    back = ornt_transform(RAS, ornt)
    data = np.ascontiguousarray(apply_orientation(volume.data, back))
    affine = volume.affine @ inv_ornt_aff(back, volume.shape)
    return volume.replace(data=data, affine=affine)


def apply_method(method: Method, volume: Volume) -> Volume:
    """Super-resolve one volume in scanner units; returns scanner units on the HR grid."""
    ras, ornt = to_ras(volume)
    scaled = normalise(ras)
    prediction = method.predict_volume(scaled.data)
    factors = np.asarray(method.task.factors, dtype=float)
    hr = scaled.replace(data=prediction, affine=resampled_affine(ras.affine, 1.0 / factors))
    return from_ras(denormalise(hr), ornt)


@dataclasses.dataclass
class ApplyOutcome:
    input: Path
    output: Path | None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def expand_inputs(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Files, folders (every .nii/.nii.gz inside, recursively) and globs -> sorted unique paths.
    A name or glob that matches nothing is kept, so it is reported as missing."""
    paths: list[Path] = []
    for item in map(str, inputs):
        if any(ch in item for ch in "*?["):
            paths += [Path(p) for p in sorted(glob.glob(item, recursive=True))] or [Path(item)]
        elif Path(item).is_dir():
            paths += sorted(p for p in Path(item).rglob("*") if p.name.endswith((".nii", ".nii.gz")))
        else:
            paths.append(Path(item))
    return list(dict.fromkeys(paths))


def output_path(input_path: Path, out_dir: Path, config: RunConfig) -> Path:
    stem = input_path.name.removesuffix(".gz").removesuffix(".nii")
    return out_dir / f"{stem}_{config.method}-{config.scenario}.nii.gz"


def apply_run(run_dir: str | os.PathLike, inputs: Iterable[str | os.PathLike], out_dir: str | os.PathLike,
              *, progress: bool = True) -> list[ApplyOutcome]:
    """Apply the run in `run_dir` to every input; a bad input is reported and skipped."""
    method, config = load_trained_method(run_dir)
    out_dir = Path(out_dir)
    paths = expand_inputs(list(inputs))
    sources = {p.resolve() for p in paths}  # an output must not replace any input of the batch
    outcomes = []
    for path in tqdm(paths, desc=f"apply {config.method}", unit="volume", disable=not progress):
        target = output_path(path, out_dir, config)
        try:
            if target.resolve() in sources:
                raise VolumeError(f"{path}: output {target} would overwrite an input")
            volume = load_volume(path)
            result = apply_method(method, volume)
            save_volume(result, target, description=f"sr_lib {config.method} {config.scenario} x{config.scale} {config.profile}")
            outcomes.append(ApplyOutcome(path, target))
        except (VolumeError, ValueError, OSError) as err:
            message = (str(err).splitlines() or [type(err).__name__])[0]
            outcomes.append(ApplyOutcome(path, None, message if str(path) in message else f"{path}: {message}"))
    return outcomes
