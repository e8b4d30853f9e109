"""Tests of sr_lib.data: phantom, IXI/folder loaders, splits, slices and patch samplers."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sr_lib.data import (
    CONTRASTS,
    Dataset,
    PairedPatchSampler,
    Record,
    SliceDataset,
    UnpairedPatchSampler,
    folder_dataset,
    iter_slices,
    ixi_dataset,
    load_dataset,
    phantom,
    phantom_dataset,
    simulate_subject,
    slice_indices,
    split_for_profile,
    split_subjects,
    subject_tissues,
)
from sr_lib.io import VolumeError
from sr_lib.profiles import get_profile

TEST = get_profile("test")


def write_nifti(path: Path, shape: tuple[int, ...] = (6, 7, 5), seed: int = 0, voxel: float = 1.0) -> Path:
    """A tiny random NIfTI (values in [0.1, 1.1])."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(seed).random(shape).astype(np.float32) + 0.1
    nib.save(nib.Nifti1Image(data, np.diag([voxel, voxel, voxel, 1.0])), path)
    return path


@pytest.fixture(scope="module")
def phantom_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("phantom")


@pytest.fixture(scope="module")
def test_phantom(phantom_root) -> Dataset:
    return phantom_dataset("test", seed=0, root=phantom_root)


# --- phantom ---------------------------------------------------------------------------------


def test_phantom_is_deterministic():
    a = simulate_subject(1, profile="test", seed=0)
    b = simulate_subject(1, profile="test", seed=0)
    other_seed = simulate_subject(1, profile="test", seed=1)
    other_subject = simulate_subject(2, profile="test", seed=0)
    assert list(a) == ["T1", "T2", "PD"]
    for contrast in a:
        np.testing.assert_array_equal(a[contrast].data, b[contrast].data)
        assert not np.allclose(a[contrast].data, other_seed[contrast].data)
        assert not np.allclose(a[contrast].data, other_subject[contrast].data)


def test_phantom_geometry():
    volumes = simulate_subject(0, profile="test", seed=0)
    affines = [v.affine for v in volumes.values()]
    for volume in volumes.values():
        assert volume.data.dtype == np.float32
        assert all(n % 8 == 0 for n in volume.shape)
        assert volume.voxel_size == pytest.approx((TEST.voxel_size_mm,) * 3)
        assert volume.subject == "sub-000"
        assert 300 < volume.data.max() < 3000  # scanner-like units
        np.testing.assert_array_equal(volume.affine, affines[0])  # T1, T2 and PD share a grid
    tissues = subject_tissues(0, profile="test", seed=0)
    brain = sum(tissues.values())
    assert brain.max() <= 1.0 + 1e-5 and brain.min() >= 0.0
    for face in (brain[0], brain[-1], brain[:, 0], brain[:, -1], brain[:, :, 0], brain[:, :, -1]):
        assert face.max() < 0.01  # the deformed brain stays inside the grid


@pytest.mark.parametrize("index", [0, 3])
def test_phantom_contrasts(index):
    """Pure-tissue signals (least squares on the tissue fractions) order like T1w, T2w and PD."""
    tissues = subject_tissues(index, profile="test", seed=0)
    fractions = np.stack([tissues[t] for t in ("GM", "WM", "CSF")], axis=-1).reshape(-1, 3)
    inside = fractions.sum(axis=1) > 0.5
    signal = {}
    for contrast, volume in simulate_subject(index, profile="test", seed=0).items():
        pure = np.linalg.lstsq(fractions[inside], volume.data.reshape(-1)[inside], rcond=None)[0]
        signal[contrast] = dict(zip(("GM", "WM", "CSF"), pure))
    t1, t2, pd = signal["T1"], signal["T2"], signal["PD"]
    assert t1["WM"] > t1["GM"] > t1["CSF"]  # T1w: white matter bright, CSF dark
    assert t2["CSF"] > t2["GM"] > t2["WM"]  # T2w: CSF bright
    assert pd["GM"] > pd["WM"] and max(pd.values()) / min(pd.values()) < 1.4  # PD: low contrast


