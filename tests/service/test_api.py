"""The badge issuer's API over real HTTP: auth, /score against batch, /badge, publications, logs."""

from __future__ import annotations

import datetime as dt
import random
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pandas as pd
import pytest

from commuter_badge.features.definitions import DESCRIPTIONS
from commuter_badge.stores.decisions import publish

from .conftest import AS_OF, TOKENS

pytestmark = pytest.mark.service

OPEN_PATHS = ["/healthz", "/livez", "/readyz", "/metrics", "/docs.json"]


def score_body(world, person_ids, as_of=AS_OF) -> dict:
    return {
        "as_of": as_of.isoformat(),
        "persons": [{"person_id": p, "trips": world.trips_of(p)} for p in person_ids],
    }


# --- open endpoints and auth --------------------------------------------------------------------


@pytest.mark.parametrize("path", OPEN_PATHS)
def test_health_metrics_and_docs_need_no_token(server, path):
    r = httpx.get(server.url + path, timeout=10)
    assert r.status_code == 200, f"{path} should be open, got {r.status_code}: {r.text[:200]}"


def test_metrics_are_prometheus_text(server, client):
    client.post("/badge", json={"person_ids": ["warm-up"]})
    r = httpx.get(server.url + "/metrics", timeout=10)
    assert r.headers["content-type"].startswith("text/plain"), (
        "Prometheus exposition format expected"
    )
    assert "# TYPE" in r.text, "Prometheus exposition format expected"
    assert "bentoml_service_request" in r.text, "request metrics expected"


@pytest.mark.parametrize("path", ["/score", "/badge"])
@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-token", "Bearer", f"Basic {TOKENS[0]}", f"Bearer {TOKENS[0]}x", TOKENS[0]],
    ids=["missing", "wrong", "empty", "basic-scheme", "token-prefix", "no-scheme"],
)
def test_api_refuses_missing_or_wrong_token(server, path, header):
    headers = {"Authorization": header} if header is not None else {}
    body = {"person_ids": ["x"]} if path == "/badge" else {"as_of": "2021-10-20", "persons": []}
    r = httpx.post(server.url + path, json=body, headers=headers, timeout=10)
    assert r.status_code == 401, f"{header!r} must be refused, got {r.status_code}"
    assert r.json()["error"] == "unauthorized", "401 answers in JSON"
    assert r.headers.get("www-authenticate") == "Bearer"


@pytest.mark.parametrize("token", TOKENS)
def test_every_configured_token_is_accepted(server, token):
    r = httpx.post(
        server.url + "/badge",
        json={"person_ids": ["x"]},
        headers={"Authorization": f"bearer {token}"},
        timeout=10,
    )
    assert r.status_code == 200, f"token from COMMUTER_API_TOKENS refused: {r.text}"


def test_unknown_path_needs_a_token_too(server, auth):
    assert httpx.get(server.url + "/nothing-here", timeout=10).status_code == 401
    assert httpx.get(server.url + "/nothing-here", headers=auth, timeout=10).status_code == 404


# --- /score -------------------------------------------------------------------------------------


def test_score_answers_in_request_order_with_reasons_in_words(world, client):
    ids = list(world.batch["person_id"].sample(6, random_state=1))
    r = client.post("/score", json=score_body(world, ids))
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"model_version", "threshold", "target_fpr", "results"}
    assert body["model_version"] == world.model_version, "serves the registered champion"
    assert 0 < body["threshold"] < 1
    assert 0 < body["target_fpr"] < 1
    assert [x["person_id"] for x in body["results"]] == ids, "results come back in request order"
    for result in body["results"]:
        assert 0.0 <= result["commuter_probability"] <= 1.0
        assert result["badge"] == (result["commuter_probability"] >= body["threshold"])
        assert len(result["reasons"]) == 3, "top three reasons"
        contributions = [abs(x["contribution"]) for x in result["reasons"]]
        assert contributions == sorted(contributions, reverse=True), "largest contributions first"
        for reason in result["reasons"]:
            assert reason["description"] == DESCRIPTIONS[reason["feature"]], "reasons are in words"
            assert reason["value"] is None or isinstance(reason["value"], (int, float))


