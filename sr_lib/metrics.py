"""Image-quality metrics with an explicit data range: MSE, PSNR and SSIM, whole image or masked.

Volumes live in [0, 1], so ``data_range`` defaults to 1.0 everywhere; pass it explicitly for
anything else. SSIM is Wang et al. (2004), "Image quality assessment: from error visibility to
structural similarity", IEEE TIP 13(4): Gaussian window (sigma 1.5, truncated at 3.5 sigma,
11 taps), K1 = 0.01, K2 = 0.03, population (co)variances. It equals
``skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=...)``, including its edge rule: the SSIM map is only
averaged where the whole window lies inside the image (a border of 5 voxels is dropped).

There is one implementation, in torch: the NumPy-facing functions (`mse`, `psnr`, `ssim`)
convert their inputs to float64 tensors and reduce to a Python float; the batched functions
(`psnr_torch`, `ssim_torch`) run the same core on (N, C, H, W) or (N, C, D, H, W) tensors on
any device, in the input's precision, and return one value per item. Nothing here needs
gradients; the functions run under ``torch.no_grad``.

Two conventions are on offer. The *volume* convention (`psnr`, `ssim`, `evaluate`) treats a
volume as one 3D image: one MSE over all voxels, a 3D SSIM window. The *per-slice* convention
of 2D super-resolution papers' tables (`slice_scores`) cuts the volume into 2D slices along an
axis, scores each slice with 2D PSNR and 2D SSIM, and averages over the slices that hold
anatomy; the rule for which slices count is in `scored_slices`. `evaluate_regions` gives both,
for the brain mask and for the whole volume, as rows ready for a tidy table.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Union

import numpy as np
import torch
from scipy import ndimage
from skimage.filters import threshold_otsu

from sr_lib.io import Volume

ArrayLike = Union[np.ndarray, torch.Tensor, Volume]

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
#: Window radius as in scipy.ndimage / scikit-image: int(3.5 * 1.5 + 0.5) = 5 (11 taps).
SSIM_RADIUS = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
SSIM_WIN_SIZE = 2 * SSIM_RADIUS + 1

__all__ = [
    "METRIC_FUNCS",
    "SLICE_MIN_FRACTION",
    "evaluate",
    "evaluate_regions",
    "foreground_mask",
    "format_mean_std",
    "mse",
    "psnr",
    "psnr_torch",
    "scored_slices",
    "slice_scores",
    "ssim",
    "ssim_map",
    "ssim_torch",
    "summarise",
]


# ----------------------------------------------------------------------------- input checks


def _to_tensor(a: ArrayLike, name: str) -> torch.Tensor:
    """A float64 tensor of `a` (array, tensor or Volume), on the tensor's device if it has one."""
    if isinstance(a, Volume):
        a = a.data
    if isinstance(a, torch.Tensor):
        return a.detach().to(torch.float64)
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: cannot be read as a numeric array ({err})") from None
    return _from_numpy(arr)


def _from_numpy(arr: np.ndarray) -> torch.Tensor:
    """torch.from_numpy that also takes flipped views and read-only arrays (e.g. memory maps)."""
    if not (arr.flags.c_contiguous and arr.flags.writeable):
        arr = np.array(arr, order="C")
    return torch.from_numpy(arr)


