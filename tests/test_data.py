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
    Split,
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
from sr_lib.data.folders import contrast_in_name, parse_bids, participant_of
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
    assert (folder / "sub-000_T1w.nii.gz").is_file() and (folder / "manifest.csv").is_file()  # BIDS suffixes
    assert sorted(p.name for p in folder.glob("sub-000_*")) == ["sub-000_PDw.nii.gz", "sub-000_T1w.nii.gz", "sub-000_T2w.nii.gz"]
    assert "sub-000,T1w,sub-000_T1w.nii.gz" in (folder / "manifest.csv").read_text()
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
    (folder / "sub-000_T1w.nii.gz").write_bytes(b"half a file")  # an interrupted run without phantom.json
    dataset = phantom_dataset("test", seed=3, root=tmp_path)
    assert dataset.load("sub-000", "T1").shape == simulate_subject(0, profile="test", seed=3)["T1"].shape

    meta = json.loads((folder / "phantom.json").read_text())
    (folder / "phantom.json").write_text(json.dumps({**meta, "format": -1}))
    before = (folder / "sub-000_T1w.nii.gz").stat().st_mtime_ns
    phantom_dataset("test", seed=3, root=tmp_path)
    assert (folder / "sub-000_T1w.nii.gz").stat().st_mtime_ns != before
    assert json.loads((folder / "phantom.json").read_text()) == meta


def test_phantom_uses_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SR_LIB_CACHE", str(tmp_path))
    dataset = phantom_dataset("test", seed=5)
    assert dataset.path("sub-000", "PD") == tmp_path / "phantom" / "test-seed5" / "sub-000_PDw.nii.gz"


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


def test_split_of_ids_that_are_their_own_participants_is_unchanged():
    # golden values from the per-subject split before issue 13: phantom, IXI and other
    # non-BIDS datasets keep their splits (and so their cached runs stay valid)
    subjects = [f"s{i:02d}" for i in range(20)]
    assert split_subjects(subjects, n_val=3, n_test=5, seed=7) == Split(
        train=("s00", "s01", "s02", "s04", "s05", "s06", "s07", "s09", "s11", "s17", "s18", "s19"),
        val=("s10", "s15", "s16"), test=("s03", "s08", "s12", "s13", "s14"))
    assert split_subjects([f"sub-{i:03d}" for i in range(6)], n_val=1, n_test=2, seed=0) == Split(
        train=("sub-000", "sub-001", "sub-004"), val=("sub-005",), test=("sub-002", "sub-003"))


# --- BIDS names: sessions and runs of one participant share a split -------------------------


@pytest.mark.parametrize("name, entities, suffix", [
    ("sub-01_T1w.nii.gz", (("sub", "01"),), "T1w"),
    ("sub-01_ses-2_acq-fast_run-1_T2w.nii", (("sub", "01"), ("ses", "2"), ("acq", "fast"), ("run", "1")), "T2w"),
    ("sub-A7_desc-srcnnKspace2x_PDw.nii.gz", (("sub", "A7"), ("desc", "srcnnKspace2x")), "PDw"),
    ("sub-01_FLAIR.nii.gz", (("sub", "01"),), "FLAIR"),
])
def test_parse_bids(name, entities, suffix):
    parsed = parse_bids(Path("anywhere") / name)
    assert (parsed.entities, parsed.suffix) == (entities, suffix)
    assert parsed.participant == "sub-" + entities[0][1]


@pytest.mark.parametrize("name", [
    "IXI002-Guys-0828-T1.nii.gz", "scan-PD.nii", "scan.nii.gz", "sub-01.nii.gz", "ses-1_sub-01_T1w.nii.gz",
    "sub-01_brain_T1w.nii.gz", "sub-01_run-1_run-2_T1w.nii.gz", "sub-01_ses-1_T1w-x.nii.gz",
])
def test_parse_bids_refuses_names_that_are_not_bids(name):
    assert parse_bids(Path(name)) is None


@pytest.mark.parametrize("subject, participant", [
    ("sub-01", "sub-01"), ("sub-01_ses-2", "sub-01"), ("sub-01_ses-2_acq-fast_run-3", "sub-01"),
    ("IXI002-Guys-0828", "IXI002-Guys-0828"), ("scan", "scan"), ("sub-01_brain", "sub-01_brain"),
    ("case-7", "case-7"), ("sub-01-x", "sub-01-x"),
])
def test_participant_of(subject, participant):
    assert participant_of(subject) == participant


@pytest.mark.parametrize("name, contrast", [
    ("sub-01_ses-1_T1w.nii.gz", "T1"), ("IXI002-Guys-0828-PD.nii.gz", "PD"), ("scan-t2.nii", "T2"),
    ("sub-01_FLAIR.nii.gz", "FLAIR"), ("sub-01_T2starw.nii.gz", "T2starw"),
    ("scan.nii.gz", None), ("sub-01_mask.nii.gz", None), ("IXI002-Guys-0828-MRA.nii.gz", None),
])
def test_contrast_in_name(name, contrast):
    assert contrast_in_name(Path(name)) == contrast


