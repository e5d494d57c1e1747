"""The threshold certified on an audit's held-out persons with the audit's stratified design
(models/core/stratified.py): its p-value, its bound's coverage, and the champion's lower bound."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commuter_badge.models.core.stratified import (
    DesignError,
    StratifiedThreshold,
    Stratum,
    certifying_table,
    fpr_lower,
    p_value,
    strata_of,
)

STRATA = [Stratum(400, 80, 30, 40), Stratum(1600, 80, 70, 40)]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 300), st.floats(0, 400))
def test_the_p_value_falls_with_more_false_positives(total, observed):
    # More false positives anywhere make a low weighted count less likely.
    assert p_value(total + 5, observed, STRATA) <= p_value(total, observed, STRATA) + 1e-12


def test_one_stratum_is_the_hypergeometric_tail():
    from scipy.stats import hypergeom

    one = [Stratum(500, 100, 60, 50)]
    assert p_value(40, 3 * 10, one) == pytest.approx(hypergeom.cdf(3, 500, 40, 50))


def _population(rng, n_hold=1000, n_other=3000):
    """Holders (an old model's badge) and non-holders with scores; non-commuters among holders
    score like commuters often enough that the threshold matters."""
    y = np.r_[rng.random(n_hold) < 0.9, rng.random(n_other) < 0.15].astype(int)
    score = np.where(y == 1, rng.normal(3, 1, len(y)), rng.normal(0, 1.2, len(y)))
    score[:n_hold][y[:n_hold] == 0] += 1.5
    stratum = np.r_[np.zeros(n_hold, int), np.ones(n_other, int)]
    return y, score, stratum


def _audit(rng, y, stratum, per_stratum, certify_share=0.5):
    rows, strata = [], []
    for s in (0, 1):
        members = np.flatnonzero(stratum == s)
        drawn = rng.choice(members, per_stratum, replace=False)
        held = drawn[rng.random(per_stratum) < certify_share]
        strata.append(Stratum(len(members), per_stratum, int((y[drawn] == 0).sum()), len(held)))
        rows.append(held)
    return np.concatenate(rows), strata


@pytest.mark.slow  # > 10 s: make test only, not the edit loop (make test-fast)
def test_the_certified_threshold_breaks_the_target_rarely():
    # Given one population and many audits of it, each certifying a threshold at 3%,
    rng = np.random.default_rng(7)
    y, score, stratum = _population(rng)
    target, broken, certified = 0.03, 0, 0
    for _ in range(40):
        held, strata = _audit(rng, y, stratum, 400)
        sel = StratifiedThreshold(target_fpr=target).fit(
            score[held], y[held], stratum[held], strata
        )
        certified += sel.certified_
        true_fpr = ((score >= sel.threshold_) & (y == 0)).sum() / (y == 0).sum()
        broken += sel.certified_ and true_fpr > target
        # the bound is never below the realised weighted estimate
        assert sel.fpr_upper_ >= sel.fpr_ - 1e-12
    # then most audits certify, and the population's true FPR exceeds the target rarely
    # (at most 5% of certifications in expectation; 5 of 40 has probability < 5% then).
    assert certified >= 30, certified
    assert broken <= 4, broken


def test_the_champion_lower_bound_sees_a_breach_and_clears_a_clean_model():
    rng = np.random.default_rng(3)
    y, score, stratum = _population(rng)
    held, strata = _audit(rng, y, stratum, 400)
    import pandas as pd

    table = certifying_table(pd.DataFrame({"is_commuter": y[held]}), stratum[held], strata)
    breach = score[held] >= 0.5  # badges many non-commuters among the holders
    true = ((score >= 0.5) & (y == 0)).sum() / (y == 0).sum()
    assert true > 0.05
    assert 0.02 < fpr_lower(table, breach) <= true
    assert fpr_lower(table, np.zeros(len(held), bool)) == 0.0


def test_three_weights_are_no_audit():
    with pytest.raises(DesignError, match="at most two strata"):
        strata_of(np.array([1.0, 2.0, 3.0]))
