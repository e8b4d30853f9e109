"""SelfEx: single-image super-resolution from transformed self-exemplars (Huang et al. 2015),
one of the HLH-GAN paper's baselines, simplified (what is left out is listed below).

What SelfEx does (Huang et al. 2015, CVPR). We did not have the paper's text here: the
description below is our reading of the authors' released MATLAB code
(github.com/jbhuang0604/SelfExSR: `sr_init_opt.m` for every number, `sr_synthesis.m`,
`sr_patch_cost_app.m`, `sr_voting.m`, `sr_backprojection.m`), so "paper value" means the
release's value:

- no training data: the HR detail of a patch comes from the image itself, from a similar
  patch found in a downscaled copy (an image pyramid with 3 levels per octave, scale step
  ``alpha = 2^(-1/3)`` for even factors; bicubic resampling);
- the search allows each target patch a geometric transform: translation, a perspective
  transform from detected vanishing points / planar structure, and an affine correction
  (scale, rotation within +-pi/4, shear within 0.05), found by a modified PatchMatch
  (propagation + random search) over the whole pyramid;
- the matching cost is appearance (Gaussian-weighted SSD over 5 x 5 patches, weight sigma
  3, after a photometric bias compensation clamped to [-0.25, 0.25]) + a planar-compatibility
  cost + a scale cost (weights 1e-3 each);
- super-resolution runs coarse to fine in steps of ``1 / alpha`` (three steps for x2); each
  step matches the upsampled estimate against the low band of the pyramid and votes the
  matched high-band patches (Freedman and Fattal's 2011 band scheme), weighted average of
  overlapping patches;
- every step ends with iterative back-projection onto the input (Irani and Peleg's
  reconstruction constraint): 20 iterations, bicubic down / up, the difference filtered by a
  5 x 5 Gaussian (sigma 1, squared and renormalised), clamped to [0, 1].

What we keep: 5 x 5 patches on the LR grid, the Gaussian-weighted SSD (sigma 3) with the
clamped bias compensation (+-0.25), a pyramid of source scales with step ``2^(-1/3)``, bicubic
resampling (the workbench's `sr_lib.degrade.resize`, MATLAB-style, so the method starts from
exactly the `bicubic` row), weighted averaging of overlapping HR patches and the
back-projection (20 iterations, sigma 1, the release's squared kernel).

What we simplify or leave out:

- one step of the whole factor ``s`` (Glasner et al. 2009's cross-scale form) instead of the
  coarse-to-fine steps of ``2^(1/3)``: each LR patch ``q`` (p x p on the LR grid) is matched
  to a p x p patch of ``D_T = down_s(T(L))``, a transformed and downscaled copy of the LR
  slice ``L``, and its parent, the (s p) x (s p) patch of ``T(L)`` over the same area, is
  pasted (plus the bias) where ``q`` lies on the HR grid. ``T(L)`` is the LR image as the HR
  image of its own downscale, so the pasted parent is already in ``q``'s orientation;
- no PatchMatch, no perspective transforms, no shear, no planar structure detection or
  planar-compatibility cost, no scale cost: an exhaustive nearest-neighbour search
  (`torch` matrix products in chunks) over a fixed set of transforms ``T``: rotations by
  multiples of ``360 / rotations`` degrees (multiples of 90 are exact, others cubic-spline
  resampled with `scipy.ndimage.rotate`), the pyramid scales ``alpha^k``, k < `scales`, and,
  as an option (off: the paper has no reflections), mirror images;
- the bias is the difference of Gaussian-weighted patch means (the release: plain means), so
  the search on weight-centred patches is exact before clamping; the reported cost includes
  the clamp;
- ours: a fallback to the bicubic start where no good match exists (a patch whose weighted
  RMS match error exceeds `max_error`), and flat LR patches (weighted std < `min_std`: the
  background) keep the bicubic start without a search;
- the hole mask of inpainting scenarios is ignored (SelfEx does not inpaint; a zero-filled
  hole is flat, so it keeps the bicubic start);
- same-grid scenarios (zero-filled k-space, resolution loss ``s`` on the HR grid): the input
  ``Y`` is downscaled by ``s`` (bicubic, padded symmetrically to a multiple of ``s``) to the
  LR grid it carries, super-resolved as above, and the result's low band is then replaced by
  the input's: one back-projection step on the HR grid, ``X + Y - P(X)``, with ``P`` the
  scenario's own low-pass, the real part of `kspace_truncate` keeping the central ``1/s`` of
  2D k-space (option `same_grid_lowpass` 'kspace'; 'bicubic' uses ``up_s o down_s``). ``s``
  is the scenario's in-plane factor from the observation's params, else the option
  `same_grid_scale`.

Slice-wise (2D) along the task's axis; `fit` does nothing (``learned = False``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from sr_lib.degrade import kspace_truncate, resize_axes
from sr_lib.methods.base import Method, MethodOptions, Observation, Support, Task
from sr_lib.profiles import Profile

ALPHA = 2.0 ** (-1.0 / 3.0)  # the release's pyramid step for even factors (3 levels per octave)
CHUNK_QUERIES = 1024  # query patches per distance chunk: 1024 x 10k candidates = 40 MB of float32
SLICE_GROUP = 16  # slices whose exemplars are built together: about 100 MB for the full set on 44 x 52 slices


# ----------------------------------------------------------------------------- options


@dataclasses.dataclass(frozen=True)
class SelfExOptions(MethodOptions):
    """Paper values (Huang et al. 2015, the authors' released code): `patch_size` 5, `patch_sigma` 3 (the
    Gaussian weight of the match cost), `max_bias` 0.25, `scale_step` ``2^(-1/3)``,
    `bp_iterations` 20, `bp_sigma` 1. The paper searches continuous rotations within +-45
    degrees of a plane-induced transform and the whole pyramid; ours is the discrete set of
    `rotations` (equally spaced angles, 8 = every 45 degrees) x `scales` pyramid levels x
    (`flips`: mirror images too, ours, off by default).

    Ours: `max_error` (weighted RMS match error above which a patch keeps the bicubic start;
    chosen on the `quick` phantom's validation subject, see `SelfExMethod`), `min_std` (flat
    patches keep it without a search; not tuned), `stride` (1 = every overlapping LR patch, as
    the paper; more skips query positions, always keeping the last row and column),
    `same_grid_scale` (the resolution factor on a same-grid task when the observation's params
    do not say; None = refuse), `same_grid_lowpass` (the low band a same-grid result keeps
    from its input; 'kspace' chosen on the validation subject)."""

    patch_size: int = 5
    patch_sigma: float = 3.0
    max_bias: float = 0.25
    scale_step: float = ALPHA
    scales: int = 3
    rotations: int = 8
    flips: bool = False
    max_error: float = 0.1
    min_std: float = 0.005
    stride: int = 1
    bp_iterations: int = 20
    bp_sigma: float = 1.0
    same_grid_scale: int | None = None
    same_grid_lowpass: str = "kspace"

    def __post_init__(self) -> None:
        if self.same_grid_lowpass not in ("kspace", "bicubic"):
            raise ValueError(f"selfex option same_grid_lowpass must be 'kspace' or 'bicubic', got {self.same_grid_lowpass!r}")
        for name in ("patch_size", "scales", "rotations", "stride"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"selfex option {name} must be >= 1, got {getattr(self, name)}")
        if self.bp_iterations < 0:
            raise ValueError(f"selfex option bp_iterations must be >= 0, got {self.bp_iterations}")
        if not 0.0 < self.scale_step < 1.0:
            raise ValueError(f"selfex option scale_step must be in (0, 1), got {self.scale_step}")
        for name in ("patch_sigma", "bp_sigma"):
            if not getattr(self, name) > 0:
                raise ValueError(f"selfex option {name} must be > 0, got {getattr(self, name)}")
        for name in ("max_bias", "max_error", "min_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"selfex option {name} must be >= 0, got {getattr(self, name)}")
        if self.same_grid_scale is not None and int(self.same_grid_scale) < 2:
            raise ValueError(f"selfex option same_grid_scale must be >= 2 or None, got {self.same_grid_scale}")

    @classmethod
    def profile_defaults(cls, profile: Profile) -> dict[str, Any]:
        # test: exact rotations only, two scales, few back-projection steps (seconds); quick:
        # exact rotations, two scales (about half the search of the full set for 0.03-0.05 dB,
        # measured in `SelfExMethod`'s docstring); full: the whole set.
        return {
            "test": {"rotations": 4, "scales": 2, "bp_iterations": 5},
            "quick": {"rotations": 4, "scales": 2},
        }.get(profile.name, {})


# ----------------------------------------------------------------------------- pieces


def gaussian_weights(size: int, sigma: float) -> np.ndarray:
    """A (size, size) Gaussian, centred, summing to 1 (MATLAB ``fspecial('gaussian')``)."""
    d = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / (2 * sigma**2))
    return g / g.sum()


def resize_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """The (n_out, n_in) matrix of `resize_axes` along one axis (bicubic, cell-centred): the
    operator itself, got by resizing the identity, so ``M @ x`` equals resizing `x`."""
    return resize_axes(torch.eye(n_in), (n_out,), axes=(0,), method="bicubic")


def back_project(x: torch.Tensor, lr: torch.Tensor, *, iterations: int, sigma: float) -> torch.Tensor:
    """Iterative back-projection (Irani and Peleg 1991, as the SelfEx release): ``x <- clamp(x +
    G * up(lr - down(x)), 0, 1)``, with bicubic `resize` down / up (as matrices, see
    `resize_matrix`) and ``G`` a 5 x 5 Gaussian of `sigma`, squared and renormalised (the
    release's kernel), replicate-padded. `x` ``(N, H, W)`` HR slices, `lr` ``(N, h, w)``;
    returns new slices."""
    if iterations == 0:
        return x
    kernel = torch.from_numpy(gaussian_weights(5, sigma) ** 2).float()
    kernel = (kernel / kernel.sum())[None, None]
    (high_h, high_w), (low_h, low_w) = x.shape[1:], lr.shape[1:]
    down_h, down_w = resize_matrix(high_h, low_h), resize_matrix(high_w, low_w)
    up_h, up_w = resize_matrix(low_h, high_h), resize_matrix(low_w, high_w)
    for _ in range(iterations):
        diff = up_h @ (lr - down_h @ x @ down_w.T) @ up_w.T
        diff = F.conv2d(F.pad(diff[:, None], (2, 2, 2, 2), mode="replicate"), kernel)[:, 0]
        x = (x + diff).clamp_(0.0, 1.0)
    return x


@dataclasses.dataclass
class Exemplars:
    """The candidates of one LR slice: weight-centred p x p children of every transformed
    downscale ``D_T`` (rows of `centred`, scaled by the square root of the weights so that a
    squared distance is the weighted SSD), their weighted means, which transform each came
    from, and where its parent ((s p) x (s p) pixels of ``T(L)``) starts in `pixels` (every
    cropped ``T(L)`` flattened end to end) with that image's row `width`."""

    centred: torch.Tensor  # (n, p*p)
    means: torch.Tensor  # (n,)
    transform: torch.Tensor  # (n,) index into `names`
    corner: torch.Tensor  # (n,) flat index of the parent's top-left pixel in `pixels`
    width: torch.Tensor  # (n,) row length of the parent's image
    pixels: torch.Tensor  # (total,)
    size: int  # parent edge, s p
    names: list[str]

    def parents(self, index: torch.Tensor) -> torch.Tensor:
        """The parents of candidates `index`, (k, (s p)^2), row-major."""
        steps = torch.arange(self.size)
        rows = steps[None, :, None] * self.width[index][:, None, None]
        where = self.corner[index][:, None, None] + rows + steps[None, None, :]
        return self.pixels[where.reshape(index.shape[0], self.size * self.size)]


def transformed_sources(images: np.ndarray, options: SelfExOptions) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, T(L), valid)`` for every transform of the search set (pyramid scale x rotation
    x mirror), applied to every slice of `images` ``(N, h, w)`` at once: ``T(L)`` is
    ``(N, h', w')``, `valid` ``(h', w')`` marks pixels that come from inside the slice
    (rotations off the multiples of 90 degrees have empty corners, eroded by one pixel for
    the spline). Angles turn counter-clockwise in the displayed (row, column) plane, as
    `np.rot90`."""
    out = []
    n, height, width = images.shape
    mirrors = (False, True) if options.flips else (False,)
    for k in range(options.scales):
        scale = options.scale_step**k
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        level = images if k == 0 else resize_axes(torch.from_numpy(images), size, axes=(1, 2)).numpy()
        for mirror in mirrors:
            base = level[:, :, ::-1] if mirror else level
            for r in range(options.rotations):
                angle = 360.0 * r / options.rotations
                if abs(angle / 90.0 - round(angle / 90.0)) < 1e-9:
                    rotated = np.rot90(base, int(round(angle / 90.0)) % 4, axes=(1, 2))
                    valid = np.ones(rotated.shape[1:], dtype=bool)
                else:
                    rotated = ndimage.rotate(base, angle, axes=(2, 1), reshape=True, order=3, mode="nearest")
                    inside = ndimage.rotate(np.ones(base.shape[1:], np.float32), angle, axes=(1, 0), reshape=True,
                                            order=1, mode="constant", cval=0.0) > 0.999
                    valid = ndimage.binary_erosion(inside, iterations=1)
                name = f"scale {scale:.3f}, rotation {angle:g}" + (", mirrored" if mirror else "")
                out.append((name, np.ascontiguousarray(rotated, dtype=np.float32), valid))
    return out


def exemplars(images: np.ndarray, scale: int, options: SelfExOptions, weights: torch.Tensor) -> list[Exemplars]:
    """Candidate (child, parent) pairs of each LR slice of `images` ``(N, h, w)`` for factor
    `scale` (one `Exemplars` per slice; the transforms and downscales run on all slices at
    once): for each transform ``T``, ``T(L)`` is cropped to a multiple of `scale` and
    downscaled by it (bicubic, cell-centred), so child (u, v) of ``D_T`` covers exactly the
    parent ``T(L)[s u : s (u + p), s v : s (v + p)]``. Children whose parent (widened by
    `scale`, the downscaling kernel's reach) touches an invalid pixel, and flat children
    (weighted std < `min_std`), are dropped."""
    p, s = options.patch_size, scale
    n = images.shape[0]
    root = weights.sqrt().reshape(1, 1, -1)
    parts: list[list[tuple[torch.Tensor, ...]]] = [[] for _ in range(n)]
    offsets = [0] * n
    names = []
    for t, (name, source, valid) in enumerate(transformed_sources(np.ascontiguousarray(images, np.float32), options)):
        names.append(name)
        h2, w2 = (source.shape[1] // s) * s, (source.shape[2] // s) * s
        if h2 < s * p or w2 < s * p:
            continue
        crop = torch.from_numpy(np.ascontiguousarray(source[:, :h2, :w2]))
        down = resize_axes(crop, (h2 // s, w2 // s), axes=(1, 2), method="bicubic")
        wd = down.shape[2]
        child = down.unfold(1, p, 1).unfold(2, p, 1).reshape(n, -1, p * p)  # row-major over (u, v)
        mean = child @ weights.reshape(-1, 1)  # (n, m, 1)
        centre = (child - mean) * root
        keep = centre.square().sum(2) >= options.min_std**2  # (n, m)
        if not valid.all():
            invalid = torch.from_numpy(~valid[:h2, :w2]).float()[None, None]
            invalid = F.max_pool2d(invalid, 2 * s + 1, stride=1, padding=s)  # the kernel's reach
            keep &= (F.max_pool2d(invalid, s * p, stride=s).reshape(1, -1) == 0)
        for k in range(n):
            chosen = torch.nonzero(keep[k])[:, 0]
            if chosen.numel():
                u, v = chosen // (wd - p + 1), chosen % (wd - p + 1)
                parts[k].append((centre[k, chosen], mean[k, chosen, 0], torch.full((chosen.numel(),), t),
                                 offsets[k] + (s * u) * w2 + s * v, torch.full((chosen.numel(),), w2),
                                 crop[k].reshape(-1)))
                offsets[k] += h2 * w2
    banks = []
    for k in range(n):
        if not parts[k]:
            none = torch.zeros(0, dtype=torch.long)
            banks.append(Exemplars(torch.zeros(0, p * p), torch.zeros(0), none, none, none, torch.zeros(0), s * p, names))
            continue
        columns = [torch.cat(column) for column in zip(*parts[k])]
        banks.append(Exemplars(*columns, s * p, names))
    return banks


def nearest(queries: torch.Tensor, candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index and squared distance of each query's nearest candidate (rows), exhaustively, in
    chunks of `CHUNK_QUERIES`: ``|q|^2 + min_c (|c|^2 - 2 q.c)``."""
    norms = candidates.square().sum(1)
    index = torch.empty(queries.shape[0], dtype=torch.long)
    dist = torch.empty(queries.shape[0])
    for start in range(0, queries.shape[0], CHUNK_QUERIES):
        q = queries[start: start + CHUNK_QUERIES]
        score = torch.addmm(norms[None, :], q, candidates.T, alpha=-2.0)
        best, arg = score.min(1)
        index[start: start + q.shape[0]] = arg
        dist[start: start + q.shape[0]] = (best + q.square().sum(1)).clamp_(min=0.0)
    return index, dist


def _positions(n: int, p: int, stride: int) -> np.ndarray:
    """Top-left corners of patches of size p along an axis of n: every `stride`-th, plus the last."""
    if n < p:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate([np.arange(0, n - p + 1, stride), [n - p]])).astype(np.int64)


