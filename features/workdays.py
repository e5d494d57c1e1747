"""The Chinese statutory working-day calendar, as a small table every SQL engine can join.

Working days come from `chinesecalendar` (holidays and make-up working weekends, 调休), not from a
Monday-Friday rule, merged with the operator's holiday schedule file (features/holidays.py) for
years the library does not know yet. Where both speak for a year, the file wins and a warning
lists the dates on which they disagree.

A command or a service worker opens its calendar once at its start with
`open_calendar(path_or_None)` (from `--calendar FILE` or COMMUTER_CALENDAR) and passes the
`WorkingCalendar` down (features/context.py `RunContext.calendar`) to every feature build, the
simulator and the person's side; nothing here is process state, so two calendars can be used side
by side in one process. Tables are cached per calendar object.

Days are numbered as days since 1970-01-01 in Asia/Shanghai local time, so the feature SQL can
join on plain integers in DuckDB, SQLite and Spark alike.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import importlib.metadata
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chinese_calendar
import pyarrow as pa

from commuter_badge.errors import CommuterError
from commuter_badge.features.holidays import FORMAT_HINT, HolidaySchedule, read_schedule

log = logging.getLogger(__name__)

EPOCH = dt.date(1970, 1, 1)
# Asia/Shanghai has been UTC+8 without daylight saving since 1991; the feature SQL relies on it
# to turn an instant into a local day and hour with integer arithmetic (identical in every engine).
SHANGHAI_OFFSET_SECONDS = 8 * 3600
LIBRARY = "chinesecalendar"
LIBRARY_VERSION = importlib.metadata.version(LIBRARY)
LIBRARY_YEARS = frozenset(d.year for d in chinese_calendar.holidays)
_SHOWN_OVERRIDES = 10  # dates named in the override warning before "..."


class CalendarRangeError(CommuterError, ValueError):
    """No calendar (library or schedule file) has statutory data for a requested date."""


def day_number(day: dt.date) -> int:
    """Days since 1970-01-01 (the integer key of the calendar table)."""
    return (day - EPOCH).days


def year_ranges(years: frozenset[int] | set[int]) -> str:
    """Years as compact ranges, e.g. '2004-2027' or '2004-2026, 2028' ('none' when empty)."""
    spans: list[list[int]] = []
    for y in sorted(years):
        if spans and y == spans[-1][1] + 1:
            spans[-1][1] = y
        else:
            spans.append([y, y])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans) or "none"


@dataclass(frozen=True, eq=False)
class WorkingCalendar:
    """chinesecalendar merged with an optional schedule file (the file wins for its years)."""

    schedule: HolidaySchedule | None = None

    @property
    def years(self) -> frozenset[int]:
        return LIBRARY_YEARS | (self.schedule.years if self.schedule else frozenset())

    def verdict(self, day: dt.date) -> bool | None:
        """Working day or not; None when neither the file nor the library covers `day`."""
        if self.schedule is not None and (said := self.schedule.is_workday(day)) is not None:
            return said
        if day.year in LIBRARY_YEARS:
            return bool(chinese_calendar.is_workday(day))
        return None

    def is_workday(self, day: dt.date) -> bool:
        """True on statutory working days; CalendarRangeError for a day nothing covers."""
        said = self.verdict(day)
        if said is None:
            raise CalendarRangeError(self.uncovered(day.year, f" ({day.isoformat()})"))
        return said

    def uncovered(self, year: int, where: str = "") -> str:
        """The one-line error for a year no calendar covers, saying how to supply it."""
        file_part = (
            f" and calendar file {self.schedule.path} covers {year_ranges(self.schedule.years)}"
            if self.schedule
            else ""
        )
        return (
            f"no Chinese working-day calendar for {year}{where}: {LIBRARY} {LIBRARY_VERSION} "
            f"covers {year_ranges(LIBRARY_YEARS)}{file_part}; supply the State Council's {year} "
            f"holiday schedule with --calendar FILE or COMMUTER_CALENDAR=FILE, {FORMAT_HINT}"
        )

    def overrides(self) -> dict[int, list[dt.date]]:
        """Years where the file and the library both speak, each with the dates they disagree on."""
        if self.schedule is None:
            return {}
        days = {d for d in self.schedule.days if d.year in LIBRARY_YEARS}
        for year in self.schedule.years & LIBRARY_YEARS:
            days.update(_days(dt.date(year, 1, 1), dt.date(year + 1, 1, 1)))
        out: dict[int, list[dt.date]] = {d.year: [] for d in days}
        for day in sorted(days):
            if self.schedule.is_workday(day) != chinese_calendar.is_workday(day):
                out[day.year].append(day)
        return dict(sorted(out.items()))

    def overridden_years(self) -> list[int]:
        """The library's years the file speaks for (cheap: /readyz asks on every probe)."""
        if self.schedule is None:
            return []
        listed = {d.year for d in self.schedule.days}
        return sorted((listed | self.schedule.years) & LIBRARY_YEARS)

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this calendar on a model: library version, file digest, years, and a
        digest of each year's working days (so a calendar that only adds years is no change)."""
        return {
            "library_version": LIBRARY_VERSION,
            "file_digest": self.schedule.digest if self.schedule else "none",
            "years": year_ranges(self.years),
            "year_digests": self.year_digests,
        }

    @functools.cached_property
    def year_digests(self) -> dict[str, str]:
        """Per covered year, a short digest of its working-day flags, day by day."""
        out = {}
        for year in sorted(self.years):
            flags = bytes(
                self.is_workday(d) for d in _days(dt.date(year, 1, 1), dt.date(year + 1, 1, 1))
            )
            out[str(year)] = hashlib.sha256(flags).hexdigest()[:16]
        return out

    def info(self) -> dict[str, Any]:
        """The fingerprint and where it comes from, for /readyz and logs."""
        return {
            "library": LIBRARY,
            "library_version": LIBRARY_VERSION,
            "library_years": year_ranges(LIBRARY_YEARS),
            "file": self.schedule.path if self.schedule else None,
            "file_digest": self.schedule.digest if self.schedule else None,
            "file_years": year_ranges(self.schedule.years) if self.schedule else "none",
            "years": year_ranges(self.years),
            "overridden_years": self.overridden_years(),
        }

    def params(self) -> dict[str, str]:
        """This calendar as MLflow params/tags: calendar_library_version, _file_digest, _years."""
        found = self.fingerprint()
        return {f"calendar_{k}": found[k] for k in ("library_version", "file_digest", "years")}

    def window_calendar(self, as_of: dt.date, window_days: int) -> dict[str, int]:
        """What this calendar makes of the window before `as_of`: the counts every day-count
        feature is measured against. Two windows with the same counts give a population the
        same features."""
        days = _days(as_of - dt.timedelta(days=window_days), as_of)
        work = [self.is_workday(d) for d in days]
        weekend = [d.weekday() >= 5 for d in days]
        return {
            "days": len(days),
            "working_days": sum(work),
            "weekdays_off": sum(not w and not e for w, e in zip(work, weekend, strict=True)),
            "weekend_working_days": sum(w and e for w, e in zip(work, weekend, strict=True)),
        }

    def table(self, start: dt.date, end: dt.date) -> pa.Table:
        """One row per local day in [start, end): day number, weekday (0 = Monday), working-day
        flag (cached per calendar and window)."""
        return _table(self, start, end)


