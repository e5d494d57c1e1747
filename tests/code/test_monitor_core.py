"""The monitor's pure parts: PSI, CBPE estimates, the reference, the alarm reasons."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commuter_badge.features.definitions import FEATURE_NAMES
from commuter_badge.models.core import calendar_drift
from commuter_badge.models.core.monitor import Thresholds, cbpe, cbpe_band, check, monitor, psi
from commuter_badge.models.core.reference import (
    NoReferenceError,
    bin_counts,
    bin_edges,
    build_reference,
)
from commuter_badge.models.mlflow_edge import registry
from commuter_badge.models.mlflow_edge.reference_log import load_reference


def frame(n: int, rng: np.random.Generator, shift: float = 0.0) -> pd.DataFrame:
    data = {name: rng.poisson(5 + shift, n).astype("float64") for name in FEATURE_NAMES}
    data["workday_coverage"] = rng.beta(2 + shift, 2, n)
    out = pd.DataFrame(data)
    out["proba"] = 1 / (1 + np.exp(-(out["workday_coverage"] * 8 - 4)))
    out["is_commuter"] = rng.random(n) < out["proba"]
    out["badge"] = out["proba"] >= 0.8
    return out


@given(st.lists(st.integers(0, 500), min_size=2, max_size=12))
def test_psi_of_a_distribution_with_itself_is_zero(counts):
    if sum(counts) == 0:
        return
    assert psi(counts, counts) == pytest.approx(0.0, abs=1e-12), "identical bins: no drift"
    doubled = [2 * c for c in counts]
    assert psi(counts, doubled) == pytest.approx(0.0, abs=1e-12), "PSI compares shares, not counts"


@given(st.lists(st.floats(-1e6, 1e6) | st.just(float("nan")), min_size=1, max_size=200))
def test_bin_counts_count_every_value_once(values):
    values = np.asarray(values, dtype="float64")
    counts = bin_counts(values, bin_edges(values))
    assert sum(counts) == len(values), "each value in exactly one bin (missing ones last)"
    assert counts[-1] == int(np.isnan(values).sum()), "the last bin holds the missing values"


@settings(deadline=None, max_examples=20)
@given(st.integers(0, 10_000))
def test_cbpe_recovers_fpr_and_recall_when_calibrated(seed):
    """Labels drawn from the probabilities themselves: the estimate is close to the realised rates."""
    rng = np.random.default_rng(seed)
    p = rng.beta(0.5, 0.5, 50_000)
    y = rng.random(len(p)) < p
    badge = p >= 0.9
    est = cbpe(p, badge)
    assert est["estimated_fpr"] == pytest.approx(badge[~y].mean(), abs=0.004), est
    assert est["estimated_recall"] == pytest.approx(badge[y].mean(), abs=0.01), est


@settings(deadline=None, max_examples=20)
@given(st.sampled_from([0.005, 0.01, 0.02]), st.integers(0, 10_000))
def test_cbpe_under_label_noise_estimates_the_fpr_against_the_truth(rho, seed):
    """p calibrated on noisy labels: the plain estimate is the labels' FPR; under the version's
    noise rate it is the truth's, as its certificate counts."""
    rng = np.random.default_rng(seed)
    q = rng.beta(0.5, 0.5, 80_000)  # P(commuter | features)
    truth = rng.random(len(q)) < q
    label = np.where(rng.random(len(q)) < rho, ~truth, truth)
    p = (1 - rho) * q + rho * (1 - q)  # P(commuter label | features)
    badge = q >= 0.9
    est = cbpe(p, badge, label_noise=rho)
    assert est["estimated_fpr"] == pytest.approx(badge[~truth].mean(), abs=0.003), est
    assert est["estimated_fpr_labels"] == pytest.approx(badge[~label].mean(), abs=0.003), est
    assert cbpe(p, badge)["estimated_fpr"] == est["estimated_fpr_labels"], "rho 0: labels"


def test_monitor_quiet_on_the_same_population_and_loud_on_a_shifted_one():
    rng = np.random.default_rng(3)
    reference = build_reference(frame(8_000, rng), threshold=0.8)
    same, moved = frame(8_000, rng), frame(8_000, rng, shift=3.0)
    quiet = monitor(reference, same, same["proba"], threshold=0.8, target_fpr=0.2)
    loud = monitor(reference, moved, moved["proba"], threshold=0.8, target_fpr=0.2)
    assert not quiet.alarm, f"same population, yet alarmed: {quiet.alarm_reasons}"
    assert loud.alarm, "every feature moved, yet no alarm"
    assert any("drifted" in r for r in loud.alarm_reasons), loud.alarm_reasons
    names = [f["name"] for f in loud.report()["features"]]
    assert names == list(FEATURE_NAMES), "one entry per model feature, in the model's order"
    assert all("description" in f and f["psi"] >= 0 for f in loud.features)


