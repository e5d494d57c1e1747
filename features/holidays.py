"""The operator's holiday schedule file: the State Council's notice for years the library lacks.

`chinesecalendar` learns a year's holidays and make-up working days (调休) only with a new
release, often months after the State Council publishes them. Operators therefore supply the
schedule as a small CSV file, one row per date that is not an ordinary day:

    date,kind,name
    2027-01-01,holiday,元旦
    2027-02-06,holiday,春节
    2027-02-20,workday,春节

`kind` is `holiday` (a day off) or `workday` (a make-up working Saturday or Sunday); `name` is the
holiday the row belongs to. Blank lines and lines starting with `#` are ignored, so a file can
cite the notice it was typed from. For every year in the file, the file is that year's complete
list of exceptions: any day it does not list follows the weekday rule. A December row named 元旦
belongs to the next year's schedule (the New Year holiday or its make-up day can start on
30 December), so it does not make its own year a file year.

Validation is strict because a half-typed file silently changes who gets a badge: a date given
twice or unparseable, an unknown kind, a `workday` that is not a Saturday or Sunday, a row without
a name, and a year that does not name all seven statutory holidays are errors naming the file and
line. The file's sha256 digest identifies it wherever the calendar is recorded.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from commuter_badge.errors import CommuterError

HEADER = ("date", "kind", "name")
KINDS = ("holiday", "workday")
# The seven statutory holidays (全体公民放假的节日) every year's notice covers.
STATUTORY_HOLIDAYS = ("元旦", "春节", "清明节", "劳动节", "端午节", "中秋节", "国庆节")
NEW_YEAR = "元旦"
FORMAT_HINT = (
    "a CSV file with header date,kind,name and one row per holiday or make-up workday, "
    "e.g. 2027-02-06,holiday,春节"
)
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class CalendarFileError(CommuterError, ValueError):
    """The holiday schedule file cannot be read or breaks a rule; the message names the line."""


@dataclass(frozen=True)
class ScheduledDay:
    """One row of the file: a day off or a make-up working day, and the holiday it belongs to."""

    kind: str
    name: str
    line: int

    @property
    def is_workday(self) -> bool:
        return self.kind == "workday"


@dataclass(frozen=True, eq=False)
class HolidaySchedule:
    """A validated schedule file: its rows by date, the years it is complete for, its digest."""

    path: str
    digest: str
    days: Mapping[dt.date, ScheduledDay]
    years: frozenset[int]

    def is_workday(self, day: dt.date) -> bool | None:
        """The file's verdict on `day`, or None when the file does not speak for it."""
        row = self.days.get(day)
        if row is not None:
            return row.is_workday
        if day.year in self.years:
            return day.weekday() < 5
        return None


def schedule_year(day: dt.date, name: str) -> int:
    """The year whose notice a row belongs to (December 元旦 rows belong to the next year)."""
    return day.year + 1 if day.month == 12 and name == NEW_YEAR else day.year


def read_schedule(path: str | Path) -> HolidaySchedule:
    """Read and validate a schedule file; raises CalendarFileError naming the file and line."""
    p = Path(path).expanduser()
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise CalendarFileError(
            f"calendar file {p}: cannot be read ({exc.strerror or exc}); expected {FORMAT_HINT}"
        ) from None
    try:
        text = raw.decode("utf-8-sig")  # spreadsheets often save UTF-8 with a byte-order mark
    except UnicodeDecodeError as exc:
        raise CalendarFileError(
            f"calendar file {p}: not UTF-8 text (byte {exc.start}); save it as UTF-8 CSV"
        ) from None
    days = _parse(p, text)
    years = _check_years(p, days)
    return HolidaySchedule(
        path=str(p.resolve()),
        digest=hashlib.sha256(raw).hexdigest(),
        days=days,
        years=frozenset(years),
    )


def _content_lines(text: str) -> list[tuple[int, str]]:
    return [
        (n, line)
        for n, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


def _parse(p: Path, text: str) -> dict[dt.date, ScheduledDay]:
    lines = _content_lines(text)
    if not lines:
        raise CalendarFileError(f"calendar file {p}: empty; expected {FORMAT_HINT}")
    n, head = lines[0]
    header = tuple(f.strip().lower() for f in next(csv.reader([head])))
    if header != HEADER:
        raise CalendarFileError(
            f"calendar file {p} line {n}: header must be date,kind,name (got {head.strip()!r})"
        )
    if len(lines) == 1:
        raise CalendarFileError(f"calendar file {p}: no rows after the header")
    days: dict[dt.date, ScheduledDay] = {}
    for n, line in lines[1:]:
        day, row = _row(p, n, line)
        if (earlier := days.get(day)) is not None:
            raise CalendarFileError(
                f"calendar file {p} line {n}: {day.isoformat()} is already given on line "
                f"{earlier.line}; give each date once"
            )
        days[day] = row
    return days


def _row(p: Path, n: int, line: str) -> tuple[dt.date, ScheduledDay]:
    where = f"calendar file {p} line {n}"
    fields = [f.strip() for f in next(csv.reader([line]))]
    if len(fields) != len(HEADER):
        raise CalendarFileError(
            f"{where}: expected 3 fields date,kind,name, got {len(fields)} ({line.strip()!r})"
        )
    text, kind, name = fields
    day = _date(text)
    if day is None:
        raise CalendarFileError(f"{where}: date {text!r} is not a date (expected YYYY-MM-DD)")
    if kind not in KINDS:
        raise CalendarFileError(f"{where}: kind {kind!r} is not one of holiday, workday")
    if not name:
        raise CalendarFileError(
            f"{where}: {day.isoformat()} has no name; name the holiday it belongs to (e.g. 春节)"
        )
    if kind == "workday" and day.weekday() < 5:
        raise CalendarFileError(
            f"{where}: {day.isoformat()} is a {_WEEKDAYS[day.weekday()]}; a make-up workday "
            "must be a Saturday or Sunday (weekdays are working days already)"
        )
    return day, ScheduledDay(kind=kind, name=name, line=n)


def _date(text: str) -> dt.date | None:
    if not _ISO_DATE.fullmatch(text):
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def _check_years(p: Path, days: Mapping[dt.date, ScheduledDay]) -> set[int]:
    """The file's years; each must name all seven statutory holidays on its holiday rows."""
    rows: dict[int, list[tuple[dt.date, ScheduledDay]]] = {}
    for day, row in days.items():
        rows.setdefault(schedule_year(day, row.name), []).append((day, row))
    for year in sorted(rows):
        named = {r.name for _, r in rows[year] if r.kind == "holiday"}
        missing = [h for h in STATUTORY_HOLIDAYS if h not in named]
        if missing:
            lines = sorted(r.line for _, r in rows[year])
            raise CalendarFileError(
                f"calendar file {p} lines {lines[0]}-{lines[-1]} (year {year}): no holiday row "
                f"names {', '.join(missing)}; each year in the file must name all seven "
                f"statutory holidays ({', '.join(STATUTORY_HOLIDAYS)}), because the file is "
                "that year's complete list of holidays and make-up workdays"
            )
    return set(rows)
