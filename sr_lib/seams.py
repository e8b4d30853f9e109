"""A number for "stitching leaves seams": error on patch borders against patch interiors.

The 7T->9.4T paper stitches dense patches and reports that its gradient difference loss
makes the seams visible. `seam_scores` measures it on a prediction, given where the
stitched patches meet (`sr_lib.infer.seam_lines`):

- `error_ratio`: mean absolute error on the two voxels either side of a seam line, over the
  mean absolute error everywhere else;
- `jump_ratio`: mean squared step of the error image across seam lines (the error
  gradient's energy there), over the same across every other neighbouring pair.

Both are 1 when the borders are no worse than the interiors; a seam raises them. The error
image (prediction - target) is used rather than the prediction, so anatomy's own edges do
not count. Only pairs inside `mask` (the brain) are scored. The same lines measured on a
prediction made without stitching give the control.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from sr_lib.atomic import atomic_path, write_text

from sr_lib.infer import seam_lines

SEAMS_NAME = "seams.csv"


def seam_scores(
    pred: np.ndarray,
    target: np.ndarray,
    lines: Mapping[int, Sequence[int]],
    *,
    mask: np.ndarray | None = None,
) -> dict[str, float]:
    """`error_ratio` and `jump_ratio` of `pred` against `target` for seam `lines` (axis ->
    positions e, each a boundary between voxels e - 1 and e); NaN when a side is empty."""
    pred, target = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape:
        raise ValueError(f"seam_scores: shapes differ, {pred.shape} vs {target.shape}")
    error = pred - target
    inside = np.ones(error.shape, bool) if mask is None else np.asarray(mask, bool)
    band = np.zeros(error.shape, bool)
    seam_steps, other_steps = [], []
    for axis, positions in lines.items():
        positions = [int(p) for p in positions if 0 < int(p) < error.shape[axis]]
        steps = np.diff(error, axis=axis) ** 2  # index i: the pair (i, i + 1)
        both = np.logical_and(np.take(inside, range(error.shape[axis] - 1), axis=axis),
                              np.take(inside, range(1, error.shape[axis]), axis=axis))
        on_seam = np.zeros(steps.shape[axis], bool)
        on_seam[[p - 1 for p in positions]] = True
        shape = [1] * error.ndim
        shape[axis] = -1
        on_seam = np.broadcast_to(on_seam.reshape(shape), steps.shape)
        seam_steps.append(steps[on_seam & both])
        other_steps.append(steps[~on_seam & both])
        for p in positions:
            index = [slice(None)] * error.ndim
            index[axis] = slice(p - 1, p + 1)
            band[tuple(index)] = True
    abs_error = np.abs(error)
    seam_err, other_err = abs_error[band & inside], abs_error[~band & inside]
    seam_step, other_step = np.concatenate(seam_steps or [np.empty(0)]), np.concatenate(other_steps or [np.empty(0)])
    return {
        "error_ratio": _ratio(seam_err, other_err),
        "jump_ratio": _ratio(seam_step, other_step),
        "seam_fraction": float(band[inside].mean()) if inside.any() else float("nan"),
    }


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> float:
    if numerator.size == 0 or denominator.size == 0 or denominator.mean() == 0:
        return float("nan")
    return float(numerator.mean() / denominator.mean())


def volume_seam_lines(lr_shape: Sequence[int], *, factors: Sequence[int], slice_axis: int | None,
                      patch: int, stride: int, border: int) -> dict[int, list[int]]:
    """Seam positions on the HR grid per axis for a volume stitched slice-wise along
    `slice_axis` (2D: the other two axes have seams) or in 3D (`slice_axis` None)."""
    axes = [a for a in range(len(lr_shape)) if a != slice_axis]
    return {a: seam_lines(int(lr_shape[a]), factor=int(factors[a]), patch=patch, stride=stride, border=border) for a in axes}


def seam_table(runs: Sequence[Any], *, progress: bool = True) -> pd.DataFrame:
    """Seam scores of finished runs, each predicted again with stitched and whole-slice
    inference (kept in the run folder as `seams.csv`, since a finished run does not change): one row per run, test subject and inference mode, with the brain PSNR and
    the seam lines of that run's stitching settings scored inside the brain (the whole-slice
    rows are the control: no patches, so no seams)."""
    from sr_lib.evaluation import observation
    from sr_lib.metrics import foreground_mask, psnr
    from sr_lib.prepare import prepare_data
    from sr_lib.runs import load_trained_method

    tables = []
    done = [r for r in runs if r.status == "done"]
    for run in tqdm(done, desc="seams", unit="run", disable=not progress):
        cached = Path(run.folder) / SEAMS_NAME
        if cached.exists():
            tables.append(pd.read_csv(cached))
            continue
        method, config = load_trained_method(run.folder)
        if not hasattr(method, "stitch_settings"):
            continue
        rows = []
        patch, stride, border = method.stitch_settings()
        task = method.task
        for case in prepare_data(config).test:
            lines = volume_seam_lines(case.lr.shape, factors=task.factors,
                                      slice_axis=task.axis if task.spatial_dims == 2 else None,
                                      patch=patch, stride=stride, border=border)
            brain = foreground_mask(case.hr.data)
            for mode in ("stitch", "whole"):
                method.options = dataclasses.replace(method.options, inference=mode)
                pred = method.predict(observation(case))
                rows.append({"method": config.method, "scenario": config.scenario, "seed": config.seed,
                             "subject": case.hr.subject, "inference": mode,
                             "psnr": psnr(pred, case.hr.data, mask=brain),
                             **seam_scores(pred, case.hr.data, lines, mask=brain),
                             "stitch": f"{patch}/{stride}/{border}"})
        with atomic_path(cached) as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
        tables.append(pd.DataFrame(rows))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def summarise_seams(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds (each seed's value a mean over test subjects)
    of the brain PSNR and the seam ratios, per method and inference mode."""
    per_seed = table.groupby(["scenario", "method", "inference", "seed"], as_index=False)[
        ["psnr", "error_ratio", "jump_ratio"]].mean()
    summary = per_seed.groupby(["scenario", "method", "inference"]).agg(
        seeds=("seed", "nunique"), psnr=("psnr", "mean"), psnr_sd=("psnr", "std"),
        error_ratio=("error_ratio", "mean"), jump_ratio=("jump_ratio", "mean"), jump_ratio_sd=("jump_ratio", "std"))
    return summary.reset_index()


