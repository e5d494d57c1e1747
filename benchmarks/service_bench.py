"""Benchmark the badge service over real HTTP, against the raw booster as the floor.

    .venv/bin/python benchmarks/service_bench.py [--workers 2] [--concurrency 32] [--keep DIR]

Builds a simulated world (3,000 persons), trains and registers a champion, publishes batch
decisions (`commuter train`, `commuter score`), starts `commuter serve`'s server through
`serving.run.serve` with explicit workers, and measures:

- single-person /score latency, sequential;
- single-person /score under N concurrent clients (latency and persons/s);
- 50-person /score batches under N concurrent clients (persons/s);
- /badge for 1,000 ids (latency);
- the same concurrent loads (one Python load generator, N clients) on four services running side
  by side, alternating round by round: ours; the floor (benchmarks/floor_service.py, a trivial
  BentoML service with the same workers and one call to a small LightGBM model); the floor with
  keep-alive connections recycled as ours recycles them (single-person load only); and ours with
  BentoML's adaptive batching (`batchable=True`, benchmarks/batchable_service.py) in place of the
  hand-written BatchScorer. It prints the ratios: ours/floor (targets: throughput >= 0.90, p99
  <= 1.5), ours/recycled floor, and hand-written/batchable; and, per round, the connections each
  worker held;
- in-process floors for the same persons: feature query alone, booster predict alone.

Targets on a 2-core machine: single-person p99 <= 15 ms sequential.
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
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))
from tests.service.bodies import trip_entries  # noqa: E402 - the bodies the tests send
from tests.service.procs import worker_connections  # noqa: E402 - the /proc reading the tests use

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
from commuter_badge.models.mlflow_edge import registry
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
            "--publish",
        ],
        env,
        root,
    )


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(root: Path, env: dict[str, str], workers: int) -> tuple[subprocess.Popen, str]:
    """Our service, started as `commuter serve` starts it."""
    port = free_port()
    code = f"from commuter_badge.serving.run import serve; serve(port={port}, workers={workers}, host='127.0.0.1')"
    return _launch([sys.executable, "-c", code], env, root, port, "server")


def start_bench_service(
    root: Path,
    env: dict[str, str],
    target: str,
    name: str,
    workers: int,
    label: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen, str]:
    """A comparison service from benchmarks/ (floor_service, batchable_service) with `workers`."""
    port = free_port()
    env = {
        **env,
        "BENTOML_CONFIG_OVERRIDES": json.dumps({"services": {name: {"workers": workers}}}),
        **(extra_env or {}),
    }
    bentoml = str(BIN / "bentoml")
    here = str(Path(__file__).resolve().parent)
    argv = [bentoml, "serve", target, "--working-dir", here, "--host", "127.0.0.1"]
    return _launch([*argv, "--port", str(port)], env, root, port, label or name)


def _launch(
    argv: list[str], env: dict[str, str], root: Path, port: int, name: str
) -> tuple[subprocess.Popen, str]:
    log_path = root / f"{name}.log"
    out = log_path.open("wb")
    proc = subprocess.Popen(
        argv, env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{name} exited:\n{log_path.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return proc, url
        time.sleep(0.5)
    stop_server(proc)
    sys.exit(f"{name} not ready in 180 s:\n{log_path.read_text()[-3000:]}")


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
    url: str,
    path: str,
    bodies: list[bytes],
    n: int,
    clients: int,
    spread: Callable[[], list[int]] | None = None,
) -> tuple[list[float], float, int, list[int] | None]:
    """n requests from `clients` concurrent clients in this one process: latencies of the 200s,
    wall time, and how many answers were not 200 (counted, not raised: a dispatcher's 503 is a
    result), and what `spread` says while the pool is still open (connections per worker)."""
    lat: list[float] = []
    errors = 0
    counter = iter(range(n))
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=120
    ) as client:

        async def worker() -> None:
            nonlocal errors
            for i in counter:
                t = time.perf_counter()
                try:
                    r = await client.post(path, content=bodies[i % len(bodies)])
                except httpx.HTTPError:  # a dropped connection counts like an error answer
                    errors += 1
                    continue
                if r.status_code == 200:
                    lat.append(time.perf_counter() - t)
                else:
                    errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - start
        held = spread() if spread is not None else None
    return lat, wall, errors, held


def batchable_bodies(bodies: list[bytes]) -> list[bytes]:
    """The same persons for benchmarks/batchable_service.py: each item carries its as_of."""
    out = []
    for b in bodies:
        req = json.loads(b)
        out.append(json.dumps({"persons": [{**p, "as_of": req["as_of"]} for p in req["persons"]]}))
    return [o.encode() for o in out]


def compare(
    services: dict[str, str],
    loads: dict[str, tuple[int, dict[str, list[bytes]]]],
    clients: int,
    rounds: int,
    spreads: dict[str, Callable[[], list[int]]],
) -> dict[tuple[str, str], list[dict]]:
    """Every load on every service that has bodies for it, alternating services round by round so
    that the machine's other work falls on all of them alike. BentoML's workers share one
    listening socket and asyncio accepts a burst of connections in one go, so a service's pool can
    land on one worker (ours recycles connections: serving/connections.py); each round records the
    connections each worker held (`spreads`)."""
    runs: dict[tuple[str, str], list[dict]] = {}
    for k in range(rounds):
        for load, (n, per_service) in loads.items():
            order = list(per_service) if k % 2 == 0 else list(reversed(per_service))
            for name in order:
                log(f"round {k + 1}/{rounds}: {load} on {name}")
                lat, wall, errors, held = asyncio.run(
                    concurrent(
                        services[name], "/score", per_service[name], n, clients, spreads.get(name)
                    )
                )
                persons = json.loads(per_service[name][0])["persons"]
                runs.setdefault((load, name), []).append(
                    {
                        "rate": len(lat) * len(persons) / wall,
                        "p50": pct(lat, 50) if lat else float("nan"),
                        "p99": pct(lat, 99) if lat else float("nan"),
                        "errors": errors,
                        "lat": lat,
                        "held": held,
                    }
                )
    return runs


def comparison_rows(runs: dict[tuple[str, str], list[dict]]) -> tuple[list[dict], list[str]]:
    rows, lines = [], []
    for (load, name), rs in runs.items():
        lat = [x for r in rs for x in r["lat"]]
        rows.append(
            row(
                f"{load}: {name}",
                lat,
                statistics.median(r["rate"] for r in rs),
                f"median of {len(rs)} rounds; {sum(r['errors'] for r in rs)} non-200; per round, "
                "persons/s (connections per worker): "
                + ", ".join(f"{r['rate']:.0f} ({'/'.join(map(str, r['held'] or []))})" for r in rs),
            )
        )

    def ratio(load: str, a: str, b: str, key: str) -> str:
        if (load, a) not in runs or (load, b) not in runs:
            return "-"
        per_round = [x[key] / y[key] for x, y in zip(runs[(load, a)], runs[(load, b)], strict=True)]
        spread = f"{min(per_round):.2f}..{max(per_round):.2f}"
        return f"{statistics.median(per_round):.2f} (rounds {spread})"

    single = next((load for load, _ in runs if "1 person" in load), None)
    if single:
        lines.append(
            f"ours / floor, {single}: throughput {ratio(single, 'ours', 'floor', 'rate')} "
            f"(target >= 0.90), p99 {ratio(single, 'ours', 'floor', 'p99')} (target <= 1.5)"
        )
        lines.append(
            f"ours / floor with connections recycled as ours, {single}: throughput "
            f"{ratio(single, 'ours', 'floor_recycled', 'rate')}, "
            f"p99 {ratio(single, 'ours', 'floor_recycled', 'p99')}"
        )
    for load in dict.fromkeys(load for load, _ in runs):
        lines.append(
            f"hand-written BatchScorer / BentoML batchable, {load}: throughput "
            f"{ratio(load, 'ours', 'batchable', 'rate')}, p99 {ratio(load, 'ours', 'batchable', 'p99')}"
        )
    return rows, lines


def floors(env: dict[str, str], requests: list[dict], n: int) -> list[dict]:
    """In-process, same persons, one at a time: the feature query alone, the booster alone."""
    os.environ.update({k: env[k] for k in ("MLFLOW_TRACKING_URI", "COMMUTER_DECISIONS")})
    from commuter_badge.features.build import features_from_trips, model_matrix
    from commuter_badge.features.read import connect
    from commuter_badge.models.mlflow_edge import registry
    from commuter_badge.serving.request_features import request_features
    from commuter_badge.serving.schemas import ScoreRequest

    registry.configure(env["MLFLOW_TRACKING_URI"])
    model = registry.load_model(None)
    con = connect(threads=1)
    parsed = [ScoreRequest.model_validate_json(json.dumps(r)) for r in requests]
    persons = [[(p.person_id, [vars(t) for t in p.trips])] for r in parsed for p in r.persons]
    frames = [features_from_trips(p, AS_OF, model.meta.window_days, con=con) for p in persons]
    feat, served, boost, contrib = [], [], [], []
    for i in range(n):
        p, frame = persons[i % len(persons)], frames[i % len(frames)]
        t = time.perf_counter()
        features_from_trips(p, AS_OF, model.meta.window_days, con=con)
        feat.append(time.perf_counter() - t)
        t = time.perf_counter()
        request_features(p, AS_OF, model.meta.window_days, con)
        served.append(time.perf_counter() - t)
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
            note="in-process, batch frame (SQLite engine)",
        ),
        row(
            "floor: request_features, 1 person",
            served,
            note="in-process, the service's path (SQLite engine, float matrix)",
        ),
    ]


def request_persons(
    root: Path, rng: random.Random, n: int
) -> tuple[list[str], Callable[[str], dict]]:
    """`n` scored persons drawn with `rng`, and each one's /score body entry (their trips)."""
    trips = pd.read_parquet(root / "world" / "trips.parquet")
    scored = sorted(pd.read_parquet(root / "scores.parquet")["person_id"])
    ids = rng.sample(scored, n)
    by_person = dict(tuple(trips[trips["person_id"].isin(ids)].groupby("person_id")))

    def person(pid: str) -> dict:
        return {"person_id": pid, "trips": trip_entries(by_person[pid])}

    return ids, person


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--requests", type=int, default=500, help="sequential single-person requests")
    ap.add_argument("--batch", type=int, default=50, help="persons per request in the batch run")
    ap.add_argument("--persons", type=int, default=3000, help="persons in the simulated world")
    ap.add_argument("--keep", type=Path, help="prepare/reuse the world in this directory")
    ap.add_argument("--json", type=Path, help="also write the table as JSON here")
    ap.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds of the floor/batchable comparison"
    )
    args = ap.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="service-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    env = bench_env(root)
    prepare(root, env, args.persons)
    batch = pd.read_parquet(root / "scores.parquet")
    rng = random.Random(3)
    ids, person = request_persons(root, rng, 400)

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
    rows: list[dict] = []
    others: list[subprocess.Popen] = []
    ratio_lines: list[str] = []
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
        single_load = f"/score 1 person, {args.concurrency} clients"
        batch_load = f"/score {args.batch} persons, {args.concurrency} clients"
        n_batches = 4 * len(batch_bodies) * max(1, args.concurrency // len(batch_bodies))
        log("starting the floor (trivial BentoML + LightGBM), as is and recycling connections")
        floor_proc, floor_url = start_bench_service(
            root, env, "floor_service:Floor", "floor", args.workers
        )
        others.append(floor_proc)
        recycled_proc, recycled_url = start_bench_service(
            root,
            env,
            "floor_service:Floor",
            "floor",
            args.workers,
            label="floor_recycled",
            # its own BENTOML_HOME: its own metrics directory beside the other floor's
            extra_env={
                "FLOOR_RECYCLE_CONNECTIONS": "1",
                "BENTOML_HOME": str(root / "bentoml-floor-recycled"),
            },
        )
        others.append(recycled_proc)
        batchable_proc, batchable_url = start_bench_service(
            root, env, "batchable_service:Batchable", "commuter_badge_batchable", args.workers
        )
        others.append(batchable_proc)
        servers = {  # name -> (process, url)
            "ours": (proc, url),
            "floor": (floor_proc, floor_url),
            "floor_recycled": (recycled_proc, recycled_url),
            "batchable": (batchable_proc, batchable_url),
        }
        services = {name: u for name, (_, u) in servers.items()}
        loads = {
            single_load: (
                max(args.requests, 1000),
                {
                    "ours": single_bodies,
                    "floor": single_bodies,
                    "floor_recycled": single_bodies,
                    "batchable": batchable_bodies(single_bodies),
                },
            ),
            batch_load: (
                n_batches,
                {
                    "ours": batch_bodies,
                    "floor": batch_bodies,
                    "batchable": batchable_bodies(batch_bodies),
                },
            ),
        }
        for name, u in services.items():  # warm every worker before measuring
            asyncio.run(concurrent(u, "/score", loads[single_load][1][name], 100, args.concurrency))
        spreads = {
            name: (lambda p=p, port=int(u.rsplit(":", 1)[1]): worker_connections(p.pid, port))
            for name, (p, u) in servers.items()
        }
        compared, ratio_lines = comparison_rows(
            compare(services, loads, args.concurrency, args.rounds, spreads)
        )
        rows += compared
    finally:
        stop_server(proc)
        for p in others:
            stop_server(p)
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
    print()
    for line in ratio_lines:
        print(line)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "ratios": ratio_lines}, indent=2))
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
