"""Train / validation / test split by subject, never by slice (DESIGN.md, "Concepts").

Slices of one brain are strongly correlated; splitting slices would let a method see its
test brains during training.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

from sr_lib.data.folders import Dataset
from sr_lib.profiles import Profile, get_profile


@dataclasses.dataclass(frozen=True)
class Split:
    """Disjoint subject ids (each tuple sorted)."""

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]


def split_subjects(subjects: Iterable[str], *, n_val: int, n_test: int, seed: int = 0) -> Split:
    """Shuffle the subjects with `seed` and deal `n_test` to test, `n_val` to val, the rest to train.

    The result depends only on the set of subjects and the seed, not on their order.
    At least one subject must remain for training.
    """
    subjects = sorted(subjects)
    if len(set(subjects)) != len(subjects):
        raise ValueError(f"subject ids are not unique: {sorted({s for s in subjects if subjects.count(s) > 1})}")
    if n_val < 0 or n_test < 0:
        raise ValueError(f"n_val and n_test must be >= 0, got n_val={n_val}, n_test={n_test}")
    if len(subjects) < n_val + n_test + 1:
        raise ValueError(
            f"{len(subjects)} subjects are too few for n_val={n_val}, n_test={n_test} "
            f"and at least one training subject"
        )
    order = [subjects[i] for i in np.random.default_rng(seed).permutation(len(subjects))]
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    return Split(train=tuple(sorted(train)), val=tuple(sorted(val)), test=tuple(sorted(test)))


def split_for_profile(dataset: Dataset, profile: str | Profile = "quick", seed: int = 0) -> Split:
    """Split `dataset`'s subjects with the profile's n_val and n_test.

    The phantom has exactly profile.n_subjects subjects. A real dataset is used whole: all its
    subjects, with val/test counts from the profile and the rest for training (a large dataset
    then trains on more subjects than the profile's n_train). For one contrast only, pass
    ``dataset.select(contrast)`` so subjects without it are left out.
    """
    profile = get_profile(profile)
    return split_subjects(dataset.subjects(), n_val=profile.n_val, n_test=profile.n_test, seed=seed)
