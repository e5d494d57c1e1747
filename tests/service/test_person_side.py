"""/score's person's side over real HTTP: include, lang, Accept-Language (docs/contract.md §3)."""

from __future__ import annotations

import datetime as dt

import pytest

from commuter_badge.features.definitions import DESCRIPTIONS
from commuter_badge.features.workdays import LIBRARY_CALENDAR
from commuter_badge.models.core.recourse import apply_change, local_day, usual_pattern
from tests.model.conftest import SHANGHAI

from .conftest import AS_OF

pytestmark = pytest.mark.service
SIDE = ("badge_expected_on", "recourse")


def rows_of(trips: list[dict]) -> list[tuple]:
    return [
        (
            int(dt.datetime.fromisoformat(t["ts"]).timestamp()),
            t["direction"],
            t["mode"],
            t["site_id"],
            t.get("region") or "",
        )
        for t in trips
    ]


def as_trips(rows) -> list[dict]:
    return [
        {
            "ts": dt.datetime.fromtimestamp(t, SHANGHAI).isoformat(),
            "direction": d,
            "mode": m,
            "site_id": s,
            "region": r,
        }
        for t, d, m, s, r in rows
    ]


def score(client, persons: dict[str, list[dict]], as_of=AS_OF, **extra):
    headers = extra.pop("headers", {})
    body = {
        "as_of": as_of.isoformat(),
        "persons": [{"person_id": p, "trips": t} for p, t in persons.items()],
        **extra,
    }
    r = client.post("/score", json=body, headers=headers)
    assert r.status_code == 200, r.text
    return {x["person_id"]: x for x in r.json()["results"]}


@pytest.fixture(scope="module")
def sample(world):
    """40 persons of the served world, denied ones and holders."""
    ids = sorted(world.batch["person_id"])[::50][:40]
    return {p: world.trips_of(p) for p in ids}


def test_without_include_the_answer_is_as_before(client, sample):
    got = score(client, sample)
    for answer in got.values():
        assert not set(SIDE) & set(answer), f"unasked fields answered: {sorted(answer)}"
        for reason in answer["reasons"]:
            if reason["value"] != 0 or reason["feature"] != "crossings":
                assert reason["description"] == DESCRIPTIONS[reason["feature"]]


def test_the_expected_date_and_recourse_hold_when_made_as_trips(client, sample):
    # Given persons scored with the person's side asked for,
    got = score(client, sample, include=list(SIDE), lang="en")
    dated = changed = 0
    for pid, answer in got.items():
        rows = rows_of(sample[pid])
        pattern = usual_pattern(rows, AS_OF, 28)
        day = answer["badge_expected_on"]
        assert day is None or not answer["badge"], "a holder gets no expected date"
        if day is not None:  # then commuting on until that date gives the badge on it
            day = dt.date.fromisoformat(day)
            coming = [AS_OF + dt.timedelta(k) for k in range((day - AS_OF).days)]
            kept = apply_change(
                "add", [d for d in coming if LIBRARY_CALENDAR.is_workday(d)], pattern, rows
            )
            later = score(client, {pid: as_trips(kept)}, as_of=day)[pid]
            assert later["badge"], f"{pid}: no badge on {day} after commuting on"
            dated += 1
        for change in answer["recourse"]:  # and each change, made as trips, flips the decision
            holder = change["kind"] == "remove"
            active = {local_day(r[0]) for r in rows}
            window = [AS_OF - dt.timedelta(k) for k in range(1, 29)]
            days = [d for d in window if LIBRARY_CALENDAR.is_workday(d) and (d in active) is holder]
            made = apply_change(change["kind"], days[: change["working_days"]], pattern, rows)
            now = score(client, {pid: as_trips(made)})[pid]
            assert now["badge"] is change["badge"] is not answer["badge"], (pid, change)
            changed += 1
    assert dated, f"no expected date among {len(got)} persons"
    assert changed, f"no change among {len(got)} persons"


def test_lang_and_accept_language_give_chinese(client, sample):
    by_body = score(client, sample, include=["recourse"], lang="zh")
    by_header = score(client, sample, include=["recourse"], headers={"Accept-Language": "zh-CN"})
    assert by_body == by_header, "lang zh and Accept-Language zh-CN answer alike"
    for answer in by_body.values():
        assert all("\u4e00" <= r["description"][0] <= "\u9fff" for r in answer["reasons"])
        assert all("通勤标识" in c["text"] for c in answer["recourse"])
    english = score(client, sample, lang="en", headers={"Accept-Language": "zh"})
    assert all(
        r["description"] in DESCRIPTIONS.values() or "no boundary crossings" in r["description"]
        for a in english.values()
        for r in a["reasons"]
    ), "the body's lang wins over Accept-Language"


@pytest.mark.parametrize(
    ("extra", "field"),
    [({"include": ["when"]}, "include[0]"), ({"lang": "fr"}, "lang")],
)
def test_bad_include_or_lang_is_a_422_naming_the_field(client, extra, field):
    r = client.post("/score", json={"as_of": AS_OF.isoformat(), "persons": [], **extra})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field, r.json()
