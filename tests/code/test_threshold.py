"""The Neyman–Pearson threshold: its guarantee, its errors, its shape."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import beta as beta_dist
from sklearn.exceptions import NotFittedError

from commuter_badge.models.core.threshold import (
    NeymanPearsonThreshold,
    NotEnoughNegativesError,
    against_truth,
    clopper_pearson_upper,
    label_noise_estimate,
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


def _noisy_draw(rng, rho, n_neg=2100, n_pos=1500):
    """Negatives Beta(1,8), positives Beta(8,1); each label wrong with probability rho."""
    truth = np.r_[np.zeros(n_neg), np.ones(n_pos)]
    scores = np.r_[rng.beta(1, 8, n_neg), rng.beta(8, 1, n_pos)]
    flipped = rng.random(len(truth)) < rho
    return scores, np.where(flipped, 1 - truth, truth)


def test_label_noise_correction_keeps_the_truth_guarantee_and_recovers_recall():
    # Given labels wrong at random in 1% of each class (a 0.7% floor under the labelled FPR),
    rng = np.random.default_rng(3)
    target, repeats = 0.01, 200
    exceed, recall_plain, recall_noise = 0, [], []
    for _ in range(repeats):
        scores, y = _noisy_draw(rng, 0.01)
        plain = NeymanPearsonThreshold(target_fpr=target).fit(scores, y).threshold_
        sel = NeymanPearsonThreshold(target_fpr=target, label_noise=0.01).fit(scores, y)
        # when the threshold is certified against the truth under the stated noise,
        exceed += beta_dist.sf(sel.threshold_, 1, 8) > target
        recall_plain.append(beta_dist.sf(plain, 8, 1))
        recall_noise.append(beta_dist.sf(sel.threshold_, 8, 1))
        assert sel.mislabelled_taken_off_ >= 0
    # then the true FPR exceeds the target in at most about 5% of repeats,
    assert exceed / repeats <= 0.07, f"true FPR above target in {exceed}/{repeats} repeats"
    # and the recall lost to the labels' own errors comes back (85% -> 97% in this law)
    assert np.mean(recall_noise) > np.mean(recall_plain) + 0.05, (
        f"recall {np.mean(recall_plain):.3f} -> {np.mean(recall_noise):.3f}"
    )


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([0.005, 0.01, 0.02]), st.floats(0.5, 0.9), st.integers(0, 2**32 - 1))
def test_against_truth_recovers_the_true_fpr_from_noisy_labels(rho, cut, seed):
    # Given 60,000 negatives and 40,000 commuters, labels wrong at rate rho in each class,
    rng = np.random.default_rng(seed)
    scores, y = _noisy_draw(rng, rho, 60_000, 40_000)
    truth = np.r_[np.zeros(60_000), np.ones(40_000)]
    badge = scores >= cut
    fp, neg = int((badge & (y == 0)).sum()), int((y == 0).sum())
    tp, pos = int((badge & (y == 1)).sum()), int((y == 1).sum())
    # when the labelled counts are restated against the truth under rho,
    fp_t, neg_t = against_truth(fp, neg, tp, pos, rho)
    true_fpr = badge[truth == 0].mean()
    # then the FPR is the truth's up to the sampling error of the mislabelled commuters above the
    # cut (binomial, 4 sd) and the rule's conservative bias (rho of the labelled commuters, not
    # rho / (1 - rho) of the true ones)
    tolerance = (4 * np.sqrt(rho * tp) + rho**2 * tp) / neg
    assert fp_t / neg_t == pytest.approx(true_fpr, abs=tolerance), (
        fp / neg,
        fp_t / neg_t,
        true_fpr,
    )
    # The labels' overstatement is the mislabelled commuters above the cut: about rho of the true
    # commuters there (not of all commuters: at a high cut many are below it).
    above = int((badge & (truth == 1)).sum())
    assert fp / neg - true_fpr > 0.5 * rho * above / neg, "the labels alone overstate it more"
    assert 0.5 * rho * above / neg > tolerance, "and by more than the restatement's error"
    assert against_truth(fp, neg, tp, pos, 0.0) == (fp, neg), "no noise: unchanged"


def test_label_noise_estimate_tracks_the_rate():
    rng = np.random.default_rng(4)
    for rho in (0.0, 0.005, 0.02):
        scores, y = _noisy_draw(rng, rho, 20_000, 15_000)
        assert label_noise_estimate(scores, y) == pytest.approx(rho, abs=0.003), rho


def test_label_noise_out_of_range():
    with pytest.raises(ValueError, match="label noise"):
        NeymanPearsonThreshold(label_noise=0.5).fit(np.linspace(0, 1, 400), np.zeros(400))
