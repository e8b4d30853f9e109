"""The papers' findings checked with paired bootstrap intervals: known differences give the
known verdicts, and the seam finding subtracts the whole-slice control from the stitched rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sr_lib.findings import FINDINGS, Finding, evaluate_findings, paired_difference, verdict, write_findings


def cells(offsets: dict[str, float], *, subjects: int = 4, seeds: int = 2, noise: float = 0.0) -> pd.DataFrame:
    """Brain metrics for methods at a fixed offset from a per-subject base value."""
    rng = np.random.default_rng(0)
    base = 25 + rng.normal(size=subjects)  # subjects differ much more than the methods
    rows = [{"study": "s", "region": "brain", "status": "done", "method": m, "subject": f"sub-{i}", "seed": k,
             "psnr": base[i] + off + noise * rng.normal(), "ssim": 0.9}
            for m, off in offsets.items() for i in range(subjects) for k in range(seeds)]
    return pd.DataFrame(rows)


def test_a_consistent_gap_holds_and_its_reverse_is_reversed():
    frame = cells({"a": 0.5, "b": 0.0}, noise=0.05)
    forward = paired_difference(frame, "a", "b", "psnr")
    assert forward["diff"] == pytest.approx(0.5, abs=0.05) and forward["n_pairs"] == 8
    assert forward["ci_low"] > 0 and verdict(forward) == "holds"
    assert verdict(paired_difference(frame, "b", "a", "psnr")) == "reversed"


def test_a_gap_smaller_than_the_noise_is_not_resolved_and_a_missing_method_not_run():
    frame = cells({"a": 0.01, "b": 0.0}, noise=1.0)
    assert verdict(paired_difference(frame, "a", "b", "psnr")) == "not resolved"
    assert verdict(paired_difference(frame, "a", "nobody", "psnr")) == "not run"


def test_pairs_are_by_subject_and_seed_so_subject_spread_does_not_hide_a_gap():
    # subject spread ~1 dB, gap 0.2 dB: unpaired it would not resolve, paired it does
    frame = cells({"a": 0.2, "b": 0.0}, subjects=6, noise=0.01)
    assert verdict(paired_difference(frame, "a", "b", "psnr")) == "holds"


def test_evaluate_findings_uses_each_study_and_the_seams_stitching_adds(tmp_path):
    tidy = cells({"gan-cpce": 1.0, "gan-circle": 0.0}, noise=0.05).assign(study="cpce-circle")
    # model 5's stitched ratio is 2 above its whole-slice control; model 7 is 0.5 higher on
    # those lines with or without stitching, which is no seam
    control = {"7t-m5": 1.0, "7t-m7": 1.5}
    seams = pd.DataFrame([{"method": m, "subject": f"sub-{i}", "seed": 0, "inference": mode,
                           "jump_ratio": control[m] + (2.0 if (m, mode) == ("7t-m5", "stitch") else 0.0)}
                          for m in ("7t-m5", "7t-m7") for i in range(4) for mode in ("stitch", "whole")])
    chosen = [f for f in FINDINGS if f.study == "cpce-circle" and f.metric == "psnr"] + \
             [f for f in FINDINGS if f.metric == "seam_excess"] + \
             [Finding("7t-models", "x", "y", "7t-m2", "dcsrn-l1", "ssim")]
    table = evaluate_findings(tidy, seams, findings=chosen, n_boot=500)
    assert list(table["verdict"]) == ["holds", "holds", "not run"]
    assert table.loc[1, "diff"] == pytest.approx(2.0)
    written = write_findings(table, tmp_path)
    assert "GAN-CPCE beats GAN-CIRCLE" in written[0].read_text() and len(pd.read_csv(written[1])) == 3


def test_every_finding_names_a_registered_method():
    from sr_lib.methods import METHODS

    assert all(f.better in METHODS and f.worse in METHODS for f in FINDINGS)
