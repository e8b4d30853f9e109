"""Datasets on disk: the `Dataset` abstraction, IXI folders, any folder of NIfTI files, manifests.

A dataset is a table of (subject, contrast, path) records; every source (the phantom once it
is cached, IXI, a user's folder) ends up as one. Contrast names are canonical upper case:
"T1", "T2", "PD" (DESIGN.md, "Concepts"); file names use their BIDS suffixes "T1w", "T2w",
"PDw" (`bids_suffix`).

BIDS names (``sub-01_ses-2_acq-fast_run-1_T1w.nii.gz``, also inside BIDS folders
``sub-01/ses-2/anat/``): the subject id of a record is the name without its suffix
(``sub-01_ses-2_acq-fast_run-1``), so every session and run is its own scan, and the
*participant* (`participant_of`: ``sub-01``) is what train/val/test are split by, so one person
never lands in two splits (`sr_lib.data.splits`). Non-BIDS ids (IXI's ``IXI002-Guys-0828``,
``scan`` from ``scan-PD.nii``) are each their own participant, exactly as before.

Subject ids become file and folder names downstream (predictions, run folders), so every id
from a file name or a manifest must pass `check_subject_id`; manifest paths must lie inside
the manifest's folder. Every problem is one line naming the file (and the manifest row).
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
from collections.abc import Iterable, Sequence
from io import StringIO
from pathlib import Path

import nibabel as nib
import pandas as pd
from tqdm.auto import tqdm

from sr_lib.atomic import write_text
from sr_lib.io import Volume, VolumeError, load_volume, normalise, voxel_sizes

CONTRASTS: tuple[str, ...] = ("PD", "T1", "T2")  # sorted, the order used everywhere
MANIFEST_COLUMNS: tuple[str, ...] = ("subject", "contrast", "path")

# IXI002-Guys-0828-T2.nii.gz: subject "IXI002-Guys-0828", contrast "T2" (MRA, DTI, ... do not match)
_IXI_NAME = re.compile(r"^(?P<subject>IXI\d+-[A-Za-z]+-\d+)-(?P<contrast>T1|T2|PD)\.nii(\.gz)?$")
# sub-01_T1w.nii.gz, scan-PD.nii: a contrast token at the end of the name, after "_" or "-"
_CONTRAST_SUFFIX = re.compile(r"^(?P<subject>.+?)[_-](?P<contrast>T1w?|T2w?|PDw?)$", re.IGNORECASE)


_SAFE_SUBJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

# BIDS: key-label entity pairs joined by "_", then a suffix; keys and labels are alphanumeric
_BIDS_ENTITY = re.compile(r"^(?P<key>[A-Za-z0-9]+)-(?P<label>[A-Za-z0-9]+)$")
_BIDS_SUFFIX = re.compile(r"^[A-Za-z0-9]+$")
#: the BIDS suffix of each contrast (file names); the keys stay the workbench's contrast names
CONTRAST_SUFFIXES: dict[str, str] = {"PD": "PDw", "T1": "T1w", "T2": "T2w"}
#: BIDS anatomical suffixes that name a contrast the workbench does not model (a name ending
#: in one of them claims that contrast; see `contrast_in_name`)
OTHER_BIDS_SUFFIXES: frozenset[str] = frozenset({
    "T2starw", "FLAIR", "inplaneT1", "inplaneT2", "PDT2", "angio", "T1map", "T2map", "T2starmap", "R1map",
    "R2map", "R2starmap", "PDmap", "MTRmap", "MTsat", "UNIT1", "T1rho", "MWFmap", "MTVmap", "Chimap",
    "S0map", "M0map", "TB1map", "RB1map", "MP2RAGE", "MPM", "MTS", "MESE", "MEGRE", "VFA", "IRT1",
})


def check_subject_id(subject: str) -> str:
    """Return `subject` if it is safe as a file name: a letter or digit, then letters, digits,
    ".", "_" or "-" (at most 128), and no ".."; else a one-line `ValueError` saying why."""
    if not isinstance(subject, str) or not _SAFE_SUBJECT.match(subject) or ".." in subject:
        raise ValueError(
            f"unsafe subject id {subject!r}: use letters, digits, '.', '_' or '-', starting with a letter "
            f"or digit, without '..' (at most 128 characters)"
        )
    return subject


def _token(name: str) -> str:
    """Upper-case a contrast name and drop a BIDS-style trailing "w" (T1w -> T1)."""
    key = name.strip().upper()
    return key[:-1] if key.endswith("W") and key[:-1] in CONTRASTS else key


def canonical_contrast(name: str) -> str:
    """"t1", "T1w" -> "T1"; a `KeyError` lists the valid names for anything else."""
    key = _token(name)
    if key not in CONTRASTS:
        raise KeyError(f"unknown contrast {name!r}; choose one of {', '.join(CONTRASTS)}")
    return key


def nifti_stem(path: Path) -> str:
    """File name without .nii / .nii.gz."""
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def bids_suffix(contrast: str) -> str:
    """The BIDS suffix of a contrast: "T2" (or "t2w") -> "T2w"; a `KeyError` for others."""
    return CONTRAST_SUFFIXES[canonical_contrast(contrast)]


@dataclasses.dataclass(frozen=True)
class BidsName:
    """A parsed BIDS file name: its entities in file order and its suffix.

    ``sub-01_ses-2_run-1_T1w`` -> entities (("sub", "01"), ("ses", "2"), ("run", "1")),
    suffix "T1w".
    """

    entities: tuple[tuple[str, str], ...]
    suffix: str

    def get(self, key: str) -> str | None:
        """The label of entity `key` ("ses" -> "2"), None if absent."""
        return dict(self.entities).get(key)

    @property
    def participant(self) -> str:
        """``sub-<label>``: the person, the unit of the train/val/test split."""
        return f"sub-{self.get('sub')}"

    def prefix(self, *, without: Sequence[str] = ()) -> str:
        """The entities as written, joined by "_", leaving out the keys in `without`."""
        return "_".join(f"{k}-{v}" for k, v in self.entities if k not in without)


def _bids_entities(parts: Sequence[str]) -> tuple[tuple[str, str], ...] | None:
    """Entity pairs if every part is ``key-label``, the first is ``sub-`` and no key repeats; else None."""
    matches = [_BIDS_ENTITY.match(part) for part in parts]
    if not matches or not all(matches) or matches[0]["key"] != "sub":
        return None
    entities = tuple((m["key"], m["label"]) for m in matches)
    return entities if len({k for k, _ in entities}) == len(entities) else None


def parse_bids(path: str | os.PathLike) -> BidsName | None:
    """The BIDS entities and suffix of a file name (``sub-01[_ses-1][_acq-x]..._<suffix>.nii[.gz]``),
    or None for a name that is not BIDS (IXI, ``scan-PD.nii``, ``sub-01_brain_T1w``)."""
    *parts, suffix = nifti_stem(Path(path)).split("_")
    entities = _bids_entities(parts)
    if entities is None or not _BIDS_SUFFIX.match(suffix):
        return None
    return BidsName(entities, suffix)


def participant_of(subject: str) -> str:
    """The participant a subject id belongs to: ``sub-01`` for a BIDS id (``sub-01``,
    ``sub-01_ses-2``, ``sub-01_ses-2_run-1``, as `parse_name` gives for BIDS names); any
    other id (IXI's ``IXI002-Guys-0828``, ``scan``) is its own participant.

    Train/val/test are dealt by participant (`sr_lib.data.splits.split_subjects`)."""
    entities = _bids_entities(subject.split("_"))
    return f"sub-{entities[0][1]}" if entities else subject


def contrast_in_name(path: str | os.PathLike) -> str | None:
    """The contrast a file name claims: "T1", "T2" or "PD" (IXI names, names ending in a
    contrast token, BIDS suffixes T1w/T2w/PDw), another BIDS anatomical suffix as written
    ("FLAIR", "T2starw": a contrast the workbench does not model), or None when the name
    claims none (``scan.nii.gz``, ``sub-01_mask.nii.gz``)."""
    if parsed := parse_name(Path(path)):
        return parsed[1]
    bids = parse_bids(path)
    return bids.suffix if bids is not None and bids.suffix in OTHER_BIDS_SUFFIXES else None


def parse_name(path: Path) -> tuple[str, str] | None:
    """(subject, contrast) from an IXI name or a name ending in a contrast token, else None.

    For a BIDS name the subject is everything before the suffix, every entity kept
    (``sub-01_ses-2_run-1_T1w.nii.gz`` -> "sub-01_ses-2_run-1", "T1"): each session and run is
    its own scan; `participant_of` groups them for the split."""
    if match := _IXI_NAME.match(path.name):
        return match["subject"], match["contrast"]
    if match := _CONTRAST_SUFFIX.match(nifti_stem(path)):
        return match["subject"], canonical_contrast(match["contrast"])
    return None


def layout_problem(path: Path, root: Path | None = None) -> str:
    """Why a BIDS-named file contradicts its BIDS folders ("" when it does not): a ``sub-<label>``
    or ``ses-<label>`` folder above it (below `root`, else among its three parents, as in
    ``sub-01/ses-1/anat/``) must match the name's own ``sub-`` and ``ses-`` entities; the
    file would otherwise count as another person or session than the folder says."""
    name = parse_bids(path)
    if name is None:
        return ""
    folders = path.relative_to(root).parts[:-1] if root is not None else path.parts[-4:-1]
    for folder in folders:
        if (match := _BIDS_ENTITY.match(folder)) and match["key"] in ("sub", "ses"):
            label = name.get(match["key"])
            if label != match["label"]:
                said = f"{match['key']}-{label}" if label else f"no {match['key']}- entity"
                return f"the name says {said} but it lies in folder {folder}"
    return ""


@dataclasses.dataclass(frozen=True)
class Record:
    """One volume of a dataset: which subject, which contrast, which file."""

    subject: str
    contrast: str
    path: Path


class Dataset:
    """Subjects x contrasts, each a NIfTI file; loads volumes by name.

    Records are kept sorted by (subject, contrast). A (subject, contrast) pair appears once.
    """

    def __init__(self, name: str, records: Iterable[Record]) -> None:
        self.name = name
        self._paths: dict[tuple[str, str], Path] = {}
        for record in records:
            key = (record.subject, canonical_contrast(record.contrast))
            if key in self._paths:
                raise ValueError(
                    f"dataset {name!r}: subject {key[0]!r} contrast {key[1]!r} is given twice: "
                    f"{self._paths[key]} and {record.path}"
                )
            self._paths[key] = Path(record.path)
        self.records: tuple[Record, ...] = tuple(
            Record(subject, contrast, path) for (subject, contrast), path in sorted(self._paths.items())
        )

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        subjects, people = len(self.subjects()), len(self.participants())
        return (
            f"Dataset({self.name!r}: {subjects} subjects{f' of {people} participants' if people < subjects else ''}, "
            f"contrasts {', '.join(self.contrasts())}, {len(self)} volumes)"
        )

    def subjects(self) -> list[str]:
        """Subject ids, sorted."""
        return sorted({subject for subject, _ in self._paths})

    def participants(self) -> list[str]:
        """The people behind the subject ids, sorted (`participant_of`: the sessions and runs
        ``sub-01_ses-1``, ``sub-01_ses-2`` are one participant ``sub-01``)."""
        return sorted({participant_of(subject) for subject, _ in self._paths})

    def contrasts(self) -> list[str]:
        """Contrasts present for at least one subject, sorted ("PD", "T1", "T2")."""
        return sorted({contrast for _, contrast in self._paths})

    def path(self, subject: str, contrast: str) -> Path:
        """The file of one volume; a `KeyError` says what exists instead."""
        key = (subject, _token(contrast))
        if key in self._paths:
            return self._paths[key]
        available = sorted(c for s, c in self._paths if s == subject)
        if not available:
            subjects = self.subjects()
            shown = ", ".join(subjects[:5]) + (", ..." if len(subjects) > 5 else "")
            raise KeyError(f"dataset {self.name!r} has no subject {subject!r}; {len(subjects)} subjects: {shown}")
        raise KeyError(f"subject {subject!r} has no contrast {contrast!r}; available: {', '.join(available)}")

    def load(self, subject: str, contrast: str, *, normalised: bool = True) -> Volume:
        """Read one volume; with `normalised` mapped to [0, 1] by `io.normalise` (scaling recorded)."""
        volume = load_volume(self.path(subject, contrast), subject=subject, contrast=_token(contrast))
        return normalise(volume) if normalised else volume

    def select(self, contrast: str) -> "Dataset":
        """The records of one contrast (subjects without it are left out)."""
        key = _token(contrast)
        if key not in self.contrasts():
            raise KeyError(
                f"dataset {self.name!r} has no contrast {contrast!r}; available: {', '.join(self.contrasts())}"
            )
        return Dataset(self.name, (r for r in self.records if r.contrast == key))

    def table(self) -> pd.DataFrame:
        """One row per volume: subject, contrast, shape, voxel size (mm), path. Reads headers only."""
        rows = []
        many = len(self.records) >= 200  # a progress bar only where reading headers takes a while
        for record in tqdm(self.records, desc=f"{self.name} headers", disable=not many, leave=False):
            header = read_header(record.path)
            rows.append(
                {
                    "subject": record.subject,
                    "contrast": record.contrast,
                    "shape": tuple(int(n) for n in header.get_data_shape()),
                    "voxel_size": tuple(round(float(v), 4) for v in voxel_sizes(header.get_best_affine())),
                    "path": str(record.path),
                }
            )
        return pd.DataFrame(rows, columns=["subject", "contrast", "shape", "voxel_size", "path"])


def read_header(path: Path) -> nib.Nifti1Header:
    """The NIfTI header of `path` without reading the voxels; `VolumeError` names a bad file."""
    if not path.is_file():
        raise VolumeError(f"{path}: no such file")
    try:
        return nib.load(path).header
    except Exception as err:  # nibabel raises several kinds for unreadable headers
        raise VolumeError(f"{path}: not a readable NIfTI file ({err})") from None


def _existing_folder(root: str | os.PathLike) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise VolumeError(f"{root}: no such folder")
    return root


def _nifti_files(root: Path) -> list[Path]:
    """NIfTI files under `root`, recursively, sorted; hidden files (our partial writes) skipped."""
    return sorted(
        p
        for p in root.rglob("*.nii*")
        if p.name.endswith((".nii", ".nii.gz")) and not p.name.startswith(".") and p.is_file()
    )


def ixi_dataset(root: str | os.PathLike) -> Dataset:
    """The IXI T1, T2 and PD volumes found anywhere under `root`.

    Files are named ``IXI002-Guys-0828-T2.nii.gz`` -> subject "IXI002-Guys-0828", contrast
    "T2"; MRA, DTI and other files are ignored. In IXI, T2 and PD come from one dual-echo
    acquisition and share a grid; T1 was acquired separately and does not (DESIGN.md).
    """
    root = _existing_folder(root)
    records = []
    for path in _nifti_files(root):
        if _IXI_NAME.match(path.name):
            records.append(Record(*parse_name(path), path))
    if not records:
        raise ValueError(f"{root}: no IXI T1/T2/PD files (named like IXI002-Guys-0828-T2.nii.gz)")
    return Dataset("ixi", records)


def folder_dataset(root: str | os.PathLike, manifest: str | os.PathLike | None = None) -> Dataset:
    """Any NIfTI files under `root`, named by file name or by a CSV manifest.

    Without a manifest, a file whose name ends with a contrast token (``_T1``, ``-T2``,
    ``_PD``, ``_T1w``, ``_T2w``, ``_PDw``, any case) gives that contrast, and the name before
    the token is the subject (``sub-01_T1w.nii.gz`` -> "sub-01", "T1"); other files are ignored.

    BIDS datasets (``sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz``) work as they are: each
    session and run is its own subject id ("sub-01_ses-1", "sub-01_ses-1_run-2"; every entity
    before the suffix is kept, so two runs never collide), and all of them belong to
    participant "sub-01" (`participant_of`), which the split deals as one: every session and
    run of a person lands in the same one of train/val/test. A T1w and a T2w are one scan's
    contrasts when their entities agree (``sub-01_ses-1_T1w``, ``sub-01_ses-1_T2w``). A file
    whose ``sub-``/``ses-`` folders contradict its name is an error naming it. A file with a
    ``desc-`` entity whose source (the same name without ``desc-``) is also here is a
    derivative of it (e.g. what `sr-lib apply` wrote next to its input) and is skipped; a
    folder of derivatives alone (``sub-01_desc-preproc_T1w``) is used.

    With `manifest` (a CSV with columns subject, contrast, path; relative to `root` unless
    absolute), exactly the listed files are used; subject ids there follow the same rule
    (``sub-01_ses-2`` belongs to participant ``sub-01``).
    """
    root = _existing_folder(root)
    if manifest is not None:
        manifest = Path(manifest)
        return Dataset("folder", read_manifest(manifest if manifest.is_absolute() else root / manifest))
    files = _nifti_files(root)
    if not files:
        raise ValueError(f"{root}: no NIfTI files (.nii or .nii.gz)")
    named = [path for path in files if _CONTRAST_SUFFIX.match(nifti_stem(path))]
    records = []
    for path in _without_derivatives(named):
        subject, contrast = parse_name(path)
        try:
            check_subject_id(subject)
        except ValueError as err:
            raise VolumeError(f"{path}: {err}; rename the file or give a manifest") from None
        if problem := layout_problem(path, root):
            raise VolumeError(f"{path}: {problem}; rename or move the file, or give a manifest")
        records.append(Record(subject, contrast, path))
    if not records:
        raise ValueError(
            f"{root}: none of the {len(files)} NIfTI files ends with a contrast token "
            f"(e.g. sub-01_T1w.nii.gz, sub-01_T2.nii.gz); rename them or give a manifest"
        )
    return Dataset("folder", records)


def _without_derivatives(paths: list[Path]) -> list[Path]:
    """`paths` less the BIDS derivatives whose source is among them (same folder, same name
    without its ``desc-`` entity, same contrast)."""
    present = {(path.parent, parse_name(path)) for path in paths}
    kept = []
    for path in paths:
        bids = parse_bids(path)
        if bids is not None and bids.get("desc") is not None:
            source = (path.parent, (bids.prefix(without=("desc",)), parse_name(path)[1]))
            if source in present:
                continue
        kept.append(path)
    return kept


def read_manifest(path: str | os.PathLike) -> list[Record]:
    """Records from a CSV with columns subject, contrast, path (relative to the CSV's folder).

    The file must be UTF-8 (a byte-order mark is fine); subject ids must pass
    `check_subject_id`; every path, relative or absolute, must lie inside the manifest's
    folder once ``..`` is resolved (a symlink placed inside it is the user's choice and is
    followed). Every problem raises `VolumeError` naming the manifest and, for a row, its line.
    """
    path = Path(path)
    if not path.is_file():
        raise VolumeError(f"{path}: no such manifest file")
    try:
        with path.open(newline="", encoding="utf-8-sig") as stream:
            records = _manifest_records(path, csv.DictReader(stream))
    except UnicodeDecodeError as err:
        raise VolumeError(f"{path}: not UTF-8 text (byte {err.start}); save the manifest as UTF-8") from None
    except csv.Error as err:
        raise VolumeError(f"{path}: not a readable CSV ({err})") from None
    if not records:
        raise VolumeError(f"{path}: the manifest lists no files")
    return records


def _manifest_records(path: Path, reader: csv.DictReader) -> list[Record]:
    """The rows of an open manifest, each checked (see `read_manifest`)."""
    missing = [c for c in MANIFEST_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise VolumeError(
            f"{path}: missing column(s) {', '.join(missing)}; a manifest needs {', '.join(MANIFEST_COLUMNS)}"
        )
    folder = Path(os.path.abspath(path.parent))
    records = []
    for row in reader:
        where = f"{path} line {reader.line_num}"
        values = {c: (row[c] or "").strip() for c in MANIFEST_COLUMNS}
        if empty := [c for c in MANIFEST_COLUMNS if not values[c]]:
            raise VolumeError(f"{where}: empty {', '.join(empty)}")
        try:
            subject = check_subject_id(values["subject"])
            contrast = canonical_contrast(values["contrast"])
        except (KeyError, ValueError) as err:
            raise VolumeError(f"{where}: {err.args[0]}") from None
        file = Path(os.path.normpath(folder / values["path"]))  # an absolute path replaces `folder`
        if not file.is_relative_to(folder):
            raise VolumeError(f"{where}: path {values['path']} is outside the manifest's folder {folder}")
        if not file.is_file():
            raise VolumeError(f"{where}: no such file {file}")
        records.append(Record(subject, contrast, file))
    return records


def write_manifest(path: str | os.PathLike, records: Iterable[Record]) -> Path:
    """Write records as a manifest CSV (paths relative to its folder), atomically."""
    path = Path(path)
    text = StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    for r in records:
        writer.writerow([r.subject, r.contrast, Path(os.path.relpath(r.path, path.parent)).as_posix()])
    return write_text(path, text.getvalue())
