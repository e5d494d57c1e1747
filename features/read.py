"""Reading trip files (CSV or Parquet, one file or a directory) into DuckDB, checked against the contract.

Every file becomes one normalised relation `(person_id, t, direction, mode, site_id, region)` where
`t` is the crossing instant in whole seconds since the Unix epoch (UTC). Local-time logic happens
later, in the shared feature SQL; two more views list the distinct ids and sites. Columns and
types are checked when the views are made; rows are checked by the feature query itself (time
and direction on every row, ids, sites and modes on their distinct values), and
`reporting_bad_rows` turns a bad row into a `TripDataError` naming the file, the column and the
first offending row. No file is ever dropped silently.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from commuter_badge.features.schema import (
    DIRECTIONS,
    LABEL_COLUMNS,
    MODES,
    TRIP_COLUMNS,
    TripDataError,
)

SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
# A clock time followed by a UTC offset at the end: "...T07:04:51+08:00", "... 07:04:51.5Z".
_OFFSET = r"[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.,][0-9]+)?)?(Z|z|[+-][0-9]{2}(:?[0-9]{2})?)$"


def discover(path: str | Path) -> list[Path]:
    """The trip files at `path`: the file itself, or every CSV/Parquet file under a directory."""
    p = Path(path)
    if not p.exists():
        raise TripDataError(f"{p}: no such file or directory")
    if p.is_file():
        if p.suffix.lower() not in SUFFIXES:
            raise TripDataError(f"{p}: unsupported file type {p.suffix!r}; use .csv or .parquet")
        return [p]
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES)
    if not files:
        raise TripDataError(f"{p}: directory holds no .csv or .parquet files")
    return files


def connect(
    threads: int | None = None, memory_limit: str | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-process DuckDB connection in UTC, so nothing depends on the machine's time zone."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    return con


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _scan(path: Path) -> str:
    if SUFFIXES[path.suffix.lower()] == "parquet":
        return f"read_parquet({_quote(path)})"
    return f"read_csv({_quote(path)}, all_varchar = true, header = true)"


def _columns(con: duckdb.DuckDBPyConnection, source: str, label: str) -> dict[str, str]:
    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    except duckdb.Error as exc:
        raise TripDataError(f"{label}: cannot be read: {str(exc).splitlines()[0]}") from None
    return {r[0]: r[1] for r in rows}


def _ts_expr(ts_type: str, label: str) -> str:
    """SQL for the parsed instant (NULL when the raw `ts` cannot be parsed)."""
    if ts_type.startswith(("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ")):
        return "ts"
    if ts_type == "VARCHAR":
        return f"CASE WHEN regexp_matches(trim(ts), '{_OFFSET}') THEN TRY_CAST(trim(ts) AS TIMESTAMPTZ) END"
    raise TripDataError(
        f"{label}: column 'ts' has type {ts_type}; expected a timestamp with time zone "
        "(or ISO 8601 text with an offset such as 2021-11-22T07:04:51+08:00)"
    )


def _trimmed(column: str) -> str:
    # trim() copies every string; ids are rarely padded, so only padded ones pay for it.
    text = f"CAST({column} AS VARCHAR)"
    return f"CASE WHEN prefix({text}, ' ') OR suffix({text}, ' ') THEN trim({text}) ELSE {text} END"


# How each raw column becomes its normalised value (`t` is made from `ts` by `_ts_expr`).
_NORMALISED = {
    "person_id": _trimmed("person_id"),
    "direction": "lower(trim(CAST(direction AS VARCHAR)))",
    "mode": "lower(trim(CAST(mode AS VARCHAR)))",
    "site_id": _trimmed("site_id"),
    "region": f"coalesce({_trimmed('region')}, '')",
}


def _normalised(ts_sql: str) -> str:
    """Select list turning a file's raw columns into the normalised relation."""
    t = f"CAST(floor(epoch({ts_sql})) AS BIGINT) AS t"
    return ", ".join(
        [f"{_NORMALISED['person_id']} AS person_id", t]
        + [f"{_NORMALISED[c]} AS {c}" for c in ("direction", "mode", "site_id", "region")]
    )


