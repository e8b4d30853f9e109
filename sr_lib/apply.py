"""Apply a trained run to a researcher's own scans and write correct NIfTI back.

Each input is viewed in the closest RAS voxel order (the orientation the workbench trains
in, so slice-wise methods see the same kind of slices), normalised as in training,
predicted slab by slab into a preallocated output in the input's own voxel order, mapped
back to the input's intensity units, and written atomically with the right affine and
voxel size.

What a batch promises (issue 14):

- every bad input gets one line naming the file; the rest of the batch is processed;
- inputs are validated by `sr_lib.io.validate_volume`, the same function `check` uses;
- outputs are flat, with BIDS-derivative names (`output_name`, issue 13):
  ``<out>/sub-01_ses-1_desc-srcnnKspace2x_T2w.nii.gz`` for ``sub-01_ses-1_T2w.nii.gz``,
  ``<out>/scan_desc-srcnnKspace2x_T2w.nii.gz`` for ``scan.nii.gz``; `check` reads them as the
  run's contrast. Two inputs that would give the same output name (``colA/s_T2.nii.gz`` and
  ``colB/s_T2.nii.gz``) are both refused up front, naming each other: nothing is lost and no
  name is invented;
- an input whose name gives another contrast than the run's (``sub-01_T1w.nii.gz`` for a T2
  run, or a BIDS ``_FLAIR``) is refused on one line naming both; a name that gives no
  contrast (``scan.nii.gz``) is applied, its output named with the run's contrast and its
  line noting that it was assumed (a name without a contrast token says nothing either way);
- an existing output stops the batch before anything is written, naming it, unless
  ``overwrite`` (``--overwrite``): then an sr_lib output (its NIfTI ``descrip`` starts with
  "sr_lib") is replaced and the line says so; any other existing file, and every input of
  the batch, is never overwritten;
- folders and globs skip the workbench's own temporary files (`sr_lib.atomic.is_partial`)
  and sr_lib outputs, saying so, so `--out` may equal the input folder;
- SIGTERM and Ctrl-C remove the file being written; a non-finite prediction is refused.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np
import torch
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform
from tqdm.auto import tqdm

from sr_lib.atomic import is_partial, read_json, terminate_as_interrupt
from sr_lib.data.folders import (CONTRAST_SUFFIXES, bids_suffix, canonical_contrast, contrast_in_name, nifti_stem,
                                 parse_bids, parse_name)
from sr_lib.degrade import scenario_scales
from sr_lib.io import (Intensity, Volume, VolumeError, load_volume, resampled_affine, robust_range, save_volume,
                       validate_volume)

if TYPE_CHECKING:
    from sr_lib.methods import Method
    from sr_lib.runs import RunConfig

RAS = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)
SLAB = 16  # at most this many slices per prediction for slice-wise methods (one progress tick each)
SLAB_HR_VOXELS = 2**21  # ... and at most about this many output voxels: a 2D net's activations
# scale with them (9x9 im2col of SRCNN on 1024^2 slices: ~0.3 GB per slice), so 512^2 inputs
# at x2 go two slices at a time, 128^2 inputs sixteen
OUTPUT_TAG = b"sr_lib"  # start of the NIfTI descrip of every file `apply` writes


def load_method(run_dir: str | os.PathLike) -> tuple[Method, RunConfig]:
    """The trained method and config of a run folder; the one place `apply` touches `sr_lib.runs`.

    A broken ``config.json`` (empty, not JSON, not an object, unknown fields) is a one-line
    `ValueError` naming it instead of a codec or TypeError traceback.
    """
    from sr_lib.runs import load_trained_method

    config = Path(run_dir) / "config.json"
    if config.exists():
        read_json(config)
    try:
        return load_trained_method(run_dir)
    except (TypeError, KeyError, ValueError) as err:
        text = _one_line(err)
        raise ValueError(text if str(run_dir) in text else f"{config}: not a usable run config ({text})") from None


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


def slab_regions(shape: tuple[int, ...], axis: int | None, slab: int) -> Iterator[tuple[slice, ...]]:
    """Index tuples covering `shape` in slabs of `slab` slices along `axis` (None: one region)."""
    if axis is None:
        yield (slice(None),) * len(shape)
        return
    for start in range(0, shape[axis], slab):
        region = [slice(None)] * len(shape)
        region[axis] = slice(start, start + slab)
        yield tuple(region)


def repeat_voxels(data: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour upsampling by integer `factors` (each voxel becomes a block)."""
    for axis, factor in enumerate(factors):
        if factor > 1:
            data = np.repeat(data, factor, axis=axis)
    return data


