"""Degradations HR -> (LR, mask): pure, seeded functions on numpy arrays or torch tensors,
and the seed papers' settings as named scenario presets.

Inputs are plain spatial arrays, 2D ``(H, W)`` or 3D ``(X, Y, Z)`` (RAS-ish: x = L-R,
y = A-P, z = H-F), no batch or channel axes. Every public function accepts a numpy array or
a torch tensor and returns the same type (numpy: float32; torch: float32 on the input's
device); there is one implementation, in torch.

Randomness comes only from a ``numpy.random.Generator`` argument. As in TorchIO, a
``sample_*`` function draws the parameters (a JSON-able dict) and a deterministic
``apply_*`` function applies them, so what was applied can be logged and replayed. Random
arrays (noise) are drawn with numpy on the CPU and then moved to the input's device, so a
seed gives the same output on CPU and GPU.

Geometry: every grid change is cell-centred. When an axis shrinks by ``f``, new sample ``i``
sits at old coordinate ``f * i + (f - 1) / 2`` (area averaging, torch
``align_corners=False``, and `sr_lib.io.resampled_affine`); the k-space ``small`` grid obeys
this too (see `kspace_truncate`).

Separable filtering (resizing, Gaussian blur) is one tap-gathering routine with symmetric
boundaries (edge sample repeated, as MATLAB ``imresize`` and ``scipy.ndimage`` mode
``reflect``). MONAI's ``GaussianFilter`` is not used: it zero-pads (darkening borders) and
needs batch/channel axes; torch's reflect padding fails when a kernel is longer than an axis.

Papers, cited as `sr_lib.papers.cite` does: the HLH-GAN paper (authors not established;
SR-N-B, SR-B, SRI and the H-L GAN's degradation maps), Liu et al. 2022 (UDEAN: 3D k-space
truncation, misalignment, unpaired subjects), Lyu et al. 2018 (GAN-CPCE / GAN-CIRCLE for MRI:
central 25% of 2D k-space). Each scenario preset records which of its values come from its
paper (`Scenario.paper_values`) and which are ours (`Scenario.our_choices`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence, Union

import numpy as np
import torch

from sr_lib.io import Volume, resampled_affine
from sr_lib.papers import cite

Array = Union[np.ndarray, torch.Tensor]

__all__ = [
    "Array", "kspace_truncate", "resize", "downsample", "RESIZE_METHODS", "gaussian_blur", "gaussian_kernel",
    "KernelPCA", "fit_kernel_pca", "degradation_maps", "add_gaussian_noise", "add_rician_noise", "sample_holes",
    "apply_holes", "sample_bias_field", "apply_bias_field", "sample_misalignment", "apply_misalignment",
    "Degraded", "Scenario", "SCENARIOS", "get_scenario", "scenario_scales", "degrade_volume", "PAIRINGS",
    "make_training_pairs",
]


# ----------------------------------------------------------------------------- helpers


def _as_tensor(x: Array, *, name: str = "x", allow_complex: bool = False) -> tuple[torch.Tensor, bool]:
    """`x` as a float32 (or complex64) tensor, plus whether it came in as numpy; checks the rank."""
    was_numpy = not isinstance(x, torch.Tensor)
    if was_numpy:
        a = np.asarray(x)
        if a.dtype.kind == "c":
            if not allow_complex:
                raise ValueError(f"{name} is complex ({a.dtype}); a real image is needed")
            t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.complex64))
        elif a.dtype.kind in "biuf":
            t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        else:
            raise ValueError(f"{name} has dtype {a.dtype}; a float array is needed")
    else:
        t = x
        if t.is_complex():
            if not allow_complex:
                raise ValueError(f"{name} is complex ({t.dtype}); a real image is needed")
            t = t.to(torch.complex64)
        else:
            t = t.to(torch.float32)
    if t.ndim not in (2, 3):
        raise ValueError(f"{name} must be a 2D (H, W) or 3D (X, Y, Z) array, got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty, shape {tuple(t.shape)}")
    return t, was_numpy


def _back(t: torch.Tensor, was_numpy: bool) -> Array:
    """Return `t` in the caller's type: numpy (on the CPU) or the tensor itself."""
    return t.detach().cpu().numpy() if was_numpy else t


def _per_axis(value: Any, ndim: int, name: str) -> tuple[float, ...]:
    """A scalar or one value per axis -> a tuple of `ndim` finite floats."""
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if np.ndim(value) == 0:
        values = (float(value),) * ndim
    else:
        values = tuple(float(v) for v in np.asarray(value, dtype=np.float64).ravel())
        if len(values) != ndim:
            raise ValueError(f"{name} {tuple(values)} has {len(values)} entries for a {ndim}D array")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name} {values} must be finite")
    return values


def _check_rng(rng: Any) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    return rng


def _mirror(index: np.ndarray, n: int) -> np.ndarray:
    """Fold indices into [0, n) with symmetric boundaries (edge repeated: ... 1 0 | 0 1 ... n-1 | n-1 ...)."""
    period = 2 * n
    m = np.mod(index, period)
    return np.where(m < n, m, period - 1 - m)


def _apply_taps(t: torch.Tensor, axis: int, index: np.ndarray, weight: np.ndarray) -> torch.Tensor:
    """``out[.., i, ..] = sum_p weight[i, p] * t[.., index[i, p], ..]`` along `axis` (one tap at a time:
    memory stays at about twice the output)."""
    idx = torch.as_tensor(np.ascontiguousarray(index), dtype=torch.long, device=t.device)
    w = torch.as_tensor(np.ascontiguousarray(weight), dtype=t.dtype, device=t.device)
    view = [1] * t.ndim
    view[axis] = -1
    out = None
    for p in range(idx.shape[1]):
        term = t.index_select(axis, idx[:, p]) * w[:, p].view(view)
        out = term if out is None else out + term
    return out


# ----------------------------------------------------------------------------- k-space


