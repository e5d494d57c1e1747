"""The person's side on the trained model: the expected date and the recourse, made as trips.

Each proposal is rebuilt here from its days and pattern as ordinary trip mappings (the service's
input) and scored through `features_from_trips`: the promised decision must follow, and one day
less must not be enough (the proposal is the smallest of its kind)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commuter_badge.features.build import features_from_trips, trips_by_person
from commuter_badge.features.workdays import LIBRARY_CALENDAR
from commuter_badge.models.core.recourse import (
    Pattern,
    expected_badge_dates,
    local_day,
    recourse,
    usual_pattern,
)
from tests.model.conftest import SHANGHAI, trip

pytestmark = pytest.mark.slow


def as_trips(rows) -> list[dict]:
    return [
        {
            "ts": dt.datetime.fromtimestamp(t, SHANGHAI),
            "direction": d,
            "mode": m,
            "site_id": s,
            "region": r,
        }
        for t, d, m, s, r in rows
    ]


def commute(pattern: Pattern, days) -> list[dict]:
    return [
        trip(d, h, direction, pattern.mode, pattern.site_id, pattern.region)
        for d in days
        for h, direction in ((pattern.entry_hour, "in"), (pattern.exit_hour, "out"))
    ]


def badge(model, trips: list[dict], as_of: dt.date) -> bool:
    frame = features_from_trips([("p", trips)], as_of, model.meta.window_days)
    return bool(len(frame)) and bool(model.decide(model.predict_proba(frame))[0])


@pytest.fixture(scope="module")
def month(trained):
    """200 persons of the trained world, their trips in the window, and the model."""
    rows = trips_by_person(trained["world"] / "trips.parquet", trained["as_of"])
    picked = dict(sorted(rows.items())[:: max(1, len(rows) // 200)][:200])
    return trained["model"], picked, trained["as_of"]


def check_change(model, rows, change, as_of) -> None:
    trips = as_trips(rows)
    if change.kind == "add":
        changed = trips + commute(change.pattern, change.days)
        fewer = trips + commute(change.pattern, change.days[:-1])
    else:
        changed = [t for t in trips if t["ts"].date() not in change.days]
        fewer = [t for t in trips if t["ts"].date() not in change.days[:-1]]
    holder = change.kind == "remove"
    assert badge(model, changed, as_of) is not holder, f"{change} did not flip the decision"
    assert badge(model, fewer, as_of) is holder, f"{change} is not the smallest of its kind"
    assert badge(model, trips, as_of) is holder, "recourse misread the person's decision"


def test_recourse_made_as_trips_flips_the_decision(month):
    # Given 200 persons of a month, holders and not,
    model, persons, as_of = month
    # when each gets the smallest change that would flip their decision,
    changes = recourse(model, persons, as_of)
    found = {pid: c for pid, c in changes.items() if c is not None}
    kinds = {c.kind for c in found.values()}
    assert kinds == {"add", "remove"}, f"expected changes of both kinds, got {kinds}"
    # then each, made as trips, flips it, and one day fewer does not.
    for pid, change in found.items():
        check_change(model, persons[pid], change, as_of)


def test_expected_date_gives_the_badge_on_that_date_and_not_before(month):
    # Given the persons of the month without a badge,
    model, persons, as_of = month
    denied = {p: r for p, r in persons.items() if not badge(model, as_trips(r), as_of)}
    # when each keeps their own pattern on the coming working days,
    dates = expected_badge_dates(model, denied, as_of)
    dated = {p: d for p, d in dates.items() if d is not None}
    assert dated, "no denied person of 200 would get the badge by commuting on"
    for pid, day in dated.items():
        pattern = usual_pattern(denied[pid], as_of, model.meta.window_days)
        trips = as_trips(denied[pid])

        def kept_up_until(d, pattern=pattern, trips=trips):
            days = [as_of + dt.timedelta(k) for k in range((d - as_of).days)]
            return trips + commute(pattern, [x for x in days if LIBRARY_CALENDAR.is_workday(x)])

        # then scored on that date they hold it, and the day before they do not.
        assert badge(model, kept_up_until(day), day), f"{pid}: no badge on {day}"
        before = day - dt.timedelta(days=1)
        assert not badge(model, kept_up_until(before), before), f"{pid}: badge before {day}"


HOURS = st.floats(min_value=5.5, max_value=9.5).map(lambda h: round(h, 2))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kept=st.lists(st.booleans(), min_size=28, max_size=28),
    entry=HOURS,
    stay=st.floats(min_value=7.0, max_value=11.0),
    mode=st.sampled_from(["car", "rail", "bus"]),
)
def test_any_commuting_person_recourse_holds_as_trips(trained, kept, entry, stay, mode):
    # Given a person commuting on an arbitrary subset of the window's working days,
    model, as_of = trained["model"], trained["as_of"]
    pattern = Pattern(mode, "CK-G1-XIJI", "langfang-xianghe", entry, entry + stay)
    window = [as_of - dt.timedelta(days=28 - i) for i in range(28)]
    days = [d for d, k in zip(window, kept, strict=True) if k and LIBRARY_CALENDAR.is_workday(d)]
    rows = [
        (int(t["ts"].timestamp()), t["direction"], t["mode"], t["site_id"], t["region"])
        for t in commute(pattern, days)
    ]
    # when the smallest flipping change is proposed,
    change = recourse(model, {"p": rows}, as_of)["p"]
    # then, made as trips, it flips the decision (and its days are working days of the window).
    if change is not None:
        assert all(LIBRARY_CALENDAR.is_workday(d) and window[0] <= d < as_of for d in change.days)
        active = {local_day(r[0]) for r in rows}
        assert all((d in active) is (change.kind == "remove") for d in change.days)
        check_change(model, rows, change, as_of)


def test_score_path_writes_the_person_side_in_chinese(trained, tmp_path):
    # Given a small month of the trained model's kind of world,
    from commuter_badge.features.build import build_features
    from commuter_badge.models.runs.score import OUTPUT_SCHEMA, score_path
    from commuter_badge.simulate.world import simulate_world, write_world

    write_world(simulate_world(120, trained["as_of"], seed=31), tmp_path)
    model, trips = trained["model"], tmp_path / "trips.parquet"
    # when it is scored with the person's side asked for, in Chinese,
    got = score_path(
        trips, trained["as_of"], model, include=("badge_expected_on", "recourse"), lang="zh"
    )
    plain = score_path(trips, trained["as_of"], model)
    # then the plain table is the declared one, days_since_first read from the features,
    assert list(plain.columns) == OUTPUT_SCHEMA.names
    features = build_features(trips, trained["as_of"])
    assert plain["days_since_first"].tolist() == features["days_since_first"].tolist()
    # and the person's side adds its two columns without changing the others;
    assert list(got.columns) == [*OUTPUT_SCHEMA.names, "badge_expected_on", "recourse"]
    assert got[plain.columns].equals(plain)
    # holders get no date, and every sentence is Chinese.
    assert got.loc[got["badge"], "badge_expected_on"].isna().all()
    assert got["badge_expected_on"].notna().any(), "no person without a badge got a date"
    assert all("通勤标识" in text or "窗口期" in text for text in got["recourse"])
