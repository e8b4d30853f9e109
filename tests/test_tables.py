"""Tables: statistics over seeds and subjects by hand, the bootstrap's known answers, the
papers' numbers beside ours, and the written files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sr_lib.tables import (
    SUMMARY_COLUMNS,
    check_tidy,
    comparison_table,
    paired_bootstrap,
    summary_table,
    training_table,
    write_study_tables,
    write_summary,
)

LABELS = dict(study="lyu2018", scenario="SR-B", contrast="T1", scale=2, pairing="paired", profile="test")


def rows(method, cells, *, region="brain", status="done", error="", **labels):
    """Tidy rows from {(subject, seed): psnr}; ssim = psnr / 40, mse = 10^(-psnr/10)."""
    out = []
    for (subject, seed), value in cells.items():
        out.append({**LABELS, **labels, "method": method, "seed": seed, "subject": subject, "region": region,
                    "status": status, "error": error, "psnr": value, "ssim": value / 40, "mse": 10 ** (-value / 10)})
    return out


def failed_row(method, seed, error, status="failed", **labels):
    return {**LABELS, **labels, "method": method, "seed": seed, "subject": np.nan, "region": np.nan,
            "status": status, "error": error, "psnr": np.nan, "ssim": np.nan, "mse": np.nan}


def synthetic(n_subjects=6, seeds=(0, 1, 2), offsets=None, noise=0.3, seed=0, contrasts=("T1", "T2")):
    """Methods with known true offsets from 'unet', subject effects, seed effects and noise; both regions."""
    rng = np.random.default_rng(seed)
    offsets = offsets or {"bicubic": -3.0, "srcnn": -1.0, "unet": 0.0}
    out = []
    for contrast in contrasts:
        subject_effect = rng.normal(0, 1.5, n_subjects)
        for method, offset in offsets.items():
            seed_effect = {s: rng.normal(0, 0.2) for s in seeds}
            cells = {(f"IXI{i:03d}", s): 32 + offset + subject_effect[i] + seed_effect[s] + rng.normal(0, noise)
                     for i in range(n_subjects) for s in seeds}
            out += rows(method, cells, contrast=contrast)
            out += rows(method, {k: v - 4 for k, v in cells.items()}, contrast=contrast, region="volume")
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------- summary


def test_summary_by_hand():
    tidy = pd.DataFrame(rows("unet", {("a", 0): 30.0, ("a", 1): 32.0, ("b", 0): 34.0, ("b", 1): 36.0}))
    s = summary_table(tidy)
    assert list(s.columns[: len(SUMMARY_COLUMNS)]) == SUMMARY_COLUMNS
    row = s.iloc[0]
    assert (row["status"], row["n_subjects"], row["n_seeds"], row["region"]) == ("done", 2, 2, "brain")
    assert row["psnr_mean"] == pytest.approx(33.0)  # seeds 32 and 34
    assert row["psnr_seed_std"] == pytest.approx(np.std([32, 34], ddof=1))
    assert row["psnr_std"] == pytest.approx(np.std([31, 35], ddof=1))  # subjects' means over seeds
    assert row["ssim_mean"] == pytest.approx(33.0 / 40)


def test_summary_mean_over_seeds_of_subject_means_with_a_missing_cell():
    # seed 1 lost subject b: its mean is 32 alone, so the headline is (32 + 32) / 2, not the pooled 31.33
    tidy = pd.DataFrame(rows("unet", {("a", 0): 30.0, ("b", 0): 34.0, ("a", 1): 32.0}))
    row = summary_table(tidy).iloc[0]
    assert row["psnr_mean"] == pytest.approx(32.0)
    assert row["n_subjects"] == 2 and row["n_seeds"] == 2


def test_summary_one_seed_and_one_subject_have_nan_spreads():
    s = summary_table(pd.DataFrame(rows("unet", {("a", 0): 30.0, ("b", 0): 31.0})))
    assert np.isnan(s.loc[0, "psnr_seed_std"]) and s.loc[0, "psnr_std"] == pytest.approx(np.std([30, 31], ddof=1))
    s = summary_table(pd.DataFrame(rows("unet", {("a", 0): 30.0, ("a", 1): 31.0})))
    assert np.isnan(s.loc[0, "psnr_std"]) and s.loc[0, "n_subjects"] == 1


def test_summary_status_failed_na_and_regions_spread():
    tidy = pd.DataFrame(
        rows("unet", {("a", 0): 30.0, ("b", 0): 31.0}) + rows("unet", {("a", 0): 26.0, ("b", 0): 27.0}, region="volume")
        + [failed_row("unet", 1, "CUDA out of memory"), failed_row("zssr", 0, "", status="n/a"),
           failed_row("srgan", 0, "NaN loss at step 12")]
    )
    s = summary_table(tidy).set_index(["method", "region"])
    assert s.loc[("unet", "brain"), "status"] == "failed"  # seed 1 failed, seed 0 still counts
    assert s.loc[("unet", "brain"), "psnr_mean"] == pytest.approx(30.5)
    assert s.loc[("unet", "brain"), "n_failed"] == 1 and s.loc[("unet", "volume"), "n_failed"] == 1
    assert s.loc[("zssr", "brain"), "status"] == "n/a" and s.loc[("zssr", "volume"), "status"] == "n/a"
    assert s.loc[("srgan", "volume"), "status"] == "failed" and np.isnan(s.loc[("srgan", "volume"), "psnr_mean"])
    assert s.loc[("srgan", "brain"), "n_subjects"] == 0


def test_summary_carries_per_slice_means():
    tidy = pd.DataFrame(rows("unet", {("a", 0): 30.0, ("b", 0): 32.0})).assign(psnr_slices=[29.0, 31.0],
                                                                                   ssim_slices=[0.8, 0.9])
    s = summary_table(tidy)
    assert s.loc[0, "psnr_slices_mean"] == pytest.approx(30.0) and s.loc[0, "ssim_slices_mean"] == pytest.approx(0.85)


def test_check_tidy_errors():
    good = pd.DataFrame(rows("unet", {("a", 0): 30.0}))
    with pytest.raises(ValueError, match="lacks columns.*'region'"):
        check_tidy(good.drop(columns=["region"]))
    with pytest.raises(ValueError, match="unknown status"):
        check_tidy(good.assign(status="ok"))
    with pytest.raises(ValueError, match="unknown region"):
        check_tidy(good.assign(region="skull"))
    with pytest.raises(ValueError, match="no subject"):
        check_tidy(good.assign(subject=np.nan))
    with pytest.raises(ValueError, match="DataFrame"):
        summary_table([1, 2])


# ----------------------------------------------------------------------------- paired bootstrap


def test_bootstrap_constant_difference_is_exact():
    base = {(f"s{i}", s): 30.0 + i + 0.3 * s for i in range(5) for s in range(3)}
    tidy = pd.DataFrame(rows("unet", base) + rows("better", {k: v + 0.5 for k, v in base.items()}))
    out = paired_bootstrap(tidy, "psnr", n_boot=500)
    assert len(out) == 1
    row = out.iloc[0]
    assert (row["method"], row["best"], row["n_pairs"], row["n_subjects"], row["n_seeds"]) == ("unet", "better", 15, 5, 3)
    assert row["diff_mean"] == pytest.approx(-0.5)
    assert row["ci_low"] == pytest.approx(-0.5) and row["ci_high"] == pytest.approx(-0.5)
    # the other way round: a method that is the best + 0.5 everywhere is the best, the other is 0.5 below
    tidy2 = pd.DataFrame(rows("best", base) + rows("plus", {k: v + 0.5 for k, v in base.items()}))
    assert paired_bootstrap(tidy2, "psnr").iloc[0][["method", "best"]].tolist() == ["best", "plus"]


def test_bootstrap_mse_lower_is_better():
    base = {(f"s{i}", 0): 30.0 + i for i in range(4)}
    tidy = pd.DataFrame(rows("worse", base) + rows("better", {k: v + 1 for k, v in base.items()}))
    out = paired_bootstrap(tidy, "mse")
    assert out.iloc[0]["best"] == "better" and out.iloc[0]["diff_mean"] > 0


def test_bootstrap_is_deterministic():
    tidy = synthetic()
    a = paired_bootstrap(tidy, "psnr", n_boot=300, seed=3)
    b = paired_bootstrap(tidy, "psnr", n_boot=300, seed=3)
    pd.testing.assert_frame_equal(a, b)
    c = paired_bootstrap(tidy, "psnr", n_boot=300, seed=4)
    assert not np.allclose(a["ci_low"], c["ci_low"])
    # a group's interval does not depend on which other groups are in the frame
    only_t1 = paired_bootstrap(tidy[tidy["contrast"] == "T1"], "psnr", n_boot=300, seed=3)
    pd.testing.assert_frame_equal(only_t1, a[a["contrast"] == "T1"].reset_index(drop=True))


def test_bootstrap_interval_covers_the_true_difference():
    offsets = {"bicubic": -3.0, "srcnn": -1.0, "unet": 0.0}
    hits = total = 0
    for s in range(10):
        out = paired_bootstrap(synthetic(n_subjects=8, offsets=offsets, seed=s, contrasts=("T1",)), "psnr",
                               n_boot=400)
        for r in out.itertuples():
            assert r.best == "unet"
            hits += r.ci_low <= offsets[r.method] <= r.ci_high
            total += 1
            assert r.ci_low < r.diff_mean < r.ci_high
    assert hits >= 0.8 * total  # nominal 95%; with 20 intervals at least 16 must cover


def test_bootstrap_one_seed_is_a_subject_bootstrap_and_pairs_only_shared_cells():
    rng = np.random.default_rng(1)
    base = {(f"s{i}", 0): 30 + rng.normal() for i in range(8)}
    other = {k: v - 1 + 0.3 * rng.normal() for k, v in base.items()}
    del other[("s0", 0)]
    out = paired_bootstrap(pd.DataFrame(rows("a", base) + rows("b", other)), "psnr", n_boot=1000, ci=0.9)
    row = out.iloc[0]
    assert row["n_pairs"] == 7 and row["n_seeds"] == 1
    diffs = [other[k] - base[k] for k in other]
    assert row["diff_mean"] == pytest.approx(np.mean(diffs))
    assert row["ci_low"] < row["diff_mean"] < row["ci_high"]


def test_bootstrap_errors():
    tidy = synthetic(n_subjects=3, seeds=(0,))
    with pytest.raises(ValueError, match="metric"):
        paired_bootstrap(tidy, "lpips")
    with pytest.raises(ValueError, match="region"):
        paired_bootstrap(tidy, "psnr", region="skull")
    with pytest.raises(ValueError, match="n_boot"):
        paired_bootstrap(tidy, "psnr", n_boot=0)
    with pytest.raises(ValueError, match="ci"):
        paired_bootstrap(tidy, "psnr", ci=95)


# ----------------------------------------------------------------------------- comparison table


PAPERS = pd.DataFrame([
    {"study": "lyu2018", "scenario": "SR-B", "contrast": "T1", "method": "unet", "metric": "psnr", "value": 33.1,
     "source": "Lyu et al. 2018, Table 1", "note": "their split: 20 test subjects"},
    {"study": "lyu2018", "scenario": "SR-B", "contrast": "T1", "method": "unet", "metric": "ssim", "value": 0.912,
     "source": "Lyu et al. 2018, Table 1", "note": "their split: 20 test subjects"},
    {"study": "lyu2018", "scenario": "SR-B", "contrast": "T1", "method": "gan_circle", "metric": "psnr",
     "value": 34.2, "source": "Lyu et al. 2018, Table 1", "note": "their split: 20 test subjects"},
    {"study": "other", "scenario": "SR-B", "contrast": "T1", "method": "unet", "metric": "psnr", "value": 1.0,
     "source": "elsewhere", "note": ""},
])


def table_frame():
    tidy = synthetic()
    extra = [failed_row("srgan", 0, "NaN loss at step 12"), failed_row("zssr", 0, "", status="n/a")]
    return pd.concat([tidy, pd.DataFrame(extra)], ignore_index=True)


def test_comparison_table_layout_and_cells():
    table = comparison_table(table_frame(), PAPERS, n_boot=200)
    assert list(table.index) == ["bicubic", "srcnn", "unet", "srgan", "zssr", "gan_circle"]
    assert list(table.columns.get_level_values(0).unique()) == ["SR-B · T1", "SR-B · T2"]
    t1 = table["SR-B · T1"]
    assert list(t1.columns) == ["PSNR (dB)", "paper PSNR", "SSIM", "paper SSIM", "Δ PSNR vs best [95% CI]"]
    assert t1.loc["unet", "PSNR (dB)"].startswith("**") and "(seed ± " in t1.loc["unet", "PSNR (dB)"]
    assert t1.loc["unet", "Δ PSNR vs best [95% CI]"] == "best"
    assert t1.loc["srgan", "PSNR (dB)"] == "failed" and t1.loc["zssr", "SSIM"] == "n/a"
    assert t1.loc["gan_circle", "PSNR (dB)"] == "not run" and t1.loc["gan_circle", "paper PSNR"] == "34.2"
    assert t1.loc["unet", "paper PSNR"] == "33.1" and t1.loc["unet", "paper SSIM"] == "0.912"
    assert t1.loc["bicubic", "paper PSNR"] == ""
    assert table.loc["unet", ("SR-B · T2", "paper PSNR")] == ""  # the paper has no T2 number; 'other' is another study
    diff = t1.loc["srcnn", "Δ PSNR vs best [95% CI]"]
    mean, low, high = (float(x) for x in diff.replace("[", "").replace("]", "").replace(",", "").split())
    assert low < mean < high and low < -1.0 < high  # true gap -1 dB


def test_comparison_table_numbers_match_summary():
    tidy = synthetic()
    table = comparison_table(tidy, bold="none", n_boot=50)
    s = summary_table(tidy).set_index(["contrast", "method", "region"]).loc[("T2", "srcnn", "brain")]
    assert table.loc["srcnn", ("SR-B · T2", "PSNR (dB)")] == (
        f"{s['psnr_mean']:.2f} ± {s['psnr_std']:.2f} (seed ± {s['psnr_seed_std']:.2f})")
    assert "paper PSNR" not in table.columns.get_level_values(1)
    one_seed = comparison_table(synthetic(seeds=(0,)), bold="none", n_boot=50)
    assert "seed" not in one_seed.loc["srcnn", ("SR-B · T1", "PSNR (dB)")]
    volume = comparison_table(tidy, bold="none", region="volume", n_boot=50)
    assert volume.loc["srcnn", ("SR-B · T2", "PSNR (dB)")] != table.loc["srcnn", ("SR-B · T2", "PSNR (dB)")]


def test_comparison_table_partial_failure_dagger_and_varying_labels():
    tidy = pd.concat([synthetic(seeds=(0,), contrasts=("T1",)),
                      synthetic(seeds=(0,), contrasts=("T1",)).assign(scale=4),
                      pd.DataFrame([failed_row("srcnn", 1, "killed")])], ignore_index=True)
    table = comparison_table(tidy, bold="none", n_boot=50)
    assert list(table.columns.get_level_values(0).unique()) == ["SR-B x2 · T1", "SR-B x4 · T1"]
    assert table.loc["srcnn", ("SR-B x2 · T1", "PSNR (dB)")].endswith(" †")
    assert not table.loc["srcnn", ("SR-B x4 · T1", "PSNR (dB)")].endswith(" †")


def test_comparison_table_latex_escapes():
    tidy = synthetic(seeds=(0,), offsets={"gan_cpce": 0.0, "bicubic": -2.0})
    table = comparison_table(tidy, bold="latex", n_boot=50)
    assert "gan\\_cpce" in table.index
    cell = table.loc["gan\\_cpce", ("SR-B $\\cdot$ T1", "PSNR (dB)")]
    assert cell.startswith("\\textbf{") and "$\\pm$" in cell
    assert ("SR-B $\\cdot$ T1", "$\\Delta$ PSNR vs best [95\\% CI]") in table.columns


def test_comparison_table_errors():
    tidy = synthetic(seeds=(0,))
    with pytest.raises(ValueError, match="one study"):
        comparison_table(pd.concat([tidy, tidy.assign(study="other")]))
    with pytest.raises(ValueError, match="bold"):
        comparison_table(tidy, bold="html")
    with pytest.raises(ValueError, match="papers frame lacks"):
        comparison_table(tidy, PAPERS.drop(columns=["source"]))
    with pytest.raises(ValueError, match="unknown metric"):
        comparison_table(tidy, PAPERS.assign(metric="PSNR"))


# ----------------------------------------------------------------------------- files


def test_write_study_tables_and_summary(tmp_path):
    tidy = pd.concat([table_frame(), synthetic(seeds=(0,)).assign(study="other")], ignore_index=True)
    paths = write_study_tables(tidy, PAPERS, tmp_path, study="lyu2018", n_boot=100)
    assert [p.name for p in paths] == ["lyu2018.md", "lyu2018.csv", "lyu2018.tex"]
    md = paths[0].read_text()
    assert md.index("## Brain") < md.index("## Whole volume") < md.index("## Notes")
    assert "NaN loss at step 12" in md and "6 test subjects × 3 seed(s)" in md
    assert "Lyu et al. 2018, Table 1 — their split: 20 test subjects" in md
    assert "| SR-B · T1: PSNR (dB)" in md and "**" in md and "two-level bootstrap" in md and "zssr does not support SR-B" in md
    csv = pd.read_csv(paths[1])
    assert set(csv["region"]) == {"brain", "volume"} and "SR-B · T1 | paper PSNR" in csv.columns
    tex = paths[2].read_text()
    assert tex.count("\\begin{table}") == 2 and "$\\pm$" in tex and "±" not in tex
    assert not list(tmp_path.glob(".*partial*"))
    with pytest.raises(ValueError, match="no rows for study"):
        write_study_tables(tidy, None, tmp_path, study="nope")

    summary_path, per_subject_path = write_summary(tidy, tmp_path)
    summary = pd.read_csv(summary_path)
    assert set(summary["study"]) == {"lyu2018", "other"} and set(summary["region"]) == {"brain", "volume"}
    per_subject = pd.read_csv(per_subject_path)
    assert "error" not in per_subject.columns and len(per_subject) >= len(tidy)


def test_comparison_table_per_slice_convention(tmp_path):
    tidy = synthetic(seeds=(0,))
    tidy = tidy.assign(psnr_slices=tidy["psnr"] + 1.5, ssim_slices=tidy["ssim"])
    volume = comparison_table(tidy, bold="none", n_boot=50)
    slices = comparison_table(tidy, bold="none", n_boot=50, convention="slices")
    v, s = (float(t.loc["unet", ("SR-B · T1", "PSNR (dB)")].split()[0]) for t in (volume, slices))
    assert s == pytest.approx(v + 1.5, abs=0.011)
    with pytest.raises(ValueError, match="convention"):
        comparison_table(tidy, convention="2d")
    with pytest.raises(ValueError, match="psnr_slices"):
        comparison_table(synthetic(seeds=(0,)), convention="slices")
    md = write_study_tables(tidy, None, tmp_path, study="lyu2018", convention="slices", n_boot=50)[0].read_text()
    assert "per-slice convention" in md and "at least 1%" in md


# ----------------------------------------------------------------------------- training


def test_training_table_by_hand(tmp_path):
    """Per (setting, method): mean steps and best step over seeds, early stops counted, the
    tail gain averaged; methods that learn nothing (NaN steps) have no row."""
    facts = {0: dict(steps_done=600, best_step=600, stopped_early=0, val_psnr_best=29.0, val_gain_tail=0.30),
             1: dict(steps_done=400, best_step=100, stopped_early=1, val_psnr_best=29.4, val_gain_tail=-0.10)}
    frame = pd.DataFrame(
        [{**r, **facts[r["seed"]], "steps_cap": 600} for r in rows("srcnn", {("A", 0): 30.0, ("B", 0): 31.0,
                                                                             ("A", 1): 30.5, ("B", 1): 31.5})]
        + [{**r, "steps_done": np.nan} for r in rows("bicubic", {("A", 0): 28.0, ("B", 0): 29.0})])
    table = training_table(frame)
    assert list(table["method"]) == ["srcnn"]
    row = table.iloc[0]
    assert row["seeds"] == 2 and row["steps (cap)"] == "500 (600)" and row["stopped early"] == "1 of 2"
    assert row["best step"] == "350" and row["val PSNR"] == "29.20" and row["Δval last 20%"] == "+0.10"
    assert training_table(pd.DataFrame(rows("bicubic", {("A", 0): 28.0}))).empty  # no training columns at all
    write_study_tables(frame, None, tmp_path, study="lyu2018", n_boot=50)
    text = (tmp_path / "lyu2018.md").read_text()
    assert "## Training" in text and "500 (600)" in text and "Δval last 20%" in text
