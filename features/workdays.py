"""The Chinese statutory working-day calendar, as a small table both SQL engines can join.

Working days come from `chinesecalendar` (holidays and make-up working weekends, 调休), not from a
Monday-Friday rule. Days are numbered as days since 1970-01-01 in Asia/Shanghai local time, so the
feature SQL can join on plain integers in DuckDB and Spark alike.
"""

from __future__ import annotations

import datetime as dt

import chinese_calendar
import pyarrow as pa

from commuter_badge.errors import CommuterError

EPOCH = dt.date(1970, 1, 1)
# Asia/Shanghai has been UTC+8 without daylight saving since 1991; the feature SQL relies on it
# to turn an instant into a local day and hour with integer arithmetic (identical in every engine).
SHANGHAI_OFFSET_SECONDS = 8 * 3600


class CalendarRangeError(CommuterError, ValueError):
    """The calendar library has no statutory data for a requested date."""


def day_number(day: dt.date) -> int:
    """Days since 1970-01-01 (the integer key of the calendar table)."""
    return (day - EPOCH).days


def is_workday(day: dt.date) -> bool:
    """True on Chinese statutory working days, including make-up working weekends."""
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError as exc:
        raise CalendarRangeError(
            f"no Chinese working-day calendar for {day.isoformat()}: {exc}; "
            "upgrade the 'chinesecalendar' package for newer years"
        ) from None


def calendar_table(start: dt.date, end: dt.date) -> pa.Table:
    """One row per local day in [start, end): day number, weekday (0 = Monday), working-day flag."""
    days = [start + dt.timedelta(days=i) for i in range((end - start).days)]
    return pa.table(
        {
            "day": pa.array([day_number(d) for d in days], pa.int64()),
            "dow": pa.array([d.weekday() for d in days], pa.int32()),
            "is_workday": pa.array([int(is_workday(d)) for d in days], pa.int32()),
        }
    )
