"""The decision store on PostgreSQL (COMMUTER_DECISIONS=postgresql://...): the same guards as the
file, one transaction per publication, and every replica answering from the same publication."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pandas as pd
import pytest

from tests.postgres import Postgres, fresh_database
from tests.service.conftest import TOKENS, start_server, stop_server, wait_until

pytestmark = pytest.mark.servers
AS_OF = dt.date(2021, 10, 20)
AUTH = {"Authorization": f"Bearer {TOKENS[0]}"}


@pytest.fixture(scope="module")
def pg(shared_postgres) -> Postgres:
    return shared_postgres


_databases = iter(range(1000))


@pytest.fixture
def url(pg) -> str:
    return fresh_database(pg, f"decisions_{next(_databases)}")


def decisions(n: int, version: str, badges: int | None = None) -> pd.DataFrame:
    badges = n // 2 if badges is None else badges
    return pd.DataFrame(
        {
            "person_id": [f"p{i:06d}" for i in range(n)],
            "commuter_probability": [0.9 if i < badges else 0.1 for i in range(n)],
            "badge": [i < badges for i in range(n)],
            "threshold": 0.5,
            "model_version": version,
        }
    )


def test_publish_and_read_with_the_files_guards(url):
    from commuter_badge.stores.decisions import (
        PublicationRefused,
        current_publication,
        open_store,
        publish,
    )

    # Given nothing published, a reader is not ready and says how to publish;
    store = open_store(url)
    assert not store.ready
    assert "commuter score" in store.problem
    # when a first month is published, it answers from it,
    assert publish(decisions(100, "7"), AS_OF, url) == 100
    assert store.ready or (time.sleep(1.1) or store.ready)
    found = store.lookup(["p000001", "p000099", "nobody"])
    assert set(found) == {"p000001", "p000099"}
    assert found["p000001"]["badge"] is True
    assert found["p000099"]["as_of"] == AS_OF
    assert current_publication(url)["rows"] == 100
    # an older month, a shrink and a loss of badges are refused, the store untouched,
    with pytest.raises(PublicationRefused, match="newer"):
        publish(decisions(100, "8"), AS_OF - dt.timedelta(days=28), url)
    with pytest.raises(PublicationRefused, match="a drop of"):
        publish(decisions(40, "8"), AS_OF, url)
    with pytest.raises(PublicationRefused, match="drop in badges"):
        publish(decisions(100, "8", badges=0), AS_OF, url)
    assert current_publication(url)["version"] == 1
    # and a newer month replaces it, the old table gone.
    publish(decisions(120, "8"), AS_OF + dt.timedelta(days=28), url)
    assert store.lookup(["p000110"])["p000110"]["model_version"] == "8"
    store.close()
    tables = _tables(url)
    assert tables == ["commuter_decisions_v2", "commuter_publications"], tables


def _tables(url: str) -> list[str]:
    import psycopg

    with psycopg.connect(url) as con:
        rows = con.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall()
    return [r[0] for r in rows]


_PUBLISH_BIG = """
import sys, datetime as dt
import pandas as pd
from commuter_badge.stores.decisions import publish
n = int(sys.argv[2])
frame = pd.DataFrame({"person_id": [f"p{i:06d}" for i in range(n)],
    "commuter_probability": 0.9, "badge": True, "threshold": 0.5, "model_version": "new"})