# The statutory calendar alone: frozen, so a default that no run can change.
LIBRARY_CALENDAR = WorkingCalendar()


def load_calendar(path: str | Path | None) -> WorkingCalendar:
    """The merged calendar for a schedule file (or the library alone for None), validated."""
    return WorkingCalendar(read_schedule(path) if path else None)


def open_calendar(path: str | Path | None) -> WorkingCalendar:
    """The calendar a command or a service worker runs under (`load_calendar`), saying where
    the file overrides the library. Called once at the edge; the result is passed down."""
    calendar = load_calendar(path)
    for year, dates in calendar.overrides().items():
        shown = ", ".join(d.isoformat() for d in dates[:_SHOWN_OVERRIDES])
        more = " ..." if len(dates) > _SHOWN_OVERRIDES else ""
        log.warning(
            "calendar file %s overrides %s %s for %d: %d date(s) differ%s",
            calendar.schedule.path if calendar.schedule else "",
            LIBRARY,
            LIBRARY_VERSION,
            year,
            len(dates),
            f" ({shown}{more})" if dates else " (none; the file agrees on every day)",
        )
    return calendar


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days)]


@functools.lru_cache(maxsize=128)
def _table(calendar: WorkingCalendar, start: dt.date, end: dt.date) -> pa.Table:
    days = _days(start, end)
    work = [calendar.verdict(d) for d in days]
    if None in work:  # one error for the window, naming the first year nothing covers
        year = days[work.index(None)].year
        raise CalendarRangeError(
            calendar.uncovered(year, f" (the {len(days)} days before {end.isoformat()})")
        )
    return pa.table(
        {
            "day": pa.array([day_number(d) for d in days], pa.int64()),
            "dow": pa.array([d.weekday() for d in days], pa.int32()),
            "is_workday": pa.array([int(w) for w in work], pa.int32()),
        }
    )
