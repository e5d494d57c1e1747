"""The archetype catalogue: complete, documented, frozen, and every record type has a generator."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commuter_badge.features.workdays import LIBRARY_CALENDAR
from commuter_badge.simulate import archetypes as catalogue
from commuter_badge.simulate.archetypes import (
    ARCHETYPES,
    FESTIVAL_VISITORS,
    UNSEEN_KINDS,
    Archetype,
    DailyCommuter,
)
from commuter_badge.simulate.generate import crossings
from commuter_badge.simulate.timeline import timeline
from commuter_badge.simulate.variation import WorldSettings

EVERY_KIND = (*ARCHETYPES, *UNSEEN_KINDS, FESTIVAL_VISITORS)
RECORD_TYPES = tuple(
    t
    for t in vars(catalogue).values()
    if isinstance(t, type)
    and issubclass(t, Archetype)
    and not t.__name__.startswith("_")
    and t is not Archetype
)


def test_every_kind_and_record_type_is_in_the_catalogue_docstring():
    # given the catalogue module's docstring, the one place a reader looks
    doc = catalogue.__doc__
    # then it names every archetype and the record type each one is
    missing = [a.name for a in EVERY_KIND if a.name not in doc]
    assert not missing, f"archetypes missing from the catalogue docstring: {missing}"
    untyped = [t.__name__ for t in RECORD_TYPES if t.__name__ not in doc]
    assert not untyped, f"record types missing from the catalogue docstring: {untyped}"
    for a in EVERY_KIND:
        line = next(x for x in doc.splitlines() if x.strip().startswith(a.name))
        assert type(a).__name__ in line, (
            f"{a.name}: docstring line does not name {type(a).__name__}"
        )
        truth = "yes" if a.is_commuter else "no"
        assert f" {truth} " in line, f"{a.name}: docstring line does not say commuter={truth}"


def test_every_record_type_has_a_docstring_and_a_generator():
    assert len(RECORD_TYPES) >= 10, f"expected a type per behaviour, found {RECORD_TYPES}"
    for t in RECORD_TYPES:
        assert len(t.__doc__ or "") > 30, f"{t.__name__} needs a docstring saying who it is"
        assert crossings.dispatch(t) is not crossings.dispatch(Archetype), f"no generator for {t}"


def test_default_catalogue_shares_sum_to_one_with_unique_documented_names():
    assert abs(sum(a.share for a in ARCHETYPES) - 1.0) < 1e-9, "shares must sum to 1"
    names = [a.name for a in EVERY_KIND]
    assert len(set(names)) == len(names), f"duplicate names: {names}"
    assert all(a.description for a in EVERY_KIND), "every kind has a description"
    assert {a.name for a in UNSEEN_KINDS}.isdisjoint(a.name for a in ARCHETYPES), (
        "unseen kinds must be absent from the default catalogue"
    )


def test_records_are_frozen_and_their_mappings_read_only():
    a = ARCHETYPES[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.share = 0.5  # type: ignore[misc]
    with pytest.raises(TypeError):
        a.routes["RL-WUQING"] = 1.0  # type: ignore[index]


def test_a_bad_record_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown or no route sites"):
        dataclasses.replace(ARCHETYPES[0], routes={"RL-NOWHERE": 1.0})
    with pytest.raises(ValueError, match="shares must sum to 1"):
        WorldSettings(archetypes=ARCHETYPES[:3])


def test_truth_belongs_to_the_type():
    # a daily commuter is a commuter whatever its parameters
    assert DailyCommuter.is_commuter, "DailyCommuter is a commuter"
    by_name = {a.name: a for a in EVERY_KIND}
    assert not by_name["stopped_commuting"].is_commuter, "former commuters are not commuters"
    assert by_name["new_job"].is_commuter, "new starters are commuters"
    assert not by_name["treatment_escort"].is_commuter, "escorting a patient daily is not work"


@settings(max_examples=30, deadline=None)
@given(
    kind=st.sampled_from(EVERY_KIND),
    n=st.integers(0, 40),
    seed=st.integers(0, 2**32 - 1),
    perturb_seed=st.one_of(st.none(), st.integers(0, 1000)),
)
def test_every_generator_gives_well_formed_crossings(kind, n, seed, perturb_seed):
    # given any kind, possibly perturbed, on a calendar holding the 2022 Spring Festival
    if perturb_seed is not None:
        kind = (
            WorldSettings(archetypes=(dataclasses.replace(kind, share=1.0),))
            .perturbed(perturb_seed)
            .archetypes[0]
        )
    line = timeline(dt.date(2022, 2, 18), 28, LIBRARY_CALENDAR)
    # when generating its crossings
    p, t, direction = crossings(kind, n, line, np.random.default_rng(seed))
    # then the arrays line up, belong to the n persons, and directions are in/out
    assert len(p) == len(t) == len(direction), "person, time and direction must line up"
    assert ((p >= 0) & (p < max(n, 1))).all(), "crossings belong to the generated persons"
    assert set(np.unique(direction)) <= {0, 1}, "direction is 0 (in) or 1 (out)"
    assert np.issubdtype(t.dtype, np.integer), "times are integer seconds"
