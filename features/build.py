"""Running the feature query in DuckDB: from trip files (batch) or from in-memory trips (request time)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from features.definitions import CONTEXT_COLUMNS, FEATURE_NAMES, FEATURES
from features.read import connect, register_trips
from features.schema import DEFAULT_WINDOW_DAYS
from features.sql import Window, feature_sql

_TRIPS_SCHEMA = pa.schema(
    [("person_id", pa.string()), ("t", pa.int64()), ("direction", pa.string()),
     ("mode", pa.string()), ("site_id", pa.string()), ("region", pa.string())]
)


def _run(con: duckdb.DuckDBPyConnection, trips: str, window: Window) -> pd.DataFrame:
    calendar = window.calendar()
    con.register("calendar_window", calendar)
    try:
        sql = feature_sql(trips, "calendar_window", window.params(calendar), materialize=True)
        table = con.sql(sql).to_arrow_table()
    finally:
        con.unregister("calendar_window")
    if table.column("person_id").null_count:
        raise RuntimeError("two person ids share a 64-bit hash; features cannot be told apart (report this)")
    return to_frame(table)


def to_frame(table: pa.Table) -> pd.DataFrame:
    """Feature rows with deliberate dtypes: str ids and context, nullable Int64 counts, float64 rest."""
    frame = pd.DataFrame({"person_id": pd.Series(table.column("person_id").to_pylist(), dtype="str")})
    for f in FEATURES:
        col = table.column(f.name).to_numpy(zero_copy_only=False)
        frame[f.name] = pd.array(col, dtype="Int64") if f.kind == "int" else col.astype("float64")
    for c in CONTEXT_COLUMNS:
        frame[c] = pd.Series(table.column(c).to_pylist(), dtype="str")
    return frame


def build_features(
    path: str | Path,
    as_of: dt.date,
    window_days: int = DEFAULT_WINDOW_DAYS,
    con: duckdb.DuckDBPyConnection | None = None,
) -> pd.DataFrame:
    """One row per person seen at `path` in the window before `as_of`: id, features, context."""
    con = con or connect()
    register_trips(con, path, "trips")
    return _run(con, "trips", Window(as_of, window_days))


def features_from_trips(
    persons: Iterable[tuple[str, Iterable[Mapping[str, object]]]],
    as_of: dt.date,
    window_days: int = DEFAULT_WINDOW_DAYS,
    con: duckdb.DuckDBPyConnection | None = None,
) -> pd.DataFrame:
    """Features for trips held in memory (the HTTP service): same SQL as batch, rows in id order.

    Each trip mapping holds `ts` (a tz-aware datetime), `direction`, `mode`, `site_id`, `region`.
    """
    cols: dict[str, list] = {name: [] for name in _TRIPS_SCHEMA.names}
    for person_id, trips in persons:
        for trip in trips:
            ts = trip["ts"]
            assert isinstance(ts, dt.datetime) and ts.tzinfo is not None, "ts must be tz-aware"
            cols["person_id"].append(person_id)
            cols["t"].append(math.floor(ts.timestamp()))
            cols["direction"].append(trip["direction"])
            cols["mode"].append(trip["mode"])
            cols["site_id"].append(trip["site_id"])
            cols["region"].append(trip.get("region") or "")
    con = con or connect(threads=1)
    con.register("request_trips", pa.table(cols, schema=_TRIPS_SCHEMA))
    try:
        return _run(con, "request_trips", Window(as_of, window_days))
    finally:
        con.unregister("request_trips")


def model_matrix(frame: pd.DataFrame) -> np.ndarray:
    """The model's input: feature columns in definition order as float64, missing as NaN."""
    missing = [n for n in FEATURE_NAMES if n not in frame.columns]
    if missing:
        raise ValueError(f"feature table lacks column(s): {', '.join(missing)}")
    return np.column_stack(
        [frame[n].astype("Float64").to_numpy(dtype="float64", na_value=np.nan) for n in FEATURE_NAMES]
    )
