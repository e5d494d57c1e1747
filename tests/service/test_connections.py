"""Keep-alive connections are recycled so that a client's pool spreads over the workers (issue 15,
throughput): against a real two-worker `commuter serve`."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from commuter_badge.serving.connections import MAX_REQUESTS_PER_CONNECTION

from .conftest import AS_OF, Server, World
from .procs import bento_workers, cpu_seconds

pytestmark = pytest.mark.service

POOL = 16


def test_a_connection_is_closed_after_its_last_request_and_the_client_carries_on(
    server: Server, auth: dict[str, str]
):
    closes, connects = [], []

    def trace(event: str, info: dict) -> None:
        if event == "connection.connect_tcp.complete":
            connects.append(event)

    with httpx.Client(base_url=server.url, headers=auth, timeout=30) as client:
        for i in range(2 * MAX_REQUESTS_PER_CONNECTION + 5):
            r = client.get("/livez", extensions={"trace": trace})
            assert r.status_code == 200
            if r.headers.get("connection", "").lower() == "close":
                closes.append(i)
    assert closes == [MAX_REQUESTS_PER_CONNECTION - 1, 2 * MAX_REQUESTS_PER_CONNECTION - 1]
    assert len(connects) == 3  # the client opened a new connection after each close


def test_a_pool_opened_in_a_burst_under_load_keeps_both_workers_busy(
    world: World, server: Server, auth: dict[str, str]
):
    """asyncio accepts every pending connection at once, so a pool opened in a burst lands on one
    worker (before the fix, py-spy: 93% of the work on one of two); recycled connections are
    accepted by the worker with time to spare. Measured as each worker's CPU time under load."""
    pid = world.batch["person_id"].iloc[0]
    body = {
        "as_of": AS_OF.isoformat(),
        "persons": [{"person_id": pid, "trips": world.trips_of(pid)}],
    }
    workers = bento_workers(server.process.pid)
    assert len(workers) == 2, workers

    async def run() -> None:
        limits = httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
        async with httpx.AsyncClient(
            base_url=server.url, headers=auth, limits=limits, timeout=60
        ) as client:

            async def one_client() -> None:
                for _ in range(3 * MAX_REQUESTS_PER_CONNECTION):
                    assert (await client.post("/score", json=body)).status_code == 200

            await asyncio.gather(*(one_client() for _ in range(POOL)))

    before = cpu_seconds(workers)
    asyncio.run(run())
    used = [b - a for a, b in zip(before, cpu_seconds(workers), strict=True)]
    share = min(used) / sum(used)
    assert share >= 0.2, f"CPU seconds per worker under load: {used}"
