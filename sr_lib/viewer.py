"""Look at volumes side by side: a static figure (`slice_grid`) and a JupyterLab viewer.

`VolumeViewer` (what `show_volumes` returns) is an anywidget: the kernel cuts the slices,
error maps and scores (`sr_lib.planes`, which `slice_grid` draws from too, so the report's
pictures and the live view cannot disagree), and the browser does all that needs no new data:
one crosshair linked across LR | methods | HR, the value and scanner position in mm under the
cursor, window/level (inputs, or right-drag), colour map, zoom (wheel) and pan (ctrl-drag), a
line profile of every panel through the crosshair, the hole's contour, L/R A/P S/I labels, and
a play button.

Why anywidget rather than ipympl: a crosshair drag or a window change redraws in the browser
at once, with no round trip to the kernel and no figure re-render per mouse move; only a new
slice asks the kernel for data (a few float32 planes). It needs no JupyterLab extension to
build (the `anywidget` package ships a prebuilt one), and its state is plain traits that code
and tests can set and read. Where no widget manager runs (papermill, nbval, GitHub's preview)
the widget's output carries a PNG of `slice_grid`, so the report still shows a picture.

Volumes on different grids (an LR volume half the size of its HR twin) are shown at the same
position in mm; the slider runs over the finest grid along the slice axis.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import anywidget
import numpy as np
import traitlets
from matplotlib import colormaps
from matplotlib.figure import Figure

from sr_lib.planes import (
    AXIS_NAMES,
    OVERLAY_TITLES,
    OVERLAYS,
    VolumeLike,
    check_axis,
    check_reference,
    corresponding_index,
    finest_grid,
    grid_labels,
    in_plane,
    mask_planes,
    overlays,
    plane_scores,
    planes,
    prepare,
    resolve_index,
    slice_count,
    slice_indices,
    values_at,
    world_position,
)

CMAPS = ("gray", "bone", "viridis", "magma", "inferno", "hot")
_OVERLAY_CMAPS = {"abs": "magma", "signed": "bwr", "ssim": "magma"}

__all__ = ["AXIS_NAMES", "CMAPS", "VolumeViewer", "corresponding_index", "show_volumes", "slice_grid"]


# ----------------------------------------------------------------------------- the static figure


def slice_grid(
    volumes: Mapping[str, VolumeLike],
    *,
    axis: int = 2,
    index: int | None = None,
    difference_to: str | None = None,
    overlay: str = "signed",
    cmap: str = "gray",
    vmin: float = 0.0,
    vmax: float = 1.0,
    diff_limit: float | None = None,
    mask: np.ndarray | None = None,
    panel_size: float = 3.0,
) -> Figure:
    """One slice of every volume in a row, and optionally their error maps against a reference.

    `volumes`: name -> Volume or 3D array (x, y, z). `axis`: 0, 1 or 2, the axis the slice is
    normal to. `index`: the slice on the finest grid along `axis` (default: the middle); other
    grids show the slice at the same position. The slice is drawn with the lower remaining axis
    horizontal and the higher one vertical, origin at the lower left, with the volume's
    physical aspect ratio. Titles read ``name`` and ``z=31 (of 64)``: the slice shown and the
    number of slices on that volume's grid. A Volume's affine adds L/R, A/P, S/I labels.

    With `difference_to` (one of the names), a second row shows each volume's `overlay` against
    it (`planes.error_plane`): ``"signed"`` (volume − reference, "bwr", symmetric limits
    ``±diff_limit``), ``"abs"`` or ``"ssim"`` (1 − SSIM map). `diff_limit` defaults to the
    largest value in the shown slices (1 for SSIM). Volumes on another grid than the reference
    get an empty panel. `mask` (3D, finest grid) outlines the hole in every panel. Returns a
    matplotlib Figure not registered with pyplot (save it, or ``display`` it).
    """
    grids = prepare(volumes)
    axis = check_axis(axis)
    check_reference(difference_to, list(grids))
    if overlay not in OVERLAYS[1:]:
        raise ValueError(f"overlay must be one of {', '.join(OVERLAYS[1:])}, got {overlay!r}")
    index = resolve_index(index, slice_count(grids, axis), axis)
    indices = slice_indices(grids, axis, index)
    shown = planes(grids, axis, index)
    holes = mask_planes(mask, grids, axis, index) if mask is not None else {}
    h, v = in_plane(axis)
    labels = grid_labels(grids, axis)

    rows = 1 if difference_to is None else 2
    ncols = len(grids)
    fig = Figure(figsize=(panel_size * ncols + 1.0, panel_size * rows + 0.4), layout="constrained")
    axes = np.asarray(fig.subplots(rows, ncols, squeeze=False))

    def draw(ax, plane, name, **style):
        fov = grids[name].fov
        extent = (0.0, float(fov[h]), 0.0, float(fov[v]))
        image = ax.imshow(plane.T, origin="lower", extent=extent, interpolation="nearest", **style)
        if name in holes and holes[name].any():
            ax.contour(holes[name].T.astype(float), levels=[0.5], colors="gold", linewidths=0.8,
                       origin="lower", extent=extent)
        for where, (x, y, ha, va) in {"left": (0.02, 0.5, "left", "center"), "right": (0.98, 0.5, "right", "center"),
                                      "bottom": (0.5, 0.02, "center", "bottom"), "top": (0.5, 0.98, "center", "top")}.items():
            if where in labels:
                ax.text(x, y, labels[where], transform=ax.transAxes, ha=ha, va=va, color="gold", fontsize=8)
        ax.set_axis_off()
        return image

    images = []
    for col, name in enumerate(grids):
        images.append(draw(axes[0, col], shown[name], name, cmap=cmap, vmin=vmin, vmax=vmax))
        axes[0, col].set_title(f"{name}\n{AXIS_NAMES[axis]}={indices[name]} (of {grids[name].data.shape[axis]})",
                               fontsize=9)
    fig.colorbar(images[0], ax=list(axes[0]), shrink=0.8)

    if difference_to is not None:
        errors = overlays(overlay, shown, difference_to)
        limit = diff_limit
        if limit is None:
            limit = 1.0 if overlay == "ssim" else max(
                (float(np.nanmax(np.abs(e))) for e in errors.values() if np.isfinite(e).any()), default=0.0)
        if not limit > 0:
            limit = 1e-3 * (vmax - vmin) if vmax > vmin else 1e-3
        low = -limit if overlay == "signed" else 0.0
        error_images = []
        for col, name in enumerate(grids):
            ax = axes[1, col]
            ax.set_axis_off()
            if name == difference_to:
                ax.text(0.5, 0.5, f"{name}\n(reference)", ha="center", va="center", transform=ax.transAxes)
            elif name not in errors:
                ax.text(0.5, 0.5, f"{name}\non another grid\n{grids[name].data.shape}", ha="center", va="center",
                        transform=ax.transAxes)
            else:
                error_images.append(draw(ax, errors[name], name, cmap=_OVERLAY_CMAPS[overlay], vmin=low, vmax=limit))
                what = f"{name} − {difference_to}" if overlay == "signed" else f"{OVERLAY_TITLES[overlay]}: {name}"
                ax.set_title(what, fontsize=9)
        if error_images:
            fig.colorbar(error_images[0], ax=list(axes[1]), shrink=0.8)
    return fig


def _png(fig: Figure, dpi: int) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


# ----------------------------------------------------------------------------- the widget


def _lut(name: str) -> list[int]:
    """A colour map as 256 RGB triplets, flat (what the browser indexes)."""
    rgb = colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3]
    return [int(round(c)) for c in (rgb * 255).ravel()]


def _plane_bytes(plane: np.ndarray, dtype) -> bytes:
    """A [horizontal, vertical] plane as rows top to bottom (how a canvas is filled)."""
    return np.ascontiguousarray(plane.T[::-1], dtype=dtype).tobytes()


class VolumeViewer(anywidget.AnyWidget):
    """Linked views of several volumes in JupyterLab; see the module docstring for the controls.

    Traits that code and tests may set or read: `axis`, `index` (slice on the finest grid),
    `crosshair` (x, y, z in mm of the FOV), `window` ([low, high] of the grey scale), `cmap`,
    `overlay` ("none", "abs", "signed", "ssim" against `reference`), `overlay_opacity`,
    `overlay_limit`, `playing`. `panels` holds what the browser draws (one dict per volume).
    """

    _esm = Path(__file__).with_name("viewer.js")
    _css = Path(__file__).with_name("viewer.css")

    grid = traitlets.Dict().tag(sync=True)
    axis = traitlets.Int(2).tag(sync=True)
    index = traitlets.Int(0).tag(sync=True)
    crosshair = traitlets.List(traitlets.Float(), minlen=3, maxlen=3, default_value=[0.0, 0.0, 0.0]).tag(sync=True)
    window = traitlets.List(traitlets.Float(), minlen=2, maxlen=2, default_value=[0.0, 1.0]).tag(sync=True)
    default_window = traitlets.List(traitlets.Float(), default_value=[0.0, 1.0]).tag(sync=True)
    cmap = traitlets.Unicode("gray").tag(sync=True)
    cmaps = traitlets.List(traitlets.Unicode(), default_value=list(CMAPS)).tag(sync=True)
    luts = traitlets.Dict().tag(sync=True)
    overlay = traitlets.Unicode("none").tag(sync=True)
    overlay_opacity = traitlets.Float(0.7).tag(sync=True)
    overlay_limit = traitlets.Float(0.2).tag(sync=True)
    reference = traitlets.Unicode("").tag(sync=True)
    orientation = traitlets.Dict().tag(sync=True)
    panels = traitlets.List().tag(sync=True)
    panel_size = traitlets.Int(240).tag(sync=True)
    playing = traitlets.Bool(False).tag(sync=True)
    play_interval_ms = traitlets.Int(200).tag(sync=True)

    def __init__(
        self,
        volumes: Mapping[str, VolumeLike],
        *,
        axis: int = 2,
        index: int | None = None,
        reference: str | None = None,
        overlay: str = "none",
        overlay_limit: float | None = None,
        mask: np.ndarray | None = None,
        cmap: str = "gray",
        vmin: float = 0.0,
        vmax: float = 1.0,
        panel_size: int = 240,
        dpi: int = 80,
    ) -> None:
        self._grids = prepare(volumes)
        axis = check_axis(axis)
        check_reference(reference, list(self._grids))
        if overlay not in OVERLAYS:
            raise ValueError(f"overlay must be one of {', '.join(OVERLAYS)}, got {overlay!r}")
        if overlay != "none" and reference is None:
            raise ValueError(f"overlay={overlay!r} needs a reference volume (reference=...)")
        if cmap not in CMAPS:
            raise ValueError(f"cmap must be one of {', '.join(CMAPS)}, got {cmap!r}")
        if not vmax > vmin:
            raise ValueError(f"vmax must be above vmin, got vmin={vmin}, vmax={vmax}")
        index = resolve_index(index, slice_count(self._grids, axis), axis)
        self._mask = None if mask is None else np.asarray(mask).astype(bool)
        if self._mask is not None:
            mask_planes(self._mask, self._grids, axis, index)  # raises now on a wrong shape
        self._dpi = dpi
        finest = finest_grid(self._grids)
        fov = finest.fov
        super().__init__(
            grid={"shape": list(finest.data.shape), "voxel": [float(x) for x in finest.voxel],
                  "fov": [float(x) for x in fov],
                  "affine": None if finest.affine is None else np.asarray(finest.affine).tolist()},
            axis=axis, index=index, crosshair=[float(f) / 2 for f in fov],
            window=[float(vmin), float(vmax)], default_window=[float(vmin), float(vmax)], cmap=cmap,
            luts={name: _lut(name) for name in (*CMAPS, "bwr")}, overlay=overlay,
            overlay_limit=float(overlay_limit if overlay_limit is not None else (1.0 if overlay == "ssim" else 0.2 * (vmax - vmin))),
            reference=reference or "", panel_size=panel_size,
        )
        self.crosshair = self._crosshair_on_slice(self.crosshair)
        self._refresh()
        self.observe(self._on_slice, names=["axis", "index", "overlay"])

    # -- what the kernel computes --------------------------------------------------------------

    @property
    def volume_names(self) -> list[str]:
        return list(self._grids)

    @property
    def indices(self) -> dict[str, int]:
        """name -> the slice each panel shows."""
        return slice_indices(self._grids, self.axis, self.index)

    def values_at(self, point_mm: Sequence[float] | None = None) -> dict[str, float]:
        """name -> the value under a FOV point (default: the crosshair), as the readout shows it."""
        return values_at(self._grids, self.crosshair if point_mm is None else point_mm)

    def scanner_position(self, point_mm: Sequence[float] | None = None) -> np.ndarray | None:
        """Scanner coordinates (mm, through the finest volume's affine) of a FOV point."""
        return world_position(finest_grid(self._grids), self.crosshair if point_mm is None else point_mm)

    def _crosshair_on_slice(self, crosshair: Sequence[float]) -> list[float]:
        point = [float(c) for c in crosshair]
        voxel = self.grid["voxel"][self.axis] * self.grid["shape"][self.axis] / slice_count(self._grids, self.axis)
        point[self.axis] = (self.index + 0.5) * voxel
        return point

    def _on_slice(self, change) -> None:
        if change["name"] == "axis":
            # the slice through the crosshair, as the browser picks it when the axis changes
            n = slice_count(self._grids, self.axis)
            wanted = int(min(n - 1, max(0, self.crosshair[self.axis] * n // self.grid["fov"][self.axis])))
            if wanted != self.index:
                self.index = wanted  # re-enters here with name "index", which refreshes
                return
        if change["name"] == "overlay" and change["new"] != "none" and not self.reference:
            self.overlay = "none"
            raise ValueError("an overlay needs a reference volume (build the viewer with reference=...)")
        if change["name"] in ("axis", "index"):
            self.crosshair = self._crosshair_on_slice(self.crosshair)
        self._refresh()

    def _refresh(self) -> None:
        """Cut the current slice of every volume, its overlay, mask and scores, for the browser."""
        axis, index = self.axis, self.index
        shown = planes(self._grids, axis, index)
        indices = self.indices
        errors = overlays(self.overlay, shown, self.reference) if self.reference else {}
        scores = plane_scores(shown, self.reference) if self.reference else {}
        holes = mask_planes(self._mask, self._grids, axis, index) if self._mask is not None else {}
        h, v = in_plane(axis)
        panels = []
        for name, grid in self._grids.items():
            subtitle = f"{AXIS_NAMES[axis]}={indices[name]} of {grid.data.shape[axis]}"
            if name in scores:
                subtitle += f" · {scores[name]['psnr']:.2f} dB · SSIM {scores[name]['ssim']:.3f}"
            elif name == self.reference:
                subtitle += " · reference"
            panels.append({
                "name": name, "width": int(shown[name].shape[0]), "height": int(shown[name].shape[1]),
                "fov": [float(grid.fov[h]), float(grid.fov[v])], "subtitle": subtitle,
                "data": _plane_bytes(shown[name], np.float32),
                "overlay": _plane_bytes(errors[name], np.float32) if name in errors else None,
                "mask": _plane_bytes(holes[name], np.uint8) if name in holes and holes[name].any() else None,
                "scores": scores.get(name, {}),
            })
        self.orientation = grid_labels(self._grids, axis)
        self.panels = panels

    # -- a picture for frontends without widgets ----------------------------------------------

    def figure(self) -> Figure:
        """The current slice as `slice_grid` draws it (the report's static picture)."""
        low, high = self.window
        overlay = self.overlay if self.overlay != "none" else "signed"
        return slice_grid({n: self._volume(n) for n in self._grids}, axis=self.axis, index=self.index,
                          difference_to=self.reference or None, overlay=overlay, cmap=self.cmap,
                          vmin=low, vmax=high, mask=self._mask)

    def _volume(self, name: str):
        grid = self._grids[name]
        if grid.affine is None:
            return grid.data
        from sr_lib.io import Volume

        return Volume(grid.data, grid.affine)

    def _repr_mimebundle_(self, **kwargs):
        data = super()._repr_mimebundle_(**kwargs)
        if isinstance(data, tuple):  # (data, metadata) from some ipywidgets versions
            data = data[0]
        if data is not None:
            data["image/png"] = base64.b64encode(_png(self.figure(), self._dpi)).decode("ascii")
            data["text/plain"] = (f"<VolumeViewer {', '.join(self._grids)}: axis {AXIS_NAMES[self.axis]}, "
                                  f"slice {self.index}>")
        return data


def show_volumes(
    volumes: Mapping[str, VolumeLike],
    *,
    axis: int = 2,
    index: int | None = None,
    difference_to: str | None = None,
    overlay: str | None = None,
    mask: np.ndarray | None = None,
    cmap: str = "gray",
    vmin: float = 0.0,
    vmax: float = 1.0,
    diff_limit: float | None = None,
    panel_size: int = 240,
    dpi: int = 80,
) -> VolumeViewer:
    """A `VolumeViewer` of several volumes side by side, linked (one slice, crosshair, zoom).

    `difference_to` names the reference (usually "HR") that the error overlays and the per-slice
    PSNR/SSIM in the panel titles compare against; `overlay` starts one ("abs", "signed",
    "ssim"; default none, chosen in the viewer). `mask` (3D, finest grid) outlines the hole.
    """
    return VolumeViewer(volumes, axis=axis, index=index, reference=difference_to, overlay=overlay or "none",
                        overlay_limit=diff_limit, mask=mask, cmap=cmap, vmin=vmin, vmax=vmax,
                        panel_size=panel_size, dpi=dpi)
