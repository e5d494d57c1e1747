"""Soak the badge service: mixed /score and /badge traffic for a long while, republishing meanwhile.

    .venv/bin/python benchmarks/soak.py [--minutes 30] [--rate 40] [--republish-every 5] [--keep DIR]

Prepares a world like benchmarks/service_bench.py (simulate, `commuter train`, `commuter score`),
starts the service as `commuter serve` does (two workers), then for `--minutes` sends paced
traffic from one process: single-person `/score` requests (three in four) and 200-id `/badge`
lookups (one in four), while `commuter score` republishes the decisions every `--republish-every`
minutes (each publication the real command, under load). It reports:

- errors: every answer that was not 200, by endpoint and status, and transport errors;
- p99 drift: p50/p99 per endpoint per minute, and the last minutes' p99 over the first minutes';
- RSS of every server process (VmRSS) after warm-up and at the end;
- the republications: how long each took, and that `/badge` answered from the new one after it.

Not part of `make test`: it runs for half an hour by default.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # the checkout, for tests.service
from service_bench import (  # noqa: E402 - the bench's world and server helpers
    AS_OF,
    BIN,
    TOKEN,
    bench_env,
    log,
    prepare,
    request_persons,
    start_server,
    stop_server,
)

from tests.service.procs import status_bytes  # noqa: E402 - the /proc reading the tests use

BADGE_IDS = 200


def process_rss(root: int) -> dict[int, int]:
    """VmRSS in bytes of every server process, by pid."""
    return status_bytes(root, "VmRSS")


class Record:
    """Latencies per endpoint per minute, and every non-200 answer."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.lat: dict[tuple[str, int], list[float]] = defaultdict(list)
        self.errors: Counter[str] = Counter()
        self.count: Counter[str] = Counter()

    def add(self, endpoint: str, seconds: float, status: int | str) -> None:
        self.count[endpoint] += 1
        if status == 200:
            minute = int((time.perf_counter() - self.start) // 60)
            self.lat[(endpoint, minute)].append(seconds)
        else:
            self.errors[f"{endpoint} {status}"] += 1

    def p(self, endpoint: str, minutes: range, q: float) -> float:
        values = [x for m in minutes for x in self.lat.get((endpoint, m), [])]
        return float(np.percentile(np.asarray(values) * 1000, q)) if values else float("nan")


async def client_loop(
    client: httpx.AsyncClient,
    record: Record,
    bodies: dict[str, list[bytes]],
    interval: float,
    deadline: float,
    seed: int,
) -> None:
    rng = random.Random(seed)
    next_at = time.perf_counter() + rng.random() * interval
    while time.perf_counter() < deadline:
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        next_at += interval
        endpoint = "/score" if rng.random() < 0.75 else "/badge"
        body = rng.choice(bodies[endpoint])
        t = time.perf_counter()
        try:
            r = await client.post(endpoint, content=body)
            status: int | str = r.status_code
        except httpx.HTTPError as exc:
            status = exc.__class__.__name__
        record.add(endpoint, time.perf_counter() - t, status)


async def republisher(
    root: Path, env: dict[str, str], every: float, deadline: float, log_rows: list[dict]
) -> None:
    """`commuter score` every `every` seconds, the real command, while traffic runs."""
    trips = str(root / "world" / "trips.parquet")
    start, k = time.perf_counter(), 0
    while start + (k + 1) * every < deadline:  # at every, 2 * every, ... from the start
        k += 1
        await asyncio.sleep(max(0.0, start + k * every - time.perf_counter()))
        out = root / f"scores-republish-{k}.parquet"
        t = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            str(BIN / "commuter"),
            *("score", "--trips", trips, "--as-of", AS_OF.isoformat(), "--out", str(out)),
            "--publish",
            env=env,
            cwd=root,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await proc.communicate()
        took = time.perf_counter() - t
        text = (stdout or stderr).decode(errors="replace").strip().splitlines()
        log(f"republish {k}: exit {proc.returncode} in {took:.1f} s: {text[-1] if text else ''}")
        log_rows.append({"n": k, "exit": proc.returncode, "seconds": took})


async def soak(url: str, root: Path, env: dict[str, str], args, bodies) -> dict:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    start = time.perf_counter()
    deadline = start + args.minutes * 60
    record = Record(start)
    republished: list[dict] = []
    interval = args.clients / args.rate
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as c:
        tasks = [
            client_loop(c, record, bodies, interval, deadline, seed) for seed in range(args.clients)
        ]
        tasks.append(republisher(root, env, args.republish_every * 60, deadline, republished))

        async def progress() -> None:
            while time.perf_counter() < deadline:
                await asyncio.sleep(60)
                m = int((time.perf_counter() - start) // 60) - 1
                log(
                    f"minute {m + 1}: /score p99 {record.p('/score', range(m, m + 1), 99):.1f} ms, "
                    f"/badge p99 {record.p('/badge', range(m, m + 1), 99):.1f} ms, "
                    f"errors so far {sum(record.errors.values())}"
                )

        tasks.append(progress())
        await asyncio.gather(*tasks)
    return {"record": record, "republished": republished, "wall": time.perf_counter() - start}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=40.0, help="requests per second in all")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--republish-every", type=float, default=5.0, help="minutes")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--persons", type=int, default=3000, help="persons in the simulated world")
    ap.add_argument("--keep", type=Path, help="prepare/reuse the world in this directory")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = ap.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="soak-"))
    root.mkdir(parents=True, exist_ok=True)
    env = bench_env(root)
    prepare(root, env, args.persons)
    batch = pd.read_parquet(root / "scores.parquet")
    rng = random.Random(5)
    ids, person = request_persons(root, rng, 300)

    all_ids = sorted(batch["person_id"])
    bodies = {
        "/score": [
            json.dumps({"as_of": AS_OF.isoformat(), "persons": [person(p)]}).encode() for p in ids
        ],
        "/badge": [
            json.dumps({"person_ids": rng.sample(all_ids, BADGE_IDS)}).encode() for _ in range(50)
        ],
    }
    log(f"starting the server with {args.workers} worker(s)")
    proc, url = start_server(root, env, args.workers)
    try:
        log("warming up (30 s)")
        warm = argparse.Namespace(**{**vars(args), "minutes": 0.5, "republish_every": 1e9})
        asyncio.run(soak(url, root, env, warm, bodies))
        rss_start = process_rss(proc.pid)
        log(f"soaking for {args.minutes:g} minutes at {args.rate:g} requests/s")
        result = asyncio.run(soak(url, root, env, args, bodies))
        rss_end = process_rss(proc.pid)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
            after = c.post("/badge", json={"person_ids": ids[:50]}).json()["results"]
    finally:
        stop_server(proc)

    record: Record = result["record"]
    minutes = int(args.minutes)
    edge = max(1, min(5, minutes // 3))
    first, last = range(0, edge), range(minutes - edge, minutes)
    print(
        f"\nsoak: {result['wall'] / 60:.1f} minutes, {args.workers} worker(s), "
        f"{args.rate:g} requests/s from {args.clients} clients, {os.cpu_count()} CPUs, "
        f"load average at the end {os.getloadavg()[0]:.1f}"
    )
    print(f"requests: {dict(record.count)}; errors: {dict(record.errors) or 'none'}")
    print(
        f"{'minute':>6s} {'/score p50':>11s} {'/score p99':>11s} {'/badge p50':>11s} {'/badge p99':>11s}"
    )
    for m in range(minutes):
        r = range(m, m + 1)
        print(
            f"{m + 1:6d} {record.p('/score', r, 50):11.1f} {record.p('/score', r, 99):11.1f} "
            f"{record.p('/badge', r, 50):11.1f} {record.p('/badge', r, 99):11.1f}"
        )
    drift = {}
    for ep in ("/score", "/badge"):
        a, b = record.p(ep, first, 99), record.p(ep, last, 99)
        drift[ep] = {"first_p99_ms": a, "last_p99_ms": b, "ratio": b / a}
        print(
            f"p99 drift {ep}: first {edge} min {a:.1f} ms, last {edge} min {b:.1f} ms "
            f"(x{b / a:.2f})"
        )
    mib = 1024 * 1024
    for pid in sorted(set(rss_start) | set(rss_end)):
        s, e = rss_start.get(pid), rss_end.get(pid)
        print(
            f"RSS pid {pid}: start {s / mib if s else float('nan'):.0f} MiB, "
            f"end {e / mib if e else float('nan'):.0f} MiB"
        )
    print(f"republications: {result['republished']}")
    print(f"/badge after the last republication: {sum(a['found'] for a in after)}/50 found")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "minutes": result["wall"] / 60,
                    "requests": dict(record.count),
                    "errors": dict(record.errors),
                    "drift": drift,
                    "rss_start": rss_start,
                    "rss_end": rss_end,
                    "republished": result["republished"],
                    "per_minute_p99": {
                        ep: [record.p(ep, range(m, m + 1), 99) for m in range(minutes)]
                        for ep in ("/score", "/badge")
                    },
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
