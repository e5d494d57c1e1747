"""The FPR threshold certified on an audit's persons, with the audit's stratified design.

An audit (models/core/audit.py) draws a simple random sample without replacement in each stratum
(badge holders and non-holders of the month). Its weighted labels carry each person's weight
N_s / n_s, so the strata are the distinct weights: a stratum of N_s persons, n_s of them in the
file, N_s = weight x n_s. The certificate is for that month's whole population (the N = sum N_s
persons it was drawn from), on the audited persons the trees never saw (the `certify` share).

FPR(t) = A(t) / M: A(t) the month's non-commuters scoring >= t, M all its non-commuters.
- A(t): exact test inversion over the strata. The statistic is the weighted count of certifying
  non-commuters at or above t, T = sum (N_s / n'_s) k_s; given A split as A_1 + A_2 between the
  strata, the k_s are independent hypergeometric counts, so P(T <= T_observed) is a sum of their
  products. The p-value of A is its largest value over every split (no assumption on where the
  false positives sit); the bound is the largest A whose p-value is at least alpha_A. Adding a
  false positive anywhere makes T larger, so the p-value falls with A and with t.
- M does not depend on the model: its lower bound uses every audited person (the training share
  too), per stratum (audit.lower_count), the strata sharing alpha_M.
- alpha_A + alpha_M = 1 - confidence (0.045 + 0.005 at 95%): both hold together with at least the
  confidence (union bound). The threshold is the lowest t whose bound is at most the target; as the
  bound falls with t, that choice is covered by the bound at the one fixed t where the true FPR
  crosses the target (the argument of the Neyman-Pearson umbrella rule, models/core/threshold.py).
Assumptions: simple random sampling without replacement within each stratum, the certifying share
chosen independently of the labels (a keyed hash of the person), verdicts true (no label noise),
verified persons missing at random within their stratum; two strata at most.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import hypergeom

from commuter_badge.errors import CommuterError
from commuter_badge.models.core.audit import lower_count, upper_count

ALPHA_M_SHARE = 0.1  # of 1 - confidence, for the denominator (M is known far better than A)


class DesignError(CommuterError, ValueError):
    """Weighted labels that are not an audit's stratified design."""


@dataclass(frozen=True)
class Stratum:
    size: int  # N_s: the month's persons in the stratum
    audited: int  # n_s: its persons in the labels
    negatives: int  # audited non-commuters (all audited persons)
    certifying: int  # n'_s: audited persons held out from the trees


def strata_of(weight: np.ndarray) -> np.ndarray:
    """A stratum index per person: persons with the same weight share a stratum."""
    _, index = np.unique(np.round(np.asarray(weight, dtype="float64"), 9), return_inverse=True)
    if index.max(initial=0) > 1:
        raise DesignError(
            f"the weighted labels hold {index.max() + 1} distinct weights; a certificate on an "
            "audit's design takes at most two strata (`commuter audit certify --labels-out`)"
        )
    return index


def p_value(total: int, observed: float, strata: list[Stratum]) -> float:
    """Largest P(T <= observed) over the splits of `total` false positives between the strata."""
    if total < 0:
        return 1.0
    (n1, s1), rest = (strata[0].size, strata[0].certifying), strata[1:]
    w1 = n1 / s1
    if not rest:
        return float(hypergeom.cdf(math.floor(observed / w1 + 1e-9), n1, min(total, n1), s1))
    n2, s2 = rest[0].size, rest[0].certifying
    w2 = n2 / s2
    a1 = np.arange(max(0, total - n2), min(total, n1) + 1)[:, None]
    k1 = np.arange(0, min(s1, math.floor(observed / w1 + 1e-9)) + 1)[None, :]
    limit = np.floor((observed - w1 * k1) / w2 + 1e-9)
    p = hypergeom.pmf(k1, n1, a1, s1) * hypergeom.cdf(limit, n2, total - a1, s2)
    return float(p.sum(axis=1).max())


def negatives_lower(strata: list[Stratum], alpha: float) -> int:
    """Lower bound on the month's non-commuters M, every stratum at alpha / S."""
    return sum(lower_count(s.size, s.audited, s.negatives, 1 - alpha / len(strata)) for s in strata)


def count_upper(observed: float, strata: list[Stratum], alpha: float) -> int:
    """Largest A (false positives in the month) whose p-value is still >= alpha."""
    lo, hi, most = 0, 64, sum(s.size for s in strata)
    if p_value(lo, observed, strata) < alpha:
        return 0
    while hi < most and p_value(hi, observed, strata) >= alpha:  # a bracket first: cheap A
        lo, hi = hi, min(2 * hi, most)
    while lo < hi:  # the p-value falls with A: bisect for the last A where it is >= alpha
        mid = (lo + hi + 1) // 2
        if p_value(mid, observed, strata) >= alpha:
            lo = mid
        else:
            hi = mid - 1
    return lo


