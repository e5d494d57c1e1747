"""Feature build at growing sizes under the default memory cap (issue 18): time, peak RSS, spill.

    python benchmarks/scaling_bench.py [--base TRIPS.parquet] [--sizes 1,2.5,5] [--work DIR]
                                       [--frame 1] [--as-of 2021-10-20]

Simulating 5M persons takes long and a lot of memory, so the larger inputs are tiles of one
simulated month: copy k of the base file renames every id to `<id>.<k>` (a fractional last copy
keeps the persons whose id hash is even). Without `--base`, 1M persons are simulated first.

For each size, in its own process: the plain DuckDB pass of `features_bench.py` (DuckDB's own
default memory, 80% of the machine), then `commuter features` as the CLI runs it (default cap,
person partitions from the plan), and at the `--frame` sizes also `build_features` (the
in-memory table `commuter train` and `commuter score` read). Peak RSS from the child's rusage; spill bytes are
the largest size the build's temporary directory reached (polled every 0.2 s).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from features_bench import phase_plain, phase_simulate  # noqa: E402


def tile(base: str, copies: float, out: Path) -> Path:
    """`copies` tiles of `base` with renamed ids, written once to `out` (kept if present)."""
    if out.exists():
        return out
    import duckdb

    con = duckdb.connect()
    con.execute("SET memory_limit = '2GB'; SET preserve_insertion_order = false")
    parts = []
    for k in range(int(copies + 0.999)):
        pid = "person_id" if k == 0 else f"person_id || '.{k}'"
        keep = "" if k + 1 <= copies else " WHERE hash(person_id) % 2 = 0"
        parts.append(
            f"SELECT {pid} AS person_id, ts, direction, mode, site_id, region "
            f"FROM read_parquet('{base}'){keep}"
        )
    tmp = out.with_suffix(".tmp")
    con.execute(f"COPY ({' UNION ALL '.join(parts)}) TO '{tmp}' (FORMAT parquet)")
    tmp.rename(out)
    return out


def phase_features(trips: str, as_of: str, spill: str) -> None:
    """What `commuter features --out F.parquet` does, spilling under `spill`."""
    tempfile.tempdir = spill
    from commuter_badge.features.build import BatchPlan, write_features
    from commuter_badge.settings import load_settings

    plan = BatchPlan.for_path(trips, memory=load_settings().duckdb_memory)  # as the command does
    out = Path(spill).parent / "features.parquet"
    n = write_features(trips, dt.date.fromisoformat(as_of), out, plan=plan)
    print(f"    features: {n:,} persons; {plan.describe()}", flush=True)


def phase_frame(trips: str, as_of: str, spill: str) -> None:
    """What `commuter train` and `commuter score` do first: the feature table in memory."""
    tempfile.tempdir = spill
    from commuter_badge.features.build import build_features
    from commuter_badge.settings import load_settings

    memory = load_settings().duckdb_memory  # as the commands pass it
    frame = build_features(trips, dt.date.fromisoformat(as_of), memory=memory)
    size = frame.memory_usage(deep=True).sum() / 2**30
    print(f"    build_features: {len(frame):,} rows, {size:.2f} GiB as pandas", flush=True)


def _tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            with contextlib.suppress(FileNotFoundError):  # DuckDB may just have removed it
                total += os.stat(os.path.join(dirpath, name)).st_size
    return total


def timed(fn, *args, spill: Path | None = None) -> tuple[float, float, float, int]:
    """fn(*args) in a child process: (wall s, peak RSS GiB, CPU s, peak bytes under `spill`)."""
    peak = [0]
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            fn(*args)
            os._exit(0)
        except BaseException as exc:  # noqa: BLE001
            print(f"phase failed: {exc}", file=sys.stderr, flush=True)
            os._exit(1)
    done = threading.Event()

    def poll() -> None:
        while not done.wait(0.2):
            peak[0] = max(peak[0], _tree_bytes(spill))

    watcher = threading.Thread(target=poll, daemon=True) if spill else None
    if watcher:
        watcher.start()
    _, status, usage = os.wait4(pid, 0)
    done.set()
    if watcher:
        watcher.join()
    secs = time.perf_counter() - start
    if status != 0:
        print(f"    {fn.__name__} FAILED after {secs:.1f} s")
    return secs, usage.ru_maxrss / 2**20, usage.ru_utime + usage.ru_stime, peak[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", help="a simulated month's trips.parquet (default: simulate 1M)")
    ap.add_argument("--sizes", default="1,2.5,5", help="sizes in copies of the base month")
    ap.add_argument("--work", help="directory for tiles and outputs (default: a temp dir)")
    ap.add_argument(
        "--frame", default="", help="sizes at which to also time build_features (train/score)"
    )
    ap.add_argument("--as-of", default="2021-10-20")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="scaling-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    base = args.base
    if base is None:
        secs, rss, _, _ = timed(phase_simulate, 1_000_000, args.as_of, str(work / "world"))
        base = str(work / "world" / "trips.parquet")
        print(f"simulate 1,000,000 persons: {secs:.1f} s, peak RSS {rss:.2f} GiB")
    import pyarrow.parquet as pq

    from commuter_badge.features.build import memory_cap
    from commuter_badge.settings import load_settings

    print(
        f"cap {memory_cap(load_settings().duckdb_memory)}; load average {os.getloadavg()[0]:.1f} at start"
    )
    rows = []
    for copies in (float(s) for s in args.sizes.split(",")):
        trips = base if copies == 1 else str(tile(base, copies, work / f"tiles-{copies:g}.parquet"))
        n = pq.ParquetFile(trips).metadata.num_rows
        print(f"\n{copies:g}x: {trips} ({n:,} crossings)", flush=True)
        spill = work / "spill"
        phases = [("plain pass", phase_plain, (trips, args.as_of)), ("features", None, ())]
        if copies in {float(s) for s in args.frame.split(",") if s}:
            phases.append(("build_features", None, ()))
        for name, fn, fargs in phases:
            shutil.rmtree(spill, ignore_errors=True)
            spill.mkdir()
            if fn is None:
                fn = phase_features if name == "features" else phase_frame
                fargs = (trips, args.as_of, str(spill))
            polled = None if name == "plain pass" else spill  # DuckDB's own temp dir there
            secs, rss, cpu, spilled = timed(fn, *fargs, spill=polled)
            left = _tree_bytes(spill)
            rows.append((copies, n, name, secs, cpu, rss, spilled, left, os.getloadavg()[0]))
            print(
                f"    {name}: {secs:.1f} s, peak RSS {rss:.2f} GiB, spill {spilled:,} B", flush=True
            )
        shutil.rmtree(spill, ignore_errors=True)
    print(
        f"\n{'size':>5}{'crossings':>13}  {'phase':<16}{'wall s':>8}{'CPU s':>8}"
        f"{'peak RSS GiB':>14}{'spill GiB':>11}{'left':>6}{'load':>6}"
    )
    for copies, n, name, secs, cpu, rss, spilled, left, load in rows:
        print(
            f"{copies:>4g}x{n:>13,}  {name:<16}{secs:>8.1f}{cpu:>8.1f}{rss:>14.2f}"
            f"{spilled / 2**30:>11.2f}{left:>6}{load:>6.1f}"
        )
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
