"""Look at volumes side by side: a static figure (`slice_grid`) and a notebook widget on top of it.

`slice_grid` draws one slice of each volume in a row (titles, a shared grey-scale colourbar)
and, optionally, a second row of signed difference maps against a reference volume. It is the
only plotting code here: `show_volumes` wraps it in an ipywidgets viewer (axis dropdown, slice
slider) that re-renders the figure to a PNG on every change.

Volumes on different grids (an LR volume half the size of its HR twin) are shown at the same
relative position: the slider runs over the finest grid, the volume with the most slices along
the chosen axis, and each other volume shows the slice whose centre is nearest
(`corresponding_index`).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping
from typing import Union

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure

from sr_lib.io import Volume

VolumeLike = Union[Volume, np.ndarray]

AXIS_NAMES = ("x", "y", "z")
_AXIS_LABELS = (("x (sagittal)", 0), ("y (coronal)", 1), ("z (axial)", 2))

__all__ = ["AXIS_NAMES", "VolumeViewer", "corresponding_index", "show_volumes", "slice_grid"]


# ----------------------------------------------------------------------------- checks and geometry


def _prepare(volumes: Mapping[str, VolumeLike]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (3D float array, field of view per axis). Raises ValueError on bad input.

    The field of view fixes the panel's aspect ratio: shape x voxel size for a Volume; an
    ndarray is assumed to cover the same field of view as the largest ndarray (so a half-size
    LR array is drawn with voxels twice as large, not as a smaller picture).
    """
    if not isinstance(volumes, Mapping) or len(volumes) == 0:
        raise ValueError("volumes must be a non-empty dict of name -> Volume or 3D array")
    arrays: dict[str, np.ndarray] = {}
    sizes: dict[str, np.ndarray | None] = {}
    for name, vol in volumes.items():
        if isinstance(vol, Volume):
            data, voxel = np.asarray(vol.data), np.asarray(vol.voxel_size, dtype=float)
        else:
            data, voxel = np.asarray(vol), None
        if data.ndim != 3 or min(data.shape) == 0:
            raise ValueError(f"volume {name!r}: expected a non-empty 3D array, got shape {data.shape}")
        arrays[str(name)] = data
        sizes[str(name)] = None if voxel is None else np.asarray(data.shape) * voxel
    plain = [a.shape for n, a in arrays.items() if sizes[n] is None]
    plain_fov = np.max(np.asarray(plain), axis=0).astype(float) if plain else None
    return {n: (a, sizes[n] if sizes[n] is not None else plain_fov) for n, a in arrays.items()}


