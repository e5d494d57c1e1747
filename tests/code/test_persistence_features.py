"""Hand-computed values of the persistence and part-of-day features (issue 14).

November window (as_of 2021-11-26): local days 2021-10-29 (Fri) .. 2021-11-25 (Thu), 20 working
days, no long holiday. Its calendar weeks (Monday to Sunday): Oct 29-31, Nov 1-7, 8-14, 15-21,
22-25 -> 5 weeks; its 7-day blocks back from as_of (for `active_weeks`): Nov 19-25, 12-18, 5-11,
Oct 29-Nov 4 -> 4 blocks.
Festival window (as_of 2022-02-18): 2022-01-21 (Fri) .. 2022-02-17 (Thu). Days off 01-31 .. 02-06
(Spring Festival, 7 days: a long holiday); 01-29/30 (Sat/Sun) are make-up working days. Working
days: Jan 21, 24-28, 29, 30, Feb 7-11, 14-17 = 1 + 5 + 2 + 5 + 4 = 17.
"""

from __future__ import annotations

import datetime as dt

from commuter_badge.features.build import features_from_trips
from commuter_badge.features.sql import Window, calendar_weeks
from tests.code.test_features import NOV_WORKDAYS, check
from tests.code.tripdata import NOV_AS_OF, one, trip

FESTIVAL_AS_OF = dt.date(2022, 2, 18)


def _commuter(days, in_h=7, in_m=30, out_h=18, out_m=0):
    trips = []
    for d in days:
        trips += [trip(d, in_h, in_m, direction="in"), trip(d, out_h, out_m, direction="out")]
    return trips


def test_daily_commuter_is_persistent_in_every_sense():
    # given a commuter in at 07:30 and out at 18:00 on each of November's 20 working days
    row = one(features_from_trips([("c", _commuter(NOV_WORKDAYS))], NOV_AS_OF), "c")
    # then: seen in all 4 blocks; 20 of 20 working days in every denominator
    check(
        row,
        {
            "active_weeks": 4,
            "span_workday_coverage": 1.0,  # Oct 29 .. Nov 25 holds all 20 working days
            "active_week_workday_coverage": 1.0,
            "evening_exit_workdays": 20,  # 18:00 is in [16:00, 22:00)
            "exit_hour_mean": 18.0,
            "stay_hours_mean": 10.5,  # 07:30 -> 18:00
        },
    )


def test_a_week_of_leave_does_not_count_against_the_leave_tolerant_coverage():
    # given the same commuter away Monday 8 to Friday 12 November
    leave = {dt.date(2021, 11, d) for d in (8, 9, 10, 11, 12)}
    days = [d for d in NOV_WORKDAYS if d not in leave]
    row = one(features_from_trips([("c", _commuter(days))], NOV_AS_OF), "c")
    check(
        row,
        {
            "workday_coverage": 0.75,  # 15 / 20: the plain share drops
            "active_weeks": 4,  # blocks Nov 5-11 and 12-18 still hold Nov 5 and 15-18
            # 15 / 15 working days of the 4 calendar weeks seen (Nov 8-14 is empty)
            "active_week_workday_coverage": 1.0,
            "span_workday_coverage": 0.75,  # first Oct 29, last Nov 25: 15 / 20
        },
    )


def test_a_hospital_carer_fills_a_short_span_and_leaves_early():
    # given daily visits (weekends too) from Wed 10 to Sun 21 November, 09:00 in, 15:00 out
    days = [dt.date(2021, 11, d) for d in range(10, 22)]
    row = one(features_from_trips([("h", _commuter(days, 9, 0, 15, 0))], NOV_AS_OF), "h")
    check(
        row,
        {
            "active_weeks": 3,  # blocks Nov 5-11, 12-18 and 19-25
            # working days Nov 10, 11, 12, 15-19 = 8, all inside the span Nov 10 .. 21
            "span_workday_coverage": 1.0,
            # 8 of the 10 working days of the calendar weeks Nov 8-14 and 15-21
            "active_week_workday_coverage": 0.8,
            "evening_exit_workdays": 0,  # 15:00 is before 16:00
            "exit_hour_mean": 15.0,
            "stay_hours_mean": 6.0,
        },
    )


def test_leave_around_the_spring_festival_counts_as_absence_but_every_week_is_active():
    # given a commuter on every working day of the festival window except the leave that
    # stretches the holiday: Jan 26-28 before it, Feb 7-8 after it. (A coverage that left the
    # holiday's edges out forgave the same absence in people who had stopped commuting before
    # the holiday, and was removed: docs/guide/data.md, "Features".)
    window = Window(FESTIVAL_AS_OF)
    work = window.days().column("is_workday").to_pylist()
    start = window.start
    workdays = [start + dt.timedelta(days=i) for i, w in enumerate(work) if w]
    assert len(workdays) == 17, "the docstring's count of working days is wrong"
    leave = {dt.date(2022, 1, 26), dt.date(2022, 1, 27), dt.date(2022, 1, 28)}
    leave |= {dt.date(2022, 2, 7), dt.date(2022, 2, 8)}
    days = [d for d in workdays if d not in leave]
    row = one(features_from_trips([("c", _commuter(days))], FESTIVAL_AS_OF), "c")
    check(
        row,
        {
            "workday_coverage": 12 / 17,
            "span_workday_coverage": 12 / 17,  # Jan 21 .. Feb 17 holds all 17
            # the festival week has no working day; the weeks with one were all seen
            "active_week_workday_coverage": 12 / 17,
            # blocks Feb 11-17, Feb 4-10 (9, 10), Jan 28-Feb 3 (29, 30), Jan 21-27 (21, 24, 25)
            "active_weeks": 4,
            "days_since_last": 1,
        },
    )


def test_calendar_weeks_start_on_mondays():
    # Friday, Saturday, Sunday, then a full week, then Monday
    dows = [4, 5, 6, 0, 1, 2, 3, 4, 5, 6, 0]
    assert calendar_weeks(dows) == [[0, 1, 2], [3, 4, 5, 6, 7, 8, 9], [10]]


def test_clock_habits_need_two_days():
    # given one visitor seen on two days (in 18:00 Fri 5 Nov, out 18:30 Mon 15 Nov)
    trips = [trip("2021-11-05", 18, 0, direction="in"), trip("2021-11-15", 18, 30, direction="out")]
    row = one(features_from_trips([("v", trips)], NOV_AS_OF), "v")
    # then no clock-time habit is read off one entry and one exit: a spread of one value would be
    # 0, the most regular reading there is
    check(
        row,
        {
            "entry_hour_mean": None,
            "entry_hour_spread": None,
            "exit_hour_mean": None,
            "exit_hour_spread": None,
            "stay_hours_mean": None,
            "active_weeks": 2,
        },
    )
    # and a commuter seen on two days has them
    row = one(features_from_trips([("c", _commuter(NOV_WORKDAYS[:2]))], NOV_AS_OF), "c")
    check(row, {"entry_hour_mean": 7.5, "entry_hour_spread": 0.0, "stay_hours_mean": 10.5})
