"""`sr-lib check`: validate NIfTI files or a dataset folder before using them.

Every file is read in full (so truncation is caught) and checked: readable NIfTI, 3D,
finite, not empty, a usable affine (orientation, voxel size), a name that gives subject
and contrast; then per subject, T2 and PD must share a grid (one dual-echo acquisition,
as in IXI). The result is a table with one row per file and a `problem` column.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from sr_lib.apply import expand_inputs
from sr_lib.data.folders import parse_name
from sr_lib.io import VolumeError, load_volume, voxel_sizes

COLUMNS = ["path", "subject", "contrast", "shape", "voxel_size_mm", "orientation", "problem"]
SHARED_GRID = ("T2", "PD")  # acquired together (dual echo): must share a grid


def check_file(path: Path) -> dict[str, object]:
    """One row of the check table for `path` (problem = "" when it is usable)."""
    row: dict[str, object] = {"path": str(path), "subject": "", "contrast": "", "shape": "", "voxel_size_mm": "",
                              "orientation": "", "problem": ""}
    problems = []
    try:
        name = parse_name(path)
    except KeyError:
        name = None
    if name is None:
        problems.append("name gives no contrast (expected e.g. sub-01_T2.nii.gz or IXI002-Guys-0828-T2.nii.gz)")
    else:
        row["subject"], row["contrast"] = name
    try:
        volume = load_volume(path)
    except VolumeError as err:
        problems.insert(0, str(err).removeprefix(f"{path}: "))
        row["problem"] = "; ".join(problems)
        return row
    sizes = voxel_sizes(volume.affine)
    row["shape"] = "x".join(map(str, volume.shape))
    row["voxel_size_mm"] = "x".join(f"{v:.3g}" for v in sizes)
    if abs(np.linalg.det(volume.affine[:3, :3])) < 1e-9:
        problems.append("singular affine (no orientation)")
    else:
        row["orientation"] = "".join(nib.aff2axcodes(volume.affine))
        if not np.all((sizes > 0.05) & (sizes < 20)):
            problems.append(f"implausible voxel size {row['voxel_size_mm']} mm")
    row["problem"] = "; ".join(problems)
    return row


def check_paths(paths: Sequence[str | Path], *, progress: bool = True) -> pd.DataFrame:
    """Check files, folders (recursively) and globs; returns one row per file."""
    files = expand_inputs(paths)
    if not files:
        return pd.DataFrame([{**dict.fromkeys(COLUMNS, ""), "path": ", ".join(map(str, paths)), "problem": "no NIfTI files found"}])
    table = pd.DataFrame([check_file(p) for p in tqdm(files, desc="check", unit="file", disable=not progress)], columns=COLUMNS)
    for subject, group in table[table["subject"] != ""].groupby("subject"):
        shared = group[group["contrast"].isin(SHARED_GRID) & (group["shape"] != "")]
        if shared["shape"].nunique() > 1 or shared["voxel_size_mm"].nunique() > 1:
            grids = ", ".join(f"{r.contrast} {r.shape} @ {r.voxel_size_mm} mm" for r in shared.itertuples())
            for index in shared.index:
                table.loc[index, "problem"] = "; ".join(filter(None, [table.loc[index, "problem"], f"T2 and PD grids differ ({grids})"]))
        duplicated = group[group.duplicated("contrast", keep=False)]
        for index in duplicated.index:
            table.loc[index, "problem"] = "; ".join(filter(None, [table.loc[index, "problem"], f"subject {subject} has this contrast twice"]))
    return table