OCTOBER = {"days": 28, "working_days": 17, "weekdays_off": 5, "weekend_working_days": 2}
NOVEMBER = {"days": 28, "working_days": 20, "weekdays_off": 0, "weekend_working_days": 0}


def calendar_frame(n: int, rng: np.random.Generator, calendar: dict, shift: float = 0.0):
    """Persons with a steady rate per working day (Beta), counted over the window's own working
    days: the same population under two calendars has other counts, the same rates."""
    frame_ = frame(n, rng)
    rate = rng.beta(2 + shift, 2, n)
    for name, (what, stored) in calendar_drift.PER_DAY.items():
        days = calendar["working_days"] if what == "working" else 28 - calendar["working_days"]
        counts = rng.binomial(days, rate).astype("float64")
        scale = {"share": 1 / days, "per_week": 7 / 28}.get(stored, 1.0)
        frame_[name] = counts * scale
    return frame_


def test_features_stay_compared_across_calendars_per_working_day():
    # Given a reference over an October window (17 working days) and the same population counted
    # over a November window (20), and a population whose rates moved,
    rng = np.random.default_rng(6)
    reference = build_reference(
        calendar_frame(8_000, rng, OCTOBER), threshold=0.8, calendar=OCTOBER
    )
    same = calendar_frame(8_000, rng, NOVEMBER)
    moved = calendar_frame(8_000, rng, NOVEMBER, shift=3.0)
    kwargs = {"threshold": 0.8, "target_fpr": 0.2, "calendar": NOVEMBER}
    # when both are judged,
    quiet = monitor(reference, same, same["proba"], **kwargs)
    loud = monitor(reference, moved, moved["proba"], **kwargs)
    by_name = {f["name"]: f for f in quiet.features}
    # then the day counts move as counts (raw PSI large) but not per working day, so no alarm,
    assert by_name["workdays_active"]["psi"] > 0.1, "17 against 20 working days moves the counts"
    assert by_name["workdays_active"]["compared_as"] == "per_day"
    assert by_name["workdays_active"]["psi_compared"] < 0.03, by_name["workdays_active"]
    assert not quiet.alarm, quiet.alarm_reasons
    # the moved rates alarm across calendars, with their (negative) margin in the reason,
    assert any("workdays_active" in r and "per working day" in r for r in loud.alarm_reasons), (
        loud.alarm_reasons
    )
    assert any("margin -" in r for r in loud.alarm_reasons)
    # weekly patterns are reported only, and the note says how features were compared.
    assert by_name["fri_in_sun_out_weeks"]["compared_as"] == "reported only"
    assert not by_name["fri_in_sun_out_weeks"]["alarms"]
    assert "per working day" in quiet.calendar["note"]
    assert "20 working days" in quiet.calendar["note"]
    report = json.loads(json.dumps(quiet.report(), allow_nan=False))
    assert report["calendar"]["reference"] == OCTOBER
    assert report["calendar"]["month"] == NOVEMBER
    assert report["calendar"]["same"] is False


@settings(deadline=None, max_examples=25)
@given(
    st.floats(0.5, 6), st.floats(0.5, 6), st.sampled_from([(17, 20), (19, 17), (20, 22), (18, 20)])
)
def test_per_day_rates_of_one_population_agree_across_calendars(a, b, days):
    """Counts of the same Beta(a, b) rates over D and D' working days (up to 3 apart): per-day PSI
    small whatever the counts' own PSI (4.7 for Beta(5, 1) between 17 and 20 days). Not zero: the
    binomial noise itself differs with D (up to 0.16 for rates piled at 0 over 8 and 11 days)."""
    rng = np.random.default_rng(int(a * 1000 + b))
    d1, d2 = days
    ref = rng.binomial(d1, rng.beta(a, b, 5_000)).astype("float64")
    cur = rng.binomial(d2, rng.beta(a, b, 20_000)).astype("float64")
    cal1, cal2 = {"days": 28, "working_days": d1}, {"days": 28, "working_days": d2}
    counted = calendar_drift.per_day_psi("workdays_active", list(ref), cal1, cur, cal2, psi)
    shares = calendar_drift.per_day_psi(
        "workday_coverage", list(ref / d1), cal1, cur / d2, cal2, psi
    )
    assert counted < 0.04, counted
    assert shares == pytest.approx(counted, abs=1e-9), "a share is its count over the days"


@given(st.integers(0, 30), st.integers(1, 30), st.integers(0, 2**32 - 1))
def test_a_count_per_day_stays_in_its_own_stretch(count, days, seed):
    count = min(count, days)
    rate = calendar_drift.per_day(
        "workdays_active", np.array([count], "float64"), {"days": 28, "working_days": days},
        np.random.default_rng(seed),
    )  # fmt: skip
    assert count / (days + 1) <= rate[0] < (count + 1) / (days + 1)


