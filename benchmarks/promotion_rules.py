"""How often does each validation rule refuse a correctly certified model? A simulation.

A model is correctly certified when its true FPR is at most the target. The Neyman–Pearson
threshold (models/core/threshold.py) sits just above the (k*+1)-th largest of the n_cal calibration
negatives' scores, k* the most false positives whose Clopper–Pearson upper bound is within target;
its true FPR is then Beta(k* + 1, n_cal - k*) whatever the score law (only ranks matter). The
validation part then sees k ~ Binomial(n_val, true FPR) false positives, and
  old rule  refuses when k / n_val > target;
  new rule  refuses when the one-sided 95% Clopper–Pearson LOWER bound of k / n_val > target.
Printed: refusal rates among correctly certified models, and at the worst good case (true FPR
exactly the target). Run: python benchmarks/promotion_rules.py [--repeats N]
"""

from __future__ import annotations

import argparse

import numpy as np

from commuter_badge.models.core.gates import clopper_pearson_lower
from commuter_badge.models.core.threshold import clopper_pearson_upper


def admissible_false_positives(n_cal: int, target: float) -> int:
    ok = np.nonzero(clopper_pearson_upper(np.arange(n_cal), n_cal) <= target)[0]
    return int(ok[-1])


def lower_refuses(k: np.ndarray, n: int, target: float) -> np.ndarray:
    # The lower bound grows with k: find the smallest k it refuses once, then compare.
    first = next(x for x in range(n + 1) if clopper_pearson_lower(x, n) > target)
    return k >= first


def rates(target: float, n_cal: int, n_val: int, repeats: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    k_star = admissible_false_positives(n_cal, target)
    true_fpr = rng.beta(k_star + 1, n_cal - k_star, repeats)
    good = true_fpr[true_fpr <= target]
    k = rng.binomial(n_val, good)
    at_target = rng.binomial(n_val, target, repeats)
    return {
        "good_share": len(good) / repeats,
        "mean_true_fpr": float(good.mean()),
        "old": float((k / n_val > target).mean()),
        "new": float(lower_refuses(k, n_val, target).mean()),
        "old_at_target": float((at_target / n_val > target).mean()),
        "new_at_target": float(lower_refuses(at_target, n_val, target).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200_000)
    args = parser.parse_args()
    print(f"refusals of correctly certified models, {args.repeats:,} simulated trainings each")
    print(
        "target  negatives(cal=val)  certified-ok  mean true FPR   old rule  new rule   "
        "| at true FPR = target: old  new"
    )
    for target in (0.01, 0.02):
        for n in (1_000, 3_000, 10_000, 30_000):
            r = rates(target, n, n, args.repeats, seed=n)
            print(
                f"{target:6.2%}  {n:18,}  {r['good_share']:12.1%}  {r['mean_true_fpr']:13.3%}  "
                f"{r['old']:9.1%}  {r['new']:8.2%}   |  {r['old_at_target']:24.1%}  "
                f"{r['new_at_target']:.2%}"
            )


if __name__ == "__main__":
    main()