def kspace_truncate(
    x: Array, factors: float | Sequence[float], *, grid: str = "same", return_complex: bool = False
) -> Array:
    """Keep the central ``1/f`` of k-space per axis (``f = 1``: axis untouched), 2D or 3D.

    The MRI-physics way to lower resolution: an acquisition with fewer phase/frequency
    encodes. Lyu et al. 2018 (GAN-CPCE / GAN-CIRCLE, Sec. II.1): "kept to the central 25% region" of 2D
    k-space, zero-filled on the same grid = ``factors=(2, 2)`` (or ``(2, 2, 1)`` on a volume)
    with ``grid="same"``. Liu et al. 2022 (UDEAN, Sec. II.D): 3D truncation 2x2x1 and 2x2x2, small grid.

    Only the axes with ``f != 1`` are Fourier transformed (centred FFT, DC at index
    ``n // 2``); ``m = n / f`` samples are kept, indices ``n//2 - m//2 .. n//2 - m//2 + m - 1``
    (for even ``m`` the most negative frequency is kept, the usual crop convention).

    - ``grid="same"``: the rest is zeroed and the image comes back on the original grid
      (``m = round(n / f)``, half up; any real ``f >= 1``). Same affine.
    - ``grid="small"``: the cropped matrix is inverse transformed; ``n / f`` must be a whole
      number. Before cropping, k-space is multiplied by the linear phase ``exp(2 pi i k d / n)``
      of a sub-voxel shift ``d = (f - 1) / 2``, so small sample ``i`` sits at old coordinate
      ``f * i + (f - 1) / 2`` (cell-centred, like area averaging and `io.resampled_affine`);
      intensities are scaled by ``m / n`` per axis so the mean is kept.

    Returns the magnitude image (what a scanner shows; truncation makes the image complex
    when the kept band is not Hermitian-symmetric) unless `return_complex`, then complex64.
    A complex input is accepted too.
    """
    t, was_numpy = _as_tensor(x, allow_complex=True)
    f = _per_axis(factors, t.ndim, "factors")
    if grid not in ("same", "small"):
        raise ValueError(f"grid {grid!r} must be 'same' or 'small'")
    for axis, (fa, n) in enumerate(zip(f, t.shape)):
        if fa < 1:
            raise ValueError(f"k-space factor {fa:g} on axis {axis} must be >= 1 (truncation only)")
        if grid == "small" and abs(n / fa - round(n / fa)) > 1e-6:
            raise ValueError(f"scale {fa:g} does not divide axis {axis} of size {n}")
    axes = [a for a in range(t.ndim) if f[a] != 1]
    k = t.to(torch.complex64)
    if axes:
        k = torch.fft.fftshift(torch.fft.fftn(k, dim=axes), dim=axes)
        gain = 1.0
        for a in axes:
            n = t.shape[a]
            if grid == "small":
                m = int(round(n / f[a]))
            else:
                m = max(1, int(math.floor(n / f[a] + 0.5)))
            start = n // 2 - m // 2
            view = [1] * t.ndim
            view[a] = -1
            if grid == "same":
                keep = torch.zeros(n, dtype=k.dtype, device=k.device)
                keep[start : start + m] = 1
                k = k * keep.view(view)
            else:
                freq = np.arange(n) - n // 2
                ramp = np.exp(2j * np.pi * freq * ((f[a] - 1) / 2) / n).astype(np.complex64)
                k = (k * torch.as_tensor(ramp, device=k.device).view(view)).narrow(a, start, m)
                gain *= m / n
        k = torch.fft.ifftn(torch.fft.ifftshift(k, dim=axes), dim=axes)
        if gain != 1.0:
            k = k * gain
    out = k if return_complex else k.abs()
    return _back(out, was_numpy)


# ----------------------------------------------------------------------------- resizing


def _cubic(d: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB imresize, PIL)."""
    a = np.abs(d)
    return np.where(
        a <= 1, 1.5 * a**3 - 2.5 * a**2 + 1, np.where(a < 2, -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2, 0.0)
    )


def _triangle(d: np.ndarray) -> np.ndarray:
    return np.clip(1 - np.abs(d), 0.0, None)


def _box(d: np.ndarray) -> np.ndarray:
    return ((d >= -0.5) & (d < 0.5)).astype(np.float64)


# method -> (kernel, support width in input samples, antialias when shrinking)
_KERNELS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], float, bool]] = {
    "bicubic": (_cubic, 4.0, True),
    "linear": (_triangle, 2.0, True),
    "area": (_box, 1.0, True),
    "nearest": (_box, 1.0, False),
}
RESIZE_METHODS = tuple(_KERNELS)


def _contributions(n_in: int, n_out: int, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices and weights ``(n_out, taps)`` of one axis resampled from `n_in` to `n_out` samples
    (MATLAB imresize's ``contributions``: kernel stretched by ``1/scale`` when shrinking)."""
    kernel, width, antialias = _KERNELS[method]
    scale = n_out / n_in
    if scale < 1 and antialias:
        def h(d: np.ndarray) -> np.ndarray:
            return scale * kernel(scale * d)

        width = width / scale
    else:
        h = kernel
    u = (np.arange(n_out, dtype=np.float64) + 0.5) / scale - 0.5  # cell-centred source coordinate
    left = np.floor(u - width / 2)
    index = left[:, None] + np.arange(int(math.ceil(width)) + 2)[None, :]
    weight = h(u[:, None] - index)
    weight /= weight.sum(axis=1, keepdims=True)
    used = np.any(weight != 0, axis=0)
    return _mirror(index[:, used].astype(np.int64), n_in), weight[:, used]


def resize(
    x: Array,
    factors: float | Sequence[float] | None = None,
    *,
    size: Sequence[int] | None = None,
    method: str = "bicubic",
) -> Array:
    """Resample `x` onto a cell-centred grid `factors` times coarser (``> 1`` shrinks, ``< 1``
    grows: 0.5 = 2x upsampling), or onto `size` voxels per axis; 2D or 3D.

    As MATLAB ``imresize`` (the HLH-GAN paper's bicubic degradation, Sec. 3.3, and the bicubic /
    tricubic baselines of all seeds): separable per axis (so 3D bicubic = tricubic), Keys
    cubic with a = -0.5, the kernel widened by the factor when shrinking (antialiasing) for
    'bicubic', 'linear' and 'area' (= exact block averages for whole factors), not for
    'nearest' (a half-open box: the lower neighbour wins a tie, so a factor-2 shrink picks
    samples ``2 i``, MATLAB's rule);
    symmetric boundaries; weights normalised so a constant stays constant. New sample ``i``
    sits at old coordinate ``(i + 0.5) * n_in / n_out - 0.5``. With `factors`, ``n / f`` must
    be a whole number on every axis (else use `size`).
    """
    t, was_numpy = _as_tensor(x)
    if method not in _KERNELS:
        raise ValueError(f"method {method!r} must be one of {RESIZE_METHODS}")
    if (factors is None) == (size is None):
        raise ValueError("give exactly one of factors and size")
    if size is not None:
        sizes = tuple(int(s) for s in (size.tolist() if isinstance(size, torch.Tensor) else size))
        if len(sizes) != t.ndim or any(s < 1 for s in sizes):
            raise ValueError(f"size {tuple(sizes)} must be {t.ndim} positive whole numbers")
    else:
        f = _per_axis(factors, t.ndim, "factors")
        sizes = []
        for axis, (fa, n) in enumerate(zip(f, t.shape)):
            if fa <= 0:
                raise ValueError(f"factor {fa:g} on axis {axis} must be > 0")
            if abs(n / fa - round(n / fa)) > 1e-6:
                raise ValueError(f"scale {fa:g} does not divide axis {axis} of size {n}")
            sizes.append(int(round(n / fa)))
    out = t
    for axis, (n_in, n_out) in enumerate(zip(t.shape, sizes)):
        if n_in != n_out:
            out = _apply_taps(out, axis, *_contributions(n_in, n_out, method))
    return _back(out.clone() if out is t else out, was_numpy)


def downsample(x: Array, factors: float | Sequence[float], *, method: str = "bicubic") -> Array:
    """`resize` restricted to shrinking (every factor >= 1): the LR grid of a small-grid scenario."""
    t, _ = _as_tensor(x)
    f = _per_axis(factors, t.ndim, "factors")
    if any(fa < 1 for fa in f):
        raise ValueError(f"downsample factors {f} must all be >= 1 (use resize to grow)")
    return resize(x, f, method=method)


