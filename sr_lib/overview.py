"""What the data and the degradations look like: the tables and figures of notebooks 00 and 01.

Everything here combines the library's own pieces (datasets and splits, scenario presets,
the interpolation baselines, metrics); nothing is re-implemented. Figures are
``matplotlib.figure.Figure`` objects not registered with pyplot: ``display`` them in a
notebook or save them with `sr_lib.report.save_figure`.

Degraded volumes are seeded as everywhere in the workbench (`sr_lib.prepare.data_rng`):
subject ``i`` of a list of test volumes uses ``data_rng(seed, 3, i)``, so the
LR a notebook shows is the LR the methods are evaluated on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from sr_lib.data import Dataset, Split
from sr_lib.data.phantom import CONTRAST_ORDER
from sr_lib.degrade import Scenario, degrade_volume, get_scenario
from sr_lib.io import Volume
from sr_lib.methods import build
from sr_lib.metrics import evaluate, foreground_mask, format_mean_std, summarise
from sr_lib.profiles import Profile
from sr_lib.prepare import data_rng
from sr_lib.viewer import AXIS_NAMES, corresponding_index

__all__ = [
    "SCORE_COLUMNS", "SPLIT_SETS", "baseline_for", "comparison_volumes", "contrast_montage", "dataset_overview",
    "degradation_scores", "degrade_subject", "format_scores", "intensity_histograms", "interpolate_to_hr",
    "kspace_magnitude", "scenario_gallery", "scenario_table", "split_table", "subject_volumes",
]

SPLIT_SETS: tuple[str, ...] = ("train", "val", "test")
ORIENTATIONS: tuple[tuple[str, int], ...] = (("sagittal", 0), ("coronal", 1), ("axial", 2))
#: metrics of `degradation_scores`: whole volume and foreground (`metrics.foreground_mask`)
SCORE_COLUMNS: tuple[str, ...] = ("psnr", "ssim", "psnr_fg", "ssim_fg")
_SCORE_LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "psnr_fg": "PSNR fg (dB)", "ssim_fg": "SSIM fg"}
KSPACE_CMAP = "magma"
KSPACE_DECADES = 5.0  # dynamic range of the k-space panels, in powers of ten below the DC term


# ----------------------------------------------------------------------------- tables of the data


def _times(values: Sequence[Any], fmt: str = "{}") -> str:
    return "×".join(fmt.format(v) for v in values)


def _display_order(contrasts: Sequence[str]) -> list[str]:
    """T1, T2, PD first (the conventional order), anything else after."""
    return [c for c in CONTRAST_ORDER if c in contrasts] + sorted(c for c in contrasts if c not in CONTRAST_ORDER)


def dataset_overview(dataset: Dataset) -> pd.DataFrame:
    """Subjects (rows) x contrasts (columns, T1 T2 PD): each volume's grid and voxel size,
    e.g. ``"32×40×32 @ 6×6×6 mm"``; "—" where a subject lacks a contrast. Reads headers only
    (`Dataset.table`)."""
    table = dataset.table()
    cells = [f"{_times(shape)} @ {_times(voxel, '{:g}')} mm" for shape, voxel in zip(table["shape"], table["voxel_size"])]
    wide = table.assign(volume=cells).pivot(index="subject", columns="contrast", values="volume")
    wide = wide[_display_order(list(wide.columns))].fillna("—")
    wide.columns.name = "contrast"
    return wide


def split_table(split: Split) -> pd.DataFrame:
    """Which set each subject belongs to: columns ``subject`` and ``set`` (train / val / test),
    one row per subject, sorted by subject. A subject listed in two sets raises ValueError."""
    rows = [(subject, name) for name in SPLIT_SETS for subject in getattr(split, name)]
    subjects = [s for s, _ in rows]
    twice = sorted({s for s in subjects if subjects.count(s) > 1})
    if twice:
        raise ValueError(f"subjects in more than one set: {', '.join(twice)}")
    table = pd.DataFrame(rows, columns=["subject", "set"]).sort_values("subject", ignore_index=True)
    table["set"] = pd.Categorical(table["set"], categories=list(SPLIT_SETS))
    return table


# ----------------------------------------------------------------------------- drawing helpers


def _fov(shape: Sequence[int], voxel_size: Sequence[float]) -> np.ndarray:
    return np.asarray(shape, dtype=float) * np.asarray(voxel_size, dtype=float)


def _draw_slice(ax: Axes, volume: Volume, axis: int, index: int, **imshow: Any) -> matplotlib.image.AxesImage:
    """Slice `index` along `axis`, drawn as the viewer does (lower remaining axis horizontal,
    origin lower left) over its field of view in mm, so voxels keep their physical shape."""
    plane = [d for d in range(3) if d != axis]
    fov = _fov(volume.shape, volume.voxel_size)
    extent = (0.0, fov[plane[0]], 0.0, fov[plane[1]])
    image = np.take(np.asarray(volume.data), index, axis=axis)
    return ax.imshow(image.T, origin="lower", extent=extent, interpolation="nearest", **imshow)


def _bare(ax: Axes) -> None:
    """No ticks or frame, but keep room for a y label (row names)."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


