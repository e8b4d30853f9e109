"""Comparison tables (the papers' layout: methods x contrasts, mean ± std over test
subjects, best in bold, paired Wilcoxon against the best) and difference-map figures."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

from sr_lib.atomic import atomic_path, write_text
from sr_lib.metrics import format_mean_std
from sr_lib.runs import RunResult

GROUP = ["scenario", "contrast", "scale", "pairing", "method", "profile"]
SUMMARY_COLUMNS = GROUP + ["status", "n_subjects", "psnr_mean", "psnr_std", "ssim_mean", "ssim_std"]
TABLE_KEYS = ["scenario", "scale", "pairing", "profile"]


def tidy_metrics(runs: Sequence[RunResult]) -> pd.DataFrame:
    """One row per (run, test subject); a failed run contributes one row with NaN metrics."""
    frames = []
    for run in runs:
        c = run.config
        labels = {"scenario": c.scenario, "contrast": c.contrast, "scale": c.scale, "pairing": c.pairing,
                  "method": c.method, "profile": c.profile, "status": run.status, "error": run.error or "",
                  "feature_net": run.info.get("method", {}).get("feature_net", "")}
        metrics = run.metrics if run.status == "done" and not run.metrics.empty else pd.DataFrame({"subject": [None]})
        frames.append(metrics.assign(**labels))
    columns = GROUP + ["status", "error", "feature_net", "subject", "psnr", "ssim", "mse"]
    if not frames:
        return pd.DataFrame(columns=columns)
    tidy = pd.concat(frames, ignore_index=True)
    return tidy.reindex(columns=columns + [c for c in tidy.columns if c not in columns])


def summary_table(tidy: pd.DataFrame) -> pd.DataFrame:
    """`summary.csv`: one row per (scenario, contrast, scale, pairing, method, profile) with
    mean/std PSNR and SSIM over test subjects. Runs of several seeds pool their test
    subjects (n_subjects counts subject x seed); status is 'failed' if any of them failed."""
    rows = []
    for key, group in tidy.groupby(GROUP, sort=True, dropna=False):
        done = group[group["status"] == "done"].dropna(subset=["psnr"])
        rows.append({
            **dict(zip(GROUP, key)),
            "status": "done" if (group["status"] == "done").all() else "failed",
            "n_subjects": len(done),
            "psnr_mean": done["psnr"].mean(), "psnr_std": _std(done["psnr"]),
            "ssim_mean": done["ssim"].mean(), "ssim_std": _std(done["ssim"]),
        })
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _std(values: pd.Series) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else (0.0 if len(values) == 1 else np.nan)


def wilcoxon_vs_best(tidy: pd.DataFrame, metric: str) -> dict[str, float]:
    """Two-sided paired Wilcoxon p-value of each method against the best mean, by subject.

    NaN for the best itself, for failed methods, and when the differences are all zero.
    With n test subjects the smallest attainable p is 2 / 2^n (0.125 for n = 4).
    """
    done = tidy[tidy["status"] == "done"].dropna(subset=[metric])
    if done.empty:
        return {}
    wide = done.pivot_table(index="subject", columns="method", values=metric)
    best = wide.mean().idxmax()
    out = {}
    for method in wide.columns:
        pair = wide[[method, best]].dropna()
        diff = pair[method] - pair[best]
        out[method] = np.nan if method == best or len(pair) < 2 or np.allclose(diff, 0) else float(wilcoxon(pair[method], pair[best]).pvalue)
    return out


def comparison_table(tidy: pd.DataFrame, *, bold: str = "markdown") -> pd.DataFrame:
    """Methods as rows; for each contrast PSNR, SSIM (mean ± std) and the Wilcoxon p of PSNR
    against the best method. `bold` = 'markdown', 'latex' or 'none' marks the best mean."""
    methods = list(dict.fromkeys(tidy["method"]))
    columns: dict[tuple[str, str], list[str]] = {}
    for contrast, by_contrast in tidy.groupby("contrast", sort=True):
        for metric, label, digits in (("psnr", "PSNR (dB)", 2), ("ssim", "SSIM", 4)):
            stats = {}
            for method, group in by_contrast.groupby("method"):
                done = group[group["status"] == "done"].dropna(subset=[metric])
                stats[method] = (done[metric].mean(), _std(done[metric])) if len(done) else None
            best = max((m for m in stats if stats[m]), key=lambda m: stats[m][0], default=None)
            cells = []
            for method in methods:
                if stats.get(method) is None:
                    cells.append("failed" if method in stats else "")
                    continue
                text = format_mean_std(*stats[method], digits)
                cells.append(_bold(text, bold) if method == best else text)
            columns[(contrast, label)] = cells
        p_values = wilcoxon_vs_best(by_contrast, "psnr")
        columns[(contrast, "p (PSNR vs best)")] = [_p(p_values.get(m, np.nan)) for m in methods]
    table = pd.DataFrame(columns, index=pd.Index(methods, name="method"))
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=["contrast", ""])
    return table


def _bold(text: str, style: str) -> str:
    return {"markdown": f"**{text}**", "latex": f"\\textbf{{{text}}}"}.get(style, text)


def _p(value: float) -> str:
    return "" if value is None or np.isnan(value) else f"{value:.3f}"


def write_tables(runs: Sequence[RunResult], out_dir: str | os.PathLike) -> list[Path]:
    """Write one table per (scenario, scale, pairing, profile) as CSV, Markdown and LaTeX,
    and `summary.csv`; returns the written paths."""
    out_dir = Path(out_dir)
    tidy = tidy_metrics(runs)
    written = []
    with atomic_path(out_dir / "summary.csv") as tmp:
        summary_table(tidy).to_csv(tmp, index=False, float_format="%.6g")
    written.append(out_dir / "summary.csv")
    with atomic_path(out_dir / "per_subject.csv") as tmp:
        tidy.drop(columns=["error", "feature_net"]).to_csv(tmp, index=False, float_format="%.6g")
    written.append(out_dir / "per_subject.csv")
    for key, group in tidy.groupby(TABLE_KEYS, sort=True):
        stem = "{}_x{}_{}_{}".format(*key)
        title = f"{key[0]} (x{key[1]}, {key[2]}, profile {key[3]}): mean ± std over test subjects"
        plain = comparison_table(group, bold="none")
        with atomic_path(out_dir / f"{stem}.csv") as tmp:
            plain.to_csv(tmp)
        md = comparison_table(group, bold="markdown")
        md.columns = [f"{c} {m}" for c, m in md.columns]
        write_text(out_dir / f"{stem}.md", f"### {title}\n\n{md.to_markdown()}\n\n{_notes(group)}")
        tex = comparison_table(group, bold="latex")
        latex = tex.to_latex(multicolumn=True, escape=False, caption=title.replace("±", "$\\pm$"), label=f"tab:{stem}")
        write_text(out_dir / f"{stem}.tex", latex.replace("±", "$\\pm$"))
        written += [out_dir / f"{stem}.{ext}" for ext in ("csv", "md", "tex")]
    return written


def _notes(group: pd.DataFrame) -> str:
    """Below a table: the perceptual feature network each method used, and every failure."""
    runs = group.drop_duplicates(["method", "contrast"])
    n = group[group["status"] == "done"].groupby(["method", "contrast"])["subject"].nunique()
    notes = []
    if len(n) and n.max() > 0:
        notes.append(f"- p: two-sided Wilcoxon signed-rank test of PSNR against the best method, paired by test subject; "
                     f"with n = {n.max()} subjects the smallest attainable p is {2 / 2 ** n.max():.3g}")
    notes += [f"- {r.method} ({r.contrast}) perceptual features: {r.feature_net}" for r in runs.itertuples() if r.feature_net]
    notes += [f"- {r.method} ({r.contrast}) failed: {r.error}" for r in runs.itertuples() if r.status != "done"]
    return ("Notes:\n\n" + "\n".join(notes) + "\n") if notes else ""


def difference_figure(
    hr: np.ndarray,
    lr: np.ndarray,
    predictions: dict[str, np.ndarray],
    scores: dict[str, dict[str, float]],
    *,
    axis: int = 2,
    index: int | None = None,
    roi: tuple[slice, slice] | None = None,
    title: str = "",
) -> matplotlib.figure.Figure:
    """LR | each method | HR, with PSNR/SSIM on each panel; absolute-error maps on one shared
    colour scale; signed difference maps (blue = too dark, red = too bright, as in the
    7T->9.4T paper); and a zoomed region of interest. LR is shown on the HR grid (nearest)."""
    index = hr.shape[axis] // 2 if index is None else index

    def take(volume: np.ndarray) -> np.ndarray:
        ratio = volume.shape[axis] / hr.shape[axis]
        plane = np.take(volume, min(int(index * ratio), volume.shape[axis] - 1), axis=axis)
        reps = [round(h / p) for h, p in zip(np.delete(hr.shape, axis), plane.shape)]
        return np.kron(plane, np.ones(reps)) if any(r > 1 for r in reps) else plane

    hr2 = take(hr)
    panels = {"LR": take(lr), **{name: take(p) for name, p in predictions.items()}, "HR": hr2}
    if roi is None:
        h, w = hr2.shape
        roi = (slice(h * 3 // 8, h * 5 // 8), slice(w * 3 // 8, w * 5 // 8))
    errors = {name: img - hr2 for name, img in panels.items() if name != "HR"}
    err_max = max(float(np.abs(e).max()) for e in errors.values()) or 1.0
    signed_max = max(float(np.percentile(np.abs(e), 99.5)) for e in errors.values()) or 1.0
    n = len(panels)
    fig, axes = plt.subplots(4, n, figsize=(2.2 * n, 9.2), squeeze=False)
    for col, (name, img) in enumerate(panels.items()):
        s = scores.get(name)
        label = f"{name}\n{s['psnr']:.2f} dB / {s['ssim']:.4f}" if s else name
        axes[0, col].imshow(img.T, cmap="gray", vmin=0, vmax=1, origin="lower")
        axes[0, col].set_title(label, fontsize=8)
        axes[0, col].add_patch(matplotlib.patches.Rectangle((roi[0].start, roi[1].start), roi[0].stop - roi[0].start,
                                                            roi[1].stop - roi[1].start, fill=False, edgecolor="yellow", lw=0.8))
        axes[3, col].imshow(img[roi].T, cmap="gray", vmin=0, vmax=1, origin="lower")
        if name in errors:
            abs_im = axes[1, col].imshow(np.abs(errors[name]).T, cmap="inferno", vmin=0, vmax=err_max, origin="lower")
            signed_im = axes[2, col].imshow(errors[name].T, cmap="bwr", vmin=-signed_max, vmax=signed_max, origin="lower")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for row, text in enumerate(("image", "|error|", "error (pred - HR)", "zoom")):
        axes[row, 0].set_ylabel(text)
    for row, (image, label) in ((1, (abs_im, "absolute error")), (2, (signed_im, "signed error"))):
        axes[row, -1].axis("off")  # HR has no error: its cell holds the colour bar, keeping the grid aligned
        fig.colorbar(image, cax=axes[row, -1].inset_axes([0.05, 0.05, 0.12, 0.9]), label=label)
    if title:
        fig.suptitle(title)
    return fig


def save_figure(fig: matplotlib.figure.Figure, path: str | os.PathLike, *, dpi: int = 120) -> Path:
    """Save a figure as PNG atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    return Path(path)


