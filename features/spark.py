"""Features and scores on Apache Spark, from the same SQL text DuckDB runs.

The feature logic lives once, in `features/sql.py`; this module only gets trips into the
normalised relation `(person_id, t, direction, mode, site_id, region)` the SQL expects, registers it
as a temporary view, and runs `feature_sql` unchanged (the calendar comes in as constant day
masks). Scoring ships the LightGBM model text to the executors and calls the very `CommuterModel.predict_proba` batch scoring
uses, on feature rows converted by the very `features.build.to_frame` batch uses.

Spark <-> Python data crosses only as Arrow (`mapInArrow`, `DataFrame.toArrow`), never through PySpark's own pandas conversion, which PySpark 4.x does not
fully support with pandas 3 (see docs/spark.md).

Reading mirrors `features/read.py`: the same required columns, the same accepted values, the same
normalisation (ids trimmed, direction and mode lower-cased, empty region ''), and a contract breach
raises `TripDataError` naming the file, the column and an example bad value. Spark does not keep row
numbers, so unlike the DuckDB reader the message cannot name the first offending row.

Classic PySpark (a JVM driver) is assumed; Spark Connect is not supported.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import functools
import os
import sys
import tempfile
import urllib.parse
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from commuter_badge.features.read import KINDS, file_kind, skipped_name
from commuter_badge.features.schema import (
    TRIP_COLUMNS,
    TRIP_SCHEMA,
    TS_OFFSET_PATTERN,
    TripDataError,
    bad_value,
    missing_columns,
    wrong_type,
)
from commuter_badge.features.sql import HASH_CLASH, Window, feature_sql
from commuter_badge.features.workdays import LIBRARY_CALENDAR, WorkingCalendar
from commuter_badge.settings import DEFAULT_WINDOW_DAYS

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

# PySpark 4.x warns on import paths that pandas 3 is "not yet fully supported". Nothing here goes
# through PySpark's pandas conversion (Arrow only), so the warning is noise for this module's calls.
_PANDAS3_WARNING = r"PySpark does not yet fully support pandas >= 3"

# CSV `ts` text: date, 'T' (a space is normalised to 'T'), time with optional seconds and 1-9 digit
# fraction, and an offset. XXX reads Z and +08:00; X reads Z, +08 and +0800.
_TS_PATTERNS = (
    "yyyy-MM-dd'T'HH:mm[:ss][.SSSSSSSSS]XXX",
    "yyyy-MM-dd'T'HH:mm[:ss][.SSSSSSSSS]X",
)
_NO_ROWS = "row numbers are not available on Spark"
SPARK_HASH = "xxhash64"  # the 64-bit hash feature_sql groups on (its `hash_fn`)

# Local runs: ERROR and above only, and no executor stack traces for errors the driver re-raises.
_LOG4J2 = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
logger.executor.name = org.apache.spark.executor.Executor
logger.executor.level = off
logger.tsm.name = org.apache.spark.scheduler.TaskSetManager
logger.tsm.level = off
logger.pyrunner.name = org.apache.spark.api.python
logger.pyrunner.level = off
"""


@contextlib.contextmanager
def _quiet_pandas3() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_PANDAS3_WARNING, category=FutureWarning)
        yield


def _log4j_file() -> str:
    path = Path(tempfile.gettempdir()) / "commuter-spark-log4j2.properties"
    if not path.exists() or path.read_text() != _LOG4J2:
        path.write_text(_LOG4J2)
    return str(path)


