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
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from commuter_badge.features.schema import (
    LABEL_COLUMNS,
    LABEL_VALUES,
    MAX_ID_LENGTH,
    TRIP_COLUMNS,
    TRIP_SCHEMA,
    TS_OFFSET_PATTERN,
    TripDataError,
    bad_value,
    missing_columns,
    wrong_type,
)

logger = logging.getLogger(__name__)

# File kinds by name ending (gzip-compressed CSV is read as it is; DuckDB and Spark decompress it).
SUFFIXES = {".csv": "csv", ".csv.gz": "csv", ".parquet": "parquet", ".pq": "parquet"}
KINDS = ", ".join(SUFFIXES)
# Trip data in a form neither engine reads here: refused by name rather than skipped.
_UNREADABLE = re.compile(
    r"\.(csv|parquet|pq)\.[a-z0-9]+$|\.(csv|parquet)[._-]?(zip|bz2|xz|zst|7z)$"
)


def file_kind(name: str) -> str | None:
    """ "csv" or "parquet" for a trip file name, None for anything else."""
    lower = name.lower()
    return next((kind for end, kind in SUFFIXES.items() if lower.endswith(end)), None)


def skipped_name(name: str) -> bool:
    """Hidden files and markers (`.x`, `_SUCCESS`, `_metadata`) are not data, as in Spark/Hadoop."""
    return name.startswith((".", "_"))


def discover(path: str | Path) -> list[Path]:
    """The trip files at `path`: the file itself, or every trip file under a directory.

    Under a directory, trip data this reader cannot read (`x.csv.bz2`, `x.parquet.gz`) is an error
    naming the file; other files (a README) and hidden ones are passed over with a warning naming
    them, never silently."""
    p = Path(path)
    if not p.exists():
        raise TripDataError(f"{p}: no such file or directory")
    if p.is_file():
        if file_kind(p.name) is None:
            raise TripDataError(f"{p}: unsupported file type {p.suffix!r}; use one of {KINDS}")
        return [p]
    found = sorted(
        f
        for f in p.rglob("*")
        if f.is_file() and not any(skipped_name(part) for part in f.relative_to(p).parts)
    )
    unreadable = [
        f for f in found if file_kind(f.name) is None and _UNREADABLE.search(f.name.lower())
    ]
    if unreadable:
        raise TripDataError(
            f"{unreadable[0]}: trip data in a form that cannot be read ({len(unreadable)} such "
            f"file(s) under {p}); trip files end in {KINDS}: decompress or convert them"
        )
    files = [f for f in found if file_kind(f.name) is not None]
    others = [f for f in found if file_kind(f.name) is None]
    if others:
        names = ", ".join(str(f.relative_to(p)) for f in others[:5])
        more = f" and {len(others) - 5} more" if len(others) > 5 else ""
        logger.warning("%s: not trip files, not read: %s%s", p, names, more)
    if not files:
        raise TripDataError(
            f"{p}: directory holds no .csv or .parquet files (names end in {KINDS})"
        )
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
    if file_kind(path.name) == "parquet":
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
        return f"CASE WHEN regexp_matches(trim(ts), '{TS_OFFSET_PATTERN}') THEN TRY_CAST(trim(ts) AS TIMESTAMPTZ) END"
    raise wrong_type(label, "ts", ts_type)


# Text columns must arrive as text: an integer id or a float or list site code is refused, not
# coerced to "3.5" or "[1, 2]". An optional column may be all-null ("NULL" type).
_TEXT_TYPES = ("VARCHAR",)
_NULL_TYPE = '"NULL"'


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


def _bad_sql(column) -> str:
    """SQL true where a normalised value breaks `column`'s rule (features/schema.py)."""
    if not column.text:
        return "t IS NULL"
    c = column.name
    tests = [f"{c} IS NULL", f"{c} = ''"] if column.required else []
    if column.values:
        tests.append(f"{c} NOT IN ({', '.join(repr(v) for v in column.values)})")
    if column.max_length:
        tests.append(f"length({c}) > {column.max_length}")
    return " OR ".join(tests)


def _checks() -> list[tuple[str, str, str]]:
    """(column, SQL true on a bad normalised row, what was expected): one definition for the
    in-query guards, the count of bad rows and the first-bad-row report."""
    return [(c.name, _bad_sql(c), c.expected) for c in TRIP_SCHEMA]


