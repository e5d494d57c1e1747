"""Running the feature query: DuckDB on trip files (batch), SQLite or DuckDB on in-memory trips.

Batch builds run under a memory cap (`memory_cap`: COMMUTER_DUCKDB_MEMORY, else half the
machine's memory) and spill to a temporary directory that is removed afterwards. DuckDB spills
most operators, but one query over a whole large month still ran out of memory under a cap of a
few gigabytes (docs/guide/operations.md, Performance), so a large input is split into person partitions (`person_part`: a hash of the id), each
run as the ordinary feature query (checked the same way, one partition at a time), and the
parts are joined in id order: the rows, their order and every value are the single query's (a
Parquet file written from parts lacks DuckDB's not-null flag on n_modes and main_mode). The
partition count comes from the input's size and the cap (`BatchPlan`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from commuter_badge.atomic import atomic_write
from commuter_badge.errors import CommuterError, UserError
from commuter_badge.features.definitions import CONTEXT_COLUMNS, FEATURE_NAMES, FEATURES
from commuter_badge.features.read import (
    connect,
    discover,
    register_trips,
    reporting_bad_rows,
)
from commuter_badge.features.sql import HASH_CLASH, Window, feature_sql
from commuter_badge.features.workdays import LIBRARY_CALENDAR, WorkingCalendar
from commuter_badge.settings import DEFAULT_WINDOW_DAYS

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
MEMORY_SETTING = "COMMUTER_DUCKDB_MEMORY"
# DuckDB working memory per input crossing when one query holds a whole month: 7.3 GB peak for
# 75.6M crossings (issue 18). A partition is sized to need at most half the cap by that measure.
BYTES_PER_CROSSING = 100
# A CSV crossing is about 80 bytes of text (counted as 40 to err towards more partitions), gzip
# packs such text about 8 to 1; Parquet files say their row count.
CSV_BYTES_PER_CROSSING = 40
GZIP_RATIO = 8
MAX_PARTITIONS = 256
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS.update({"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40})


class FeatureMemoryError(CommuterError, MemoryError):
    """The feature build needed more memory or temporary disk than it was given."""


def machine_memory() -> int:
    """Bytes of memory this process may use: physical memory, or a lower cgroup limit."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):
            total = min(total, int(Path(limit).read_text().strip()))
    return total


def memory_cap(setting: str | None = None) -> str:
    """DuckDB's memory cap for batch features: the setting (COMMUTER_DUCKDB_MEMORY, resolved by
    the command and passed down), else half of `machine_memory()` (DuckDB alone would take 80% and
    leave too little for pandas and LightGBM). Logged with training runs."""
    return setting or f"{machine_memory() // 2 // 2**20}MiB"


def cap_bytes(cap: str) -> int:
    """The cap in bytes ('3200MB', '12GB', '11.5GiB'); a clear error naming the setting."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", cap)
    if not m or m.group(2).lower() not in _UNITS:
        raise UserError(
            f"{MEMORY_SETTING}={cap!r} is not a memory size; write it like 3200MB, 12GB or 8GiB"
        )
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def _readable(n: int) -> str:
    return f"{n / 10**9:.1f} GB" if n >= 10**9 else f"{n / 10**6:.0f} MB"


def crossings_in(files: Iterable[Path]) -> int:
    """Crossings at `files`, for sizing partitions: Parquet footers' row counts, CSV by size."""
    total = 0
    for f in files:
        if f.name.lower().endswith((".parquet", ".pq")):
            try:
                total += pq.ParquetFile(f).metadata.num_rows
            except (OSError, pa.ArrowException):
                total += f.stat().st_size // CSV_BYTES_PER_CROSSING  # unreadable: reported later
        else:
            packed = GZIP_RATIO if f.name.lower().endswith(".gz") else 1
            total += f.stat().st_size * packed // CSV_BYTES_PER_CROSSING
    return total


