"""Where the FPR threshold is chosen: the Neyman–Pearson umbrella rule with a Clopper–Pearson bound.

Given held-out scores, pick the lowest threshold t (badge when score >= t) whose one-sided 95%
Clopper–Pearson upper bound on the false-positive rate over the held-out negatives is at most the
target. Because the bound accounts for the sampling of those negatives, the realised FPR on new
data exceeds the target in at most about 5% of such selections (tests/code/test_threshold.py checks
this by simulation).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import beta
from sklearn.exceptions import NotFittedError

from commuter_badge.errors import CommuterError

# Targets a certificate can be asked for: below 1 in 10,000 needs ~30,000 labelled negatives in
# the calibration part alone; above 50% is no badge policy at all.
MIN_TARGET_FPR = 1e-4
MAX_TARGET_FPR = 0.5


class NotEnoughNegativesError(CommuterError, ValueError):
    """Too few held-out negatives to certify the target FPR at all."""


def clopper_pearson_upper(
    k: int | np.ndarray, n: int, confidence: float = 0.95
) -> np.ndarray | float:
    """One-sided upper confidence bound on a rate after k events in n trials."""
    if n <= 0:
        raise ValueError("Clopper–Pearson bound needs n > 0")
    k = np.asarray(k)
    upper = np.where(k >= n, 1.0, beta.ppf(confidence, k + 1, np.maximum(n - k, 1)))
    return float(upper) if upper.ndim == 0 else upper


def negatives_needed(target_fpr: float, confidence: float = 0.95) -> int:
    """Fewest negatives for which zero false positives certifies `target_fpr`."""
    return math.ceil(math.log(1 - confidence) / math.log1p(-target_fpr))


class NeymanPearsonThreshold:
    """Chooses the operating threshold on held-out (score, label) pairs; sklearn-shaped."""

    def __init__(self, *, target_fpr: float = 0.01, confidence: float = 0.95) -> None:
        self.target_fpr = target_fpr
        self.confidence = confidence

    def fit(self, scores: np.ndarray, y: np.ndarray) -> NeymanPearsonThreshold:
        if not 0 < self.target_fpr < 1:
            raise ValueError(f"target FPR must be between 0 and 1 (got {self.target_fpr})")
        scores = np.asarray(scores, dtype="float64")
        negatives = np.sort(scores[np.asarray(y) == 0])
        n = len(negatives)
        need = negatives_needed(self.target_fpr, self.confidence)
        if n < need:
            raise NotEnoughNegativesError(
                f"{n} held-out negatives cannot certify FPR <= {self.target_fpr:g} at "
                f"{self.confidence:.0%} confidence; at least {need} are needed (label more "
                "non-commuters, or use a larger --target-fpr)"
            )
        # Candidate thresholds sit just above each distinct negative score; the false positives at
        # such a threshold are the negatives strictly above that score.
        values = np.unique(negatives)
        false_pos = n - np.searchsorted(negatives, values, side="right")
        upper = clopper_pearson_upper(false_pos, n, self.confidence)
        ok = np.nonzero(upper <= self.target_fpr)[0]
        i = ok[0]  # values ascend, so the first admissible one is the lowest threshold
        self.threshold_ = float(np.nextafter(values[i], np.inf))
        self.n_negatives_ = n
        self.false_positives_ = int(false_pos[i])
        self.fpr_ = self.false_positives_ / n
        self.fpr_upper_ = float(upper[i])
        return self

    def predict(self, scores: np.ndarray) -> np.ndarray:
        if not hasattr(self, "threshold_"):
            raise NotFittedError("NeymanPearsonThreshold is not fitted; call fit(scores, y) first")
        return np.asarray(scores) >= self.threshold_