def spark_session(
    master: str | None = "local[2]",
    *,
    app_name: str = "commuter-badge",
    driver_memory: str = "6g",
    shuffle_partitions: int = 8,
    quiet: bool = True,
    conf: dict[str, str] | None = None,
) -> SparkSession:
    """A SparkSession set up for this project (or the active one, reconfigured where Spark allows).

    `master="local[2]"` (default) runs in this process's JVM: UI off, session time zone UTC,
    `shuffle_partitions` shuffle partitions, `driver_memory` for the one JVM (6g suits a 2-core,
    24 GB box and leaves room for DuckDB and the Python workers), ERROR-only logs, and the Python
    workers run this interpreter with this checkout importable. `master=None` leaves the master and
    the resources to `spark-submit` / spark-defaults (a cluster); only the time zone and Arrow
    settings are applied then.
    """
    from pyspark.sql import SparkSession

    local = master is not None and master.startswith("local")
    builder = SparkSession.builder.appName(app_name)
    settings: dict[str, str] = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
    }
    if master is not None:
        builder = builder.master(master)
    if local:
        # Workers must run this interpreter (a venv with pyarrow, lightgbm), not `python3` on PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        root = str(Path(__file__).resolve().parent.parent)
        settings.update(
            {
                "spark.ui.enabled": "false",
                "spark.ui.showConsoleProgress": "false",
                "spark.driver.memory": driver_memory,
                "spark.sql.shuffle.partitions": str(shuffle_partitions),
                "spark.executorEnv.PYTHONPATH": os.pathsep.join(
                    p for p in (root, os.environ.get("PYTHONPATH", "")) if p
                ),
            }
        )
        if quiet:
            settings["spark.driver.extraJavaOptions"] = f"-Dlog4j.configurationFile={_log4j_file()}"
    settings.update(conf or {})
    for key, value in settings.items():
        builder = builder.config(key, value)
    with _quiet_pandas3():
        spark = builder.getOrCreate()
    if quiet:
        spark.sparkContext.setLogLevel("ERROR")
    return spark


def _under_spark_submit() -> bool:
    """spark-submit starts the driver with a gateway to its JVM already open."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


@contextlib.contextmanager
def _session(master: str | None = None) -> Iterator[SparkSession]:
    """The active session, else one from spark-submit's settings, else local[2]; stops its own.

    `master` (the command passes `COMMUTER_SPARK_MASTER`) overrides the master (e.g. `yarn`,
    `k8s://...`, `local[*]`).
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        yield active
        return
    if master is None and not _under_spark_submit():  # not under spark-submit
        master = "local[2]"
    spark = spark_session(master)
    try:
        yield spark
    finally:
        spark.stop()


# ----------------------------------------------------------------------------------------- reading


def _spark_error(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _discover(spark: SparkSession, path: str) -> list[str]:
    """Every .csv/.parquet/.pq file at `path` (a file, or a directory searched recursively).

    Uses Spark's own file listing, so any file system Spark is configured for works (file:,
    hdfs://, s3a://, abfss://, gs://); hidden files (names starting with '.' or '_') are skipped,
    as Spark does. Returns URIs.
    """
    from pyspark.errors import AnalysisException

    try:
        listed = (
            spark.read.format("text").option("recursiveFileLookup", "true").load(path).inputFiles()
        )
    except AnalysisException as exc:
        if "PATH_NOT_FOUND" in str(exc):
            raise TripDataError(f"{path}: no such file or directory") from None
        raise TripDataError(f"{path}: cannot be listed: {_spark_error(exc)}") from None
    # inputFiles() gives URIs ('sp%20ace'); the readers take Hadoop path strings ('sp ace').
    listed = [urllib.parse.unquote(f) for f in listed]
    single = len(listed) == 1 and Path(listed[0]).name == Path(path.rstrip("/")).name
    if single and file_kind(listed[0]) is None:
        suffix = Path(listed[0]).suffix
        raise TripDataError(f"{path}: unsupported file type {suffix!r}; use one of {KINDS}")
    files = sorted(f for f in listed if file_kind(f) is not None and not skipped_name(Path(f).name))
    if not files:
        raise TripDataError(f"{path}: directory holds no trip files ({KINDS})")
    return files


def _csv_header(spark: SparkSession, uri: str) -> tuple[str, ...]:
    """Column names on the first line of a CSV file, read through Hadoop's file system API."""
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(uri)
    fs = hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    stream = fs.open(hpath)
    try:
        line = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, "UTF-8")).readLine()
    finally:
        stream.close()
    if not line:
        return ()
    return tuple(next(csv.reader([line.lstrip("\ufeff")])))