# ----------------------------------------------------------------------------- figures of the data


def intensity_histograms(
    dataset: Dataset, subjects: Sequence[str], contrasts: Sequence[str], *, bins: int = 50, threshold: float = 0.05
) -> Figure:
    """Histograms of the normalised ([0, 1], `io.normalise`) foreground intensities, one panel
    per contrast and one line per subject (same colour in every panel).

    Foreground = `metrics.foreground_mask` and above `threshold`: the mask's
    closing, hole filling and dilation also take in near-zero background voxels, which would
    otherwise swamp the tissue peaks."""
    if not subjects or not contrasts:
        raise ValueError("intensity_histograms needs at least one subject and one contrast")
    contrasts = _display_order(list(contrasts))
    edges = np.linspace(0.0, 1.0, bins + 1)
    fig = Figure(figsize=(3.6 * len(contrasts), 3.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(contrasts), sharex=True))
    colours = matplotlib.colormaps["tab20" if len(subjects) > 10 else "tab10"]
    for ax, contrast in zip(axes, contrasts):
        for i, subject in enumerate(subjects):
            volume = dataset.load(subject, contrast, normalised=True)
            values = volume.data[foreground_mask(volume.data) & (volume.data > threshold)]
            ax.hist(values, bins=edges, density=True, histtype="step", color=colours(i % colours.N), label=subject)
        ax.set_title(f"{contrast} ({len(subjects)} subjects)")
        ax.set_xlabel("normalised intensity (foreground)")
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(0.0, None)
    axes[0].set_ylabel("density")
    if len(subjects) <= 12:
        axes[-1].legend(fontsize=7, loc="upper left", frameon=False)
    fig.suptitle(f"{dataset.name}: foreground intensity histograms")
    return fig


def subject_volumes(dataset: Dataset, subject: str, *, contrasts: Sequence[str] | None = None) -> dict[str, Volume]:
    """The normalised volumes of one subject, contrast -> Volume in T1, T2, PD order: the
    given `contrasts`, or all the subject has. An unknown subject raises the dataset's KeyError."""
    contrasts = _display_order(list(contrasts) if contrasts is not None else
                               [r.contrast for r in dataset.records if r.subject == subject])
    if not contrasts:
        dataset.path(subject, "T1")  # raises the dataset's KeyError naming what exists
    return {c: dataset.load(subject, c, normalised=True) for c in contrasts}


def contrast_montage(dataset: Dataset, subject: str, *, contrasts: Sequence[str] | None = None) -> Figure:
    """Middle slices of one subject (`subject_volumes`): contrasts as rows (T1, T2, PD),
    sagittal / coronal / axial as columns, one grey scale [0, 1], physical aspect ratio."""
    volumes = subject_volumes(dataset, subject, contrasts=contrasts)
    contrasts = list(volumes)
    first = next(iter(volumes.values()))
    fov = _fov(first.shape, first.voxel_size)
    widths = [fov[1], fov[0], fov[0]]  # horizontal extent of sagittal (y), coronal (x), axial (x)
    fig = Figure(figsize=(2.6 * sum(widths) / max(widths) + 1.0, 2.6 * len(contrasts) * fov[2] / max(widths) + 0.8),
                 layout="constrained")
    axes = np.asarray(fig.subplots(len(contrasts), 3, squeeze=False, width_ratios=widths))
    image = None
    for row, (contrast, volume) in enumerate(volumes.items()):
        for col, (orientation, axis) in enumerate(ORIENTATIONS):
            ax = axes[row, col]
            index = volume.shape[axis] // 2
            image = _draw_slice(ax, volume, axis, index, cmap="gray", vmin=0.0, vmax=1.0)
            _bare(ax)
            if row == 0:
                ax.set_title(f"{orientation} ({AXIS_NAMES[axis]}={index})", fontsize=9)
            if col == 0:
                ax.set_ylabel(contrast, fontsize=11)
        # the grid of every row, as IXI's T1 may differ from T2/PD
        axes[row, -1].text(1.02, 0.5, f"{_times(volume.shape)}\n{_times(volume.voxel_size, '{:g}')} mm",
                           transform=axes[row, -1].transAxes, fontsize=7, va="center")
    fig.colorbar(image, ax=list(axes.ravel()), shrink=0.6, label="normalised intensity")
    fig.suptitle(f"{dataset.name} {subject}: middle slices")
    return fig