def _check_pair(pred: ArrayLike, target: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _to_tensor(pred, "pred"), _to_tensor(target, "target")
    if x.shape != y.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.numel() == 0:
        raise ValueError(f"pred and target are empty (shape {tuple(x.shape)})")
    return x, y.to(x.device)


def _check_mask(mask: ArrayLike | None, shape: tuple[int, ...], device: torch.device) -> torch.Tensor | None:
    """`mask` as a bool tensor of `shape`; accepts bool or 0/1 arrays, refuses an empty one."""
    if mask is None:
        return None
    if isinstance(mask, Volume):
        mask = mask.data
    if isinstance(mask, torch.Tensor):
        m = mask.detach()
    else:
        m = _from_numpy(np.asarray(mask))
    if tuple(m.shape) != tuple(shape):
        raise ValueError(f"mask shape {tuple(m.shape)} differs from image shape {tuple(shape)}")
    if m.dtype != torch.bool:
        if not bool(((m == 0) | (m == 1)).all()):
            raise ValueError("mask must be boolean (or hold only 0 and 1)")
        m = m != 0
    if not bool(m.any()):
        raise ValueError(f"mask of shape {tuple(shape)} selects no voxels")
    return m.to(device)


def _check_data_range(data_range: float) -> float:
    data_range = float(data_range)
    if not (math.isfinite(data_range) and data_range > 0):
        raise ValueError(f"data_range must be a positive number, got {data_range}")
    return data_range


def _check_batch(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(pred, torch.Tensor) and isinstance(target, torch.Tensor)):
        raise ValueError("pred and target must be torch tensors of shape (N, C, H, W) or (N, C, D, H, W)")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if pred.ndim not in (4, 5):
        raise ValueError(f"expected (N, C, H, W) or (N, C, D, H, W), got shape {tuple(pred.shape)}")
    if pred.numel() == 0:
        raise ValueError(f"pred and target are empty (shape {tuple(pred.shape)})")
    dtype = pred.dtype if pred.is_floating_point() else torch.float32
    return pred.detach().to(dtype), target.detach().to(device=pred.device, dtype=dtype)


# ----------------------------------------------------------------------------- the torch core


def _psnr_from_mse(mse_value: torch.Tensor, data_range: float) -> torch.Tensor:
    """PSNR = 10 log10(data_range^2 / MSE); +inf where MSE is 0."""
    return 10.0 * torch.log10(data_range**2 / mse_value)


def _gaussian_taps() -> list[float]:
    """Normalised 1D Gaussian taps (sigma 1.5, radius 5), as scipy.ndimage.gaussian_filter."""
    x = np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    return (w / w.sum()).tolist()


def _filter_valid(x: torch.Tensor, taps: list[float], dims: Iterable[int]) -> torch.Tensor:
    """Separable correlation with `taps` along `dims`, 'valid' mode (output shrinks by 2r per dim).

    Written as a sum of shifted slices: exact, any dtype, any device, and on CPU faster than
    conv3d in float64. Valid mode is exactly scikit-image's border crop, so no padding rule is
    needed: every kept voxel sees a window that lies wholly inside the image.
    """
    k = len(taps)
    for d in dims:
        n = x.shape[d] - k + 1
        out = x.narrow(d, 0, n) * taps[0]
        for i in range(1, k):
            out.add_(x.narrow(d, i, n), alpha=taps[i])
        x = out
    return x


def _ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: float) -> torch.Tensor:
    """SSIM map of images (B, *spatial) with 2 or 3 spatial dims, cropped by the window radius.

    Returns (B, *(s - 2r for s in spatial)). Eq. (13) of Wang et al. 2004 with Gaussian-weighted
    means, variances and covariance.
    """
    spatial = x.shape[1:]
    if len(spatial) not in (2, 3):
        raise ValueError(f"SSIM needs 2D or 3D images, got spatial shape {tuple(spatial)}")
    if min(spatial) < SSIM_WIN_SIZE:
        raise ValueError(
            f"SSIM needs every image side >= {SSIM_WIN_SIZE} (the Gaussian window), got {tuple(spatial)}"
        )
    taps = _gaussian_taps()
    dims = range(1, x.ndim)
    ux, uy = _filter_valid(x, taps, dims), _filter_valid(y, taps, dims)
    vx = _filter_valid(x * x, taps, dims) - ux * ux
    vy = _filter_valid(y * y, taps, dims) - uy * uy
    vxy = _filter_valid(x * y, taps, dims) - ux * uy
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    num = (2 * ux * uy + c1) * (2 * vxy + c2)
    den = (ux * ux + uy * uy + c1) * (vx + vy + c2)
    return num / den