def test_phantom_dataset_cache(test_phantom, phantom_root, monkeypatch):
    folder = phantom_root / "test-seed0"
    assert test_phantom.subjects() == [f"sub-{i:03d}" for i in range(TEST.n_subjects)]
    assert test_phantom.contrasts() == list(CONTRASTS) == ["PD", "T1", "T2"]
    assert (folder / "sub-000_T1.nii.gz").is_file() and (folder / "manifest.csv").is_file()
    assert not [p for p in phantom_root.iterdir() if p.name.startswith(".")]  # no partial folder left
    mtimes = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}

    def fail(*args, **kwargs):
        raise AssertionError("the cached phantom was regenerated")

    monkeypatch.setattr(phantom, "simulate_subject", fail)
    again = load_dataset("phantom", profile="test", seed=0, root=phantom_root)
    assert again.records == test_phantom.records
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == mtimes

    # the files hold exactly what the simulation makes
    monkeypatch.undo()
    raw = test_phantom.load("sub-002", "T2", normalised=False)
    np.testing.assert_array_equal(raw.data, simulate_subject(2, profile="test", seed=0)["T2"].data)
    assert raw.voxel_size == pytest.approx((TEST.voxel_size_mm,) * 3)
    table = test_phantom.table()
    assert len(table) == 3 * TEST.n_subjects
    assert set(table["voxel_size"]) == {(TEST.voxel_size_mm,) * 3}
    assert all(n % 8 == 0 for shape in table["shape"] for n in shape)


def test_phantom_incomplete_or_stale_cache_is_regenerated(tmp_path):
    folder = tmp_path / "test-seed3"
    folder.mkdir()
    (folder / "sub-000_T1.nii.gz").write_bytes(b"half a file")  # an interrupted run without phantom.json
    dataset = phantom_dataset("test", seed=3, root=tmp_path)
    assert dataset.load("sub-000", "T1").shape == simulate_subject(0, profile="test", seed=3)["T1"].shape

    meta = json.loads((folder / "phantom.json").read_text())
    (folder / "phantom.json").write_text(json.dumps({**meta, "format": -1}))
    before = (folder / "sub-000_T1.nii.gz").stat().st_mtime_ns
    phantom_dataset("test", seed=3, root=tmp_path)
    assert (folder / "sub-000_T1.nii.gz").stat().st_mtime_ns != before
    assert json.loads((folder / "phantom.json").read_text()) == meta


def test_phantom_uses_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SR_LIB_CACHE", str(tmp_path))
    dataset = phantom_dataset("test", seed=5)
    assert dataset.path("sub-000", "PD") == tmp_path / "phantom" / "test-seed5" / "sub-000_PD.nii.gz"


# --- Dataset ---------------------------------------------------------------------------------


def test_dataset_lookups_and_errors(test_phantom):
    volume = test_phantom.load("sub-001", "t2w")
    assert (volume.subject, volume.contrast) == ("sub-001", "T2")
    assert volume.data.min() >= 0.0 and volume.data.max() == pytest.approx(1.0)
    assert volume.intensity is not None and volume.intensity.scale > 0
    with pytest.raises(KeyError, match=r"subject 'sub-001' has no contrast 'T3'; available: PD, T1, T2"):
        test_phantom.path("sub-001", "T3")
    with pytest.raises(KeyError, match=r"no subject 'sub-999'"):
        test_phantom.load("sub-999", "T1")
    t1 = test_phantom.select("T1")
    assert t1.contrasts() == ["T1"] and t1.subjects() == test_phantom.subjects()
    with pytest.raises(KeyError, match=r"no contrast 'FLAIR'.*PD, T1, T2"):
        test_phantom.select("FLAIR")
    with pytest.raises(KeyError, match=r"no contrast 'T1'; available: PD"):
        Dataset("x", [Record("a", "PD", Path("a_PD.nii"))]).path("a", "T1")


def test_dataset_rejects_duplicates():
    with pytest.raises(ValueError, match=r"given twice: a.nii and b.nii"):
        Dataset("x", [Record("s", "T1", Path("a.nii")), Record("s", "t1w", Path("b.nii"))])


def test_load_dataset_errors():
    with pytest.raises(KeyError, match=r"unknown dataset 'hcp'; choose one of phantom, ixi, folder"):
        load_dataset("hcp")
    for name in ("ixi", "folder"):
        with pytest.raises(ValueError, match="needs root"):
            load_dataset(name)


# --- IXI and folders -------------------------------------------------------------------------


