"""Data preparation for a run: load, normalise, split by subject, degrade.

The result depends only on (dataset and its files, contrast, scenario, scale, pairing,
profile, data seed), so it is cached twice: in the process (the methods of a study share
it) and on disk under the cache folder, keyed by a hash of those inputs, the scenario's
settings and the files' sizes and modification times (a changed file means new data).

Seeding rule, the one place it is written: the training triples use
``default_rng([data_seed, 1])``, validation ``[data_seed, 2]``, test subject ``i``
``[data_seed, 3, i]``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from sr_lib.atomic import atomic_path, write_json
from sr_lib.data import Dataset, Split, load_dataset, split_subjects
from sr_lib.data.folders import read_header
from sr_lib.data.phantom import FORMAT_VERSION as PHANTOM_FORMAT
from sr_lib.degrade import degrade_volume, get_scenario, make_training_pairs
from sr_lib.experiment import RunConfig
from sr_lib.io import Intensity, Volume, VolumeError, odd_voxel_sizes, voxel_size_text
from sr_lib.methods import TrainData
from sr_lib.paths import cache_dir
from sr_lib.profiles import get_profile

PREPARED_FORMAT = 1  # bump when preparation changes, so cached data is rebuilt


def data_rng(data_seed: int, *stream: int) -> np.random.Generator:
    """The generator for one stream of the seeding rule above."""
    return np.random.default_rng([data_seed, *stream])


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """Everything data preparation depends on."""

    dataset: str
    root: str | None
    contrast: str
    scenario: str
    scale: int
    pairing: str
    profile: str
    data_seed: int

    @staticmethod
    def of(config: RunConfig) -> "DataSpec":
        c = config
        return DataSpec(c.dataset, c.root, c.contrast, c.scenario, c.scale, c.pairing, c.profile, c.data_seed)


@dataclasses.dataclass
class TestCase:
    """One test subject: HR and LR as Volumes (normalised to [0, 1]), hole mask, degradation params."""

    hr: Volume
    lr: Volume
    mask: Volume | None
    params: dict[str, Any]


@dataclasses.dataclass
class ExperimentData:
    split: Split
    train: TrainData
    test: list[TestCase]
    fingerprint: str


def load_source(spec: DataSpec) -> Dataset:
    return load_dataset(spec.dataset, root=spec.root, profile=spec.profile, seed=spec.data_seed).select(spec.contrast)


def dataset_fingerprint(dataset: Dataset, spec: DataSpec) -> str:
    """The phantom's format version; for files, a hash of each file's name, size and mtime (and,
    where a participant has several sessions or runs, of the split by participant that made
    them share a split: runs and cached data from before it are not reused)."""
    if spec.dataset == "phantom":
        return f"phantom-v{PHANTOM_FORMAT}"
    digest = hashlib.sha1()
    for subject in dataset.subjects():
        path = dataset.path(subject, spec.contrast)
        stat = path.stat()
        digest.update(f"{subject}|{path.name}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    if len(dataset.participants()) < len(dataset.subjects()):  # split by participant since issue 13: new split
        digest.update(b"split by participant\n")
    return f"files-{digest.hexdigest()[:12]}"


def data_fingerprint(config: RunConfig) -> str:
    spec = DataSpec.of(config)
    return dataset_fingerprint(load_source(spec), spec)


def prepare_data(config: RunConfig, *, use_disk: bool = True) -> ExperimentData:
    """Load, normalise, split by subject and degrade, for `config`'s data (cached)."""
    spec = DataSpec.of(config)
    dataset = load_source(spec)
    return _prepare(spec, dataset_fingerprint(dataset, spec), use_disk)


@functools.lru_cache(maxsize=4)
def _prepare(spec: DataSpec, fingerprint: str, use_disk: bool) -> ExperimentData:
    scenario = get_scenario(spec.scenario, scale=spec.scale)
    key = hashlib.sha1(json.dumps([PREPARED_FORMAT, dataclasses.asdict(spec), fingerprint, scenario.to_dict()],
                                  sort_keys=True, default=str).encode()).hexdigest()[:16]
    folder = cache_dir() / "prepared" / key
    if use_disk:
        try:
            return _read(folder, fingerprint)
        except (OSError, ValueError, KeyError):
            shutil.rmtree(folder, ignore_errors=True)  # absent or damaged: rebuild
    data = _build(spec, fingerprint)
    if use_disk:
        _write(folder, data)
    return data


