"""The paper registry: citations by first author and year, never by file number."""

from __future__ import annotations

import re

import pytest

from sr_lib.papers import PAPERS, Paper, cite

KEYS = ["hlh-gan", "dcgan-srgan", "udean", "gan-circle", "7t-9.4t"]


def test_the_five_keys_are_there():
    assert sorted(PAPERS) == sorted(KEYS)
    assert all(PAPERS[k].key == k for k in KEYS)


@pytest.mark.parametrize("key", KEYS)
def test_cite_format(key):
    text = cite(key)
    paper = PAPERS[key]
    if paper.first_author:
        assert re.fullmatch(r"[A-Z][A-Za-z'\- ]+ et al\. (19|20)\d\d", text), text
    else:
        assert text.endswith("paper (authors not established)")
    assert not re.search(r"\b00\d\b|seed", text)  # never a file number
    assert paper.evidence  # every entry says where its author/year come from


def test_verified_citations():
    assert cite("udean") == "Liu et al. 2022"
    assert cite("dcgan-srgan") == "Hayrapetyan et al. 2017"
    assert cite("gan-circle") == "Lyu et al. 2018"
    assert cite("hlh-gan") == "HLH-GAN paper (authors not established)"


def test_unknown_key_lists_the_keys():
    with pytest.raises(KeyError, match=r"unknown paper 'srgan'; choose one of \['7t-9.4t', 'dcgan-srgan'"):
        cite("srgan")


def test_positional_api_kept():
    p = Paper("x", "Doe", 2020, "A title", "M")
    assert p.citation == "Doe et al. 2020"
    assert Paper("y", None, None, "T", "M", label="Y").citation == "Y paper (authors not established)"
