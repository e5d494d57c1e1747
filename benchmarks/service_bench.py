"""Benchmark the badge service over real HTTP, against the raw booster as the floor.

    .venv/bin/python benchmarks/service_bench.py [--workers 2] [--concurrency 32] [--keep DIR]

Builds a simulated world (3,000 persons), trains and registers a champion, publishes batch
decisions (`commuter train`, `commuter score`), starts `commuter serve`'s server through
`serving.run.serve` with explicit workers, and measures:

- single-person /score latency, sequential;
- single-person /score under N concurrent clients (latency and persons/s);
- 50-person /score batches under N concurrent clients (persons/s);
- /badge for 1,000 ids (latency);
- in-process floors for the same persons: feature query alone, booster predict alone.

Targets on a 2-core machine: single-person p99 <= 15 ms sequential, >= 500 persons/s concurrent.
Client and server share the machine, so figures under concurrency include the client's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))
BIN = Path(sys.executable).parent
AS_OF = dt.date(2021, 10, 20)
TOKEN = "bench-token"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def bench_env(root: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "COMMUTER_", "BENTOML_"))
    }
    env.update(
        {
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            "COMMUTER_DECISIONS": str(root / "decisions.duckdb"),
            "COMMUTER_API_TOKENS": TOKEN,
            "BENTOML_HOME": str(root / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "true",
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(PROJECT_ROOT),
        }
    )
    return env


def run(args: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(args[:3])} failed:\n{done.stderr[-3000:]}")
    return done.stdout


ENSURE_CHAMPION = """
from mlflow.tracking import MlflowClient
from commuter_badge.models import registry
registry.configure()
if registry.champion_version() is None:  # trained but not promoted: serve it anyway for the bench
    v = max(int(m.version) for m in MlflowClient().search_model_versions("name='commuter-badge'"))
    registry.set_champion(str(v))