def _check_axis(axis: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0 (x), 1 (y) or 2 (z), got {axis!r}")
    return int(axis)


def corresponding_index(index: int, n_from: int, n_to: int) -> int:
    """Slice of a grid with `n_to` slices at the relative position of slice `index` of `n_from`.

    Both grids span the same field of view with cell-centred voxels (as `io.resampled_affine`):
    slice i sits at (i + 0.5) / n, and the slice whose cell contains that point is returned.
    """
    return int(min(n_to - 1, max(0, math.floor((index + 0.5) * n_to / n_from))))


def _grid_slices(prepared: Mapping[str, tuple[np.ndarray, np.ndarray]], axis: int) -> int:
    """Number of slices along `axis` on the finest grid (the one the slider runs over)."""
    return max(a.shape[axis] for a, _ in prepared.values())


def _resolve_index(index: int | None, n: int, axis: int) -> int:
    if index is None:
        return n // 2
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < n:
        raise ValueError(
            f"index must be an integer in [0, {n - 1}] along axis {AXIS_NAMES[axis]}, got {index!r}"
        )
    return int(index)


def _check_reference(difference_to: str | None, names) -> None:
    if difference_to is not None and difference_to not in names:
        raise ValueError(f"difference_to={difference_to!r} is not one of the volumes: {', '.join(names)}")


# ----------------------------------------------------------------------------- the static figure


def slice_grid(
    volumes: Mapping[str, VolumeLike],
    *,
    axis: int = 2,
    index: int | None = None,
    difference_to: str | None = None,
    cmap: str = "gray",
    vmin: float = 0.0,
    vmax: float = 1.0,
    diff_limit: float | None = None,
    panel_size: float = 3.0,
) -> Figure:
    """One slice of every volume in a row, and optionally their differences to a reference.

    `volumes`: name -> Volume or 3D array (x, y, z). `axis`: 0, 1 or 2, the axis the slice is
    normal to. `index`: the slice on the finest grid along `axis` (default: the middle); other
    grids show the corresponding slice. The slice is drawn with the lower remaining axis
    horizontal and the higher one vertical, origin at the lower left, with the volume's
    physical aspect ratio. Titles read ``name`` and ``z=31 (of 64)``: the slice shown and the
    number of slices on that volume's grid.

    With `difference_to` (one of the names), a second row shows ``volume - reference``, signed,
    in "bwr" with symmetric limits ``±diff_limit`` (default: the largest absolute difference in
    the shown slices, shared by all panels). Volumes on another grid than the reference get an
    empty panel. Returns a matplotlib Figure not registered with pyplot (save it, or
    ``display`` it in a notebook).
    """
    prepared = _prepare(volumes)
    axis = _check_axis(axis)
    _check_reference(difference_to, list(prepared))
    n_grid = _grid_slices(prepared, axis)
    index = _resolve_index(index, n_grid, axis)
    indices = {name: corresponding_index(index, n_grid, a.shape[axis]) for name, (a, _) in prepared.items()}
    shown = {name: np.take(a, indices[name], axis=axis) for name, (a, _) in prepared.items()}
    in_plane = [d for d in range(3) if d != axis]  # (horizontal, vertical)

    rows = 1 if difference_to is None else 2
    ncols = len(prepared)
    fig = Figure(figsize=(panel_size * ncols + 1.0, panel_size * rows + 0.4), layout="constrained")
    axes = np.asarray(fig.subplots(rows, ncols, squeeze=False))
    images = []
    for col, (name, (data, fov)) in enumerate(prepared.items()):
        ax = axes[0, col]
        extent = (0.0, float(fov[in_plane[0]]), 0.0, float(fov[in_plane[1]]))
        images.append(
            ax.imshow(shown[name].T, cmap=cmap, vmin=vmin, vmax=vmax, origin="lower", extent=extent,
                      interpolation="nearest")
        )
        ax.set_title(f"{name}\n{AXIS_NAMES[axis]}={indices[name]} (of {data.shape[axis]})", fontsize=9)
        ax.set_axis_off()
    fig.colorbar(images[0], ax=list(axes[0]), shrink=0.8)

    if difference_to is not None:
        ref = shown[difference_to]
        diffs = {
            name: s.astype(np.float64) - ref
            for name, s in shown.items()
            if name != difference_to and s.shape == ref.shape
        }
        limit = diff_limit
        if limit is None:
            limit = max((float(np.abs(d).max()) for d in diffs.values()), default=0.0)
        if not limit > 0:
            limit = 1e-3 * (vmax - vmin) if vmax > vmin else 1e-3
        diff_images = []
        for col, (name, (data, fov)) in enumerate(prepared.items()):
            ax = axes[1, col]
            ax.set_axis_off()
            if name == difference_to:
                ax.text(0.5, 0.5, f"{name}\n(reference)", ha="center", va="center", transform=ax.transAxes)
            elif name not in diffs:
                ax.text(0.5, 0.5, f"{name}\non another grid\n{data.shape}", ha="center", va="center",
                        transform=ax.transAxes)
            else:
                extent = (0.0, float(fov[in_plane[0]]), 0.0, float(fov[in_plane[1]]))
                diff_images.append(
                    ax.imshow(diffs[name].T, cmap="bwr", vmin=-limit, vmax=limit, origin="lower",
                              extent=extent, interpolation="nearest")
                )
                ax.set_title(f"{name} − {difference_to}", fontsize=9)
        if diff_images:
            fig.colorbar(diff_images[0], ax=list(axes[1]), shrink=0.8)
    return fig


def _png(fig: Figure, dpi: int) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


# ----------------------------------------------------------------------------- the widget


class VolumeViewer(widgets.VBox):
    """The widget `show_volumes` returns: [axis dropdown, slice slider] above an Output.

    Attributes for code and tests: `axis_dropdown`, `slider`, `output`, `figure` (the Figure
    last drawn), `axis`, `index` (on the finest grid) and `indices` (name -> slice shown).
    """

    def __init__(
        self,
        volumes: Mapping[str, VolumeLike],
        *,
        axis: int = 2,
        index: int | None = None,
        dpi: int = 80,
        **grid_options,
    ) -> None:
        self._volumes = dict(volumes) if isinstance(volumes, Mapping) else volumes
        self._prepared = _prepare(self._volumes)
        axis = _check_axis(axis)
        _check_reference(grid_options.get("difference_to"), list(self._prepared))
        n = _grid_slices(self._prepared, axis)
        index = _resolve_index(index, n, axis)
        self._grid_options = grid_options
        self._dpi = dpi
        self._png_bytes = b""
        self.figure: Figure | None = None
        self.axis_dropdown = widgets.Dropdown(options=_AXIS_LABELS, value=axis, description="axis")
        # Redraw on release only: each redraw renders a PNG, and a dragged slider would queue many.
        self.slider = widgets.IntSlider(
            value=index, min=0, max=n - 1, description="slice", continuous_update=False
        )
        self.output = widgets.Output()
        super().__init__([widgets.HBox([self.axis_dropdown, self.slider]), self.output])
        self._updating = False
        self.axis_dropdown.observe(self._on_axis, names="value")
        self.slider.observe(self._on_index, names="value")
        self.redraw()

    @property
    def axis(self) -> int:
        return int(self.axis_dropdown.value)

    @property
    def index(self) -> int:
        return int(self.slider.value)

    @property
    def indices(self) -> dict[str, int]:
        n = _grid_slices(self._prepared, self.axis)
        axis, index = self.axis, self.index
        return {name: corresponding_index(index, n, a.shape[axis]) for name, (a, _) in self._prepared.items()}

    def _on_axis(self, change) -> None:
        n = _grid_slices(self._prepared, change["new"])
        self._updating = True  # one redraw for the max/value pair, not one per trait
        try:
            self.slider.value = 0  # valid on both grids, so max can shrink safely
            self.slider.max = n - 1
            self.slider.value = n // 2
        finally:
            self._updating = False
        self.redraw()

    def _on_index(self, change) -> None:
        if not self._updating:
            self.redraw()

    def redraw(self) -> None:
        """Draw the current slice with `slice_grid` and put it, as a PNG, into the Output.

        Setting the Output's `outputs` (rather than capturing `display` inside it) works with
        or without a kernel, and a headless run (papermill) saves the picture in the widget
        state; `_repr_mimebundle_` also carries it for viewers that do not run widgets.
        """
        self.figure = slice_grid(
            self._volumes,
            axis=self.axis,
            index=self.index,
            **self._grid_options,
        )
        self._png_bytes = _png(self.figure, self._dpi)
        self.output.outputs = (
            {
                "output_type": "display_data",
                "data": {
                    "image/png": base64.b64encode(self._png_bytes).decode("ascii"),
                    "text/plain": f"<slice grid: axis {AXIS_NAMES[self.axis]}, slice {self.index}>",
                },
                "metadata": {},
            },
        )

    def _repr_mimebundle_(self, **kwargs):
        data = super()._repr_mimebundle_(**kwargs)
        if data is not None and self._png_bytes:
            # A static fallback: frontends without the widget manager show the first picture.
            data["image/png"] = base64.b64encode(self._png_bytes).decode("ascii")
        return data


def show_volumes(
    volumes: Mapping[str, VolumeLike],
    *,
    axis: int = 2,
    index: int | None = None,
    difference_to: str | None = None,
    cmap: str = "gray",
    vmin: float = 0.0,
    vmax: float = 1.0,
    diff_limit: float | None = None,
    dpi: int = 80,
) -> VolumeViewer:
    """An ipywidgets viewer of several volumes side by side (an ``ipywidgets.VBox``).

    An axis dropdown and a slice slider drive every panel together; volumes on coarser grids
    show the slice at the same relative position. `difference_to` adds a row of signed
    difference maps (see `slice_grid`, which draws every frame). The first frame is drawn at
    once, so a notebook executed headless (papermill) still shows a picture.
    """
    viewer = VolumeViewer(
        volumes,
        axis=axis,
        index=index,
        dpi=dpi,
        difference_to=difference_to,
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        diff_limit=diff_limit,
    )
    return viewer
