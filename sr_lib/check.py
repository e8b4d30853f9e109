"""`sr-lib check`: validate NIfTI files or a dataset folder before using them.

Every file is read in full (so truncation is caught) and checked: readable NIfTI, 3D,
finite, not empty, a usable affine (orientation, voxel size), a name that gives subject
and contrast (as the folder datasets read it: ``sub-01_ses-1_T2w``, ``IXI002-Guys-0828-T2``,
``scan-PD``; `apply`'s outputs ``sub-01_ses-1_desc-srcnnKspace2x_T2w`` pass), and a BIDS name
that agrees with its ``sub-``/``ses-`` folders; then per subject, T2 and PD must share a grid
(one dual-echo acquisition, as in IXI). The result is a table with one row per file, a `problem` column (the file is
unusable) and a `warning` column (usable, but odd: a voxel size or grid that differs from
the other files of the same contrast, naming the common one).

The usability rules are `sr_lib.io.validate_volume`, the very function `apply` refuses
files on, so `check` and `apply` cannot disagree. Unfinished temporary files of the
workbench are skipped and listed in ``table.attrs["skipped"]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import pandas as pd
from tqdm.auto import tqdm

from sr_lib.apply import find_inputs
from sr_lib.data.folders import layout_problem, parse_name
from sr_lib.io import VolumeError, load_volume, odd_voxel_sizes, validate_volume, voxel_size_text

COLUMNS = ["path", "subject", "contrast", "shape", "voxel_size_mm", "orientation", "problem", "warning"]
SHARED_GRID = ("T2", "PD")  # acquired together (dual echo): must share a grid


def check_file(path: Path) -> dict[str, object]:
    """One row of the check table for `path` (problem = "" when it is usable)."""
    row: dict[str, object] = {**dict.fromkeys(COLUMNS, ""), "path": str(path)}
    problems = []
    try:
        name = parse_name(path)
    except KeyError:
        name = None
    if name is None:
        problems.append("name gives no contrast (expected e.g. sub-01_T2w.nii.gz or IXI002-Guys-0828-T2.nii.gz)")
    else:
        row["subject"], row["contrast"] = name
    if problem := layout_problem(path):
        problems.append(problem)
    try:
        volume = load_volume(path)
    except Exception as err:  # one unreadable file must not sink the table; KeyboardInterrupt passes
        text = (str(err).strip().splitlines() or [""])[0] or type(err).__name__
        problems.insert(0, text.removeprefix(f"{path}: ") if isinstance(err, VolumeError) else f"{type(err).__name__}: {text}")
        row["problem"] = "; ".join(problems)
        return row
    row["shape"] = "x".join(map(str, volume.shape))
    row["voxel_size_mm"] = voxel_size_text(volume.affine)
    volume_problems = validate_volume(volume)
    if not any("affine" in p for p in volume_problems):
        row["orientation"] = "".join(nib.aff2axcodes(volume.affine))
    row["problem"] = "; ".join(volume_problems + problems)
    return row


def check_paths(paths: Sequence[str | Path], *, progress: bool = True) -> pd.DataFrame:
    """Check files, folders (recursively) and globs; returns one row per file."""
    found = find_inputs(paths)
    rows = [{**dict.fromkeys(COLUMNS, ""), "path": str(folder), "problem": f"no NIfTI files found in {folder}"}
            for folder in found.empty]
    rows += [check_file(p) for p in tqdm(found.paths, desc="check", unit="file", disable=not progress)]
    table = pd.DataFrame(rows, columns=COLUMNS)
    _check_shared_grids(table)
    _warn_odd_grids(table)
    table.attrs["skipped"] = [f"{path} ({why})" for path, why in found.skipped]
    return table


def _add(table: pd.DataFrame, index, column: str, text: str) -> None:
    table.loc[index, column] = "; ".join(filter(None, [table.loc[index, column], text]))


def _check_shared_grids(table: pd.DataFrame) -> None:
    """Per subject: T2 and PD share a grid (both files named, since either may be the odd one);
    a contrast given twice is a problem of both files."""
    for subject, group in table[table["subject"] != ""].groupby("subject"):
        shared = group[group["contrast"].isin(SHARED_GRID) & (group["shape"] != "")]
        if shared["shape"].nunique() > 1 or shared["voxel_size_mm"].nunique() > 1:
            grids = ", ".join(f"{r.contrast} {r.shape} @ {r.voxel_size_mm} mm ({Path(r.path).name})" for r in shared.itertuples())
            for index in shared.index:
                _add(table, index, "problem", f"T2 and PD grids differ ({grids})")
        duplicated = group[group.duplicated("contrast", keep=False)]
        for index in duplicated.index:
            others = ", ".join(table.loc[i, "path"] for i in duplicated.index if i != index)
            _add(table, index, "problem", f"subject {subject} has this contrast twice (also {others})")


def _warn_odd_grids(table: pd.DataFrame) -> None:
    """Per contrast across subjects: a file whose voxel size differs from the most common one
    is named in `warning` (a folder dataset trains on all of them as if alike)."""
    readable = table[(table["contrast"] != "") & (table["voxel_size_mm"] != "")]
    for contrast, group in readable.groupby("contrast"):
        for index, why in odd_voxel_sizes(group["voxel_size_mm"].to_dict(), f"{contrast} files").items():
            _add(table, index, "warning", why)