def test_ixi_naming(tmp_path):
    for name in ("IXI002-Guys-0828-T1", "IXI002-Guys-0828-T2", "IXI002-Guys-0828-PD", "IXI002-Guys-0828-MRA"):
        write_nifti(tmp_path / "t1_t2_pd" / f"{name}.nii.gz")
    write_nifti(tmp_path / "more" / "deeper" / "IXI012-HH-1211-T2.nii.gz", shape=(5, 5, 4))
    write_nifti(tmp_path / "dti" / "IXI002-Guys-0828-DTI-00.nii.gz")
    dataset = load_dataset("ixi", root=tmp_path)
    assert dataset.name == "ixi"
    assert dataset.subjects() == ["IXI002-Guys-0828", "IXI012-HH-1211"]
    assert [(r.subject, r.contrast) for r in dataset.records] == [
        ("IXI002-Guys-0828", "PD"),
        ("IXI002-Guys-0828", "T1"),
        ("IXI002-Guys-0828", "T2"),
        ("IXI012-HH-1211", "T2"),
    ]
    assert dataset.load("IXI012-HH-1211", "T2").shape == (5, 5, 4)
    assert dataset.table()["shape"].tolist()[-1] == (5, 5, 4)


def test_ixi_and_folder_errors(tmp_path):
    with pytest.raises(ValueError, match=rf"{tmp_path}: no IXI"):
        ixi_dataset(tmp_path)
    with pytest.raises(ValueError, match=rf"{tmp_path}: no NIfTI files"):
        folder_dataset(tmp_path)
    with pytest.raises(VolumeError, match="no such folder"):
        folder_dataset(tmp_path / "missing")
    write_nifti(tmp_path / "brain.nii.gz")
    with pytest.raises(ValueError, match="contrast token.*manifest"):
        folder_dataset(tmp_path)


def test_folder_by_file_names(tmp_path):
    write_nifti(tmp_path / "sub-01" / "sub-01_T1w.nii.gz")
    write_nifti(tmp_path / "sub-01" / "sub-01-t2.nii")
    write_nifti(tmp_path / "sub-02_ses-1_PD.nii.gz")
    write_nifti(tmp_path / "sub-02_brainmask.nii.gz")  # no contrast token: ignored
    write_nifti(tmp_path / ".sub-03_T1.partial.nii.gz")  # hidden partial write: ignored
    dataset = load_dataset("folder", root=tmp_path)
    assert [(r.subject, r.contrast) for r in dataset.records] == [
        ("sub-01", "T1"), ("sub-01", "T2"), ("sub-02_ses-1", "PD"),
    ]
    write_nifti(tmp_path / "sub-01_T1.nii")
    with pytest.raises(ValueError, match="given twice"):
        folder_dataset(tmp_path)


def test_folder_with_manifest(tmp_path):
    write_nifti(tmp_path / "images" / "a.nii.gz")
    write_nifti(tmp_path / "images" / "b.nii")
    (tmp_path / "list.csv").write_text(
        "subject,contrast,path,site\nS1,t2w,images/a.nii.gz,x\nS2,PD,images/b.nii,y\n"  # extra columns are fine
    )
    dataset = load_dataset("folder", root=tmp_path, manifest="list.csv")
    found = [(r.subject, r.contrast, r.path.name) for r in dataset.records]
    assert found == [("S1", "T2", "a.nii.gz"), ("S2", "PD", "b.nii")]
    assert folder_dataset(tmp_path, manifest=tmp_path / "list.csv").records == dataset.records


@pytest.mark.parametrize(
    "text, error",
    [
        ("subject,path\nS1,a.nii.gz\n", r"bad.csv: missing column\(s\) contrast"),
        ("subject,contrast,path\nS1,T1,a.nii.gz\nS2,FLAIR,a.nii.gz\n", r"bad.csv line 3: unknown contrast 'FLAIR'"),
        ("subject,contrast,path\nS1,T1,missing.nii.gz\n", r"bad.csv line 2: no such file .*missing.nii.gz"),
        ("subject,contrast,path\n,T1,a.nii.gz\n", r"bad.csv line 2: empty subject"),
        ("subject,contrast,path\n", r"bad.csv: the manifest lists no files"),
    ],
)
def test_bad_manifest(tmp_path, text, error):
    write_nifti(tmp_path / "a.nii.gz")
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(VolumeError, match=error):
        folder_dataset(tmp_path, manifest="bad.csv")


def test_missing_manifest(tmp_path):
    with pytest.raises(VolumeError, match="no such manifest"):
        folder_dataset(tmp_path, manifest="nope.csv")


# --- splits ----------------------------------------------------------------------------------


