"""The Chinese statutory working-day calendar (holidays and make-up working weekends, 调休)."""

from __future__ import annotations

import datetime as dt

import pytest

from features.sql import Window
from features.workdays import CalendarRangeError, calendar_table, day_number, is_workday
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
    from features.build import features_from_trips

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


def test_day_number_and_week_number():
    # given / when / then day 0 is 1970-01-01 and weeks change on Mondays
    assert day_number(dt.date(1970, 1, 1)) == 0, "day 0 is 1970-01-01"
    cal = Window(AS_OF).calendar()
    by_day = dict(zip(cal.column("day").to_pylist(), cal.column("week").to_pylist(), strict=True))
    sun, mon = day_number(dt.date(2021, 10, 10)), day_number(dt.date(2021, 10, 11))
    sat = day_number(dt.date(2021, 10, 9))
    assert by_day[sat] == by_day[sun], "Saturday and Sunday belong to the same week"
    assert by_day[mon] == by_day[sun] + 1, "a new week starts on Monday"