def _checks() -> list[tuple[str, str, str]]:
    """(column, SQL true on a bad normalised row, what was expected): one definition for the
    in-query guards, the count of bad rows and the first-bad-row report."""
    dirs = ", ".join(f"'{d}'" for d in DIRECTIONS)
    modes = ", ".join(f"'{m}'" for m in MODES)
    return [
        ("person_id", "person_id IS NULL OR person_id = ''", "a non-empty id"),
        ("ts", "t IS NULL", "an ISO 8601 instant with a UTC offset"),
        (
            "direction",
            f"direction IS NULL OR direction NOT IN ({dirs})",
            "one of " + ", ".join(DIRECTIONS),
        ),
        ("mode", f"mode IS NULL OR mode NOT IN ({modes})", "one of " + ", ".join(MODES)),
        ("site_id", "site_id IS NULL OR site_id = ''", "a non-empty site code"),
    ]


def _first_bad_row(con, path: Path, ts_sql: str, column: str, bad_sql: str) -> tuple[int, object]:
    """1-based data row number and raw value of the first row failing `bad_sql` (error path only)."""
    if SUFFIXES[path.suffix.lower()] == "parquet":
        source = f"read_parquet({_quote(path)}, file_row_number = true)"
        rownum = "file_row_number + 1"
    else:
        # Row order matters for the message, so read the text exactly as stored, in order.
        opts = pacsv.ConvertOptions(column_types={c: pa.string() for c in TRIP_COLUMNS})
        table = pacsv.read_csv(path, convert_options=opts)
        table = table.append_column("_row", pa.array(range(1, table.num_rows + 1), pa.int64()))
        con.register("_bad_csv", table)
        source, rownum = "_bad_csv", "_row"
    row = con.execute(
        f"SELECT _row, _raw FROM (SELECT {_normalised(ts_sql)}, {rownum} AS _row, "
        f"CAST({column} AS VARCHAR) AS _raw FROM {source}) WHERE {bad_sql} ORDER BY 1 LIMIT 1"
    ).fetchall()
    return (int(row[0][0]), row[0][1]) if row else (0, None)


def _source(con: duckdb.DuckDBPyConnection, path: Path) -> tuple[str, str]:
    """The scan of one file and its `ts` parsing SQL, after checking columns and types."""
    source = _scan(path)
    columns = _columns(con, source, str(path))
    missing = [c for c in TRIP_COLUMNS if c not in columns]
    if missing:
        raise TripDataError(
            f"{path}: missing required column(s) {', '.join(missing)}; "
            f"expected {', '.join(TRIP_COLUMNS)} (found {', '.join(columns) or 'none'})"
        )
    return source, _ts_expr(columns["ts"], str(path))