def predict_slab(method: Method, lr: np.ndarray, intensity: Intensity, name: str) -> np.ndarray:
    """Super-resolve one slab in scanner units -> float32 scanner units on the HR grid.

    The model sees the slab normalised and clipped to [0, 1], as in training (and its
    output is clamped there). What the clip removed (the top and bottom 0.5% of
    intensities: vessels, fat, a scanner intercept) is added back by nearest-neighbour
    upsampling, so every input voxel's footprint keeps its value and the output spans the
    input's whole range instead of saturating at the 99.5th percentile.
    """
    normalised = (np.asarray(lr, dtype=np.float32) - np.float32(intensity.offset)) / np.float32(intensity.scale)
    clipped = np.clip(normalised, 0.0, 1.0)
    excess = np.subtract(normalised, clipped, out=normalised)
    prediction = np.asarray(method.predict_volume(clipped), dtype=np.float32)
    if bad := int(prediction.size - np.count_nonzero(np.isfinite(prediction))):
        raise VolumeError(f"{name}: prediction has {bad} non-finite voxels (NaN/Inf weights?); nothing written")
    if np.any(excess):
        prediction = prediction + repeat_voxels(excess, method.task.factors)
    prediction *= np.float32(intensity.scale)
    prediction += np.float32(intensity.offset)
    return prediction