# ----------------------------------------------------------------------------- blur


def resize_axes(x: torch.Tensor, size: Sequence[int], *, axes: Sequence[int], method: str = "bicubic") -> torch.Tensor:
    """`resize` along some `axes` of a tensor only (e.g. the spatial axes of an (N, C, ...)
    batch), onto `size` samples each: the same kernels, so nets that start from an
    interpolated input start from exactly the baseline's interpolation."""
    if method not in _KERNELS:
        raise ValueError(f"method {method!r} must be one of {RESIZE_METHODS}")
    if len(size) != len(axes):
        raise ValueError(f"size {tuple(size)} must give one length per axis {tuple(axes)}")
    out = x
    for axis, n_out in zip(axes, size):
        n_in = x.shape[axis]
        if n_in != n_out:
            out = _apply_taps(out, axis, *_contributions(n_in, int(n_out), method))
    return out


def _gaussian_taps(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    radius = int(3.0 * sigma + 0.5)
    d = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (d / sigma) ** 2)
    return d.astype(np.int64), w / w.sum()


def gaussian_blur(x: Array, sigma: float | Sequence[float], *, axes: Sequence[int] | None = None) -> Array:
    """Separable Gaussian blur (a point-spread function) with `sigma` in voxels.

    `sigma` is a scalar or one value per entry of `axes` (default: every axis); 0 leaves an
    axis alone. The sampled kernel is truncated at 3 sigma (radius ``int(3 sigma + 0.5)``, as
    ``scipy.ndimage.gaussian_filter(..., truncate=3)``) and normalised to sum 1; boundaries are
    symmetric (scipy mode 'reflect'), so the sum of an image away from the border is kept.
    Used by the SR-B and SRI presets (the HLH-GAN paper, Sec. 3.3, names the blur but gives no sigma).
    """
    t, was_numpy = _as_tensor(x)
    axes = tuple(range(t.ndim)) if axes is None else tuple(int(a) for a in axes)
    if any(not 0 <= a < t.ndim for a in axes) or len(set(axes)) != len(axes):
        raise ValueError(f"axes {axes} must be distinct axes of a {t.ndim}D array")
    sigmas = _per_axis(sigma, len(axes), "sigma")
    if any(s < 0 for s in sigmas):
        raise ValueError(f"sigma {sigmas} must be >= 0")
    out = t
    for axis, s in zip(axes, sigmas):
        if s > 0:
            d, w = _gaussian_taps(s)
            n = t.shape[axis]
            index = _mirror(np.arange(n)[:, None] + d[None, :], n)
            out = _apply_taps(out, axis, index, np.broadcast_to(w, index.shape))
    return _back(out.clone() if out is t else out, was_numpy)


def gaussian_kernel(sigma: float | Sequence[float], size: int, *, angle: float = 0.0) -> np.ndarray:
    """A ``(size, size)`` 2D Gaussian blur kernel, float32, summing to 1.

    `sigma` is a scalar (isotropic) or ``(sigma_0, sigma_1)`` along the kernel's axes before
    rotating it by `angle` radians (anisotropic kernels, as SRMD's kernel set that HLH-GAN's
    H-L GAN conditions on). Centred at ``(size - 1) / 2``.
    """
    s = _per_axis(sigma, 2, "sigma")
    if any(v <= 0 for v in s):
        raise ValueError(f"sigma {s} must be > 0")
    if int(size) != size or size < 1:
        raise ValueError(f"kernel size {size} must be a positive whole number")
    size = int(size)
    c, sn = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -sn], [sn, c]])
    cov_inv = rot @ np.diag([1 / s[0] ** 2, 1 / s[1] ** 2]) @ rot.T
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2
    p = np.stack(np.meshgrid(r, r, indexing="ij"), axis=-1)
    k = np.exp(-0.5 * np.einsum("...i,ij,...j->...", p, cov_inv, p))
    return (k / k.sum()).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class KernelPCA:
    """PCA of flattened blur kernels: `project` maps a ``(k, k)`` kernel to a code of length
    ``n_components`` (the HLH-GAN paper, Sec. 2.3, following SRMD: the blur kernel is
    "vectorized and projected onto an n-dimensional space via PCA").

    ``code = components @ (kernel.ravel() - mean)``; `reconstruct` inverts it (up to the
    dropped components).
    """

    mean: np.ndarray  # (k * k,)
    components: np.ndarray  # (n_components, k * k), orthonormal rows
    kernel_size: int
    explained_variance_ratio: np.ndarray  # (n_components,)

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])

    def project(self, kernel: Array) -> Array:
        """Code ``(n_components,)`` of a ``(k, k)`` kernel (numpy in -> numpy out, torch -> torch)."""
        k = self.kernel_size
        if tuple(kernel.shape) != (k, k):
            raise ValueError(f"kernel shape {tuple(kernel.shape)} must be ({k}, {k})")
        if isinstance(kernel, torch.Tensor):
            mean = torch.as_tensor(self.mean, dtype=torch.float32, device=kernel.device)
            comp = torch.as_tensor(self.components, dtype=torch.float32, device=kernel.device)
            return comp @ (kernel.float().reshape(-1) - mean)
        return (self.components @ (np.asarray(kernel, np.float64).ravel() - self.mean)).astype(np.float32)

    def reconstruct(self, code: Array) -> Array:
        """The ``(k, k)`` kernel closest to `code` in the PCA subspace."""
        if isinstance(code, torch.Tensor):
            mean = torch.as_tensor(self.mean, dtype=torch.float32, device=code.device)
            comp = torch.as_tensor(self.components, dtype=torch.float32, device=code.device)
            return (code.float() @ comp + mean).reshape(self.kernel_size, self.kernel_size)
        flat = np.asarray(code, np.float64) @ self.components + self.mean
        return flat.reshape(self.kernel_size, self.kernel_size).astype(np.float32)