def write_seam_tables(table: pd.DataFrame, out_dir: str | os.PathLike, *, study: str) -> list[Path]:
    """`<study>_seams.md` (the summary with what the ratios mean) and `<study>_seams.csv`
    (every run, subject and inference mode) under `out_dir`."""
    out_dir = Path(out_dir)
    if table.empty:
        return []
    summary = summarise_seams(table)
    shown = summary.rename(columns={"psnr": "brain PSNR", "psnr_sd": "± seed sd", "error_ratio": "border/interior |error|",
                                    "jump_ratio": "border/interior error-step energy", "jump_ratio_sd": "± seed sd "})
    lines = [f"# {study}: seams of stitched inference", "",
             shown.to_markdown(index=False, floatfmt=".3f"), "",
             "Each trained run predicts its test subjects twice: stitched as the 7T->9.4T paper does (dense patches, "
             f"patch/stride/border {table['stitch'].iloc[0]} voxels, overlaps averaged) and with whole slices "
             "(no patches: the control). On the lines where stitched patches meet, the ratios compare the error "
             "on the two voxels either side of a line with the error elsewhere in the brain; 1 = no seam. "
             "'error-step energy' is the mean squared step of the error image across the lines over the same "
             "for every other neighbouring pair. Values are means over seeds of each seed's mean over test subjects.", ""]
    written = [write_text(out_dir / f"{study}_seams.md", "\n".join(lines))]
    with atomic_path(out_dir / f"{study}_seams.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.5g")
    return written + [out_dir / f"{study}_seams.csv"]


def seam_example(run: Any, subject_index: int = 0) -> dict[str, Any]:
    """One test subject of a finished run predicted stitched and with whole slices, with
    its seam lines: what `sr_lib.figures.seam_figure` draws."""
    from sr_lib.evaluation import observation
    from sr_lib.prepare import prepare_data
    from sr_lib.runs import load_trained_method

    method, config = load_trained_method(run.folder)
    case = prepare_data(config).test[subject_index]
    patch, stride, border = method.stitch_settings()
    predictions = {}
    for mode in ("stitch", "whole"):
        method.options = dataclasses.replace(method.options, inference=mode)
        predictions[mode] = method.predict(observation(case))
    axis = method.task.axis if method.task.spatial_dims == 2 else 2
    lines = volume_seam_lines(case.lr.shape, factors=method.task.factors, slice_axis=axis, patch=patch, stride=stride,
                              border=border)
    return {"method": config.method, "subject": case.hr.subject, "hr": case.hr.data, "axis": axis, "lines": lines,
            **predictions}