def _build(spec: DataSpec, fingerprint: str) -> ExperimentData:
    prof = get_profile(spec.profile)
    dataset = load_source(spec)
    split = split_subjects(dataset.subjects(), n_val=prof.n_val, n_test=prof.n_test, seed=spec.data_seed)
    scenario = get_scenario(spec.scenario, scale=spec.scale)

    _warn_odd_voxel_sizes(dataset, split.train + split.val + split.test, spec.contrast)

    def hr(subject: str) -> Volume:
        return dataset.load(subject, spec.contrast, normalised=True)

    def triples(subjects, pairing, rng):
        volumes = [hr(s) for s in subjects]
        try:
            return [tuple(t) for t in make_training_pairs([v.data for v in volumes], scenario, pairing, rng,
                                                              voxel_size=[v.voxel_size for v in volumes])]
        except ValueError as err:
            raise VolumeError(f"{volumes[0].path or subjects[0]} ({len(volumes)} {pairing} subjects): {err}") from None

    train = triples(split.train, spec.pairing, data_rng(spec.data_seed, 1))
    val = triples(split.val, "paired", data_rng(spec.data_seed, 2))
    test = []
    for i, subject in enumerate(split.test):
        volume = hr(subject)
        try:
            lr, mask, params = degrade_volume(volume, scenario, data_rng(spec.data_seed, 3, i))
        except ValueError as err:  # e.g. a scale that does not divide the grid
            raise VolumeError(f"{volume.path}: {err}") from None
        test.append(TestCase(volume, lr, mask, params))
    return ExperimentData(split, TrainData(train, val, spec.pairing), test, fingerprint)


def _warn_odd_voxel_sizes(dataset: Dataset, subjects: list[str], contrast: str) -> None:
    """Warn (one line per file) where a subject's voxel size differs from the others': the
    nets train on voxels, so mixed sizes mix scales. Reads headers only."""
    sizes = {str(dataset.path(s, contrast)): voxel_size_text(read_header(dataset.path(s, contrast)).get_best_affine())
             for s in subjects}
    for path, why in odd_voxel_sizes(sizes, f"{contrast} subjects").items():
        warnings.warn(f"{path}: {why}; training treats them as alike", stacklevel=3)


# ----------------------------------------------------------------------------- the disk cache


def _volume_meta(v: Volume) -> dict[str, Any]:
    return {"affine": v.affine.tolist(), "subject": v.subject, "contrast": v.contrast,
            "path": str(v.path) if v.path else None,
            "intensity": dataclasses.asdict(v.intensity) if v.intensity else None}


def _volume(data: np.ndarray, meta: dict[str, Any]) -> Volume:
    intensity = Intensity(**meta["intensity"]) if meta["intensity"] else None
    return Volume(data, np.asarray(meta["affine"]), path=Path(meta["path"]) if meta["path"] else None,
                  subject=meta["subject"], contrast=meta["contrast"], intensity=intensity)


def _write(folder: Path, data: ExperimentData) -> None:
    arrays: dict[str, np.ndarray] = {}
    for part in ("train", "val"):
        for i, (lr, hr, mask) in enumerate(getattr(data.train, part)):
            arrays[f"{part}_{i}_lr"], arrays[f"{part}_{i}_hr"] = np.asarray(lr), np.asarray(hr)
            if mask is not None:
                arrays[f"{part}_{i}_mask"] = np.asarray(mask)
    for i, case in enumerate(data.test):
        arrays[f"test_{i}_hr"], arrays[f"test_{i}_lr"] = case.hr.data, case.lr.data
        if case.mask is not None:
            arrays[f"test_{i}_mask"] = case.mask.data
    meta = {
        "fingerprint": data.fingerprint, "split": dataclasses.asdict(data.split), "pairing": data.train.pairing,
        "n_train": len(data.train.train), "n_val": len(data.train.val),
        "test": [{"hr": _volume_meta(c.hr), "lr": _volume_meta(c.lr), "mask": _volume_meta(c.mask) if c.mask else None,
                  "params": c.params} for c in data.test],
    }
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "arrays.npz") as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    write_json(folder / "meta.json", meta)  # written last: its presence marks a complete entry


def _read(folder: Path, fingerprint: str) -> ExperimentData:
    meta = json.loads((folder / "meta.json").read_text())
    if meta["fingerprint"] != fingerprint:
        raise ValueError("stale")
    with np.load(folder / "arrays.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}

    def triples(part: str, n: int):
        return [(arrays[f"{part}_{i}_lr"], arrays[f"{part}_{i}_hr"], arrays.get(f"{part}_{i}_mask")) for i in range(n)]

    test = []
    for i, m in enumerate(meta["test"]):
        mask = _volume(arrays[f"test_{i}_mask"], m["mask"]) if m["mask"] else None
        test.append(TestCase(_volume(arrays[f"test_{i}_hr"], m["hr"]), _volume(arrays[f"test_{i}_lr"], m["lr"]), mask, m["params"]))
    split = Split(**{k: tuple(v) for k, v in meta["split"].items()})
    train = TrainData(triples("train", meta["n_train"]), triples("val", meta["n_val"]), meta["pairing"])
    return ExperimentData(split, train, test, meta["fingerprint"])
