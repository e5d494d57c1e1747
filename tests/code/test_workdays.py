"""The Chinese statutory working-day calendar (holidays and make-up working weekends, 调休)."""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from pathlib import Path

import chinese_calendar
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commuter_badge.features.build import features_from_trips
from commuter_badge.features.holidays import STATUTORY_HOLIDAYS
from commuter_badge.features.sql import Window
from commuter_badge.features.workdays import (
    LIBRARY_CALENDAR,
    CalendarRangeError,
    day_number,
    load_calendar,
    open_calendar,
)
from tests.conftest import AS_OF, AS_OF_2027

SHANGHAI = dt.timezone(dt.timedelta(hours=8))


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
    got = LIBRARY_CALENDAR.is_workday(dt.date.fromisoformat(day))
    # then the statutory calendar decides, not Monday-Friday
    assert got is working, f"{day} ({why}): expected working={working}, got {got}"


def test_year_outside_the_calendar_raises_with_the_date():
    # given a date the calendar package does not cover / when / then
    with pytest.raises(
        CalendarRangeError, match=r"no Chinese working-day calendar for 2030 \(2030-01-02\)"
    ):
        LIBRARY_CALENDAR.is_workday(dt.date(2030, 1, 2))


def test_calendar_range_error_is_a_value_error():
    # given / when / then callers catching ValueError also catch it
    assert issubclass(CalendarRangeError, ValueError), "CalendarRangeError should be a ValueError"


def test_features_for_an_uncovered_year_raise_calendar_range_error():
    # given an as_of whose window lies in an uncovered year
    # when / then the feature build fails clearly instead of guessing working days
    with pytest.raises(CalendarRangeError, match="2030"):
        features_from_trips([], dt.date(2030, 3, 1))


def test_calendar_table_for_the_october_window():
    # given the October window [2021-09-22, 2021-10-20)
    start = AS_OF - dt.timedelta(days=28)
    # when
    table = LIBRARY_CALENDAR.table(start, AS_OF)
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
        assert bool(params["workday_bits"] & bit) == LIBRARY_CALENDAR.is_workday(d), (
            f"workday bit of {d}"
        )
        assert bool(params["friday_bits"] & bit) == (d.weekday() == 4), f"Friday bit of {d}"
        assert bool(params["recent_bits"] & bit) == (d >= AS_OF - dt.timedelta(days=7)), f"{d}"
        assert bool(params[f"dow{d.weekday()}_bits"] & bit), f"weekday bit of {d}"
    assert params["workday_bits"] & (1 << days.index(dt.date(2021, 10, 9))), "Oct 9 works (调休)"
    assert not params["workday_bits"] & (1 << days.index(dt.date(2021, 10, 4))), "Oct 4 is off"
    assert sum(params[f"dow{k}_bits"] for k in range(7)) == 2**28 - 1, "each day has one weekday"


def test_window_calendar_of_national_day_and_of_a_plain_month():
    # given the 28 days before 2021-10-20 (National Day 10-01..07, make-up Saturdays 09-26, 10-09)
    october = LIBRARY_CALENDAR.window_calendar(dt.date(2021, 10, 20), 28)
    # then the monitor sees three fewer working days than in November's plain window
    assert october == {"days": 28, "working_days": 17, "weekdays_off": 5, "weekend_working_days": 2}
    november = LIBRARY_CALENDAR.window_calendar(dt.date(2021, 11, 20), 28)
    assert november == {
        "days": 28,
        "working_days": 20,
        "weekdays_off": 0,
        "weekend_working_days": 0,
    }


@settings(max_examples=60, deadline=None)
@given(st.dates(dt.date(2021, 1, 10), dt.date(2025, 12, 31)), st.integers(8, 62))
def test_window_calendar_counts_every_day_once(as_of, window_days):
    cal = LIBRARY_CALENDAR.window_calendar(as_of, window_days)
    days = [as_of - dt.timedelta(days=i) for i in range(1, window_days + 1)]
    weekend = sum(d.weekday() >= 5 for d in days)
    assert cal["days"] == window_days
    assert cal["working_days"] == sum(map(LIBRARY_CALENDAR.is_workday, days))
    off = cal["weekdays_off"] + weekend - cal["weekend_working_days"]
    assert cal["working_days"] + off == window_days, "a day is working or off, never both"


