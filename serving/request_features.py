"""A request's features as the booster's float64 matrix, without the batch frame's dtypes.

`features_from_trips` answers with the batch frame (`features.build.to_frame`: an Arrow table from
SQLite's rows, then pandas with nullable Int64 counts), which `model_matrix` then turns back into
float64 for the booster. For one person those conversions took longer than the SQLite query
itself (benchmarks/service_bench.py; docs/guide/operations.md, Performance). The service needs only the matrix, so for the
requests SQLite runs (up to `SQLITE_MAX_TRIPS` trips) it reads the matrix straight off the query's
rows (`sqlite_engine.query`): the same SQL, the same numbers (tests/code/test_request_features.py
holds them equal to `model_matrix(features_from_trips(...))`). Larger requests go through
`features_from_trips` on the worker's DuckDB connection, where the conversions are small beside
the query.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import duckdb
import numpy as np
import pandas as pd

from commuter_badge.features import sqlite_engine
from commuter_badge.features.build import (
    SQLITE_MAX_TRIPS,
    features_from_trips,
    model_matrix,
    trip_rows,
)
from commuter_badge.features.definitions import FEATURE_NAMES
from commuter_badge.features.sql import HASH_CLASH, Window
from commuter_badge.features.workdays import LIBRARY_CALENDAR, WorkingCalendar

Persons = Sequence[tuple[str, Sequence[Mapping[str, object]]]]


def request_features(
    persons: Persons,
    as_of: dt.date,
    window_days: int,
    con: duckdb.DuckDBPyConnection | None,
    calendar: WorkingCalendar = LIBRARY_CALENDAR,
) -> tuple[list[str], pd.DataFrame]:
    """(ids of the persons with crossings in the window, in row order; their features as a float64
    frame of FEATURE_NAMES, missing as NaN), which `CommuterModel.explain` takes as it is; the
    working days are `calendar`'s (the worker's)."""
    if sum(len(trips) for _, trips in persons) > SQLITE_MAX_TRIPS:
        frame = features_from_trips(persons, as_of, window_days, con, calendar=calendar)
        return frame["person_id"].tolist(), _matrix_frame(model_matrix(frame))
    result = sqlite_engine.query(trip_rows(persons), Window(as_of, window_days, calendar))
    ids = [row[0] for row in result]
    if None in ids:
        raise RuntimeError(HASH_CLASH)
    # Rows hold person_id, then the features in definition order (FEATURE_NAMES' order); None
    # becomes NaN in a float64 array, as model_matrix makes a missing value.
    x = np.array([row[1 : 1 + len(FEATURE_NAMES)] for row in result], dtype="float64")
    return ids, _matrix_frame(x.reshape(len(result), len(FEATURE_NAMES)))


def _matrix_frame(x: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(x, columns=list(FEATURE_NAMES), copy=False)
