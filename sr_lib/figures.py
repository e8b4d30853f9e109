"""Figures that say what their numbers are: difference maps, training curves, summary bars.

Every number printed on a figure names the slice and the region it was computed on. The
difference figure scores the displayed slice only, with the 2D per-slice metrics of
`sr_lib.metrics.slice_scores` (2D PSNR and SSIM within the brain mask of that slice), so a
panel's "31.20 dB" is not the volume's headline number of the tables, and says so.

Images are drawn as ``plane.T`` with ``origin="lower"``: the first in-plane axis runs left to
right, the second bottom to top. The module picks no matplotlib backend; tests and scripts
set ``Agg``, notebooks use their inline backend.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from sr_lib.atomic import atomic_path
from sr_lib.io import Volume
from sr_lib.metrics import psnr, slice_scores
from sr_lib.planes import nearest_indices

AXIS_NAMES = ("x", "y", "z")

__all__ = ["difference_figure", "plot_summary", "plot_training_log", "save_figure"]


# ----------------------------------------------------------------------------- difference maps


def _array(a, name: str) -> np.ndarray:
    if isinstance(a, Volume):
        a = a.data
    if hasattr(a, "detach"):  # a torch tensor
        a = a.detach().cpu().numpy()
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 3:
        raise ValueError(f"{name}: expected a 3D volume, got shape {arr.shape}")
    return arr


def _lr_plane(lr: np.ndarray, hr_shape: tuple[int, ...], axis: int, index: int) -> tuple[np.ndarray, int]:
    """The LR slice matching HR slice `index`, upsampled to the HR plane by nearest neighbour."""
    k = int(nearest_indices(hr_shape[axis], lr.shape[axis])[index])
    plane = np.take(lr, k, axis=axis)
    out_shape = [s for d, s in enumerate(hr_shape) if d != axis]
    rows = nearest_indices(out_shape[0], plane.shape[0])
    cols = nearest_indices(out_shape[1], plane.shape[1])
    return plane[np.ix_(rows, cols)], k


def _slice_text(axis: int, index: int, region: str) -> str:
    return f"slice {AXIS_NAMES[axis]}={index} · {region}"


def _panel_scores(vol: np.ndarray, hr: np.ndarray, mask: np.ndarray | None, axis: int, index: int) -> str:
    """'31.20 dB / 0.9120' on the displayed slice, within its mask when given ('' if undefined)."""
    one = lambda a: np.take(a, [index], axis=axis)  # noqa: E731  (keeps the volume 3D: one slice)
    m = one(mask) if mask is not None else None
    try:
        s = slice_scores(one(vol), one(hr), axis=axis, mask=m, min_fraction=0.0)
        return f"{s['psnr_slices']:.2f} dB / {s['ssim_slices']:.4f}"
    except ValueError:  # SSIM undefined (a side below 11, or the mask only in the border): PSNR alone
        try:
            return f"{psnr(one(vol), one(hr), mask=m):.2f} dB"
        except ValueError:
            return ""


def _default_roi(shape: tuple[int, int]) -> tuple[slice, slice]:
    h, w = shape
    return slice(h * 3 // 8, max(h * 5 // 8, h * 3 // 8 + 1)), slice(w * 3 // 8, max(w * 5 // 8, w * 3 // 8 + 1))


def difference_figure(
    hr,
    lr,
    predictions: Mapping[str, object],
    *,
    axis: int = 2,
    index: int | None = None,
    mask=None,
    title: str = "",
    roi: tuple[slice, slice] | None = None,
) -> Figure:
    """LR | each method | HR on one slice, with error maps and a zoom; numbers per panel.

    `hr`: the reference volume (X, Y, Z); `predictions`: name -> volume of `hr`'s shape; `lr`:
    the observation, on the HR grid or on its own smaller grid; `mask`: the brain mask (bool,
    HR shape). `axis`, `index`: the slice shown (default: the slice with the most brain, or
    the middle one without a mask). `roi`: the in-plane zoom window (default the central
    quarter).

    Row 1 shows the images; each panel's title says which slice and region its numbers are
    for, e.g. ``"slice z=44 · brain"`` then ``"31.20 dB / 0.9120"``: 2D PSNR and SSIM of that
    slice within the slice's brain mask (`slice_scores` on one slice; 'slice' instead of
    'brain' when no mask is given or it misses the slice). The brain outline is drawn on HR
    and on the error maps. LR on another grid is shown nearest-upsampled for display only, its
    title says "LR grid" with its shape and own slice index, and it gets no numbers and no
    error maps (a voxel-wise comparison would need an interpolation, i.e. a method). Row 2:
    absolute error |pred - HR| (shared scale, 0 to the 99.5th percentile of all panels' errors
    in the region); row 3: signed error pred - HR (blue = too dark, red = too bright, limits
    symmetric about 0); each error row has one colour bar, in the HR column so the grid stays
    aligned. Row 4: the zoom window (yellow box on row 1).
    """
    hr = _array(hr, "hr")
    lr = _array(lr, "lr")
    preds = {str(name): _array(p, f"prediction {name!r}") for name, p in predictions.items()}
    if not preds:
        raise ValueError("difference_figure needs at least one prediction")
    for name, p in preds.items():
        if p.shape != hr.shape:
            raise ValueError(f"prediction {name!r} has shape {p.shape}, HR has {hr.shape}")
    if not isinstance(axis, (int, np.integer)) or not -3 <= axis < 3:
        raise ValueError(f"axis must be 0, 1 or 2, got {axis!r}")
    axis = int(axis) % 3
    if mask is not None:
        mask = np.asarray(mask.data if isinstance(mask, Volume) else mask)
        if mask.shape != hr.shape:
            raise ValueError(f"mask shape {mask.shape} differs from HR shape {hr.shape}")
        mask = mask.astype(bool)
    n = hr.shape[axis]
    if index is None:
        in_plane = tuple(d for d in range(3) if d != axis)
        index = int(np.argmax(mask.sum(axis=in_plane))) if mask is not None and mask.any() else n // 2
    if not 0 <= index < n:
        raise ValueError(f"index {index} is outside 0..{n - 1} along axis {axis}")

    hr2 = np.take(hr, index, axis=axis)
    m2 = np.take(mask, index, axis=axis) if mask is not None and np.take(mask, index, axis=axis).any() else None
    region = "brain" if m2 is not None else "slice"
    sel = m2 if m2 is not None else np.ones_like(hr2, dtype=bool)
    same_grid = lr.shape == hr.shape
    if same_grid:
        lr2, lr_text = np.take(lr, index, axis=axis), None
    else:
        lr2, k = _lr_plane(lr, hr.shape, axis, index)
        lr_text = f"LR grid {'×'.join(map(str, lr.shape))}\n{AXIS_NAMES[axis]}={k}, nearest (display only)"

    panels = {"LR": lr2, **{name: np.take(p, index, axis=axis) for name, p in preds.items()}, "HR": hr2}
    scored = {"LR": lr} if same_grid else {}
    scored.update(preds)
    errors = {name: panels[name] - hr2 for name in scored}
    limit = max(float(np.percentile(np.abs(e[sel]), 99.5)) for e in errors.values())
    limit = limit if limit > 0 else 1e-3
    roi = _default_roi(hr2.shape) if roi is None else roi
    zoom_mask = np.zeros_like(hr2, dtype=bool)
    zoom_mask[roi] = True
    if not zoom_mask.any():
        raise ValueError(f"roi {roi} selects nothing in a slice of shape {hr2.shape}")
    rr, cc = np.nonzero(zoom_mask)
    r0, r1, c0, c1 = rr.min(), rr.max() + 1, cc.min(), cc.max() + 1

    ncol = len(panels)
    aspect = hr2.shape[1] / hr2.shape[0]
    fig, axes = plt.subplots(4, ncol, figsize=(2.3 * ncol, 4 * 2.3 * min(max(aspect, 0.6), 1.6) + 1.2),
                             squeeze=False)
    show = dict(origin="lower", interpolation="nearest")
    abs_im = signed_im = None
    for col, (name, img) in enumerate(panels.items()):
        where = _slice_text(axis, index, region)
        if name == "LR" and not same_grid:
            label = f"LR\n{lr_text}"
        elif name == "HR":
            label = f"HR (reference)\n{where}" + (" (outlined)" if m2 is not None else "")
        else:
            label = f"{name}\n{where}\n{_panel_scores(scored[name], hr, mask, axis, index)}"
        ax = axes[0, col]
        ax.imshow(img.T, cmap="gray", vmin=0, vmax=1, **show)
        ax.set_title(label, fontsize=7)
        ax.add_patch(Rectangle((r0 - 0.5, c0 - 0.5), r1 - r0, c1 - c0, fill=False, edgecolor="yellow", lw=0.8))
        axes[3, col].imshow(img[r0:r1, c0:c1].T, cmap="gray", vmin=0, vmax=1, **show)
        if name == "HR" and m2 is not None:
            ax.contour(m2.T.astype(float), levels=[0.5], colors="lime", linewidths=0.6)
        if name in errors:
            abs_im = axes[1, col].imshow(np.abs(errors[name]).T, cmap="inferno", vmin=0, vmax=limit, **show)
            signed_im = axes[2, col].imshow(errors[name].T, cmap="RdBu_r", vmin=-limit, vmax=limit, **show)
            if m2 is not None:
                for row in (1, 2):
                    axes[row, col].contour(m2.T.astype(float), levels=[0.5], colors="lime", linewidths=0.4)
        elif name == "LR":
            for row in (1, 2):  # a blank image keeps the cell's aspect (and the row label) like its neighbours
                axes[row, col].imshow(np.full(img.T.shape, np.nan), cmap="gray", **show)
                axes[row, col].text(0.5, 0.5, "LR grid:\nno voxel-wise error", ha="center", va="center",
                                    fontsize=7, transform=axes[row, col].transAxes)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for row, text in enumerate(("image", "|pred − HR|", "pred − HR", "zoom")):
        axes[row, 0].set_ylabel(text, fontsize=8)
    for row, image, text in ((1, abs_im, "absolute error"), (2, signed_im, "signed error (red: too bright)")):
        axes[row, -1].axis("off")  # HR has no error: its cell holds the colour bar, keeping the grid aligned
        cbar = fig.colorbar(image, cax=axes[row, -1].inset_axes([0.05, 0.05, 0.12, 0.9]))
        cbar.set_label(text, fontsize=7)
        cbar.ax.tick_params(labelsize=6)
    what = f"numbers: 2D PSNR / SSIM of {_slice_text(axis, index, region)} (data range 1)"
    fig.suptitle(f"{title}\n{what}" if title else what, fontsize=9)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- training curves


def _last_value(log: pd.DataFrame, column: str):
    if column not in log.columns:
        return None
    values = log[column].dropna()
    return None if values.empty else float(values.iloc[-1])


def plot_training_log(
    log: pd.DataFrame, *, title: str = "", best_step: float | None = None, stopped_at: float | None = None
) -> Figure:
    """Training losses (log scale where positive) and validation PSNR/SSIM against step.

    Every numeric column but ``step, lr, epoch, best_step, stopped_at`` and ``val_*`` is a loss.
    A vertical dashed line marks the early-stopping point (the best validation step, whose
    weights were kept): `best_step`, or else the last value of a ``best_step`` column; a
    dotted line marks where training stopped (`stopped_at`, or a ``stopped_at`` column).
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    if log is None or log.empty:
        for ax in axes:
            ax.text(0.5, 0.5, "no training log (classical method)", ha="center", va="center")
            ax.axis("off")
        return fig
    if "step" not in log.columns:
        raise ValueError(f"training log needs a 'step' column, has {list(log.columns)}")
    best_step = _last_value(log, "best_step") if best_step is None else best_step
    stopped_at = _last_value(log, "stopped_at") if stopped_at is None else stopped_at
    skip = {"step", "lr", "epoch", "best_step", "stopped_at"}
    for column in [c for c in log.columns if c not in skip and not c.startswith("val_")
                   and pd.api.types.is_numeric_dtype(log[c])]:
        series = log[["step", column]].dropna()
        if series.empty:
            continue
        plot = axes[0].semilogy if (series[column] > 0).all() else axes[0].plot
        plot(series["step"], series[column], label=column)
    axes[0].set_xlabel("step")
    axes[0].set_title("training losses")
    val = log.dropna(subset=["val_psnr"]) if "val_psnr" in log.columns else pd.DataFrame()
    if not val.empty:
        axes[1].plot(val["step"], val["val_psnr"], "o-", color="C0", ms=3)
        axes[1].set_ylabel("validation PSNR (dB)", color="C0")
        if "val_ssim" in val.columns:
            twin = axes[1].twinx()
            twin.plot(val["step"], val["val_ssim"], "s--", color="C1", ms=3)
            twin.set_ylabel("validation SSIM", color="C1")
    else:
        axes[1].text(0.5, 0.5, "no validation", ha="center", va="center", transform=axes[1].transAxes)
    axes[1].set_xlabel("step")
    axes[1].set_title("validation")
    for ax in axes:
        if best_step is not None:
            ax.axvline(best_step, color="C2", ls="--", lw=1, label=f"best (kept) step {best_step:g}")
        if stopped_at is not None:
            ax.axvline(stopped_at, color="0.4", ls=":", lw=1, label=f"stopped at {stopped_at:g}")
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=7)
    if best_step is not None or stopped_at is not None:
        axes[1].legend(fontsize=7, loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- summary bars


def plot_summary(summary: pd.DataFrame, metric: str = "psnr", region: str = "brain") -> Figure:
    """Bars of `metric` per method, one panel per (study, scenario, contrast, scale, pairing).

    `summary` is `sr_lib.tables.summary_table`'s frame. Bar: ``<metric>_mean``; black error
    bar: ± subject std (``<metric>_std``); red error bar beside it: ± seed std
    (``<metric>_seed_std``, only where several seeds ran). Only `region` rows with a mean are
    drawn; failed/n/a methods are listed under their panel.
    """
    needed = [f"{metric}_mean", f"{metric}_std", "method", "status", "scenario", "contrast"]
    missing = [c for c in needed if c not in summary.columns]
    if missing:
        raise ValueError(f"summary lacks columns {missing} (from sr_lib.tables.summary_table)")
    data = summary[summary["region"] == region] if "region" in summary.columns else summary
    panel_keys = [c for c in ("study", "scenario", "contrast", "scale", "pairing") if c in data.columns]
    groups = list(data.groupby(panel_keys, sort=False, dropna=False)) if len(data) else []
    n = max(len(groups), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 3.6), squeeze=False)
    unit = "PSNR (dB)" if metric == "psnr" else metric.upper()
    for ax, (key, group) in zip(axes[0], groups):
        key = dict(zip(panel_keys, key if isinstance(key, tuple) else (key,)))
        drawn = group[np.isfinite(group[f"{metric}_mean"].astype(float))]
        x = np.arange(len(drawn))
        mean = drawn[f"{metric}_mean"].to_numpy(float)
        std = drawn[f"{metric}_std"].fillna(0).to_numpy(float)
        ax.bar(x, mean, color="C0", alpha=0.8)
        ax.errorbar(x - 0.08, mean, yerr=std, fmt="none", ecolor="k", capsize=3, lw=1, label="± subject std")
        seed_col = f"{metric}_seed_std"
        if seed_col in drawn.columns and drawn[seed_col].notna().any():
            ax.errorbar(x + 0.08, mean, yerr=drawn[seed_col].fillna(0).to_numpy(float), fmt="none", ecolor="C3",
                        capsize=3, lw=1.5, label="± seed std")
        ax.set_xticks(x, drawn["method"].astype(str), rotation=45, ha="right", fontsize=8)
        if len(drawn):
            low = float(np.min(mean - std))
            ax.set_ylim(low - 0.05 * abs(low), None)
            ax.legend(fontsize=7, loc="lower right")
        title = " ".join(str(key[c]) if c != "scale" else f"x{key[c]}" for c in panel_keys if c != "study")
        ax.set_title((f"{key['study']}: " if "study" in key else "") + f"{title} · {region}", fontsize=9)
        ax.set_ylabel(unit)
        absent = group.loc[~group.index.isin(drawn.index)]
        if len(absent):
            ax.set_xlabel("; ".join(f"{r.method}: {r.status}" for r in absent.itertuples()), fontsize=7)
    if not groups:
        axes[0, 0].text(0.5, 0.5, f"no {region} rows", ha="center", va="center")
        axes[0, 0].axis("off")
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: int = 120, close: bool = False) -> Path:
    """Save `fig` as PNG atomically (temp file + rename); `close` also closes it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    if close:
        plt.close(fig)
    return Path(path)


def plot_seams(summary: pd.DataFrame) -> Figure:
    """Bars of the seam ratios (`sr_lib.seams.summarise_seams`) per method, stitched
    against whole-slice inference; the dashed line at 1 is "no seam"."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    methods = list(dict.fromkeys(summary["method"]))
    x = np.arange(len(methods))
    for ax, column, label in zip(axes, ("jump_ratio", "error_ratio"), ("error-step energy", "|error|")):
        for offset, (mode, colour) in zip((-0.18, 0.18), (("stitch", "C3"), ("whole", "C0"))):
            rows = summary[summary["inference"] == mode].set_index("method").reindex(methods)
            ax.bar(x + offset, rows[column].to_numpy(float), width=0.36, color=colour, label=mode)
        ax.axhline(1.0, color="k", ls="--", lw=0.8)
        ax.set_xticks(x, methods, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"border / interior {label}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def seam_figure(example: dict, *, index: int | None = None, vmax: float = 0.1) -> Figure:
    """Signed error maps of a stitched and a whole-slice prediction of the same slice (blue
    under, red over), with the lines where stitched patches meet drawn faintly."""
    axis, hr = example["axis"], example["hr"]
    index = hr.shape[axis] // 2 if index is None else index
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.2))
    in_plane = [a for a in range(3) if a != axis]
    for ax, mode in zip(axes, ("stitch", "whole")):
        error = np.take(example[mode] - hr, index, axis=axis)
        ax.imshow(error.T, cmap="RdBu_r", vmin=-vmax, vmax=vmax, origin="lower")
        for position in example["lines"].get(in_plane[0], []):
            ax.axvline(position - 0.5, color="k", lw=0.3, alpha=0.4)
        for position in example["lines"].get(in_plane[1], []):
            ax.axhline(position - 0.5, color="k", lw=0.3, alpha=0.4)
        ax.set_title(f"{example['method']}, {mode}: prediction - HR", fontsize=9)
        ax.axis("off")
    fig.suptitle(f"test subject {example['subject']}, slice {AXIS_NAMES[axis]}={index}", fontsize=9)
    fig.tight_layout()
    return fig