@pytest.mark.parametrize("window_days", [7, 63])
def test_window_length_is_bounded(window_days):
    # given / when / then a window too short for weekly patterns or too long for a 64-bit day mask
    with pytest.raises(ValueError, match="window_days must be between 8 and 62"):
        Window(AS_OF, window_days)


# --- operator schedule files merged with the library (issue 16) ---------------------------------

ENGLISH = {
    "New Year's Day": "元旦",
    "Spring Festival": "春节",
    "Tomb-sweeping Day": "清明节",
    "Labour Day": "劳动节",
    "Dragon Boat Festival": "端午节",
    "Mid-autumn Festival": "中秋节",
    "National Day": "国庆节",
}


def library_rows(year: int) -> list[tuple[dt.date, str, str]]:
    """The library's own exceptions for `year`, as schedule rows (what its notice said)."""
    rows = [(d, "holiday", n) for d, n in chinese_calendar.holidays.items() if d.year == year]
    rows += [(d, "workday", n) for d, n in chinese_calendar.workdays.items() if d.year == year]
    return sorted((d, k, ENGLISH[n]) for d, k, n in rows)


def write_rows(path, rows) -> str:
    path.write_text(
        "date,kind,name\n" + "".join(f"{d.isoformat()},{k},{n}\n" for d, k, n in rows),
        encoding="utf-8",
    )
    return str(path)


def test_an_as_of_no_calendar_covers_is_one_error_saying_how_to_supply_one():
    # given the library alone (it stops at 2026) / when the window across New Year 2027 is built
    with pytest.raises(CalendarRangeError) as caught:
        Window(AS_OF_2027).days()
    # then one line names the year and how an operator supplies its schedule
    message = str(caught.value)
    for part in (
        "for 2027",
        "covers 2004-2026",
        "--calendar FILE",
        "COMMUTER_CALENDAR",
        "date,kind,name",
    ):
        assert part in message, f"{part!r} missing from: {message}"
    assert "\n" not in message, "one line"


def test_the_2027_file_covers_the_window_across_new_year(calendar_2027):
    # given the synthetic 2027 schedule as the window's calendar
    window = Window(AS_OF_2027, calendar=calendar_2027)
    # when the window [2026-12-23, 2027-01-20) is built
    params = window.params()
    days = [window.start + dt.timedelta(days=i) for i in range(28)]
    # then 2026 days come from the library and 2027 days from the file: 7 working days in
    # Dec 23-31 (Wed-Fri, Mon-Thu), none on Jan 1-3 (元旦), then Jan 4-8, 11-15, 18-19
    assert params["n_workdays"] == 19, f"expected 19 working days, got {params['n_workdays']}"
    for d in (dt.date(2027, 1, 1), dt.date(2027, 1, 2), dt.date(2026, 12, 26)):
        assert not params["workday_bits"] & (1 << days.index(d)), f"{d} must be off"
    for d in (dt.date(2027, 1, 4), dt.date(2026, 12, 31)):
        assert params["workday_bits"] & (1 << days.index(d)), f"{d} must be a working day"
    assert calendar_2027.info()["years"] == "2004-2027", calendar_2027.info()


def test_the_file_wins_over_the_library_and_says_so(tmp_path, caplog):
    # given a 2026 schedule that moves the National Day make-up day from Sat Oct 10 to Sun Oct 11
    rows = [r for r in library_rows(2026) if r[0] != dt.date(2026, 10, 10)]
    rows.append((dt.date(2026, 10, 11), "workday", "国庆节"))
    path = write_rows(tmp_path / "cal2026.csv", rows)
    # when it is used
    with caplog.at_level(logging.WARNING, logger="commuter_badge.features.workdays"):
        calendar = open_calendar(path)
    # then the file decides 2026, and one warning names the year and the two dates that differ
    assert calendar.is_workday(dt.date(2026, 10, 11)), "the file's make-up Sunday works"
    assert not calendar.is_workday(dt.date(2026, 10, 10)), (
        "the library's make-up Saturday no longer does"
    )
    assert calendar.overrides() == {2026: [dt.date(2026, 10, 10), dt.date(2026, 10, 11)]}
    warnings = [r.getMessage() for r in caplog.records if "overrides" in r.getMessage()]
    assert len(warnings) == 1, f"one warning expected, got {warnings}"
    assert "for 2026: 2 date(s) differ (2026-10-10, 2026-10-11)" in warnings[0], warnings[0]
    assert calendar.info()["overridden_years"] == [2026], calendar.info()


