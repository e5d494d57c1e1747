"""Running the feature query: DuckDB on trip files (batch), SQLite or DuckDB on in-memory trips."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from commuter_badge.atomic import atomic_write
from commuter_badge.features.definitions import CONTEXT_COLUMNS, FEATURE_NAMES, FEATURES
from commuter_badge.features.read import connect, register_trips, reporting_bad_rows
from commuter_badge.features.sql import HASH_CLASH, Window, feature_sql
from commuter_badge.settings import DEFAULT_WINDOW_DAYS, load_settings

BATCH_MEMORY = "3200MB"
_TRIPS_SCHEMA = pa.schema(
    [
        ("person_id", pa.string()),
        ("t", pa.int64()),
        ("direction", pa.string()),
        ("mode", pa.string()),
        ("site_id", pa.string()),
        ("region", pa.string()),
    ]
)


def _batch_connect() -> duckdb.DuckDBPyConnection:
    # DuckDB would otherwise take 80% of RAM; past this it spills to a temporary directory.
    return connect(memory_limit=load_settings().duckdb_memory or BATCH_MEMORY)


def _duckdb_sql(trips: str, window: Window, *, files: bool = False) -> str:
    """The feature query on DuckDB; for trip files (`register_trips`), with their id and site
    lists."""
    lists = {"ids": f"{trips}_ids", "sites": f"{trips}_sites"} if files else {}
    return feature_sql(trips, window.params(), materialize=True, **lists)


def _run(
    con: duckdb.DuckDBPyConnection, trips: str, window: Window, *, files: bool = False
) -> pd.DataFrame:
    return to_frame(con.sql(_duckdb_sql(trips, window, files=files)).to_arrow_table())


def to_frame(table: pa.Table) -> pd.DataFrame:
    """Feature rows with deliberate dtypes: str ids and context, nullable Int64 counts, float64 rest."""
    if table.column("person_id").null_count:
        raise RuntimeError(HASH_CLASH)
    types = {f.name: pa.int64() if f.kind == "int" else pa.float64() for f in FEATURES}
    schema = pa.schema(
        [("person_id", pa.string())]
        + [(name, types[name]) for name in FEATURE_NAMES]
        + [(c, pa.string()) for c in CONTEXT_COLUMNS]
    )
    table = table.select(schema.names).cast(schema)
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


def build_features(
    path: str | Path,
    as_of: dt.date,
    window_days: int = DEFAULT_WINDOW_DAYS,
    con: duckdb.DuckDBPyConnection | None = None,
) -> pd.DataFrame:
    """One row per person seen at `path` in the window before `as_of`: id, features, context."""
    con = con or _batch_connect()
    files = register_trips(con, path, "trips")
    with reporting_bad_rows(con, files):
        return _run(con, "trips", Window(as_of, window_days), files=True)


def write_features(
    path: str | Path, as_of: dt.date, out: str | Path, window_days: int = DEFAULT_WINDOW_DAYS
) -> int:
    """`commuter features`: the table `build_features` returns, written by DuckDB straight to
    `out` (.parquet or .csv, atomically) without a round trip through pandas; returns persons."""
    suffix = Path(out).suffix.lower()
    formats = {".parquet": "FORMAT parquet", ".pq": "FORMAT parquet", ".csv": "FORMAT csv, HEADER"}
    if suffix not in formats:
        raise ValueError(f"{out}: unsupported output type {suffix!r}; use .csv or .parquet")
    con = _batch_connect()
    files = register_trips(con, path, "trips")
    sql = _duckdb_sql("trips", Window(as_of, window_days), files=True)
    columns = ", ".join((*FEATURE_NAMES, *CONTEXT_COLUMNS))
    query = (
        f"SELECT CASE WHEN person_id IS NULL THEN error('{HASH_CLASH}') ELSE person_id END "
        f"AS person_id, {columns} FROM ({sql}) f ORDER BY 1"
    )

    def copy(tmp: Path) -> None:
        target = "'" + str(tmp).replace("'", "''") + "'"
        rows.append(con.execute(f"COPY ({query}) TO {target} ({formats[suffix]})").fetchone()[0])

    rows: list[int] = []
    with reporting_bad_rows(con, files):
        try:
            atomic_write(out, copy)
        except duckdb.InvalidInputException as exc:
            if HASH_CLASH in str(exc):
                raise RuntimeError(HASH_CLASH) from None
            raise
    return rows[0]


# Below this many trips the request-time path runs the feature SQL on SQLite (about 1-2 ms a
# query); above it DuckDB's vectorised engine wins. Both run the same SQL text.
SQLITE_MAX_TRIPS = 20_000


def features_from_trips(
    persons: Iterable[tuple[str, Iterable[Mapping[str, object]]]],
    as_of: dt.date,
    window_days: int = DEFAULT_WINDOW_DAYS,
    con: duckdb.DuckDBPyConnection | None = None,
    engine: str = "auto",
) -> pd.DataFrame:
    """Features for trips held in memory (the HTTP service): same SQL as batch, rows in id order.

    Each trip mapping holds `ts` (a tz-aware datetime), `direction`, `mode`, `site_id`, `region`.
    `engine` is "sqlite", "duckdb" or "auto" (SQLite for up to SQLITE_MAX_TRIPS trips).
    """
    rows = []
    for person_id, trips in persons:
        for trip in trips:
            ts = trip["ts"]
            if not isinstance(ts, dt.datetime) or ts.tzinfo is None:
                raise ValueError("trip ts must be a timezone-aware datetime")
            rows.append(
                (
                    person_id,
                    math.floor(ts.timestamp()),
                    trip["direction"],
                    trip["mode"],
                    trip["site_id"],
                    trip.get("region") or "",
                )
            )
    window = Window(as_of, window_days)
    if engine == "sqlite" or (engine == "auto" and len(rows) <= SQLITE_MAX_TRIPS):
        from commuter_badge.features import sqlite_engine

        return to_frame(sqlite_engine.run(rows, window))
    table = pa.table(
        list(zip(*rows, strict=True)) if rows else [[] for _ in _TRIPS_SCHEMA], schema=_TRIPS_SCHEMA
    )
    con = con or connect(threads=1)
    con.register("request_trips", table)
    try:
        return _run(con, "request_trips", window)
    finally:
        con.unregister("request_trips")


def model_matrix(frame: pd.DataFrame) -> np.ndarray:
    """The model's input: feature columns in definition order as float64, missing as NaN."""
    missing = [n for n in FEATURE_NAMES if n not in frame.columns]
    if missing:
        raise ValueError(f"feature table lacks column(s): {', '.join(missing)}")
    return frame[list(FEATURE_NAMES)].to_numpy(dtype="float64", na_value=np.nan)