def _crop_border(t: torch.Tensor, r: int) -> torch.Tensor:
    """Drop a border of width `r` from every dimension of `t` (scikit-image's `crop(S, r)`)."""
    return t[tuple(slice(r, s - r) for s in t.shape)]


# ----------------------------------------------------------------------------- reference metrics


@torch.no_grad()
def mse(pred: ArrayLike, target: ArrayLike, *, mask: ArrayLike | None = None) -> float:
    """Mean squared error over all voxels, or over the voxels where `mask` is True.

    `pred`, `target`: arrays (or tensors, or Volumes) of the same shape; `mask`: bool, same shape.
    """
    x, y = _check_pair(pred, target)
    m = _check_mask(mask, tuple(x.shape), x.device)
    d = (x - y) ** 2
    return float(d[m].mean() if m is not None else d.mean())


@torch.no_grad()
def psnr(
    pred: ArrayLike, target: ArrayLike, *, data_range: float = 1.0, mask: ArrayLike | None = None
) -> float:
    """Peak signal-to-noise ratio in dB, 10 log10(data_range^2 / MSE); inf for identical images.

    The MSE is taken over `mask` when given. `data_range` is the span of possible values
    (1.0 for volumes in [0, 1]), never estimated from the data.
    """
    data_range = _check_data_range(data_range)
    return float(_psnr_from_mse(torch.tensor(mse(pred, target, mask=mask), dtype=torch.float64), data_range))


@torch.no_grad()
def ssim(
    pred: ArrayLike, target: ArrayLike, *, data_range: float = 1.0, mask: ArrayLike | None = None
) -> float:
    """Mean structural similarity (Wang et al. 2004) of two 2D or 3D images, computed in float64.

    Matches scikit-image with ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``:
    the SSIM map is averaged away from a border of width 5 (the window radius). With `mask`
    (bool, image shape) the average is over the masked voxels inside that border; a mask with
    none there raises ValueError. Every side must be at least 11 voxels.
    """
    data_range = _check_data_range(data_range)
    x, y = _check_pair(pred, target)
    m = _check_mask(mask, tuple(x.shape), x.device)
    return _masked_mean_ssim(_ssim_map(x[None], y[None], data_range)[0], m)


@torch.no_grad()
def ssim_map(pred: ArrayLike, target: ArrayLike, *, data_range: float = 1.0) -> np.ndarray:
    """The local SSIM of two 2D or 3D images at every voxel (float64, their shape).

    The map whose mean `ssim` reports (same window and constants); the border of width 5 that
    the window cannot cover is NaN. Every side must be at least 11 voxels.
    """
    data_range = _check_data_range(data_range)
    x, y = _check_pair(pred, target)
    full = torch.full(tuple(x.shape), float("nan"), dtype=torch.float64)
    inner = tuple(slice(SSIM_RADIUS, s - SSIM_RADIUS) for s in x.shape)
    full[inner] = _ssim_map(x[None], y[None], data_range)[0].to(torch.float64).cpu()
    return full.numpy()


def _masked_mean_ssim(s_map: torch.Tensor, mask: torch.Tensor | None) -> float:
    """Mean of a (cropped) SSIM map, over the mask cropped by the same border when given."""
    if mask is None:
        return float(s_map.mean())
    m = _crop_border(mask, SSIM_RADIUS)
    if not bool(m.any()):
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} has no voxels farther than {SSIM_RADIUS} from the "
            "image border, where SSIM is defined"
        )
    return float(s_map[m].mean())


# ----------------------------------------------------------------------------- batched torch