def _label(files: list[str]) -> str:
    return files[0] if len(files) == 1 else f"{files[0]} (and {len(files) - 1} more file(s))"


def _ts_text(ts: Column) -> tuple[Column, Column]:
    """The instant parsed from ISO 8601 text, and a flag that is true where it cannot be parsed."""
    from pyspark.sql import functions as F

    text = F.regexp_replace(F.trim(ts), r"^([0-9]{4}-[0-9]{2}-[0-9]{2}) ", "$1T")
    has_offset = text.rlike(TS_OFFSET_PATTERN)
    parsed = F.coalesce(*(F.try_to_timestamp(text, F.lit(p)) for p in _TS_PATTERNS))
    parsed = F.when(has_offset, parsed)
    return parsed, ts.isNull() | parsed.isNull()


def _checks(df: DataFrame, label: str) -> tuple[list[tuple[str, Column, str]], Column]:
    """(column, true on a bad row, what was expected) per column, and the parsed instant."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    ts_type = df.schema["ts"].dataType
    if isinstance(ts_type, T.TimestampType):  # Parquet timestamp with time zone (UTC-adjusted)
        ts, ts_bad = F.col("ts"), F.col("ts").isNull()
    elif isinstance(ts_type, T.StringType):  # CSV, or text in Parquet
        ts, ts_bad = _ts_text(F.col("ts"))
    else:
        raise wrong_type(label, "ts", ts_type.simpleString())
    for column in TRIP_SCHEMA:  # text must arrive as text, never coerced (see features/read.py)
        found = df.schema[column.name].dataType
        allowed = (T.StringType,) + (() if column.required else (T.NullType,))
        if column.text and not isinstance(found, allowed):
            raise wrong_type(label, column.name, found.simpleString())

    def bad(column) -> Column:
        """True where the normalised value breaks `column`'s rule (features/schema.py)."""
        if not column.text:
            return ts_bad
        raw = F.col(column.name)
        value = F.trim(raw.cast("string"))
        if column.values:
            value = F.lower(value)
        tests = [raw.isNull(), value == ""] if column.required else []
        if column.values:
            tests.append(~value.isin(*column.values))
        if column.max_length:
            tests.append(F.length(value) > column.max_length)
        return functools.reduce(lambda a, b: a | b, tests)

    return [(c.name, bad(c), c.expected) for c in TRIP_SCHEMA], ts


def _check_columns(spark: SparkSession, file: str) -> None:
    """Raise the missing-column error if `file` itself lacks a required column (error path only)."""
    reader = spark.read.option("header", "true")
    fmt = file_kind(file)
    columns = (reader.parquet(file) if fmt == "parquet" else reader.csv(file)).columns
    missing = [c for c in TRIP_COLUMNS if c not in columns]
    if missing:
        raise missing_columns(file, missing, columns)


def _read_error(label: str, exc: Exception) -> TripDataError:
    message = _spark_error(exc)
    if "TIMESTAMP(NANOS" in message:
        return TripDataError(
            f"{label}: column 'ts' holds nanosecond Parquet timestamps, which Spark cannot read; "
            "rewrite the file with microsecond timestamps (pyarrow: coerce_timestamps='us') or "
            "use the DuckDB engine"
        )
    return TripDataError(f"{label}: cannot be read: {message}")


def _validate(df: DataFrame, checks: list[tuple[str, Column, str]], label: str, scope: str) -> None:
    """One pass over the data: bad rows and an example (file, value) per check; raise on any."""
    from pyspark.sql import functions as F

    has_file = "_file" in df.columns
    aggs = []
    for i, (column, bad, _) in enumerate(checks):
        example = F.struct(
            (F.col("_file") if has_file else F.lit(label)).alias("file"),
            F.col(column).cast("string").alias("value"),
        )
        aggs += [
            F.sum(F.when(bad, 1).otherwise(0)).alias(f"n{i}"),
            F.min(F.when(bad, example)).alias(f"x{i}"),
        ]
    try:
        row = df.agg(*aggs).collect()[0]
    except Exception as exc:  # noqa: BLE001 - Py4J/JVM errors have no common Python base worth naming
        raise _read_error(label, exc) from None
    for i, (column, _, _) in enumerate(checks):
        n_bad = row[f"n{i}"] or 0
        if n_bad:
            file, value = row[f"x{i}"]["file"], row[f"x{i}"]["value"]
            file = urllib.parse.unquote(file)
            if value is None and has_file and file_kind(file) is not None:
                # Parquet files are read with merged schemas: a column one file lacks reads as null.
                _check_columns(df.sparkSession, file)
            raise bad_value(file, column, value, n_bad, f"{scope}; {_NO_ROWS}")