@dataclass(frozen=True)
class BatchPlan:
    """How a batch build runs: the memory cap, the input's size and the person partitions."""

    cap: str
    crossings: int
    partitions: int

    @classmethod
    def for_path(
        cls, path: str | Path, partitions: int | None = None, memory: str | None = None
    ) -> BatchPlan:
        """The plan for the trips at `path` under the cap `memory_cap(memory)`."""
        cap = memory_cap(memory)
        crossings = crossings_in(discover(path))
        if partitions is None:
            need = crossings * BYTES_PER_CROSSING / (cap_bytes(cap) / 2)
            partitions = min(MAX_PARTITIONS, max(1, math.ceil(need)))
        return cls(cap, crossings, partitions)

    def describe(self) -> str:
        parts = f", {self.partitions} person partitions" if self.partitions > 1 else ""
        return f"DuckDB memory cap {_readable(cap_bytes(self.cap))} ({MEMORY_SETTING}){parts}"

    def parts(self) -> list[tuple[int, int] | None]:
        """What `register_trips` takes for each partition (None: the whole input at once)."""
        if self.partitions == 1:
            return [None]
        return [(k, self.partitions) for k in range(self.partitions)]


@contextlib.contextmanager
def batch_connection(plan: BatchPlan) -> Iterator[tuple[duckdb.DuckDBPyConnection, Path]]:
    """A capped connection spilling to its own temporary directory, removed on the way out,
    also after a failure."""
    spill = Path(tempfile.mkdtemp(prefix="commuter-duckdb-"))
    con = connect(memory_limit=plan.cap)
    try:
        con.execute(f"SET temp_directory = {_quote(spill)}")
        yield con, spill
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


@contextlib.contextmanager
def batch_errors(con, files: list[Path], plan: BatchPlan, spill: Path) -> Iterator[None]:
    """Around one batch query: a bad row, a hash clash, running out of memory or of temporary
    disk each become one clear error (out-of-memory names the setting to change)."""
    with reporting_bad_rows(con, files), _resource_errors(plan, spill):
        try:
            yield
        except duckdb.InvalidInputException as exc:
            if HASH_CLASH in str(exc):
                raise RuntimeError(HASH_CLASH) from None
            raise


@contextlib.contextmanager
def _resource_errors(plan: BatchPlan, spill: Path) -> Iterator[None]:
    try:
        yield
    except duckdb.OutOfMemoryException:
        cap = cap_bytes(plan.cap)
        raise FeatureMemoryError(
            f"features ran out of memory at the DuckDB cap of {_readable(cap)} "
            f"(about {plan.crossings:,} crossings in {plan.partitions} partition(s)); raise "
            f"{MEMORY_SETTING} (e.g. {MEMORY_SETTING}={max(1, 2 * cap // 10**6)}MB; this "
            f"machine has {_readable(machine_memory())}) or free memory; nothing was written"
        ) from None
    except duckdb.Error as exc:
        text = str(exc).lower()
        if "no space left on device" not in text and "disk space" not in text:
            raise
        raise FeatureMemoryError(
            f"features ran out of disk space spilling to {spill.parent} beyond the DuckDB cap "
            f"of {_readable(cap_bytes(plan.cap))}; free disk space there, point TMPDIR at a "
            f"larger disk, or raise {MEMORY_SETTING} so less is spilled; nothing was written"
        ) from None


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _duckdb_sql(trips: str, window: Window, *, files: bool = False) -> str:
    """The feature query on DuckDB; for trip files (`register_trips`), with their id and site
    lists."""
    lists = {"ids": f"{trips}_ids", "sites": f"{trips}_sites"} if files else {}
    return feature_sql(trips, window.params(), materialize=True, **lists)


