"""The embedded phantom: multi-contrast brains simulated offline from the MNI152 template.

Anatomy comes from the MNI152 2009 nonlinear symmetric grey/white-matter probability maps that
nilearn ships (CSF = brain mask - GM - WM, clipped at 0; DESIGN.md, "Facts for the embedded
phantom"). Each subject is the template deformed by a small affine (rotation, per-axis scale)
and a smooth elastic field; its T1w, T2w and PDw images follow the spin-echo equation
``S = sum_tissue fraction * PD * (1 - exp(-TR/T1)) * exp(-TE/T2)`` with 1.5 T tissue values,
times a smooth bias field, plus Rician noise.

Fine structure: the template is an average of 152 brains, so its tissue boundaries are
blurred. We (1) sharpen the probabilities on the 1 mm grid (``p_t**3``, renormalised), giving
crisp boundaries like a single brain, and (2) add a fine elastic warp (about half a voxel,
correlated over ~1.5 voxels) that wiggles the cortical ribbon at the output resolution, and
(3) a 2% band-limited proton-density texture. So the high-resolution images carry detail
at the scale of their voxels that downsampling removes and super-resolution can try to recover.

The three contrasts of a subject share one anatomy and one grid (in IXI only T2 and PD do).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage
from tqdm.auto import tqdm

from sr_lib.atomic import write_json
from sr_lib.data.folders import Dataset, Record, bids_suffix, read_manifest, write_manifest
from sr_lib.io import Volume, save_volume
from sr_lib.paths import cache_dir
from sr_lib.profiles import Profile, get_profile

FORMAT_VERSION = 1  # bump when the simulation changes, so old caches are regenerated
TISSUES: tuple[str, ...] = ("GM", "WM", "CSF")
CONTRAST_ORDER: tuple[str, ...] = ("T1", "T2", "PD")
MANIFEST = "manifest.csv"
META = "phantom.json"


@dataclasses.dataclass(frozen=True)
class Tissue:
    """Relaxation times (ms) and proton density (relative to water) of one tissue."""

    t1_ms: float
    t2_ms: float
    pd: float


# 1.5 T values inside the ranges of DESIGN.md
TISSUE_PARAMS: dict[str, Tissue] = {
    "GM": Tissue(t1_ms=1000.0, t2_ms=95.0, pd=0.82),
    "WM": Tissue(t1_ms=600.0, t2_ms=75.0, pd=0.72),
    "CSF": Tissue(t1_ms=3500.0, t2_ms=1500.0, pd=1.0),
}
# spin-echo sequences: contrast -> (TR, TE) in ms
SEQUENCES: dict[str, tuple[float, float]] = {"T1": (500.0, 15.0), "T2": (4000.0, 100.0), "PD": (4000.0, 15.0)}

GAIN = 1000.0  # receiver gain: brightest tissue ~ 700-1000, like scanner units
SHARPEN_POWER = 3.0  # tissue probabilities p -> p**3 / sum(p**3)
MARGIN_MM = 10.0  # around the template brain's bounding box: room for the deformations
MAX_ROTATION_DEG = 3.0
MAX_SCALE = 0.05  # per-axis scale in [1 - MAX_SCALE, 1 + MAX_SCALE]
COARSE_WARP_MM = 2.5  # std of each displacement component
COARSE_WARP_SIGMA_MM = 15.0  # Gaussian smoothing of the displacement field
FINE_WARP_VOXELS = 0.5  # std of the fine displacement, in output voxels
FINE_WARP_SIGMA_VOXELS = 1.5
TEXTURE = 0.02  # std of the proton-density texture
TEXTURE_SIGMA_VOXELS = 1.0
TISSUE_JITTER = 0.03  # relative std of T1, T2 and PD per tissue and subject
BIAS = 0.08  # std of the log bias field
BIAS_SIGMA_MM = 40.0
NOISE_RANGE = (0.01, 0.03)  # Rician noise std as a fraction of the white-matter signal


def spin_echo(tissue: Tissue, tr_ms: float, te_ms: float) -> float:
    """Spin-echo signal of a pure tissue: PD * (1 - exp(-TR/T1)) * exp(-TE/T2)."""
    return tissue.pd * (1.0 - np.exp(-tr_ms / tissue.t1_ms)) * np.exp(-te_ms / tissue.t2_ms)


@dataclasses.dataclass(frozen=True)
class _Template:
    maps: np.ndarray  # (3, X, Y, Z) GM, WM, CSF fractions on the (cropped) 1 mm template grid
    maps_affine: np.ndarray  # voxel -> MNI mm of `maps`
    shape: tuple[int, int, int]  # output grid
    affine: np.ndarray  # output voxel -> mm
    centre: np.ndarray  # brain bounding-box centre (mm): rotations and scaling act about it


@functools.lru_cache(maxsize=2)
def _template(voxel_size_mm: float) -> _Template:
    """Sharpened, anti-aliased 1 mm tissue maps and the output grid for `voxel_size_mm`.

    The 1 mm maps are always used (nilearn's 2 mm ones are resampled at load time, slower and
    without anti-aliasing); each subject is sampled from them in one interpolation.
    """
    from nilearn import datasets  # slow import, only needed here

    brain = datasets.load_mni152_template(resolution=1)
    mask = np.asarray(brain.dataobj) > 0
    gm = np.asarray(datasets.load_mni152_gm_template(resolution=1).get_fdata(dtype=np.float32)) * mask
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=1).get_fdata(dtype=np.float32)) * mask
    csf = np.clip(mask.astype(np.float32) - gm - wm, 0.0, None)
    sharp = np.stack([gm, wm, csf]) ** SHARPEN_POWER
    total = sharp.sum(axis=0)
    maps = np.divide(sharp, total, out=np.zeros_like(sharp), where=total > 0) * mask

    # anti-alias for the output voxel: a Gaussian with the std of a box of that width
    sigma = voxel_size_mm / np.sqrt(12.0) if voxel_size_mm > 1.0 else 0.0
    pad = int(np.ceil(4 * sigma)) + 1
    corner = np.argwhere(mask)
    lo, hi = corner.min(axis=0), corner.max(axis=0)
    crop = tuple(slice(max(a - pad, 0), b + pad + 1) for a, b in zip(lo, hi))
    maps = maps[(slice(None), *crop)]
    if sigma > 0:
        maps = np.stack([ndimage.gaussian_filter(m, sigma, mode="constant") for m in maps])
    maps_affine = brain.affine.copy()
    maps_affine[:3, 3] += brain.affine[:3, :3] @ np.array([s.start for s in crop], dtype=float)

    # output grid: bounding box + margin, each axis a multiple of 8 voxels, centred on the brain
    world_lo = (brain.affine @ np.append(lo, 1.0))[:3] - MARGIN_MM
    world_hi = (brain.affine @ np.append(hi, 1.0))[:3] + MARGIN_MM
    n = np.ceil((world_hi - world_lo) / voxel_size_mm / 8.0).astype(int) * 8
    centre = (world_lo + world_hi) / 2.0
    affine = np.diag([voxel_size_mm] * 3 + [1.0])
    affine[:3, 3] = centre - voxel_size_mm * (n - 1) / 2.0  # centre of voxel 0
    return _Template(maps.astype(np.float32), maps_affine, tuple(int(k) for k in n), affine, centre)


def phantom_grid(profile: str | Profile = "quick") -> tuple[tuple[int, int, int], np.ndarray]:
    """(shape, affine) of every phantom volume of `profile`."""
    template = _template(get_profile(profile).voxel_size_mm)
    return template.shape, template.affine.copy()


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_voxels: float) -> np.ndarray:
    """Gaussian white noise smoothed by a Gaussian of `sigma_voxels`, rescaled to unit std (float32).

    Wide fields are made on a grid `step` times coarser (about sigma / 2) and interpolated
    linearly: the same smoothness for a fraction of the cost.
    """
    step = max(1, int(sigma_voxels // 2))
    coarse = tuple(-(-n // step) + 1 for n in shape) if step > 1 else shape
    white = rng.standard_normal(coarse, dtype=np.float32)
    field = ndimage.gaussian_filter(white, sigma_voxels / step, mode="wrap")
    if step > 1:
        field = ndimage.affine_transform(field, np.full(len(shape), 1.0 / step), output_shape=shape, order=1)
    return field / max(float(field.std()), 1e-12)


def _rotation(angles_rad: np.ndarray) -> np.ndarray:
    cx, cy, cz = np.cos(angles_rad)
    sx, sy, sz = np.sin(angles_rad)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rx @ ry @ rz


def _subject_rngs(seed: int, index: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent streams for a subject's anatomy and its images, from (seed, index) only."""
    anatomy, signal = np.random.SeedSequence([seed, index]).spawn(2)
    return np.random.default_rng(anatomy), np.random.default_rng(signal)