@torch.no_grad()
def psnr_torch(pred: torch.Tensor, target: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    """Per-item PSNR (dB) of batches (N, C, H, W) or (N, C, D, H, W); returns (N,) on their device.

    The MSE of item n is over all its channels and voxels; identical items give +inf.
    """
    data_range = _check_data_range(data_range)
    x, y = _check_batch(pred, target)
    per_item = ((x - y) ** 2).flatten(1).mean(dim=1)
    return _psnr_from_mse(per_item, data_range)


@torch.no_grad()
def ssim_torch(pred: torch.Tensor, target: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    """Per-item SSIM of batches (N, C, H, W) or (N, C, D, H, W); returns (N,) on their device.

    Same definition and border rule as `ssim`; each channel is an image and item n's value is
    the mean over its channels (scikit-image's ``channel_axis`` convention). Runs in the input's
    floating dtype (float32 agrees with the float64 reference to ~1e-6).
    """
    data_range = _check_data_range(data_range)
    x, y = _check_batch(pred, target)
    n, c = x.shape[:2]
    s_map = _ssim_map(x.reshape(n * c, *x.shape[2:]), y.reshape(n * c, *y.shape[2:]), data_range)
    return s_map.reshape(n, -1).mean(dim=1)


# ----------------------------------------------------------------------------- evaluation


METRIC_FUNCS = dict(MSE=mse, PSNR=psnr, SSIM=ssim)


@torch.no_grad()
def evaluate(
    pred: ArrayLike, target: ArrayLike, *, mask: ArrayLike | None = None, data_range: float = 1.0
) -> dict[str, float]:
    """PSNR, SSIM and MSE of one prediction: keys ``psnr, ssim, mse`` over the whole image and,
    when a foreground `mask` is given, ``psnr_fg, ssim_fg, mse_fg`` over it as well.

    The SSIM map is computed once and averaged twice.
    """
    data_range = _check_data_range(data_range)
    x, y = _check_pair(pred, target)
    m = _check_mask(mask, tuple(x.shape), x.device)
    d = (x - y) ** 2
    s_map = _ssim_map(x[None], y[None], data_range)[0]
    out: dict[str, float] = {}
    mse_all = d.mean()
    out["psnr"] = float(_psnr_from_mse(mse_all, data_range))
    out["ssim"] = _masked_mean_ssim(s_map, None)
    out["mse"] = float(mse_all)
    if m is not None:
        mse_fg = d[m].mean()
        out["psnr_fg"] = float(_psnr_from_mse(mse_fg, data_range))
        out["ssim_fg"] = _masked_mean_ssim(s_map, m)
        out["mse_fg"] = float(mse_fg)
    return out


#: A slice counts for the masked per-slice scores when the mask covers at least this fraction
#: of its in-plane pixels (1%: a slice that grazes the top of the skull is not a brain slice).
SLICE_MIN_FRACTION = 0.01


def _check_axis(axis: int, ndim: int) -> int:
    if ndim != 3:
        raise ValueError(f"per-slice scores need a 3D volume, got {ndim} dimensions")
    if not isinstance(axis, (int, np.integer)) or not -3 <= axis < 3:
        raise ValueError(f"axis must be 0, 1 or 2 (or -3..-1), got {axis!r}")
    return int(axis) % 3


def _inner(m: torch.Tensor) -> torch.Tensor:
    """Slices (S, H, W) without their in-plane border of the SSIM window radius."""
    r = SSIM_RADIUS
    return m[:, r : m.shape[1] - r, r : m.shape[2] - r]


def _scored(y: torch.Tensor, m: torch.Tensor | None, min_fraction: float) -> torch.Tensor:
    """Bool (S,) over slices (S, H, W) of the target `y` and mask `m`: which slices are scored."""
    if m is None:
        return (y != 0).flatten(1).any(dim=1)
    inner = _inner(m)
    fraction = m.flatten(1).to(torch.float64).mean(dim=1)
    return (fraction >= min_fraction) & (fraction > 0) & inner.flatten(1).any(dim=1)


def scored_slices(
    target: ArrayLike, *, axis: int = 2, mask: ArrayLike | None = None, min_fraction: float = SLICE_MIN_FRACTION
) -> np.ndarray:
    """Indices along `axis` of the slices that `slice_scores` averages over.

    Without `mask`: the slices whose target is not empty (has at least one non-zero voxel;
    zero padding and blank end slices are left out). With `mask`: the slices where the mask
    covers at least `min_fraction` of the in-plane pixels (default `SLICE_MIN_FRACTION`, 1%)
    and has at least one pixel farther than the SSIM window radius (5) from the slice's
    border, where 2D SSIM is defined. The same slices count for PSNR and for SSIM.
    """
    y = _to_tensor(target, "target")
    axis = _check_axis(axis, y.ndim)
    m = _check_mask(mask, tuple(y.shape), y.device)
    y = y.movedim(axis, 0)
    m = m.movedim(axis, 0) if m is not None else None
    return np.flatnonzero(_scored(y, m, float(min_fraction)).cpu().numpy())


def _slice_stats(
    x: torch.Tensor, y: torch.Tensor, m: torch.Tensor | None, data_range: float, chunk: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-slice (MSE, mean SSIM) of slices (S, H, W), over each slice's mask when given.

    2D SSIM maps are computed `chunk` slices at a time to bound memory.
    """
    mses, ssims = [], []
    for start in range(0, x.shape[0], chunk):
        xs, ys = x[start : start + chunk], y[start : start + chunk]
        d = (xs - ys) ** 2
        s_map = _ssim_map(xs, ys, data_range)
        if m is None:
            mses.append(d.flatten(1).mean(dim=1))
            ssims.append(s_map.flatten(1).mean(dim=1))
        else:
            ms = m[start : start + chunk]
            w, wi = ms.to(d.dtype), _inner(ms).to(s_map.dtype)
            mses.append((d * w).flatten(1).sum(dim=1) / w.flatten(1).sum(dim=1))
            ssims.append((s_map * wi).flatten(1).sum(dim=1) / wi.flatten(1).sum(dim=1))
    return torch.cat(mses), torch.cat(ssims)


@torch.no_grad()
def slice_scores(
    pred: ArrayLike,
    target: ArrayLike,
    *,
    axis: int = 2,
    mask: ArrayLike | None = None,
    data_range: float = 1.0,
    min_fraction: float = SLICE_MIN_FRACTION,
) -> dict[str, float]:
    """The 2D papers' convention: PSNR and SSIM of each 2D slice along `axis`, averaged over slices.

    `pred`, `target`: 3D volumes of one shape; keys ``psnr_slices, ssim_slices``. Slice k is
    ``np.take(volume, k, axis)``; its PSNR is 10 log10(data_range^2 / MSE_k) and its SSIM is
    2D SSIM, equal to ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=data_range)`` on that slice. Both are plain means
    over the scored slices (`scored_slices`: non-empty target slices, or with `mask` the slices
    where the mask covers at least `min_fraction` of the slice). With `mask`, slice k's MSE is
    over its masked pixels and its SSIM the mean of its 2D SSIM map over its masked pixels
    inside the 5-pixel border, as `ssim(..., mask=...)` does in 2D. A slice identical to its
    target has PSNR +inf, and so then does the mean (as `psnr`). ValueError when no slice is
    scored or a slice side is below 11 pixels.
    """
    data_range = _check_data_range(data_range)
    x, y = _check_pair(pred, target)
    axis = _check_axis(axis, x.ndim)
    m = _check_mask(mask, tuple(x.shape), x.device)
    x, y = x.movedim(axis, 0), y.movedim(axis, 0)
    m = m.movedim(axis, 0) if m is not None else None
    if min(x.shape[1:]) < SSIM_WIN_SIZE:
        raise ValueError(
            f"2D SSIM needs both in-plane sides >= {SSIM_WIN_SIZE}, "
            f"got slices of {tuple(x.shape[1:])} along axis {axis}"
        )
    keep = _scored(y, m, float(min_fraction))
    if not bool(keep.any()):
        what = f"covers at least {min_fraction:.0%} of" if m is not None else "is non-zero in"
        subject = "mask" if m is not None else "target"
        raise ValueError(f"no slice along axis {axis} where the {subject} {what} the slice")
    x, y = x[keep], y[keep]
    m = m[keep] if m is not None else None
    mse_k, ssim_k = _slice_stats(x, y, m, data_range)
    return {
        "psnr_slices": float(_psnr_from_mse(mse_k, data_range).mean()),
        "ssim_slices": float(ssim_k.mean()),
    }


#: Width of the band scored around a hole (`hole_regions`), in mm: where a fill meets the data.
HOLE_BAND_MM = 2.0


def hole_regions(hole: ArrayLike, brain: ArrayLike, *, voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
                 band_mm: float = HOLE_BAND_MM) -> dict[str, np.ndarray]:
    """The regions where inpainting is judged, as bool masks of the volume's shape (ours; the
    papers score whole images, where a hole's error is averaged away):

    - ``hole``: the missing voxels;
    - ``hole_band``: brain voxels within `band_mm` of the hole (per-axis distance through
      the voxel size, at least one voxel), outside it: the seam between fill and data;
    - ``brain_rest``: the rest of the brain, which a joint method must not spoil.
    """
    h, b = np.asarray(hole, dtype=bool), np.asarray(brain, dtype=bool)
    if h.shape != b.shape:
        raise ValueError(f"hole mask shape {h.shape} != brain mask shape {b.shape}")
    if band_mm <= 0:
        raise ValueError(f"band_mm must be positive, got {band_mm}")
    distance = ndimage.distance_transform_edt(~h, sampling=tuple(float(v) for v in voxel_size)) if h.any() else None
    reach = max(band_mm, max(float(v) for v in voxel_size))  # at least the nearest voxels
    near = (distance <= reach) if distance is not None else np.zeros_like(h)
    return {"hole": h, "hole_band": near & ~h & b, "brain_rest": b & ~near & ~h}


def _region_scores(pred: torch.Tensor, target: torch.Tensor, s_map: torch.Tensor, region: np.ndarray, *,
                   axis: int, data_range: float) -> dict[str, float]:
    """PSNR/MSE over the region's voxels, the SSIM map averaged over it, and the per-slice
    scores (NaN where no slice has 1% of its pixels in the region: a small hole)."""
    m = torch.as_tensor(region, device=pred.device)
    if not bool(m.any()):
        return dict.fromkeys(("psnr", "ssim", "mse", "psnr_slices", "ssim_slices"), float("nan"))
    mse = ((pred - target) ** 2)[m].mean()
    try:
        per_slice = slice_scores(pred, target, axis=axis, mask=region, data_range=data_range)
    except ValueError:
        per_slice = {"psnr_slices": float("nan"), "ssim_slices": float("nan")}
    try:
        ssim = _masked_mean_ssim(s_map, m)
    except ValueError:  # the region lies within the border where SSIM is not defined
        ssim = float("nan")
    return {"psnr": float(_psnr_from_mse(mse, data_range)), "ssim": ssim, "mse": float(mse), **per_slice}


@torch.no_grad()
def evaluate_regions(
    pred: ArrayLike, target: ArrayLike, *, mask: ArrayLike, axis: int = 2, data_range: float = 1.0,
    regions: Mapping[str, ArrayLike] | None = None,
) -> list[dict]:
    """Scores of one prediction per region, as rows for a tidy table (3D volumes).

    Rows ``{"region": "brain" | "volume", "psnr", "ssim", "mse", "psnr_slices",
    "ssim_slices"}``. ``brain``: 3D PSNR/MSE over the voxels of `mask`, 3D SSIM map averaged
    over the mask (as `evaluate`'s ``*_fg``), per-slice scores restricted to the mask within
    each slice over the slices where it covers at least 1%. ``volume``: the whole array, and
    whole slices over the non-empty target slices. See `slice_scores` for the per-slice rule.
    `regions` (name -> bool mask, e.g. `hole_regions`) add a row each, scored as ``brain``
    is; an empty region gets NaN.
    """
    if mask is None:
        raise ValueError("evaluate_regions needs the brain mask (mask=...)")
    whole = evaluate(pred, target, mask=mask, data_range=data_range)
    rows = []
    for region, suffix, region_mask in (("brain", "_fg", mask), ("volume", "", None)):
        rows.append({
            "region": region,
            "psnr": whole[f"psnr{suffix}"],
            "ssim": whole[f"ssim{suffix}"],
            "mse": whole[f"mse{suffix}"],
            **slice_scores(pred, target, axis=axis, mask=region_mask, data_range=data_range),
        })
    if regions:
        data_range = _check_data_range(data_range)
        x, y = _check_pair(pred, target)
        s_map = _ssim_map(x[None], y[None], data_range)[0]
        for name, region_mask in regions.items():
            region_mask = np.asarray(region_mask, dtype=bool)
            if region_mask.shape != tuple(x.shape):
                raise ValueError(f"region {name!r}: mask shape {region_mask.shape} != volume shape {tuple(x.shape)}")
            rows.append({"region": name, **_region_scores(x, y, s_map, region_mask, axis=axis, data_range=data_range)})
    return rows


def foreground_mask(target: ArrayLike, threshold: float | None = None, *, dilate: int = 1) -> np.ndarray:
    """Head/brain foreground of a 2D or 3D image in [0, 1]: a bool array of its shape.

    ``target > threshold``; by default the threshold is half Otsu's (at least 0.05), so it
    adapts to the contrast: in T1w the background noise reaches 0.09 after normalisation,
    and a fixed 0.05 took 98% of the volume for 'brain' (the brain fills about 30%). Specks
    smaller than a tenth of the largest component are dropped. Then a morphological closing
    (2 iterations, face connectivity) bridges thin dark gaps such as sulci, hole filling lets
    dark CSF enclosed by tissue (the ventricles) count as foreground, and a `dilate`-voxel
    dilation takes in the edge of the head. The image is zero-padded first, so the closing does not erode the mask where it
    touches the image border. An image with nothing above `threshold` gives an all-False mask.
    """
    x = _to_tensor(target, "target").cpu().numpy()
    if x.ndim not in (2, 3):
        raise ValueError(f"foreground_mask needs a 2D or 3D image, got shape {x.shape}")
    if dilate < 0:
        raise ValueError(f"dilate must be >= 0, got {dilate}")
    if threshold is None:
        threshold = max(0.05, 0.5 * float(threshold_otsu(x))) if np.ptp(x) > 0 else 0.05
    mask = x > threshold
    if not mask.any():
        return mask
    labels, count = ndimage.label(mask)
    if count > 1:  # drop noise specks: keep components at least a tenth the size of the largest
        sizes = np.bincount(labels.ravel())[1:]
        mask = np.isin(labels, 1 + np.flatnonzero(sizes >= 0.1 * sizes.max()))
    closing_iterations = 2
    pad = closing_iterations + dilate
    structure = ndimage.generate_binary_structure(x.ndim, 1)
    m = np.pad(mask, pad)
    m = ndimage.binary_closing(m, structure, iterations=closing_iterations)
    m = ndimage.binary_fill_holes(m, structure)
    if dilate:
        m = ndimage.binary_dilation(m, structure, iterations=dilate)
    return m[tuple(slice(pad, pad + s) for s in x.shape)]


# ----------------------------------------------------------------------------- aggregation


def summarise(values: Iterable[float]) -> tuple[float, float]:
    """(mean, std) of per-subject values, as papers report them.

    The std is the sample standard deviation over test subjects (ddof=1) when there are at
    least two, and 0.0 for a single subject. NaN propagates (a failed subject is not hidden).
    """
    v = np.asarray(list(values), dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("summarise needs at least one value, got none")
    std = float(np.std(v, ddof=1)) if v.size > 1 else 0.0
    return float(np.mean(v)), std


def format_mean_std(mean: float, std: float, digits: int = 2) -> str:
    """``"33.78 ± 0.41"``: mean and std with the same number of decimals."""
    if not (isinstance(digits, (int, np.integer)) and digits >= 0):
        raise ValueError(f"digits must be a non-negative integer, got {digits!r}")
    return f"{mean:.{digits}f} ± {std:.{digits}f}"
