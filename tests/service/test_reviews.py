"""The manual route over real HTTP: a `commuter serve` with two workers, reviewer tokens and a review
store (SQLite, and PostgreSQL on a real cluster), against the session's simulated world.
"""

from __future__ import annotations

import datetime as dt
import re
import stat
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from commuter_badge.serving.review_routes import COUNTS_EVERY_SECONDS
from commuter_badge.stores.reviews import (
    ReviewRequest,
    ReviewStore,
    a_year_after,
    latest_as_of,
    local_today,
)
from tests.postgres import fresh_database
from tests.service.conftest import (
    AS_OF,
    BIN,
    TOKENS,
    Server,
    World,
    start_server,
    stop_server,
    wait_until,
)

pytestmark = pytest.mark.service

REVIEWER_TOKENS = ("reviewer-token-gamma", "reviewer-token-delta")
TODAY = local_today()
REASON = "residence and employment proof checked at the community office"


def review(person_id: str, decision: str = "grant", **extra) -> dict:
    return {
        "person_id": person_id,
        "decision": decision,
        "reason": REASON,
        "evidence": ["residence_permit", "employment_contract"],
        "reviewer": "xianghe-community-07",
        "valid_until": (TODAY + dt.timedelta(days=60)).isoformat(),
        **extra,
    }


def reviewed_env(world: World, root: Path, reviews_url: str) -> dict[str, str]:
    return {
        **world.env,
        "COMMUTER_REVIEWER_TOKENS": ",".join(REVIEWER_TOKENS),
        "COMMUTER_REVIEWS": reviews_url,
    }


@pytest.fixture(scope="module")
def reviews_db(world: World) -> Path:
    return world.root / "reviews-http.db"


@pytest.fixture(scope="module")
def reviewed(world: World, reviews_db: Path) -> Iterator[Server]:
    env = reviewed_env(world, world.root, f"sqlite:///{reviews_db}")
    srv = start_server(env, world.root, workers=2)
    try:
        wait_until(srv, "/readyz", 200)
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture
def reviewer(reviewed: Server) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {REVIEWER_TOKENS[1]}"}
    with httpx.Client(base_url=reviewed.url, headers=headers, timeout=60) as c:
        yield c


@pytest.fixture
def issuer(reviewed: Server) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {TOKENS[0]}"}
    with httpx.Client(base_url=reviewed.url, headers=headers, timeout=60) as c:
        yield c


def badge_of(issuer: httpx.Client, *ids: str) -> list[dict]:
    r = issuer.post("/badge", json={"person_ids": list(ids)})
    assert r.status_code == 200, r.text
    return r.json()["results"]


# --- who may do what ----------------------------------------------------------------------------


def test_review_endpoints_need_a_reviewer_token(reviewed: Server, issuer: httpx.Client):
    body = review("p-auth")
    r = httpx.post(reviewed.url + "/reviews", json=body, timeout=30)
    assert r.status_code == 401, "no token"
    r = httpx.get(reviewed.url + "/reviews/p-auth", timeout=30)
    assert r.status_code == 401, "no token"
    r = httpx.post(
        reviewed.url + "/reviews", json=body, headers={"Authorization": "Bearer nope"}, timeout=30
    )
    assert r.status_code == 401, "unknown token"
    r = issuer.post("/reviews", json=body)
    assert r.status_code == 403, "an issuer token may not record reviews"
    assert r.json()["error"] == "forbidden"
    assert issuer.get("/reviews/p-auth").status_code == 403, "nor read them"


def test_reviewer_token_is_not_an_issuer_token(reviewer: httpx.Client):
    r = reviewer.post("/badge", json={"person_ids": ["p1"]})
    assert r.status_code == 403, r.text


# --- recording and reading ------------------------------------------------------------------------