def run_feature_query(
    con: duckdb.DuckDBPyConnection, trips: str, window: Window, *, files: bool = False
) -> pa.Table:
    return con.sql(_duckdb_sql(trips, window, files=files)).to_arrow_table()


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
    partitions: int | None = None,
    memory: str | None = None,
    calendar: WorkingCalendar = LIBRARY_CALENDAR,
) -> pd.DataFrame:
    """One row per person seen at `path` in the window before `as_of`: id, features, context,
    in id order. `partitions` overrides the plan's partition count (the result is the same);
    `memory` is the DuckDB memory setting (`memory_cap`).

    DuckDB stays under the cap; the returned table itself lives outside it (about 0.3 KB a
    person as pandas: docs/guide/operations.md, Performance)."""
    plan = BatchPlan.for_path(path, partitions, memory)
    window = Window(as_of, window_days, calendar)
    tables = []
    with batch_connection(plan) as (con, spill):
        for part in plan.parts():
            files = register_trips(con, path, "trips", part)
            with batch_errors(con, files, plan, spill):
                tables.append(run_feature_query(con, "trips", window, files=True))
    table = pa.concat_tables(tables)
    try:
        # each part is in id order; together they are put in id order as the single query would
        return to_frame(table.sort_by("person_id") if len(tables) > 1 else table)
    except MemoryError:
        # DuckDB's memory is released by now; the table and its pandas copy are what is left
        raise FeatureMemoryError(
            f"the feature table of {table.num_rows:,} persons needs about "
            f"{_readable(3 * table.nbytes)} of memory beside DuckDB's (this machine has "
            f"{_readable(machine_memory())}); free memory or split the trips by person"
        ) from None


def write_features(
    path: str | Path,
    as_of: dt.date,
    out: str | Path,
    window_days: int = DEFAULT_WINDOW_DAYS,
    plan: BatchPlan | None = None,
    calendar: WorkingCalendar = LIBRARY_CALENDAR,
) -> int:
    """`commuter features`: the table `build_features` returns, written by DuckDB straight to
    `out` (.parquet or .csv, atomically) without a round trip through pandas; returns persons.

    With several partitions each is written to the spill directory first and the parts are
    copied to `out` in id order; on any failure `out` is untouched and no temp file is left."""
    suffix = Path(out).suffix.lower()
    formats = {".parquet": "FORMAT parquet", ".pq": "FORMAT parquet", ".csv": "FORMAT csv, HEADER"}
    if suffix not in formats:
        raise ValueError(f"{out}: unsupported output type {suffix!r}; use .csv or .parquet")
    plan = plan or BatchPlan.for_path(path)
    window = Window(as_of, window_days, calendar)
    columns = ", ".join((*FEATURE_NAMES, *CONTEXT_COLUMNS))

    def query() -> str:
        sql = _duckdb_sql("trips", window, files=True)
        return (
            f"SELECT CASE WHEN person_id IS NULL THEN error('{HASH_CLASH}') ELSE person_id END "
            f"AS person_id, {columns} FROM ({sql}) f ORDER BY 1"
        )

    rows: list[int] = []
    with batch_connection(plan) as (con, spill):
        final = None
        if plan.partitions > 1:
            for part in plan.parts():
                files = register_trips(con, path, "trips", part)
                target = _quote(spill / f"part-{part[0]:04d}.parquet")
                with batch_errors(con, files, plan, spill):
                    con.execute(f"COPY ({query()}) TO {target} (FORMAT parquet)")
            final = f"SELECT * FROM read_parquet({_quote(spill / 'part-*.parquet')}) ORDER BY 1"
        else:
            files = register_trips(con, path, "trips")

        def copy(tmp: Path) -> None:
            sql = final or query()
            rows.append(
                con.execute(f"COPY ({sql}) TO {_quote(tmp)} ({formats[suffix]})").fetchone()[0]
            )

        with batch_errors(con, files, plan, spill):
            atomic_write(out, copy)
    return rows[0]


# Below this many trips the request-time path runs the feature SQL on SQLite (about 1-2 ms a
# query); above it DuckDB's vectorised engine wins. Both run the same SQL text.
SQLITE_MAX_TRIPS = 20_000


