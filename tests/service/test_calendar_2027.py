"""`/score` across New Year 2027 against a real `commuter serve --calendar FILE`, `/readyz`
reporting the calendar, and the 422 on `as_of` from a service that has no 2027 schedule."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator

import httpx
import pandas as pd
import pytest

from commuter_badge.features.workdays import open_calendar
from commuter_badge.simulate.variation import WorldSettings
from commuter_badge.simulate.world import simulate_world, write_world
from tests.conftest import AS_OF_2027, CALENDAR_2027
from tests.service.bodies import trip_entries
from tests.service.conftest import (
    BIN,
    TOKENS,
    Server,
    World,
    free_port,
    run_cli,
    stop_server,
    wait_until,
)

pytestmark = pytest.mark.service

DIGEST = hashlib.sha256(CALENDAR_2027.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def world_2027(world: World, tmp_path_factory) -> dict:
    """300 persons simulated as of 2027-01-20, and their batch scores by the world's champion."""
    root = tmp_path_factory.mktemp("world-2027")
    settings = WorldSettings(calendar=open_calendar(CALENDAR_2027))
    world_2027 = simulate_world(300, AS_OF_2027, seed=27, settings=settings)
    paths = write_world(world_2027, root / "world")
    scores = root / "scores.parquet"
    run_cli(
        [
            "score",
            "--trips",
            str(paths["trips"]),
            "--as-of",
            AS_OF_2027.isoformat(),
            "--out",
            str(scores),
            "--no-publish",  # the session's decision store stays as the other tests expect
            "--calendar",
            str(CALENDAR_2027),
        ],
        world.env,
        world.root,
    )
    return {"trips": pd.read_parquet(paths["trips"]), "batch": pd.read_parquet(scores)}


@pytest.fixture(scope="module")
def calendar_server(world: World) -> Iterator[Server]:
    """`commuter serve --calendar FILE` on the session's stores (COMMUTER_CALENDAR unset)."""
    port = free_port()
    log_path = world.root / f"server-calendar-{port}.log"
    env = {**world.env}
    env.pop("COMMUTER_CALENDAR", None)
    argv = [str(BIN / "commuter"), "serve", "--port", str(port), "--host", "127.0.0.1"]
    argv += ["--workers", "1", "--calendar", str(CALENDAR_2027)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            env=env,
            cwd=world.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    srv = Server(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path, env=env)
    try:
        wait_until(srv, "/readyz", 200)
        yield srv
    finally:
        stop_server(srv)


def payload(trips: pd.DataFrame, ids: list[str]) -> dict:
    persons = [
        {"person_id": pid, "trips": trip_entries(trips[trips["person_id"] == pid])} for pid in ids
    ]
    return {"as_of": AS_OF_2027.isoformat(), "persons": persons}


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[0]}"}


def test_readyz_reports_the_calendar(calendar_server):
    # given a service started with the 2027 schedule / when readiness is asked
    r = httpx.get(calendar_server.url + "/readyz", timeout=10)
    # then the ready answer names the library, the file's digest and the years covered
    assert r.status_code == 200, r.text
    calendar = r.json()["calendar"]
    assert calendar["library_version"] == "1.11.0", calendar
    assert calendar["file_digest"] == DIGEST, calendar
    assert calendar["file"] == str(CALENDAR_2027), calendar
    assert (calendar["file_years"], calendar["years"]) == ("2027", "2004-2027"), calendar


def test_score_across_new_year_2027_matches_batch(calendar_server, world_2027):
    # given 25 persons with 2027 crossings and their batch scores under the same calendar
    batch = world_2027["batch"].set_index("person_id")
    ids = sorted(batch.index)[:25]
    # when /score is asked about them for as_of 2027-01-20
    r = httpx.post(
        calendar_server.url + "/score",
        json=payload(world_2027["trips"], ids),
        headers=auth(),
        timeout=60,
    )
    # then it answers, with the batch's probability and badge for every person (no skew)
    assert r.status_code == 200, r.text
    results = {x["person_id"]: x for x in r.json()["results"]}
    assert sorted(results) == ids, "one result per person"
    for pid in ids:
        got, want = results[pid]["commuter_probability"], batch.loc[pid, "commuter_probability"]
        assert got == pytest.approx(want, abs=1e-9), f"{pid}: /score {got} vs batch {want}"
        assert results[pid]["badge"] == bool(batch.loc[pid, "badge"]), f"{pid}: badge differs"
    assert any(results[p]["badge"] for p in ids), "some commuters among 25 persons get a badge"


def test_a_service_without_a_2027_schedule_refuses_as_of_clearly(server, world_2027):
    # given the session's service (no calendar file) / when asked about as_of 2027-01-20
    trips = world_2027["trips"]
    ids = sorted(trips["person_id"].unique())[:2]
    r = httpx.post(server.url + "/score", json=payload(trips, ids), headers=auth(), timeout=60)
    # then a 422 on as_of whose message names the year and how to supply its schedule
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["field"] == "as_of", body
    for part in ("for 2027", "--calendar FILE", "COMMUTER_CALENDAR", "date,kind,name"):
        assert part in body["message"], f"{part!r} missing from {body['message']!r}"