def _first_bad_row(con, path: Path, ts_sql: str, column: str, bad_sql: str) -> tuple[int, object]:
    """1-based data row number and raw value of the first row failing `bad_sql` (error path only)."""
    if file_kind(path.name) == "parquet":
        source = f"read_parquet({_quote(path)}, file_row_number = true)"
        rownum = "file_row_number + 1"
    else:
        # Row order matters for the message, so read the text exactly as stored, in order.
        opts = pacsv.ConvertOptions(column_types={c: pa.string() for c in TRIP_COLUMNS})
        table = pacsv.read_csv(path, convert_options=opts)  # decompresses .csv.gz by its name
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
        raise missing_columns(str(path), missing, list(columns))
    for column in TRIP_SCHEMA:
        found = columns[column.name]
        allowed = _TEXT_TYPES + (() if column.required else (_NULL_TYPE,))
        if column.text and found not in allowed:
            raise wrong_type(str(path), column.name, found)
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
        row, value, (column, _, _), n_bad = min(firsts, key=lambda f: f[0])
        where = f"line {csv_line(path, row)}" if file_kind(path.name) == "csv" else f"row {row}"
        raise bad_value(f"{path} {where}", column, value, n_bad, "this file")


def csv_line(path: Path, row: int) -> int:
    """The line on which data row `row` (1-based) of a CSV file starts; a quoted field may hold
    newlines, so rows and lines differ (error path only: reads the file up to that row)."""
    import csv
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as f:
        reader = csv.reader(f)
        next(reader, None)  # the header
        start = reader.line_num + 1
        for _ in range(row - 1):
            if next(reader, None) is None:
                break
            start = reader.line_num + 1
    return start


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


def person_part(id_sql: str, part: tuple[int, int]) -> str:
    """SQL true when the person `id_sql` falls in partition `part` = (k, n): the high half of the
    id's hash modulo n, so a person's rows, id and sites all land in the same one of n parts."""
    k, n = part
    return f"(hash({id_sql}) >> 32) % {int(n)} = {int(k)}"


def file_views_sql(
    con: duckdb.DuckDBPyConnection, path: Path, part: tuple[int, int] | None = None
) -> tuple[str, str, str]:
    """SQL for one file's normalised rows, distinct ids and distinct sites; each stops the query
    on a value that breaks the contract.

    Rows check time and direction (`t` carries the guard; every feature query computes `t` for
    every row to apply its window, and only that scan reads `direction`). Ids, sites and modes
    are checked once per distinct value, in the id and site lists the feature query reads. So
    the scans that build features also validate every row, and `reporting_bad_rows` turns a
    stop into the full message. With `part`, all three hold only that partition's persons
    (filtered before grouping), so every row is still checked, in exactly one partition.
    """
    source, ts_sql = _source(con, path)
    if part is not None:
        source = f"(SELECT * FROM {source} WHERE {person_part(_NORMALISED['person_id'], part)})"
    rows = (
        f"SELECT person_id, {_guarded('t', ('ts', 'direction'))} AS t, "
        f"direction, mode, site_id, region FROM (SELECT {_normalised(ts_sql)} FROM {source})"
    )
    ids = (
        f"SELECT {_guarded('person_id', ('person_id',))} AS person_id "
        f"FROM ({_distinct(source, ('person_id',))})"
    )
    sites = (
        f"SELECT {_guarded('site_id', ('site_id', 'mode', 'region'))} AS site_id, mode, region "
        f"FROM ({_distinct(source, ('site_id', 'mode', 'region'))})"
    )
    return rows, ids, sites