def test_score_probability_equals_batch_probability(world, client):
    batch = world.batch.set_index("person_id")
    rng = random.Random(7)
    top = list(batch["commuter_probability"].nlargest(10).index)
    rest = rng.sample(sorted(set(batch.index) - set(top)), 10)
    ids = top + rest
    r = client.post("/score", json=score_body(world, ids))
    assert r.status_code == 200, r.text
    for result in r.json()["results"]:
        expected = batch.loc[result["person_id"]]
        assert result["commuter_probability"] == pytest.approx(
            expected["commuter_probability"], abs=1e-6
        ), f"{result['person_id']}: /score and batch ({world.how['decisions']}) disagree"
        assert result["badge"] == bool(expected["badge"]), "same badge decision as batch"


def test_score_one_person_at_a_time_equals_batch_too(world, client):
    # Requests may be scored together in one feature query; alone they must give the same numbers.
    batch = world.batch.set_index("person_id")
    for pid in batch.index[:3]:
        r = client.post("/score", json=score_body(world, [pid]))
        got = r.json()["results"][0]["commuter_probability"]
        assert got == pytest.approx(batch.loc[pid, "commuter_probability"], abs=1e-6)


def test_concurrent_requests_scored_together_keep_their_own_answers(world, server, auth):
    # Concurrent requests share one feature query; the same id with other trips must not mix.
    batch = world.batch.set_index("person_id")
    shared, others = batch.index[0], list(batch.index[1:17])
    bodies = []
    for i, pid in enumerate(others):
        trips = world.trips_of(shared) if i % 2 == 0 else []
        bodies.append(
            {
                "as_of": AS_OF.isoformat(),
                "persons": [
                    {"person_id": pid, "trips": world.trips_of(pid)},
                    {"person_id": shared, "trips": trips},
                ],
            }
        )

    def post(body):
        return httpx.post(server.url + "/score", json=body, headers=auth, timeout=60).json()[
            "results"
        ]

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(post, bodies))
    for i, (pid, results) in enumerate(zip(others, answers, strict=True)):
        assert [r["person_id"] for r in results] == [pid, shared]
        assert results[0]["commuter_probability"] == pytest.approx(
            batch.loc[pid, "commuter_probability"], abs=1e-6
        )
        expected_shared = batch.loc[shared, "commuter_probability"] if i % 2 == 0 else 0.0
        assert results[1]["commuter_probability"] == pytest.approx(expected_shared, abs=1e-6), (
            f"request {i}: {shared} scored with another request's trips"
        )


def test_daily_commuter_gets_a_badge(world, client):
    daily = world.persons[world.persons["archetype"].isin(["daily_rail", "daily_car_dawn"])]
    scored = world.batch.merge(daily[["person_id"]], on="person_id")
    pid = scored.sort_values("commuter_probability").iloc[-1]["person_id"]
    result = client.post("/score", json=score_body(world, [pid])).json()["results"][0]
    assert result["badge"] is True, f"daily commuter {pid} should get a badge: {result}"
    assert result["commuter_probability"] > 0.9


def test_person_without_crossings_in_window_gets_zero_and_says_why(world, client):
    after = [
        {
            "ts": "2021-10-20T08:00:00+08:00",
            "direction": "in",
            "mode": "car",
            "site_id": "CK-G1-XIJI",
            "region": "langfang-xianghe",
        }
    ]  # at as_of: outside the window [as_of - 28 d, as_of)
    body = {
        "as_of": AS_OF.isoformat(),
        "persons": [
            {"person_id": "nobody", "trips": []},
            {"person_id": "too-late", "trips": after},
        ],
    }
    r = client.post("/score", json=body)
    assert r.status_code == 200, r.text
    for result in r.json()["results"]:
        assert result["commuter_probability"] == 0.0
        assert result["badge"] is False
        assert len(result["reasons"]) == 1
        assert "no boundary crossings" in result["reasons"][0]["description"]


def test_same_trips_in_other_offsets_give_the_same_probability(world, client):
    pid = world.batch["person_id"].iloc[0]
    trips = world.trips_of(pid)
    shifted = [
        {**t, "ts": pd.Timestamp(t["ts"]).tz_convert("Asia/Shanghai").isoformat()} for t in trips
    ]
    a = client.post(
        "/score", json={"as_of": "2021-10-20", "persons": [{"person_id": pid, "trips": trips}]}
    )
    b = client.post(
        "/score", json={"as_of": "2021-10-20", "persons": [{"person_id": pid, "trips": shifted}]}
    )
    assert a.json()["results"] == b.json()["results"], (
        "an instant is an instant, whatever its offset"
    )