def test_post_returns_201_and_get_lists_oldest_first(reviewer: httpx.Client):
    first = reviewer.post("/reviews", json=review("p-hist", "grant"))
    assert first.status_code == 201, first.text
    assert set(first.json()) == {"case_id", "recorded_at"}
    second = reviewer.post("/reviews", json=review("p-hist", "revoke", evidence=["other"]))
    assert second.status_code == 201, second.text
    r = reviewer.get("/reviews/p-hist")
    assert r.status_code == 200, r.text
    cases = [x["case_id"] for x in r.json()["reviews"]]
    assert cases == [first.json()["case_id"], second.json()["case_id"]], "oldest first"
    assert [x["decision"] for x in r.json()["reviews"]] == ["grant", "revoke"]
    assert reviewer.get("/reviews/nobody-reviewed").json()["reviews"] == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"decision": "approve"}, "decision"),
        ({"evidence": ["passport_scan"]}, "evidence[0]"),
        ({"reason": "x" * 501}, "reason"),
        ({"reviewer": ""}, "reviewer"),
        ({"valid_until": (TODAY - dt.timedelta(days=1)).isoformat()}, "valid_until"),
        ({"valid_until": (a_year_after(TODAY) + dt.timedelta(days=1)).isoformat()}, "valid_until"),
        ({"valid_until": "soon"}, "valid_until"),
        ({"scan": "data:image/png;base64,AAAA"}, "scan"),
    ],
)
def test_bad_review_gets_4xx_naming_the_field(reviewer: httpx.Client, change, field):
    r = reviewer.post("/reviews", json=review("p-bad", **change))
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["field"] == field, r.json()