def bids_folder(root: Path) -> dict[str, list[str]]:
    """A BIDS tree: 7 participants, some with two sessions, one with two runs in a session,
    one with a T2w from another acquisition; returns participant -> its subject ids."""
    sessions = {"01": ["1", "2"], "02": ["1"], "03": ["a", "b"], "04": [], "05": ["1", "2"], "06": [], "07": ["pre"]}
    expected: dict[str, list[str]] = {}
    for label, sess in sessions.items():
        for ses in sess or [None]:
            folder = root / f"sub-{label}" / (f"ses-{ses}" if ses else "") / "anat"
            prefix = f"sub-{label}" + (f"_ses-{ses}" if ses else "")
            for contrast in ("T1w", "T2w"):
                write_nifti(folder / f"{prefix}_{contrast}.nii.gz")
            expected.setdefault(f"sub-{label}", []).append(prefix)
    # two runs of one session, and an acq- entity: each its own scan of the same person
    write_nifti(root / "sub-02" / "ses-1" / "anat" / "sub-02_ses-1_run-2_T2w.nii.gz")
    write_nifti(root / "sub-06" / "anat" / "sub-06_acq-fast_T2w.nii.gz")
    write_nifti(root / "sub-06" / "anat" / "sub-06_T2starw.nii.gz")  # not a modelled contrast: ignored
    (root / "dataset_description.json").write_text('{"Name": "test", "BIDSVersion": "1.9.0"}')
    expected["sub-02"].append("sub-02_ses-1_run-2")
    expected["sub-06"].append("sub-06_acq-fast")
    return {person: sorted(ids) for person, ids in expected.items()}


def test_bids_folder_sessions_and_runs_are_scans_of_one_participant(tmp_path):
    expected = bids_folder(tmp_path)
    dataset = folder_dataset(tmp_path)
    assert dataset.participants() == sorted(expected)
    assert dataset.subjects() == sorted(s for ids in expected.values() for s in ids)
    assert "12 subjects of 7 participants" in repr(dataset)
    assert dataset.path("sub-01_ses-2", "T1w") == tmp_path / "sub-01" / "ses-2" / "anat" / "sub-01_ses-2_T1w.nii.gz"
    assert dataset.select("T1").subjects() == sorted(set(dataset.subjects()) - {"sub-02_ses-1_run-2", "sub-06_acq-fast"})
    assert dataset.load("sub-03_ses-b", "T2").subject == "sub-03_ses-b"


@pytest.fixture(scope="module")
def bids_tree(tmp_path_factory) -> tuple[Path, dict[str, list[str]]]:
    root = tmp_path_factory.mktemp("bids")
    return root, bids_folder(root)


@pytest.mark.parametrize("seed", range(25))
def test_sessions_of_one_participant_never_span_splits(bids_tree, seed):
    root, expected = bids_tree
    dataset = folder_dataset(root)
    split = split_subjects(dataset.subjects(), n_val=2, n_test=2, seed=seed)
    where = {s: name for name in ("train", "val", "test") for s in getattr(split, name)}
    assert sorted(where) == dataset.subjects()  # every scan is used, once
    for person, ids in expected.items():
        assert len({where[s] for s in ids}) == 1, (person, {s: where[s] for s in ids})
    # n_val and n_test count participants
    assert len({participant_of(s) for s in split.test}) == 2 and len({participant_of(s) for s in split.val}) == 2
    assert split_for_profile(dataset, "test", seed=seed) == split_subjects(
        dataset.subjects(), n_val=TEST.n_val, n_test=TEST.n_test, seed=seed)


def test_split_by_participant_counts_and_errors():
    ids = ["sub-01_ses-1", "sub-01_ses-2", "sub-02_ses-1", "sub-02_ses-2", "sub-03"]
    with pytest.raises(ValueError, match=r"3 participants \(5 subject ids\) are too few for n_val=1, n_test=2"):
        split_subjects(ids, n_val=1, n_test=2)
    split = split_subjects(ids, n_val=1, n_test=1, seed=0)
    assert sorted(split.train + split.val + split.test) == ids
    assert {len(split.train), len(split.val), len(split.test)} <= {1, 2}


def test_manifest_session_ids_are_split_by_participant(tmp_path):
    rows = ["subject,contrast,path"]
    for person in range(6):
        for ses in (1, 2):
            write_nifti(tmp_path / f"p{person}s{ses}.nii.gz")
            rows.append(f"sub-{person:02d}_ses-{ses},T2w,p{person}s{ses}.nii.gz")
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    dataset = folder_dataset(tmp_path, manifest="list.csv")
    assert dataset.participants() == [f"sub-{p:02d}" for p in range(6)]
    for seed in range(10):
        split = split_subjects(dataset.subjects(), n_val=1, n_test=2, seed=seed)
        for name in ("train", "val", "test"):
            ids = getattr(split, name)
            assert sorted(ids) == sorted(f"{p}_ses-{s}" for p in {participant_of(i) for i in ids} for s in (1, 2))


