"""The input example a version ships with: invented persons, never rows of real ones.

MLflow stores a logged model's input example (`input_example.json`, `serving_input_example.json`)
inside the model, and so inside every Bento built from it. It used to be the first five persons of
the training data. Now it is the features of five invented persons (a daily car commuter, a rail
commuter on four days a week, a weekend visitor, a one-off trip, a round trip without a morning
entry) built from made-up crossings by the same feature SQL (features/build.py), for the window the
model was trained on: realistic, consistent rows, and about no one.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from commuter_badge.features.build import features_from_trips, model_matrix
from commuter_badge.features.definitions import FEATURE_NAMES
from commuter_badge.features.workdays import LIBRARY_CALENDAR, WorkingCalendar

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
SITE = {"car": "CK-EXAMPLE", "rail": "RL-EXAMPLE", "bus": "BS-EXAMPLE"}
REGION = "example-region"


def _trip(day: dt.date, hour: float, direction: str, mode: str) -> dict:
    start = dt.datetime(day.year, day.month, day.day, tzinfo=SHANGHAI)
    return {
        "ts": start + dt.timedelta(minutes=round(hour * 60)),
        "direction": direction,
        "mode": mode,
        "site_id": SITE[mode],
        "region": REGION,
    }


def _round_trips(days: list[dt.date], mode: str, enter: float, leave: float) -> list[dict]:
    return [t for d in days for t in (_trip(d, enter, "in", mode), _trip(d, leave, "out", mode))]


def invented_persons(as_of: dt.date, window_days: int) -> list[tuple[str, list[dict]]]:
    """Five invented persons' crossings in the window before `as_of`."""
    days = [as_of - dt.timedelta(days=n) for n in range(window_days, 0, -1)]
    weekdays = [d for d in days if d.weekday() < 5]
    weekends = [d for d in days if d.weekday() >= 5]
    return [
        ("example-daily-car", _round_trips(weekdays, "car", 7.5, 18.25)),
        (
            "example-rail-4-days",
            _round_trips([d for d in weekdays if d.weekday() != 4], "rail", 8.0, 17.5),
        ),
        ("example-weekend-visitor", _round_trips(weekends[::2], "bus", 10.0, 20.0)),
        (
            "example-one-off",
            _round_trips(days[len(days) // 2 : len(days) // 2 + 1], "rail", 9.0, 21.0),
        ),
        ("example-evening-only", _round_trips(weekdays[::3], "car", 19.0, 23.0)),
    ]


def synthetic_example(
    as_of: dt.date, window_days: int, calendar: WorkingCalendar = LIBRARY_CALENDAR
) -> pd.DataFrame:
    """The input example: FEATURE_NAMES as float64 (missing as NaN) for the invented persons,
    under the working-day `calendar` the model was trained with."""
    persons = invented_persons(as_of, window_days)
    frame = features_from_trips(persons, as_of, window_days, calendar=calendar)
    return pd.DataFrame(model_matrix(frame), columns=list(FEATURE_NAMES))