def fit_kernel_pca(
    kernels: Array | tuple[float, float],
    n_components: int,
    *,
    kernel_size: int = 15,
    n_sigmas: int = 8,
    n_angles: int = 8,
) -> KernelPCA:
    """Fit a `KernelPCA` to ``(N, k, k)`` kernels, or to a set generated from a sigma range.

    With ``kernels=(sigma_min, sigma_max)`` the set is deterministic: `n_sigmas` isotropic
    Gaussians with sigma in ``linspace(min, max)`` plus every anisotropic pair
    ``sigma_0 > sigma_1`` of those at `n_angles` angles in [0, pi), all ``kernel_size`` square
    (15, as SRMD; HLH-GAN gives no size). Components come from an SVD of the centred kernels,
    each signed so its largest-magnitude entry is positive (reproducible codes).
    """
    if isinstance(kernels, tuple) and len(kernels) == 2 and all(np.ndim(v) == 0 for v in kernels):
        lo, hi = float(kernels[0]), float(kernels[1])
        if not 0 < lo <= hi:
            raise ValueError(f"sigma range ({lo:g}, {hi:g}) must satisfy 0 < min <= max")
        sigmas = np.linspace(lo, hi, n_sigmas)
        bank = [gaussian_kernel(s, kernel_size) for s in sigmas]
        for i, s0 in enumerate(sigmas):
            for s1 in sigmas[:i]:
                bank += [gaussian_kernel((s0, s1), kernel_size, angle=a) for a in np.arange(n_angles) * np.pi / n_angles]
        data = np.stack(bank).astype(np.float64)
    else:
        data = np.asarray(kernels.detach().cpu() if isinstance(kernels, torch.Tensor) else kernels, np.float64)
        if data.ndim != 3 or data.shape[1] != data.shape[2]:
            raise ValueError(f"kernels must have shape (N, k, k), got {data.shape}")
    n, k = data.shape[0], data.shape[1]
    flat = data.reshape(n, k * k)
    if not 1 <= n_components <= min(n, k * k):
        raise ValueError(f"n_components {n_components} must be in 1..{min(n, k * k)} for {n} kernels of {k}x{k}")
    mean = flat.mean(axis=0)
    _, sv, vt = np.linalg.svd(flat - mean, full_matrices=False)
    comp = vt[:n_components]
    sign = np.sign(comp[np.arange(n_components), np.abs(comp).argmax(axis=1)])
    comp = comp * sign[:, None]
    var = sv**2
    ratio = var[:n_components] / var.sum() if var.sum() > 0 else np.zeros(n_components)
    return KernelPCA(mean=mean, components=comp, kernel_size=k, explained_variance_ratio=ratio)


def degradation_maps(
    code: Array, noise_level: float, hole_mask: Array | None, shape: Sequence[int]
) -> Array:
    """Degradation maps ``(t + 2, *shape)``, channels first: each of the `t` kernel-code
    entries and the noise level stretched to constant image-sized maps, then the hole mask
    (zeros when None). The HLH-GAN paper's H-L generator input (Sec. 2.3, after SRMD): concatenated
    with the HR image along channels. `hole_mask` must already have `shape` (use
    ``resize(mask, size=shape, method="nearest")`` to move it between grids).
    Torch in (code or mask) -> torch out on that device; otherwise numpy float32.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or any(s < 1 for s in shape):
        raise ValueError(f"shape {shape} must be 2 or 3 positive sizes")
    if hole_mask is not None and tuple(hole_mask.shape) != shape:
        raise ValueError(f"hole_mask shape {tuple(hole_mask.shape)} must equal shape {shape}")
    if not math.isfinite(float(noise_level)) or float(noise_level) < 0:
        raise ValueError(f"noise_level {noise_level} must be >= 0")
    as_torch = isinstance(code, torch.Tensor) or isinstance(hole_mask, torch.Tensor)
    device = (code if isinstance(code, torch.Tensor) else hole_mask).device if as_torch else torch.device("cpu")
    c = torch.as_tensor(code.detach() if isinstance(code, torch.Tensor) else np.asarray(code, np.float32),
                        dtype=torch.float32, device=device).reshape(-1)
    values = torch.cat([c, torch.tensor([float(noise_level)], device=device)])
    maps = values.view(-1, *([1] * len(shape))).expand(-1, *shape)
    if hole_mask is None:
        hole = torch.zeros((1, *shape), device=device)
    else:
        hole = torch.as_tensor(hole_mask if isinstance(hole_mask, torch.Tensor) else np.asarray(hole_mask),
                               dtype=torch.float32, device=device)[None]
    out = torch.cat([maps, hole], dim=0)
    return out if as_torch else out.numpy()


# ----------------------------------------------------------------------------- noise


def _normal(rng: np.random.Generator, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Standard normal noise drawn by numpy on the CPU (same seed, same numbers on any device)."""
    return torch.from_numpy(_check_rng(rng).standard_normal(shape, dtype=np.float32)).to(device)


def _check_sigma(sigma: float) -> float:
    sigma = float(sigma)
    if not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"noise sigma {sigma} must be >= 0")
    return sigma


def add_gaussian_noise(x: Array, sigma: float, rng: np.random.Generator) -> Array:
    """``x + sigma * n``, ``n ~ N(0, 1)`` per voxel; `sigma` in the units of `x` (0.02 = 2% of a
    [0, 1] range). Not clipped."""
    t, was_numpy = _as_tensor(x)
    sigma = _check_sigma(sigma)
    return _back(t + sigma * _normal(rng, tuple(t.shape), t.device), was_numpy)


def add_rician_noise(x: Array, sigma: float, rng: np.random.Generator) -> Array:
    """``|x + sigma * (n_re + i n_im)|``: the magnitude of a complex signal with independent
    Gaussian noise in both channels, as magnitude MRI is (our choice for the SRI preset: the HLH-GAN paper, Sec. 3.3, gives
    neither the noise type nor its level).
    On a zero background the mean is ``sigma * sqrt(pi / 2)``. Draws the real channel first."""
    t, was_numpy = _as_tensor(x)
    sigma = _check_sigma(sigma)
    re = t + sigma * _normal(rng, tuple(t.shape), t.device)
    im = sigma * _normal(rng, tuple(t.shape), t.device)
    return _back(torch.sqrt(re * re + im * im), was_numpy)


# ----------------------------------------------------------------------------- holes

Box = tuple[tuple[int, int], ...]


def sample_holes(
    shape: Sequence[int],
    rng: np.random.Generator,
    *,
    n_holes: int = 1,
    size_range: tuple[float, float] = (0.15, 0.3),
    axes: Sequence[int] = (0, 1),
) -> tuple[Box, ...]:
    """Draw `n_holes` rectangular missing regions; each box is ``((start, stop), ...)`` per axis.

    The HLH-GAN paper's "rectangular missing region r sampled randomly" (Sec. 2.3; no sizes
    given). Our choice: along each axis in `axes` the edge is ``round(u * n)`` (at least 1)
    with ``u ~ U(size_range)``, placed uniformly inside the image. Along every other axis
    (the slice axis of a volume) the box spans a random run of at least half the axis
    (length uniform in ``ceil(n / 2) .. n``), so most slices of a volume show the hole, as in
    a 2D-per-slice setting, while its extent still varies. Draw order: per hole, per axis.
    """
    rng = _check_rng(rng)
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or any(s < 1 for s in shape):
        raise ValueError(f"shape {shape} must be 2 or 3 positive sizes")
    axes = tuple(int(a) for a in axes)
    if not axes or any(not 0 <= a < len(shape) for a in axes) or len(set(axes)) != len(axes):
        raise ValueError(f"axes {axes} must be distinct axes of a {len(shape)}D shape")
    lo, hi = (float(v) for v in size_range)
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"size_range ({lo:g}, {hi:g}) must satisfy 0 < min <= max <= 1")
    if int(n_holes) != n_holes or n_holes < 0:
        raise ValueError(f"n_holes {n_holes} must be a whole number >= 0")
    boxes = []
    for _ in range(int(n_holes)):
        box = []
        for axis, n in enumerate(shape):
            if axis in axes:
                length = min(n, max(1, int(round(rng.uniform(lo, hi) * n))))
            else:
                length = int(rng.integers(math.ceil(n / 2), n + 1))
            start = int(rng.integers(0, n - length + 1))
            box.append((start, start + length))
        boxes.append(tuple(box))
    return tuple(boxes)


