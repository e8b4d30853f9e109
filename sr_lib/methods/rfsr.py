"""RFSR: random-forest super-resolution on residuals of a shifted stack (the 7T-to-9.4T paper's
non-deep baseline, after Shermeyer & Van Etten 2018).

The 7T-to-9.4T paper (authors not established, see `sr_lib.papers`), Sec. 6.1: "The LR images
are shifted by a dimension of 2 in all directions, and each shifted images are stacked together
then padded with zeros. RFSR trains on residual images subtracting the actual LR images from this
stacked LR images to create inputs to the Random Forest model, and from the HR images to create
the targets. [...] The number of estimators [...] is 200, each with a maximum depth of 15." It
adapts the code of Shermeyer & Van Etten 2018 (arXiv:1812.04098, github.com/jshermeyer/RFSR),
whose notebook we read for the details the paper leaves open (marked "Shermeyer" below).

Per pixel of an (HR-grid) slice ``u`` = the bicubic-interpolated LR slice, zero-padded by `r`::

    x_k = u[i + dy_k, j + dx_k] - u[i, j]     for every (dy, dx) in [-r, r]^2 except (0, 0)
    x_F = u[i, j]                              (ours, option `intensity`)
    y   = hr[i, j] - u[i, j]                   (the residual target)
    prediction = clip(u + mean over trees of leaf(x), 0, 1)

The state is the forest as plain arrays (sklearn's per-tree node arrays, concatenated), saved with
`np.savez` without pickle and evaluated by `ForestArrays.predict`, a vectorised NumPy traversal
that is used after `fit` and after `load` alike.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from sr_lib.degrade import resize
from sr_lib.methods.base import (
    ArrayMethod, FitContext, MethodOptions, ModelError, Observation, Support, Task, TrainData, Triple,
)
from sr_lib.profiles import Profile

CHUNK_PIXELS = 1 << 15  # pixels per prediction chunk: about 4 MB of features at r = 2, whatever the slice size


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# ----------------------------------------------------------------------------- options


@dataclasses.dataclass(frozen=True)
class RFSROptions(MethodOptions):
    """Paper values: `n_trees` 200, `max_depth` 15 (7T-to-9.4T paper, Sec. 6.1), `radius` 2 ("shifted
    by a dimension of 2 in all directions" = Shermeyer's default `shift_dimension=2`, a 5 x 5
    neighbourhood), `max_features` 1.0 (every feature at every split: sklearn's regressor default
    when the paper was written; the paper names no other). The rest are ours:

    - `samples`: training pixels drawn over all training slices (the paper trained on 2000 of
      its 9300 64 x 64 patches, about 8 M pixels; Shermeyer samples 10 % of all pixels);
    - `threshold`, `background`: a fraction `background` of the samples comes from pixels with
      HR <= `threshold`, the rest from the foreground (brain volumes are mostly air, where the
      residual is zero; both sources sample uniformly);
    - `min_samples_leaf`: sklearn's default 1 (Shermeyer's `min_samples_split=200` is not in the
      paper; 5 gave the same validation PSNR with half the nodes, so we kept the default);
    - `intensity`: add the interpolated value ``u[i, j]`` itself as a last feature (the paper's
      features are differences only, which cannot tell dark from bright tissue): +0.16 dB;
    - the `quick` profile: 32 trees of depth 12 on 100 k pixels, `max_features` 0.33 (a third,
      Breiman's choice for regression): -0.09 dB against all features, for a 5x faster fit.

    Measured on the validation subject (T2, `quick` phantom, SR-B x2, PSNR over HR > 0.1, seed
    0; 2 busy CPU cores): bicubic 20.87 dB; quick options with all features 24.28 dB (fit 172 s),
    with `max_features` 0.33 24.19 dB (36 s), without `intensity` 24.12 dB, with
    `min_samples_leaf` 5 24.28 dB (48.7 k instead of 106.6 k nodes). On kspace-2x, the
    zero-filled input 24.40 dB, quick RFSR 27.03 dB (fit 42 s).
    """

    n_trees: int = 200
    max_depth: int = 15
    radius: int = 2
    max_features: float = 1.0
    samples: int = 2_000_000
    min_samples_leaf: int = 1
    threshold: float = 0.02
    background: float = 0.1
    intensity: bool = True

    def __post_init__(self) -> None:
        for name in ("n_trees", "max_depth", "radius", "samples", "min_samples_leaf"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"rfsr option {name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.max_features <= 1.0:
            raise ValueError(f"rfsr option max_features must be in (0, 1], got {self.max_features}")
        if not 0.0 <= self.background < 1.0:
            raise ValueError(f"rfsr option background must be in [0, 1), got {self.background}")

    @classmethod
    def profile_defaults(cls, profile: Profile) -> dict[str, Any]:
        # quick: under a minute of fitting on 2 CPU cores (measured above); full: the paper's forest.
        return {
            "test": {"n_trees": 4, "max_depth": 4, "samples": 2_000},
            "quick": {"n_trees": 32, "max_depth": 12, "samples": 100_000, "max_features": 0.33},
        }.get(profile.name, {})

    @property
    def n_features(self) -> int:
        return (2 * self.radius + 1) ** 2 - 1 + int(self.intensity)


# ----------------------------------------------------------------------------- features


def _offsets(radius: int) -> list[tuple[int, int]]:
    """The shifts of the stack, row-major, without (0, 0) (its difference is identically zero)."""
    return [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1) if (dy, dx) != (0, 0)]


def shifted_stack(u: np.ndarray, rows: slice, *, radius: int, intensity: bool) -> np.ndarray:
    """Features ``(n, F)`` float32 of the pixels in `rows` of slice `u` ``(H, W)``, row-major:
    ``u[i + dy, j + dx] - u[i, j]`` per offset (zeros outside the slice: the paper's zero
    padding), then ``u[i, j]`` when `intensity`. Only rows ``start - r .. stop + r`` are read,
    so a chunk of rows of a 512 x 512 slice costs a chunk's worth of memory."""
    height, width = u.shape
    start, stop, _ = rows.indices(height)
    r = radius
    padded = np.zeros((stop - start + 2 * r, width + 2 * r), dtype=np.float32)
    lo, hi = max(start - r, 0), min(stop + r, height)
    padded[lo - (start - r): hi - (start - r), r: r + width] = u[lo:hi]
    centre = u[start:stop]
    offsets = _offsets(r)
    out = np.empty((stop - start, width, len(offsets) + int(intensity)), dtype=np.float32)
    for k, (dy, dx) in enumerate(offsets):
        np.subtract(padded[r + dy: r + dy + stop - start, r + dx: r + dx + width], centre, out=out[..., k])
    if intensity:
        out[..., -1] = centre
    return out.reshape(-1, out.shape[-1])


# ----------------------------------------------------------------------------- the forest as arrays


FOREST_KEYS = ("children_left", "children_right", "feature", "threshold", "value", "tree_offsets", "n_features")


@dataclasses.dataclass(frozen=True)
class ForestArrays:
    """A regression forest as sklearn stores each tree, concatenated over trees: node ``n`` of
    tree ``t`` is row ``tree_offsets[t] + n``; children indices are local to their tree, -1 at
    leaves; `value` is the leaf mean (float64); `threshold` float64 (go left when
    ``x[feature] <= threshold``). The prediction is the mean of the trees' leaf values."""

    children_left: np.ndarray
    children_right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    value: np.ndarray
    tree_offsets: np.ndarray
    n_features: int

    @staticmethod
    def from_sklearn(forest: Any) -> "ForestArrays":
        trees = [estimator.tree_ for estimator in forest.estimators_]
        sizes = [tree.node_count for tree in trees]
        return ForestArrays(
            children_left=np.concatenate([t.children_left for t in trees]).astype(np.int32),
            children_right=np.concatenate([t.children_right for t in trees]).astype(np.int32),
            feature=np.concatenate([t.feature for t in trees]).astype(np.int32),
            threshold=np.concatenate([t.threshold for t in trees]).astype(np.float64),
            value=np.concatenate([t.value.reshape(t.node_count, -1)[:, 0] for t in trees]).astype(np.float64),
            tree_offsets=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
            n_features=int(forest.n_features_in_),
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {**{k: getattr(self, k) for k in FOREST_KEYS[:-1]}, "n_features": np.array(self.n_features, np.int64)}

    @staticmethod
    def from_arrays(arrays: Mapping[str, np.ndarray]) -> "ForestArrays":
        """Check and adopt saved arrays; a `ValueError` says what is wrong."""
        missing = [k for k in FOREST_KEYS if k not in arrays]
        if missing:
            raise ValueError(f"missing array(s) {', '.join(missing)}")
        a = {k: np.asarray(arrays[k]) for k in FOREST_KEYS}
        for k in FOREST_KEYS[:-1]:
            if a[k].ndim != 1:
                raise ValueError(f"{k} has shape {a[k].shape}, not one dimension")
        for k, kinds in (("children_left", "iu"), ("children_right", "iu"), ("feature", "iu"), ("tree_offsets", "iu"),
                         ("threshold", "f"), ("value", "f"), ("n_features", "iu")):
            if a[k].dtype.kind not in kinds:
                raise ValueError(f"{k} has dtype {a[k].dtype}")
        if a["n_features"].shape != () or int(a["n_features"]) < 1:
            raise ValueError(f"n_features must be one positive number, got {a['n_features']!r}")
        n_nodes = a["value"].shape[0]
        for k in ("children_left", "children_right", "feature", "threshold"):
            if a[k].shape[0] != n_nodes:
                raise ValueError(f"{k} has {a[k].shape[0]} nodes, value has {n_nodes}")
        offsets = a["tree_offsets"].astype(np.int64)
        if offsets.size < 2 or offsets[0] != 0 or offsets[-1] != n_nodes or np.any(np.diff(offsets) < 1):
            raise ValueError(f"tree_offsets {offsets[:4].tolist()}... do not split {n_nodes} nodes into trees")
        left, right = a["children_left"].astype(np.int64), a["children_right"].astype(np.int64)
        leaf = left == -1
        local = np.arange(n_nodes) - np.repeat(offsets[:-1], np.diff(offsets))
        size = np.repeat(np.diff(offsets), np.diff(offsets))
        inner = ~leaf
        if np.any((right == -1) != leaf):
            raise ValueError("children_left and children_right disagree on which nodes are leaves")
        if np.any(inner & ((left <= local) | (left >= size) | (right <= local) | (right >= size))):
            raise ValueError("a child index points outside its tree or backwards")
        feature, n_features = a["feature"].astype(np.int64), int(a["n_features"])
        if np.any(inner & ((feature < 0) | (feature >= n_features))):
            raise ValueError(f"a split feature is outside 0..{n_features - 1}")
        if not np.all(np.isfinite(a["threshold"][inner])) or not np.all(np.isfinite(a["value"])):
            raise ValueError("NaN or infinite thresholds or values")
        return ForestArrays(left.astype(np.int32), right.astype(np.int32), feature.astype(np.int32),
                            a["threshold"].astype(np.float64), a["value"].astype(np.float64), offsets, n_features)

    @property
    def n_trees(self) -> int:
        return int(self.tree_offsets.size - 1)

    # -- traversal
    def tables(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]]:
        """Per tree: (feature, float32 threshold, next-node table, value, depth). The table
        ``step[2 n + go_right]`` holds node n's children; a leaf points to itself twice, so a
        traversal can run a fixed number of levels. Thresholds are rounded down to float32:
        for a float32 x, ``x <= t`` (sklearn compares in float64) equals ``x <= t32``."""
        cached = getattr(self, "_cache", None)
        if cached is not None:
            return cached
        thr32 = self.threshold.astype(np.float32)
        above = thr32.astype(np.float64) > self.threshold
        thr32[above] = np.nextafter(thr32[above], np.float32(-np.inf))
        trees = []
        for t in range(self.n_trees):
            lo, hi = int(self.tree_offsets[t]), int(self.tree_offsets[t + 1])
            left, right = self.children_left[lo:hi], self.children_right[lo:hi]
            leaf = left == -1
            own = np.arange(hi - lo, dtype=np.int32)
            step = np.stack([np.where(leaf, own, left), np.where(leaf, own, right)], axis=1).astype(np.int32).ravel()
            feature = np.where(leaf, 0, self.feature[lo:hi]).astype(np.int32)
            depth, frontier = 0, np.array([0])
            while True:  # children come after their parent (checked on load), so this ends
                frontier = frontier[~leaf[frontier]]
                if frontier.size == 0:
                    break
                frontier = np.unique(np.concatenate([left[frontier], right[frontier]]))
                depth += 1
            trees.append((feature, np.ascontiguousarray(thr32[lo:hi]), step, self.value[lo:hi], depth))
        object.__setattr__(self, "_cache", trees)
        return trees

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Mean leaf value over trees for features `x` ``(n, n_features)``, as float64 (the same
        numbers as sklearn's `predict`, up to the order of summation). Level by level over a
        block of rows at once, tree by tree (each tree's tables stay in cache)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"features have shape {x.shape}, the forest takes (n, {self.n_features})")
        total = np.zeros(x.shape[0], dtype=np.float64)
        trees = self.tables()
        for start in range(0, x.shape[0], self.BLOCK):
            block = x[start: start + self.BLOCK]
            n = block.shape[0]
            flat = block.ravel()
            base = np.arange(n, dtype=np.int32) * np.int32(self.n_features)
            node, index = np.empty(n, np.int32), np.empty(n, np.int32)
            values, thresholds = np.empty(n, np.float32), np.empty(n, np.float32)
            right = np.empty(n, bool)
            out = total[start: start + n]
            for feature, threshold, step, value, depth in trees:
                node[:] = 0
                for _ in range(depth):
                    np.take(feature, node, out=index, mode="clip")
                    index += base
                    np.take(flat, index, out=values, mode="clip")
                    np.take(threshold, node, out=thresholds, mode="clip")
                    np.greater(values, thresholds, out=right)
                    np.left_shift(node, 1, out=node)
                    node += right
                    np.take(step, node, out=index, mode="clip")
                    node, index = index, node
                out += value[node]
        return total / self.n_trees

    BLOCK = 1 << 16  # rows per traversal block (int32 indices, cache-sized buffers)


# ----------------------------------------------------------------------------- the method


class RFSRMethod(ArrayMethod):
    """RFSR (7T-to-9.4T paper, after Shermeyer & Van Etten 2018): a random forest regresses the
    residual HR - bicubic from the shifted stack of the bicubic-interpolated input, slice-wise.

    From the paper: residual learning on a zero-padded 5 x 5 shifted stack (`radius` 2) with the
    interpolated centre subtracted, sklearn's `RandomForestRegressor` with 200 trees of depth 15,
    training on a subsample of pixels. Shermeyer's: bicubic upsampling of the LR before
    shifting. Ours: the interpolation is the workbench's bicubic (the `bicubic` row itself, so
    on same-grid scenarios the input is used as it is); 2D slices along the task axis (the
    paper works on 2D patches); float intensities in [0, 1] (Shermeyer rounds the stack to
    integers of 8-bit images); the extra `intensity` feature; sampling mostly foreground
    pixels; the output clipped to [0, 1]; our own NumPy traversal of the saved arrays (no
    pickle), equal to sklearn's `predict` to float rounding. See `RFSROptions`.

    The paper reports that RFSR output was "not distinguishable from the LR input image"; it
    is a baseline, expected to sit close to `bicubic` / `input`.
    """

    name = "rfsr"
    summary = "random forest on residuals of a shifted stack of the bicubic input (7T-to-9.4T paper's RFSR)"
    Options = RFSROptions
    support = Support(pairings=("paired",), dims=(2,))

    def __init__(self, task: Task, options: RFSROptions, profile: Profile) -> None:
        super().__init__(task, options, profile)
        self.forest: ForestArrays | None = None

    # -- data
    def interpolate(self, lr: np.ndarray) -> np.ndarray:
        """The LR volume on the HR grid with the `bicubic` row's kernel (a copy on same-grid tasks)."""
        lr = np.asarray(lr, dtype=np.float32)
        if lr.ndim != 3:
            raise ValueError(f"rfsr takes (x, y, z) volumes, got shape {lr.shape}")
        return resize(lr, size=tuple(n * f for n, f in zip(lr.shape, self.task.factors)), method="bicubic")

    def _slices_first(self, volume: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.moveaxis(volume, self.task.axis, 0))

    def _pairs(self, triples: Sequence[Triple]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(interpolated, hr) per triple, slices first, checked to share the HR grid."""
        for i, (lr, hr, _) in enumerate(triples):
            up, hr = self.interpolate(lr), np.asarray(hr, dtype=np.float32)
            if up.shape != hr.shape:
                raise ValueError(f"triple {i}: LR {np.shape(lr)} x factors {self.task.factors} != HR {hr.shape}")
            yield self._slices_first(up), self._slices_first(hr)

    def sample(self, triples: Sequence[Triple], n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
        """`n` training pixels drawn without replacement (a share `background` at HR <=
        `threshold`, the rest above it; uniform over all volumes and slices): features
        ``(n, F)``, residual targets ``(n,)`` and how many came from the foreground."""
        opts = self.options
        hr_volumes = [np.asarray(hr, dtype=np.float32) for _, hr, _ in triples]
        n_fg = np.array([int(np.count_nonzero(hr > opts.threshold)) for hr in hr_volumes])
        n_bg = np.array([hr.size for hr in hr_volumes]) - n_fg
        want_fg = min(int(round(n * (1 - opts.background))), int(n_fg.sum()))
        want_bg = min(n - want_fg, int(n_bg.sum()))
        picks = []  # per pool: sorted global ranks among that pool's voxels
        for want, pool in ((want_fg, n_fg), (want_bg, n_bg)):
            drawn = rng.choice(int(pool.sum()), size=want, replace=False) if want else np.zeros(0, np.int64)
            picks.append(np.sort(drawn))
        features, targets = [], []
        starts = [np.concatenate([[0], np.cumsum(pool)]) for pool in (n_fg, n_bg)]
        for v, (up, hr) in enumerate(self._pairs(triples)):
            fg = (hr > opts.threshold).ravel()
            chosen = []
            for pool_mask, ranks, start in ((fg, picks[0], starts[0]), (~fg, picks[1], starts[1])):
                mine = ranks[(ranks >= start[v]) & (ranks < start[v + 1])] - start[v]
                chosen.append(np.flatnonzero(pool_mask)[mine])
            flat = np.sort(np.concatenate(chosen))
            per_slice = up.shape[1] * up.shape[2]
            for s in np.unique(flat // per_slice):
                here = flat[(flat >= s * per_slice) & (flat < (s + 1) * per_slice)] - s * per_slice
                stack = shifted_stack(up[s], slice(None), radius=opts.radius, intensity=opts.intensity)
                features.append(stack[here])
                targets.append(hr[s].ravel()[here] - up[s].ravel()[here])
        width = opts.n_features
        x = np.concatenate(features) if features else np.zeros((0, width), np.float32)
        y = np.concatenate(targets) if targets else np.zeros(0, np.float32)
        return x, y.astype(np.float32), want_fg

    # -- fitting
    def fit(self, data: TrainData, context: FitContext) -> dict[str, Any]:
        from sklearn.ensemble import RandomForestRegressor

        if data.pairing != "paired":
            raise ValueError(f"rfsr trains on paired data, not {data.pairing}")
        opts = self.options
        x, y, n_fg = self.sample(data.train, opts.samples, np.random.default_rng([context.seed, 0]))
        if x.shape[0] < 2:
            raise ValueError(f"rfsr found {x.shape[0]} training pixels; it needs at least 2")
        jobs = _cores()
        forest = RandomForestRegressor(
            n_estimators=0, max_depth=opts.max_depth, max_features=opts.max_features,
            min_samples_leaf=opts.min_samples_leaf, random_state=context.seed, n_jobs=jobs, warm_start=True,
        )
        # Grown in batches only to show progress: with warm_start, sklearn draws each tree's seed
        # as a single fit would, so the forest is the same.
        batch = max(jobs, -(-opts.n_trees // 10) // jobs * jobs)
        started = time.perf_counter()
        with tqdm(total=opts.n_trees, desc="rfsr trees", unit="tree", disable=not context.progress) as bar:
            while len(getattr(forest, "estimators_", [])) < opts.n_trees:
                forest.n_estimators = min(forest.n_estimators + batch, opts.n_trees)
                forest.fit(x, y)
                bar.update(forest.n_estimators - bar.n)
        fit_seconds = time.perf_counter() - started
        self.forest = ForestArrays.from_sklearn(forest)
        facts = {"samples": int(x.shape[0]), "foreground_samples": int(n_fg), "features": int(x.shape[1]),
                 "nodes": int(self.forest.tree_offsets[-1]), "fit_seconds": round(fit_seconds, 2), "n_jobs": jobs}
        if data.val:  # residual RMSE on sampled validation pixels: the forest vs the interpolation alone
            xv, yv, _ = self.sample(data.val, min(opts.samples, 20_000), np.random.default_rng([context.seed, 1]))
            if xv.shape[0]:
                facts["val_rmse_interpolated"] = float(np.sqrt(np.mean(yv.astype(np.float64) ** 2)))
                facts["val_rmse_rfsr"] = float(np.sqrt(np.mean((yv - self.forest.predict(xv)) ** 2)))
        return facts

    # -- inference
    def predict(self, observation: Observation) -> np.ndarray:
        if self.forest is None:
            raise RuntimeError("rfsr has no forest: fit or load it first")
        up = self._slices_first(self.interpolate(observation.lr))
        opts = self.options
        n_slices, height, width = up.shape
        per_chunk = max(1, CHUNK_PIXELS // width)  # rows
        if per_chunk >= height:  # small slices: several whole slices per chunk
            group = max(1, CHUNK_PIXELS // (height * width))
            chunks = [(slice(s, s + group), slice(None)) for s in range(0, n_slices, group)]
        else:  # wide slices (512 x 512): a few rows at a time
            chunks = [(slice(s, s + 1), slice(a, a + per_chunk)) for s in range(n_slices)
                      for a in range(0, height, per_chunk)]
        out = np.empty_like(up)

        def run(chunk: tuple[slice, slice]) -> None:
            slices, rows = chunk
            here = up[slices, rows]
            stack = np.concatenate([shifted_stack(u, rows, radius=opts.radius, intensity=opts.intensity)
                                    for u in up[slices]])
            residual = self.forest.predict(stack).reshape(here.shape)
            np.clip(here + residual, 0.0, 1.0, out=out[slices, rows])

        self.forest.tables()  # built once, before the threads share them
        workers = min(_cores(), len(chunks))
        if workers > 1:  # NumPy's take and ufuncs release the GIL
            with concurrent.futures.ThreadPoolExecutor(workers) as pool:
                list(pool.map(run, chunks))
        else:
            for chunk in chunks:
                run(chunk)
        return np.ascontiguousarray(np.moveaxis(out, 0, self.task.axis))

    # -- state
    def state_arrays(self) -> dict[str, np.ndarray]:
        if self.forest is None:
            raise RuntimeError("rfsr has no forest to save: fit it first")
        return self.forest.to_arrays()

    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        try:
            forest = ForestArrays.from_arrays(arrays)
        except ValueError as err:
            raise ModelError(f"rfsr model arrays: {err}") from None
        if forest.n_features != self.options.n_features:
            opts = self.options
            raise ModelError(f"rfsr model arrays: the forest takes {forest.n_features} features, these options make "
                             f"{opts.n_features} (radius {opts.radius}, intensity {opts.intensity})")
        self.forest = forest

    def load(self, directory: Path) -> None:
        path = Path(directory) / self.ARRAYS
        try:
            super().load(directory)
        except ModelError as err:
            message = str(err)
            raise ModelError(message if message.startswith(str(path)) else f"{path}: {message}") from None