def test_wrong_method_and_body_are_json_errors(reviewer: httpx.Client):
    assert reviewer.get("/reviews").status_code == 405
    assert reviewer.delete("/reviews/p-hist").status_code == 405
    r = reviewer.post(
        "/reviews", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["field"] == "body"


# --- the reviewer's view of a person: reviews and the person's side ---------------------------------


def view_of(reviewer: httpx.Client, world: World, pid: str, **extra) -> httpx.Response:
    headers = extra.pop("headers", {})
    body = {"as_of": AS_OF.isoformat(), "person_id": pid, "trips": world.trips_of(pid), **extra}
    return reviewer.post("/reviews/person", json=body, headers=headers)


def test_a_reviewer_sees_the_persons_side_as_score_gives_it(
    world: World, reviewer: httpx.Client, issuer: httpx.Client
):
    # Given denied persons of the served world, and the person's side /score gives them in Chinese,
    # (not the first two in batch order: the precedence test below reviews those)
    denied = sorted(world.batch.loc[~world.batch["badge"], "person_id"].iloc[2:])[::7][:12]
    body = {
        "as_of": AS_OF.isoformat(),
        "persons": [{"person_id": p, "trips": world.trips_of(p)} for p in denied],
        "include": ["badge_expected_on", "recourse"],
        "lang": "zh",
    }
    r = issuer.post("/score", json=body)
    assert r.status_code == 200, r.text
    scored = {x["person_id"]: x for x in r.json()["results"]}
    dated = [p for p in denied if scored[p]["badge_expected_on"] is not None]
    assert dated, f"no expected date among {len(denied)} denied persons"
    pid = dated[0]
    case = reviewer.post("/reviews", json=review(pid, "grant")).json()["case_id"]
    # when a reviewer looks at one of them with their crossings (both parts by default),
    r = view_of(reviewer, world, pid, lang="zh")
    # then the view holds their reviews and the same answer, date and recourse as /score
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["person_id"] == pid
    assert [x["case_id"] for x in view["reviews"]][-1:] == [case]
    assert view["score"] == scored[pid], "the reviewer sees what /score says"
    assert view["model_version"] == world.model_version
    assert all("通勤标识" in c["text"] for c in view["score"]["recourse"])
    # and Accept-Language picks the language when the body names none
    english = view_of(reviewer, world, pid, headers={"Accept-Language": "en"}).json()
    assert english["score"]["badge_expected_on"] == scored[pid]["badge_expected_on"]
    assert all("badge" in c["text"] for c in english["score"]["recourse"])


def test_the_view_gives_only_what_include_asks_and_names_bad_fields(
    world: World, reviewer: httpx.Client, issuer: httpx.Client
):
    pid = sorted(world.batch.loc[~world.batch["badge"], "person_id"])[0]
    only = view_of(reviewer, world, pid, include=["recourse"]).json()["score"]
    assert only["badge_expected_on"] is None, "not asked for"
    assert isinstance(only["recourse"], list)
    assert view_of(reviewer, world, "never-reviewed-x").json()["reviews"] == []
    r = view_of(reviewer, world, pid, lang="fr")
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "lang"
    r = issuer.post("/reviews/person", json={"as_of": AS_OF.isoformat(), "person_id": pid})
    assert r.status_code == 403, "an issuer token may not read reviews"


# --- precedence in /badge -------------------------------------------------------------------------


def test_reviews_win_over_the_batch_and_say_so(
    world: World, reviewer: httpx.Client, issuer: httpx.Client
):
    no_badge = world.batch.loc[~world.batch["badge"], "person_id"].iloc[0]
    holder = world.batch.loc[world.batch["badge"], "person_id"].iloc[0]
    untouched = world.batch.loc[~world.batch["badge"], "person_id"].iloc[1]
    unscored = "missed-commuter-without-crossings"
    before = {r["person_id"]: r for r in badge_of(issuer, no_badge, holder, untouched, unscored)}
    assert before[no_badge]["source"] == "model"
    assert before[unscored]["found"] is False
    granted = reviewer.post("/reviews", json=review(no_badge, "grant")).json()["case_id"]
    revoked = reviewer.post("/reviews", json=review(holder, "revoke")).json()["case_id"]
    reviewer.post("/reviews", json=review(unscored, "grant"))
    for _ in range(4):  # both workers answer the same
        after = {r["person_id"]: r for r in badge_of(issuer, no_badge, holder, untouched, unscored)}
        assert after[no_badge]["badge"] is True
        assert after[no_badge]["source"] == "review"
        assert after[no_badge]["case_id"] == granted
        assert after[no_badge]["valid_until"] == (TODAY + dt.timedelta(days=60)).isoformat()
        assert after[no_badge]["commuter_probability"] == before[no_badge]["commuter_probability"]
        assert after[holder]["badge"] is False
        assert after[holder]["case_id"] == revoked
        assert after[untouched] == before[untouched], "no review, the model's answer"
        assert after[unscored]["found"] is True, "a review without a batch decision is found"
        assert after[unscored]["source"] == "review"
        assert after[unscored]["model_version"] is None


def test_a_correction_supersedes_and_a_new_batch_hides_nothing(
    world: World, reviewer: httpx.Client, issuer: httpx.Client, reviewed: Server
):
    pid = world.batch.loc[~world.batch["badge"], "person_id"].iloc[5]
    reviewer.post("/reviews", json=review(pid, "grant"))
    correction = reviewer.post("/reviews", json=review(pid, "revoke", evidence=["other"])).json()
    assert badge_of(issuer, pid)[0]["case_id"] == correction["case_id"], "the latest wins"
    assert badge_of(issuer, pid)[0]["badge"] is False
    scores = world.root / "rescored.parquet"
    done = subprocess.run(
        [str(BIN / "commuter"), "score", "--trips", str(world.root / "world" / "trips.parquet"),
         "--as-of", "2021-10-20", "--out", str(scores), "--publish"],
        env=reviewed.env, cwd=world.root, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert re.search(r"\d+ decisions? overridden by reviews in force", done.stdout), done.stdout
    answer = badge_of(issuer, pid)[0]
    assert answer["source"] == "review", "a republished batch never hides a valid review"
    assert answer["case_id"] == correction["case_id"]


def test_metrics_count_reviews_by_decision(reviewer: httpx.Client, reviewed: Server):
    reviewer.post("/reviews", json=review("p-metrics", "revoke"))
    time.sleep(COUNTS_EVERY_SECONDS + 0.5)  # the stored gauge is refreshed at most this often
    reviewer.post("/reviews", json=review("p-metrics", "revoke"))
    text = httpx.get(reviewed.url + "/metrics", timeout=30).text
    grants = re.search(r'commuter_reviews_recorded_total\{decision="grant"[^}]*\} (\S+)', text)
    revokes = re.search(r'commuter_reviews_recorded_total\{decision="revoke"[^}]*\} (\S+)', text)
    assert revokes, text[-2000:]
    assert float(revokes.group(1)) >= 1
    assert grants is None or float(grants.group(1)) >= 0
    assert re.search(r'commuter_reviews_stored\{decision="revoke"[^}]*\} [1-9]', text), "stored"


def test_store_is_owner_only_chained_and_nothing_leaks_to_the_log(
    reviewer: httpx.Client, reviewed: Server, reviews_db: Path
):
    reviewer.post("/reviews", json=review("p-private", "grant"))
    for p in reviews_db.parent.glob(reviews_db.name + "*"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    report = ReviewStore(f"sqlite:///{reviews_db}").verify()
    assert report.ok, report.problem
    logs = reviewed.logs()
    assert REASON not in logs, "review bodies are never logged"
    for token in (*REVIEWER_TOKENS, *TOKENS):
        assert token not in logs, "tokens are never logged"


# --- issue 27: control characters, label dates, idempotency, two Authorization headers -----------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"reason": "checked\x1b[8m hidden"}, "reason"),
        ({"reason": "one\r\ntwo"}, "reason"),
        ({"reason": "abc\u202edef"}, "reason"),
        ({"reviewer": "office\x00"}, "reviewer"),
        ({"person_id": "p\x1b[2J"}, "person_id"),
        ({"person_id": "p\u202e1"}, "person_id"),
        ({"as_of": "1900-01-01"}, "as_of"),
        ({"as_of": "9999-12-31"}, "as_of"),
        ({"as_of": (latest_as_of(TODAY) + dt.timedelta(days=1)).isoformat()}, "as_of"),
        (
            {
                "as_of": (TODAY + dt.timedelta(days=20)).isoformat(),
                "valid_until": (TODAY + dt.timedelta(days=10)).isoformat(),
            },
            "valid_until",
        ),
    ],
)
def test_control_characters_and_odd_dates_get_422_naming_the_field(
    reviewer: httpx.Client, change, field
):
    r = reviewer.post("/reviews", json={**review("p-ctl"), **change})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field, r.json()
    assert "\x1b" not in r.text


def test_person_ids_with_control_characters_are_refused_everywhere(
    reviewer: httpx.Client, issuer: httpx.Client
):
    r = issuer.post("/badge", json={"person_ids": ["p1", "p\x1b[8m"]})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "person_ids[1]"
    body = {"as_of": "2021-10-20", "persons": [{"person_id": "p\u202e1", "trips": []}]}
    r = issuer.post("/score", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "persons[0].person_id"
    r = reviewer.get("/reviews/p%1B%5B8m1")
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "person_id"
    # Printable ids of any script stay valid.
    assert issuer.post("/badge", json={"person_ids": ["北京 ü-1"]}).status_code == 200
    assert reviewer.get("/reviews/北京 ü-1").status_code == 200


def test_history_escapes_control_characters_of_old_rows(reviewer: httpx.Client, reviews_db: Path):
    store = ReviewStore(f"sqlite:///{reviews_db}")
    old = ReviewRequest.model_construct(  # recorded before the rule, bypassing validation
        person_id="p-old-ctl",
        decision="grant",
        reason="hidden\x1b[8m\u202e\x9b",
        evidence=["rail_pass"],
        reviewer="office-1",
        valid_until=TODAY,
        as_of=None,
    )
    store.add(old)
    store.close()
    r = reviewer.get("/reviews/p-old-ctl")
    assert r.status_code == 200, r.text
    for raw in (b"\x1b", "\u202e".encode(), "\x9b".encode()):
        assert raw not in r.content, r.content
    assert r.json()["reviews"][0]["reason"] == old.reason, "the JSON decodes to what is stored"


def test_a_replay_with_the_same_idempotency_key_answers_the_first_result(reviewer: httpx.Client):
    key = {"Idempotency-Key": "5f0b7c9e-idem-0001"}
    first = reviewer.post("/reviews", json=review("p-idem"), headers=key)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = reviewer.post("/reviews", json=review("p-idem"), headers=key)
    assert again.status_code == 201, again.text
    assert again.json() == first.json(), "same case_id and recorded_at"
    assert again.headers["Idempotent-Replayed"] == "true"
    other = reviewer.post("/reviews", json=review("p-idem", "revoke"), headers=key)
    assert other.status_code == 422, other.text
    assert other.json()["field"] == "Idempotency-Key"
    assert "different review" in other.json()["message"]
    bad = reviewer.post("/reviews", json=review("p-idem"), headers={"Idempotency-Key": "k 1"})
    assert bad.status_code == 422, bad.text
    assert bad.json()["field"] == "Idempotency-Key"
    two = reviewer.post(
        "/reviews",
        json=review("p-idem"),
        headers=[("Idempotency-Key", "5f0b7c9e-idem-0001"), ("Idempotency-Key", "other-key-02")],
    )
    assert two.status_code == 400, two.text
    assert two.json()["field"] == "Idempotency-Key"
    history = reviewer.get("/reviews/p-idem").json()["reviews"]
    assert [x["case_id"] for x in history] == [first.json()["case_id"]], "stored once"


def test_concurrent_replays_are_stored_once(reviewer: httpx.Client):
    key = {"Idempotency-Key": "5f0b7c9e-idem-concurrent"}

    def post(_: int) -> httpx.Response:
        return reviewer.post("/reviews", json=review("p-idem-many"), headers=key)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(post, range(32)))
    assert {a.status_code for a in answers} == {201}, [a.text for a in answers]
    assert len({a.json()["case_id"] for a in answers}) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 31
    assert len(reviewer.get("/reviews/p-idem-many").json()["reviews"]) == 1


def test_two_authorization_headers_are_refused(reviewed: Server):
    reviewer_h = ("Authorization", f"Bearer {REVIEWER_TOKENS[0]}")
    issuer_h = ("Authorization", f"Bearer {TOKENS[0]}")
    calls = [
        ("POST", "/reviews", review("p-two-auth")),
        ("GET", "/reviews/p-two-auth", None),
        ("POST", "/badge", {"person_ids": ["p1"]}),
        ("POST", "/score", {"as_of": "2021-10-20", "persons": []}),
    ]
    for method, path, body in calls:
        for headers in ([reviewer_h, issuer_h], [issuer_h, reviewer_h], [issuer_h, issuer_h]):
            r = httpx.request(method, reviewed.url + path, json=body, headers=headers, timeout=30)
            assert r.status_code == 400, (method, path, r.status_code, r.text)
            assert r.json()["field"] == "Authorization", r.json()
    headers = {"Authorization": f"Bearer {REVIEWER_TOKENS[0]}"}
    history = httpx.get(reviewed.url + "/reviews/p-two-auth", headers=headers, timeout=30)
    assert history.json()["reviews"] == [], "nothing recorded"
    assert httpx.get(reviewed.url + "/healthz", headers=[reviewer_h, issuer_h]).status_code == 200


def test_the_openapi_document_gives_the_date_ranges_and_the_idempotency_key(reviewed: Server):
    doc = httpx.get(reviewed.url + "/docs.json", timeout=30).json()
    fields = doc["components"]["schemas"]["ReviewRequest"]["properties"]
    assert "2004-01-01" in fields["as_of"]["description"], fields["as_of"]
    assert "31 days after today" in fields["as_of"]["description"]
    assert "a year after today" in fields["valid_until"]["description"]
    assert "not before as_of" in fields["valid_until"]["description"]
    parameters = doc["paths"]["/reviews"]["post"]["parameters"]
    assert [(p["name"], p["in"]) for p in parameters] == [("Idempotency-Key", "header")]


# --- PostgreSQL behind the service ----------------------------------------------------------------


def test_service_on_postgresql(world: World, tmp_path: Path, shared_postgres):
    url = fresh_database(shared_postgres, "reviews_service")
    srv = start_server(reviewed_env(world, tmp_path, url), world.root, workers=2)
    try:
        wait_until(srv, "/readyz", 200)
        headers = {"Authorization": f"Bearer {REVIEWER_TOKENS[0]}"}
        pid = world.batch.loc[~world.batch["badge"], "person_id"].iloc[7]
        headers["Idempotency-Key"] = "pg-idempotency-0001"
        r = httpx.post(srv.url + "/reviews", json=review(pid), headers=headers, timeout=30)
        assert r.status_code == 201, r.text
        with ThreadPoolExecutor(8) as pool:  # retries racing each other, on PostgreSQL
            replays = list(
                pool.map(
                    lambda _: httpx.post(
                        srv.url + "/reviews", json=review(pid), headers=headers, timeout=30
                    ),
                    range(16),
                )
            )
        assert {x.status_code for x in replays} == {201}, [x.text for x in replays]
        assert {x.json()["case_id"] for x in replays} == {r.json()["case_id"]}
        conflict = httpx.post(
            srv.url + "/reviews", json=review(pid, "revoke"), headers=headers, timeout=30
        )
        assert conflict.status_code == 422, conflict.text
        history = httpx.get(srv.url + f"/reviews/{pid}", headers=headers, timeout=30).json()
        assert len(history["reviews"]) == 1, "stored once"
        issuer_headers = {"Authorization": f"Bearer {TOKENS[0]}"}
        answer = httpx.post(
            srv.url + "/badge", json={"person_ids": [pid]}, headers=issuer_headers, timeout=30
        ).json()["results"][0]
        assert answer["source"] == "review"
        assert answer["case_id"] == r.json()["case_id"]
        assert (
            shared_postgres.psql("SELECT count(*) FROM pg_database WHERE datname='reviews_service'")
            == "1"
        )
    finally:
        stop_server(srv)
    assert ReviewStore(url).verify().ok