def slab_size(hr_slice_voxels: int, slab: int = SLAB) -> int:
    """Slices per prediction: at most `slab`, and about `SLAB_HR_VOXELS` output voxels."""
    return max(1, min(slab, SLAB_HR_VOXELS // max(hr_slice_voxels, 1)))


def apply_method(method: Method, volume: Volume, *, slab: int = SLAB, progress: bool = False) -> Volume:
    """Super-resolve one volume in scanner units; returns scanner units on the HR grid.

    Streams: the RAS order is a view of the input, the output is preallocated in the
    input's voxel order and filled through its RAS view, slab by slab along the method's
    slice axis (the whole volume at once for 3D methods), so peak memory is the input, the
    output and one slab's temporaries.
    """
    factors = tuple(int(f) for f in method.task.factors)
    ornt = io_orientation(volume.affine)
    ras = apply_orientation(volume.data, ornt)
    ras_affine = volume.affine @ inv_ornt_aff(ornt, volume.shape)
    intensity = robust_range(volume.data, volume.name)
    input_factors = [factors[int(axis)] for axis in ornt[:, 0]]  # RAS axis of each input axis
    out = np.empty(tuple(n * f for n, f in zip(volume.shape, input_factors)), dtype=np.float32)
    out_ras = apply_orientation(out, ornt)  # a writable view in RAS order
    axis = method.task.axis if method.task.spatial_dims == 2 else None
    if axis is not None:
        slab = slab_size(out.size // out_ras.shape[axis], slab)
    regions = list(slab_regions(ras.shape, axis, slab))
    for region in tqdm(regions, desc=printable(Path(volume.name).name), unit="slab", leave=False, disable=not progress):
        out_ras[region] = predict_slab(method, ras[region], intensity, volume.name)
    hr_ras_affine = resampled_affine(ras_affine, 1.0 / np.asarray(factors, dtype=float))
    back = ornt_transform(RAS, ornt)
    return volume.replace(data=out, affine=hr_ras_affine @ inv_ornt_aff(back, out_ras.shape), intensity=None)


@dataclasses.dataclass
class ApplyOutcome:
    input: Path
    output: Path | None
    error: str = ""
    note: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


@dataclasses.dataclass
class Inputs:
    """What `find_inputs` found: files to process, files skipped (with why), empty folders."""

    paths: list[Path]
    skipped: list[tuple[Path, str]] = dataclasses.field(default_factory=list)
    empty: list[Path] = dataclasses.field(default_factory=list)


def is_nifti_name(path: Path) -> bool:
    return path.name.endswith((".nii", ".nii.gz"))


def is_sr_lib_output(path: Path) -> bool:
    """True if `path` is a NIfTI whose descrip says `apply` (or a run) wrote it; reads the header only."""
    try:
        return bytes(nib.load(path).header["descrip"]).startswith(OUTPUT_TAG)
    except Exception:  # unreadable: not ours, let the loader report it
        return False


def walk_nifti(folder: Path) -> list[Path]:
    """NIfTI names under `folder`, recursively, following links to folders but never a folder twice
    (a symlink loop ends there). A file link that loops is listed, so it is reported."""
    found, seen = [], set()
    for parent, dirs, files in os.walk(folder, followlinks=True):
        try:
            key = (os.stat(parent).st_dev, os.stat(parent).st_ino)
        except OSError:
            dirs[:] = []
            continue
        if key in seen:
            dirs[:] = []
            continue
        seen.add(key)
        found += [Path(parent) / name for name in files if is_nifti_name(Path(name))]
    return sorted(found)


def find_inputs(inputs: Sequence[str | os.PathLike], *, skip_outputs: bool = False) -> Inputs:
    """Files, folders (every .nii/.nii.gz inside, recursively) and globs -> sorted unique paths.

    Folders and globs skip `atomic_path` temporary files and, with `skip_outputs`, files
    written by sr_lib; both are listed in `skipped`. A file named explicitly is always kept;
    a name or glob that matches nothing is kept, so it is reported as missing; a folder
    with no NIfTI file goes to `empty`.
    """
    found = Inputs(paths=[])
    for item in map(str, inputs):
        if any(ch in item for ch in "*?["):
            expanded = [Path(p) for p in sorted(glob.glob(item, recursive=True)) if is_nifti_name(Path(p))]
            found.paths += _keep(expanded, found, skip_outputs) if expanded else [Path(item)]
        elif Path(item).is_dir():
            expanded = walk_nifti(Path(item))
            found.paths += _keep(expanded, found, skip_outputs)
            if not expanded:
                found.empty.append(Path(item))
        else:
            found.paths.append(Path(item))
    found.paths = list(dict.fromkeys(found.paths))
    found.skipped = list(dict.fromkeys(found.skipped))
    return found


def _keep(paths: list[Path], found: Inputs, skip_outputs: bool) -> list[Path]:
    """The paths to process; the others are recorded in `found.skipped`."""
    kept = []
    for path in paths:
        if is_partial(path):
            found.skipped.append((path, "an unfinished sr_lib temporary file (left by a killed run; safe to delete)"))
        elif skip_outputs and is_sr_lib_output(path):
            found.skipped.append((path, "an output of sr_lib, not an input"))
        else:
            kept.append(path)
    return kept


def expand_inputs(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """The paths of `find_inputs` (temporary files skipped)."""
    return find_inputs(inputs).paths


def desc_label(config: RunConfig) -> str:
    """The BIDS ``desc-`` label of a run's outputs: method and scenario in camelCase, letters
    and digits only as BIDS requires ("srcnn", "kspace-2x" -> "srcnnKspace2x"); where the
    scenario takes several scales the scale follows ("srcnn", "SR-B", 4 -> "srcnnSRBx4")."""
    words = [word for word in re.split(r"[^A-Za-z0-9]+", f"{config.method}-{config.scenario}") if word]
    label = words[0] + "".join(word[0].upper() + word[1:] for word in words[1:])
    return label + (f"x{config.scale}" if len(scenario_scales(config.scenario)) > 1 else "")


def output_name(input_path: Path, config: RunConfig) -> str:
    """The file name `apply` gives the output of `input_path`: a BIDS-derivative name that
    `sr-lib check` reads as the run's contrast.

    - BIDS input: its entities in order, then ``desc-<desc_label>``, then the BIDS suffix of
      the run's contrast: ``sub-01_ses-1_T2w.nii.gz`` -> ``sub-01_ses-1_desc-srcnnKspace2x_T2w.nii.gz``.
      An input's own ``desc-`` label is kept in front (``desc-preproc`` -> ``desc-preprocSrcnnKspace2x``).
    - any other input: its name less the contrast token, then the same ending:
      ``IXI002-Guys-0828-T2.nii.gz`` -> ``IXI002-Guys-0828_desc-srcnnKspace2x_T2w.nii.gz``,
      ``scan.nii.gz`` -> ``scan_desc-srcnnKspace2x_T2w.nii.gz``.
    """
    desc, suffix = desc_label(config), bids_suffix(config.contrast)
    bids = parse_bids(input_path)
    if bids is not None and contrast_in_name(input_path) is not None:  # a BIDS name and its contrast suffix
        if own := bids.get("desc"):
            desc = own + desc[0].upper() + desc[1:]
        return f"{bids.prefix(without=('desc',))}_desc-{desc}_{suffix}.nii.gz"
    parsed = parse_name(input_path)
    return f"{parsed[0] if parsed else nifti_stem(input_path)}_desc-{desc}_{suffix}.nii.gz"


def output_path(input_path: Path, out_dir: Path, config: RunConfig) -> Path:
    """`out_dir` / `output_name`: outputs are flat, whatever folder the input came from."""
    return out_dir / output_name(input_path, config)


def _contrast_text(contrast: str) -> str:
    """How a contrast is shown: its BIDS suffix where it has one ("T2" -> "T2w")."""
    return CONTRAST_SUFFIXES.get(contrast, contrast)


@dataclasses.dataclass(frozen=True)
class Planned:
    """What `apply` does with one input: writes `target`, or nothing (`error`, one line
    naming the input); `note` goes on its line; `exists`: `target` is already there."""

    target: Path | None
    error: str = ""
    note: str = ""
    exists: bool = False


def plan_outputs(paths: list[Path], out_dir: Path, config: RunConfig, *, overwrite: bool = False) -> dict[Path, Planned]:
    """Each input's output, or why it gets none, decided from names alone (before any work).

    Refused, each on one line naming the input: a name that gives another contrast than the
    run's (``sub-01_T1w`` for a T2 run; a name that gives none is applied with a note); the
    same output as another input; an output that would overwrite an input; an existing
    output that sr_lib did not write when `overwrite` is set (never replaced). Every existing
    output is marked `exists`: `apply_run` refuses the whole batch for it unless `overwrite`.
    """
    run_contrast = canonical_contrast(config.contrast)
    shown = _contrast_text(run_contrast)
    targets = {path: output_path(path, out_dir, config) for path in paths}
    by_target: dict[str, list[Path]] = {}
    for path, target in targets.items():
        by_target.setdefault(os.path.normcase(os.path.realpath(target)), []).append(path)
    sources = {os.path.realpath(p) for p in paths}
    plan: dict[Path, Planned] = {}
    for path, target in targets.items():
        claimed = contrast_in_name(path)
        others = [p for p in by_target[os.path.normcase(os.path.realpath(target))] if p != path]
        note = "" if claimed else f"name gives no contrast; taken as {shown}, the run's"
        if claimed is not None and claimed != run_contrast:
            plan[path] = Planned(None, f"{path}: the name gives contrast {_contrast_text(claimed)} but the run was "
                                       f"trained on {shown}; apply a {_contrast_text(claimed)} run, or rename the file "
                                       f"if it is {shown}")
        elif others:
            plan[path] = Planned(None, f"{path}: same output {target.name} as {', '.join(map(str, others))}; "
                                       f"rename one or apply them in separate runs (none of them written)")
        elif os.path.realpath(target) in sources:
            plan[path] = Planned(None, f"{path}: output {target} would overwrite an input")
        elif os.path.lexists(target) and not is_sr_lib_output(target):
            if overwrite:
                plan[path] = Planned(None, f"{path}: output {target} exists and was not written by sr_lib; "
                                           f"not overwritten, even with --overwrite")
            else:
                plan[path] = Planned(target, note=note, exists=True)
        else:
            plan[path] = Planned(target, note=note, exists=os.path.lexists(target))
    return plan


def existing_outputs_error(plan: dict[Path, Planned]) -> str:
    """One line naming the outputs that already exist ("" if none): without --overwrite they
    stop the batch before anything is written."""
    existing = [planned.target for planned in plan.values() if planned.exists and planned.target is not None]
    if not existing:
        return ""
    first = existing[0]
    foreign = "" if is_sr_lib_output(first) else " (not written by sr_lib: never replaced, move it away)"
    more = f" (and {len(existing) - 1} more output(s) of this batch)" if len(existing) > 1 else ""
    return (f"{first}: output exists{foreign}{more}; nothing written; pass --overwrite to replace "
            f"earlier sr_lib outputs")


def apply_run(run_dir: str | os.PathLike, inputs: Iterable[str | os.PathLike], out_dir: str | os.PathLike,
              *, progress: bool = True, slab: int = SLAB, found: Inputs | None = None,
              overwrite: bool = False) -> list[ApplyOutcome]:
    """Apply the run in `run_dir` to every input; a bad input is reported and skipped.

    Outputs are named by `output_name`. An output that exists already raises
    `FileExistsError` naming it before anything is written, unless `overwrite` (then
    earlier sr_lib outputs are replaced, and the line says so; other files never are).
    `found` (from `find_inputs(..., skip_outputs=True)`) lets a caller show what was
    skipped; by default the inputs are expanded here. SIGTERM during the batch raises
    `sr_lib.atomic.Terminated` after removing the file being written.
    """
    method, config = load_method(run_dir)
    found = found or find_inputs(list(inputs), skip_outputs=True)
    plan = plan_outputs(found.paths, Path(out_dir), config, overwrite=overwrite)
    if not overwrite and (exists := existing_outputs_error(plan)):
        raise FileExistsError(exists)
    description = f"sr_lib {config.method} {config.scenario} x{config.scale} {config.profile}"
    outcomes = [ApplyOutcome(folder, None, f"{folder}: no NIfTI files found in {folder}") for folder in found.empty]
    _limit_threads()
    with terminate_as_interrupt():  # no inference_mode: a method may optimise at test time (nets use no_grad)
        for path in tqdm(found.paths, desc=f"apply {config.method}", unit="volume", disable=not progress):
            outcomes.append(apply_one(method, path, plan[path], description, slab=slab, progress=progress))
    return outcomes


def apply_one(method: Method, path: Path, planned: Planned, description: str, *, slab: int,
              progress: bool) -> ApplyOutcome:
    """Load, validate, predict and write one input; any error becomes a one-line outcome."""
    if planned.target is None:
        return ApplyOutcome(path, None, planned.error)
    target = planned.target
    try:
        volume = load_volume(path)
        if problems := validate_volume(volume):
            raise VolumeError(f"{path}: {'; '.join(problems)}")
        result = apply_method(method, volume, slab=slab, progress=progress)
        replaced = os.path.lexists(target)
        save_volume(result, target, description=description)
        notes = [planned.note, "replaced an earlier sr_lib output" if replaced else ""]
        return ApplyOutcome(path, target, note="; ".join(filter(None, notes)))
    except Exception as err:  # one bad file must not sink the batch; KeyboardInterrupt passes
        message = _one_line(err)
        if not isinstance(err, (VolumeError, ValueError, OSError)):
            message = f"{type(err).__name__}: {message}"
        return ApplyOutcome(path, None, message if str(path) in message else f"{path}: {message}")


def printable(text: str) -> str:
    """`text` safe to print on any terminal: undecodable file-name bytes shown as escapes
    (printing them raw raises UnicodeEncodeError after the work is done)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _limit_threads() -> None:
    """No more torch threads than the cores this process may use (shared machines, containers)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if torch.get_num_threads() > cores:
        torch.set_num_threads(cores)


def _one_line(err: BaseException) -> str:
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    lines = text.strip().splitlines()
    return lines[0] if lines else type(err).__name__