def register_trips(
    con: duckdb.DuckDBPyConnection,
    path: str | Path,
    name: str = "trips",
    part: tuple[int, int] | None = None,
) -> list[Path]:
    """Check the columns of every file at `path` and create the views `name` (normalised rows),
    `name`_ids (their ids) and `name`_sites (their site, mode, region triples) over them. The
    two lists may repeat a value (once per file, or raw spellings that normalise alike).
    `part` = (k, n) restricts all three to the k-th of n person partitions (`person_part`)."""
    files = discover(path)
    parts = [file_views_sql(con, f, part) for f in files]
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
    """Labels (`person_id`, `is_commuter` in {0, 1}) from CSV or Parquet, checked; errors name
    the file, the line (CSV) or row (Parquet) and the value. A `weight` column (a finite number
    >= 0: how many persons of the month the row stands for) is kept as float64 when the file has
    one; without it every row weighs 1 (`label_weights`)."""
    p = Path(path)
    if not p.is_file():
        raise TripDataError(f"{p}: no such labels file")
    csv = file_kind(p.name) == "csv"
    if csv:
        try:
            frame = pd.read_csv(p, dtype=str, keep_default_na=False)
        except pd.errors.EmptyDataError:
            raise TripDataError(
                f"{p}: the labels file is empty; expected a header "
                f"{','.join(LABEL_COLUMNS)} and one row per person"
            ) from None
    else:
        frame = pd.read_parquet(p)
    missing = [c for c in LABEL_COLUMNS if c not in frame.columns]
    if missing:
        raise TripDataError(
            f"{p}: missing required column(s) {', '.join(missing)}; "
            f"expected {', '.join(LABEL_COLUMNS)} (found {', '.join(map(str, frame.columns)) or 'none'})"
        )
    if frame.empty:
        raise TripDataError(f"{p}: no labels (the file has a header and no rows)")

    def where(i: int) -> str:  # as for trips: the file's line in a CSV (header on line 1), the
        # 1-based data row in Parquet (check_file); a quoted field may span lines, so csv_line
        return f"{p} line {csv_line(p, i + 1)}" if csv else f"{p} row {i + 1}"

    ids = frame["person_id"]
    if not csv and not (pd.api.types.is_string_dtype(ids) or ids.isna().all()):
        raise TripDataError(
            f"{p}: column 'person_id' has type {ids.dtype}; expected text (a string column)"
        )
    text = ids.astype("string").str.strip()
    empty = text.isna() | (text == "")
    if empty.any():
        raise TripDataError(
            f"{where(int(empty.to_numpy().nonzero()[0][0]))}: column 'person_id' is empty"
        )
    long = text.str.len() > MAX_ID_LENGTH
    if long.any():
        raise TripDataError(
            f"{where(int(long.to_numpy().nonzero()[0][0]))}: column 'person_id' is longer than "
            f"{MAX_ID_LENGTH} characters"
        )
    raw = frame["is_commuter"]
    values = raw.astype("string").str.strip()
    if not csv and pd.api.types.is_bool_dtype(raw):
        values = raw.astype("int64").astype("string")
    elif not csv and pd.api.types.is_float_dtype(raw):  # 1.0 from a float column is 1
        whole = raw.notna() & (raw == raw.round())
        values = values.where(~whole, raw.where(whole).astype("Int64").astype("string"))
    bad = ~values.isin(LABEL_VALUES).fillna(False).astype(bool)
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise TripDataError(
            f"{where(i)}: column 'is_commuter' value {_number_or_text(raw.iloc[i])!r} is not 0 or 1 "
            f"({int(bad.sum())} bad row{'s' if bad.sum() > 1 else ''} in this file)"
        )
    out = pd.DataFrame({"person_id": text.astype(str), "is_commuter": values.astype("int64")})
    if "weight" in frame.columns:
        out["weight"] = _weights(frame["weight"], where)
    dup = out["person_id"].duplicated()
    if dup.any():
        raise TripDataError(f"{p}: person_id {out['person_id'][dup].iloc[0]!r} is labelled twice")
    return out


def _weights(raw: pd.Series, where) -> np.ndarray:
    """The `weight` column as float64: every value a finite number >= 0."""
    if pd.api.types.is_bool_dtype(raw):
        numbers = pd.Series(np.nan, index=raw.index)
    else:
        text = raw if pd.api.types.is_numeric_dtype(raw) else raw.astype("string").str.strip()
        numbers = pd.to_numeric(text, errors="coerce").astype("float64")
    bad = ~(np.isfinite(numbers) & (numbers >= 0))
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise TripDataError(
            f"{where(i)}: column 'weight' value {_number_or_text(raw.iloc[i])!r} is not a finite "
            f"number >= 0 ({int(bad.sum())} bad row{'s' if bad.sum() > 1 else ''} in this file; "
            "leave the column out for weight 1)"
        )
    return numbers.to_numpy()


def label_weights(labels: pd.DataFrame) -> np.ndarray:
    """Each row's weight: the `weight` column, or 1 for labels read without one."""
    if "weight" in labels.columns:
        return labels["weight"].to_numpy(dtype="float64")
    return np.ones(len(labels))


def unit_weights(labels: pd.DataFrame) -> bool:
    """True when every row weighs 1 (no `weight` column, or all its values are 1)."""
    return "weight" not in labels.columns or bool((labels["weight"] == 1).all())


def _number_or_text(value: object) -> object:
    """A CSV cell as it reads: `2` for "2", `'yes'` for "yes"."""
    value = _plain(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    return value


def _plain(value: object) -> object:
    """numpy scalars as Python values, so messages read `2`, not `np.int64(2)`."""
    return value.item() if hasattr(value, "item") else value
