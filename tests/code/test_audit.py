"""Audits: reproducible stratified draws, and bounds that cover the month's truth (by simulation)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from commuter_badge.models.core.audit import (
    HOLDERS,
    NON_HOLDERS,
    AuditError,
    certify,
    draw,
    lower_count,
    upper_count,
)


def month(n_holders: int, n_others: int, k_holders: int, k_others: int, seed: int = 0):
    """A month's scores with a known truth: k non-commuters among holders and among the others."""
    rng = np.random.default_rng(seed)
    n = n_holders + n_others
    badge = np.r_[np.ones(n_holders, bool), np.zeros(n_others, bool)]
    truth = np.ones(n, int)
    truth[rng.choice(n_holders, k_holders, replace=False)] = 0
    truth[n_holders + rng.choice(n_others, k_others, replace=False)] = 0
    scores = pd.DataFrame(
        {
            "person_id": [f"p{i:06d}" for i in range(n)],
            "commuter_probability": np.where(badge, 0.9, 0.1),
            "badge": badge,
            "threshold": 0.5,
            "model_version": "3",
        }
    )
    return scores, pd.Series(truth, index=scores["person_id"])


def verdicts_for(sample: pd.DataFrame, truth: pd.Series) -> pd.DataFrame:
    return pd.DataFrame(
        {"person_id": sample["person_id"], "is_commuter": truth[sample["person_id"]].to_numpy()}
    )


def test_draw_is_reproducible_and_ignores_row_order():
    scores, _ = month(300, 700, 3, 400)
    a = draw(scores, 100, seed=5)
    b = draw(scores.sample(frac=1, random_state=1), 100, seed=5)
    c = draw(scores, 100, seed=6)
    assert a.equals(b), "same scores, n and seed must give the same sample in any row order"
    assert not a.equals(c), "another seed gives another sample"
    assert (a["stratum"] == HOLDERS).sum() == 50
    assert (a["stratum"] == NON_HOLDERS).sum() == 50
    assert a.groupby("stratum")["stratum_size"].first().to_dict() == {
        HOLDERS: 300,
        NON_HOLDERS: 700,
    }


def test_draw_takes_whole_small_strata():
    scores, _ = month(10, 500, 1, 200)
    sample = draw(scores, 100, seed=0)
    assert (sample["stratum"] == HOLDERS).sum() == 10, "all 10 holders, not 50"
    assert (sample["stratum"] == NON_HOLDERS).sum() == 90


def test_draw_refuses_a_month_without_both_strata():
    scores, _ = month(0, 100, 0, 50)
    with pytest.raises(AuditError, match="both strata are needed"):
        draw(scores, 20, seed=0)


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(1, 400),
    data=st.data(),
    confidence=st.sampled_from([0.9, 0.95, 0.975]),
)
def test_count_bounds_bracket_the_point_estimate(size, data, confidence):
    sampled = data.draw(st.integers(1, size))
    found = data.draw(st.integers(0, sampled))
    up = upper_count(size, sampled, found, confidence)
    low = lower_count(size, sampled, found, confidence)
    estimate = size * found / sampled
    # The bounds are whole counts: they bracket the estimate up to its rounding (21 persons, 20
    # sampled, 1 found: the estimate 1.05 and an exact 90% upper count of 1 agree).
    assert low <= math.ceil(estimate), (size, sampled, found, low, estimate, up)
    assert math.floor(estimate) <= up, (size, sampled, found, low, estimate, up)
    assert found <= low, "at least the non-commuters seen"
    assert up <= size - (sampled - found), "at most all but the commuters seen"
    if sampled == size:
        assert low == up == found, "a census has no uncertainty"


@settings(max_examples=80, deadline=None)
@given(size=st.integers(1, 600), data=st.data(), confidence=st.sampled_from([0.9, 0.95, 0.975]))
def test_bisected_bounds_equal_the_full_scan(size, data, confidence):
    # the bounds bisect on K; scanning every K with scipy's hypergeometric gives the same counts
    from scipy.stats import hypergeom

    sampled = data.draw(st.integers(1, size))
    found = data.draw(st.integers(0, sampled))
    ks = np.arange(found, size - (sampled - found) + 1)
    alpha = 1 - confidence
    assert (
        upper_count(size, sampled, found, confidence)
        == ks[hypergeom.cdf(found, size, ks, sampled) >= alpha].max()
    )
    assert (
        lower_count(size, sampled, found, confidence)
        == ks[hypergeom.sf(found - 1, size, ks, sampled) >= alpha].min()
    )


