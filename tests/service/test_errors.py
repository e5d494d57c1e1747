"""Every kind of bad input (contract section 3) gets a 4xx with a JSON body naming the field."""

from __future__ import annotations

import copy
import json

import pytest

from commuter_badge.serving.schemas import MAX_BADGE_IDS, MAX_PERSONS, MAX_TRIPS

pytestmark = pytest.mark.service

TRIP = {
    "ts": "2021-10-18T07:04:51+08:00",
    "direction": "in",
    "mode": "car",
    "site_id": "CK-G1-XIJI",
    "region": "langfang-xianghe",
}
GOOD = {
    "as_of": "2021-10-20",
    "persons": [{"person_id": "p1", "trips": [TRIP, {**TRIP, "direction": "out"}]}],
}


def with_trip(**change) -> dict:
    body = copy.deepcopy(GOOD)
    body["persons"][0]["trips"][1].update(change)
    return body


def without_trip_field(name: str) -> dict:
    body = copy.deepcopy(GOOD)
    del body["persons"][0]["trips"][1][name]
    return body


T1 = "persons[0].trips[1]"
SCORE_CASES = [
    # (id, body, status, field)
    ("as_of-int", {**GOOD, "as_of": 20211020}, 422, "as_of"),
    ("as_of-not-a-date", {**GOOD, "as_of": "2021-02-30"}, 422, "as_of"),
    ("as_of-words", {**GOOD, "as_of": "yesterday"}, 422, "as_of"),
    ("as_of-datetime", {**GOOD, "as_of": "2021-10-20T00:00:00"}, 422, "as_of"),
    ("as_of-outside-calendar", {**GOOD, "as_of": "1990-06-01"}, 422, "as_of"),
    ("as_of-missing", {"persons": GOOD["persons"]}, 422, "as_of"),
    ("persons-missing", {"as_of": "2021-10-20"}, 422, "persons"),
    ("persons-not-a-list", {**GOOD, "persons": {"person_id": "p1"}}, 422, "persons"),
    (
        "person_id-int",
        {**GOOD, "persons": [{"person_id": 17, "trips": []}]},
        422,
        "persons[0].person_id",
    ),
    (
        "person_id-empty",
        {**GOOD, "persons": [{"person_id": "", "trips": []}]},
        422,
        "persons[0].person_id",
    ),
    (
        "person_id-blank",
        {**GOOD, "persons": [{"person_id": "  ", "trips": []}]},
        422,
        "persons[0].person_id",
    ),
    ("trips-missing", {**GOOD, "persons": [{"person_id": "p1"}]}, 422, "persons[0].trips"),
    (
        "trips-not-a-list",
        {**GOOD, "persons": [{"person_id": "p1", "trips": "none"}]},
        422,
        "persons[0].trips",
    ),
    ("direction-unknown", with_trip(direction="sideways"), 422, f"{T1}.direction"),
    ("direction-upper", with_trip(direction="IN"), 422, f"{T1}.direction"),
    ("mode-unknown", with_trip(mode="plane"), 422, f"{T1}.mode"),
    ("mode-int", with_trip(mode=3), 422, f"{T1}.mode"),
    ("ts-words", with_trip(ts="yesterday morning"), 422, f"{T1}.ts"),
    ("ts-naive", with_trip(ts="2021-10-18T07:04:51"), 422, f"{T1}.ts"),
    ("ts-date-only", with_trip(ts="2021-10-18"), 422, f"{T1}.ts"),
    ("ts-impossible", with_trip(ts="2021-13-40T07:04:51+08:00"), 422, f"{T1}.ts"),
    ("ts-epoch-number", with_trip(ts=1634511891), 422, f"{T1}.ts"),
    ("ts-null", with_trip(ts=None), 422, f"{T1}.ts"),
    ("site_id-missing", without_trip_field("site_id"), 422, f"{T1}.site_id"),
    ("site_id-empty", with_trip(site_id=""), 422, f"{T1}.site_id"),
    ("site_id-list", with_trip(site_id=["a"]), 422, f"{T1}.site_id"),
    ("region-int", with_trip(region=5), 422, f"{T1}.region"),
    (
        "trip-not-an-object",
        {**GOOD, "persons": [{"person_id": "p1", "trips": ["x"]}]},
        422,
        "persons[0].trips[0]",
    ),
    ("body-is-a-list", [GOOD], 422, "body"),
    ("body-is-a-string", "hello", 422, "body"),
    (
        "duplicate-person",
        {
            **GOOD,
            "persons": [
                {"person_id": "p1", "trips": []},
                {"person_id": "p2", "trips": []},
                {"person_id": "p1", "trips": []},
            ],
        },
        422,
        "persons[2].person_id",
    ),
    (
        "too-many-persons",
        {**GOOD, "persons": [{"person_id": f"p{i}", "trips": []} for i in range(MAX_PERSONS + 1)]},
        413,
        "persons",
    ),
    (
        "too-many-trips",
        {**GOOD, "persons": [{"person_id": "p1", "trips": [TRIP] * (MAX_TRIPS + 1)}]},
        413,
        "persons[0].trips",
    ),
]

