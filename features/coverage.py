"""Does the trip data cover the feature window? Checked before any features are built.

A window past the data gives zero persons and a window that starts before the data gives
truncated histories: both look like valid output. So every command that builds features for an
`as_of` first asks for the data's time range (one DuckDB pass over the crossing instants) and
refuses a window with no crossing at all, naming both ranges, or warns with the dates when the
window sticks out on either side. Dates are Asia/Shanghai local days, as in the feature SQL.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from commuter_badge.errors import CommuterError
from commuter_badge.features.read import connect, register_trips, reporting_bad_rows
from commuter_badge.features.sql import Window
from commuter_badge.features.workdays import (
    LIBRARY_CALENDAR,
    SHANGHAI_OFFSET_SECONDS,
    WorkingCalendar,
)

SHANGHAI = dt.timezone(dt.timedelta(seconds=SHANGHAI_OFFSET_SECONDS))


class CoverageError(CommuterError, ValueError):
    """The trips hold no crossing in the requested window."""


@dataclass(frozen=True)
class Coverage:
    first: dt.datetime | None  # first crossing in the data (Shanghai time), None if no rows
    last: dt.datetime | None
    in_window: int  # crossings inside [as_of - window_days, as_of)
    window: Window
    warnings: tuple[str, ...]

    @property
    def days_past_data(self) -> int:
        """Days at the end of the window after the day of the last crossing (0: the data reaches it)."""
        if self.last is None:
            return self.window.window_days
        last_day = self.window.as_of - dt.timedelta(days=1)
        return max(0, (last_day - self.last.date()).days)

    def describe_data(self) -> str:
        if self.first is None:
            return "the trips hold no crossings"
        return f"the trips run from {self.first:%Y-%m-%d %H:%M} to {self.last:%Y-%m-%d %H:%M}"


def _window_text(window: Window) -> str:
    last_day = window.as_of - dt.timedelta(days=1)
    return f"{window.start} to {last_day} ({window.window_days} days before --as-of {window.as_of})"


def check_coverage(
    path: str | Path,
    as_of: dt.date,
    window_days: int,
    calendar: WorkingCalendar = LIBRARY_CALENDAR,
) -> Coverage:
    """The data's range against the window; raises CoverageError when no crossing falls inside."""
    window = Window(as_of, window_days, calendar)
    params = window.params()
    con = connect()
    files = register_trips(con, path, "trips")
    with reporting_bad_rows(con, files):
        first, last, inside = con.execute(
            "SELECT min(t), max(t), count(*) FILTER (WHERE t >= ? AND t < ?) FROM trips",
            [params["start_t"], params["end_t"]],
        ).fetchone()
    con.close()

    def local(t: int | None) -> dt.datetime | None:
        return None if t is None else dt.datetime.fromtimestamp(t, SHANGHAI)

    cov = Coverage(local(first), local(last), int(inside), window, ())
    if not inside:
        raise CoverageError(
            f"{path}: no crossing in the window {_window_text(window)}; "
            f"{cov.describe_data()}; choose an --as-of whose window overlaps the data"
        )
    warnings = []
    if cov.first.date() > window.start:
        warnings.append(
            f"the window starts {window.start} but the first crossing in {path} is "
            f"{cov.first.date()}: {(cov.first.date() - window.start).days} day(s) of every "
            "person's history are missing"
        )
    last_day = window.as_of - dt.timedelta(days=1)
    if cov.last.date() < last_day:
        warnings.append(
            f"the window ends {last_day} but the last crossing in {path} is {cov.last.date()}: "
            f"{(last_day - cov.last.date()).days} day(s) at the end of the window have no data"
        )
    return Coverage(cov.first, cov.last, cov.in_window, window, tuple(warnings))
