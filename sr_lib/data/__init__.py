"""Datasets (phantom, IXI, any folder), subject splits, slices and patch samplers.

``load_dataset("phantom")`` is the offline default: simulated T1/T2/PD brains cached on first
use. Every source gives a `Dataset` of (subject, contrast, path) records; splits are by
subject (DESIGN.md, "Concepts").
"""

from __future__ import annotations

import os

from sr_lib.data.folders import (
    CONTRASTS,
    Dataset,
    Record,
    canonical_contrast,
    folder_dataset,
    ixi_dataset,
    read_manifest,
    write_manifest,
)
from sr_lib.data.phantom import phantom_dataset, phantom_grid, simulate_subject, subject_tissues
from sr_lib.data.slices import (
    PairedPatchSampler, SliceDataset, UnpairedPatchSampler, iter_slices, make_sampler, slice_indices,
)
from sr_lib.data.splits import Split, split_for_profile, split_subjects
from sr_lib.profiles import Profile

DATASETS: tuple[str, ...] = ("phantom", "ixi", "folder")

__all__ = [
    "CONTRASTS", "DATASETS", "Dataset", "PairedPatchSampler", "Record", "SliceDataset", "Split",
    "UnpairedPatchSampler", "canonical_contrast", "folder_dataset", "iter_slices", "ixi_dataset",
    "load_dataset", "make_sampler", "phantom_dataset", "phantom_grid", "read_manifest", "simulate_subject",
    "slice_indices", "split_for_profile", "split_subjects", "subject_tissues", "write_manifest",
]


def load_dataset(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    profile: str | Profile = "quick",
    seed: int = 0,
    manifest: str | os.PathLike | None = None,
) -> Dataset:
    """A dataset by name: "phantom" (cached under `root`, default the cache folder; sized by
    `profile`, seeded by `seed`), "ixi" or "folder" (files under `root`; "folder" takes an
    optional CSV `manifest`)."""
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if name == "phantom":
        return phantom_dataset(profile, seed=seed, root=root)
    if root is None:
        raise ValueError(f"dataset {name!r} needs root= (the folder holding its NIfTI files)")
    if name == "ixi":
        return ixi_dataset(root)
    return folder_dataset(root, manifest=manifest)
