"""Where a service's stores are, whether `/readyz` tells the truth about them, and that its workers
stop with it (issue 27), over real HTTP against a real `commuter serve`.

- Started in another directory with the defaults (no MLFLOW_TRACKING_URI, COMMUTER_DECISIONS or
  COMMUTER_REVIEWS), the service reads and writes the stores of that directory: a review POSTed
  to it is what `commuter reviews list/export` run there see, not a `reviews.db` in the checkout.
- `/readyz` is 503 while the PostgreSQL review store is down, and 200 again once it is back.
- Killing the server's process group leaves no worker running.
- Small ones: too many evidence codes is an invalid body (422 naming the field), not 413; the
  OpenAPI document marks every API body required.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from commuter_badge.stores.reviews import EVIDENCE_CODES, local_today
from tests.postgres import fresh_database, postgres_cluster
from tests.service.conftest import (
    BIN,
    PROJECT_ROOT,
    TOKENS,
    Server,
    World,
    start_server,
    stop_server,
    store_env,
    wait_until,
)
from tests.service.procs import bento_workers

pytestmark = pytest.mark.service

REVIEWER_TOKENS = ("paths-reviewer-token-epsilon",)
REVIEWER = {"Authorization": f"Bearer {REVIEWER_TOKENS[0]}"}
ISSUER = {"Authorization": f"Bearer {TOKENS[0]}"}
INITIALIZED = "Service commuter_badge initialized"  # BentoML's log line, once per worker
PATH_VARIABLES = ("MLFLOW_TRACKING_URI", "COMMUTER_DECISIONS", "COMMUTER_REVIEWS")


def review(person_id: str, **extra) -> dict:
    return {
        "person_id": person_id,
        "decision": "grant",
        "reason": "residence and employment proof checked at the community office",
        "evidence": ["residence_permit", "employment_contract"],
        "reviewer": "xianghe-community-07",
        "valid_until": (local_today() + dt.timedelta(days=60)).isoformat(),
        **extra,
    }


def default_env(world: World) -> dict[str, str]:
    """The session's environment without any store setting: every store is the default, relative
    to the directory the command runs in."""
    env = {k: v for k, v in world.env.items() if k not in PATH_VARIABLES}
    return {**env, "COMMUTER_REVIEWER_TOKENS": ",".join(REVIEWER_TOKENS)}


@pytest.fixture(scope="module")
def elsewhere(world: World, tmp_path_factory) -> Path:
    """An operator's directory outside the checkout, holding the default stores' files."""
    root = tmp_path_factory.mktemp("operator-dir")
    assert not root.is_relative_to(PROJECT_ROOT)
    shutil.copy(world.root / "mlflow.db", root / "mlflow.db")  # its artifacts stay where they are
    shutil.copy(world.decisions_path, root / "decisions.duckdb")
    return root


@pytest.fixture(scope="module")
def defaults_server(world: World, elsewhere: Path) -> Iterator[Server]:
    srv = start_server(default_env(world), elsewhere, workers=1)
    try:
        wait_until(srv, "/readyz", 200)
        yield srv
    finally:
        stop_server(srv)


def commuter(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "commuter"), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def test_reviews_posted_to_a_service_started_elsewhere_reach_the_cli_there(
    world: World, elsewhere: Path, defaults_server: Server
):
    checkout_store = PROJECT_ROOT / "reviews.db"
    before = checkout_store.stat().st_mtime_ns if checkout_store.exists() else None
    pid = world.batch.loc[~world.batch["badge"], "person_id"].iloc[3]
    r = httpx.post(defaults_server.url + "/reviews", json=review(pid), headers=REVIEWER, timeout=30)
    assert r.status_code == 201, r.text
    case_id = r.json()["case_id"]
    answer = httpx.post(
        defaults_server.url + "/badge", json={"person_ids": [pid]}, headers=ISSUER, timeout=30
    ).json()["results"][0]
    assert (answer["source"], answer["case_id"]) == ("review", case_id)
    assert answer["model_version"] == world.model_version, "the batch decision of this directory"

    assert (elsewhere / "reviews.db").exists(), "the default store is in the operator's directory"
    env = default_env(world)
    listed = commuter(["reviews", "list"], env, elsewhere)
    assert listed.returncode == 0, listed.stderr
    assert case_id in listed.stdout, listed.stdout
    out = elsewhere / "labels.csv"
    exported = commuter(["reviews", "export", "--out", str(out)], env, elsewhere)
    assert exported.returncode == 0, exported.stderr
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert (pid, case_id) in [(row["person_id"], row["case_id"]) for row in rows], rows
    after = checkout_store.stat().st_mtime_ns if checkout_store.exists() else None
    assert after == before, "nothing was written to a reviews.db in the checkout"


def test_too_many_evidence_codes_is_an_invalid_body_not_a_large_one(defaults_server: Server):
    codes = [*EVIDENCE_CODES, "other"]  # one more than there are codes
    assert len(codes) == 8
    r = httpx.post(
        defaults_server.url + "/reviews",
        json=review("p-evidence", evidence=codes),
        headers=REVIEWER,
        timeout=30,
    )
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "evidence", r.json()
    # The request-size limits stay 413.
    r = httpx.post(
        defaults_server.url + "/badge",
        json={"person_ids": [f"p{i}" for i in range(10_001)]},
        headers=ISSUER,
        timeout=30,
    )
    assert r.status_code == 413, r.text
    assert r.json()["field"] == "person_ids"


def test_the_openapi_document_marks_every_api_body_required(defaults_server: Server):
    doc = httpx.get(defaults_server.url + "/docs.json", timeout=30).json()
    for path, method in (("/score", "post"), ("/badge", "post"), ("/reviews", "post")):
        assert doc["paths"][path][method]["requestBody"]["required"] is True, path
    r = httpx.post(defaults_server.url + "/badge", headers=ISSUER, timeout=30)
    assert 400 <= r.status_code < 500, "and the service refuses a request without one"


def readyz_statuses(server: Server, n: int) -> list[int]:
    """`n` answers of /readyz, each on a new connection (so both workers answer)."""
    answers = [httpx.get(server.url + "/readyz", timeout=10) for _ in range(n)]
    return [(r.status_code, r.text[:300]) if r.status_code != 200 else 200 for r in answers]


def wait_for_readyz(server: Server, want: int, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if httpx.get(server.url + "/readyz", timeout=10).status_code == want:
            return time.monotonic() - start
        time.sleep(0.2)
    pytest.fail(f"/readyz did not answer {want} within {timeout:.0f} s:\n{server.logs()[-3000:]}")


def test_readyz_is_503_while_the_postgresql_review_store_is_down(world: World, tmp_path: Path):
    with postgres_cluster() as pg:
        env = {**world.env, "COMMUTER_REVIEWER_TOKENS": ",".join(REVIEWER_TOKENS)}
        env["COMMUTER_REVIEWS"] = fresh_database(pg, "reviews_readiness")
        srv = start_server(env, world.root, workers=2)
        try:
            wait_until(srv, "/readyz", 200)
            assert set(readyz_statuses(srv, 10)) == {200}, srv.logs()[-3000:]
            pg.stop()
            wait_for_readyz(srv, 503, timeout=15)
            time.sleep(1.5)  # past any answer a worker reuses
            down = readyz_statuses(srv, 20)
            assert {s[0] for s in down} == {503}, f"every worker, every answer: {down}"
            body = httpx.get(srv.url + "/readyz", timeout=10).json()
            assert any(m.startswith("no review store") for m in body["missing"]), body
            r = httpx.post(srv.url + "/badge", json={"person_ids": ["p1"]}, headers=ISSUER)
            assert r.status_code == 503, "the docs' promise: /badge and /readyz agree"
            pg.start()
            back = wait_for_readyz(srv, 200, timeout=30)
            # Every worker ready again: 20 answers in a row (a ping slower than its 2 s timeout,
            # as on this shared 2-core machine, may cost one more second of 503).
            deadline, streak, seen = time.monotonic() + 30, 0, []
            while streak < 20 and time.monotonic() < deadline:
                seen = readyz_statuses(srv, 1) + seen[:5]
                streak = streak + 1 if seen[0] == 200 else 0
            assert streak >= 20, f"ready after {back:.1f} s, then: {seen}"
            r = httpx.post(srv.url + "/badge", json={"person_ids": ["p1"]}, headers=ISSUER)
            assert r.status_code == 200, r.text
        finally:
            stop_server(srv)


def test_a_worker_started_while_the_review_store_is_down_opens_it_when_it_is_back(
    world: World, tmp_path: Path
):
    # Given a PostgreSQL review store whose server is down when the service starts
    with postgres_cluster() as pg:
        env = {**world.env, "COMMUTER_REVIEWER_TOKENS": ",".join(REVIEWER_TOKENS)}
        env["COMMUTER_REVIEWS"] = fresh_database(pg, "reviews_late")
        pg.stop()
        srv = start_server(env, world.root, workers=2)
        try:
            # then the workers are alive but not ready, and say why
            wait_until(srv, "/livez", 200)
            wait_for_readyz(srv, 503, timeout=60)
            body = httpx.get(srv.url + "/readyz", timeout=10).json()
            assert any(m.startswith("no review store") for m in body["missing"]), body
            # and once the server is back, every worker opens the store by itself (no restart)
            pg.start()
            deadline, streak, seen = time.monotonic() + 60, 0, []
            while streak < 20 and time.monotonic() < deadline:
                seen = readyz_statuses(srv, 1) + seen[:5]
                streak = streak + 1 if seen[0] == 200 else 0
            assert streak >= 20, f"not ready again within 60 s: {seen}"
        finally:
            stop_server(srv)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_stopping_the_process_group_stops_every_worker(tmp_path: Path, sig):
    srv = start_server(store_env(tmp_path), tmp_path, workers=2)  # no model: alive, not ready
    pids: list[int] = []
    try:
        wait_until(srv, "/livez", 200)
        deadline = time.monotonic() + 90
        while len(bento_workers(srv.process.pid)) < 2 or srv.logs().count(INITIALIZED) < 2:
            assert time.monotonic() < deadline, f"two workers expected:\n{srv.logs()[-3000:]}"
            time.sleep(0.5)
        pids = [w.pid for w in bento_workers(srv.process.pid)]
        assert all(os.getpgid(p) != srv.process.pid for p in pids), "each in its own group"
        os.killpg(srv.process.pid, sig)
        srv.process.wait(timeout=60)
        deadline = time.monotonic() + 60
        while (left := [p for p in pids if alive(p)]) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not left, f"workers {left} outlived their server:\n{srv.logs()[-3000:]}"
    finally:
        for p in pids:
            if alive(p):
                os.kill(p, signal.SIGKILL)  # the workers this test started
        stop_server(srv)