"""


def prepare(root: Path, env: dict[str, str], persons: int) -> None:
    from commuter_badge.simulate.world import simulate_world, write_world

    if (root / "scores.parquet").exists():
        log(f"reusing prepared world in {root}")
        return
    log(f"simulating {persons:,} persons")
    paths = write_world(simulate_world(persons=persons, as_of=AS_OF, seed=11), root / "world")
    commuter = str(BIN / "commuter")
    log("training (commuter train)")
    run(
        [
            commuter,
            "train",
            "--trips",
            str(paths["trips"]),
            "--labels",
            str(paths["labels"]),
            "--as-of",
            AS_OF.isoformat(),
            "--target-fpr",
            "0.05",
        ],
        env,
        root,
    )
    run([sys.executable, "-c", ENSURE_CHAMPION], env, root)
    log("scoring and publishing (commuter score)")
    run(
        [
            commuter,
            "score",
            "--trips",
            str(paths["trips"]),
            "--as-of",
            AS_OF.isoformat(),
            "--out",
            str(root / "scores.parquet"),
        ],
        env,
        root,
    )


def start_server(root: Path, env: dict[str, str], workers: int) -> tuple[subprocess.Popen, str]:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = f"from commuter_badge.serving.run import serve; serve(port={port}, workers={workers}, host='127.0.0.1')"
    out = (root / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        cwd=root,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited:\n{(root / 'server.log').read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return proc, url
        time.sleep(0.5)
    stop_server(proc)
    sys.exit(f"server not ready in 120 s:\n{(root / 'server.log').read_text()[-3000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def row(
    name: str, lat: list[float] | None = None, rate: float | None = None, note: str = ""
) -> dict:
    return {
        "measure": name,
        "n": len(lat) if lat else 0,
        "p50_ms": pct(lat, 50) if lat else None,
        "p99_ms": pct(lat, 99) if lat else None,
        "persons_per_s": rate,
        "note": note,
    }


def sequential(client: httpx.Client, path: str, bodies: list[bytes], n: int) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        r = client.post(path, content=bodies[i % len(bodies)])
        out.append(time.perf_counter() - t)
        if r.status_code != 200:
            sys.exit(f"{path} answered {r.status_code}: {r.text[:300]}")
    return out


async def concurrent(
    url: str, path: str, bodies: list[bytes], n: int, clients: int
) -> tuple[list[float], float]:
    lat: list[float] = []
    counter = iter(range(n))
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=120
    ) as client:

        async def worker() -> None:
            for i in counter:
                t = time.perf_counter()
                r = await client.post(path, content=bodies[i % len(bodies)])
                lat.append(time.perf_counter() - t)
                if r.status_code != 200:
                    raise RuntimeError(f"{path} answered {r.status_code}: {r.text[:300]}")

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - start
    return lat, wall


def floors(env: dict[str, str], requests: list[dict], n: int) -> list[dict]:
    """In-process, same persons, one at a time: the feature query alone, the booster alone."""
    os.environ.update({k: env[k] for k in ("MLFLOW_TRACKING_URI", "COMMUTER_DECISIONS")})
    from commuter_badge.features.build import features_from_trips, model_matrix
    from commuter_badge.features.read import connect
    from commuter_badge.models import registry
    from commuter_badge.serving.schemas import ScoreRequest

    registry.configure(env["MLFLOW_TRACKING_URI"])
    model = registry.load_model(None)
    con = connect(threads=1)
    parsed = [ScoreRequest.model_validate_json(json.dumps(r)) for r in requests]
    persons = [[(p.person_id, [vars(t) for t in p.trips])] for r in parsed for p in r.persons]
    frames = [features_from_trips(p, AS_OF, model.meta.window_days, con=con) for p in persons]
    feat, boost, contrib = [], [], []
    for i in range(n):
        p, frame = persons[i % len(persons)], frames[i % len(frames)]
        t = time.perf_counter()
        features_from_trips(p, AS_OF, model.meta.window_days, con=con)
        feat.append(time.perf_counter() - t)
        x = model_matrix(frame)
        t = time.perf_counter()
        model.booster.predict(x, raw_score=True, num_threads=1)
        boost.append(time.perf_counter() - t)
        t = time.perf_counter()
        model.reasons(frame, 3)
        contrib.append(time.perf_counter() - t)
    return [
        row("floor: booster.predict, 1 person", boost, note="in-process, raw margin"),
        row("floor: reasons (TreeSHAP), 1 person", contrib, note="in-process"),
        row(
            "floor: features_from_trips, 1 person",
            feat,
            note="in-process, request path (SQLite engine)",
        ),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--requests", type=int, default=500, help="sequential single-person requests")
    ap.add_argument("--batch", type=int, default=50, help="persons per request in the batch run")
    ap.add_argument("--persons", type=int, default=3000, help="persons in the simulated world")
    ap.add_argument("--keep", type=Path, help="prepare/reuse the world in this directory")
    ap.add_argument("--json", type=Path, help="also write the table as JSON here")
    args = ap.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="service-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    env = bench_env(root)
    prepare(root, env, args.persons)
    trips = pd.read_parquet(root / "world" / "trips.parquet")
    batch = pd.read_parquet(root / "scores.parquet")
    rng = random.Random(3)
    ids = rng.sample(sorted(batch["person_id"]), 400)
    by_person = {pid: g for pid, g in trips[trips["person_id"].isin(ids)].groupby("person_id")}

    def person(pid: str) -> dict:
        g = by_person[pid]
        return {
            "person_id": pid,
            "trips": [
                {
                    "ts": r.ts.isoformat(),
                    "direction": r.direction,
                    "mode": r.mode,
                    "site_id": r.site_id,
                    "region": r.region,
                }
                for r in g.itertuples()
            ],
        }

    singles = [{"as_of": AS_OF.isoformat(), "persons": [person(p)]} for p in ids]
    single_bodies = [json.dumps(b).encode() for b in singles]
    batch_bodies = [
        json.dumps(
            {"as_of": AS_OF.isoformat(), "persons": [person(p) for p in ids[i : i + args.batch]]}
        ).encode()
        for i in range(0, len(ids), args.batch)
    ]
    badge_ids = rng.sample(sorted(batch["person_id"]), min(900, len(batch))) + [
        f"unknown-{i}" for i in range(100)
    ]
    badge_body = json.dumps({"person_ids": badge_ids}).encode()
    mean_trips = statistics.mean(len(b["persons"][0]["trips"]) for b in singles)

    log(f"starting the server with {args.workers} worker(s)")
    proc, url = start_server(root, env, args.workers)
    rows = []
    try:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            log("warming up")
            sequential(client, "/score", single_bodies, 40)
            sequential(client, "/badge", [badge_body], 5)
            log(f"/score sequential x{args.requests}")
            lat = sequential(client, "/score", single_bodies, args.requests)
            rows.append(
                row(
                    "/score 1 person, sequential",
                    lat,
                    1 / statistics.mean(lat),
                    f"{mean_trips:.0f} trips/person on average",
                )
            )
            log("/badge 1,000 ids sequential x100")
            lat = sequential(client, "/badge", [badge_body], 100)
            rows.append(row("/badge 1,000 ids, sequential", lat, None, "900 hits, 100 misses"))
        log(f"/score 1 person, {args.concurrency} concurrent clients")
        n = max(args.requests, 1000)
        lat, wall = asyncio.run(concurrent(url, "/score", single_bodies, n, args.concurrency))
        rows.append(row(f"/score 1 person, {args.concurrency} clients", lat, n / wall))
        log(f"/score {args.batch} persons, {args.concurrency} clients")
        n_batches = 4 * len(batch_bodies) * max(1, args.concurrency // len(batch_bodies))
        lat, wall = asyncio.run(
            concurrent(url, "/score", batch_bodies, n_batches, args.concurrency)
        )
        rows.append(
            row(
                f"/score {args.batch} persons, {args.concurrency} clients",
                lat,
                n_batches * args.batch / wall,
            )
        )
    finally:
        stop_server(proc)
    log("in-process floors")
    rows += floors(env, singles, 300)

    print(
        f"\nservice benchmark: {args.workers} worker(s), {os.cpu_count()} CPUs, "
        f"load average before floors {os.getloadavg()[0]:.1f}"
    )
    print(f"{'measure':42s} {'n':>5s} {'p50 ms':>8s} {'p99 ms':>8s} {'persons/s':>10s}  note")
    for r in rows:
        fmt = lambda v, w, f: f"{v:{w}{f}}" if v is not None else " " * (w - 1) + "-"  # noqa: E731
        print(
            f"{r['measure']:42s} {r['n']:5d} "
            f"{fmt(r['p50_ms'], 8, '.1f')} {fmt(r['p99_ms'], 8, '.1f')} "
            f"{fmt(r['persons_per_s'], 10, '.0f')}  {r['note']}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