def apply_holes(x: Array, boxes: Sequence[Sequence[Sequence[int]]], fill: float = 0.0) -> tuple[Array, Array]:
    """Set each box of `x` to `fill`; returns ``(x_with_holes, mask)``, mask float32 of x's
    shape, 1 where data is missing (what inpainting losses weight)."""
    t, was_numpy = _as_tensor(x)
    mask = torch.zeros_like(t)
    for box in boxes:
        if len(box) != t.ndim:
            raise ValueError(f"box {box} has {len(box)} ranges for a {t.ndim}D array")
        index = []
        for axis, (start, stop) in enumerate(box):
            if not 0 <= int(start) < int(stop) <= t.shape[axis]:
                raise ValueError(f"box range ({start}, {stop}) on axis {axis} is outside 0..{t.shape[axis]}")
            index.append(slice(int(start), int(stop)))
        mask[tuple(index)] = 1.0
    out = torch.where(mask > 0, torch.full_like(t, float(fill)), t)
    return _back(out, was_numpy), _back(mask, was_numpy)


# ----------------------------------------------------------------------------- bias field


def _bias_terms(order: int) -> list[tuple[int, int, int]]:
    """Exponents (i, j, k) with i + j + k <= order, in TorchIO's loop order."""
    return [(i, j, k) for i in range(order + 1) for j in range(order + 1 - i) for k in range(order + 1 - i - j)]


def sample_bias_field(rng: np.random.Generator, *, order: int = 3, strength: float = 0.3) -> dict[str, Any]:
    """Coefficients of a smooth multiplicative bias field, each ``U(-strength, strength)``,
    one per monomial ``x^i y^j z^k`` with ``i + j + k <= order`` (TorchIO RandomBiasField;
    20 for order 3, including the constant term, i.e. a global gain as TorchIO)."""
    rng = _check_rng(rng)
    if int(order) != order or order < 0:
        raise ValueError(f"bias field order {order} must be a whole number >= 0")
    if not math.isfinite(strength) or strength < 0:
        raise ValueError(f"bias field strength {strength} must be >= 0")
    n = len(_bias_terms(int(order)))
    return {"order": int(order), "coefficients": [float(c) for c in rng.uniform(-strength, strength, n)]}


def apply_bias_field(x: Array, params: Mapping[str, Any]) -> Array:
    """``x * exp(sum_c c * x^i y^j z^k)`` on coordinates normalised to [-1, 1] per axis
    (cell-centred, ``(2 i + 1 - n) / (n - 1)``, as TorchIO). A 2D image is the slice z = 0 of
    the same field (terms with ``k > 0`` vanish), so one parameter set serves 2D and 3D."""
    t, was_numpy = _as_tensor(x)
    order = int(params["order"])
    coefficients = [float(c) for c in params["coefficients"]]
    terms = _bias_terms(order)
    if len(coefficients) != len(terms):
        raise ValueError(f"bias field of order {order} needs {len(terms)} coefficients, got {len(coefficients)}")
    coords = []
    for n in t.shape:
        c = (2 * torch.arange(n, dtype=torch.float32, device=t.device) + 1 - n) / max(n - 1, 1)
        coords.append(c)
    grids = torch.meshgrid(*coords, indexing="ij")
    log_field = torch.zeros_like(t)
    for c, exps in zip(coefficients, terms):
        if t.ndim == 2 and exps[2] > 0:
            continue
        term = torch.full_like(t, c)
        for g, e in zip(grids, exps):
            if e:
                term = term * g**e
        log_field = log_field + term
    return _back(t * torch.exp(log_field), was_numpy)


# ----------------------------------------------------------------------------- misalignment

# Liu et al. 2022 (UDEAN), Sec. II.D, on the HCP T1w grid: 0.7 mm isotropic voxels, matrix
# 320 x 320 x 256, FOV 224 mm. Their "0 to 2 voxels" are converted here to millimetres on that
# grid (2 x 0.7 mm = 1.4 mm) so that the motion is the same physical size on any grid.
UDEAN_VOXEL_MM = 0.7
UDEAN_MAX_ROTATION_DEG = 2.0  # paper: "0 to 2 degrees around the H-F axis and the L-R axis"
UDEAN_MAX_TRANSLATION_MM = 2 * UDEAN_VOXEL_MM  # paper: "0 to 2 voxels" in H-F and L-R
UDEAN_MAX_SHRINK_MM = 2 * UDEAN_VOXEL_MM  # paper: "shrinking ... by 0 to 2 voxels in A-P and L-R"


def sample_misalignment(
    rng: np.random.Generator,
    *,
    voxel_size: float | Sequence[float] = 1.0,
    max_rotation_deg: float = UDEAN_MAX_ROTATION_DEG,
    max_translation_mm: float = UDEAN_MAX_TRANSLATION_MM,
    max_shrink_mm: float = UDEAN_MAX_SHRINK_MM,
) -> dict[str, Any]:
    """Liu et al. 2022 (UDEAN, Sec. II.D)'s simulated movement between HR and LR acquisitions,
    in physical units: rotation by 0-2 degrees about the H-F (z) and L-R (x) axes, translation
    along H-F and L-R, and shrinking of the whole volume along A-P (y) and L-R (x).

    The paper gives translation and shrink as "0 to 2 voxels" on its HCP grid (0.7 mm
    isotropic, FOV 224 mm); the defaults are those 2 voxels in millimetres, 1.4 mm, so the
    motion has the paper's physical size whatever our voxel size. A 1.4 mm shrink of a
    176 mm field of view (the quick profile's 88 voxels of 2 mm) is 0.8%, within the paper's
    "0.7 to 0.9% change in the objects' sizes"; a shrink in voxels of a coarse grid would not be
    (2 voxels of 2 mm = 2.3%). Rotation angles are the paper's.

    Our reading of details the paper leaves open: rotations and translations get a random sign
    (uniform in ``[-max, max]``), shrinking is uniform in ``[0, max]`` mm; the other components
    are 0. Params are per axis (x, y, z); draw order rot_x, rot_z, t_x, t_z, shrink_x, shrink_y.
    `voxel_size` (mm, scalar or 2 or 3 values) is not used by the draw; it is recorded as
    ``voxel_size_mm`` so that `apply_misalignment` replays the params on the grid they were
    drawn for.
    """
    rng = _check_rng(rng)
    for name, v in (("max_rotation_deg", max_rotation_deg), ("max_translation_mm", max_translation_mm),
                    ("max_shrink_mm", max_shrink_mm)):
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"{name} {v} must be >= 0")
    k = 1 if np.ndim(voxel_size) == 0 else np.asarray(voxel_size).size
    vox = _voxel_size(voxel_size, 2 if k == 2 else 3)
    rx, rz = rng.uniform(-max_rotation_deg, max_rotation_deg, 2)
    tx, tz = rng.uniform(-max_translation_mm, max_translation_mm, 2)
    sx, sy = rng.uniform(0.0, max_shrink_mm, 2)
    return {
        "rotation_deg": [float(rx), 0.0, float(rz)],
        "translation_mm": [float(tx), 0.0, float(tz)],
        "shrink_mm": [float(sx), float(sy), 0.0],
        "voxel_size_mm": list(vox),
    }