def subject_tissues(index: int, *, profile: str | Profile = "quick", seed: int = 0) -> dict[str, np.ndarray]:
    """Tissue fractions {"GM", "WM", "CSF"} (float32, summing to the brain mask) of subject `index`.

    The template warped by a random affine (rotation up to 3 degrees per axis, scale 1 +- 5% per
    axis, about the brain centre) plus a smooth elastic field (2.5 mm std, smoothed over 15 mm)
    and a fine one (half an output voxel, smoothed over 1.5 voxels).
    """
    template = _template(get_profile(profile).voxel_size_mm)
    rng, _ = _subject_rngs(seed, index)
    voxel = template.affine[0, 0]
    shape = template.shape

    linear = _rotation(np.deg2rad(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG, 3)))
    linear = linear @ np.diag(1.0 / rng.uniform(1.0 - MAX_SCALE, 1.0 + MAX_SCALE, 3))
    displacement = np.stack(
        [
            COARSE_WARP_MM * smooth_noise(rng, shape, COARSE_WARP_SIGMA_MM / voxel)
            + FINE_WARP_VOXELS * voxel * smooth_noise(rng, shape, FINE_WARP_SIGMA_VOXELS)
            for _ in range(3)
        ]
    ).reshape(3, -1)

    # subject mm -> template mm: centre + linear (x - centre) + displacement(x)
    points = template.affine[:3, :3] @ np.indices(shape, dtype=np.float32).reshape(3, -1)
    points += (template.affine[:3, 3] - template.centre)[:, None]
    points = linear @ points + template.centre[:, None] + displacement
    to_voxels = np.linalg.inv(template.maps_affine)
    coords = (to_voxels[:3, :3] @ points + to_voxels[:3, 3:]).astype(np.float32)
    return {
        name: ndimage.map_coordinates(m, coords, order=1, mode="constant", cval=0.0).reshape(shape)
        for name, m in zip(TISSUES, template.maps)
    }


