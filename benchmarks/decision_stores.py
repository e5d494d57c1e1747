"""`/badge` answered from the DuckDB file and from PostgreSQL, measured in one run.

    .venv/bin/python benchmarks/decision_stores.py [--persons 100000] [--rounds 6]

Builds the service tests' world (3,000 simulated persons, `commuter train`, `commuter score
--publish`), pads its decisions with invented persons to `--persons`, publishes the same table to
a DuckDB file and to a PostgreSQL database (a throwaway cluster with fsync on, tests/postgres.py),
starts one `commuter serve` (one worker) on each, and alternates rounds between them: per round,
sequential /badge requests of 1 id and of 1,000 ids (ids drawn from the published persons).
Reports p50/p99 per store and size, and PostgreSQL/DuckDB ratios, to
benchmarks/results/decision_stores.json. Client and servers share the machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))
from tests.postgres import fresh_database, postgres_cluster  # noqa: E402 - the tests' cluster
from tests.service.conftest import (  # noqa: E402 - the tests' world and server
    AS_OF,
    TOKENS,
    build_world,
    start_server,
    stop_server,
    wait_until,
)

SIZES = (1, 1000)
REQUESTS = {1: 200, 1000: 20}  # per round and store


def padded(batch: pd.DataFrame, persons: int) -> pd.DataFrame:
    extra = max(0, persons - len(batch))
    rng = random.Random(0)
    pad = pd.DataFrame(
        {
            "person_id": [f"bench-{i:08d}" for i in range(extra)],
            "commuter_probability": [rng.random() for _ in range(extra)],
            "threshold": float(batch["threshold"].iloc[0]),
            "model_version": str(batch["model_version"].iloc[0]),
        }
    )
    pad["badge"] = pad["commuter_probability"] >= pad["threshold"]
    return pd.concat([batch[pad.columns], pad], ignore_index=True)


def timed(client: httpx.Client, ids: list[str], n: int, size: int, rng: random.Random) -> list:
    out = []
    for _ in range(n):
        body = {"person_ids": rng.sample(ids, size)}
        start = time.perf_counter()
        r = client.post("/badge", json=body)
        out.append((time.perf_counter() - start) * 1000)
        if r.status_code != 200:
            raise SystemExit(f"/badge answered {r.status_code}: {r.text[:300]}")
    return out


def pct(values: list[float], q: float) -> float:
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 2)


def measure(servers: dict, ids: list[str], rounds: int) -> dict:
    times = {(k, s): [] for k in servers for s in SIZES}
    rng = random.Random(1)
    auth = {"Authorization": f"Bearer {TOKENS[0]}"}
    clients = {
        k: httpx.Client(base_url=v.url, headers=auth, timeout=60) for k, v in servers.items()
    }
    for k in servers:  # warm-up
        timed(clients[k], ids, 20, 1000, rng)
    for r in range(rounds):
        order = list(servers) if r % 2 == 0 else list(reversed(servers))
        for k in order:
            for s in SIZES:
                times[(k, s)] += timed(clients[k], ids, REQUESTS[s], s, rng)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="decision-stores-"))
    world = build_world(root)
    frame = padded(world.batch, args.persons)
    from commuter_badge.stores.decisions import publish

    publish(frame, AS_OF, world.decisions_path, allow_shrink=True)
    with postgres_cluster(fsync=True) as pg:
        url = fresh_database(pg, "decisions")
        publish(frame, AS_OF, url)
        envs = {"duckdb": world.env, "postgresql": {**world.env, "COMMUTER_DECISIONS": url}}
        servers = {k: start_server(env, root, workers=1) for k, env in envs.items()}
        try:
            for s in servers.values():
                wait_until(s, "/readyz", 200, timeout=300)
            times = measure(servers, frame["person_id"].tolist(), args.rounds)
        finally:
            for s in servers.values():
                stop_server(s)
    figures = {
        f"{k}_{s}_ids": {"p50_ms": pct(v, 50), "p99_ms": pct(v, 99), "requests": len(v)}
        for (k, s), v in times.items()
    }
    ratios = {
        f"postgresql_over_duckdb_{s}_ids_{q}": round(
            figures[f"postgresql_{s}_ids"][f"{q}_ms"] / figures[f"duckdb_{s}_ids"][f"{q}_ms"], 2
        )
        for s in SIZES
        for q in ("p50", "p99")
    }
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    body = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": commit or None,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "setup": {
            "persons_published": len(frame),
            "rounds": args.rounds,
            "requests_per_round": REQUESTS,
            "workers_per_service": 1,
            "postgresql_fsync": True,
            "load_average_at_end": os.getloadavg()[0],
        },
        "figures": figures,
        "ratios": ratios,
    }
    out = PROJECT_ROOT / "benchmarks" / "results" / "decision_stores.json"
    out.write_text(json.dumps(body, indent=2) + "\n")
    print(json.dumps(body, indent=2))


if __name__ == "__main__":
    main()
