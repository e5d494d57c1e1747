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
from commuter_badge.models.core.monitor import Thresholds, cbpe, monitor, psi
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


def test_features_alarm_only_between_windows_of_the_same_calendar():
    rng = np.random.default_rng(6)
    reference = build_reference(frame(8_000, rng), threshold=0.8, calendar=OCTOBER)
    moved = frame(8_000, rng, shift=3.0)
    kwargs = {"threshold": 0.8, "target_fpr": 0.2}
    alike = monitor(reference, moved, moved["proba"], calendar=OCTOBER, **kwargs)
    other = monitor(reference, moved, moved["proba"], calendar=NOVEMBER, **kwargs)
    assert any("drifted" in r for r in alike.alarm_reasons), "same calendar: features compared"
    assert alike.calendar["compare_features"]
    assert "note" not in alike.calendar
    assert not any("drifted" in r for r in other.alarm_reasons), other.alarm_reasons
    assert not any(f["alarms"] for f in other.features), "another calendar: no feature alarms"
    assert [f["psi"] for f in other.features] == [f["psi"] for f in alike.features], "reported"
    assert any("score distribution" in r for r in other.alarm_reasons), "the scores still alarm"
    assert "17 working days" not in other.calendar["note"]
    assert "20 working days" in other.calendar["note"]
    assert "against 17" in other.calendar["note"]
    report = json.loads(json.dumps(other.report(), allow_nan=False))
    assert report["calendar"]["compare_features"] is False
    assert report["calendar"]["reference"] == OCTOBER
    assert report["calendar"]["month"] == NOVEMBER


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