def simulate_subject(index: int, *, profile: str | Profile = "quick", seed: int = 0) -> dict[str, Volume]:
    """T1w, T2w and PDw volumes of phantom subject `index`, keyed "T1", "T2", "PD" (scanner-like units, float32).

    Per subject, from one seed: the anatomy of `subject_tissues`; T1, T2 and PD of each tissue
    jittered by 3%; a 2% proton-density texture; a smooth bias field (log std 0.08, over 40 mm)
    for the T1w acquisition and one shared by T2w and PDw (one dual-echo acquisition, as in
    IXI); Rician noise with std 1-3% of the white-matter signal, independent per image.
    All three share the grid and affine (MNI orientation, isotropic profile voxel size).
    """
    template = _template(get_profile(profile).voxel_size_mm)
    tissues = subject_tissues(index, profile=profile, seed=seed)
    _, rng = _subject_rngs(seed, index)
    voxel = template.affine[0, 0]
    shape = template.shape

    params = {
        name: Tissue(*(value * (1.0 + TISSUE_JITTER * rng.standard_normal()) for value in dataclasses.astuple(t)))
        for name, t in TISSUE_PARAMS.items()
    }
    noise_level = rng.uniform(*NOISE_RANGE)
    texture = 1.0 + TEXTURE * smooth_noise(rng, shape, TEXTURE_SIGMA_VOXELS)
    bias_t1 = np.exp(BIAS * smooth_noise(rng, shape, BIAS_SIGMA_MM / voxel))
    bias_dual_echo = np.exp(BIAS * smooth_noise(rng, shape, BIAS_SIGMA_MM / voxel))
    bias = {"T1": bias_t1, "T2": bias_dual_echo, "PD": bias_dual_echo}

    header = nib.Nifti1Header()
    header.set_xyzt_units("mm", "sec")
    subject = f"sub-{index:03d}"
    volumes = {}
    for contrast in CONTRAST_ORDER:
        tr, te = SEQUENCES[contrast]
        clean = sum(tissues[t] * np.float32(spin_echo(params[t], tr, te)) for t in TISSUES)
        clean = GAIN * clean * texture * bias[contrast]
        sigma = noise_level * GAIN * spin_echo(params["WM"], tr, te)
        real = clean + np.float32(sigma) * rng.standard_normal(shape, dtype=np.float32)
        imaginary = np.float32(sigma) * rng.standard_normal(shape, dtype=np.float32)
        data = np.sqrt(real**2 + imaginary**2).astype(np.float32)  # Rician magnitude
        volumes[contrast] = Volume(
            data=data, affine=template.affine.copy(), header=header.copy(), subject=subject, contrast=contrast
        )
    return volumes


