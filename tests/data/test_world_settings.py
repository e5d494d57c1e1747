"""WorldSettings: perturbed worlds, kinds a training world lacks, and holiday months."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commuter_badge.features.workdays import LIBRARY_CALENDAR
from commuter_badge.simulate import (
    ARCHETYPES,
    SPRING_FESTIVAL_2022_AS_OF,
    UNSEEN_KINDS,
    HolidayLeave,
    WorldSettings,
    simulate_world,
)
from commuter_badge.simulate.timeline import timeline

FESTIVAL = (dt.date(2022, 1, 31), dt.date(2022, 2, 6))  # 2022 Spring Festival, days off
# The working days right around it: the make-up weekend 01-29/30 and the Friday before; and the
# first days back. Far days: the same weekdays a week further out.
ADJACENT = [dt.date(2022, 1, d) for d in (27, 28, 29, 30)] + [dt.date(2022, 2, d) for d in (7, 8)]
FAR = [dt.date(2022, 1, d) for d in (17, 18, 19, 20)] + [dt.date(2022, 2, d) for d in (14, 15)]


def _local_days(world) -> pd.DataFrame:
    trips = world.trips.to_pandas()
    trips["day"] = trips["ts"].dt.tz_convert("Asia/Shanghai").dt.date
    return trips.merge(world.persons, on="person_id")


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), spread=st.floats(0.0, 2.0))
def test_perturbed_settings_stay_a_valid_catalogue(seed, spread):
    # when perturbing the default settings
    varied = WorldSettings().perturbed(seed, spread)
    # then shares still sum to 1, kinds and truths are unchanged, and ranges stay ordered
    assert abs(sum(a.share for a in varied.archetypes) - 1.0) < 1e-9, "shares must sum to 1"
    assert varied.names() == WorldSettings().names(), "perturbing must not add or drop kinds"
    for before, after in zip(ARCHETYPES, varied.archetypes, strict=True):
        assert type(before) is type(after), f"{before.name}: perturbing must keep the type"
        for f in dataclasses.fields(after):
            value, kind = getattr(after, f.name), f.metadata.get("vary")
            if isinstance(value, tuple) and kind is not None:
                assert value[0] <= value[1], f"{after.name}.{f.name} range out of order: {value}"
            if kind == "prob" and value is not None:
                values = value if isinstance(value, tuple) else (value,)
                assert all(0 <= v <= 1 for v in values), f"{after.name}.{f.name} = {value}"
    # and the same seed gives the same perturbation
    assert WorldSettings().perturbed(seed, spread) == varied, "perturbation must be seeded"


VARIANTS = {
    "default": WorldSettings(),
    "perturbed": WorldSettings().perturbed(11),
    "unseen kinds": WorldSettings().with_kinds(UNSEEN_KINDS),
    "holidays": WorldSettings().for_holidays(),
}


@settings(max_examples=12, deadline=None)
@given(
    variant=st.sampled_from(sorted(VARIANTS)),
    persons=st.integers(0, 300),
    seed=st.integers(0, 2**31),
    as_of=st.sampled_from([SPRING_FESTIVAL_2022_AS_OF, dt.date(2021, 10, 20)]),
)
def test_same_settings_and_seed_give_the_same_world(variant, persons, seed, as_of):
    a = simulate_world(persons, as_of, seed, settings=VARIANTS[variant])
    b = simulate_world(persons, as_of, seed, settings=VARIANTS[variant])
    assert a.trips.equals(b.trips), f"{variant}: same seed must give identical trips"
    assert a.persons.equals(b.persons), f"{variant}: same seed must give identical persons"
    assert a.labels.equals(b.labels), f"{variant}: same seed must give identical labels"


def test_zero_spread_changes_nothing_and_a_perturbed_world_differs():
    plain = WorldSettings().perturbed(3, spread=0.0)
    for a, b in zip(ARCHETYPES, plain.archetypes, strict=True):
        assert b == dataclasses.replace(a, share=b.share), f"{a.name} changed at spread 0"
        assert b.share == pytest.approx(a.share), f"{a.name} share changed at spread 0"
    base = simulate_world(1500, dt.date(2021, 10, 20), seed=5)
    varied = simulate_world(
        1500, dt.date(2021, 10, 20), seed=5, settings=WorldSettings().perturbed(3)
    )
    again = simulate_world(
        1500, dt.date(2021, 10, 20), seed=5, settings=WorldSettings().perturbed(3)
    )
    assert not base.trips.equals(varied.trips), "a perturbed world must differ from the default"
    assert varied.trips.equals(again.trips), "same settings and seed, same world"
    mix = varied.persons["archetype"].value_counts(normalize=True)
    default = base.persons["archetype"].value_counts(normalize=True)
    assert (mix - default).abs().max() > 0.005, "perturbation must change the mix"


def test_unseen_kinds_appear_only_when_added():
    default = simulate_world(3000, dt.date(2021, 10, 20), seed=2)
    added = simulate_world(
        3000, dt.date(2021, 10, 20), seed=2, settings=WorldSettings().with_kinds(UNSEEN_KINDS)
    )
    unseen = {a.name for a in UNSEEN_KINDS}
    assert not unseen & set(default.persons["archetype"]), "default worlds lack the unseen kinds"
    shares = added.persons["archetype"].value_counts(normalize=True)
    for kind in UNSEEN_KINDS:
        assert shares[kind.name] == pytest.approx(kind.share, abs=0.002), f"{kind.name} share"
    truth = added.persons.groupby("archetype")["true_commuter"].first()
    assert truth["one_day_hybrid"] == 1, "one-day hybrid workers are commuters"
    assert truth["treatment_escort"] == 0, "escorts to daily treatment are not commuters"


def test_mix_and_removal_keep_shares_summing_to_one():
    more = WorldSettings().with_shares({"hospital_carer": 3.0})
    share = dict(zip(more.names(), (a.share for a in more.archetypes), strict=True))
    assert share["hospital_carer"] > 2.5 * 0.03, "hospital carers tripled before renormalising"
    fewer = WorldSettings().without(["ride_hail", "truck_driver"])
    assert "ride_hail" not in fewer.names(), "removed kinds are gone"
    assert sum(a.share for a in fewer.archetypes) == pytest.approx(1.0), "shares sum to 1"
    with pytest.raises(ValueError, match="no archetypes named"):
        WorldSettings().with_shares({"astronaut": 2.0})


def test_holiday_month_has_fewer_workday_crossings_around_the_festival():
    # given the same month as of 2022-02-18, plain and with holiday behaviour
    plain = _local_days(simulate_world(6000, SPRING_FESTIVAL_2022_AS_OF, seed=4))
    festive = _local_days(
        simulate_world(
            6000, SPRING_FESTIVAL_2022_AS_OF, seed=4, settings=WorldSettings().for_holidays()
        )
    )

    def ratio(trips: pd.DataFrame) -> float:
        calendar_commuters = trips[trips["archetype"].isin(["daily_rail", "daily_car_dawn"])]
        near = calendar_commuters["day"].isin(ADJACENT).sum()
        far = calendar_commuters["day"].isin(FAR).sum()
        return near / far

    # then calendar-following commuters cross less on the working days next to the festival
    assert ratio(festive) < 0.85 * ratio(plain), (
        f"leave around the festival: near/far {ratio(festive):.3f} vs plain {ratio(plain):.3f}"
    )
    assert ratio(plain) > 0.9, f"without leave, near and far days look alike ({ratio(plain):.3f})"
    # and family visitors come over the festival and only then
    visits = festive[festive["archetype"] == "festival_visitor"]
    assert len(visits) > 100, f"too few festival visits: {len(visits)}"
    lo, hi = FESTIVAL[0] - dt.timedelta(days=3), FESTIVAL[1] + dt.timedelta(days=3)
    assert visits["day"].between(lo, hi).all(), "festival visits must fall around the festival"
    assert not plain["archetype"].eq("festival_visitor").any(), "plain months have no such visits"


leave_ranges = st.tuples(st.integers(0, 4), st.integers(0, 4)).map(lambda r: tuple(sorted(r)))


@settings(max_examples=40, deadline=None)
@given(
    before=leave_ranges,
    after=leave_ranges,
    p_leave=st.floats(0, 1),
    seed=st.integers(0, 2**32 - 1),
    as_of=st.sampled_from([SPRING_FESTIVAL_2022_AS_OF, dt.date(2021, 10, 20), dt.date(2021, 7, 1)]),
)
def test_leave_is_taken_on_working_days_next_to_long_holidays(before, after, p_leave, seed, as_of):
    line = timeline(as_of, 28, LIBRARY_CALENDAR)
    takes = np.array([True] * 30 + [False] * 10)
    leave = HolidayLeave(p_leave=p_leave, before=before, after=after).mask(
        takes, line, np.random.default_rng(seed)
    )
    assert not leave[~takes].any(), "kinds that ignore the calendar take no leave"
    assert not (leave & ~line.workday).any(), "leave is taken on working days only"
    per_holiday = before[1] + after[1]
    assert (leave.sum(axis=1) <= per_holiday * len(line.long_holidays)).all(), "too much leave"
    if not line.long_holidays:
        assert not leave.any(), "no long holiday, no leave"

    def workdays_between(day: int, first: int, last: int) -> int:
        inside = line.workday[day + 1 : first] if day < first else line.workday[last + 1 : day]
        return int(inside.sum())

    furthest = max(before[1], after[1])
    for day in np.flatnonzero(leave.any(axis=0)):
        nearest = min(workdays_between(day, first, last) for first, last in line.long_holidays)
        assert nearest < furthest, f"leave on day {day} is not next to a long holiday"


def test_long_holidays_are_the_runs_of_three_or_more_days_off():
    # the 2022 Spring Festival, days off 01-31..02-06, and nothing else in that window
    line = timeline(SPRING_FESTIVAL_2022_AS_OF, 28, LIBRARY_CALENDAR)
    days = [
        (line.start + dt.timedelta(days=int(a)), line.start + dt.timedelta(days=int(b)))
        for a, b in line.long_holidays
    ]
    assert days == [FESTIVAL], f"long holidays found: {days}"
    # National Day 2021 (10-01..07) and Mid-Autumn (09-19..21) in the default month
    line = timeline(dt.date(2021, 10, 20), 28, LIBRARY_CALENDAR)
    assert len(line.long_holidays) == 2, (
        f"expected Mid-Autumn and National Day: {line.long_holidays}"
    )
    # a world at the last days the calendar knows still simulates with holiday settings
    world = simulate_world(
        50, dt.date(2026, 12, 30), seed=1, settings=WorldSettings().for_holidays()
    )
    assert world.trips.num_rows > 0, "a holiday-settings world at the calendar's end must simulate"
