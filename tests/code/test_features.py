"""Hand-computed feature values for small, readable persons (features_from_trips, in memory).

Every expected number is worked out by hand in the comments from the definitions in
features/definitions.py and the window/calendar rules of the contract, not by re-running the SQL.

November window used below: as_of 2021-11-26 -> local days 2021-10-29 (Fri) .. 2021-11-25 (Thu).
  working days (no holidays in Nov 2021): Oct 29; Nov 1-5, 8-12, 15-19, 22-25 = 1+5+5+5+4 = 20
  weekend days: Oct 30, 31; Nov 6, 7, 13, 14, 20, 21 = 8        (20 + 8 = 28)
  "recent" days are >= as_of - 7 = Nov 19.
October window (AS_OF 2021-10-20) -> 2021-09-22 .. 2021-10-19:
  working days: Sep 22-24 (3), Sun Sep 26 make-up (1), Sep 27-30 (4), Oct 8 (1),
  Sat Oct 9 make-up (1), Oct 11-15 (5), Oct 18-19 (2) = 17;
  off days: Sat Sep 25, Oct 1-7, Sun Oct 10, Oct 16, 17 = 11.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from commuter_badge.features.build import features_from_trips, model_matrix
from commuter_badge.features.definitions import CONTEXT_COLUMNS, FEATURE_NAMES
from commuter_badge.features.sql import Window
from tests.code.tripdata import NOV_AS_OF, SH, UTC, one, trip
from tests.conftest import AS_OF

NOV_WORKDAYS = [dt.date(2021, 10, 29)] + [
    dt.date(2021, 11, d)
    for d in (1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 15, 16, 17, 18, 19, 22, 23, 24, 25)
]


def check(row: pd.Series, expected: dict[str, object]) -> None:
    """Every expected feature value, ints exactly, floats to 1e-12, NA as NA."""
    for name, want in expected.items():
        got = row[name]
        if want is None:
            assert pd.isna(got), f"{name}: expected missing, got {got!r}"
        elif isinstance(want, float):
            assert not pd.isna(got), f"{name}: expected {want!r}, got missing"
            assert math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-12), (
                f"{name}: expected {want!r}, got {got!r}"
            )
        else:
            assert got == want, f"{name}: expected {want!r}, got {got!r}"


def test_november_has_twenty_working_days():
    # given the November window
    window = Window(NOV_AS_OF)
    # when its calendar is built
    params = window.params()
    # then it has the 20 working days listed above and 8 off days
    assert len(NOV_WORKDAYS) == 20, "the hand-made list of working days is wrong"
    assert params["n_workdays"] == 20, f"expected 20 working days, got {params['n_workdays']}"
    assert params["n_offdays"] == 8, f"expected 8 off days, got {params['n_offdays']}"


def test_daily_car_commuter():
    # given a car commuter entering 07:30 and leaving 18:00 on each of the 20 working days
    trips = []
    for d in NOV_WORKDAYS:
        trips += [trip(d, 7, 30, direction="in"), trip(d, 18, 0, direction="out")]
    # when features are computed for as_of 2021-11-26
    row = one(features_from_trips([("car", trips)], NOV_AS_OF), "car")
    # then (by hand):
    check(
        row,
        {
            "crossings": 40,  # 20 days x 2
            "active_days": 20,
            "workdays_active": 20,
            "active_days_per_week": 5.0,  # 20 * 7 / 28
            "workday_coverage": 1.0,  # 20 / 20
            "morning_entry_workdays": 20,  # 07:30 is in [05:00, 10:00)
            "entry_hour_mean": 7.5,
            "entry_hour_spread": 0.0,
            "exit_hour_spread": 0.0,
            "workday_round_trip_share": 1.0,  # in 07:30 < out 18:00 every working day
            "workday_entry_share": 1.0,
            "offday_active_share": 0.0,  # 0 / 8
            "top_weekday_share": 0.2,  # each of Mon..Fri has 4 active days: 4 / 20
            "entry_gap_mode": 1,  # 19 gaps: 15 of 1 day, 4 of 3 days (weekends)
            "entry_gap_regularity": 15 / 19,
            "fri_in_sun_out_weeks": 0,  # never active on a Sunday
            "days_since_last": 1,  # last day Nov 25
            "days_since_first": 28,  # first day Oct 29
            "recent_active_days": 5,  # Nov 19, 22, 23, 24, 25
            "recent_vs_earlier": 5 / 6,  # 5 / ((20 - 5) * 7 / 21 + 1) = 5 / 6
            "n_sites": 1,
            "n_regions": 1,
            "n_modes": 1,
            "top_site_share": 1.0,
            "rail_share": 0.0,
            "bus_share": 0.0,
            "crossings_per_active_day": 2.0,
            "night_share": 0.0,
            "entry_exit_imbalance": 0.0,  # 20 in, 20 out
            "main_mode": "car",
            "main_region": "langfang-xianghe",
        },
    )


def test_daily_commuter_with_a_shorter_window():
    # given the same daily commuter and a 14-day window: Nov 12 .. Nov 25, working days
    # Nov 12, 15-19, 22-25 = 10
    trips = []
    for d in NOV_WORKDAYS:
        trips += [trip(d, 7, 30, direction="in"), trip(d, 18, 0, direction="out")]
    # when features are computed with window_days=14
    row = one(features_from_trips([("car", trips)], NOV_AS_OF, window_days=14), "car")
    # then only those 10 days count and per-week/recency rates use 14 days
    check(
        row,
        {
            "crossings": 20,
            "active_days": 10,
            "workday_coverage": 1.0,  # 10 / 10
            "active_days_per_week": 5.0,  # 10 * 7 / 14
            "days_since_first": 14,  # Nov 12
            "recent_active_days": 5,  # Nov 19, 22-25
            "recent_vs_earlier": 5 / 6,  # 5 / ((10 - 5) * 7 / 7 + 1)
            "offday_active_share": 0.0,  # 0 / 4
        },
    )


def test_window_must_be_at_least_eight_days():
    # given / when / then a window shorter than 8 days is refused (recency needs 7 days + history)
    with pytest.raises(ValueError, match="window_days must be between 8 and 62"):
        features_from_trips([], NOV_AS_OF, window_days=7)


def test_weekly_friday_in_sunday_out():
    # given a weekly commuter: in Friday 19:00 by rail, out Sunday 17:00, four weekends
    # (Fri Oct 29 / Sun Oct 31 are in the same Monday-based week, and so on)
    trips = []
    for fri in ("2021-10-29", "2021-11-05", "2021-11-12", "2021-11-19"):
        f = dt.date.fromisoformat(fri)
        trips.append(
            trip(f, 19, direction="in", mode="rail", site_id="RL-WUQING", region="tianjin-wuqing")
        )
        trips.append(
            trip(
                f + dt.timedelta(days=2),
                17,
                direction="out",
                mode="rail",
                site_id="RL-WUQING",
                region="tianjin-wuqing",
            )
        )
    # when
    row = one(features_from_trips([("weekly", trips)], NOV_AS_OF), "weekly")
    # then
    check(
        row,
        {
            "fri_in_sun_out_weeks": 4,
            "crossings": 8,
            "active_days": 8,
            "workdays_active": 4,  # the Fridays
            "active_days_per_week": 2.0,  # 8 * 7 / 28
            "workday_coverage": 0.2,  # 4 / 20
            "morning_entry_workdays": 0,  # 19:00
            "entry_hour_mean": 19.0,
            "workday_round_trip_share": 0.0,  # Fridays have only an entry
            "workday_entry_share": 0.2,  # 4 / 20
            "offday_active_share": 0.5,  # 4 Sundays / 8 weekend days
            "top_weekday_share": 0.5,  # 4 Fridays / 8 active days
            "entry_gap_mode": 7,
            "entry_gap_regularity": 1.0,  # 3 gaps, all 7
            "days_since_last": 5,  # Sun Nov 21
            "days_since_first": 28,  # Fri Oct 29
            "recent_active_days": 2,  # Nov 19, Nov 21
            "recent_vs_earlier": 2 / 3,  # 2 / ((8 - 2) * 7 / 21 + 1) = 2 / 3
            "rail_share": 1.0,
            "main_mode": "rail",
            "main_region": "tianjin-wuqing",
        },
    )


def test_shift_worker_every_third_day():
    # given a shift worker in 07:00 / out 19:00 every third day from Oct 29:
    # Oct 29, Nov 1, 4, 7(Sun), 10, 13(Sat), 16, 19, 22, 25 -> 10 days, 8 of them working days
    start = dt.date(2021, 10, 29)
    days = [start + dt.timedelta(days=3 * i) for i in range(10)]
    assert days[-1] == dt.date(2021, 11, 25), "the hand-made schedule should end on Nov 25"
    trips = []
    for d in days:
        trips += [trip(d, 7, direction="in"), trip(d, 19, direction="out")]
    # when
    row = one(features_from_trips([("shift", trips)], NOV_AS_OF), "shift")
    # then
    check(
        row,
        {
            "entry_gap_mode": 3,
            "entry_gap_regularity": 1.0,  # 9 gaps, all 3 days
            "active_days": 10,
            "workdays_active": 8,
            "offday_active_share": 0.25,  # Nov 7, Nov 13: 2 / 8
            "morning_entry_workdays": 8,
            "top_weekday_share": 0.2,  # Fri, Mon, Thu twice each: 2 / 10
            "fri_in_sun_out_weeks": 0,  # Sun Nov 7's week has no Friday entry
            "recent_active_days": 3,  # Nov 19, 22, 25
            "recent_vs_earlier": 0.9,  # 3 / ((10 - 3) * 7 / 21 + 1) = 3 / (10 / 3)
        },
    )


def test_truck_driver_with_night_crossings():
    # given a driver entering 23:00 Mon Nov 15 .. Fri Nov 19 at CK-G4-A and leaving 03:00 the next
    # morning at CK-G4-B, plus one daytime round trip on Mon Nov 22 (in 12:00, out 14:00)
    trips = []
    for d in range(15, 20):
        day = dt.date(2021, 11, d)
        trips.append(trip(day, 23, direction="in", site_id="CK-G4-A", region="tianjin"))
        trips.append(
            trip(
                day + dt.timedelta(days=1), 3, direction="out", site_id="CK-G4-B", region="tianjin"
            )
        )
    trips.append(trip("2021-11-22", 12, direction="in", site_id="CK-G4-A", region="tianjin"))
    trips.append(trip("2021-11-22", 14, direction="out", site_id="CK-G4-B", region="tianjin"))
    # when
    row = one(features_from_trips([("truck", trips)], NOV_AS_OF), "truck")
    # then: 12 crossings, 10 at night; active days Nov 15-20 and 22 = 7
    # exit hours per day: 3, 3, 3, 3, 3 (Nov 16-20), 14 (Nov 22): mean 29/6,
    #   variance = (5 * (11/6)^2 + (55/6)^2) / 6 = 3630 / 216;
    # entry hours 23 x5, 12: the same spread.
    check(
        row,
        {
            "crossings": 12,
            "night_share": 10 / 12,
            "active_days": 7,
            "crossings_per_active_day": 12 / 7,
            "workdays_active": 6,  # Sat Nov 20 is off
            "offday_active_share": 1 / 8,
            "n_sites": 2,
            "top_site_share": 0.5,  # 6 / 12 at each checkpoint
            "entry_hour_mean": 127 / 6,  # (5 * 23 + 12) / 6
            "entry_hour_spread": math.sqrt(3630 / 216),
            "exit_hour_spread": math.sqrt(3630 / 216),
            "morning_entry_workdays": 0,
            "workday_round_trip_share": 0.05,  # only Nov 22 has an entry before an exit: 1 / 20
            "workday_entry_share": 0.3,  # 6 / 20
            "entry_gap_mode": 1,  # gaps 1, 1, 1, 1, 3
            "entry_gap_regularity": 0.8,
            "top_weekday_share": 2 / 7,  # Mondays Nov 15, 22
            "days_since_last": 4,  # Nov 22
            "days_since_first": 11,  # Nov 15
            "recent_active_days": 3,  # Nov 19, 20, 22
            "recent_vs_earlier": 9 / 7,  # 3 / ((7 - 3) * 7 / 21 + 1) = 3 / (7 / 3)
            "entry_exit_imbalance": 0.0,
            "active_days_per_week": 1.75,  # 7 * 7 / 28
        },
    )


def test_person_last_seen_three_weeks_ago():
    # given a person who crossed only on Mon Nov 1 and Fri Nov 5 (as_of - 21 days)
    trips = [
        trip("2021-11-01", 8),
        trip("2021-11-01", 18, direction="out"),
        trip("2021-11-05", 8),
        trip("2021-11-05", 18, direction="out"),
    ]
    # when
    row = one(features_from_trips([("gone", trips)], NOV_AS_OF), "gone")
    # then
    check(
        row,
        {
            "days_since_last": 21,
            "days_since_first": 25,
            "recent_active_days": 0,
            "recent_vs_earlier": 0.0,  # 0 / ((2 - 0) * 7 / 21 + 1)
            "active_days": 2,
            "entry_gap_mode": 4,
            "entry_gap_regularity": 1.0,
        },
    )


def test_single_entry_leaves_gap_and_exit_features_missing():
    # given one entry only
    row = one(features_from_trips([("once", [trip("2021-11-22", 7)])], NOV_AS_OF), "once")
    # then features that need two entry days or an exit are missing, not zero
    check(
        row,
        {
            "entry_gap_mode": None,
            "entry_gap_regularity": None,
            "exit_hour_spread": None,
            "entry_exit_imbalance": 1.0,
            "crossings": 1,
        },
    )


def test_main_mode_and_region_counts_and_ties():
    # given 2 rail crossings (no region), 1 car (region r1) and another person with 1 car + 1 bus
    a = [
        trip("2021-11-22", 7, mode="rail", site_id="RL-A", region=""),
        trip("2021-11-22", 19, direction="out", mode="rail", site_id="RL-A", region=""),
        trip("2021-11-23", 7, mode="car", site_id="CK-B", region="r1"),
    ]
    b = [
        trip("2021-11-22", 7, mode="car", site_id="CK-B", region="r2"),
        trip("2021-11-22", 19, direction="out", mode="bus", site_id="CK-C", region="r1"),
    ]
    c = [
        trip("2021-11-22", 7, mode="rail", site_id="RL-A", region="r3"),
        trip("2021-11-23", 7, mode="car", site_id="CK-B", region="r3"),
    ]
    # when
    frame = features_from_trips([("b", b), ("c", c), ("a", a)], NOV_AS_OF)
    # then rows come in person_id order
    assert frame["person_id"].tolist() == ["a", "b", "c"], (
        f"rows not in id order: {frame['person_id'].tolist()}"
    )
    # and a: main mode rail (2 of 3), empty regions ignored for n_regions and main_region
    check(
        one(frame, "a"),
        {
            "main_mode": "rail",
            "main_region": "r1",
            "n_regions": 1,
            "n_modes": 2,
            "rail_share": 2 / 3,
            "n_sites": 2,
            "top_site_share": 2 / 3,
        },
    )
    # and b: a 1-1 tie is broken alphabetically (bus < car, r1 < r2)
    check(
        one(frame, "b"), {"main_mode": "bus", "main_region": "r1", "bus_share": 0.5, "n_regions": 2}
    )
    # and c: a car-rail tie goes to car, the earlier name
    check(one(frame, "c"), {"main_mode": "car", "main_region": "r3", "n_modes": 2})


def test_statutory_calendar_decides_working_days():
    # given the October window (17 working days, 11 off days), one round trip 08:00-18:00 each on
    # a make-up Saturday, a make-up Sunday, a National Day holiday Monday and an ordinary Saturday
    def round_trip(day):
        return [trip(day, 8), trip(day, 18, direction="out")]

    persons = [
        ("makeup_sat", round_trip("2021-10-09")),
        ("makeup_sun", round_trip("2021-09-26")),
        ("holiday_mon", round_trip("2021-10-04")),
        ("plain_sat", round_trip("2021-10-16")),
    ]
    # when
    frame = features_from_trips(persons, AS_OF)
    # then the make-up weekend days are working days
    for pid in ("makeup_sat", "makeup_sun"):
        check(
            one(frame, pid),
            {
                "workdays_active": 1,
                "workday_coverage": 1 / 17,
                "offday_active_share": 0.0,
                "workday_round_trip_share": 1 / 17,
                "morning_entry_workdays": 1,
            },
        )
    # and the holiday Monday and the ordinary Saturday are not
    for pid in ("holiday_mon", "plain_sat"):
        check(
            one(frame, pid),
            {
                "workdays_active": 0,
                "workday_coverage": 0.0,
                "offday_active_share": 1 / 11,
                "workday_round_trip_share": 0.0,
                "morning_entry_workdays": 0,
            },
        )


@pytest.mark.parametrize(
    ("gap_seconds", "crossings"),
    [(30, 1), (119, 1), (120, 1), (121, 2), (200, 2)],
)
def test_double_reads(gap_seconds, crossings):
    # given two reads of the same person, direction and site `gap_seconds` apart
    first = dt.datetime(2021, 11, 22, 7, 0, 0, tzinfo=SH)
    trips = [
        {"ts": first, "direction": "in", "mode": "car", "site_id": "S", "region": ""},
        {
            "ts": first + dt.timedelta(seconds=gap_seconds),
            "direction": "in",
            "mode": "car",
            "site_id": "S",
            "region": "",
        },
    ]
    # when
    row = one(features_from_trips([("p", trips)], NOV_AS_OF), "p")
    # then reads within 120 s are one crossing, further apart two
    assert row["crossings"] == crossings, (
        f"{gap_seconds} s apart: expected {crossings} crossings, got {row['crossings']}"
    )


@pytest.mark.parametrize(
    ("second", "why"),
    [({"site_id": "OTHER"}, "another site"), ({"direction": "out"}, "the other direction")],
)
def test_close_reads_that_differ_are_two_crossings(second, why):
    # given two reads 30 s apart that differ in site or direction
    t0 = dt.datetime(2021, 11, 22, 7, 0, 0, tzinfo=SH)
    base = {"ts": t0, "direction": "in", "mode": "car", "site_id": "S", "region": ""}
    trips = [base, {**base, "ts": t0 + dt.timedelta(seconds=30), **second}]
    # when
    row = one(features_from_trips([("p", trips)], NOV_AS_OF), "p")
    # then both count
    assert row["crossings"] == 2, f"reads at {why} were merged: crossings={row['crossings']}"


def test_close_reads_of_two_persons_are_not_merged():
    # given two persons read at the same site at the same second
    t = trip("2021-11-22", 7)
    # when
    frame = features_from_trips([("p1", [t]), ("p2", [t])], NOV_AS_OF)
    # then each has one crossing
    assert frame["crossings"].tolist() == [1, 1], f"persons merged: {frame['crossings'].tolist()}"


def test_double_read_of_a_crossing_just_before_the_window_is_not_a_crossing():
    # given a crossing at 23:59:30 on the day before the window starts, re-read 60 s later
    trips = [trip("2021-10-28", 23, 59, 30), trip("2021-10-29", 0, 0, 30)]
    # when
    frame = features_from_trips([("p", trips)], NOV_AS_OF)
    # then the re-read is the same (out-of-window) crossing: nothing in the window
    assert frame.empty, (
        "a double read of an out-of-window crossing was counted: "
        f"{frame[['person_id', 'crossings']]}"
    )


@pytest.mark.parametrize(
    ("ts", "inside", "why"),
    [
        (dt.datetime(2021, 11, 26, 0, 0, tzinfo=SH), False, "as_of 00:00 local"),
        (
            dt.datetime(2021, 11, 25, 23, 59, 59, tzinfo=SH),
            True,
            "23:59:59 local the day before as_of",
        ),
        (dt.datetime(2021, 10, 29, 0, 0, tzinfo=SH), True, "as_of - 28 d 00:00 local"),
        (dt.datetime(2021, 10, 28, 23, 59, 59, tzinfo=SH), False, "one second before the window"),
        (dt.datetime(2021, 11, 25, 16, 30, tzinfo=UTC), False, "16:30Z = 00:30 local on as_of"),
        (dt.datetime(2021, 11, 25, 15, 59, 59, tzinfo=UTC), True, "15:59:59Z = 23:59:59 local"),
        (dt.datetime(2021, 10, 28, 16, 0, tzinfo=UTC), True, "16:00Z = window start 00:00 local"),
        (
            dt.datetime(2021, 10, 28, 15, 59, 59, tzinfo=UTC),
            False,
            "15:59:59Z = 23:59:59 local before start",
        ),
    ],
)
def test_window_edges(ts, inside, why):
    # given one crossing at the window edge
    trips = [{"ts": ts, "direction": "in", "mode": "car", "site_id": "S", "region": ""}]
    # when
    frame = features_from_trips([("p", trips)], NOV_AS_OF)
    # then it is in the window exactly when [as_of - 28 d, as_of) local holds it
    assert (len(frame) == 1) is inside, f"{why}: expected inside={inside}, got {len(frame)} rows"


def test_edge_days_and_hours_use_local_time():
    # given a crossing at 2021-11-25T15:59:59Z (23:59:59 local, Thu Nov 25) and one at
    # 2021-10-28T16:00:00Z (00:00 local, Fri Oct 29)
    trips = [
        {
            "ts": dt.datetime(2021, 11, 25, 15, 59, 59, tzinfo=UTC),
            "direction": "in",
            "mode": "car",
            "site_id": "S",
            "region": "",
        },
        {
            "ts": dt.datetime(2021, 10, 28, 16, 0, 0, tzinfo=UTC),
            "direction": "in",
            "mode": "car",
            "site_id": "S",
            "region": "",
        },
    ]
    # when
    row = one(features_from_trips([("p", trips)], NOV_AS_OF), "p")
    # then days and hours are local: last day Nov 25, first Oct 29, hours 23.99972 and 0 (night)
    check(
        row,
        {
            "days_since_last": 1,
            "days_since_first": 28,
            "active_days": 2,
            "workdays_active": 2,
            "entry_hour_mean": (23 + 59 / 60 + 59 / 3600 + 0.0) / 2,  # two days: a habit
            "night_share": 1.0,  # 23:59:59 and 00:00 local are both night
        },
    )


def test_utc_timestamp_lands_on_the_local_day_and_hour():
    # given an entry at 2021-11-22T23:30Z = Tue 2021-11-23 07:30 local
    ts = dt.datetime(2021, 11, 22, 23, 30, tzinfo=UTC)
    trips = [{"ts": ts, "direction": "in", "mode": "car", "site_id": "S", "region": ""}]
    # when
    row = one(features_from_trips([("p", trips)], NOV_AS_OF), "p")
    # then it is a morning entry on Nov 23
    check(
        row,
        {
            "entry_hour_mean": None,  # one entry day is no habit (MIN_HABIT_DAYS = 2)
            "days_since_last": 3,
            "morning_entry_workdays": 1,  # 07:30 local, in [05:00, 10:00)
            "night_share": 0.0,
        },
    )


def test_no_trips_gives_an_empty_frame_with_every_column():
    # given no persons / when
    frame = features_from_trips([], NOV_AS_OF)
    # then
    assert frame.empty, "no trips must give no rows"
    assert list(frame.columns) == ["person_id", *FEATURE_NAMES, *CONTEXT_COLUMNS], (
        f"columns: {list(frame.columns)}"
    )


def test_model_matrix_is_float_with_nan_for_missing():
    # given a one-entry person (gap features missing)
    frame = features_from_trips([("once", [trip("2021-11-22", 7)])], NOV_AS_OF)
    # when
    x = model_matrix(frame)
    # then one float64 row per person, features in definition order, missing as NaN
    assert x.shape == (1, len(FEATURE_NAMES)), f"shape {x.shape}"
    assert x.dtype == np.float64, f"dtype {x.dtype}"
    assert np.isnan(x[0, FEATURE_NAMES.index("entry_gap_mode")]), "missing gap mode must be NaN"
    assert x[0, FEATURE_NAMES.index("crossings")] == 1.0, "crossings column misplaced"
    # and a frame without a feature column is refused
    with pytest.raises(ValueError, match="lacks column.*crossings"):
        model_matrix(frame.drop(columns=["crossings"]))