def normalise_trips(
    df: DataFrame, label: str = "<DataFrame>", validate: bool = True, scope: str = "the DataFrame"
) -> DataFrame:
    """Check contract-shaped trips (`person_id, ts, direction, mode, site_id, region`; extra
    columns ignored) and return the normalised relation the feature SQL reads (`t` = floor epoch
    seconds)."""
    from pyspark.sql import functions as F

    missing = [c for c in TRIP_COLUMNS if c not in df.columns]
    if missing:
        raise missing_columns(label, missing, [c for c in df.columns if c != "_file"])
    checks, ts = _checks(df, label)
    if validate:
        _validate(df, checks, label, scope)
    # floor(epoch seconds) exactly as DuckDB's floor(epoch(ts)): integer floor division of micros.
    micros = F.unix_micros(ts)
    t = ((micros - F.pmod(micros, F.lit(1_000_000))) / F.lit(1_000_000)).cast("bigint")
    return df.select(
        F.trim(F.col("person_id").cast("string")).alias("person_id"),
        t.alias("t"),
        F.lower(F.trim(F.col("direction").cast("string"))).alias("direction"),
        F.lower(F.trim(F.col("mode").cast("string"))).alias("mode"),
        F.trim(F.col("site_id").cast("string")).alias("site_id"),
        F.coalesce(F.trim(F.col("region").cast("string")), F.lit("")).alias("region"),
    )


def read_trips_spark(spark: SparkSession, path: str | Path) -> DataFrame:
    """Trips at `path` (a file or directory; local path or any URI Spark reads, e.g. hdfs://,
    s3a://) as the normalised relation `(person_id, t, direction, mode, site_id, region)`.

    CSV and Parquet files (chosen by extension) may be mixed in one directory. Parquet files are
    read together with schema merging; CSV files are read together per distinct header line. Every
    group is checked against the contract (one Spark job each) before the relation is returned.
    """
    from pyspark.sql import functions as F

    path = str(path)
    files = _discover(spark, path)
    parquet = [f for f in files if file_kind(f) == "parquet"]
    groups: list[tuple[list[str], DataFrame]] = []
    try:
        if parquet:
            raw = spark.read.option("mergeSchema", "true").parquet(*parquet)
            groups.append((parquet, raw))
        by_header: dict[tuple[str, ...], list[str]] = {}
        for f in (f for f in files if f not in parquet):
            by_header.setdefault(_csv_header(spark, f), []).append(f)
        for header, group in by_header.items():
            if not header:
                raise TripDataError(f"{group[0]}: empty CSV file (no header line)")
            raw = spark.read.csv(group, header=True, inferSchema=False)
            groups.append((group, raw))
    except TripDataError:
        raise
    except Exception as exc:  # noqa: BLE001 - schema conflicts, unreadable files
        raise _read_error(path, exc) from None
    parts = []
    for group, raw in groups:
        with_file = raw.select("*", F.col("_metadata.file_path").alias("_file"))
        others = len(group) - 1
        scope = (
            "this file"
            if not others
            else (f"it and the {others} other file{'s' if others > 1 else ''} read with it")
        )
        parts.append(normalise_trips(with_file, _label(group), scope=scope))
    return functools.reduce(lambda a, b: a.unionByName(b), parts)


# ---------------------------------------------------------------------------------------- features


def _as_date(as_of: dt.date | str) -> dt.date:
    if isinstance(as_of, dt.datetime):
        return as_of.date()
    if isinstance(as_of, dt.date):
        return as_of
    return dt.date.fromisoformat(str(as_of))


