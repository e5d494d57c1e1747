"""The manual route under load, over real HTTP, and the review store's write latency.

    .venv/bin/python benchmarks/reviews_load.py [--reviewers 50] [--per-reviewer 20]
        [--badge-clients 32] [--preload 10000] [--workers 2] [--keep DIR]

A plain asyncio + httpx load generator (locust would add gevent and a web UI for what is here a
fixed, bounded scenario; every loop below is bounded in count and time, and only 127.0.0.1 is
addressed). It prints:

1. review write latency in-process (`ReviewStore.add`, sequential) on SQLite and on a throwaway
   PostgreSQL cluster (tests/postgres.py; skipped with the reason when no server is installed);
2. `/badge` latency (1 id and 1,000 ids, sequential) with an empty review store, and again with
   `--preload` reviews in it;
3. the load: `--reviewers` concurrent reviewers POSTing `--per-reviewer` reviews each while
   `--badge-clients` clients query `/badge` and `commuter score` republishes the batch; then
   every 201's case id must be in the store exactly once, nothing else added, and the chain intact.

The world, model and decisions are built as benchmarks/service_bench.py builds them.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from service_bench import (  # benchmarks/ is the script's directory
    AS_OF,
    BIN,
    PROJECT_ROOT,
    TOKEN,
    bench_env,
    log,
    pct,
    prepare,
    start_server,
    stop_server,
)

sys.path.insert(0, str(PROJECT_ROOT))
from commuter_badge.stores.reviews import ReviewRequest, ReviewStore, local_today  # noqa: E402
from tests.postgres import fresh_database, postgres_cluster  # noqa: E402

REVIEWER_TOKEN = "bench-reviewer-token"
UNTIL = (local_today() + dt.timedelta(days=90)).isoformat()


def body(person_id: str, decision: str = "grant") -> dict:
    return {
        "person_id": person_id,
        "decision": decision,
        "reason": "benchmark review: proof checked",
        "evidence": ["residence_permit", "employment_contract"],
        "reviewer": "bench-office",
        "valid_until": UNTIL,
    }


def request(person_id: str, decision: str = "grant") -> ReviewRequest:
    import json

    return ReviewRequest.model_validate_json(json.dumps(body(person_id, decision)))


def write_latency(url: str, n: int) -> dict[str, float]:
    store = ReviewStore(url)
    times = []
    for i in range(n):
        start = time.perf_counter()
        store.add(request(f"lat-{i}", "grant" if i % 3 else "revoke"))
        times.append(time.perf_counter() - start)
    store.close()
    return {"p50_ms": pct(times, 50), "p99_ms": pct(times, 99), "per_s": n / sum(times)}


def badge_latency(url: str, ids: list[str], n: int) -> dict[str, float]:
    out = {}
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
    ) as client:
        for size in (1, 1000):
            times = []
            for _ in range(n):
                chosen = random.sample(ids, size)
                start = time.perf_counter()
                r = client.post("/badge", json={"person_ids": chosen})
                times.append(time.perf_counter() - start)
                assert r.status_code == 200, r.text
            out[f"{size}_p50_ms"] = pct(times, 50)
            out[f"{size}_p99_ms"] = pct(times, 99)
    return out


async def load(
    url: str, ids: list[str], reviewers: int, per: int, badge_clients: int, republish
) -> dict:
    posted: list[str] = []
    failures: list[str] = []
    post_times: list[float] = []
    badge_times: list[float] = []
    done = asyncio.Event()
    limits = httpx.Limits(max_connections=reviewers + badge_clients + 4)

    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def reviewer(k: int) -> None:
            headers = {"Authorization": f"Bearer {REVIEWER_TOKEN}"}
            for i in range(per):
                pid = random.choice(ids) if i % 2 else f"unscored-{k}-{i}"
                start = time.perf_counter()
                r = await client.post(
                    "/reviews", json=body(pid, random.choice(["grant", "revoke"])), headers=headers
                )
                post_times.append(time.perf_counter() - start)
                if r.status_code == 201:
                    posted.append(r.json()["case_id"])
                else:
                    failures.append(f"POST {r.status_code} {r.text[:100]}")

        async def badge_client() -> None:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            deadline = time.monotonic() + 600  # bounded even if the reviewers hang
            while not done.is_set() and time.monotonic() < deadline:
                start = time.perf_counter()
                r = await client.post(
                    "/badge", json={"person_ids": random.sample(ids, 100)}, headers=headers
                )
                badge_times.append(time.perf_counter() - start)
                if r.status_code != 200:
                    failures.append(f"/badge {r.status_code} {r.text[:100]}")

        start = time.perf_counter()
        badge_tasks = [asyncio.create_task(badge_client()) for _ in range(badge_clients)]
        publisher = asyncio.create_task(asyncio.to_thread(republish))
        await asyncio.gather(*(reviewer(k) for k in range(reviewers)))
        review_seconds = time.perf_counter() - start
        published = await publisher
        done.set()
        await asyncio.gather(*badge_tasks)
        seconds = time.perf_counter() - start
    return {
        "posted": posted,
        "failures": failures,
        "review_seconds": review_seconds,
        "seconds": seconds,
        "post_times": post_times,
        "badge_times": badge_times,
        "republished": published,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reviewers", type=int, default=50)
    parser.add_argument("--per-reviewer", type=int, default=20)
    parser.add_argument("--badge-clients", type=int, default=32)
    parser.add_argument("--preload", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--latency-n", type=int, default=300)
    parser.add_argument("--keep", type=Path, help="reuse/keep the prepared world in DIR")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="reviews-load-"))
    root.mkdir(parents=True, exist_ok=True)
    figures: dict[str, object] = {}

    log("review write latency, in-process")
    sqlite_dir = Path(tempfile.mkdtemp(prefix="reviews-lat-"))
    figures["write_sqlite"] = write_latency(f"sqlite:///{sqlite_dir / 'r.db'}", args.latency_n)
    shutil.rmtree(sqlite_dir, ignore_errors=True)
    try:
        with postgres_cluster(fsync=True) as pg:
            pg_url = fresh_database(pg, "latency")
            figures["write_postgresql"] = write_latency(pg_url, args.latency_n)
    except BaseException as exc:  # noqa: BLE001 - pytest's Skipped when no server is installed
        figures["write_postgresql"] = f"not measured: {exc}"

    env = bench_env(root)
    reviews_db = root / "reviews.db"
    for stale in (reviews_db, Path(f"{reviews_db}-wal"), Path(f"{reviews_db}-shm")):
        stale.unlink(missing_ok=True)
    env.update(
        {"COMMUTER_REVIEWER_TOKENS": REVIEWER_TOKEN, "COMMUTER_REVIEWS": f"sqlite:///{reviews_db}"}
    )
    prepare(root, env, 3000)
    import pandas as pd

    ids = pd.read_parquet(root / "scores.parquet")["person_id"].astype(str).tolist()
    proc, url = start_server(root, env, args.workers)
    try:
        log("/badge with no reviews")
        figures["badge_no_reviews"] = badge_latency(url, ids, 200)
        log(f"preloading {args.preload:,} reviews")
        store = ReviewStore(f"sqlite:///{reviews_db}")
        for i in range(args.preload):
            pid = ids[i % len(ids)] if i % 2 else f"preload-{i}"
            store.add(request(pid, "grant" if i % 3 else "revoke"))
        before = store.verify()
        figures["badge_with_reviews"] = badge_latency(url, ids, 200)

        def republish() -> float:
            start = time.perf_counter()
            subprocess.run(
                [str(BIN / "commuter"), "score", "--trips", str(root / "world" / "trips.parquet"),
                 "--as-of", AS_OF.isoformat(), "--out", str(root / "rescored.parquet"),
                 "--publish"],
                env=env, cwd=root, capture_output=True, check=True, timeout=600,
            )  # fmt: skip
            return time.perf_counter() - start

        log(
            f"load: {args.reviewers} reviewers x {args.per_reviewer}, "
            f"{args.badge_clients} /badge clients, one republication"
        )
        result = asyncio.run(
            load(url, ids, args.reviewers, args.per_reviewer, args.badge_clients, republish)
        )
        after = store.verify()
        stored = [r.case_id for r in store.all()][before.n_reviews :]
        store.close()
    finally:
        stop_server(proc)
    posted = result["posted"]
    expected = args.reviewers * args.per_reviewer
    figures["load"] = {
        "reviews_posted_201": len(posted),
        "reviews_expected": expected,
        "failures": len(result["failures"]),
        "first_failures": result["failures"][:3],
        "lost": len(set(posted) - set(stored)),
        "duplicated": len(stored) - len(set(stored)),
        "unexpected": len(set(stored) - set(posted)),
        "chain_intact": after.ok,
        "chain_problem": after.problem,
        "reviews_in_store": after.n_reviews,
        "review_throughput_per_s": round(len(posted) / result["review_seconds"], 1),
        "review_post_p50_ms": pct(result["post_times"], 50),
        "review_post_p99_ms": pct(result["post_times"], 99),
        "badge_requests": len(result["badge_times"]),
        "badge_throughput_per_s": round(len(result["badge_times"]) / result["seconds"], 1),
        "badge_100_ids_p50_ms": pct(result["badge_times"], 50),
        "badge_100_ids_p99_ms": pct(result["badge_times"], 99),
        "republish_seconds": round(result["republished"], 1),
        "seconds": round(result["seconds"], 1),
        "mean_post_ms": round(statistics.mean(result["post_times"]) * 1000, 1),
    }
    for name, value in figures.items():
        print(f"{name}: {value}")
    ok = figures["load"]
    if ok["lost"] or ok["duplicated"] or ok["unexpected"] or not ok["chain_intact"]:
        sys.exit("FAILED: a review was lost or duplicated, or the chain broke")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
