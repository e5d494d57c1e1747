"""Feature build speed against one plain DuckDB aggregate pass over the same file (issue: Foundation).

    python benchmarks/features_bench.py [--persons 1000000] [--trips PATH] [--as-of 2021-10-20]
                                        [--repeat N] [--copies]

Each phase runs in its own process so peak RSS is measured per phase. Prints wall time,
crossings/s, peak RSS, and the ratio of the feature build to the plain pass. Target: ratio <= 3,
feature build peak RSS < 4 GiB. Writes benchmarks/results/features.json, one entry per size
under `by_persons` (other sizes' entries are kept), for the operations page. `--copies` also times the weekday copies of every person
(features/copies.py, what `copy_weight` > 0 adds to a training), once.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from results_file import RESULTS, Result  # noqa: E402


def phase_simulate(persons: int, as_of: str, out: str) -> None:
    from commuter_badge.simulate import simulate_world, write_world

    write_world(simulate_world(persons, dt.date.fromisoformat(as_of), seed=12345), Path(out))


def phase_plain(trips: str, as_of: str) -> None:
    from commuter_badge.features.read import connect

    con = connect()
    row = con.execute(
        "SELECT count(*), count(DISTINCT (person_id, CAST(floor((epoch(ts) + 28800) / 86400) AS BIGINT))), "
        f"count(DISTINCT site_id) FROM read_parquet('{trips}')"
    ).fetchone()
    print(f"    plain pass: {row[0]:,} rows, {row[1]:,} person-days, {row[2]} sites", flush=True)


def phase_features(trips: str, as_of: str) -> None:
    """What `commuter features --out F.parquet` does: read, check, build, write."""
    from commuter_badge.features.build import BatchPlan, write_features
    from commuter_badge.settings import load_settings

    out = Path(tempfile.gettempdir()) / "features_bench_out.parquet"
    plan = BatchPlan.for_path(trips, memory=load_settings().duckdb_memory)  # as the command does
    n = write_features(trips, dt.date.fromisoformat(as_of), out, plan=plan)
    print(f"    features: {n:,} persons -> {out}", flush=True)


def phase_copies(trips: str, as_of: str) -> None:
    """Weekday copies of every person in the file, as a training with copies builds them."""
    import pyarrow.parquet as pq

    from commuter_badge.features.copies import weekday_copies

    ids = pq.read_table(trips, columns=["person_id"]).column("person_id").to_pandas()
    n = len(weekday_copies(trips, dt.date.fromisoformat(as_of), ids))
    print(f"    copies: {n:,} persons", flush=True)


def timed(fn, *args) -> tuple[float, float, float]:
    """Run fn(*args) in a child process; return (wall seconds, peak RSS GiB, CPU seconds)."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            fn(*args)
            os._exit(0)
        except BaseException as exc:  # noqa: BLE001
            print(f"phase failed: {exc!r}", file=sys.stderr)
            os._exit(1)
    _, status, usage = os.wait4(pid, 0)
    if status != 0:
        raise SystemExit(f"{fn.__name__} failed")
    return time.perf_counter() - start, usage.ru_maxrss / 2**20, usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, default=1_000_000)
    ap.add_argument("--trips", type=str, default=None)
    ap.add_argument("--as-of", default="2021-10-20")
    ap.add_argument(
        "--repeat", type=int, default=1, help="run the pair N times, alternating; report medians"
    )
    ap.add_argument("--copies", action="store_true", help="also time the weekday copies")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="features-bench-")
    try:
        run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, tmp: str) -> None:
    result = Result("features")
    trips = args.trips
    if trips is None:
        secs, rss, _ = timed(phase_simulate, args.persons, args.as_of, tmp)
        trips = f"{tmp}/trips.parquet"
        print(f"simulate {args.persons:,} persons: {secs:.1f} s, peak RSS {rss:.2f} GiB")
    import pyarrow.parquet as pq

    rows = pq.ParquetFile(trips).metadata.num_rows
    print(f"input: {trips} ({rows:,} crossings, {Path(trips).stat().st_size / 2**20:.0f} MiB)")
    runs = []
    for i in range(max(1, args.repeat)):
        plain = timed(phase_plain, trips, args.as_of)
        feat = timed(phase_features, trips, args.as_of)
        runs.append((plain, feat))
        if args.repeat > 1:
            print(
                f"  run {i + 1}: plain {plain[0]:.2f} s, features {feat[0]:.2f} s, "
                f"ratio {feat[0] / plain[0]:.2f}",
                flush=True,
            )
    # Medians over the runs: single runs on a shared 2-core machine move by about 10%.
    (t_plain, rss_plain, cpu_plain), (t_feat, rss_feat, cpu_feat) = (
        tuple(statistics.median(r[k][j] for r in runs) for j in range(3)) for k in (0, 1)
    )
    ratios = sorted(f[0] / p[0] for p, f in runs)
    copies = timed(phase_copies, trips, args.as_of) if args.copies else None
    print()
    print(f"{'phase':<28}{'wall s':>9}{'CPU s':>9}{'crossings/s':>14}{'peak RSS GiB':>14}")
    phases = [
        ("plain DuckDB aggregate", t_plain, cpu_plain, rss_plain),
        ("commuter features", t_feat, cpu_feat, rss_feat),
    ]
    if copies:
        phases.append(("weekday copies", copies[0], copies[2], copies[1]))
    for name, t, c, r in phases:
        print(f"{name:<28}{t:>9.2f}{c:>9.2f}{rows / t:>14,.0f}{r:>14.2f}")
    spread = f" (runs: {ratios[0]:.2f}-{ratios[-1]:.2f})" if len(ratios) > 1 else ""
    print(
        f"\nratio feature build / plain pass: wall {statistics.median(ratios):.2f}{spread}, "
        f"CPU {cpu_feat / cpu_plain:.2f} (target <= 3); peak RSS {rss_feat:.2f} GiB (target < 4); "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    entry = {
        "persons": args.persons,
        "crossings": rows,
        "runs": len(runs),
        "plain": {"wall_s": t_plain, "cpu_s": cpu_plain, "peak_rss_gib": rss_plain},
        "features": {"wall_s": t_feat, "cpu_s": cpu_feat, "peak_rss_gib": rss_feat},
        "ratio_wall": statistics.median(ratios),
        "ratio_wall_runs": ratios,
        "ratio_cpu": cpu_feat / cpu_plain,
        "target": "ratio <= 3, features peak RSS < 4 GiB",
    }
    if copies:
        entry["copies"] = {"wall_s": copies[0], "cpu_s": copies[2], "peak_rss_gib": copies[1]}
    result.write({"by_persons": {**_earlier_sizes(), str(args.persons): entry}})


def _earlier_sizes() -> dict:
    """The other sizes' entries of the results file, kept when one size is re-measured."""
    try:
        return json.loads((RESULTS / "features.json").read_text())["by_persons"]
    except (OSError, ValueError, KeyError):
        return {}


if __name__ == "__main__":
    main()