def _voxel_size(value: Any, ndim: int) -> tuple[float, ...]:
    """Voxel size in mm: a scalar, or one value per axis; 3 values for a 2D slice keep (x, y)."""
    if np.ndim(value) != 0 and ndim == 2 and len(np.asarray(value).ravel()) == 3:
        value = np.asarray(value, dtype=np.float64).ravel()[:2]
    vox = _per_axis(value, ndim, "voxel_size")
    if any(v <= 0 for v in vox):
        raise ValueError(f"voxel_size {vox} must be > 0 mm")
    return vox


def _rotation(angles_deg: Sequence[float]) -> np.ndarray:
    """R = Rz @ Ry @ Rx, right-handed, angles in degrees about x, y, z."""
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def apply_misalignment(
    x: Array,
    params: Mapping[str, Any],
    *,
    voxel_size: float | Sequence[float] | None = None,
    order: int = 3,
) -> Array:
    """Move `x` rigidly and shrink it about its centre, in millimetres: an object at ``q`` (mm,
    from the centre ``c``) goes to ``p = R S (q - c) + c + t`` with ``R`` the rotation
    (``rotation_deg``), ``S = diag(1 - shrink_mm / FOV)`` (the field of view ``n * voxel``
    shrinks by ``shrink_mm`` along each axis) and ``t = translation_mm`` (+1 mm on x moves
    content to higher x). In voxel indices that is ``V^-1 R V S (i - c) + c + V^-1 t`` with
    ``V = diag(voxel_size)``, so rotations stay rigid in mm on anisotropic grids.

    `voxel_size` (mm, scalar or per axis) defaults to the params' ``voxel_size_mm`` (recorded by
    `sample_misalignment`), else isotropic 1 mm; giving both with different values is an error.
    A 2D ``(x, y)`` image is an axial slice: only the rotation about z (H-F), the x/y
    translation and the x/y shrink apply.

    Resampling: cubic spline interpolation (``order=3``; ``order=1`` is linear, for
    comparisons) by ``scipy.ndimage.affine_transform`` on the CPU in float64, zeros outside
    the field of view (mode 'grid-constant'); the result is clipped to the input's range (a
    cubic overshoots at sharp edges). One implementation for numpy and torch: a tensor comes
    back as float32 on its device, the same numbers on CPU and GPU. Identity params return a
    copy of `x`.
    """
    import scipy.ndimage as ndi

    t, was_numpy = _as_tensor(x)
    if "translation" in params or "shrink" in params:
        raise ValueError("misalignment params 'translation'/'shrink' (voxels) are no longer accepted; "
                         "give 'translation_mm' and 'shrink_mm' (see sample_misalignment)")
    unknown = set(params) - {"rotation_deg", "translation_mm", "shrink_mm", "voxel_size_mm"}
    if unknown:
        raise ValueError(f"unknown misalignment params {sorted(unknown)}")
    if order not in (0, 1, 2, 3, 4, 5):
        raise ValueError(f"order {order} must be a spline order 0..5")
    rot = _per_axis(params.get("rotation_deg", (0, 0, 0)), 3, "rotation_deg")
    trans = _per_axis(params.get("translation_mm", (0, 0, 0)), 3, "translation_mm")
    shrink = _per_axis(params.get("shrink_mm", (0, 0, 0)), 3, "shrink_mm")
    nd = t.ndim
    vox = None if voxel_size is None else _voxel_size(voxel_size, nd)
    if params.get("voxel_size_mm") is not None:
        recorded = _voxel_size(params["voxel_size_mm"], nd)
        if vox is not None and not np.allclose(vox, recorded):
            raise ValueError(f"voxel_size {vox} differs from the params' voxel_size_mm {recorded}")
        vox = recorded
    vox = np.ones(nd) if vox is None else np.asarray(vox)
    if nd == 2:
        rot, trans, shrink = (0.0, 0.0, rot[2]), trans[:2], shrink[:2]
    n = np.array(t.shape, dtype=np.float64)
    fov = n * vox
    if any(s >= f for s, f in zip(shrink, fov)):
        raise ValueError(f"shrink_mm {tuple(shrink)} must be smaller than the field of view {tuple(fov)} mm")
    if not any(rot) and not any(trans) and not any(shrink):
        return _back(t.clone(), was_numpy)
    r = _rotation(rot)[:nd, :nd]
    forward = np.diag(1 / vox) @ r @ np.diag(vox) @ np.diag(1 - np.asarray(shrink) / fov)
    a = np.linalg.inv(forward)  # sampling: q = A (p - c - t) + c, in voxel indices
    c = (n - 1) / 2
    b = c - a @ (c + np.asarray(trans) / vox)
    src = t.detach().cpu().numpy().astype(np.float64)
    out = ndi.affine_transform(src, a, offset=b, order=order, mode="grid-constant", cval=0.0)
    lo, hi = min(float(src.min()), 0.0), max(float(src.max()), 0.0)
    out = torch.from_numpy(np.clip(out, lo, hi).astype(np.float32)).to(t.device)
    return _back(out, was_numpy)


# ----------------------------------------------------------------------------- scenarios


@dataclasses.dataclass
class Degraded:
    """What a scenario made: `lr` (LR grid, or the HR grid for same-grid scenarios), `mask`
    (1 where missing, on the LR grid; None without holes) and JSON-able `params` (the
    scenario's settings and everything sampled)."""

    lr: Array
    mask: Array | None
    params: dict[str, Any]


Pipeline = Callable[["Scenario", Array, np.random.Generator], tuple[Array, "Array | None", dict[str, Any]]]


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A named, seeded degradation HR -> (LR, mask), one of the seeds' settings.

    `factors` are HR / LR voxel counts per axis of a volume (x, y, z) (1 = unchanged), the
    grid change on a ``"small"`` grid and the resolution loss on a ``"same"`` grid;
    `spatial_dims_hint` says whether the paper worked on 2D slices (2, in-plane = x, y) or
    3D patches (3). `pipeline(scenario, hr, rng)` does the work, reading its knobs from
    `options`; a new degradation is one pipeline function plus one preset line.

    Provenance: `paper_values` maps each setting taken from the paper to where it says so,
    `our_choices` each setting the paper leaves open to our justification; a key is in one
    of them, never both.
    """

    name: str
    description: str
    paper: str
    factors: tuple[int, int, int]
    grid: str
    spatial_dims_hint: int
    pipeline: Pipeline = dataclasses.field(repr=False)
    scale: int | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    paper_values: Mapping[str, str] = dataclasses.field(default_factory=dict)
    our_choices: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def lr_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """Shape of the LR output for an HR input of `shape`."""
        if self.grid == "same":
            return tuple(int(s) for s in shape)
        return tuple(int(round(s / f)) for s, f in zip(shape, self.factors))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able settings (without the pipeline function)."""
        return {"scenario": self.name, "paper": self.paper, "scale": self.scale, "factors": list(self.factors),
                "grid": self.grid, "options": {k: list(v) if isinstance(v, tuple) else v for k, v in self.options.items()},
                "paper_values": dict(self.paper_values), "our_choices": dict(self.our_choices)}

    def describe(self) -> str:
        """Two lines: the description and paper, then where each value comes from
        (``paper: knob = why; ...  |  ours: knob = why; ...``)."""
        def join(d: Mapping[str, str]) -> str:
            return "; ".join(f"{k} = {v}" for k, v in d.items()) or "-"

        return (f"{self.description} [{self.paper}]\n"
                f"    paper: {join(self.paper_values)}\n    ours: {join(self.our_choices)}")

    def apply(self, hr: Array, rng: np.random.Generator) -> Degraded:
        """Degrade `hr` (3D (X, Y, Z); a 2D (X, Y) slice uses the first two factors)."""
        _check_rng(rng)
        if hr.ndim not in (2, 3):
            raise ValueError(f"hr must be a 2D or 3D array, got shape {tuple(hr.shape)}")
        lr, mask, sampled = self.pipeline(self, hr, rng)
        return Degraded(lr, mask, {**self.to_dict(), **sampled})