def trip_rows(persons: Iterable[tuple[str, Iterable[Mapping[str, object]]]]) -> list[tuple]:
    """In-memory trips as the engines' normalised rows (person_id, t, direction, mode, site_id,
    region), `t` in whole epoch seconds."""
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
    return rows


def features_from_trips(
    persons: Iterable[tuple[str, Iterable[Mapping[str, object]]]],
    as_of: dt.date,
    window_days: int = DEFAULT_WINDOW_DAYS,
    con: duckdb.DuckDBPyConnection | None = None,
    engine: str = "auto",
    calendar: WorkingCalendar = LIBRARY_CALENDAR,
) -> pd.DataFrame:
    """Features for trips held in memory (the HTTP service): same SQL as batch, rows in id order.

    Each trip mapping holds `ts` (a tz-aware datetime), `direction`, `mode`, `site_id`, `region`.
    `engine` is "sqlite", "duckdb" or "auto" (SQLite for up to SQLITE_MAX_TRIPS trips).
    """
    return features_from_rows(trip_rows(persons), as_of, window_days, con, engine, calendar)


def features_from_rows(
    rows: list[tuple],
    as_of: dt.date,
    window_days: int = DEFAULT_WINDOW_DAYS,
    con: duckdb.DuckDBPyConnection | None = None,
    engine: str = "auto",
    calendar: WorkingCalendar = LIBRARY_CALENDAR,
) -> pd.DataFrame:
    """`features_from_trips` for trips already normalised (`trip_rows`: person_id, t, direction,
    mode, site_id, region)."""
    window = Window(as_of, window_days, calendar)
    if engine == "sqlite" or (engine == "auto" and len(rows) <= SQLITE_MAX_TRIPS):
        from commuter_badge.features import sqlite_engine

        return to_frame(sqlite_engine.run(rows, window))
    table = pa.table(
        list(zip(*rows, strict=True)) if rows else [[] for _ in _TRIPS_SCHEMA], schema=_TRIPS_SCHEMA
    )
    con = con or connect(threads=1)
    con.register("request_trips", table)
    try:
        return to_frame(run_feature_query(con, "request_trips", window))
    finally:
        con.unregister("request_trips")


def model_matrix(frame: pd.DataFrame) -> np.ndarray:
    """The model's input: feature columns in definition order as float64, missing as NaN."""
    if list(frame.columns) == list(FEATURE_NAMES) and (frame.dtypes == "float64").all():
        # already the matrix (the service's request features): 0.04 ms instead of 0.19 ms
        return frame.to_numpy()
    missing = [n for n in FEATURE_NAMES if n not in frame.columns]
    if missing:
        raise ValueError(f"feature table lacks column(s): {', '.join(missing)}")
    return frame[list(FEATURE_NAMES)].to_numpy(dtype="float64", na_value=np.nan)


def trips_by_person(
    path: str | Path,
    as_of: dt.date,
    window_days: int = DEFAULT_WINDOW_DAYS,
    calendar: WorkingCalendar = LIBRARY_CALENDAR,
) -> dict[str, list[tuple]]:
    """The crossings each person at `path` made in the window before `as_of` (with the reads just
    before it that the double-read rule looks at), normalised as (t, direction, mode, site_id,
    region), in time order: what the person's side (models/core/recourse.py) projects from.
    All of them are held in memory: meant for the persons of one month, not for many months."""
    params = Window(as_of, window_days, calendar).params()
    con = connect(threads=1)
    try:
        files = register_trips(con, path, "trips")
        with reporting_bad_rows(con, files):
            rows = con.execute(
                "SELECT person_id, t, direction, mode, site_id, region FROM trips "
                "WHERE t >= ? AND t < ? ORDER BY person_id, t, direction, mode, site_id, region",
                [params["start_t"] - params["double_read_seconds"], params["end_t"]],
            ).fetchall()
    finally:
        con.close()
    out: dict[str, list[tuple]] = {}
    for person_id, *trip in rows:
        out.setdefault(person_id, []).append(tuple(trip))
    return out
