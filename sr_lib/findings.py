"""The papers' findings, each checked against our runs with a paired bootstrap interval.

A finding is a claim of the form "method A beats method B on a metric" (or a seam ratio is
higher for A than for B). Its verdict comes from the paired differences A - B over the
(test subject, training seed) cells both methods have, resampled as the comparison tables do
(`sr_lib.tables._crossed_bootstrap`: subjects and seeds drawn independently):

- "holds": the 95% interval of A - B lies entirely on the claimed side of 0;
- "reversed": it lies entirely on the other side;
- "not resolved": it contains 0 (our data cannot tell the two apart);
- "not run": the two share no finished cell.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sr_lib.atomic import atomic_path, write_text
from sr_lib.tables import _crossed_bootstrap, _key_seed

VERDICTS = ("holds", "reversed", "not resolved", "not run")


@dataclasses.dataclass(frozen=True)
class Finding:
    """`better` is expected to beat `worse` on `metric` (higher is better for every metric
    used here: PSNR, SSIM, and the seam excess when the claim is that a loss *causes* seams).
    `metric` "seam_excess" reads the seam table instead of the metrics: per run and test
    subject, the border/interior error-step energy of stitched inference minus that of
    whole-slice inference. The whole-slice control has no patches, so what is left is the
    part of the ratio that stitching adds; comparing stitched ratios alone would credit
    stitching with any difference two models already show on the same lines without it."""

    study: str
    claim: str
    source: str
    better: str
    worse: str
    metric: str


FINDINGS: tuple[Finding, ...] = (
    Finding("cpce-circle", "GAN-CPCE beats GAN-CIRCLE", "Lyu et al. 2018, Table I", "gan-cpce", "gan-circle", "psnr"),
    Finding("cpce-circle", "GAN-CPCE beats GAN-CIRCLE", "Lyu et al. 2018, Table I", "gan-cpce", "gan-circle", "ssim"),
    Finding("7t-dcsrn-losses", "L1 beats L2 for DCSRN", "7T->9.4T paper, Table 2", "dcsrn-l1", "dcsrn-l2", "psnr"),
    Finding("7t-dcsrn-losses", "L1 beats perceptual for DCSRN", "7T->9.4T paper, Table 2", "dcsrn-l1",
            "dcsrn-perceptual", "psnr"),
    Finding("7t-seams", "the gradient loss causes seams (U-Net GAN model 5 vs model 7, stitched)",
            "7T->9.4T paper, Sec. 7.3, Fig. 9", "7t-m5", "7t-m7", "seam_excess"),
    Finding("7t-models", "GANs beat CNNs on SSIM (best DCGAN, model 2, vs DCSRN-L1)", "7T->9.4T paper, Sec. 8",
            "7t-m2", "dcsrn-l1", "ssim"),
    Finding("7t-models", "GANs beat CNNs on SSIM (best U-Net GAN, model 7, vs DCSRN-L1)", "7T->9.4T paper, Sec. 8",
            "7t-m7", "dcsrn-l1", "ssim"),
    Finding("7t-models", "PatchGAN underperforms (U-Net GAN model 7 vs pix2pix model 9, same generator)",
            "7T->9.4T paper, Sec. 7.4", "7t-m7", "7t-m9", "psnr"),
    Finding("7t-models", "PatchGAN underperforms (U-Net GAN model 7 vs pix2pix model 9, same generator)",
            "7T->9.4T paper, Sec. 7.4", "7t-m7", "7t-m9", "ssim"),
)


def paired_difference(cells: pd.DataFrame, better: str, worse: str, metric: str, *, n_boot: int = 2000,
                      seed: int = 0, ci: float = 0.95) -> dict[str, float]:
    """Mean of `better` - `worse` over the (subject, seed) cells both have, with its crossed
    bootstrap interval. `cells` has columns method, subject, seed and `metric`."""
    frame = cells[cells["method"].isin([better, worse]) & cells[metric].notna()]
    table = frame.pivot_table(index="subject", columns=["method", "seed"], values=metric, aggfunc="mean")
    if better not in table.columns.get_level_values(0) or worse not in table.columns.get_level_values(0):
        return {"diff": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n_pairs": 0}
    diff = (table[better] - table[worse]).dropna(how="all").dropna(axis=1, how="all")
    values = diff.to_numpy(dtype=np.float64)
    n_pairs = int(np.isfinite(values).sum())
    if n_pairs == 0:
        return {"diff": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n_pairs": 0}
    boot = _crossed_bootstrap(values, n_boot, _key_seed(seed, (better, worse, metric)))
    low, high = np.nanquantile(boot, [(1 - ci) / 2, (1 + ci) / 2])
    return {"diff": float(np.nanmean(values)), "ci_low": float(low), "ci_high": float(high), "n_pairs": n_pairs}


def verdict(diff: dict[str, float]) -> str:
    if diff["n_pairs"] == 0:
        return "not run"
    if diff["ci_low"] > 0:
        return "holds"
    if diff["ci_high"] < 0:
        return "reversed"
    return "not resolved"


def _cells(tidy: pd.DataFrame, seams: pd.DataFrame | None, finding: Finding) -> pd.DataFrame:
    if finding.metric == "seam_excess":
        columns = ["method", "subject", "seed", "seam_excess"]
        if seams is None or seams.empty:
            return pd.DataFrame(columns=columns)
        modes = seams.pivot_table(index=["method", "subject", "seed"], columns="inference", values="jump_ratio")
        if not {"stitch", "whole"} <= set(modes.columns):
            return pd.DataFrame(columns=columns)
        return (modes["stitch"] - modes["whole"]).rename("seam_excess").dropna().reset_index()[columns]
    rows = tidy[(tidy["study"] == finding.study) & (tidy["region"] == "brain") & (tidy["status"] == "done")]
    return rows[["method", "subject", "seed", finding.metric]]


def evaluate_findings(tidy: pd.DataFrame, seams: pd.DataFrame | None = None, *,
                      findings: Sequence[Finding] = FINDINGS, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per finding: the claim, its source, the comparison, the mean difference with
    its 95% interval, the number of paired cells, and the verdict. `tidy` is the report's tidy
    metrics (`sr_lib.report.tidy_metrics`, several studies concatenated); `seams` the seam
    table (`sr_lib.seams.seam_table`) for the seam finding."""
    rows = []
    for f in findings:
        diff = paired_difference(_cells(tidy, seams, f), f.better, f.worse, f.metric, n_boot=n_boot, seed=seed)
        rows.append({"study": f.study, "claim": f.claim, "source": f.source, "comparison": f"{f.better} - {f.worse}",
                     "metric": f.metric, **diff, "verdict": verdict(diff)})
    return pd.DataFrame(rows, columns=["study", "claim", "source", "comparison", "metric", "diff", "ci_low", "ci_high",
                                       "n_pairs", "verdict"])


def write_findings(table: pd.DataFrame, out_dir: str | os.PathLike) -> list[Path]:
    """`findings.md` (the table with how to read it) and `findings.csv` under `out_dir`."""
    out_dir = Path(out_dir)
    shown = table.assign(interval=[f"[{lo:+.3f}, {hi:+.3f}]" if np.isfinite(lo) else "" for lo, hi in
                                   zip(table["ci_low"], table["ci_high"])])
    shown = shown[["study", "claim", "source", "comparison", "metric", "diff", "interval", "n_pairs", "verdict"]]
    lines = ["# The papers' findings on our data", "",
             shown.to_markdown(index=False, floatfmt="+.3f"), "",
             "`diff` is the mean over (test subject, training seed) pairs of the first method minus the second "
             "(brain PSNR in dB, brain SSIM, or the border/interior error-step energy ratio of stitched minus "
             "whole-slice inference); the interval is a 95% bootstrap that resamples subjects and seeds. "
             "'holds': the interval is above 0; 'reversed': below 0; 'not resolved': it contains 0.", ""]
    written = [write_text(out_dir / "findings.md", "\n".join(lines))]
    with atomic_path(out_dir / "findings.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.5g")
    return written + [out_dir / "findings.csv"]
