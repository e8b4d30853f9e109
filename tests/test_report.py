"""Tables from run results: mean ± std computed by hand, the best mean in bold (Markdown and
LaTeX), the exact summary.csv columns, failed runs marked, Wilcoxon p-values equal to
scipy's; and difference-map figures from real tiny runs."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon

from sr_lib.report import comparison_table, scenario_figures, summary_table, tidy_metrics, wilcoxon_vs_best, write_tables
from sr_lib.runs import RunConfig, RunResult, run_experiment

SUBJECTS = [f"sub-{i:03d}" for i in range(6)]
# hand-made per-subject scores; in T2 srcnn has the best PSNR but srresnet the best SSIM
SCORES = {
    ("T2", "bicubic"): ([25.10, 26.30, 24.80, 27.20, 25.90, 26.05], [0.801, 0.823, 0.795, 0.840, 0.812, 0.818]),
    ("T2", "srcnn"): ([26.00, 27.55, 25.10, 28.90, 27.00, 26.40], [0.830, 0.845, 0.805, 0.861, 0.833, 0.829]),
    ("T2", "srresnet"): ([25.90, 27.00, 25.60, 28.10, 26.20, 26.33], [0.842, 0.850, 0.823, 0.870, 0.846, 0.839]),
    ("T1", "bicubic"): ([30.00, 31.20, 29.50, 30.70, 31.90, 30.10], [0.900, 0.910, 0.890, 0.905, 0.915, 0.902]),
    ("T1", "srcnn"): ([29.00, 30.10, 28.80, 30.00, 30.50, 29.20], [0.880, 0.895, 0.870, 0.890, 0.900, 0.885]),
}


def result(method: str, contrast: str = "T2", status: str = "done", error: str | None = None, **changes) -> RunResult:
    config = RunConfig(method=method, scenario="SR-B", contrast=contrast, profile="test", **changes)
    if status == "done":
        psnr, ssim = SCORES[(contrast, method)]
        metrics = pd.DataFrame({"subject": SUBJECTS, "psnr": psnr, "ssim": ssim, "mse": 10 ** (-np.asarray(psnr) / 10)})
    else:
        metrics = pd.DataFrame()
    return RunResult(config, Path("/nowhere") / config.folder, status, metrics, pd.DataFrame(),
                     {"status": status, **({"error": error} if error else {})})


@pytest.fixture
def results() -> list[RunResult]:
    return [result("bicubic"), result("srcnn"), result("srresnet"),
            result("nearest", status="failed", error="RuntimeError: out of memory"),
            result("bicubic", "T1"), result("srcnn", "T1")]


def mean_std(values, digits: int) -> str:
    values = np.asarray(values, dtype=float)
    mean = values.sum() / len(values)
    std = np.sqrt(((values - mean) ** 2).sum() / (len(values) - 1))
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown_rows(text: str) -> dict[str, dict[str, str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header[1:], cells[1:]))
    return rows


def test_markdown_table_has_hand_computed_mean_std_and_bold_best(results, tmp_path):
    write_tables(results, tmp_path)
    rows = markdown_rows((tmp_path / "SR-B_x2_paired_test.md").read_text())
    assert list(rows) == ["bicubic", "srcnn", "srresnet", "nearest"]
    best = {("T2", "PSNR (dB)"): "srcnn", ("T2", "SSIM"): "srresnet", ("T1", "PSNR (dB)"): "bicubic", ("T1", "SSIM"): "bicubic"}
    for (contrast, label), winner in best.items():
        column = f"{contrast} {label}"
        index, digits = (0, 2) if label.startswith("PSNR") else (1, 4)
        for method, row in rows.items():
            if (contrast, method) not in SCORES:
                continue
            text = mean_std(SCORES[(contrast, method)][index], digits)
            assert row[column] == (f"**{text}**" if method == winner else text), (column, method)
    assert rows["nearest"]["T2 PSNR (dB)"] == "failed" and rows["nearest"]["T2 SSIM"] == "failed"
    # nearest was never run on T1: an empty cell, not "failed"
    assert rows["nearest"]["T1 PSNR (dB)"] == "" and rows["srresnet"]["T1 SSIM"] == ""
    text = (tmp_path / "SR-B_x2_paired_test.md").read_text()
    assert text.count("**") == 2 * 4
    assert "- nearest (T2) failed: RuntimeError: out of memory" in text


def test_latex_and_csv_tables(results, tmp_path):
    write_tables(results, tmp_path)
    tex = (tmp_path / "SR-B_x2_paired_test.tex").read_text()
    srcnn_psnr = mean_std(SCORES[("T2", "srcnn")][0], 2).replace("±", "$\\pm$")
    srresnet_ssim = mean_std(SCORES[("T2", "srresnet")][1], 4).replace("±", "$\\pm$")
    assert f"\\textbf{{{srcnn_psnr}}}" in tex and f"\\textbf{{{srresnet_ssim}}}" in tex
    assert tex.count("\\textbf{") == 4 and "**" not in tex and "±" not in tex
    assert "\\begin{tabular}" in tex and "\\label{tab:SR-B_x2_paired_test}" in tex
    csv = pd.read_csv(tmp_path / "SR-B_x2_paired_test.csv", header=[0, 1], index_col=0)
    assert csv.loc["srcnn", ("T2", "PSNR (dB)")] == mean_std(SCORES[("T2", "srcnn")][0], 2)
    assert not csv.astype(str).apply(lambda c: c.str.contains(r"\*\*|textbf")).any().any()


def test_summary_csv_columns_and_values(results, tmp_path):
    write_tables(results, tmp_path)
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert list(summary.columns) == ["scenario", "contrast", "scale", "pairing", "method", "profile", "status",
                                     "n_subjects", "psnr_mean", "psnr_std", "ssim_mean", "ssim_std"]
    assert len(summary) == len(results)
    indexed = summary.set_index(["contrast", "method"])
    for (contrast, method), (psnr, ssim) in SCORES.items():
        row = indexed.loc[(contrast, method)]
        assert (row["scenario"], row["scale"], row["pairing"], row["profile"]) == ("SR-B", 2, "paired", "test")
        assert row["status"] == "done" and row["n_subjects"] == len(SUBJECTS)
        assert row["psnr_mean"] == pytest.approx(np.mean(psnr), rel=1e-5)
        assert row["psnr_std"] == pytest.approx(np.std(psnr, ddof=1), rel=1e-5)
        assert row["ssim_mean"] == pytest.approx(np.mean(ssim), rel=1e-5)
        assert row["ssim_std"] == pytest.approx(np.std(ssim, ddof=1), rel=1e-5)
    failed = indexed.loc[("T2", "nearest")]
    assert failed["status"] == "failed" and failed["n_subjects"] == 0
    assert failed[["psnr_mean", "psnr_std", "ssim_mean", "ssim_std"]].isna().all()
    per_subject = pd.read_csv(tmp_path / "per_subject.csv")
    assert len(per_subject) == len(SUBJECTS) * len(SCORES) + 1


def test_wilcoxon_vs_best_equals_scipy(results):
    tidy = tidy_metrics(results)
    t2 = tidy[tidy["contrast"] == "T2"]
    for metric, index, best in (("psnr", 0, "srcnn"), ("ssim", 1, "srresnet")):
        p = wilcoxon_vs_best(t2, metric)
        assert set(p) == {"bicubic", "srcnn", "srresnet"}  # the failed method has no p-value
        assert np.isnan(p[best])
        for method in set(p) - {best}:
            expected = wilcoxon(SCORES[("T2", method)][index], SCORES[("T2", best)][index]).pvalue
            assert p[method] == pytest.approx(expected, rel=1e-12)
    # with 6 subjects all better, the two-sided exact p is 2 / 2^6
    assert wilcoxon_vs_best(t2, "psnr")["bicubic"] == pytest.approx(2 / 2**6)
    table = comparison_table(t2, bold="none")
    p_psnr = wilcoxon_vs_best(t2, "psnr")
    column = table[("T2", "p (PSNR vs best)")]
    assert column["srcnn"] == "" and column["nearest"] == ""
    assert column["bicubic"] == f"{p_psnr['bicubic']:.3f}" and column["srresnet"] == f"{p_psnr['srresnet']:.3f}"


def test_identical_methods_get_no_p_value():
    twin = result("srcnn")
    copy = RunResult(RunConfig(method="srresnet", scenario="SR-B", profile="test"), twin.folder, "done",
                     twin.metrics.copy(), pd.DataFrame(), {})
    p = wilcoxon_vs_best(tidy_metrics([twin, copy]), "psnr")
    assert np.isnan(p["srcnn"]) and np.isnan(p["srresnet"])


def test_summary_table_of_hand_made_tidy_frame():
    tidy = tidy_metrics([result("bicubic"), result("srcnn")])
    summary = summary_table(tidy)
    assert list(summary["method"]) == ["bicubic", "srcnn"]
    assert summary["n_subjects"].tolist() == [6, 6]


def test_tables_are_written_when_every_run_failed(tmp_path):
    failed = [result("srcnn", status="failed", error="ValueError: bad"), result("bicubic", status="failed", error="OSError: x")]
    write_tables(failed, tmp_path)
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert (summary["status"] == "failed").all()
    assert "failed" in (tmp_path / "SR-B_x2_paired_test.md").read_text()


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SR_LIB_CACHE", str(tmp_path_factory.mktemp("cache")))
        root = tmp_path_factory.mktemp("runs")
        yield [run_experiment(RunConfig(method=m, scenario="SR-B", profile="test"), root, progress=False)
               for m in ("bicubic", "nearest")]


def test_real_runs_tables_and_difference_figures(real_runs, tmp_path):
    assert all(r.status == "done" for r in real_runs)
    write_tables(real_runs, tmp_path)
    summary = pd.read_csv(tmp_path / "summary.csv").set_index("method")
    for run in real_runs:
        assert summary.loc[run.config.method, "psnr_mean"] == pytest.approx(run.metrics["psnr"].mean(), rel=1e-5)
        assert summary.loc[run.config.method, "n_subjects"] == len(run.metrics) == 2
    rows = markdown_rows((tmp_path / "SR-B_x2_paired_test.md").read_text())
    best = max(real_runs, key=lambda r: r.metrics["psnr"].mean()).config.method
    assert rows[best]["T2 PSNR (dB)"].startswith("**")
    figures = scenario_figures(real_runs, tmp_path / "figures")
    assert figures == [tmp_path / "figures" / "SR-B_T2_x2_paired_test.png"]
    image = matplotlib.image.imread(figures[0])
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
