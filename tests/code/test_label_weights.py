"""Weighted labels: the optional `weight` column of a labels file, and weighted metrics.

A weight says how many persons of the month a labelled row stands for (an audit's verdicts carry
the inverse of their inclusion probability); without the column every row weighs 1.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commuter_badge.features.read import label_weights, read_labels
from commuter_badge.features.schema import TripDataError
from commuter_badge.models.core.metrics import at_threshold, summary

GOOD = st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False)
BAD = st.one_of(
    st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False),
    st.sampled_from(["inf", "-inf", "nan", "", "heavy", "1.5.2", "-0.5"]),
)
HERE = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@HERE
@given(weights=st.lists(GOOD, min_size=1, max_size=20), parquet=st.booleans())
def test_good_weights_are_read_as_written(tmp_path, weights, parquet):
    # Given a labels file whose weight column holds finite numbers >= 0 (CSV or Parquet),
    frame = pd.DataFrame(
        {
            "person_id": [f"p{i}" for i in range(len(weights))],
            "is_commuter": [i % 2 for i in range(len(weights))],
            "weight": weights,
        }
    )
    path = tmp_path / ("labels.parquet" if parquet else "labels.csv")
    frame.to_parquet(path, index=False) if parquet else frame.to_csv(path, index=False)
    # when read,
    got = read_labels(path)
    # then the weights come back as float64, row for row (CSV's text round-trips floats exactly).
    assert list(got.columns) == ["person_id", "is_commuter", "weight"]
    assert str(got["weight"].dtype) == "float64"
    assert got["weight"].tolist() == weights
    assert label_weights(got).tolist() == weights


@HERE
@given(
    weights=st.lists(GOOD.map(lambda w: f"{w!r}"), min_size=1, max_size=8),
    bad=BAD.map(lambda b: b if isinstance(b, str) else repr(b)),
    data=st.data(),
)
def test_a_bad_weight_is_refused_naming_file_line_and_value(tmp_path, weights, bad, data):
    # Given a CSV labels file with one weight that is negative, not finite or not a number,
    at = data.draw(st.integers(0, len(weights)))
    cells = [*weights[:at], bad, *weights[at:]]
    rows = [f"p{i},{i % 2},{w}" for i, w in enumerate(cells)]
    path = tmp_path / "labels.csv"
    path.write_text("person_id,is_commuter,weight\n" + "\n".join(rows) + "\n")
    # when read, then the error names the file, the line (header on line 1) and the value.
    with pytest.raises(TripDataError) as caught:
        read_labels(path)
    text = str(caught.value)
    assert text.startswith(f"{path} line {at + 2}: column 'weight' value "), text
    assert "is not a finite number >= 0" in text, text
    shown = re.search(r"value (.*) is not", text).group(1)
    assert bad.strip() in shown or shown == repr(int(bad)), (bad, text)


def test_labels_without_a_weight_column_weigh_one(tmp_path):
    # Given labels without the column, when read, then no column is invented and each row weighs 1.
    path = tmp_path / "labels.csv"
    path.write_text("person_id,is_commuter\na,1\nb,0\n")
    got = read_labels(path)
    assert list(got.columns) == ["person_id", "is_commuter"]
    assert label_weights(got).tolist() == [1.0, 1.0]


def test_parquet_weights_of_the_wrong_type_are_refused_by_row(tmp_path):
    # Given a Parquet labels file whose weights are text, one of them negative,
    path = tmp_path / "labels.parquet"
    pq.write_table(
        pa.table({"person_id": ["a", "b"], "is_commuter": [1, 0], "weight": ["2", "-3"]}), path
    )
    # when read, then the error names row 2 and the value.
    with pytest.raises(TripDataError, match=re.escape(f"{path} row 2: column 'weight' value -3")):
        read_labels(path)


def test_later_label_files_without_weights_weigh_one(tmp_path):
    # Given a weighted labels file and a later unweighted one overriding one person,
    from commuter_badge.models.core.data import read_label_files

    (tmp_path / "a.csv").write_text("person_id,is_commuter,weight\na,1,5\nb,0,7\n")
    (tmp_path / "b.csv").write_text("person_id,is_commuter\nb,1\nc,0\n")
    # when read together, then the override and the new person weigh 1.
    y, _ = read_label_files([tmp_path / "a.csv", tmp_path / "b.csv"])
    assert dict(zip(y["person_id"], y["weight"], strict=True)) == {"a": 5.0, "b": 1.0, "c": 1.0}


def test_weighted_metrics_estimate_the_population_from_a_stratified_sample():
    # Given a simulated month whose truth is known: badge holders and non-holders, non-commuters
    # in both, and a stratified sample (holders drawn 10 times as often) weighted by its design,
    rng = np.random.default_rng(7)
    n_hold, n_other = 20_000, 180_000
    truth = np.r_[rng.random(n_hold) < 0.97, rng.random(n_other) < 0.30].astype(int)
    badge = np.r_[np.ones(n_hold, bool), np.zeros(n_other, bool)]
    proba = np.where(badge, 0.9, 0.1)
    true_fpr = (badge & (truth == 0)).sum() / (truth == 0).sum()
    true_recall = (badge & (truth == 1)).sum() / (truth == 1).sum()
    errors, bands = [], []
    for seed in range(200):
        draw = np.random.default_rng(seed)
        n_h, n_o = 1_000, 1_000
        hold = draw.choice(n_hold, n_h, replace=False)
        other = n_hold + draw.choice(n_other, n_o, replace=False)
        idx = np.r_[hold, other]
        weight = np.r_[np.full(n_h, n_hold / n_h), np.full(n_o, n_other / n_o)]
        # when measured with the weights,
        m = at_threshold(truth[idx], proba[idx], 0.5, weight)
        errors.append(m["fpr"] - true_fpr)
        # (the stratified standard error of the ratio, by the delta method, from the truth)
        k_h, k_o = ((truth[:n_hold] == 0).sum(), (truth[n_hold:] == 0).sum())
        var_h = n_hold**2 * (1 - n_h / n_hold) * (k_h / n_hold) * (1 - k_h / n_hold) / n_h
        var_o = n_other**2 * (1 - n_o / n_other) * (k_o / n_other) * (1 - k_o / n_other) / n_o
        bands.append(math.sqrt(k_o**2 * var_h + k_h**2 * var_o) / (k_h + k_o) ** 2)
        assert math.isnan(m["fpr_upper95"]), "no Clopper–Pearson bound on weighted counts"
        assert m["n_neg"] == pytest.approx((weight * (truth[idx] == 0)).sum())
    errors, se = np.array(errors), bands[0]
    # then the weighted FPR is unbiased for the month's (mean error within 4 standard errors of
    # a mean of 200) and within 4 design standard errors in almost every draw;
    assert abs(errors.mean()) <= 4 * se / math.sqrt(len(errors)), (errors.mean(), se)
    assert (np.abs(errors) <= 4 * se).mean() >= 0.99, (true_fpr, se, np.abs(errors).max())
    # and the same sample counted once each would be far off (the holders are over-drawn).
    unweighted = at_threshold(truth[idx], proba[idx], 0.5)
    assert unweighted["fpr"] - true_fpr > 10 * se, (unweighted["fpr"], true_fpr)
    weighted_recall = at_threshold(truth[idx], proba[idx], 0.5, weight)["recall"]
    assert weighted_recall == pytest.approx(true_recall, abs=0.05)


def test_unit_weights_are_plain_counts():
    # Given weights all 1, the metrics are exactly the unweighted ones, bound included.
    rng = np.random.default_rng(3)
    y, proba = rng.integers(0, 2, 500), rng.random(500)
    assert summary(y, proba, 0.6, np.ones(500)) == summary(y, proba, 0.6)


def test_slice_rates_are_weighted_and_rest_on_enough_persons():
    # Given weighted labels in two slices: many car persons of mixed weights, few bus persons
    # of great weight,
    from commuter_badge.models.core.metrics import review_metrics

    rng = np.random.default_rng(0)
    n_car, n_bus = 370, 30
    frame = pd.DataFrame(
        {
            "is_commuter": rng.integers(0, 2, n_car + n_bus),
            "proba": rng.random(n_car + n_bus),
            "main_mode": ["car"] * n_car + ["bus"] * n_bus,
            "weight": np.r_[rng.choice([1.0, 9.0], n_car), np.full(n_bus, 500.0)],
        }
    )
    # when reviewed,
    metrics, slices = review_metrics("eval_", frame, 0.5, 0.01)
    # then the car slice's FPR is the weighted one,
    car = frame[frame["main_mode"] == "car"]
    neg = car["is_commuter"] == 0
    expected = car.loc[neg & (car["proba"] >= 0.5), "weight"].sum() / car.loc[neg, "weight"].sum()
    assert metrics["eval_main_mode.car.fpr"] == pytest.approx(expected)
    # and the bus slice's rate, on fewer than 30 labelled non-commuters, is not logged as a
    # metric however much they weigh (its weighted counts stay in the slice table).
    bus = slices[slices["value"] == "bus"].iloc[0]
    assert bus["persons_neg"] < 30 < bus["n_neg"]
    assert "eval_main_mode.bus.fpr" not in metrics