def _kspace_pipeline(s: Scenario, hr: Array, rng: np.random.Generator) -> tuple[Array, None, dict[str, Any]]:
    """k-space truncation by the scenario's factors on its grid (nothing random)."""
    return kspace_truncate(hr, s.factors[: hr.ndim], grid=s.grid), None, {}


def _image_pipeline(s: Scenario, hr: Array, rng: np.random.Generator) -> tuple[Array, Array | None, dict[str, Any]]:
    """The HLH-GAN paper's image-domain chain (Sec. 3.3): Gaussian blur (only along the axes that
    are downsampled; option ``blur_sigma`` in HR voxels, 0 = none) -> `resize` by the factors
    (option ``method``) -> noise (``noise`` 'rician' or 'gaussian', ``noise_sigma``; seed drawn
    from `rng` and logged) -> ``n_holes`` holes on the LR grid in-plane (x, y; options
    ``hole_size_range``), filled with 0 after the noise (missing data has no signal)."""
    o = s.options
    f = s.factors[: hr.ndim]
    x = hr
    sampled: dict[str, Any] = {}
    sigma = float(o.get("blur_sigma", 0.0))
    if sigma > 0:
        x = gaussian_blur(x, [sigma if fa > 1 else 0.0 for fa in f])
    x = resize(x, f, method=o.get("method", "bicubic"))
    noise_sigma = float(o.get("noise_sigma", 0.0))
    if noise_sigma > 0:
        seed = int(rng.integers(0, 2**32))
        add = {"rician": add_rician_noise, "gaussian": add_gaussian_noise}[o.get("noise", "rician")]
        x = add(x, noise_sigma, np.random.default_rng(seed))
        sampled["noise_seed"] = seed
    mask = None
    if int(o.get("n_holes", 0)) > 0:
        boxes = sample_holes(tuple(x.shape), rng, n_holes=int(o["n_holes"]),
                             size_range=tuple(o.get("hole_size_range", (0.15, 0.3))), axes=(0, 1))
        x, mask = apply_holes(x, boxes)
        sampled["holes"] = [[list(r) for r in box] for box in boxes]
    return x, mask, sampled


_HLH = cite("hlh-gan")
_UDEAN = cite("udean") + ", UDEAN"
_CPCE = cite("gan-circle") + ", GAN-CPCE / GAN-CIRCLE"

# Provenance shared by the presets of one paper (see Scenario.paper_values / our_choices).
_HLH_PAPER = {
    "scale": "x2 and x4 (H-L generator strides 2 and 4, Sec. 3.1)",
}
_HLH_OURS = {
    "method": "bicubic (MATLAB imresize) simulation; the paper pairs acquired LQ/HQ scans (Sec. 3.2) "
              "and does not say how its SR-N-B / SR-B / SRI inputs were made",
    "axes": "in-plane (x, y) only, slice axis kept: the paper gives no through-plane factor",
}
_KSPACE_OURS = {
    "magnitude": "the magnitude of the truncated image is kept (what a scanner shows)",
    "crop": "centred crop, DC at n // 2, the most negative frequency kept for even sizes",
}
_UDEAN_PAPER = {
    "factors": "3D k-space truncation with scale factors 2x2x1 and 2x2x2 (Sec. II.D)",
    "grid": "small LR grid: LR / HR patches 64x64x3 / 128x128x3 (2x2x1) and 64x64x3 / 128x128x6 (2x2x2)",
}
_UDEAN_OURS = {
    **_KSPACE_OURS,
    "axes": "x, y halved and z (H-F) kept for 2x2x1: the paper does not name the anatomical axes",
    "sampling": "LR sample i at HR coordinate 2 i + 1/2 (cell-centred, by a k-space phase ramp) and "
                "intensities scaled by m / n to keep the mean",
}

# name -> (builder(scale) -> Scenario, accepted scales); the first scale is the default.
_PRESETS: dict[str, tuple[Callable[[int], Scenario], tuple[int, ...]]] = {
    "SR-N-B": (lambda s: Scenario(
        "SR-N-B", f"bicubic x{s} in-plane (x, y), no blur or noise (HLH-GAN's SR-N-B / SR-B-D)", _HLH,
        (s, s, 1), "small", 2, _image_pipeline, s, {"method": "bicubic"},
        paper_values={**_HLH_PAPER, "degradation": "downsampling without blur or noise (SR-B-D, Sec. 3.3)"},
        our_choices=_HLH_OURS), (2, 4)),
    "SR-B": (lambda s: Scenario(
        "SR-B", f"Gaussian blur sigma {s / 2:g} HR px in-plane, then bicubic x{s} (HLH-GAN's SR-B)", _HLH,
        (s, s, 1), "small", 2, _image_pipeline, s, {"method": "bicubic", "blur_sigma": s / 2},
        paper_values={**_HLH_PAPER, "degradation": "blur + downsampling, no noise (SR-B, Sec. 3.3)"},
        our_choices={**_HLH_OURS, "blur_sigma": f"{s / 2:g} HR px = scale / 2, Gaussian: the paper gives no "
                                                "kernel or sigma"}), (2, 4)),
    "SRI": (lambda s: Scenario(
        "SRI", f"blur sigma {s / 2:g} + bicubic x{s} in-plane + Rician noise 0.02 + one hole (HLH-GAN's SRI)", _HLH,
        (s, s, 1), "small", 2, _image_pipeline, s,
        {"method": "bicubic", "blur_sigma": s / 2, "noise": "rician", "noise_sigma": 0.02, "n_holes": 1,
         "hole_size_range": (0.15, 0.3)},
        paper_values={**_HLH_PAPER,
                      "degradation": "downsampling + blur + noise + missing region, joint SR and inpainting "
                                     "(SRI, Sec. 3.3)",
                      "n_holes": "one rectangular missing region r, sampled randomly (Sec. 2.3)"},
        our_choices={**_HLH_OURS,
                     "blur_sigma": f"{s / 2:g} HR px = scale / 2, Gaussian: no sigma given",
                     "noise": "Rician (magnitude MRI): the paper names noise, not its type",
                     "noise_sigma": "0.02 of the [0, 1] range: no level given",
                     "hole_size_range": "15-30% of each in-plane side, through at least half the slices: "
                                        "no sizes given",
                     "hole_fill": "0 after the noise (missing data has no signal)"}), (2, 4)),
    "kspace-2x": (lambda s: Scenario(
        "kspace-2x", "central 25% of 2D k-space (x, y), zero-filled on the same grid (GAN-CPCE)", _CPCE,
        (2, 2, 1), "same", 2, _kspace_pipeline, 2,
        paper_values={"factors": "central 25% of 2D k-space kept, the rest cut off: 2x per in-plane axis "
                                 "(Sec. II.1)",
                      "grid": "same grid: 256x256 LR and HR slices, stride-1 generators (Sec. II.1-II.2)"},
        our_choices={**_KSPACE_OURS, "axes": "each axial (x, y) slice; on a volume z is untouched (factor 1)"}),
        (2,)),
    "kspace-2x2x1": (lambda s: Scenario(
        "kspace-2x2x1", "3D k-space truncation 2x2x1, small grid (UDEAN)", _UDEAN,
        (2, 2, 1), "small", 3, _kspace_pipeline, 2, paper_values=_UDEAN_PAPER, our_choices=_UDEAN_OURS), (2,)),
    "kspace-2x2x2": (lambda s: Scenario(
        "kspace-2x2x2", "3D k-space truncation 2x2x2, small grid (UDEAN)", _UDEAN,
        (2, 2, 2), "small", 3, _kspace_pipeline, 2, paper_values=_UDEAN_PAPER,
        our_choices={k: v for k, v in _UDEAN_OURS.items() if k != "axes"}), (2,)),
}