def plot_training_log(log: pd.DataFrame, *, title: str = "") -> matplotlib.figure.Figure:
    """Loss curves (log scale, every column but step/lr/val_*) and validation PSNR/SSIM."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    if log.empty:
        for ax in axes:
            ax.text(0.5, 0.5, "no training log (classical method)", ha="center", va="center")
            ax.axis("off")
        return fig
    for column in [c for c in log.columns if c not in ("step", "lr") and not c.startswith("val_")]:
        series = log[["step", column]].dropna()
        if (series[column] > 0).all():
            axes[0].semilogy(series["step"], series[column], label=column)
        else:
            axes[0].plot(series["step"], series[column], label=column)
    axes[0].set_xlabel("step")
    axes[0].set_title("training losses")
    axes[0].legend(fontsize=8)
    val = log.dropna(subset=["val_psnr"]) if "val_psnr" in log else pd.DataFrame()
    if not val.empty:
        axes[1].plot(val["step"], val["val_psnr"], "o-", color="C0")
        axes[1].set_ylabel("validation PSNR (dB)", color="C0")
        twin = axes[1].twinx()
        twin.plot(val["step"], val["val_ssim"], "s--", color="C1")
        twin.set_ylabel("validation SSIM", color="C1")
    axes[1].set_xlabel("step")
    axes[1].set_title("validation")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_summary(summary: pd.DataFrame, metric: str = "psnr") -> matplotlib.figure.Figure:
    """Bar chart of mean ± std `metric` per method, one panel per (scenario, contrast)."""
    done = summary[summary["status"] == "done"]
    groups = list(done.groupby(["scenario", "contrast", "scale"], sort=True))
    fig, axes = plt.subplots(1, max(len(groups), 1), figsize=(4.5 * max(len(groups), 1), 3.4), squeeze=False)
    for ax, ((scenario, contrast, scale), group) in zip(axes[0], groups):
        ax.bar(group["method"], group[f"{metric}_mean"], yerr=group[f"{metric}_std"], capsize=3, color="C0")
        low = (group[f"{metric}_mean"] - group[f"{metric}_std"].fillna(0)).min()
        ax.set_ylim(low - 0.05 * abs(low), None)
        ax.set_title(f"{scenario} {contrast} x{scale}")
        ax.set_ylabel("PSNR (dB)" if metric == "psnr" else metric.upper())
        ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    return fig


def scenario_figures(runs: Sequence[RunResult], out_dir: str | os.PathLike, *, subject_index: int = 0) -> list[Path]:
    """One difference-map figure per (scenario, contrast, scale, pairing, profile) from the finished runs."""
    from sr_lib.runs import example_case

    done = [r for r in runs if r.status == "done"]
    keys = sorted({(r.config.scenario, r.config.contrast, r.config.scale, r.config.pairing, r.config.profile) for r in done})
    written = []
    for key in keys:
        group = [r for r in done if (r.config.scenario, r.config.contrast, r.config.scale, r.config.pairing, r.config.profile) == key]
        examples = {r.config.method: example_case(r, subject_index) for r in group}
        first = next(iter(examples.values()))
        fig = difference_figure(
            first["hr"], first["lr"], {m: e["prediction"] for m, e in examples.items()},
            {m: e["scores"] for m, e in examples.items()},
            title=f"{key[0]} {key[1]} x{key[2]} ({key[3]}, {key[4]}), test subject {first['subject']}",
        )
        written.append(save_figure(fig, Path(out_dir) / "{}_{}_x{}_{}_{}.png".format(*key)))
        plt.close(fig)
    return written
