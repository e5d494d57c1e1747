"""Feature build on DuckDB and on Spark local[2], same input, same run (issue: Spark engine).

    python benchmarks/spark_bench.py [--persons 1000000] [--trips PATH] [--as-of 2021-10-20]
                                     [--master local[2]] [--driver-memory 6g] [--repeat N]
                                     [--no-check]

Simulates `--persons` people (or reads `--trips`, a file or directory), then builds the features
with DuckDB (`features.build.build_features`, in-process, all cores) and with Spark
(`features.spark.spark_features(...).write.parquet`), and prints wall time and crossings/s for both.
The Spark figure includes reading and contract-checking the input (one extra pass) and writing the
Parquet directory; Spark session start-up is timed separately, and `--repeat 2` adds a run in the
already warm JVM. Unless `--no-check`, the two feature
tables are compared person by person afterwards (not timed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def count_crossings(trips: str) -> int:
    from commuter_badge.features.read import connect, register_trips

    con = connect()
    register_trips(con, trips, "trips")
    return con.execute("SELECT count(*) FROM trips").fetchone()[0]


def compare(duck, spark_out: Path) -> str:
    """Person-by-person comparison of the DuckDB frame and Spark's Parquet output."""
    import numpy as np
    import pyarrow.parquet as pq

    from commuter_badge.features.build import to_frame
    from commuter_badge.features.definitions import CONTEXT_COLUMNS, FEATURES

    spark = to_frame(pq.read_table(spark_out)).set_index("person_id").sort_index()
    duck = duck.set_index("person_id").sort_index()
    if not spark.index.equals(duck.index):
        return f"DIFFERENT person sets ({len(spark):,} vs {len(duck):,})"
    bad_int = sum(
        int((spark[f.name].fillna(-1) != duck[f.name].fillna(-1)).sum())
        for f in FEATURES
        if f.kind == "int"
    )
    worst = 0.0
    for f in (f for f in FEATURES if f.kind == "float"):
        a, b = spark[f.name].to_numpy(), duck[f.name].to_numpy()
        if not np.array_equal(np.isnan(a), np.isnan(b)):
            return f"{f.name}: missing values differ"
        ok = ~np.isnan(a)
        worst = max(worst, float(np.max(np.abs(a[ok] - b[ok]), initial=0.0)))
    bad_ctx = sum(int((spark[c] != duck[c]).sum()) for c in CONTEXT_COLUMNS)
    return (
        f"{len(duck):,} persons: {bad_int} integer and {bad_ctx} context mismatches, "
        f"largest float difference {worst:.1e}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, default=1_000_000)
    ap.add_argument(
        "--trips", default=None, help="existing trips file or directory (skips simulate)"
    )
    ap.add_argument("--as-of", default="2021-10-20")
    ap.add_argument("--window-days", type=int, default=28)
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--driver-memory", default="6g")
    ap.add_argument("--repeat", type=int, default=1, help="Spark runs in the same session")
    ap.add_argument("--no-check", action="store_true", help="skip the DuckDB/Spark comparison")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    as_of = dt.date.fromisoformat(args.as_of)
    tmp = Path(tempfile.mkdtemp(prefix="spark-bench-"))
    try:
        trips = args.trips
        if trips is None:
            from commuter_badge.simulate.world import simulate_world, write_world

            start = time.perf_counter()
            world = simulate_world(
                args.persons, as_of, seed=args.seed, window_days=args.window_days
            )
            trips = str(write_world(world, tmp / "world")["trips"])
            del world
            print(f"simulate {args.persons:,} persons: {time.perf_counter() - start:.1f} s")
        rows = count_crossings(trips)
        print(f"input: {trips} ({rows:,} crossings)", flush=True)

        from commuter_badge.features.build import build_features

        start = time.perf_counter()
        duck = build_features(trips, as_of, args.window_days)
        t_duck = time.perf_counter() - start
        print(f"DuckDB: {len(duck):,} persons in {t_duck:.1f} s", flush=True)

        from commuter_badge.features.spark import read_trips_spark, spark_features, spark_session

        start = time.perf_counter()
        spark = spark_session(args.master, driver_memory=args.driver_memory)
        t_session = time.perf_counter() - start
        out = tmp / "spark-features.parquet"
        runs = []
        for i in range(args.repeat):  # the first run in a fresh JVM pays for JIT and codegen
            start = time.perf_counter()
            normalised = read_trips_spark(spark, trips)  # reads and checks the input (one pass)
            t_read = time.perf_counter() - start
            spark_features(spark, normalised, as_of, args.window_days).write.mode(
                "overwrite"
            ).parquet(str(out))
            runs.append(time.perf_counter() - start)
            print(
                f"Spark ({args.master}) run {i + 1}: {runs[-1]:.1f} s (of which read + contract "
                f"check {t_read:.1f} s)",
                flush=True,
            )
        t_spark = runs[0]
        n_spark = spark.read.parquet(str(out)).count()
        spark.stop()
        print(f"Spark ({args.master}): {n_spark:,} persons; session start {t_session:.1f} s")

        print()
        print(f"{'engine':<34}{'wall s':>9}{'crossings/s':>14}{'persons':>12}")
        print(f"{'DuckDB build_features':<34}{t_duck:>9.1f}{rows / t_duck:>14,.0f}{len(duck):>12,}")
        print(
            f"{'Spark ' + args.master + ' features + write':<34}{t_spark:>9.1f}"
            f"{rows / t_spark:>14,.0f}{n_spark:>12,}"
        )
        if len(runs) > 1:
            t_warm = min(runs[1:])
            print(f"{'  same, warm JVM (best of rest)':<34}{t_warm:>9.1f}{rows / t_warm:>14,.0f}")
        print(
            f"\nSpark / DuckDB wall time: {t_spark / t_duck:.1f}x; "
            f"cores {os.cpu_count()}, load average now {os.getloadavg()[0]:.1f}"
        )
        if not args.no_check:
            print("parity:", compare(duck, out))
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
