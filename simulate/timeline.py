"""The simulated days of one world: working days, weekdays, where the window starts, long holidays.

Local days from ``as_of - window_days - 7`` up to ``as_of + 2`` (exclusive) are simulated, so some
trips fall before the feature window and some at/after ``as_of`` (point-in-time tests need both).
Days are indices 0..n_days-1; behaviour is defined on Asia/Shanghai local days and clock times.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from commuter_badge.features.workdays import CalendarRangeError, WorkingCalendar

DAYS_BEFORE_WINDOW = 7
DAYS_AFTER_AS_OF = 2
# A run of at least this many days off is a statutory holiday (ordinary weekends are two days), so
# long holidays follow the world's working-day calendar, schedule files included.
LONG_HOLIDAY_DAYS = 3


@dataclass(frozen=True)
class Timeline:
    start: dt.date  # the first simulated local day
    n_days: int
    workday: np.ndarray  # bool per simulated local day
    dow: np.ndarray  # 0 = Monday
    as_of: int  # index of as_of among the simulated days
    window_start: int
    # (first, last) day indices of each run of at least LONG_HOLIDAY_DAYS days off (the Spring
    # Festival, National Day, three-day holidays); runs may reach past either end of the span.
    long_holidays: tuple[tuple[int, int], ...]


def timeline(as_of: dt.date, window_days: int, calendar: WorkingCalendar) -> Timeline:
    """The simulated days around `as_of` under `calendar`; raises CalendarRangeError outside the
    calendar's years."""
    start = as_of - dt.timedelta(days=window_days + DAYS_BEFORE_WINDOW)
    n_days = window_days + DAYS_BEFORE_WINDOW + DAYS_AFTER_AS_OF
    days = [start + dt.timedelta(days=i) for i in range(n_days)]
    workday = np.array([calendar.is_workday(x) for x in days])
    return Timeline(
        start=start,
        n_days=n_days,
        workday=workday,
        dow=np.array([x.weekday() for x in days]),
        as_of=window_days + DAYS_BEFORE_WINDOW,
        window_start=DAYS_BEFORE_WINDOW,
        long_holidays=_long_holidays(start, workday, calendar),
    )


def _long_holidays(
    start: dt.date, workday: np.ndarray, calendar: WorkingCalendar
) -> tuple[tuple[int, int], ...]:
    """Runs of days off at least LONG_HOLIDAY_DAYS long, extended to their full length.

    A run is followed beyond the simulated span (up to two weeks) so that a festival which began
    before the first simulated day still counts as long.
    """

    def off(i: int) -> bool:
        if 0 <= i < len(workday):
            return not workday[i]
        try:  # beyond the span a calendar may end: an unknown day ends the run
            return not calendar.is_workday(start + dt.timedelta(days=i))
        except CalendarRangeError:
            return False

    runs, i = [], 0
    while i < len(workday):
        if not off(i):
            i += 1
            continue
        first = i
        while first > -14 and off(first - 1):
            first -= 1
        last = i
        while last < len(workday) + 14 and off(last + 1):
            last += 1
        if last - first + 1 >= LONG_HOLIDAY_DAYS:
            runs.append((first, last))
        i = last + 1
    return tuple(runs)
