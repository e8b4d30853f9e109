"""Train / validation / test split by subject, never by slice (DESIGN.md, "Concepts").

Slices of one brain are strongly correlated; splitting slices would let a method see its
test brains during training. For the same reason the sessions and runs of one person (BIDS
``sub-01_ses-1``, ``sub-01_ses-2``) are dealt together, by participant.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

from sr_lib.data.folders import Dataset, participant_of
from sr_lib.profiles import Profile, get_profile


@dataclasses.dataclass(frozen=True)
class Split:
    """Disjoint subject ids (each tuple sorted); all ids of one participant are in one of them."""

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]


def split_subjects(subjects: Iterable[str], *, n_val: int, n_test: int, seed: int = 0) -> Split:
    """Shuffle the participants with `seed` and deal `n_test` to test, `n_val` to val, the rest
    to train; each participant's subject ids go with it.

    A participant is `participant_of(subject)`: the BIDS sessions and runs ``sub-01_ses-1``,
    ``sub-01_ses-2_run-1`` are all ``sub-01``, so one person never lands in two splits; any
    other id is its own participant. `n_val` and `n_test` count participants. Participants are
    shuffled in the order of their first subject id, so where every id is its own participant
    (the phantom, IXI) the split is exactly the per-subject split of before.

    The result depends only on the set of subjects and the seed, not on their order.
    At least one participant must remain for training.
    """
    subjects = sorted(subjects)
    if len(set(subjects)) != len(subjects):
        raise ValueError(f"subject ids are not unique: {sorted({s for s in subjects if subjects.count(s) > 1})}")
    if n_val < 0 or n_test < 0:
        raise ValueError(f"n_val and n_test must be >= 0, got n_val={n_val}, n_test={n_test}")
    groups: dict[str, list[str]] = {}
    for subject in subjects:
        groups.setdefault(participant_of(subject), []).append(subject)
    people = list(groups)  # in the order of each participant's first (sorted) subject id
    if len(people) < n_val + n_test + 1:
        counted = f"{len(people)} participants ({len(subjects)} subject ids)" if len(people) < len(subjects) else f"{len(people)} subjects"
        raise ValueError(f"{counted} are too few for n_val={n_val}, n_test={n_test} and at least one for training")
    order = [people[i] for i in np.random.default_rng(seed).permutation(len(people))]
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]

    def ids(chosen: list[str]) -> tuple[str, ...]:
        return tuple(sorted(subject for person in chosen for subject in groups[person]))

    return Split(train=ids(train), val=ids(val), test=ids(test))


def split_for_profile(dataset: Dataset, profile: str | Profile = "quick", seed: int = 0) -> Split:
    """Split `dataset`'s subjects by participant with the profile's n_val and n_test.

    The phantom has exactly profile.n_subjects subjects. A real dataset is used whole: all its
    subjects, with val/test counts from the profile and the rest for training (a large dataset
    then trains on more subjects than the profile's n_train). For one contrast only, pass
    ``dataset.select(contrast)`` so subjects without it are left out.
    """
    profile = get_profile(profile)
    return split_subjects(dataset.subjects(), n_val=profile.n_val, n_test=profile.n_test, seed=seed)
