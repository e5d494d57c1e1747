"""The Chinese statutory working-day calendar (holidays and make-up working weekends, 调休)."""

from __future__ import annotations

import datetime as dt

import pytest

from commuter_badge.features.sql import Window
from commuter_badge.features.workdays import (
    CalendarRangeError,
    calendar_table,
    day_number,
    is_workday,
)
from tests.conftest import AS_OF


@pytest.mark.parametrize(
    ("day", "working", "why"),
    [
        ("2021-10-09", True, "Saturday make-up working day for National Day"),
        ("2021-09-26", True, "Sunday make-up working day for National Day"),
        ("2021-10-04", False, "National Day holiday Monday"),
        ("2021-10-01", False, "National Day"),
        ("2021-10-16", False, "ordinary Saturday"),
        ("2021-10-17", False, "ordinary Sunday"),
        ("2021-10-13", True, "ordinary Wednesday"),
        ("2021-09-21", False, "Mid-Autumn Festival Tuesday"),
    ],
)
def test_statutory_working_days(day, working, why):
    # given a day of autumn 2021 / when it is looked up
    got = is_workday(dt.date.fromisoformat(day))
    # then the statutory calendar decides, not Monday-Friday
    assert got is working, f"{day} ({why}): expected working={working}, got {got}"


def test_year_outside_the_calendar_raises_with_the_date():
    # given a date the calendar package does not cover / when / then
    with pytest.raises(CalendarRangeError, match=r"no Chinese working-day calendar for 2030-01-02"):
        is_workday(dt.date(2030, 1, 2))


def test_calendar_range_error_is_a_value_error():
    # given / when / then callers catching ValueError also catch it
    assert issubclass(CalendarRangeError, ValueError), "CalendarRangeError should be a ValueError"


def test_features_for_an_uncovered_year_raise_calendar_range_error():
    # given an as_of whose window lies in an uncovered year
    from commuter_badge.features.build import features_from_trips

    # when / then the feature build fails clearly instead of guessing working days
    with pytest.raises(CalendarRangeError, match="2030"):
        features_from_trips([], dt.date(2030, 3, 1))


def test_calendar_table_for_the_october_window():
    # given the October window [2021-09-22, 2021-10-20)
    start = AS_OF - dt.timedelta(days=28)
    # when
    table = calendar_table(start, AS_OF)
    days = table.column("day").to_pylist()
    dows = table.column("dow").to_pylist()
    work = table.column("is_workday").to_pylist()
    # then one row per day, consecutive day numbers, Monday = 0, and 17 working days
    # (Sep 22-24, Sep 26, Sep 27-30, Oct 8, Oct 9, Oct 11-15, Oct 18-19)
    assert start == dt.date(2021, 9, 22), f"window start {start}"
    assert len(days) == 28, f"{len(days)} rows"
    assert days == list(range(day_number(start), day_number(AS_OF))), (
        "day numbers are not consecutive"
    )
    assert dows[0] == 2, f"2021-09-22 is a Wednesday (2), got {dows[0]}"
    assert sum(work) == 17, f"expected 17 working days, got {sum(work)}"
    assert work[days.index(day_number(dt.date(2021, 10, 9)))] == 1, "Oct 9 must be a working day"
    assert work[days.index(day_number(dt.date(2021, 10, 4)))] == 0, "Oct 4 must be a holiday"


def test_day_number_and_window_day_masks():
    # given the 28-day window before 2021-10-20 (it starts on Wednesday 2021-09-22)
    window = Window(AS_OF)
    assert window.start == dt.date(2021, 9, 22), f"window starts {window.start}"
    # when its day masks are built
    params = window.params()
    days = [window.start + dt.timedelta(days=i) for i in range(28)]
    # then bit i stands for start + i: working days (with 调休), Fridays, the last seven days
    assert day_number(dt.date(1970, 1, 1)) == 0, "day 0 is 1970-01-01"
    for i, d in enumerate(days):
        bit = 1 << i
        assert bool(params["workday_bits"] & bit) == is_workday(d), f"workday bit of {d}"
        assert bool(params["friday_bits"] & bit) == (d.weekday() == 4), f"Friday bit of {d}"
        assert bool(params["recent_bits"] & bit) == (d >= AS_OF - dt.timedelta(days=7)), f"{d}"
        assert bool(params[f"dow{d.weekday()}_bits"] & bit), f"weekday bit of {d}"
    assert params["workday_bits"] & (1 << days.index(dt.date(2021, 10, 9))), "Oct 9 works (调休)"
    assert not params["workday_bits"] & (1 << days.index(dt.date(2021, 10, 4))), "Oct 4 is off"
    assert sum(params[f"dow{k}_bits"] for k in range(7)) == 2**28 - 1, "each day has one weekday"


@pytest.mark.parametrize("window_days", [7, 63])
def test_window_length_is_bounded(window_days):
    # given / when / then a window too short for weekly patterns or too long for a 64-bit day mask
    with pytest.raises(ValueError, match="window_days must be between 8 and 62"):
        Window(AS_OF, window_days)