@pytest.mark.parametrize("path, problem", [
    ("sub-02/anat/sub-01_T1w.nii.gz", "the name says sub-01 but it lies in folder sub-02"),
    ("sub-01/ses-2/anat/sub-01_ses-1_T1w.nii.gz", "the name says ses-1 but it lies in folder ses-2"),
    ("sub-01/ses-2/anat/sub-01_T1w.nii.gz", "the name says no ses- entity but it lies in folder ses-2"),
])
def test_bids_name_contradicting_its_folders_is_an_error_naming_the_file(tmp_path, path, problem):
    write_nifti(tmp_path / "sub-03" / "anat" / "sub-03_T1w.nii.gz")
    bad = write_nifti(tmp_path / path)
    with pytest.raises(VolumeError) as err:
        folder_dataset(tmp_path)
    assert str(err.value).startswith(f"{bad}: {problem}") and "\n" not in str(err.value)


def test_bids_root_inside_a_sub_folder_is_fine(tmp_path):
    # only folders below the dataset root count: a root that itself lies in "sub-99" is no contradiction
    write_nifti(tmp_path / "sub-99" / "data" / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    assert folder_dataset(tmp_path / "sub-99" / "data").subjects() == ["sub-01"]


def test_derivatives_beside_their_source_are_skipped(tmp_path):
    write_nifti(tmp_path / "sub-01_T2w.nii.gz")
    write_nifti(tmp_path / "sub-01_desc-srcnnKspace2x_T2w.nii.gz")  # what `apply` writes next to its input
    write_nifti(tmp_path / "sub-02_ses-1_desc-srcnnKspace2x_T2w.nii.gz")
    write_nifti(tmp_path / "sub-02_ses-1_T2w.nii.gz")
    write_nifti(tmp_path / "sub-03_desc-preproc_T1w.nii.gz")  # no source here: a derivatives dataset, used
    dataset = folder_dataset(tmp_path)
    assert [(r.subject, r.contrast, r.path.name) for r in dataset.records] == [
        ("sub-01", "T2", "sub-01_T2w.nii.gz"), ("sub-02_ses-1", "T2", "sub-02_ses-1_T2w.nii.gz"),
        ("sub-03_desc-preproc", "T1", "sub-03_desc-preproc_T1w.nii.gz")]
    assert dataset.participants() == ["sub-01", "sub-02", "sub-03"]


def test_fingerprint_changes_only_where_the_split_by_participant_changes_the_split(tmp_path):
    # run identities hash the data fingerprint: datasets with one id per person keep theirs
    # (their split is unchanged), datasets with sessions get a new one (their old split leaked)
    import hashlib

    from sr_lib.prepare import DataSpec, dataset_fingerprint

    def before(dataset: Dataset) -> str:  # the fingerprint as computed before issue 13
        digest = hashlib.sha1()
        for subject in dataset.subjects():
            path, stat = dataset.path(subject, "T2"), dataset.path(subject, "T2").stat()
            digest.update(f"{subject}|{path.name}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        return f"files-{digest.hexdigest()[:12]}"

    spec = DataSpec("folder", str(tmp_path), "T2", "SR-B", 2, "paired", "test", 0)
    for name in ("sub-01_T2w", "sub-02_ses-1_T2w", "IXI002-Guys-0828-T2", "scan-T2"):
        write_nifti(tmp_path / "plain" / f"{name}.nii.gz")
    plain = folder_dataset(tmp_path / "plain")
    assert dataset_fingerprint(plain, spec) == before(plain)
    for name in ("sub-01_ses-1_T2w", "sub-01_ses-2_T2w", "sub-02_T2w"):
        write_nifti(tmp_path / "sessions" / f"{name}.nii.gz")
    sessions = folder_dataset(tmp_path / "sessions")
    assert dataset_fingerprint(sessions, spec) != before(sessions)


def test_non_bids_names_parse_as_before(tmp_path):
    for name in ("IXI002-Guys-0828-T1", "IXI002-Guys-0828-T2", "IXI012-HH-1211-PD"):
        write_nifti(tmp_path / "ixi" / f"{name}.nii.gz")
    write_nifti(tmp_path / "other" / "scan-PD.nii")
    write_nifti(tmp_path / "other" / "case7_t2w.nii.gz")
    ixi = ixi_dataset(tmp_path / "ixi")
    assert ixi.subjects() == ixi.participants() == ["IXI002-Guys-0828", "IXI012-HH-1211"]
    other = folder_dataset(tmp_path / "other")
    assert [(r.subject, r.contrast) for r in other.records] == [("case7", "T2"), ("scan", "PD")]
    assert other.participants() == ["case7", "scan"]
    assert "subjects of" not in repr(other)


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
