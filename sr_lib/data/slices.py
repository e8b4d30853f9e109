"""Slices (evaluation, figures) and patch samplers (training) from 3D volumes.

Slices: `slice_indices` keeps the slices that show enough brain, `SliceDataset` serves them as
``(1, H, W)`` tensors along any axis. Patches: `PairedPatchSampler` draws aligned LR/HR patch
pairs from volumes kept on any device (DESIGN.md, "Scale": data on the GPU, patches sampled
there); `UnpairedPatchSampler` draws LR and HR patches independently (the `unpaired`
pairing). Random indices always come from a CPU `torch.Generator`, so a seed gives the same
patches on CPU and GPU.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from sr_lib.io import Volume

ArrayLike = np.ndarray | torch.Tensor


def _check_axis(axis: int) -> int:
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    return axis


def _take(array: ArrayLike, axis: int, index: int) -> ArrayLike:
    """Slice `index` along `axis` of a 3D array or tensor (a view)."""
    return array[(slice(None),) * axis + (index,)]


def slice_indices(
    volume_array: ArrayLike, axis: int, *, skip_empty: bool = True, threshold: float = 0.05
) -> list[int]:
    """Indices along `axis` of the slices whose mean exceeds `threshold` x the volume's maximum.

    The slice mean, not its maximum, is tested so that slices of Rician background noise
    (mean ~1.25 sigma, a few % of the maximum) count as empty. With ``skip_empty=False``
    every index is returned.
    """
    data = torch.as_tensor(volume_array)
    if data.ndim != 3:
        raise ValueError(f"expected a 3D volume, got shape {tuple(data.shape)}")
    _check_axis(axis)
    if not skip_empty:
        return list(range(data.shape[axis]))
    means = data.float().mean(dim=[a for a in range(3) if a != axis])
    return torch.nonzero(means > threshold * data.max().float()).flatten().tolist()


def iter_slices(
    volume_array: ArrayLike, axis: int = 2, *, skip_empty: bool = True, threshold: float = 0.05
) -> Iterator[tuple[int, ArrayLike]]:
    """Yield ``(index, 2D slice)`` for the slices of `slice_indices` (views of the input)."""
    for index in slice_indices(volume_array, axis, skip_empty=skip_empty, threshold=threshold):
        yield index, _take(volume_array, axis, index)


def _as_tensors(volumes: Sequence[Volume | ArrayLike], name: str) -> list[torch.Tensor]:
    """3D tensors (sharing memory with NumPy inputs), all on one device."""
    tensors = [torch.as_tensor(v.data if isinstance(v, Volume) else v) for v in volumes]
    if not tensors:
        raise ValueError(f"{name}: no volumes given")
    for i, t in enumerate(tensors):
        if t.ndim != 3:
            raise ValueError(f"{name}[{i}]: expected a 3D volume (X, Y, Z), got shape {tuple(t.shape)}")
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        raise ValueError(f"{name}: volumes are on several devices {sorted(map(str, devices))}; move them to one")
    return tensors


class SliceDataset(torch.utils.data.Dataset):
    """2D slices of several volumes along `axis`, each a ``(1, H, W)`` tensor.

    ``dataset.index[i]`` is ``(volume position, slice index)`` of item ``i``, so evaluation
    and figures can say where a slice came from. H and W are the two remaining axes, in order.
    """

    def __init__(
        self,
        volumes: Sequence[Volume | ArrayLike],
        axis: int = 2,
        *,
        skip_empty: bool = True,
        threshold: float = 0.05,
    ) -> None:
        self.axis = _check_axis(axis)
        self.volumes = _as_tensors(volumes, "volumes")
        self.index: list[tuple[int, int]] = [
            (v, s)
            for v, volume in enumerate(self.volumes)
            for s in slice_indices(volume, axis, skip_empty=skip_empty, threshold=threshold)
        ]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> torch.Tensor:
        volume, index = self.index[item]
        return _take(self.volumes[volume], self.axis, index).unsqueeze(0)


def _patch_shape(patch_size: int, spatial_dims: int, axis: int) -> tuple[int, int, int]:
    """HR patch extent per axis: a cube in 3D; in 2D one slice along `axis`."""
    if spatial_dims == 3:
        return (patch_size,) * 3
    if spatial_dims == 2:
        shape = [patch_size] * 3
        shape[_check_axis(axis)] = 1
        return tuple(shape)  # type: ignore[return-value]
    raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")


def _check_factors(
    factors: Sequence[int], hr_patch: tuple[int, int, int], spatial_dims: int, axis: int
) -> tuple[int, int, int]:
    factors = tuple(int(f) for f in factors)
    if len(factors) != 3 or min(factors) < 1:
        raise ValueError(f"factors must be three integers >= 1, got {factors}")
    if spatial_dims == 2 and factors[axis] != 1:
        raise ValueError(
            f"factor {factors[axis]} along the slice axis {axis}: a 2D patch is one slice of both LR "
            f"and HR, so that factor must be 1 (use spatial_dims=3 or another axis)"
        )
    for a, (p, f) in enumerate(zip(hr_patch, factors)):
        if p % f:
            raise ValueError(f"patch size {p} is not divisible by the factor {f} along axis {a}")
    return factors  # type: ignore[return-value]


class _Foreground:
    """Where patch centres may fall: flat indices of the voxels above `threshold`, per volume.

    Kept on the CPU and drawn with a CPU generator, whatever the volumes' device.
    """

    def __init__(
        self, volumes: list[torch.Tensor], threshold: float, patch: tuple[int, int, int], name: str
    ) -> None:
        self.shapes = [tuple(v.shape) for v in volumes]
        self.flat: list[torch.Tensor] = []
        for i, v in enumerate(volumes):
            if any(p > n for p, n in zip(patch, v.shape)):
                raise ValueError(f"{name}[{i}]: shape {tuple(v.shape)} is smaller than the patch {patch}")
            flat = torch.nonzero((v > threshold).flatten()).flatten().to("cpu", torch.int32)
            if flat.numel() == 0:
                raise ValueError(f"{name}[{i}]: no voxel above the foreground threshold {threshold}")
            self.flat.append(flat)

    def corners(
        self, batch_size: int, generator: torch.Generator, patch: tuple[int, int, int], snap: tuple[int, int, int]
    ) -> tuple[list[int], list[tuple[int, int, int]]]:
        """Draw `batch_size` (volume, patch corner): a uniform volume, a uniform foreground voxel
        as the patch centre, the corner rounded down to a multiple of `snap` and kept inside."""
        which = torch.randint(len(self.flat), (batch_size,), generator=generator).tolist()
        position = torch.rand(batch_size, generator=generator, dtype=torch.float64).tolist()
        corners = []
        for v, u in zip(which, position):
            flat = self.flat[v]
            centre = np.unravel_index(int(flat[min(int(u * len(flat)), len(flat) - 1)]), self.shapes[v])
            corners.append(
                tuple(
                    min(max((int(c) - p // 2) // f * f, 0), n - p)
                    for c, p, f, n in zip(centre, patch, snap, self.shapes[v])
                )
            )
        return which, corners


class _PatchSampler:
    """What both samplers share: one signature, the volumes as tensors, patch shapes, factors,
    cropping. Subclasses check their volumes and index the foreground in `_prepare`."""

    def __init__(
        self,
        lr: Sequence[Volume | ArrayLike],
        hr: Sequence[Volume | ArrayLike],
        *,
        patch_size: int,
        factors: Sequence[int] = (1, 1, 1),
        spatial_dims: int = 2,
        axis: int = 2,
        masks: Sequence[ArrayLike] | None = None,
        threshold: float = 0.1,
    ) -> None:
        self.lr = _as_tensors(lr, "lr")
        self.hr = _as_tensors(hr, "hr")
        self.masks = _as_tensors(masks, "masks") if masks is not None else None
        devices = {self.lr[0].device, self.hr[0].device} | ({self.masks[0].device} if self.masks else set())
        if len(devices) > 1:
            raise ValueError(f"LR, HR and masks are on devices {sorted(map(str, devices))}; move them to one")
        self.spatial_dims, self.axis = spatial_dims, axis
        self.hr_patch = _patch_shape(patch_size, spatial_dims, axis)
        self.factors = _check_factors(factors, self.hr_patch, spatial_dims, axis)
        self.lr_patch: tuple[int, int, int] = tuple(  # type: ignore[assignment]
            p // f for p, f in zip(self.hr_patch, self.factors)
        )
        self._prepare(threshold)

    def _prepare(self, threshold: float) -> None:
        raise NotImplementedError

    def _crop(
        self,
        volumes: list[torch.Tensor],
        which: list[int],
        corners: list[tuple[int, int, int]],
        patch: tuple[int, int, int],
    ) -> torch.Tensor:
        """Stack the patches into ``(B, 1, *spatial)``; in 2D the slice axis is dropped."""
        patches = [
            volumes[v][tuple(slice(c, c + p) for c, p in zip(corner, patch))] for v, corner in zip(which, corners)
        ]
        batch = torch.stack(patches).unsqueeze(1)
        return batch.squeeze(2 + self.axis) if self.spatial_dims == 2 else batch


class PairedPatchSampler(_PatchSampler):
    """Aligned LR/HR patch pairs from lists of volumes, on the volumes' device.

    ``hr[i].shape == lr[i].shape * factors`` per axis (all ones for same-grid scenarios such as
    zero-filled k-space truncation). Patch centres are HR voxels above `threshold` (for [0, 1]
    volumes: skips the background); corners are snapped to the factor grid, so LR voxel ``j``
    covers HR voxels ``f*j .. f*j + f - 1`` of the patch (the cell-centred convention of
    `io.resampled_affine`). `patch_size` is the HR edge; in 2D (``spatial_dims=2``) patches
    are single slices along `axis`, where the factor must be 1. `masks` (LR grid, e.g. hole
    masks) are cut like the LR volumes.
    """

    def _prepare(self, threshold: float) -> None:
        if len(self.lr) != len(self.hr) or (self.masks is not None and len(self.masks) != len(self.lr)):
            counts = f"{len(self.lr)} LR, {len(self.hr)} HR" + (f", {len(self.masks)} masks" if self.masks else "")
            raise ValueError(f"paired volumes must come in equal numbers, got {counts}")
        for i, (low, high) in enumerate(zip(self.lr, self.hr)):
            expected = tuple(n * f for n, f in zip(low.shape, self.factors))
            if tuple(high.shape) != expected:
                raise ValueError(
                    f"pair {i}: HR shape {tuple(high.shape)} != LR shape {tuple(low.shape)} "
                    f"x factors {self.factors}"
                )
            if self.masks is not None and self.masks[i].shape != low.shape:
                raise ValueError(f"pair {i}: mask shape {tuple(self.masks[i].shape)} != LR {tuple(low.shape)}")
        self.foreground = _Foreground(self.hr, threshold, self.hr_patch, "hr")

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor | None]:
        """``lr (B, 1, h, w[, d])``, ``hr (B, 1, H, W[, D])``, ``mask`` like lr or None."""
        which, hr_corners = self.foreground.corners(batch_size, generator, self.hr_patch, self.factors)
        lr_corners = [tuple(c // f for c, f in zip(corner, self.factors)) for corner in hr_corners]
        return {
            "lr": self._crop(self.lr, which, lr_corners, self.lr_patch),
            "hr": self._crop(self.hr, which, hr_corners, self.hr_patch),
            "mask": None if self.masks is None else self._crop(self.masks, which, lr_corners, self.lr_patch),
        }


class UnpairedPatchSampler(_PatchSampler):
    """LR and HR patches drawn independently (the `unpaired` pairing: e.g. disjoint subjects).

    The lists may differ in length and the volumes in shape; an LR patch has edge
    ``patch_size // factor`` per axis, so it covers the same physical extent as an HR patch.
    Centres are foreground voxels of each list. `masks` go with the LR volumes.
    """

    def _prepare(self, threshold: float) -> None:
        if self.masks is not None and [m.shape for m in self.masks] != [v.shape for v in self.lr]:
            raise ValueError("masks must match the LR volumes one to one, with the same shapes")
        self.lr_foreground = _Foreground(self.lr, threshold, self.lr_patch, "lr")
        self.hr_foreground = _Foreground(self.hr, threshold, self.hr_patch, "hr")

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor | None]:
        """``lr (B, 1, h, w[, d])``, ``hr (B, 1, H, W[, D])`` from unrelated places, ``mask`` like lr or None."""
        ones = (1, 1, 1)
        lr_which, lr_corners = self.lr_foreground.corners(batch_size, generator, self.lr_patch, ones)
        hr_which, hr_corners = self.hr_foreground.corners(batch_size, generator, self.hr_patch, ones)
        return {
            "lr": self._crop(self.lr, lr_which, lr_corners, self.lr_patch),
            "hr": self._crop(self.hr, hr_which, hr_corners, self.hr_patch),
            "mask": None if self.masks is None else self._crop(self.masks, lr_which, lr_corners, self.lr_patch),
        }


def make_sampler(triples: Sequence[tuple], task: Any, profile: Any, device: torch.device | str = "cpu", *,
                 pairing: str = "paired") -> PairedPatchSampler | UnpairedPatchSampler:
    """A patch sampler over (lr, hr, mask) triples, shaped for a method's `task` and `profile`
    (2D patches of `patch_size`, 3D of `patch_size_3d`), with the volumes on `device`.

    `unpaired` data (LR and HR from disjoint subjects) gets independent LR and HR patches;
    `paired` and `misaligned` data get patches cut from the same place of each pair."""
    def tensors(arrays):
        return [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(device) for a in arrays]

    masks = [m for _, _, m in triples]
    sampler = UnpairedPatchSampler if pairing == "unpaired" else PairedPatchSampler
    return sampler(
        tensors(lr for lr, _, _ in triples), tensors(hr for _, hr, _ in triples),
        factors=task.factors, patch_size=profile.patch_size if task.spatial_dims == 2 else profile.patch_size_3d,
        spatial_dims=task.spatial_dims, axis=task.axis,
        masks=None if any(m is None for m in masks) else tensors(masks),
    )
