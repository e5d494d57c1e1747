"""Where the FPR threshold is chosen: the Neyman–Pearson umbrella rule with a Clopper–Pearson bound.

Given held-out scores, pick the lowest threshold t (badge when score >= t) whose one-sided 95%
Clopper–Pearson upper bound on the false-positive rate over the held-out negatives is at most the
target. Because the bound accounts for the sampling of those negatives, the realised FPR on new
data exceeds the target in at most about 5% of such selections (tests/code/test_threshold.py checks
this by simulation).

Label noise. Measured against labels, every commuter wrongly labelled 0 who scores above t counts
as a false positive: with a 42% commuter share and 1% of labels wrong in each class, that alone is
0.72% of the negatives, and a 1% certificate on a few thousand negatives is then met only by a
threshold above most commuters (benchmarks/quality_bench.py: recall 40-80%). With `label_noise`
= rho > 0 the certificate is against the truth instead, under a stated assumption: labels are
wrong at random (whatever the person's crossings), commuters' at rate at least rho. The commuters
labelled 0 above t are then at least a binomial lower quantile of rho over the commuters above t
(counted from the held-out persons labelled 1 above t); that many are taken off the false
positives, and the two bounds share the confidence (half of 1 - confidence each). With rho = 0
(the default) nothing changes. `label_noise_estimate` gives a rate to check rho against.
Every later comparison of a version's FPR with its target on labelled persons (the validation gate,
`commuter evaluate`, the monitor's estimate) takes the mislabelled commuters off the same way, as
a point estimate (`against_truth`), so a version certified under rho is judged under rho.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import beta, binom
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


def label_noise_estimate(scores: np.ndarray, y: np.ndarray) -> float:
    """Share of wrong labels among non-commuters, read off the persons labelled 1 who score below
    the median of those labelled 0: true commuters almost never score that low, so they are
    non-commuters labelled 1, and the half of all non-commuters below that median hold them.
    Under noise at the same rate in both classes it estimates `label_noise`; commuters the model
    misses (scoring that low) push it up, so it is a check, never used on its own."""
    scores, y = np.asarray(scores, dtype="float64"), np.asarray(y)
    negatives = scores[y == 0]
    if len(negatives) == 0:
        return float("nan")
    median = np.median(negatives)
    below_pos = int(((scores < median) & (y == 1)).sum())
    below_neg = int((negatives < median).sum())
    return below_pos / max(below_neg + below_pos, 1)


def against_truth(
    false_pos: float, negatives: float, commuters_above: float, commuters: float, label_noise: float
) -> tuple[float, float]:
    """False positives and negatives counted against labels, restated against the truth under the
    label-noise assumption: of the persons labelled 1, `label_noise` of as many again are
    commuters labelled 0, both above the threshold (taken off the false positives) and in all
    (taken off the negatives). With label_noise = 0 the counts are returned unchanged."""
    if label_noise <= 0:
        return false_pos, negatives
    return (
        max(false_pos - label_noise * commuters_above, 0.0),
        max(negatives - label_noise * commuters, 1.0),
    )


def metrics_against_truth(metrics: dict, label_noise: float, prefix: str) -> tuple[float, float]:
    """`against_truth` on the counts a run logs under `prefix` (val_, eval_): false positives and
    negatives restated under `label_noise`."""
    n_pos = metrics[f"{prefix}n_pos"]
    return against_truth(
        metrics[f"{prefix}false_positives"],
        metrics[f"{prefix}n_neg"],
        n_pos - metrics[f"{prefix}false_negatives"],
        n_pos,
        label_noise,
    )


class NeymanPearsonThreshold:
    """Chooses the operating threshold on held-out (score, label) pairs; sklearn-shaped."""

    def __init__(
        self, *, target_fpr: float = 0.01, confidence: float = 0.95, label_noise: float = 0.0
    ) -> None:
        self.target_fpr = target_fpr
        self.confidence = confidence
        self.label_noise = label_noise

    def fit(self, scores: np.ndarray, y: np.ndarray) -> NeymanPearsonThreshold:
        if not 0 < self.target_fpr < 1:
            raise ValueError(f"target FPR must be between 0 and 1 (got {self.target_fpr})")
        if not 0 <= self.label_noise < 0.5:
            raise ValueError(f"label noise must be in [0, 0.5) (got {self.label_noise})")
        scores = np.asarray(scores, dtype="float64")
        negatives = np.sort(scores[np.asarray(y) == 0])
        positives = np.sort(scores[np.asarray(y) == 1])
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
        counted, n_true, confidence = false_pos, n, self.confidence
        if self.label_noise > 0:
            rho, alpha = self.label_noise, (1 - self.confidence) / 2
            commuters_above = len(positives) - np.searchsorted(positives, values, side="right")
            mislabelled = binom.ppf(alpha, commuters_above, rho).astype(np.int64)
            counted = np.maximum(false_pos - mislabelled, 0)
            # the labelled-0 persons who are commuters are not negatives at all
            n_true = max(n - int(np.floor(rho * len(positives))), 1)
            confidence = 1 - alpha
        upper = clopper_pearson_upper(counted, n_true, confidence)
        ok = np.nonzero(upper <= self.target_fpr)[0]
        if not ok.size:  # only with label noise: too few negatives once commuters are set apart
            raise NotEnoughNegativesError(
                f"{n_true} held-out negatives (after setting apart the commuters labelled 0 at "
                f"label noise {self.label_noise:g}) cannot certify FPR <= {self.target_fpr:g}"
            )
        i = ok[0]  # values ascend, so the first admissible one is the lowest threshold
        self.threshold_ = float(np.nextafter(values[i], np.inf))
        self.n_negatives_ = n
        self.false_positives_ = int(false_pos[i])
        self.mislabelled_taken_off_ = int(false_pos[i] - counted[i])
        self.fpr_ = self.false_positives_ / n
        self.fpr_upper_ = float(upper[i])
        return self

    def predict(self, scores: np.ndarray) -> np.ndarray:
        if not hasattr(self, "threshold_"):
            raise NotFittedError("NeymanPearsonThreshold is not fitted; call fit(scores, y) first")
        return np.asarray(scores) >= self.threshold_
