"""The Neyman–Pearson threshold: its guarantee, its errors, its shape."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import beta as beta_dist
from sklearn.exceptions import NotFittedError

from commuter_badge.models.threshold import (
    NeymanPearsonThreshold,
    NotEnoughNegativesError,
    clopper_pearson_upper,
    negatives_needed,
)


def test_guarantee_holds_by_simulation():
    # Given a known score law (negatives Beta(2,5), positives Beta(5,2)), so the true FPR of any
    # threshold t is the Beta(2,5) survival function at t,
    rng = np.random.default_rng(0)
    target, repeats, exceed = 0.05, 400, 0
    for _ in range(repeats):
        neg = rng.beta(2, 5, 600)
        pos = rng.beta(5, 2, 200)
        scores = np.concatenate([neg, pos])
        y = np.concatenate([np.zeros(600), np.ones(200)])
        # when the threshold is chosen on an independent calibration set each time,
        t = NeymanPearsonThreshold(target_fpr=target).fit(scores, y).threshold_
        exceed += beta_dist.sf(t, 2, 5) > target
    # then the realised FPR exceeds the target in no more than about 5% of the repeats.
    assert exceed / repeats <= 0.07, f"true FPR above target in {exceed}/{repeats} repeats"
    # and the rule is not absurdly conservative: it does exceed sometimes.
    assert exceed > 0, "never exceeding in 400 repeats means the bound is far too loose"


def test_lowest_admissible_threshold_is_chosen():
    # Given 1000 negatives with distinct scores and a 1% target,
    rng = np.random.default_rng(1)
    neg = rng.random(1000)
    sel = NeymanPearsonThreshold(target_fpr=0.01).fit(neg, np.zeros(1000))
    # then the bound at the chosen threshold is within target, and one more false positive breaks it.
    assert sel.fpr_upper_ <= 0.01, "chosen threshold violates the target"
    assert clopper_pearson_upper(sel.false_positives_ + 1, 1000) > 0.01, (
        "a lower threshold was admissible"
    )
    assert (neg >= sel.threshold_).sum() == sel.false_positives_, "false positives miscounted"


def test_ties_never_split():
    # Given many negatives tied at the same score, the threshold never sits inside the tie.
    neg = np.array([0.2] * 500 + [0.9] * 3 + list(np.linspace(0.3, 0.8, 497)))
    sel = NeymanPearsonThreshold(target_fpr=0.02).fit(neg, np.zeros(len(neg)))
    assert (neg >= sel.threshold_).sum() == sel.false_positives_, "tie split across threshold"


def test_too_few_negatives_says_how_many_are_needed():
    need = negatives_needed(0.01)
    assert need == 299, (
        f"zero false positives in n negatives certifies 1% only from n=299 (got {need})"
    )
    scores, y = np.linspace(0, 1, 300), np.r_[np.zeros(100), np.ones(200)]
    with pytest.raises(
        NotEnoughNegativesError, match=r"100 held-out negatives .* at least 299 are needed"
    ):
        NeymanPearsonThreshold(target_fpr=0.01).fit(scores, y)


def test_unfitted_and_bad_target():
    with pytest.raises(NotFittedError, match="not fitted"):
        NeymanPearsonThreshold().predict(np.array([0.5]))
    with pytest.raises(ValueError, match="between 0 and 1"):
        NeymanPearsonThreshold(target_fpr=1.5).fit(np.zeros(10), np.zeros(10))


def test_clopper_pearson_known_values():
    # Zero events in n trials: the upper bound is 1 - 0.05**(1/n) exactly.
    assert clopper_pearson_upper(0, 100) == pytest.approx(1 - 0.05 ** (1 / 100)), "k=0 closed form"
    assert clopper_pearson_upper(100, 100) == 1.0, "all events: bound is 1"
    assert clopper_pearson_upper(5, 1000) > 5 / 1000, "upper bound above the point estimate"
