"""The promotion rules on plain arrays: no tracking store, no model."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from commuter_badge.models.core.config import Policy
from commuter_badge.models.core.gates import (
    GATES,
    Candidate,
    Champion,
    Outcome,
    clopper_pearson_lower,
    decide,
    mcnemar,
)
from commuter_badge.models.core.threshold import clopper_pearson_upper, negatives_needed

POLICY = Policy(0.01, 0.95, 28)
MONTH = dt.date(2021, 10, 20)
NEXT_MONTH = dt.date(2021, 11, 17)


def candidate(
    *, fp=20, n_neg=3000, badges_pos=None, policy=POLICY, as_of=MONTH, cert=0.0095
) -> Candidate:
    badges_pos = np.ones(1000, bool) if badges_pos is None else badges_pos
    y = np.r_[np.zeros(n_neg, int), np.ones(len(badges_pos), int)]
    badge = np.r_[np.arange(n_neg) < fp, badges_pos]
    return Candidate("2", policy, as_of, cert, y, badge)


def champion_like(cand: Candidate, badges_pos, *, policy=POLICY, as_of=MONTH) -> Champion:
    n_neg = cand.val_negatives
    return Champion("1", policy, as_of, np.r_[np.zeros(n_neg, bool), badges_pos])


def test_outcomes_are_three_and_only_passed_is_true():
    assert [str(o) for o in Outcome] == ["True", "False", "skipped"], "tag texts"
    assert bool(Outcome.PASSED), "truthiness"
    assert not Outcome.FAILED, "truthiness"
    assert not Outcome.SKIPPED, "truthiness"


@given(st.integers(0, 400), st.integers(1, 400))
def test_lower_bound_sits_below_the_rate_and_the_upper_bound(k, n):
    k = min(k, n)
    lower = clopper_pearson_lower(k, n)
    assert 0 <= lower <= k / n + 1e-12, f"lower {lower} above rate {k}/{n}"
    assert lower <= clopper_pearson_upper(k, n) + 1e-12, "lower above upper"
    assert (lower == 0) == (k == 0), "zero events give a zero lower bound, and only then"


def test_first_version_is_judged_on_its_own_rules_only():
    # Given no champion, when a certified version is judged,
    d = decide(candidate(), None)
    # then it passes, and every comparison rule reads skipped, never True.
    assert d.passed, d.reasons
    assert {k: str(v) for k, v in d.gates.items()} == {
        "certificate_holds": "True",
        "validation_consistent": "True",
        "policy_matches_champion": "skipped",
        "recall_not_worse_than_champion": "skipped",
        "newer_data_on_tie": "skipped",
    }
    assert set(d.gates) == set(GATES), "every rule has an outcome"


def test_broken_certificate_fails():
    d = decide(candidate(cert=0.0101), None)
    assert not d.passed, d.gates
    assert d.gates["certificate_holds"] is Outcome.FAILED, d.gates
    assert "certificate" in d.summary(), d.summary()


def test_validation_above_target_by_chance_is_not_evidence_against_the_certificate():
    # Given the case from the field: 1.22% on the validation negatives against a 1% target,
    d = decide(candidate(fp=43, n_neg=3500), None)
    # then the lower bound (about 0.93%) is within target and the rule does not refuse.
    assert d.figures["val_fpr_lower95"] < 0.01, d.figures
    assert d.gates["validation_consistent"] is Outcome.PASSED, d.reasons


def test_validation_far_above_target_fails():
    d = decide(candidate(fp=60, n_neg=3000), None)  # 2%: lower bound about 1.6%
    assert d.gates["validation_consistent"] is Outcome.FAILED, d.figures
    assert not d.passed, d.figures


def test_a_version_certified_under_label_noise_is_judged_under_it():
    # Given 17,000 validation negatives of which 255 (1.5%) are badged, as at 100,000 persons with
    # 1% wrong labels, and 7,000 labelled commuters, all badged,
    noisy = Policy(0.01, 0.95, 28, label_noise=0.01)
    cand = dict(fp=255, n_neg=17_000, badges_pos=np.ones(7_000, bool))
    # when judged against labels (no noise in the policy), the validation refuses it,
    plain = decide(candidate(**cand), None)
    assert plain.gates["validation_consistent"] is Outcome.FAILED, plain.figures
    # and under the version's own policy 1% of the 7,000 (70) are commuters labelled 0:
    # 185 / 16,930 = 1.09% against the truth, lower bound under the target.
    d = decide(candidate(**cand, policy=noisy), None)
    assert d.gates["validation_consistent"] is Outcome.PASSED, d.reasons
    assert d.figures["val_fpr_lower95"] == pytest.approx(clopper_pearson_lower(185, 16_930))
    # A validation far above the target fails under noise too, and the reason says both counts.
    far = decide(
        candidate(fp=450, n_neg=17_000, badges_pos=np.ones(7_000, bool), policy=noisy), None
    )
    assert far.gates["validation_consistent"] is Outcome.FAILED, far.figures
    assert "380.0/16930 against the truth at label noise 0.01 (450/17000" in far.summary()


def test_another_policy_needs_a_stated_reason():
    # Given a 2% candidate against a 1% champion, with better recall,
    cand = candidate(policy=Policy(0.02, 0.95, 28), cert=0.019)
    champ = champion_like(cand, np.arange(1000) < 900)
    # when judged without a reason, it is refused and says how to promote it;
    d = decide(cand, champ)
    assert not d.passed, d.gates
    assert d.gates["policy_matches_champion"] is Outcome.FAILED, d.gates
    assert "--policy-change" in d.summary(), d.summary()
    # with a reason, it passes, and recall across two policies is not compared.
    d = decide(cand, champ, policy_change="board decision")
    assert d.passed, d.reasons
    assert d.policy_change == "board decision", d.reasons
    assert d.gates["policy_matches_champion"] is Outcome.FAILED, "the gate still tells the fact"
    assert d.gates["recall_not_worse_than_champion"] is Outcome.SKIPPED, d.gates


def test_a_stricter_policy_with_a_reason_is_not_blocked_by_lower_recall():
    cand = candidate(policy=Policy(0.005, 0.95, 28), cert=0.0049, badges_pos=np.arange(1000) < 800)
    champ = champion_like(cand, np.ones(1000, bool))
    assert decide(cand, champ, policy_change="stricter").passed, "policy change was stated"


def test_significantly_worse_recall_fails():
    cand = candidate(badges_pos=np.arange(1000) < 900, as_of=NEXT_MONTH)
    champ = champion_like(cand, np.ones(1000, bool))
    d = decide(cand, champ)
    assert d.gates["recall_not_worse_than_champion"] is Outcome.FAILED, d.figures
    assert not d.passed, d.figures
    assert d.figures["mcnemar_champion_only"] == 100, d.figures


def test_worse_recall_on_the_same_data_is_not_also_called_a_tie():
    # Given an older champion's month and a candidate significantly worse on it (issue 27 adv. 12),
    cand = candidate(badges_pos=np.arange(1000) < 900)
    d = decide(cand, champion_like(cand, np.ones(1000, bool)))
    # then the refusal says "worse" once and never "ties", and still names the data's age.
    text = d.summary()
    assert d.gates["recall_not_worse_than_champion"] is Outcome.FAILED, d.gates
    assert "recall worse" in text, text
    assert "ties" not in text, text
    assert "nor is the data newer" in text, text


def test_identical_retrain_is_a_tie_on_the_same_data_and_is_refused():
    cand = candidate()
    d = decide(cand, champion_like(cand, np.ones(1000, bool)))
    assert d.gates["recall_not_worse_than_champion"] is Outcome.PASSED, d.gates
    assert d.gates["newer_data_on_tie"] is Outcome.FAILED, d.reasons
    assert not d.passed, d.reasons


def test_a_tie_on_newer_data_is_promoted():
    # Given a newer month's model that disagrees with the champion on 10 commuters, 6 to 4,
    cand = candidate(as_of=NEXT_MONTH, badges_pos=np.arange(1000) >= 6)
    champ = champion_like(cand, (np.arange(1000) < 6) | (np.arange(1000) >= 10))
    d = decide(cand, champ)  # 6 vs 4 is no evidence either way
    assert d.passed, d.reasons
    assert d.gates["newer_data_on_tie"] is Outcome.PASSED, d.reasons


def test_significantly_better_on_the_same_data_is_promoted():
    cand = candidate()
    d = decide(cand, champion_like(cand, np.arange(1000) < 950))
    assert d.passed, d.gates
    assert d.gates["newer_data_on_tie"] is Outcome.SKIPPED, d.gates


def test_unscorable_champion_skips_recall_but_still_wants_newer_data():
    cand = candidate()
    champ = Champion("1", POLICY, MONTH, None, "features changed")
    d = decide(cand, champ)
    assert d.gates["recall_not_worse_than_champion"] is Outcome.SKIPPED, d.gates
    assert not d.passed, "same month and nothing compared: not promoted"
    assert decide(candidate(as_of=NEXT_MONTH), champ).passed, "newer data promotes"


@given(st.integers(0, 60), st.integers(0, 60))
def test_mcnemar_is_symmetric(b, c):
    cand = np.r_[np.zeros(b, bool), np.ones(c, bool)]
    champ = ~cand
    b1, c1, worse, better = mcnemar(cand, champ)
    b2, c2, worse2, better2 = mcnemar(champ, cand)
    assert (b1, c1) == (b, c), "discordant counts"
    assert (b2, c2) == (c, b), "discordant counts"
    assert worse == pytest.approx(better2), "swap symmetry"
    assert better == pytest.approx(worse2), "swap symmetry"


def refusal_rates(target: float, n_cal: int, n_val: int, repeats: int, seed: int):
    """How often each rule refuses a correctly certified model. The Neyman–Pearson threshold sits
    just above the (k*+1)-th largest of n_cal negative scores, k* the most false positives the
    bound admits; its true FPR is then Beta(k* + 1, n_cal - k*) whatever the score law."""
    rng = np.random.default_rng(seed)
    k_star = int(np.nonzero(clopper_pearson_upper(np.arange(n_cal), n_cal) <= target)[0][-1])
    true_fpr = rng.beta(k_star + 1, n_cal - k_star, repeats)
    true_fpr = true_fpr[true_fpr <= target]  # correctly certified models only
    k = rng.binomial(n_val, true_fpr)
    old = (k / n_val > target).mean()
    new = np.mean([clopper_pearson_lower(int(x), n_val) > target for x in k])
    return float(old), float(new), len(true_fpr)


def test_new_validation_rule_refuses_good_models_rarely_and_the_old_one_often():
    # Given certified models on 3,000 calibration and validation negatives,
    old, new, good = refusal_rates(0.01, 3000, 3000, 4000, seed=11)
    # then the lower-bound rule refuses at most about 5% of them (by construction), the old far more.
    assert new <= 0.06, f"new rule refused {new:.1%} of {good} good models"
    assert old > 3 * max(new, 0.01), f"old rule refused {old:.1%}, new {new:.1%}"
    assert negatives_needed(0.01) < 3000, "the setting can certify at all"


def test_a_champion_that_broke_on_the_audit_is_replaced_despite_lower_recall():
    # Given a candidate significantly worse in recall on the older month's validation persons,
    cand = candidate(badges_pos=np.arange(1000) < 900, as_of=NEXT_MONTH)
    champ = champion_like(cand, np.ones(1000, bool))
    # while the champion's lower bound on the newest month's audited persons is above the target,
    broke = dataclasses.replace(champ, newest_fpr_lower=0.013, newest_month="2021-12-20")
    d = decide(cand, broke)
    # then the certifying candidate passes without --policy-change, saying why,
    assert d.passed, d.reasons
    assert d.gates["recall_not_worse_than_champion"] is Outcome.SKIPPED, d.gates
    assert d.policy_change is None
    assert "breaches the target" in d.champion_breach
    assert "1.3000%" in d.champion_breach
    assert "breaches the target" in d.summary()
    assert d.figures["champion_newest_fpr_lower95"] == 0.013
    # but not when its certificate fails,
    assert not decide(dataclasses.replace(cand, cal_fpr_upper95=0.0102), broke).passed
    # and a champion whose bound is not above the target keeps the recall rule.
    held = dataclasses.replace(champ, newest_fpr_lower=0.009, newest_month="2021-12-20")
    d = decide(cand, held)
    assert d.gates["recall_not_worse_than_champion"] is Outcome.FAILED, d.gates
    assert not d.passed
    assert not d.champion_breach