@dataclasses.dataclass
class SliceResult:
    """One slice's SelfEx estimate before back-projection, and what happened to its patches."""

    estimate: torch.Tensor  # (s h, s w)
    matched: int  # patches pasted from an exemplar
    fallback: int  # patches above `max_error` (bicubic kept)
    flat: int  # flat patches (bicubic kept, no search)
    transform_counts: dict[str, int]


def selfex_slice(lr: np.ndarray, start: torch.Tensor, scale: int, options: SelfExOptions,
                 bank: Exemplars | None = None) -> SliceResult:
    """Patch pasting for one LR slice `lr` (h, w) onto the HR grid, from the bicubic `start`
    (s h, s w): each p x p LR patch ``q`` at (i, j) gets its nearest exemplar child ``c``
    (weighted SSD after the bias ``b = clamp(mean_w q - mean_w c, +-max_bias)``); when the
    weighted RMS error is at most `max_error`, the parent plus ``b`` is laid on HR pixels
    ``[s i, s (i + p)) x [s j, s (j + p))``, else the bicubic start is. Overlaps are averaged
    with a Gaussian of sigma ``patch_sigma * s`` HR pixels (the match weight's falloff)."""
    p, s = options.patch_size, scale
    h, w = lr.shape
    weights = torch.from_numpy(gaussian_weights(p, options.patch_sigma)).float().reshape(-1)
    rows, cols = _positions(h, p, options.stride), _positions(w, p, options.stride)
    if rows.size == 0 or cols.size == 0:
        return SliceResult(start, 0, 0, 0, {})
    image = torch.from_numpy(np.ascontiguousarray(lr, dtype=np.float32))
    every = image.unfold(0, p, 1).unfold(1, p, 1).reshape(h - p + 1, w - p + 1, p * p)
    grid_i, grid_j = np.meshgrid(rows, cols, indexing="ij")
    grid_i, grid_j = torch.from_numpy(grid_i.ravel()), torch.from_numpy(grid_j.ravel())
    query = every[grid_i, grid_j]  # (n, p*p)
    mean = query @ weights
    centred = (query - mean[:, None]) * weights.sqrt()[None, :]
    textured = centred.square().sum(1) >= options.min_std**2

    if bank is None:
        bank = exemplars(lr[None], s, options, weights)[0]
    pasted = torch.zeros(query.shape[0], dtype=torch.bool)
    values = torch.zeros(query.shape[0], (s * p) ** 2)
    counts: dict[str, int] = {}
    if bank.centred.shape[0] and textured.any():
        todo = torch.nonzero(textured)[:, 0]
        index, dist = nearest(centred[todo], bank.centred)
        raw = mean[todo] - bank.means[index]
        bias = raw.clamp(-options.max_bias, options.max_bias)
        error = (dist + (raw - bias).square()).sqrt()  # weights sum to 1: the weighted RMS error
        good = error <= options.max_error
        chosen = todo[good]
        pasted[chosen] = True
        values[chosen] = bank.parents(index[good]) + bias[good, None]
        used = torch.bincount(bank.transform[index[good]], minlength=len(bank.names))
        counts = {name: int(n) for name, n in zip(bank.names, used.tolist()) if n}

    # Accumulate pasted parents; the other patches vote for the bicubic start.
    big = s * p
    falloff = torch.from_numpy(gaussian_weights(big, options.patch_sigma * s)).float().reshape(-1)
    height, width = s * h, s * w
    offsets = (torch.arange(big)[:, None] * width + torch.arange(big)[None, :]).reshape(-1)
    corner = (s * grid_i) * width + s * grid_j
    numerator = torch.zeros(height * width)
    weight_pasted = torch.zeros(height * width)
    weight_start = torch.zeros(height * width)
    if pasted.any():
        where = (corner[pasted, None] + offsets[None, :]).reshape(-1)
        numerator.index_add_(0, where, (values[pasted] * falloff).reshape(-1))
        weight_pasted.index_add_(0, where, falloff.repeat(int(pasted.sum())))
    if (~pasted).any():
        where = (corner[~pasted, None] + offsets[None, :]).reshape(-1)
        weight_start.index_add_(0, where, falloff.repeat(int((~pasted).sum())))
    flat_start = start.reshape(-1)
    total = weight_pasted + weight_start
    estimate = torch.where(total > 0, (numerator + weight_start * flat_start) / total.clamp(min=1e-12), flat_start)
    n_textured = int(textured.sum())
    return SliceResult(estimate.reshape(height, width), int(pasted.sum()), n_textured - int(pasted.sum()),
                       query.shape[0] - n_textured, counts)