# --- /badge -------------------------------------------------------------------------------------


def test_badge_returns_batch_decisions_and_misses_in_order(world, client):
    batch = world.batch.set_index("person_id")
    known = list(batch.index[:3])
    ids = [known[0], "never-seen", known[1], known[2], "also-unknown"]
    r = client.post("/badge", json={"person_ids": ids})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["person_id"] for x in results] == ids
    assert [x["found"] for x in results] == [True, False, True, True, False]
    assert results[1] == {"person_id": "never-seen", "found": False}
    for x in (results[0], results[2], results[3]):
        row = batch.loc[x["person_id"]]
        assert x["badge"] == bool(row["badge"])
        assert x["commuter_probability"] == pytest.approx(row["commuter_probability"], abs=1e-12)
        assert x["as_of"] == AS_OF.isoformat()
        assert x["model_version"] == str(row["model_version"])


def test_badge_with_no_ids_is_an_empty_answer(client):
    r = client.post("/badge", json={"person_ids": []})
    assert r.status_code == 200
    assert r.json() == {"results": []}


def test_newer_publication_is_seen_without_restart(world, client):
    original = world.batch.copy()
    newer = pd.concat(
        [
            original,
            pd.DataFrame(
                [
                    {
                        "person_id": "republished-person",
                        "commuter_probability": 0.97,
                        "badge": True,
                        "threshold": original["threshold"].iloc[0],
                        "model_version": "republish-test",
                    }
                ]
            ),
        ],
        ignore_index=True,
    )
    try:
        publish(newer, dt.date(2021, 10, 21), world.decisions_path)
        deadline = time.monotonic() + 10
        seen = 0
        while time.monotonic() < deadline and seen < 6:  # both workers must have switched
            x = client.post("/badge", json={"person_ids": ["republished-person"]}).json()[
                "results"
            ][0]
            seen = seen + 1 if x["found"] else 0
            time.sleep(0.1)
        assert seen >= 6, "the service did not pick up the newer publication within 10 s"
        assert x["as_of"] == "2021-10-21"
        assert x["model_version"] == "republish-test"
    finally:
        publish(original, AS_OF, world.decisions_path, allow_older=True)  # back on purpose
        time.sleep(1.5)  # the store rechecks the file at most once a second


# --- not ready ----------------------------------------------------------------------------------


def test_without_champion_or_decisions_service_is_alive_but_not_ready(empty_server):
    auth = {"Authorization": f"Bearer {TOKENS[0]}"}
    assert httpx.get(empty_server.url + "/readyz", timeout=10).status_code == 503
    r = httpx.post(
        empty_server.url + "/score",
        headers=auth,
        timeout=30,
        json={"as_of": "2021-10-20", "persons": []},
    )
    assert r.status_code == 503, r.text
    assert "train" in r.json()["message"], "503 says what to do"
    r = httpx.post(
        empty_server.url + "/badge", headers=auth, timeout=30, json={"person_ids": ["a"]}
    )
    assert r.status_code == 503, r.text
    assert "commuter score" in r.json()["message"], "503 says what to do"


# --- logs ---------------------------------------------------------------------------------------


def test_logs_hold_neither_tokens_nor_trips(server, client):
    secret_site = "CK-LOG-CANARY-7731"
    body = {
        "as_of": "2021-10-20",
        "persons": [
            {
                "person_id": "log-canary-person",
                "trips": [
                    {
                        "ts": "2021-10-18T07:00:00+08:00",
                        "direction": "in",
                        "mode": "car",
                        "site_id": secret_site,
                    }
                ],
            }
        ],
    }
    assert client.post("/score", json=body).status_code == 200
    bad = {
        **body,
        "persons": [
            {
                **body["persons"][0],
                "trips": [{**body["persons"][0]["trips"][0], "direction": "sideways"}],
            }
        ],
    }
    assert client.post("/score", json=bad).status_code == 422
    time.sleep(0.5)
    logs = server.logs()
    assert "/score" in logs, "the access log is there"
    for secret in (*TOKENS, secret_site, "log-canary-person", "sideways"):
        assert secret not in logs, f"{secret!r} leaked into the server log"
