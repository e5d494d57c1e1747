"""The feature SQL on SQLite, for request-sized inputs (the HTTP service scoring a few persons).

DuckDB's fixed cost of planning and running the feature query dominates for a single person;
the standard library's SQLite runs the same SQL text an order of magnitude faster (the decision
record "SQLite at request time" in docs/architecture.md; figures in docs/guide/operations.md,
Performance, measured by benchmarks/service_bench.py). SQLite lacks
four functions the text uses, added here as deterministic user functions: a 64-bit hash
(grouping keys only), `any_value`, `bit_count` and `greatest`; `floor` and `sqrt` are defined
too, since SQLite builds without math functions exist. tests/code/test_engines.py holds SQLite to
DuckDB on random persons.
"""

from __future__ import annotations

import functools
import hashlib
import math
import sqlite3
import struct
import threading

import pyarrow as pa

from commuter_badge.features.definitions import CONTEXT_COLUMNS, FEATURES
from commuter_badge.features.sql import Window, feature_sql

_local = threading.local()
_TRIP_COLS = "person_id TEXT, t INTEGER, direction TEXT, mode TEXT, site_id TEXT, region TEXT"


def _hash64(*args: object) -> int:
    data = "\x1f".join("" if a is None else str(a) for a in args).encode()
    return struct.unpack("<q", hashlib.blake2b(data, digest_size=8).digest())[0]


def _bit_count(x: int | None) -> int | None:
    return None if x is None else (x & 0xFFFFFFFFFFFFFFFF).bit_count()


def _greatest(*args: object) -> object:
    values = [a for a in args if a is not None]
    return max(values) if values else None


class _AnyValue:
    def __init__(self) -> None:
        self.value = None

    def step(self, value: object) -> None:
        if self.value is None:
            self.value = value

    def finalize(self) -> object:
        return self.value


def _connection() -> sqlite3.Connection:
    """One in-memory database per thread, with the functions and the two input tables."""
    con = getattr(_local, "con", None)
    if con is None:
        con = sqlite3.connect(":memory:")
        con.create_function("hash64", -1, _hash64, deterministic=True)
        con.create_function("floor", 1, math.floor, deterministic=True)
        con.create_function("sqrt", 1, math.sqrt, deterministic=True)
        con.create_function("bit_count", 1, _bit_count, deterministic=True)
        # SQLite's many-argument max() is DuckDB's and Spark's greatest().
        con.create_function("greatest", -1, _greatest, deterministic=True)
        con.create_aggregate("any_value", 1, _AnyValue)
        con.execute(f"CREATE TABLE trips ({_TRIP_COLS})")
        _local.con = con
    return con


@functools.lru_cache(maxsize=16)
def _sql(window: Window) -> str:
    # Building the text costs ~0.1 ms, noticeable on a 1.4 ms request; windows repeat. The text
    # holds the working-day mask, so the cache is keyed by the window's calendar too.
    return feature_sql("trips", window.params(), hash_fn="hash64")


def query(rows: list[tuple], window: Window) -> list[tuple]:
    """The feature query's rows for normalised trip tuples, as SQLite returns them: person_id,
    then FEATURES in definition order, then CONTEXT_COLUMNS (the service reads these directly)."""
    con = _connection()
    sql = _sql(window)
    with con:
        con.execute("DELETE FROM trips")
        con.executemany("INSERT INTO trips VALUES (?, ?, ?, ?, ?, ?)", rows)
        return con.execute(sql).fetchall()


def run(rows: list[tuple], window: Window) -> pa.Table:
    """Feature rows (as an Arrow table, batch dtypes) for normalised trip tuples."""
    result = query(rows, window)
    columns = list(zip(*result, strict=True)) if result else [[] for _ in range(len(FEATURES) + 3)]
    arrays = {"person_id": pa.array(columns[0], pa.string())}
    for i, f in enumerate(FEATURES, start=1):
        arrays[f.name] = pa.array(columns[i], pa.int64() if f.kind == "int" else pa.float64())
    for j, c in enumerate(CONTEXT_COLUMNS, start=len(FEATURES) + 1):
        arrays[c] = pa.array(columns[j], pa.string())
    return pa.table(arrays)