# ----------------------------------------------------------------------------- k-space


def kspace_magnitude(x: np.ndarray) -> np.ndarray:
    """``log10 |F|`` of a 2D slice (real or complex), F its centred FFT (DC at index ``n // 2`` per axis),
    normalised by the number of pixels (``norm="forward"``, so the DC term is the mean).

    That normalisation makes slices of one field of view on different grids comparable: the
    spectrum of a cropped-k-space LR slice equals the HR's inside the kept band. Magnitudes
    are floored at ``1e-12`` (exact zeros of zero-filled k-space) before the log.
    """
    x = np.asarray(x)
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"kspace_magnitude needs a non-empty 2D slice, got shape {x.shape}")
    x = x.astype(np.complex128 if np.iscomplexobj(x) else np.float64)
    spectrum = np.fft.fftshift(np.fft.fft2(x, norm="forward"))
    return np.log10(np.maximum(np.abs(spectrum), 1e-12)).astype(np.float32)


def _kspace_extent(n: Sequence[int], fov: Sequence[float]) -> tuple[float, float, float, float]:
    """Pixel-edge extent in cycles/mm of a centred spectrum of `n` samples over `fov` mm."""
    (nx, ny), (fx, fy) = n, fov
    return ((-(nx // 2) - 0.5) / fx, (nx - nx // 2 - 0.5) / fx, (-(ny // 2) - 0.5) / fy, (ny - ny // 2 - 0.5) / fy)


# ----------------------------------------------------------------------------- scenarios


def scenario_table(scenario_names: Sequence[str | Scenario], *, scale: int) -> pd.DataFrame:
    """One row per scenario: its paper, what it does, grid ('same' or 'small'), HR/LR factors
    per axis (x, y, z), the scale, and the interpolation that puts its LR on the HR grid ("none
    (same grid)" where the LR already lies on it)."""
    rows = []
    for name in scenario_names:
        s = get_scenario(name, scale=scale)
        rows.append({"scenario": s.name, "paper": s.paper, "description": s.description, "grid": s.grid,
                     "factors": _times(s.factors), "scale": s.scale, "interpolation": _interpolation_label(s, scale)})
    return pd.DataFrame(rows)


def degrade_subject(
    hr_volume: Volume, scenario: str | Scenario, *, seed: int, scale: int, subject_index: int = 0
) -> tuple[Volume, Volume | None, dict[str, Any]]:
    """`degrade.degrade_volume` of test subject `subject_index` with the workbench's seed rule
    ``np.random.default_rng([seed, 3, subject_index])``: (LR Volume, hole mask or None, params)."""
    return degrade_volume(hr_volume, get_scenario(scenario, scale=scale), data_rng(seed, 3, subject_index))


def baseline_for(scenario: str | Scenario, scale: int) -> str:
    """The interpolation baseline of the scenario's papers: 'bicubic' (in-plane, slice-wise) for
    the 2D settings, 'tricubic' for the volumetric ones (UDEAN)."""
    return "bicubic" if get_scenario(scenario, scale=scale).spatial_dims_hint == 2 else "tricubic"


def _interpolation_label(scenario: Scenario, scale: int) -> str:
    return baseline_for(scenario, scale) if scenario.grid == "small" else "none (same grid)"


def interpolate_to_hr(
    lr: np.ndarray, scenario: str | Scenario, *, scale: int, profile: str | Profile = "test"
) -> np.ndarray:
    """The LR volume on the HR grid by the scenario's interpolation baseline (`baseline_for`),
    i.e. the registered `bicubic` method (separable, so tricubic where z changes too); same-grid
    scenarios come back unchanged. `profile` only sizes learned methods and does not matter here."""
    s = get_scenario(scenario, scale=scale)
    if s.grid != "small":
        return np.asarray(lr, dtype=np.float32).copy()
    method = build("bicubic", factors=s.factors, profile=profile, dims=s.spatial_dims_hint)
    return method.predict_volume(np.asarray(lr, dtype=np.float32))


def comparison_volumes(
    hr_volume: Volume,
    scenario: str | Scenario,
    *,
    seed: int,
    scale: int,
    subject_index: int = 0,
    profile: str | Profile = "test",
) -> dict[str, Volume]:
    """Name -> Volume for `viewer.show_volumes` with ``difference_to="HR"``: HR, the degraded
    input (`degrade_subject`), its hole mask if any, and, on a small grid, the input put back
    on the HR grid by the interpolation baseline (`interpolate_to_hr`)."""
    s = get_scenario(scenario, scale=scale)
    lr, mask, _ = degrade_subject(hr_volume, s, seed=seed, scale=scale, subject_index=subject_index)
    volumes = {"HR": hr_volume, f"LR ({s.name})": lr}
    if s.grid == "small":
        upsampled = interpolate_to_hr(lr.data, s, scale=scale, profile=profile)
        volumes[f"LR → HR grid ({baseline_for(s, scale)})"] = hr_volume.replace(data=upsampled, path=None)
    if mask is not None:
        volumes["hole mask"] = mask
    return volumes


def scenario_gallery(
    hr_volume: Volume,
    scenario_names: Sequence[str | Scenario],
    *,
    seed: int,
    scale: int,
    subject_index: int = 0,
    axis: int = 2,
    index: int | None = None,
) -> Figure:
    """One row per scenario: HR slice, LR slice (on its own grid, same field of view), hole
    mask (or 'no mask'), and log k-space magnitude (`kspace_magnitude`) of HR and of LR.

    `hr_volume` is normalised; it is degraded as test subject `subject_index` (`degrade_subject`).
    The slice is `index` along `axis` of the HR grid (default: the middle), the LR shows the
    corresponding slice of its grid. Images share one grey scale [0, 1]; k-space panels share
    one colour scale (from the HR's DC term down `KSPACE_DECADES` decades) and HR's frequency
    limits, so a cropped LR spectrum shows as the central part (the rest is blank: not acquired).
    """
    if not scenario_names:
        raise ValueError("scenario_gallery needs at least one scenario")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis!r}")
    n_hr = hr_volume.shape[axis]
    index = n_hr // 2 if index is None else int(index)
    if not 0 <= index < n_hr:
        raise ValueError(f"index {index} outside [0, {n_hr - 1}] along axis {AXIS_NAMES[axis]}")
    plane = [d for d in range(3) if d != axis]
    fov = _fov(hr_volume.shape, hr_volume.voxel_size)
    hr_slice = np.take(hr_volume.data, index, axis=axis)
    hr_k = kspace_magnitude(hr_slice)
    k_max = float(hr_k.max())
    k_range = dict(cmap=KSPACE_CMAP, vmin=k_max - KSPACE_DECADES, vmax=k_max, interpolation="nearest", origin="lower")
    hr_k_extent = _kspace_extent([hr_volume.shape[d] for d in plane], fov[plane])

    rows = len(scenario_names)
    aspect = fov[plane[1]] / fov[plane[0]]
    panel = 2.1
    fig = Figure(figsize=(5 * panel + 1.6, rows * (panel * min(aspect, 1.6) + 0.35) + 0.6), layout="constrained")
    axes = np.asarray(fig.subplots(rows, 5, squeeze=False))
    headers = ("HR", "LR (degraded input)", "hole mask", "log₁₀|k| HR", "log₁₀|k| LR")

    def grid_text(volume: Volume) -> str:
        return (f"{_times([volume.shape[d] for d in plane])}, "
                f"{_times([volume.voxel_size[d] for d in plane], '{:g}')} mm")

    grey = k_image = None
    for row, name in enumerate(scenario_names):
        s = get_scenario(name, scale=scale)
        lr, mask, _ = degrade_subject(hr_volume, s, seed=seed, scale=scale, subject_index=subject_index)
        lr_index = corresponding_index(index, n_hr, lr.shape[axis])
        lr_slice = np.take(lr.data, lr_index, axis=axis)
        ax_hr, ax_lr, ax_mask, ax_khr, ax_klr = axes[row]
        grey = _draw_slice(ax_hr, hr_volume, axis, index, cmap="gray", vmin=0.0, vmax=1.0)
        _draw_slice(ax_lr, lr, axis, lr_index, cmap="gray", vmin=0.0, vmax=1.0)
        if mask is None:
            ax_mask.text(0.5, 0.5, "no mask", ha="center", va="center", transform=ax_mask.transAxes, color="0.4")
            ax_mask.set_xlim(0, fov[plane[0]])
            ax_mask.set_ylim(0, fov[plane[1]])
            ax_mask.set_aspect("equal")
            mask_text = ""
        else:
            _draw_slice(ax_mask, mask, axis, lr_index, cmap="gray", vmin=0.0, vmax=1.0)
            mask_text = f"{int(np.take(mask.data, lr_index, axis=axis).sum())} px missing (white)"
        k_image = ax_khr.imshow(hr_k.T, extent=hr_k_extent, **k_range)
        ax_klr.imshow(kspace_magnitude(lr_slice).T, extent=_kspace_extent(lr_slice.shape, fov[plane]), **k_range)
        ax_klr.set_facecolor(matplotlib.colormaps[KSPACE_CMAP](0.0))  # outside the kept band: nothing acquired
        for ax in (ax_khr, ax_klr):
            ax.set_xlim(hr_k_extent[:2])
            ax.set_ylim(hr_k_extent[2:])
        texts = (grid_text(hr_volume), grid_text(lr), mask_text,
                 f"{_times(hr_slice.shape)} samples", f"{_times(lr_slice.shape)} samples")
        for ax, header, text in zip(axes[row], headers, texts):
            ax.set_title(f"{header}\n{text}" if row == 0 else text, fontsize=8)
            _bare(ax)
        ax_hr.set_ylabel(f"{s.name}\n{s.grid} grid, ×{_times(s.factors)}", fontsize=9)
    fig.colorbar(grey, ax=list(axes[:, :3].ravel()), location="bottom", shrink=0.6, aspect=30,
                 label="normalised intensity (HR, LR, mask)")
    fig.colorbar(k_image, ax=list(axes[:, 3:].ravel()), location="bottom", shrink=0.9, aspect=20,
                 label="log₁₀ |k| (DC term = mean intensity)")
    fig.suptitle(f"{hr_volume.subject} {hr_volume.contrast}: {ORIENTATIONS[axis][0]} slice "
                 f"{AXIS_NAMES[axis]}={index}, seed {seed}, scale {scale}")
    return fig


# ----------------------------------------------------------------------------- scores of the degraded input


def degradation_scores(
    hr_volumes: Sequence[Volume],
    scenario_names: Sequence[str | Scenario],
    *,
    seed: int,
    scale: int,
    profile: str | Profile = "test",
) -> pd.DataFrame:
    """How far each scenario's degraded input is from HR: PSNR and SSIM (whole volume and
    foreground, data range 1) of the LR put back on the HR grid by `interpolate_to_hr`, as the
    runs evaluate a method (`metrics.evaluate` with `metrics.foreground_mask` of HR).

    Volume ``i`` of `hr_volumes` (normalised) is degraded as test subject ``i``
    (`degrade_subject`). One row per scenario: ``scenario, interpolation, n_subjects`` and
    ``<metric>_mean, <metric>_std`` for each of `SCORE_COLUMNS` (std over subjects, ddof 1;
    `metrics.summarise`).
    """
    if not hr_volumes:
        raise ValueError("degradation_scores needs at least one HR volume")
    foregrounds = [foreground_mask(hr.data) for hr in hr_volumes]
    rows = []
    for name in scenario_names:
        s = get_scenario(name, scale=scale)
        per_subject = []
        for i, (hr, foreground) in enumerate(zip(hr_volumes, foregrounds)):
            lr, _, _ = degrade_subject(hr, s, seed=seed, scale=scale, subject_index=i)
            prediction = interpolate_to_hr(lr.data, s, scale=scale, profile=profile)
            per_subject.append(evaluate(prediction, hr.data, mask=foreground))
        row: dict[str, Any] = {"scenario": s.name, "interpolation": _interpolation_label(s, scale),
                               "n_subjects": len(hr_volumes)}
        for metric in SCORE_COLUMNS:
            row[f"{metric}_mean"], row[f"{metric}_std"] = summarise(scores[metric] for scores in per_subject)
        rows.append(row)
    columns = ["scenario", "interpolation", "n_subjects"] + [f"{m}_{k}" for m in SCORE_COLUMNS for k in ("mean", "std")]
    return pd.DataFrame(rows, columns=columns)


def format_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """`degradation_scores` for reading: scenario as index, ``mean ± std`` per metric (PSNR 2
    decimals, SSIM 4), as the papers' tables."""
    table = scores.set_index("scenario")[["interpolation", "n_subjects"]].copy()
    for metric in SCORE_COLUMNS:
        digits = 2 if metric.startswith("psnr") else 4
        table[_SCORE_LABELS[metric]] = [format_mean_std(m, s, digits)
                                        for m, s in zip(scores[f"{metric}_mean"], scores[f"{metric}_std"])]
    return table
