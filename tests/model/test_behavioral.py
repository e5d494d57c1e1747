"""Behavioural tests of the trained model: minimum functionality, direction, invariance."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from commuter_badge.features.build import features_from_trips
from commuter_badge.features.workdays import LIBRARY_CALENDAR
from tests.model.conftest import trip

pytestmark = pytest.mark.slow
WINDOW = [dt.date(2021, 9, 22) + dt.timedelta(days=i) for i in range(28)]  # as_of 2021-10-20
RNG = np.random.default_rng(7)


def proba(model, trips, as_of=dt.date(2021, 10, 20)):
    frame = features_from_trips([("p", trips)], as_of)
    return float(model.predict_proba(frame)[0])


def daily_commuter(days=WINDOW, attendance=0.95):
    trips = []
    for d in days:
        if LIBRARY_CALENDAR.is_workday(d) and RNG.random() < attendance:
            trips.append(trip(d, 6.5 + RNG.normal(0, 0.2), "in"))
            trips.append(trip(d, 19.0 + RNG.normal(0, 0.4), "out"))
    return trips


def test_daily_commuter_gets_the_badge(trained):
    # Given a Xianghe driver through Xiji at dawn on ~95% of working days (make-up days included),
    model = trained["model"]
    p = proba(model, daily_commuter())
    # then the calibrated probability clears the certified threshold.
    assert p >= model.threshold, f"daily commuter scored {p:.3f} < threshold {model.threshold:.3f}"


def test_weekly_friday_sunday_commuter_gets_the_badge(trained):
    # Given a man working in Tianjin who comes home Friday evening and leaves Sunday afternoon, every week,
    model = trained["model"]
    trips = []
    for d in WINDOW:
        if d.weekday() == 4:
            trips.append(trip(d, 19.5, "in", site="CK-G2-CAIYU", region="tianjin-wuqing"))
        if d.weekday() == 6:
            trips.append(trip(d, 16.0, "out", site="CK-G2-CAIYU", region="tianjin-wuqing"))
    p = proba(model, trips)
    assert p >= model.threshold, f"weekly commuter scored {p:.3f} < threshold {model.threshold:.3f}"


def test_truck_driver_with_many_irregular_crossings_does_not(trained):
    # Given a truck driver crossing 2-6 times a day at random hours through many checkpoints,
    model = trained["model"]
    sites = ["CK-G1-XIJI", "CK-G4-DUDIAN", "CK-G2-CAIYU", "CK-G45-YUFA", "CK-G102-BAIMIAO"]
    trips = []
    for d in WINDOW:
        if RNG.random() < 0.7:
            for _ in range(RNG.integers(1, 4)):
                h = RNG.uniform(0, 20)
                s = sites[RNG.integers(len(sites))]
                trips.append(trip(d, h, "in", site=s, region=""))
                trips.append(trip(d, min(h + RNG.uniform(1, 4), 23.9), "out", site=s, region=""))
    p = proba(model, trips)
    # then no badge, although he crosses far more often than any commuter.
    assert len(trips) > 60, "the driver should cross often"
    assert p < model.threshold, f"truck driver scored {p:.3f} >= threshold {model.threshold:.3f}"


def test_someone_who_stopped_commuting_three_weeks_ago_does_not(trained):
    model = trained["model"]
    trips = daily_commuter(days=WINDOW[:7], attendance=1.0)
    p = proba(model, trips)
    assert p < model.threshold, (
        f"stopped commuter scored {p:.3f} >= threshold {model.threshold:.3f}"
    )


def test_adding_working_day_round_trips_never_lowers_the_probability(trained):
    # Given a hybrid worker on Tuesdays and Thursdays,
    model = trained["model"]
    base = [
        t
        for d in WINDOW
        if LIBRARY_CALENDAR.is_workday(d) and d.weekday() in (1, 3)
        for t in (trip(d, 7.5, "in"), trip(d, 18.5, "out"))
    ]
    p0 = proba(model, base)
    # when regular round trips are added on more working days, one weekday at a time,
    for extra_day in (0, 2, 4):
        more = base + [
            t
            for d in WINDOW
            if LIBRARY_CALENDAR.is_workday(d) and d.weekday() == extra_day
            for t in (trip(d, 7.5, "in"), trip(d, 18.5, "out"))
        ]
        p1 = proba(model, more)
        # then the probability does not go down.
        assert p1 >= p0 - 0.02, (
            f"adding weekday {extra_day} round trips lowered {p0:.3f} -> {p1:.3f}"
        )
        base, p0 = more, p1


def test_time_zone_of_the_input_does_not_matter(trained):
    # Invariance: the same instants written in UTC give the same probability.
    model = trained["model"]
    trips = daily_commuter()
    utc = [{**t, "ts": t["ts"].astimezone(dt.UTC)} for t in trips]
    assert proba(model, trips) == pytest.approx(proba(model, utc), abs=1e-12), (
        "zone changed the score"
    )


def test_reasons_are_words_from_the_booster(trained):
    model = trained["model"]
    frame = features_from_trips([("p", daily_commuter())], dt.date(2021, 10, 20))
    reasons = model.reasons(frame, k=3)[0]
    assert len(reasons) == 3, "three reasons per person"
    assert all(r["description"] and " " in r["description"] for r in reasons), (
        "reasons are in words"
    )
    contrib = model.booster.predict(
        __import__("commuter_badge.features.build", fromlist=["model_matrix"]).model_matrix(frame),
        pred_contrib=True,
    )[0]
    margin = model.margin(frame)[0]
    assert contrib.sum() == pytest.approx(margin, abs=1e-6), (
        "TreeSHAP contributions sum to the margin"
    )
    top = max(abs(c) for c in contrib[:-1])
    assert abs(reasons[0]["contribution"]) == pytest.approx(top, abs=1e-3), (
        "largest contribution first"
    )
