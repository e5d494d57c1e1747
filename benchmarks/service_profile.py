"""Where a request's time goes inside one worker: the ASGI app driven in-process, layer by layer.

    .venv/bin/python benchmarks/service_profile.py [--keep DIR] [--requests 400]

Prepares (or reuses) the world of benchmarks/service_bench.py, then, in this one process and with
no socket, calls the service's ASGI application directly with the bodies service_targets.py
sends (single-person `/score`, `/badge` with one id), and times each call. The stacks compared:

- `bentoml`: the whole application a worker serves (BentoML's middlewares, ours, BentoML's
  router, the mounted FastAPI app), built by BentoML's `Service.to_asgi` as a worker builds it;
- `fastapi`: the mounted FastAPI application alone (routing, roles, body, handler, response);
- `fastapi + X`: the FastAPI application inside one of our middlewares;
- the handlers' own parts, called directly: body validation, the scorer (features, booster,
  TreeSHAP), the decision store lookup, the review store lookup, the answer's serialization;
- each of our middlewares around an app that answers at once (its own cost, without the noise of
  a whole request);
- the floor (benchmarks/floor_service.py) built the same way, in a process
  of its own.

The HTTP server (uvicorn, h11) and the client are not in these figures: what is left between
them and the sequential p50 of service_targets.py is theirs. Figures are CPU time of this process
(every thread) per request, which a shared machine's load moves less than wall time; medians of
alternating rounds, in microseconds; results in benchmarks/results/service_profile.json (docs/guide/operations.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pandas as pd
from results_file import Result
from service_bench import AS_OF, PROJECT_ROOT, TOKEN, bench_env, log, prepare, request_persons

RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "service_profile.json"
AUTH = [(b"authorization", f"Bearer {TOKEN}".encode()), (b"content-type", b"application/json")]


def scope_for(path: str, body: bytes, client: int) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [*AUTH, (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 40000 + client % 20000),
        "server": ("127.0.0.1", 3000),
        "state": {},
    }


async def call(app: Callable[..., Awaitable[None]], path: str, body: bytes, k: int) -> int:
    """One request through `app`; returns its status."""
    sent = False
    status = 0

    async def receive() -> dict:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope_for(path, body, k), receive, send)
    return status


async def answer(scope: dict, receive: Callable, send: Callable) -> None:
    """An ASGI app that reads the body and answers 200 with a small JSON body at once."""
    await receive()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"{}"})


async def timed(
    app: Callable[..., Awaitable[None]], path: str, bodies: list[bytes], n: int
) -> float:
    """CPU microseconds of this process (every thread) per request, over `n` sequential requests:
    on a shared machine CPU time moves less with the others' load than wall time does."""
    cpu = time.process_time()
    for k in range(n):
        status = await call(app, path, bodies[k % len(bodies)], k)
        if status != 200:
            raise SystemExit(f"{path} answered {status} in the profile")
    return (time.process_time() - cpu) / n * 1e6


def parts(
    svc: object, bodies: dict[str, list[bytes]], n: int
) -> dict[str, Callable[[int], object]]:
    """The handlers' own parts, each callable on its own (k picks the body)."""
    from commuter_badge.serving.schemas import BadgeRequest, ScoreRequest
    from commuter_badge.serving.scoring import score_persons

    model = svc._model
    scored = [ScoreRequest.model_validate_json(b) for b in bodies["single"]]
    asked = [BadgeRequest.model_validate_json(b) for b in bodies["badge1"]]
    con = svc.scorer._con
    return {
        "validate /score body": lambda k: ScoreRequest.model_validate_json(
            bodies["single"][k % len(bodies["single"])]
        ),
        "features + booster + TreeSHAP (1 person)": lambda k: score_persons(
            model, AS_OF, scored[k % len(scored)].persons, con, svc.calendar
        ),
        "decision store lookup (1 id)": lambda k: svc.store.lookup(
            list(asked[k % len(asked)].person_ids)
        ),
        "review store lookup (1 id)": lambda k: svc.reviews.in_force(
            asked[k % len(asked)].person_ids
        ),
    }


def time_part(fn: Callable[[int], object], n: int) -> float:
    cpu = time.process_time()
    for k in range(n):
        fn(k)
    return (time.process_time() - cpu) / n * 1e6


async def build(service: object) -> tuple[object, object]:
    """BentoML's application for `service`, started (lifespan entered); and its lifespan, which
    must be kept referenced (its clean-up runs when it is collected)."""
    app = service.to_asgi(is_main=True)  # what a worker serves (_bentoml_impl/worker/service.py)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    return app, lifespan