@pytest.mark.slow  # > 10 s: make test only, not the edit loop (make test-fast)
@pytest.mark.parametrize(
    ("n_holders", "n_others", "k_holders", "k_others", "n"),
    [
        (5_000, 15_000, 25, 9_000, 600),  # 0.5% of holders, FPR about 0.28%
        (5_000, 15_000, 150, 9_000, 400),  # 3% of holders
        (2_000, 30_000, 0, 20_000, 300),  # a clean month
    ],
)
def test_bounds_cover_the_truth_in_at_least_95_percent_of_draws(
    n_holders, n_others, k_holders, k_others, n
):
    # given months whose truth is known
    scores, truth = month(n_holders, n_others, k_holders, k_others)
    true_share = k_holders / n_holders
    true_fpr = k_holders / (k_holders + k_others)
    covered_share = covered_fpr = 0
    draws = 400
    for seed in range(draws):
        # when a sample is drawn, verified without error and certified
        sample = draw(scores, n, seed=seed)
        result = certify(sample, verdicts_for(sample, truth))
        covered_share += result.badge_holders_noncommuter_share_upper95 >= true_share
        covered_fpr += result.fpr_upper95 >= true_fpr
    # then each one-sided 95% bound covers the truth at least 95% of the time
    assert covered_share / draws >= 0.95, f"share bound covered {covered_share}/{draws}"
    assert covered_fpr / draws >= 0.95, f"FPR bound covered {covered_fpr}/{draws}"


def test_missing_verdicts_widen_the_bounds():
    scores, truth = month(2_000, 8_000, 20, 5_000)
    sample = draw(scores, 400, seed=1)
    full = certify(sample, verdicts_for(sample, truth))
    partial = certify(sample, verdicts_for(sample, truth).iloc[::2])
    assert partial.n_verified < full.n_verified == 400
    assert partial.fpr_upper95 > full.fpr_upper95
    assert partial.badge_holders_noncommuter_share_upper95 > (
        full.badge_holders_noncommuter_share_upper95
    )


def test_verdicts_for_persons_outside_the_sample_are_refused():
    scores, truth = month(100, 100, 1, 50)
    sample = draw(scores, 20, seed=1)
    stray = pd.DataFrame({"person_id": ["nobody"], "is_commuter": [1]})
    with pytest.raises(AuditError, match="not in the sample"):
        certify(sample, pd.concat([verdicts_for(sample, truth), stray]))


def test_audit_commands_end_to_end(tmp_path):
    # given a month's score file
    from mlflow.tracking import MlflowClient

    from commuter_badge.cli.main import app

    scores, truth = month(1_000, 4_000, 10, 2_500)
    scores.to_csv(tmp_path / "scores.csv", index=False)
    runner = CliRunner()
    # when a sample is drawn, verified and certified through the command line
    drawn = runner.invoke(
        app,
        ["audit", "draw", "--scores", str(tmp_path / "scores.csv"), "--n", "200", "--seed", "3"]
        + ["--out", str(tmp_path / "sample.csv")],
    )
    assert drawn.exit_code == 0, drawn.output
    sample = pd.read_csv(tmp_path / "sample.csv", dtype={"person_id": str})
    verdicts_for(sample, truth).to_csv(tmp_path / "verdicts.csv", index=False)
    done = runner.invoke(
        app,
        ["audit", "certify", "--sample", str(tmp_path / "sample.csv")]
        + ["--verdicts", str(tmp_path / "verdicts.csv"), "--report", str(tmp_path / "a.json")]
        + ["--as-of", "2021-10-20"],
    )
    # then the report holds the contract's fields and an MLflow run of kind audit exists
    assert done.exit_code == 0, done.output
    report = json.loads((tmp_path / "a.json").read_text())
    for key in (
        "badge_holders_noncommuter_share",
        "badge_holders_noncommuter_share_upper95",
        "fpr_estimate",
        "fpr_upper95",
        "n_sampled",
        "n_verified",
        "n_badge_holders",
        "n_non_holders",
    ):
        assert key in report, f"report lacks {key}"
    assert report["n_sampled"] == report["n_verified"] == 200
    assert report["fpr_estimate"] <= report["fpr_upper95"] <= 1
    client = MlflowClient()
    runs = client.search_runs(
        [client.get_experiment_by_name("commuter-badge").experiment_id], "tags.kind = 'audit'"
    )
    assert len(runs) == 1, runs
    assert runs[0].data.metrics["fpr_upper95"] == pytest.approx(report["fpr_upper95"])


def test_certify_names_a_bad_verdict_by_its_line_in_the_file(tmp_path):
    # Given verdicts whose first data row (line 2 of the file, after the header) says "yes",
    from commuter_badge.cli.main import app

    scores, truth = month(200, 800, 2, 500)
    sample = draw(scores, 20, seed=1)
    sample.to_csv(tmp_path / "sample.csv", index=False)
    lines = ["person_id,is_commuter", f"{sample['person_id'].iloc[0]},yes"]
    lines += [f"{p},1" for p in sample["person_id"].iloc[1:]]
    (tmp_path / "verdicts.csv").write_text("\n".join(lines) + "\n")
    # when certified,
    done = CliRunner().invoke(
        app,
        ["audit", "certify", "--sample", str(tmp_path / "sample.csv")]
        + ["--verdicts", str(tmp_path / "verdicts.csv")],
    )
    # then the error names line 2, where the value is, as trips errors name their CSV lines.
    assert done.exit_code == 2, done.output
    assert "verdicts.csv line 2: column 'is_commuter' value 'yes'" in done.output, done.output
    assert "row 1" not in done.output, done.output
