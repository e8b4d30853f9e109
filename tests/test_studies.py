"""Studies name registered methods and supported scenarios, and carry the papers' numbers."""

from __future__ import annotations

import pytest

from sr_lib.methods import METHODS
from sr_lib.studies import STUDIES


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_every_run_of_a_study_resolves_and_applies(name):
    study = STUDIES[name]
    assert set(study.methods) <= set(METHODS)
    configs = study.configs(profile="test")
    applies = {c.method for c in configs if c.resolve().unsupported is None}
    assert applies == set(study.methods)  # each method runs somewhere in the study (n/a elsewhere is shown)
    learned = [m for m in study.methods if METHODS[m].learned]
    settings = len(study.scenarios) * len(study.contrasts) * len(study.pairings)
    assert len(configs) == settings * (len(study.methods) - len(learned) + len(learned) * study.seeds)


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_paper_numbers_name_methods_of_the_study(name):
    study = STUDIES[name]
    assert {r.method for r in study.paper_results} <= set(study.methods)
    assert {r.scenario for r in study.paper_results} <= set(study.scenarios)


def test_the_papers_findings_have_their_numbers():
    papers = STUDIES["cpce-circle"].paper_table().set_index(["method", "metric"])["value"]
    assert papers[("gan-cpce", "psnr")] > papers[("gan-circle", "psnr")]  # the finding the study checks
    dcsrn = STUDIES["7t-dcsrn-losses"].paper_table().query("metric == 'psnr'").set_index("method")["value"]
    assert dcsrn.idxmax() == "dcsrn-l1"
    assert STUDIES["7t-seams"].analyses == ("seams",)