def _trips_frame(spark: SparkSession, path_or_df: str | Path | DataFrame) -> DataFrame:
    from pyspark.sql import DataFrame
    from pyspark.sql import functions as F

    if not isinstance(path_or_df, DataFrame):
        return read_trips_spark(spark, path_or_df)
    df = path_or_df
    if "ts" in df.columns:  # contract-shaped rows: check and normalise like a file
        return normalise_trips(df)
    missing = [
        c
        for c in ("person_id", "t", "direction", "mode", "site_id", "region")
        if c not in df.columns
    ]
    if missing:
        raise TripDataError(
            f"<DataFrame>: missing column(s) {', '.join(missing)}; expected the "
            "contract columns (with ts) or the normalised ones (with t)"
        )
    return df.select(
        F.col("person_id").cast("string"),
        F.col("t").cast("bigint"),
        F.col("direction").cast("string"),
        F.col("mode").cast("string"),
        F.col("site_id").cast("string"),
        F.coalesce(F.col("region").cast("string"), F.lit("")).alias("region"),
    )


def spark_features(
    spark: SparkSession,
    path_or_df: str | Path | DataFrame,
    as_of: dt.date | str,
    window_days: int = DEFAULT_WINDOW_DAYS,
    calendar: WorkingCalendar = LIBRARY_CALENDAR,
) -> DataFrame:
    """One row per person seen in the window before `as_of`: the DuckDB feature table, on Spark.

    `path_or_df` is a path/URI of trip files, or a DataFrame with either the contract columns
    (`ts`, checked and normalised) or the normalised ones (`t`). The result is lazy; columns and
    types are those of `feature_sql` (person_id, BIGINT/DOUBLE features, main_mode, main_region),
    rows ordered by person_id.
    """
    from pyspark.sql import functions as F

    window = Window(_as_date(as_of), window_days, calendar)
    trips = _trips_frame(spark, path_or_df)
    trips_view = f"commuter_trips_{uuid.uuid4().hex[:12]}"
    trips.createOrReplaceTempView(trips_view)
    # The query DuckDB runs, with the SQL module's own Spark switch: Spark's `hash` is 32 bits,
    # far too few for millions of ids, so the grouping keys use `xxhash64` (DuckDB's `hash` is
    # 64 bits). The view is resolved by spark.sql, so it can be dropped right after.
    sql = feature_sql(trips_view, window.params(), hash_fn=SPARK_HASH)
    try:
        features = spark.sql(sql)
    finally:
        spark.catalog.dropTempView(trips_view)
    # Two ids sharing a 64-bit key come out with person_id NULL (as in features.build): fail the
    # job there, before anything is written, rather than emit an unusable row.
    guarded = F.when(F.col("person_id").isNotNull(), F.col("person_id")).otherwise(
        F.raise_error(F.lit(HASH_CLASH))
    )
    return features.withColumn("person_id", guarded)


def _write(df: DataFrame, out: str) -> int:
    """Write `df` as a Spark output directory at `out` (CSV with header if it ends in .csv, else
    Parquet), replacing what is there; return the number of rows written."""
    spark = df.sparkSession
    if out.lower().endswith(".csv"):
        df.write.mode("overwrite").option("header", "true").csv(out)
        return spark.read.option("header", "true").csv(out).count()
    df.write.mode("overwrite").parquet(out)
    return spark.read.parquet(out).count()  # from the Parquet footers: no data pass


def write_spark_features(
    path: str | Path,
    as_of: dt.date | str,
    out: str | Path,
    window_days: int = DEFAULT_WINDOW_DAYS,
    master: str | None = None,
    calendar: WorkingCalendar = LIBRARY_CALENDAR,
) -> int:
    """`commuter features --engine spark`: features of the trips at `path` written to `out` as a
    Spark output directory (part files; Parquet, or CSV if `out` ends in .csv); returns persons.

    Uses the active SparkSession if there is one, else `master`, else spark-submit's settings,
    else local[2].
    """
    with _session(master) as spark:
        return _write(spark_features(spark, str(path), as_of, window_days, calendar), str(out))
