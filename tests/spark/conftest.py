"""Spark test fixtures: one local SparkSession for the whole run, and a messy simulated month.

The Spark tests need a Java runtime (`make test` installs one); without `java` on PATH they are
skipped with that reason (failed under `make test`, tests/needs.py). Everything else they need (PySpark, DuckDB, LightGBM) is a dependency.
"""

from __future__ import annotations

import datetime as dt
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from tests.needs import missing_server

# The window 2021-09-22 .. 10-19 holds the National Day week off and make-up working days on
# Sunday 9-26 and Saturday 10-9.
AS_OF = dt.date(2021, 10, 20)
PERSONS = 1500
SEED = 7
_US = 1_000_000
_SHANGHAI = 8 * 3600


@pytest.fixture(scope="session")
def spark():
    """A local[2] SparkSession (UI off, session time zone UTC), stopped at the end of the run."""
    if shutil.which("java") is None:
        missing_server(
            "Spark tests need a Java runtime: no `java` on PATH (`make java` installs one)"
        )
    from commuter_badge.features.spark import spark_session

    session = spark_session("local[2]", shuffle_partitions=4)
    assert session.conf.get("spark.sql.session.timeZone") == "UTC"
    assert session.conf.get("spark.ui.enabled") == "false"
    yield session
    session.stop()


def _local_midnight_utc_us(day: dt.date) -> int:
    """The UTC instant (microseconds) of 00:00 Asia/Shanghai on `day`."""
    return ((day - dt.date(1970, 1, 1)).days * 86400 - _SHANGHAI) * _US