def get_scenario(name: str | Scenario, scale: int | None = None) -> Scenario:
    """The preset `name` at `scale` (2 or 4 for the HLH-GAN presets, default 2; the k-space
    presets have a fixed scale 2). Unknown names raise a `KeyError` listing the valid ones."""
    if isinstance(name, Scenario):
        return name
    try:
        build, scales = _PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; choose one of {list(_PRESETS)}") from None
    scale = scales[0] if scale is None else scale
    if scale not in scales:
        which = f"the fixed scale {scales[0]}" if len(scales) == 1 else f"scale {' or '.join(map(str, scales))}"
        raise ValueError(f"scenario {name} takes {which}, got scale {scale}")
    return build(int(scale))


SCENARIOS: dict[str, Scenario] = {name: get_scenario(name) for name in _PRESETS}


def scenario_scales(name: str) -> tuple[int, ...]:
    """The scales preset `name` takes (one for the fixed k-space presets)."""
    try:
        return tuple(_PRESETS[name][1])
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; choose one of {list(_PRESETS)}") from None


def degrade_volume(
    volume: Volume, scenario: str | Scenario, rng: np.random.Generator
) -> tuple[Volume, Volume | None, dict[str, Any]]:
    """Degrade a `Volume`: LR (and hole mask) as Volumes with the right geometry.

    On a small grid the affine is ``io.resampled_affine(affine, factors)`` (voxels `factors`
    times larger, field of view kept, cell-centred); on the same grid it is unchanged. The
    LR keeps the HR's intensity scaling record; its `path` is cleared.
    """
    scen = get_scenario(scenario)
    result = scen.apply(volume.data, rng)
    affine = resampled_affine(volume.affine, scen.factors) if scen.grid == "small" else volume.affine.copy()
    lr = volume.replace(data=np.asarray(result.lr, dtype=np.float32), affine=affine, path=None)
    mask = None
    if result.mask is not None:
        mask = volume.replace(data=np.asarray(result.mask, dtype=np.float32), affine=affine.copy(), path=None,
                              intensity=None)
    return lr, mask, result.params


# ----------------------------------------------------------------------------- pairings

PAIRINGS = ("paired", "misaligned", "unpaired")


def make_training_pairs(
    hr_volumes: Sequence[Array],
    scenario: str | Scenario,
    pairing: str,
    rng: np.random.Generator,
    *,
    voxel_size: float | Sequence[float] | Sequence[Sequence[float]] = 1.0,
) -> list[tuple[Array, Array, Array | None]]:
    """Training triples ``(lr, target_hr, mask)`` for a pairing mode.

    - ``paired``: ``(degrade(hr), hr)``, aligned.
    - ``misaligned``: ``(degrade(hr), misalign(hr))``, the misaligned setting of Liu et al.
      2022 (UDEAN, Sec. II.D): the HR target is moved by `sample_misalignment`'s rigid motion
      and shrink, in millimetres on the volume's grid. `voxel_size` is the HR voxel size in mm:
      a scalar or one value per axis shared by all volumes, or one per-axis entry per volume
      (default isotropic 1 mm; pass the volumes' real voxel sizes, e.g.
      ``io.voxel_sizes(volume.affine)``, so the motion has the paper's physical size).
      Ignored by the other pairings.
    - ``unpaired``: LR from the first half of the subjects (``ceil(n / 2)``, in the given
      order), HR targets from the other half, disjoint subjects as UDEAN's unpaired setting;
      LR subject ``i`` is listed with HR subject ``i mod (n // 2)``. Needs at least 2 volumes.

    Draw order: per subject the degradation, then (misaligned) its movement.
    """
    if pairing not in PAIRINGS:
        raise ValueError(f"unknown pairing {pairing!r}; choose one of {PAIRINGS}")
    rng = _check_rng(rng)
    scen = get_scenario(scenario)
    hr_volumes = list(hr_volumes)
    if not hr_volumes:
        raise ValueError("hr_volumes is empty")
    if pairing in ("paired", "misaligned"):
        if np.ndim(voxel_size) == 2:
            sizes = [tuple(float(v) for v in row) for row in np.asarray(voxel_size, dtype=np.float64)]
            if len(sizes) != len(hr_volumes):
                raise ValueError(f"voxel_size has {len(sizes)} rows for {len(hr_volumes)} volumes")
        elif np.ndim(voxel_size) <= 1:
            sizes = [voxel_size] * len(hr_volumes)
        else:
            raise ValueError(f"voxel_size must be a scalar, one value per axis or one row per volume, "
                             f"got shape {np.shape(voxel_size)}")
        pairs = []
        for hr, vox in zip(hr_volumes, sizes):
            d = scen.apply(hr, rng)
            if pairing == "paired":
                target = hr
            else:
                vox = _voxel_size(vox, hr.ndim)
                target = apply_misalignment(hr, sample_misalignment(rng, voxel_size=vox))
            pairs.append((d.lr, target, d.mask))
        return pairs
    if len(hr_volumes) < 2:
        raise ValueError(f"unpaired needs at least 2 subjects, got {len(hr_volumes)}")
    k = (len(hr_volumes) + 1) // 2
    lr_subjects, hr_subjects = hr_volumes[:k], hr_volumes[k:]
    pairs = []
    for i, hr in enumerate(lr_subjects):
        d = scen.apply(hr, rng)
        pairs.append((d.lr, hr_subjects[i % len(hr_subjects)], d.mask))
    return pairs