def test_a_file_repeating_the_library_agrees_and_says_so(tmp_path, caplog):
    # given the library's own 2025 exceptions as a file / when it is used
    path = write_rows(tmp_path / "cal2025.csv", library_rows(2025))
    with caplog.at_level(logging.WARNING, logger="commuter_badge.features.workdays"):
        calendar = open_calendar(path)
    # then nothing changes, and the warning still says the file speaks for 2025
    assert calendar.overrides() == {2025: []}, calendar.overrides()
    assert any("agrees on every day" in r.getMessage() for r in caplog.records), caplog.text


def test_calendars_side_by_side_leave_no_stale_table_or_query(tmp_path):
    # given a person entering every morning of a week whose Friday a 2026 file makes a holiday
    person = [
        {"ts": dt.datetime(2026, 3, d, 7, 30, tzinfo=SHANGHAI), "direction": "in", "mode": "car",
         "site_id": "CK-G1-XIJI", "region": "langfang-xianghe"}
        for d in range(2, 7)
    ]  # fmt: skip
    as_of = dt.date(2026, 3, 9)
    rows = [*library_rows(2026), (dt.date(2026, 3, 6), "holiday", "春节")]
    path = write_rows(tmp_path / "cal.csv", rows)

    def workdays_active(engine: str, calendar) -> int:
        frame = features_from_trips([("p", person)], as_of, engine=engine, calendar=calendar)
        return int(frame["workdays_active"].iloc[0])

    # when the features are built with the library, then with the file, then the library again
    seen = []
    for calendar in (LIBRARY_CALENDAR, load_calendar(path), LIBRARY_CALENDAR):
        seen.append((workdays_active("sqlite", calendar), workdays_active("duckdb", calendar)))
    # then each engine follows the calendar it is given (no cached table or SQL text)
    assert seen == [(5, 5), (4, 4), (5, 5)], f"(sqlite, duckdb) working days active: {seen}"


@st.composite
def schedules(draw):
    """A valid one-year schedule for a library year: the seven holidays, then random rows."""
    year = draw(st.integers(2005, 2025))
    offsets = draw(st.lists(st.integers(0, 333), min_size=7, max_size=40, unique=True))
    rows = []
    for i, off in enumerate(offsets):
        day = dt.date(year, 1, 1) + dt.timedelta(days=off)
        if i < 7:
            rows.append((day, "holiday", STATUTORY_HOLIDAYS[i]))
            continue
        workday = day.weekday() >= 5 and draw(st.booleans())
        rows.append(
            (day, "workday" if workday else "holiday", draw(st.sampled_from(STATUTORY_HOLIDAYS)))
        )
    return year, rows  # fmt: skip


@settings(max_examples=25, deadline=None)
@given(schedules())
def test_the_file_wins_exactly_on_its_year(schedule):
    # given a random valid schedule for year Y, which the library also covers
    year, rows = schedule
    listed = {d: k == "workday" for d, k, _ in rows}
    with tempfile.TemporaryDirectory() as tmp:
        calendar = load_calendar(write_rows(Path(tmp) / "cal.csv", rows))
    # when every day from December of Y-1 to January of Y+1 is looked up
    day, differ = dt.date(year - 1, 12, 1), []
    while day < dt.date(year + 1, 2, 1):
        got, library = calendar.is_workday(day), bool(chinese_calendar.is_workday(day))
        # then in Y the file decides (listed days as listed, the rest by weekday), elsewhere the
        # library does, and the override report lists exactly the days of Y where they differ
        if day.year == year:
            want = listed.get(day, day.weekday() < 5)
            assert got is want, f"{day}: file year, expected {want}, got {got}"
            if got != library:
                differ.append(day)
        else:
            assert got is library, f"{day}: outside the file's year, expected the library"
        day += dt.timedelta(days=1)
    assert calendar.overrides() == {year: differ}, "override report differs from the days changed"
    assert calendar.overridden_years() == [year], "the years reported by /readyz"