# ----------------------------------------------------------------------------- the method


class SelfExMethod(Method):
    """SelfEx (Huang et al. 2015), simplified: see the module docstring for what the paper
    does, what is kept and what is left out. No training; `predict` does the work.

    Per slice (along the task's axis): the bicubic start ``X0 = up_s(L)`` (exactly the
    `bicubic` row), patch pasting from transformed self-exemplars (`selfex_slice`), then the
    back-projection onto ``L`` for all slices at once (`back_project`). On a same-grid task the
    input is first brought to its LR grid and the result keeps the input's low band (module
    docstring).

    Measured on the validation subject (T2, `quick` phantom, data seed 0, x2, PSNR over the
    HR foreground, the full search set unless said):

    - SR-N-B: bicubic 22.21 dB; bicubic + back-projection only (`max_error` 0) 24.18;
      translation only (`rotations` 1, `scales` 1) 24.70; `max_error` 0.05 / 0.1 / 0.2 / no
      fallback: 24.50 / 25.05 / 25.07 / 25.09; the quick set (4 rotations, 2 scales) 24.99;
      with `flips` 25.17;
    - SR-B: bicubic 20.34; back-projection only 21.16; `max_error` 0.1 / no fallback 21.58 /
      21.59; quick set 21.57; with `flips` 21.62;
    - kspace-2x: zero-filled input 23.86; with the bicubic low-pass: back-projection only
      23.58, `max_error` 0.1 / no fallback 24.12 / 24.07; with the k-space low-pass (the
      default) 24.49, quick set 24.44.

    So `max_error` 0.1 (best on kspace-2x, within 0.04 dB of never falling back elsewhere);
    `flips` stays off (+0.04 to +0.12 dB for 1.6x the time, and the paper has no
    reflections); `min_std` 0.005 was not tuned (it skips the empty background). Time for one
    such volume (88 slices of 44 x 52 LR), CPU seconds of both threads on a busy 2-core
    machine: 17-23 s with the quick set, 28-31 s with the full set.

    Refuses, with a one-line error: in-plane factors that differ (one factor ``s`` scales
    both axes), a same-grid task without a known whole factor >= 2, volumes that are not 3D,
    NaN input. The framework already refuses a grid change along every axis
    (``Task.for_scenario``: a 2D method cannot run on 2x2x2)."""

    name = "selfex"
    summary = "SelfEx: transformed self-exemplars, no training (Huang et al. 2015, simplified)"
    Options = SelfExOptions
    support = Support(grids=("same", "small"), pairings=("paired", "misaligned", "unpaired"), dims=(2,))
    learned = False

    def __init__(self, task: Task, options: SelfExOptions, profile: Profile) -> None:
        super().__init__(task, options, profile)
        if task.spatial_dims != 2:
            raise ValueError(f"selfex runs on 2D slices, not {task.spatial_dims}D")
        factors = task.working_factors
        if len(set(factors)) != 1:
            raise ValueError(f"selfex needs the same factor on both in-plane axes, got {factors}")
        self.last_stats: dict[str, Any] = {}

    def scale_for(self, observation: Observation) -> tuple[int, bool]:
        """(s, same_grid): the task's in-plane factor on a small grid; on a same grid the
        scenario's in-plane factor from the params, else `same_grid_scale`."""
        factor = self.task.working_factors[0]
        if factor > 1:
            return int(factor), False
        params = observation.params or {}
        if params.get("factors") is not None:
            inplane = [float(f) for i, f in enumerate(params["factors"]) if i != self.task.axis]
            if len(set(inplane)) != 1:
                raise ValueError(f"selfex needs the same factor on both in-plane axes, got {tuple(inplane)}")
            value = inplane[0]
            if value < 2 or abs(value - round(value)) > 1e-9:
                raise ValueError(f"selfex needs a whole resolution factor >= 2 on the same grid, got {value:g}")
            return int(round(value)), True
        if self.options.same_grid_scale is None:
            raise ValueError("selfex on a same-grid task needs the resolution factor: give observation params "
                             "'factors' or the option same_grid_scale")
        return int(self.options.same_grid_scale), True

    def super_resolve(self, slices: np.ndarray, scale: int) -> torch.Tensor:
        """SelfEx x `scale` of LR slices ``(N, h, w)`` -> HR slices ``(N, s h, s w)`` (clamped,
        back-projected); statistics of the patches land in `last_stats`."""
        n, h, w = slices.shape
        lr = torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32))
        start = resize_axes(lr, (scale * h, scale * w), axes=(1, 2), method="bicubic")
        estimate = torch.empty_like(start)
        stats: dict[str, Any] = {"matched": 0, "fallback": 0, "flat": 0, "transforms": {}}
        weights = torch.from_numpy(gaussian_weights(self.options.patch_size, self.options.patch_sigma)).float()
        banks: list[Exemplars] = []
        for k in range(n):
            if k % SLICE_GROUP == 0:  # transforms and downscales for a group of slices at once
                banks = exemplars(slices[k: k + SLICE_GROUP], scale, self.options, weights.reshape(-1))
            result = selfex_slice(slices[k], start[k], scale, self.options, banks[k % SLICE_GROUP])
            estimate[k] = result.estimate
            for key in ("matched", "fallback", "flat"):
                stats[key] += getattr(result, key)
            for name, count in result.transform_counts.items():
                stats["transforms"][name] = stats["transforms"].get(name, 0) + count
        self.last_stats = stats
        return back_project(estimate.clamp(0.0, 1.0), lr, iterations=self.options.bp_iterations,
                            sigma=self.options.bp_sigma)

    def predict(self, observation: Observation) -> np.ndarray:
        volume = np.asarray(observation.lr, dtype=np.float32)
        if volume.ndim != 3:
            raise ValueError(f"selfex takes (x, y, z) volumes, got shape {volume.shape}")
        if not np.all(np.isfinite(volume)):
            raise ValueError("selfex input has NaN or infinite values")
        scale, same_grid = self.scale_for(observation)
        slices = np.ascontiguousarray(np.moveaxis(volume, self.task.axis, 0))
        if not same_grid:
            out = self.super_resolve(slices, scale).numpy()
        else:
            out = self._same_grid(slices, scale)
        return np.ascontiguousarray(np.moveaxis(out, 0, self.task.axis), dtype=np.float32)

    def _same_grid(self, slices: np.ndarray, scale: int) -> np.ndarray:
        """Same grid: pad to a multiple of `scale`, downscale to the LR grid (bicubic), SelfEx,
        crop, then keep the input's low band: ``X + Y - P(X)`` with ``P`` the option
        `same_grid_lowpass` (module docstring)."""
        n, height, width = slices.shape
        pad_h, pad_w = (-height) % scale, (-width) % scale
        padded = np.pad(slices, ((0, 0), (0, pad_h), (0, pad_w)), mode="symmetric")
        big = torch.from_numpy(np.ascontiguousarray(padded, dtype=np.float32))
        small = resize_axes(big, (big.shape[1] // scale, big.shape[2] // scale), axes=(1, 2), method="bicubic")
        x = self.super_resolve(small.numpy(), scale)[:, :height, :width].contiguous()
        y = torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32))
        if self.options.same_grid_lowpass == "kspace":
            low = kspace_truncate(x, (1, scale, scale), grid="same", return_complex=True).real
        else:
            low = resize_axes(resize_axes(x, (height // scale, width // scale), axes=(1, 2)), (height, width), axes=(1, 2))
        return (x + y - low).clamp_(0.0, 1.0).numpy()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "learned": False}


__all__: Sequence[str] = ["SelfExMethod", "SelfExOptions", "back_project", "exemplars", "nearest", "selfex_slice",
                          "transformed_sources", "gaussian_weights"]