class StratifiedThreshold:
    """The lowest threshold whose design-based FPR bound is at most the target (module docstring).

    fit(scores, y, stratum, certifying, strata) with arrays over the certifying persons;
    `certified_` is False when no threshold reaches the target (then the threshold is the
    one above every certifying non-commuter and `fpr_upper_` its bound)."""

    def __init__(self, *, target_fpr: float, confidence: float = 0.95) -> None:
        self.target_fpr, self.confidence = target_fpr, confidence

    def fit(self, scores, y, stratum, strata: list[Stratum]) -> StratifiedThreshold:
        scores, y, stratum = np.asarray(scores, float), np.asarray(y), np.asarray(stratum)
        alpha = 1 - self.confidence
        alpha_m, alpha_a = alpha * ALPHA_M_SHARE, alpha * (1 - ALPHA_M_SHARE)
        self.negatives_lower_ = max(negatives_lower(strata, alpha_m), 1)
        weight = np.array([s.size / s.certifying for s in strata])
        neg = y == 0
        values = np.unique(scores[neg])
        # T(t) for t just above each distinct negative score, and for t below all of them
        order = np.argsort(scores[neg])
        w_sorted = weight[stratum[neg]][order]
        above = np.concatenate([[w_sorted.sum()], w_sorted.sum() - np.cumsum(w_sorted)])
        ends = np.searchsorted(np.sort(scores[neg]), values, side="right")
        observed = np.concatenate([[above[0]], above[ends]])  # index 0: t = lowest score
        cut = math.floor(self.target_fpr * self.negatives_lower_) + 1  # A that breaks the target
        if not neg.any():
            raise DesignError("the certifying persons hold no non-commuter; audit more persons")
        certified = p_value(cut, observed[-1], strata) < alpha_a
        lo, hi = 0, len(observed) - 1
        if certified:
            while lo < hi:  # certified-ness rises with t: bisect for the lowest certified one
                mid = (lo + hi) // 2
                if p_value(cut, observed[mid], strata) < alpha_a:
                    hi = mid
                else:
                    lo = mid + 1
        else:
            lo = len(observed) - 1
        thresholds = np.concatenate([[values[0] if len(values) else 0.0], values])
        t = thresholds[lo]
        self.threshold_ = float(t if lo == 0 else np.nextafter(t, np.inf))
        self.certified_ = bool(certified)
        self.false_positives_ = int(((scores >= self.threshold_) & neg).sum())
        m_hat = sum(s.size * s.negatives / s.audited for s in strata)
        self.fpr_ = float(observed[lo] / m_hat) if m_hat else 0.0
        self.fpr_upper_ = count_upper(observed[lo], strata, alpha_a) / self.negatives_lower_
        self.n_negatives_ = int(neg.sum())
        self.n_persons_ = len(y)
        return self


STRATUM_COLUMNS = ("stratum", "stratum_size", "stratum_audited", "stratum_negatives")


def certifying_table(rows, stratum: np.ndarray, strata: list[Stratum]):
    """The certifying persons with their stratum's design, as logged for the gates."""
    out = rows.copy()
    out["stratum"] = stratum
    for name, field in zip(STRATUM_COLUMNS[1:], ("size", "audited", "negatives"), strict=True):
        out[name] = [getattr(strata[s], field) for s in stratum]
    return out


def fpr_lower(table, badge: np.ndarray, confidence: float = 0.95) -> float:
    """One-sided lower bound on a model's FPR over the audited month, from its `badge` on the
    certifying persons of `certifying_table`: per stratum, the exact lower bound on its badged
    non-commuters (audit.lower_count) over the exact upper bound on its non-commuters, every
    bound at alpha / (2 S) (union bound). Conservative: a breach it shows is a breach."""
    y, stratum = np.asarray(table["is_commuter"]), np.asarray(table["stratum"])
    alpha = 1 - confidence
    found, negatives = 0, 0
    groups = sorted(set(stratum.tolist()))
    each = 1 - alpha / (2 * len(groups))
    for s in groups:
        rows = stratum == s
        first = table[rows].iloc[0]
        size, certifying = int(first["stratum_size"]), int(rows.sum())
        k = int((badge[rows] & (y[rows] == 0)).sum())
        found += lower_count(size, certifying, k, each)
        negatives += upper_count(
            size, int(first["stratum_audited"]), int(first["stratum_negatives"]), each
        )
    return found / max(negatives, 1)