def test_split_subjects():
    subjects = [f"s{i:02d}" for i in range(20)]
    split = split_subjects(subjects, n_val=3, n_test=5, seed=7)
    assert (len(split.train), len(split.val), len(split.test)) == (12, 3, 5)
    assert set(split.train) | set(split.val) | set(split.test) == set(subjects)
    train, val, test = set(split.train), set(split.val), set(split.test)
    assert not (train & val or train & test or val & test)
    assert split_subjects(reversed(subjects), n_val=3, n_test=5, seed=7) == split  # order does not matter
    assert split_subjects(subjects, n_val=3, n_test=5, seed=8) != split
    with pytest.raises(ValueError, match="too few"):
        split_subjects(["a", "b", "c"], n_val=1, n_test=2)
    with pytest.raises(ValueError, match="not unique"):
        split_subjects(["a", "a", "b", "c"], n_val=1, n_test=1)


def test_split_for_profile(test_phantom):
    split = split_for_profile(test_phantom, "test", seed=0)
    assert (len(split.train), len(split.val), len(split.test)) == (TEST.n_train, TEST.n_val, TEST.n_test)
    assert split_for_profile(test_phantom, "test", seed=0) == split


# --- slices ----------------------------------------------------------------------------------


def test_slice_indices_skip_empty():
    rng = np.random.default_rng(0)
    volume = np.abs(rng.normal(0.0, 0.02, (10, 12, 9))).astype(np.float32)  # background noise
    volume[2:8, 3:9, 2:7] += 0.8  # the "brain"
    assert slice_indices(volume, 0) == [2, 3, 4, 5, 6, 7]
    assert slice_indices(volume, 1) == [3, 4, 5, 6, 7, 8]
    assert slice_indices(torch.from_numpy(volume), 2) == [2, 3, 4, 5, 6]
    assert slice_indices(volume, 2, skip_empty=False) == list(range(9))
    assert [i for i, _ in iter_slices(volume, axis=2)] == [2, 3, 4, 5, 6]
    with pytest.raises(ValueError, match="axis"):
        slice_indices(volume, 3)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slice_dataset(axis):
    shape = (10, 12, 9)
    volumes = [np.zeros(shape, np.float32), np.zeros(shape, np.float32)]
    volumes[0][2:8, 3:9, 2:7] = 1.0
    volumes[1][1:9, 1:11, 1:8] = 1.0
    dataset = SliceDataset(volumes, axis=axis)
    expected = [(v, s) for v in range(2) for s in slice_indices(volumes[v], axis)]
    assert dataset.index == expected and len(dataset) == len(expected)
    plane = tuple(n for a, n in enumerate(shape) if a != axis)
    v, s = dataset.index[3]
    item = dataset[3]
    assert item.shape == (1, *plane)
    np.testing.assert_array_equal(item[0].numpy(), np.take(volumes[v], s, axis=axis))
    assert len(SliceDataset(volumes, axis=axis, skip_empty=False)) == 2 * shape[axis]


# --- patch samplers --------------------------------------------------------------------------


