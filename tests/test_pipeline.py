"""`sr-lib report` end to end on the test profile: papermill runs every notebook, a method
that fails is recorded as failed in the tables and the index, and the rest still appears."""

from __future__ import annotations

import pandas as pd
import pytest

from sr_lib.pipeline import run_report


@pytest.mark.slow
def test_report_with_a_failing_method_still_writes_tables_figures_and_index(tmp_path, monkeypatch):
    monkeypatch.setenv("SR_LIB_CACHE", str(tmp_path / "cache"))  # the notebook kernels inherit it
    # srresnet is slice-wise only, so it cannot run kspace-2x2x2 (every axis changes): a real failure
    index = run_report(profile="test", methods=["tricubic", "srresnet"], scenarios=["kspace-2x2x2"], out=tmp_path / "reports")
    reports = tmp_path / "reports"
    summary = pd.read_csv(reports / "tables" / "summary.csv").set_index("method")
    assert summary.loc["tricubic", "status"] == "done" and summary.loc["tricubic", "n_subjects"] == 2
    assert summary.loc["srresnet", "status"] == "failed" and summary.loc["srresnet", "n_subjects"] == 0
    table = (reports / "tables" / "kspace-2x2x2_x2_paired_test.md").read_text()
    assert "srresnet (T2) failed: ValueError" in table and "2D slices only" in table
    assert (reports / "figures" / "kspace-2x2x2_T2_x2_paired_test.png").stat().st_size > 10_000
    text = index.read_text()
    assert "Every notebook ran." in text and "- srresnet on kspace-2x2x2 T2 x2: failed" in text
    assert "profile: `test`" in text and "from commit" in text
    assert len(list((reports / "runs" / "notebooks").rglob("*.ipynb"))) == 6