@settings(deadline=None, max_examples=10)
@given(st.integers(0, 10_000), st.sampled_from([0.8, 0.9, 0.97]))
def test_the_fpr_band_holds_the_realised_fpr_as_often_as_it_says(seed, cut):
    """Labels drawn from p, 400 times: the delta-method SE is the realised FPR's spread and the
    95% band holds it about 95% of the time."""
    rng = np.random.default_rng(seed)
    p = rng.beta(0.5, 0.5, 20_000)
    badge = p >= cut
    estimate, se = cbpe(p, badge)["estimated_fpr"], cbpe_band(p, badge)["fpr_se"]
    draws = rng.random((400, len(p))) < p
    realised = np.array([badge[~y].mean() for y in draws])
    assert se == pytest.approx(realised.std(), rel=0.15)
    inside = np.mean(np.abs(realised - estimate) <= 1.96 * se)
    assert 0.90 <= inside <= 0.99, inside


@given(st.floats(0.5, 2.0), st.floats(-1, 1), st.floats(0, 0.5), st.booleans())
def test_a_check_alarms_exactly_when_its_margin_is_negative(limit_, value, half, two_sided):
    limit_ = max(limit_, 1.01) if two_sided else limit_
    value = (1 + value / 2) if two_sided else value + limit_
    c = check("x", value, value - half, value + half, limit_, two_sided=two_sided)
    assert c["alarm"] == (c["band_margin"] < 0)
    # the band decides: it alarms only when wholly beyond, never sooner than the point would
    assert c["band_margin"] >= c["margin"] - 1e-12
    if two_sided:
        assert c["alarm"] == (value - half > limit_ or value + half < 1 / limit_)
    else:
        assert c["alarm"] == (value - half > limit_)


def test_a_reference_without_calendar_still_compares_features():
    rng = np.random.default_rng(7)
    reference = build_reference(frame(8_000, rng), threshold=0.8)  # as stored before calendars
    moved = frame(8_000, rng, shift=3.0)
    result = monitor(
        reference, moved, moved["proba"], threshold=0.8, target_fpr=0.2, calendar=NOVEMBER
    )
    assert result.calendar["compare_features"], "unknown reference calendar: compare as before"
    assert any("drifted" in r for r in result.alarm_reasons), result.alarm_reasons


def test_report_is_strict_json_even_with_a_feature_never_seen():
    rng = np.random.default_rng(5)
    month = frame(2_000, rng)
    month[FEATURE_NAMES[0]] = np.nan  # a feature missing for everyone this month
    result = monitor(
        build_reference(frame(2_000, rng), 0.8),
        month,
        month["proba"],
        threshold=0.8,
        target_fpr=0.2,
    )
    text = json.dumps(result.report(), allow_nan=False)  # raises on NaN
    assert json.loads(text)["features"][0]["ks_statistic"] is None, "no values: no KS, null"


def test_alarm_reasons_name_the_estimated_fpr_over_target():
    rng = np.random.default_rng(4)
    ref_frame = frame(4_000, rng)
    reference = build_reference(ref_frame, threshold=0.8)
    result = monitor(
        reference,
        ref_frame,
        ref_frame["proba"],
        threshold=0.8,
        target_fpr=1e-4,
        thresholds=Thresholds(),
    )
    assert any(r.startswith("estimated FPR") for r in result.alarm_reasons), result.alarm_reasons


def test_a_run_without_reference_says_so():
    registry.configure()
    with mlflow.start_run(experiment_id=registry.experiment_id()) as run:
        pass
    with pytest.raises(NoReferenceError, match="has no training reference.*retrain or recertify"):
        load_reference(run.info.run_id, "7")


@settings(deadline=None, max_examples=20)
@given(st.integers(0, 10_000))
def test_missed_commuters_estimate_is_close_to_the_realised_count_when_calibrated(seed):
    """Labels drawn from the probabilities: the estimated commuters without a badge are near the
    realised number (within 3% of the commuters)."""
    from commuter_badge.models.core.metrics import missed_commuters

    rng = np.random.default_rng(seed)
    p = rng.beta(0.5, 0.5, 20_000)
    y = rng.random(len(p)) < p
    badge = p >= 0.9
    est = missed_commuters(p, badge)
    realised = int((y & ~badge).sum())
    assert est["estimated_missed_commuters"] == pytest.approx(realised, abs=0.03 * y.sum()), est
    assert est["estimated_missed_commuters"] == pytest.approx(
        est["expected_commuters"] * (1 - est["estimated_recall"])
    )