def volumes_with_lr(factors: tuple[int, int, int], n: int = 2) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Random HR volumes (odd-ish sizes, some background) and LR made by area averaging."""
    generator = torch.Generator().manual_seed(0)
    hr, lr = [], []
    for i in range(n):
        shape = tuple(f * m for f, m in zip(factors, (9 + i, 10, 8 + 3 * i)))
        volume = torch.rand(shape, generator=generator)
        volume[: factors[0]] = 0.0  # an empty border, never a patch centre
        hr.append(volume)
        lr.append(F.avg_pool3d(volume[None, None], kernel_size=factors)[0, 0])
    return lr, hr


@pytest.mark.parametrize(
    "factors, spatial_dims, axis",
    [
        ((1, 1, 1), 2, 2),  # same grid, 2D
        ((2, 2, 1), 2, 2),  # small grid, 2D axial
        ((1, 4, 2), 2, 0),  # small grid, 2D along axis 0, unequal factors
        ((2, 2, 2), 3, 2),  # small grid, 3D
        ((2, 2, 1), 3, 2),
        ((1, 1, 1), 3, 1),
    ],
)
def test_paired_sampler_shapes_and_alignment(factors, spatial_dims, axis):
    lr, hr = volumes_with_lr(factors)
    masks = [(v > 0.5).float() for v in lr]
    sampler = PairedPatchSampler(
        lr, hr, factors=factors, patch_size=8, spatial_dims=spatial_dims, axis=axis, masks=masks
    )
    batch = sampler.sample(5, torch.Generator().manual_seed(1))
    hr_shape = (8,) * 3 if spatial_dims == 3 else (8, 8)
    kept = [a for a in range(3) if spatial_dims == 3 or a != axis]
    lr_shape = tuple(8 // factors[a] for a in kept)
    assert batch["hr"].shape == (5, 1, *hr_shape)
    assert batch["lr"].shape == batch["mask"].shape == (5, 1, *lr_shape)
    pool = F.avg_pool3d if spatial_dims == 3 else F.avg_pool2d
    kernel = tuple(factors[a] for a in kept)
    torch.testing.assert_close(batch["lr"], pool(batch["hr"], kernel_size=kernel))
    torch.testing.assert_close(batch["mask"], (batch["lr"] > 0.5).float())
    assert (batch["hr"].flatten(1).max(dim=1).values > 0.1).all()  # centred on foreground


def test_paired_sampler_is_seeded():
    lr, hr = volumes_with_lr((2, 2, 1), n=3)
    sampler = PairedPatchSampler(lr, hr, factors=(2, 2, 1), patch_size=6, spatial_dims=2)
    a = sampler.sample(8, torch.Generator().manual_seed(3))
    b = sampler.sample(8, torch.Generator().manual_seed(3))
    c = sampler.sample(8, torch.Generator().manual_seed(4))
    assert a["mask"] is None
    torch.testing.assert_close(a["hr"], b["hr"])
    torch.testing.assert_close(a["lr"], b["lr"])
    assert not torch.equal(a["hr"], c["hr"])


def test_paired_sampler_errors():
    lr, hr = volumes_with_lr((2, 2, 2))
    with pytest.raises(ValueError, match="slice axis 2"):
        PairedPatchSampler(lr, hr, factors=(2, 2, 2), patch_size=8, spatial_dims=2, axis=2)
    with pytest.raises(ValueError, match=r"pair 0: HR shape"):
        PairedPatchSampler(lr, hr, factors=(2, 2, 1), patch_size=8, spatial_dims=3)
    with pytest.raises(ValueError, match="not divisible"):
        PairedPatchSampler(lr, hr, factors=(2, 2, 2), patch_size=7, spatial_dims=3)
    with pytest.raises(ValueError, match="smaller than the patch"):
        PairedPatchSampler(lr, hr, factors=(2, 2, 2), patch_size=64, spatial_dims=3)
    with pytest.raises(ValueError, match="equal numbers"):
        PairedPatchSampler(lr[:1], hr, factors=(2, 2, 2), patch_size=8, spatial_dims=3)
    with pytest.raises(ValueError, match="spatial_dims"):
        PairedPatchSampler(lr, hr, factors=(2, 2, 2), patch_size=8, spatial_dims=1)
    with pytest.raises(ValueError, match="no voxel above"):
        PairedPatchSampler([torch.zeros(8, 8, 8)], [torch.zeros(8, 8, 8)], patch_size=4)


def test_unpaired_sampler():
    lr, _ = volumes_with_lr((2, 2, 1), n=3)
    _, hr = volumes_with_lr((2, 2, 1), n=2)
    sampler = UnpairedPatchSampler(lr, hr, factors=(2, 2, 1), patch_size=8, spatial_dims=2)
    a = sampler.sample(4, torch.Generator().manual_seed(0))
    b = sampler.sample(4, torch.Generator().manual_seed(0))
    assert a["lr"].shape == (4, 1, 4, 4) and a["hr"].shape == (4, 1, 8, 8) and a["mask"] is None
    torch.testing.assert_close(a["lr"], b["lr"])
    torch.testing.assert_close(a["hr"], b["hr"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_sampler_same_patches_on_gpu():
    lr, hr = volumes_with_lr((2, 2, 2))
    cpu = PairedPatchSampler(lr, hr, factors=(2, 2, 2), patch_size=8, spatial_dims=3)
    gpu = PairedPatchSampler(
        [v.cuda() for v in lr], [v.cuda() for v in hr], factors=(2, 2, 2), patch_size=8, spatial_dims=3
    )
    a = cpu.sample(6, torch.Generator().manual_seed(2))
    b = gpu.sample(6, torch.Generator().manual_seed(2))
    assert b["hr"].device.type == "cuda"
    torch.testing.assert_close(a["hr"], b["hr"].cpu())
    torch.testing.assert_close(a["lr"], b["lr"].cpu())
