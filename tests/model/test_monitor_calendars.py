"""The monitor across calendars, on simulated months (issue 30 item 5): a model trained on an
October window (National Day: 17 working days) judges November (20): the unchanged population does
not alarm, a population moved towards daily hospital visitors, carers and drivers with a kind the
model never saw (treatment escorts) does, with margin. The pure core, as `commuter train` fits
and `commuter monitor` judges (no store needed)."""

from __future__ import annotations

import datetime as dt

import pytest

from commuter_badge.features.build import build_features
from commuter_badge.features.workdays import LIBRARY_CALENDAR
from commuter_badge.models.core.config import TrainConfig
from commuter_badge.models.core.data import labelled_features
from commuter_badge.models.core.fitting import fit_and_evaluate
from commuter_badge.models.core.monitor import monitor
from commuter_badge.models.core.reference import build_reference

OCTOBER, NOVEMBER = dt.date(2021, 10, 20), dt.date(2021, 11, 20)
PERSONS = 20_000  # as the limits were chosen at; at 12,000 the reference holds 1,700 persons


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    from commuter_badge.simulate import UNSEEN_KINDS, DriftSettings, simulate_months, write_months

    root = tmp_path_factory.mktemp("calendars")
    escort = next(k for k in UNSEEN_KINDS if k.name == "treatment_escort")
    moved = DriftSettings(
        mix={"hospital_carer": 2.5, "ride_hail": 2.0, "shuttle_driver": 2.0}, new_kinds=(escort,)
    )
    base = write_months(simulate_months(PERSONS, [OCTOBER, NOVEMBER], 11), root / "base")
    shifted = write_months(
        simulate_months(PERSONS, [OCTOBER, NOVEMBER], 11, drift=moved), root / "moved"
    )
    config = TrainConfig(seed=0)
    first = base[OCTOBER]
    fitted = fit_and_evaluate(labelled_features(first["trips"], first["labels"], OCTOBER), config)
    model = fitted.model
    reference = build_reference(
        fitted.val, model.threshold, LIBRARY_CALENDAR.window_calendar(OCTOBER, config.window_days)
    )
    out = {}
    for name, month in (("unchanged", base[NOVEMBER]), ("moved", shifted[NOVEMBER])):
        features = build_features(month["trips"], NOVEMBER, config.window_days)
        out[name] = monitor(
            reference,
            features,
            model.predict_proba(features),
            threshold=model.threshold,
            target_fpr=config.target_fpr,
            calendar=LIBRARY_CALENDAR.window_calendar(NOVEMBER, config.window_days),
        )
    return out


def test_an_unchanged_month_under_another_calendar_does_not_alarm(judged):
    # Given an October model and the same population a month on (National Day in October only),
    result = judged["unchanged"]
    # then the windows' calendars differ, features are still compared (day counts per working
    # day), and nothing alarms: every check and every compared feature has room left.
    assert not result.calendar["same"], result.calendar
    assert any(f["compared_as"] == "per_day" and f["alarms"] for f in result.features)
    assert not result.alarm, result.alarm_reasons
    assert all(c["band_margin"] > 0 for c in result.checks), result.checks
    assert all(f["margin"] > 0 for f in result.features if f["alarms"])


def test_a_moved_month_under_another_calendar_alarms_with_margin(judged):
    # Given the same October model and a November moved towards carers, drivers and escorts,
    result = judged["moved"]
    # then it alarms, and some check or compared feature is past its limit by a clear margin
    # (a fifth of the limit at least), each reason saying by how much.
    assert result.alarm, "a moved month under another calendar went unnoticed"
    relative = [c["band_margin"] / c["limit"] for c in result.checks] + [
        f["margin"] / f["limit"] for f in result.features if f["alarms"]
    ]
    assert min(relative) < -0.2, sorted(relative)[:3]
    assert all("margin -" in r for r in result.alarm_reasons), result.alarm_reasons
    metrics = result.metrics()
    score = next(c for c in result.checks if c["check"] == "score_psi")
    assert metrics["score_psi.margin"] == pytest.approx(score["limit"] - result.score_psi)
    assert {
        "estimated_fpr.band_low",
        "estimated_fpr.band_high",
        "badge_share_ratio.band_margin",
    } <= set(metrics)