def phantom_dataset(
    profile: str | Profile = "quick", *, seed: int = 0, root: str | os.PathLike | None = None
) -> Dataset:
    """The phantom of `profile` (profile.n_subjects subjects, T1/T2/PD), generated once and cached.

    Files go to ``<root>/<profile>-seed<seed>/`` (root defaults to ``cache_dir()/phantom``):
    ``sub-000_T1w.nii.gz``, ``sub-000_T2w.nii.gz``, ``sub-000_PDw.nii.gz``, ... (BIDS suffixes;
    the contrasts are still called "T1", "T2", "PD" inside the workbench), ``manifest.csv`` and
    ``phantom.json``. Generation writes a hidden temporary folder and renames it into place, so
    an interrupted run never leaves a folder that looks like a cache; a cache made by another
    simulation version is replaced. (A cache written before the BIDS names, with
    ``sub-000_T1.nii.gz``, holds the same volumes and is used as it is: its manifest names them.)
    """
    profile = get_profile(profile)
    folder = (Path(root) if root is not None else cache_dir() / "phantom") / f"{profile.name}-seed{seed}"
    meta = {
        "format": FORMAT_VERSION,
        "profile": profile.name,
        "voxel_size_mm": profile.voxel_size_mm,
        "n_subjects": profile.n_subjects,
        "seed": seed,
    }
    if not _is_cached(folder, meta):
        _generate(folder, profile, seed, meta)
    return Dataset("phantom", read_manifest(folder / MANIFEST))


def _is_cached(folder: Path, meta: dict) -> bool:
    """A complete phantom made with the same settings (phantom.json is written last)."""
    try:
        return json.loads((folder / META).read_text()) == meta and (folder / MANIFEST).is_file()
    except (OSError, ValueError):
        return False


def _generate(folder: Path, profile: Profile, seed: int, meta: dict) -> None:
    """Simulate every subject into a hidden folder beside `folder`, then rename it into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=folder.parent))
    description = f"sr_lib phantom v{FORMAT_VERSION} {profile.name} seed {seed}"
    try:
        records = []
        for index in tqdm(range(profile.n_subjects), desc=f"phantom {profile.name} seed {seed}", unit="subject"):
            for contrast, volume in simulate_subject(index, profile=profile, seed=seed).items():
                path = tmp / f"{volume.subject}_{bids_suffix(contrast)}.nii.gz"
                save_volume(volume, path, description=description)
                records.append(Record(volume.subject, bids_suffix(contrast), path))  # manifest: T1w, T2w, PDw
        write_manifest(tmp / MANIFEST, records)
        write_json(tmp / META, meta)
        tmp.chmod(0o755)  # mkdtemp makes it private; a cache is ordinary data
        if folder.exists() and not _is_cached(folder, meta):  # stale: other version or settings, or partial
            shutil.rmtree(folder)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not _is_cached(folder, meta):  # else another process has just finished the same phantom
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