def _render_ts(ts_us: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """ISO 8601 text for UTC microsecond instants, each in one of several offsets and spellings."""
    offsets = [
        (8 * 3600, "+08:00"),
        (0, "Z"),
        (-5 * 3600, "-05:00"),
        (8 * 3600, "+0800"),
        (0, "+00:00"),
        (5 * 3600 + 1800, "+05:30"),
    ]
    pick = rng.integers(0, len(offsets), len(ts_us))
    out = np.empty(len(ts_us), dtype=object)
    for k, (secs, suffix) in enumerate(offsets):
        m = pick == k
        local = (ts_us[m] + secs * _US).astype("datetime64[us]")
        text = np.datetime_as_string(local, unit="us")  # 2021-10-01T07:04:51.500000
        whole = ts_us[m] % _US == 0
        text = np.where(whole, np.char.partition(text.astype(str), ".")[:, 0], text)
        if k == 3:  # a space instead of 'T' is ISO-8601-ish and both engines accept it
            text = np.char.replace(text.astype(str), "T", " ")
        out[m] = np.char.add(text.astype(str), suffix)
    return out


def _messy(trips: pa.Table, rng: np.random.Generator) -> pa.Table:
    """The simulated trips plus what real feeds do: double reads, sub-second stamps, odd casing and
    padding, null regions, crossings outside the window, an extra column, and a shuffled order."""
    n = trips.num_rows
    ts = trips.column("ts").cast(pa.int64()).to_numpy().copy()
    # Sub-second parts on half the rows (floor to the second must agree in both engines).
    frac = rng.random(n) < 0.5
    ts[frac] += rng.integers(1, _US, frac.sum())
    cols = {
        c: trips.column(c).to_numpy(zero_copy_only=False).astype(object)
        for c in ("person_id", "direction", "mode", "site_id", "region")
    }
    cols["ts"] = ts
    # Odd casing and padding, null regions.
    for c, variants in (
        ("direction", (str.upper, lambda s: f" {s}")),
        ("mode", (str.title, lambda s: f"{s} ")),
    ):
        for fn in variants:
            m = rng.random(n) < 0.05
            cols[c][m] = [fn(v) for v in cols[c][m]]
    cols["region"][(cols["region"] == "") & (rng.random(n) < 0.5)] = None
    for c in ("person_id", "site_id"):  # padded ids
        pad = rng.random(n) < 0.02
        cols[c][pad] = [f" {v} " for v in cols[c][pad]]
    # Extra double reads (seconds to a minute later) and exact duplicates.
    dup = np.flatnonzero(rng.random(n) < 0.04)
    extra = {c: v[dup].copy() for c, v in cols.items()}
    extra["ts"] = extra["ts"] + np.where(
        rng.random(len(dup)) < 0.5, 0, rng.integers(1, 90, len(dup)) * _US
    )
    # Crossings at the window's edges: local midnight of the first day (in), one microsecond before
    # it (out), one microsecond before as_of (in) and at as_of and later (out). Only the in-window
    # ones may count; 'edge-only' has nothing but crossings at or after as_of and must not appear.
    start = AS_OF - dt.timedelta(days=28)
    people = cols["person_id"][:4].tolist()
    edge = {
        "person_id": [people[0], people[1], people[2], people[3], "edge-only", "edge-only"],
        "ts": [
            _local_midnight_utc_us(start),
            _local_midnight_utc_us(start) - 1,
            _local_midnight_utc_us(AS_OF) - 1,
            _local_midnight_utc_us(AS_OF),
            _local_midnight_utc_us(AS_OF) + 3600 * _US,
            _local_midnight_utc_us(AS_OF) + 7200 * _US,
        ],
        "direction": ["in", "in", "out", "in", "in", "out"],
        "mode": ["car", "rail", "bus", "car", "car", "car"],
        "site_id": [
            "CK-G1-XIJI",
            "RL-WUQING",
            "CK-G1-XIJI",
            "CK-G1-XIJI",
            "CK-G1-XIJI",
            "CK-G1-XIJI",
        ],
        "region": ["langfang-xianghe", None, "", "x", "y", "z"],
    }
    merged = {
        c: np.concatenate([cols[c], extra[c], np.array(edge[c], dtype=cols[c].dtype)]) for c in cols
    }
    order = rng.permutation(len(merged["ts"]))
    table = pa.table(
        {
            "person_id": pa.array(merged["person_id"][order], pa.string()),
            "ts": pa.array(merged["ts"][order], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "direction": pa.array(merged["direction"][order], pa.string()),
            "mode": pa.array(merged["mode"][order], pa.string()),
            "site_id": pa.array(merged["site_id"][order], pa.string()),
            "region": pa.array(merged["region"][order], pa.string()),
        }
    )
    return table.append_column("source_system", pa.array(np.full(table.num_rows, "gate-v2")))


def write_messy_trips(trips: pa.Table, out_dir, seed: int = 11) -> dict[str, int]:
    """A directory of messy trip files: two Parquet files (UTC and Asia/Shanghai zoned timestamps)
    and, in a subdirectory, two CSV files with different column orders and mixed-offset text."""
    rng = np.random.default_rng(seed)
    table = _messy(trips, rng)
    n = table.num_rows
    part = rng.integers(0, 4, n)  # 0, 1: Parquet; 2, 3: CSV (about half the rows as text)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "csv").mkdir()
    pq.write_table(table.filter(pa.array(part == 0)), out_dir / "trips-a.parquet")
    zoned = table.filter(pa.array(part == 1))
    zoned = zoned.set_column(
        1, "ts", zoned.column("ts").cast(pa.timestamp("us", tz="Asia/Shanghai"))
    )
    pq.write_table(zoned, out_dir / "trips-b.parquet")
    for k, name, columns in (
        (
            2,
            "trips-c.csv",
            ["person_id", "ts", "direction", "mode", "site_id", "region", "source_system"],
        ),
        (3, "trips-d.csv", ["region", "site_id", "mode", "ts", "person_id", "direction"]),
    ):
        sub = table.filter(pa.array(part == k))
        text = _render_ts(sub.column("ts").cast(pa.int64()).to_numpy(), rng)
        sub = sub.set_column(1, "ts", pa.array(text, pa.string())).select(columns)
        pacsv.write_csv(sub, out_dir / "csv" / name)
    return {"rows": n, "csv_rows": int(np.isin(part, (2, 3)).sum())}


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory):
    """The simulated month written by the project's simulator: trips.parquet, labels.csv."""
    from commuter_badge.simulate.world import simulate_world, write_world

    directory = tmp_path_factory.mktemp("world")
    write_world(simulate_world(persons=PERSONS, as_of=AS_OF, seed=SEED), directory)
    return directory


@pytest.fixture(scope="session")
def messy_dir(world_dir, tmp_path_factory):
    """The same month as a messy directory of Parquet and CSV files (see write_messy_trips)."""
    directory = tmp_path_factory.mktemp("messy") / "trips"
    write_messy_trips(pq.read_table(world_dir / "trips.parquet"), directory)
    return directory


@pytest.fixture(scope="session")
def duckdb_features(messy_dir):
    from commuter_badge.features.build import build_features

    return build_features(messy_dir, AS_OF)


@pytest.fixture(scope="session")
def spark_feature_df(spark, messy_dir):
    """Spark's features for the messy directory, computed once (persisted) for the whole run."""
    from commuter_badge.features.spark import spark_features

    df = spark_features(spark, str(messy_dir), AS_OF).persist()
    yield df
    df.unpersist()


@pytest.fixture(scope="session")
def spark_feature_frame(spark_feature_df):
    """Spark's features as the batch frame (features.build.to_frame), through Arrow."""
    from commuter_badge.features.build import to_frame

    return to_frame(spark_feature_df.toArrow())