def check_file(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Scan one file for rows that break the contract; raise naming the earliest (slow path)."""
    source, ts_sql = _source(con, path)
    checks = _checks()
    counts = ", ".join(f"count(*) FILTER (WHERE {bad})" for _, bad, _ in checks)
    try:
        found = con.execute(f"SELECT {counts} FROM (SELECT {_normalised(ts_sql)} FROM {source})")
        found = found.fetchall()[0]
    except duckdb.Error as exc:
        raise TripDataError(f"{path}: cannot be read: {str(exc).splitlines()[0]}") from None
    failing = [(c, n) for c, n in zip(checks, found, strict=True) if n]
    if failing:
        # Report the earliest bad row in the file, whichever column it breaks.
        firsts = [(*_first_bad_row(con, path, ts_sql, c[0], c[1]), c, n) for c, n in failing]
        row, value, (column, _, expected), n_bad = min(firsts, key=lambda f: f[0])
        where = f"line {row + 1}" if SUFFIXES[path.suffix.lower()] == "csv" else f"row {row}"
        raise TripDataError(
            f"{path} {where}: column '{column}' value {value!r} is not {expected} "
            f"({n_bad} bad row{'s' if n_bad > 1 else ''} in this file)"
        )


# Raised by DuckDB's error() inside a query when a row breaks the contract.
_BAD_ROW = "commuter: trip row breaks the contract"


def _guarded(value: str, columns: tuple[str, ...]) -> str:
    """`value`, or a stop if the normalised `columns` break the contract."""
    bad = " OR ".join(f"({sql})" for column, sql, _ in _checks() if column in columns)
    return f"CASE WHEN {bad} THEN error('{_BAD_ROW}') ELSE {value} END"


def _distinct(source: str, columns: tuple[str, ...]) -> str:
    """The distinct raw values of `columns`, normalised: normalising after grouping costs one
    evaluation per distinct value instead of one per row."""
    raw = ", ".join(columns)
    norm = ", ".join(f"{_NORMALISED[c]} AS {c}" for c in columns)
    return f"SELECT {norm} FROM (SELECT {raw} FROM {source} GROUP BY {raw})"


def file_views_sql(con: duckdb.DuckDBPyConnection, path: Path) -> tuple[str, str, str]:
    """SQL for one file's normalised rows, distinct ids and distinct sites; each stops the query
    on a value that breaks the contract.

    Rows check time and direction (`t` carries the guard; every feature query computes `t` for
    every row to apply its window, and only that scan reads `direction`). Ids, sites and modes
    are checked once per distinct value, in the id and site lists the feature query reads. So
    the scans that build features also validate every row, and `reporting_bad_rows` turns a
    stop into the full message.
    """
    source, ts_sql = _source(con, path)
    rows = (
        f"SELECT person_id, {_guarded('t', ('ts', 'direction'))} AS t, "
        f"direction, mode, site_id, region FROM (SELECT {_normalised(ts_sql)} FROM {source})"
    )
    ids = (
        f"SELECT {_guarded('person_id', ('person_id',))} AS person_id "
        f"FROM ({_distinct(source, ('person_id',))})"
    )
    sites = (
        f"SELECT {_guarded('site_id', ('site_id', 'mode'))} AS site_id, mode, region "
        f"FROM ({_distinct(source, ('site_id', 'mode', 'region'))})"
    )
    return rows, ids, sites


def register_trips(
    con: duckdb.DuckDBPyConnection, path: str | Path, name: str = "trips"
) -> list[Path]:
    """Check the columns of every file at `path` and create the views `name` (normalised rows),
    `name`_ids (their ids) and `name`_sites (their site, mode, region triples) over them. The
    two lists may repeat a value (once per file, or raw spellings that normalise alike)."""
    files = discover(path)
    parts = [file_views_sql(con, f) for f in files]
    for k, suffix in enumerate(("", "_ids", "_sites")):
        union = " UNION ALL ".join(p[k] for p in parts)
        con.execute(f"CREATE OR REPLACE TEMP VIEW {name}{suffix} AS {union}")
    return files


@contextlib.contextmanager
def reporting_bad_rows(con: duckdb.DuckDBPyConnection, files: list[Path]) -> Iterator[None]:
    """Around a query on registered trips: a row-level stop becomes a TripDataError naming the
    file, column and first bad row; an unreadable file becomes one naming the file."""
    try:
        yield
    except duckdb.Error as exc:
        # error() raises InvalidInputException; a file that breaks mid-scan raises either type.
        if not isinstance(exc, (duckdb.InvalidInputException, duckdb.IOException)):
            raise
        for f in files:
            check_file(con, f)
        raise


def read_labels(path: str | Path) -> pd.DataFrame:
    """Labels (`person_id`, `is_commuter` in {0, 1}) from CSV or Parquet, checked."""
    p = Path(path)
    if not p.is_file():
        raise TripDataError(f"{p}: no such labels file")
    frame = (
        pd.read_parquet(p)
        if p.suffix.lower() in (".parquet", ".pq")
        else pd.read_csv(p, dtype={"person_id": "string"})
    )
    missing = [c for c in LABEL_COLUMNS if c not in frame.columns]
    if missing:
        raise TripDataError(f"{p}: missing required column(s) {', '.join(missing)}")
    bad = ~frame["is_commuter"].isin([0, 1])
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise TripDataError(
            f"{p} row {i + 1}: column 'is_commuter' value {_plain(frame['is_commuter'].iloc[i])!r} "
            "is not 0 or 1"
        )
    empty = frame["person_id"].isna() | (frame["person_id"].astype("string").str.strip() == "")
    if empty.any():
        i = int(empty.to_numpy().nonzero()[0][0])
        raise TripDataError(f"{p} row {i + 1}: column 'person_id' is empty")
    out = pd.DataFrame(
        {
            "person_id": frame["person_id"].astype(str),
            "is_commuter": frame["is_commuter"].astype("int64"),
        }
    )
    dup = out["person_id"].duplicated()
    if dup.any():
        raise TripDataError(f"{p}: person_id {out['person_id'][dup].iloc[0]!r} is labelled twice")
    return out


def _plain(value: object) -> object:
    """numpy scalars as Python values, so messages read `2`, not `np.int64(2)`."""
    return value.item() if hasattr(value, "item") else value