publish(frame, dt.date(2021, 10, 20), sys.argv[1])
"""


def test_a_publisher_killed_mid_publication_leaves_the_old_one_whole(url):
    import psycopg

    from commuter_badge.stores.decisions import current_publication, open_store, publish

    publish(decisions(1000, "old", badges=1000), AS_OF, url)
    # Given a publisher copying a big publication,
    proc = subprocess.Popen([sys.executable, "-c", _PUBLISH_BIG, url, "3000000"])  # noqa: S603
    # when it is killed while its copy runs,
    deadline = time.monotonic() + 300
    with psycopg.connect(url, autocommit=True) as con:
        while time.monotonic() < deadline and proc.poll() is None:
            busy = con.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY commuter_%%'"
            ).fetchone()[0]
            if busy:
                break
            time.sleep(0.05)
    assert proc.poll() is None, "the publisher ended before it could be killed mid-copy"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # then the old publication is served whole, none of the new,
    store = open_store(url)
    found = store.lookup([f"p{i:06d}" for i in range(2000)])
    assert len(found) == 1000
    assert {d["model_version"] for d in found.values()} == {"old"}
    assert current_publication(url)["version"] == 1
    # and once the server has dropped the dead session, the next publication goes through.
    publish(decisions(1000, "next", badges=1000), AS_OF, url)
    assert {d["model_version"] for d in store.lookup(["p000001"]).values()} == {"next"}
    store.close()


@pytest.fixture
def replicas(world, url) -> Iterator[tuple[str, list]]:
    """Two services (each a host's replica) on one decision database, the world's publication."""
    from commuter_badge.stores.decisions import publish

    publish(world.batch, AS_OF, url)
    env = {**world.env, "COMMUTER_DECISIONS": url}
    servers = [start_server(env, world.root, workers=1) for _ in range(2)]
    try:
        for server in servers:
            wait_until(server, "/readyz", 200, timeout=180)
        yield url, servers
    finally:
        for server in servers:
            stop_server(server)


def _versions(server, ids: list[str]) -> set[str]:
    r = httpx.post(server.url + "/badge", json={"person_ids": ids}, headers=AUTH, timeout=60)
    assert r.status_code == 200, r.text
    return {x["model_version"] for x in r.json()["results"] if x["found"]}


def test_two_replicas_switch_together_and_no_answer_mixes_publications(world, replicas):
    from commuter_badge.stores.decisions import publish

    url, servers = replicas
    ids = world.batch["person_id"].astype(str).tolist()[:1000]
    old = {str(world.batch["model_version"].iloc[0])}
    # Given two replicas answering from the first publication (as /readyz says),
    for server in servers:
        assert _versions(server, ids) == old
        ready = httpx.get(server.url + "/readyz", timeout=10).json()
        assert ready["stores"]["decisions"]["kind"] == "postgresql", ready
        assert "postgres@" not in str(ready["stores"]), "no user or password in /readyz"
        assert ready["publication"]["version"] == "1", ready
    # while both are asked for 1,000 ids again and again,
    seen: list[set[str]] = []
    stop = threading.Event()

    def load(server) -> None:
        while not stop.is_set():
            seen.append(_versions(server, ids))

    threads = [threading.Thread(target=load, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    # when a new publication is made,
    time.sleep(1)
    renamed = world.batch.assign(model_version="republished")
    publish(renamed, AS_OF, url)
    # then both answer from it right after the switch,
    after = [_versions(server, ids) for server in servers]
    time.sleep(1)
    stop.set()
    for t in threads:
        t.join()
    assert after == [{"republished"}, {"republished"}], after
    # and no answer under load ever mixed the two publications.
    assert all(len(s) == 1 for s in seen), [s for s in seen if len(s) != 1][:3]
    assert {"republished"} in seen or len(seen) > 0


def test_readyz_names_the_file_stores_and_the_publication(server, world):
    # Given the service on the embedded stores (a DuckDB file, SQLite reviews and MLflow),
    ready = httpx.get(server.url + "/readyz", timeout=10).json()
    # then /readyz keeps its fields and names each store by kind and place,
    assert {"status", "model_version", "calendar"} <= set(ready), ready
    stores = ready["stores"]
    assert stores["decisions"] == {"kind": "duckdb", "location": str(world.decisions_path)}
    assert stores["models"]["kind"] == "sqlite", stores
    assert stores["reviews"]["kind"] == "sqlite", stores
    # and the publication it answers from.
    publication = ready["publication"]
    assert publication["as_of"] == str(AS_OF), publication
    assert publication["rows"] == len(world.batch), publication
    assert publication["version"], publication