async def profile(bodies: dict[str, list[bytes]], n: int, rounds: int, floor: bool) -> dict:
    from commuter_badge.serving import service as ours
    from commuter_badge.serving.admission import InflightLimit
    from commuter_badge.serving.connections import RecycleConnections
    from commuter_badge.serving.metrics import TrafficMetrics
    from commuter_badge.serving.readiness import ReadyzFromApi

    sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))
    import bentoml
    import floor_service
    from bentoml._internal.log import configure_server_logging

    configure_server_logging()  # access-log lines written, as in a worker
    if floor:  # in a process of its own: its BentoML metrics share our metrics' names
        floor_app, keep_floor = await build(floor_service.Floor)
        return await measure([("floor (bentoml)", floor_app, "/score")], {}, bodies, n, rounds)
    bento_app, keep_ours = await build(ours.CommuterBadge)
    svc = bentoml.get_current_service()
    api = ours.app
    stacks = {"bentoml": bento_app, "fastapi": api}
    measures = [
        (name, stack, path) for name, stack in stacks.items() for path in ("/score", "/badge")
    ]
    # each of our middlewares around an app that answers at once: its own cost, without the
    # noise of a whole request around it
    layers = {
        "TrafficMetrics": TrafficMetrics(answer),
        "RecycleConnections": RecycleConnections(answer),
        "InflightLimit": InflightLimit(answer),
        "ReadyzFromApi": ReadyzFromApi(answer, api=api),
        "nothing": answer,
    }
    measures += [(f"middleware {name}", layer, "/badge") for name, layer in layers.items()]
    return await measure(measures, parts(svc, bodies, n), bodies, n, rounds)


async def measure(measures: list, pieces: dict, bodies: dict, n: int, rounds: int) -> dict:
    for _ in range(20):  # warm every path
        for _name, stack, path in measures:
            await call(stack, path, bodies["single" if path == "/score" else "badge1"][0], 0)
    per_round: dict[str, list[float]] = {}
    for r in range(rounds):
        order = measures if r % 2 == 0 else measures[::-1]
        for name, stack, path in order:
            key = f"{name} {path}"
            which = "single" if path == "/score" else "badge1"
            per_round.setdefault(key, []).append(await timed(stack, path, bodies[which], n))
        for name, fn in pieces.items():
            per_round.setdefault(name, []).append(time_part(fn, n))
        log(f"round {r + 1}/{rounds}")
    return {
        key: {"median_us": statistics.median(v), "rounds_us": v} for key, v in per_round.items()
    }


def table(measured: dict) -> list[dict]:
    """The docs' rows: CPU microseconds per request of each stack, layer or part."""

    def m(key: str) -> int:
        return round(measured[key]["median_us"])

    rows = [
        {
            "what": "floor: BentoML's whole app, one booster call",
            "score_us": m("floor (bentoml) /score"),
        },
        {
            "what": "ours: BentoML's whole app (what a worker serves)",
            "score_us": m("bentoml /score"),
            "badge_us": m("bentoml /badge"),
        },
        {
            "what": "  the FastAPI app alone (routing, roles, body, handler, answer)",
            "score_us": m("fastapi /score"),
            "badge_us": m("fastapi /badge"),
        },
        {
            "what": "  BentoML's middlewares and router, and ours (the difference)",
            "score_us": m("bentoml /score") - m("fastapi /score"),
            "badge_us": m("bentoml /badge") - m("fastapi /badge"),
        },
    ]
    for name in ("TrafficMetrics", "RecycleConnections", "InflightLimit", "ReadyzFromApi"):
        cost = m(f"middleware {name} /badge") - m("middleware nothing /badge")
        rows.append(
            {
                "what": f"    of which {name} (around an app that answers at once)",
                "score_us": cost,
                "badge_us": cost,
            }
        )
    for part, column in (
        ("validate /score body", "score_us"),
        ("features + booster + TreeSHAP (1 person)", "score_us"),
        ("decision store lookup (1 id)", "badge_us"),
        ("review store lookup (1 id)", "badge_us"),
    ):
        rows.append({"what": f"  part: {part}", column: m(part)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=Path, help="prepare/reuse the world in this directory")
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--floor-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="service-profile-"))
    root.mkdir(parents=True, exist_ok=True)
    env = bench_env(root)
    prepare(root, env, 3000)
    prom = Path(tempfile.mkdtemp(prefix="prom-"))
    os.environ.update(
        {k: v for k, v in env.items() if k.startswith(("MLFLOW_", "COMMUTER_", "BENTOML_"))}
    )
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(prom)  # as in a worker (serving/metrics.py)
    os.environ["OMP_NUM_THREADS"] = "1"
    rng = random.Random(3)
    ids, person = request_persons(root, rng, 400)
    known = sorted(pd.read_parquet(root / "scores.parquet")["person_id"])
    bodies = {
        "single": [
            json.dumps({"as_of": AS_OF.isoformat(), "persons": [person(p)]}).encode() for p in ids
        ],
        "badge1": [json.dumps({"person_ids": [p]}).encode() for p in rng.sample(known, 400)],
    }
    if args.floor_only:
        measured = asyncio.run(profile(bodies, args.requests, args.rounds, floor=True))
        args.out.write_text(json.dumps(measured))
        return
    opened = Result("service_profile")  # the machine's load now, before the floor's run
    floor_out = root / "floor_profile.json"
    subprocess.run(
        [sys.executable, __file__, "--floor-only", "--keep", str(root), "--out", str(floor_out),
         "--requests", str(args.requests), "--rounds", str(args.rounds)],
        check=True,
    )  # fmt: skip
    measured = asyncio.run(profile(bodies, args.requests, args.rounds, floor=False))
    measured.update(json.loads(floor_out.read_text()))
    (root / "profile_measured.json").write_text(json.dumps(measured))
    result = {
        "setup": {"requests_per_measure": args.requests, "rounds": args.rounds},
        "table": table(measured),
        "measured": measured,
    }
    opened.write(result, args.out)
    for row in result["table"]:
        print(f"{row['what']:<75} {row.get('score_us', ''):>7} {row.get('badge_us', ''):>7}")


if __name__ == "__main__":
    main()