BADGE_CASES = [
    ("ids-missing", {}, 422, "person_ids"),
    ("ids-not-a-list", {"person_ids": "p1"}, 422, "person_ids"),
    ("id-int", {"person_ids": ["p1", 2]}, 422, "person_ids[1]"),
    ("id-empty", {"person_ids": [""]}, 422, "person_ids[0]"),
    (
        "too-many-ids",
        {"person_ids": [f"p{i}" for i in range(MAX_BADGE_IDS + 1)]},
        413,
        "person_ids",
    ),
]

RAW_CASES = [
    # (id, path, raw body, status, field)
    ("score-not-json", "/score", b"as_of=2021-10-20", 400, "body"),
    ("score-empty", "/score", b"", 400, "body"),
    ("score-truncated", "/score", json.dumps(GOOD).encode()[:-5], 400, "body"),
    ("score-not-utf8", "/score", b"\xff\xfe{}", 400, "body"),
    ("badge-not-json", "/badge", b"<person_ids/>", 400, "body"),
    ("badge-empty", "/badge", b"", 400, "body"),
]


def assert_problem(r, status: int, field: str) -> None:
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:300]}"
    assert r.headers["content-type"].startswith("application/json"), "errors answer in JSON"
    body = r.json()
    assert body["field"] == field, f"error should name {field!r}: {body}"
    assert body["error"], "error says what kind of problem"
    assert body["message"], "message says what went wrong"


def test_good_body_is_accepted(client):
    r = client.post("/score", json=GOOD)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("body", "status", "field"), [c[1:] for c in SCORE_CASES], ids=[c[0] for c in SCORE_CASES]
)
def test_bad_score_request(client, body, status, field):
    assert_problem(client.post("/score", json=body), status, field)


@pytest.mark.parametrize(
    ("body", "status", "field"), [c[1:] for c in BADGE_CASES], ids=[c[0] for c in BADGE_CASES]
)
def test_bad_badge_request(client, body, status, field):
    assert_problem(client.post("/badge", json=body), status, field)


@pytest.mark.parametrize(
    ("path", "raw", "status", "field"), [c[1:] for c in RAW_CASES], ids=[c[0] for c in RAW_CASES]
)
def test_body_that_is_not_json(client, path, raw, status, field):
    assert_problem(
        client.post(path, content=raw, headers={"Content-Type": "application/json"}), status, field
    )


def test_body_over_the_size_cap_is_refused_before_reading_it(client):
    big = b'{"person_ids": ["' + b"x" * (17 * 1024 * 1024) + b'"]}'
    assert_problem(client.post("/badge", content=big), 413, "body")


def test_validation_errors_list_every_bad_field_without_echoing_input(client):
    body = copy.deepcopy(GOOD)
    body["persons"][0]["trips"] = [{**TRIP, "direction": "sideways"}, {**TRIP, "mode": "plane"}]
    r = client.post("/score", json=body)
    assert r.status_code == 422
    fields = [e["field"] for e in r.json()["errors"]]
    assert fields == ["persons[0].trips[0].direction", "persons[0].trips[1].mode"]
    assert "sideways" not in r.text, "errors do not echo submitted values"
    assert "plane" not in r.text, "errors do not echo submitted values"


def test_wrong_content_type_with_a_json_body_is_still_json(client):
    r = client.post(
        "/badge", content=json.dumps({"person_ids": ["x"]}), headers={"Content-Type": "text/plain"}
    )
    assert r.status_code == 200, r.text


def test_get_on_an_api_route_is_not_allowed(client):
    assert client.get("/score").status_code == 405
