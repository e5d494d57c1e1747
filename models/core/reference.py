"""The training reference a month is monitored against, stored with each model version.

At training, the validation persons (data the trees and the calibration never saw) are summarised
compactly: per feature, quantile bin edges with the counts in each bin (for PSI) and a capped
random sample of values (for the two-sample KS test); the calibrated scores, as a capped sample
and as counts in fixed score bins; the observed label rate against the score (an isotonic curve,
for the FPR and recall estimates); the share of them given a badge; and the window's calendar
(working days, weekdays off, make-up weekend days: features/workdays.py `window_calendar`), since
day-count features are only comparable between windows the calendar treats alike. A few hundred KB of JSON,
logged as `monitor/reference.json` on the model's run (models/mlflow_edge/reference_log.py); no person
id is kept. `commuter monitor` (models/core/monitor.py) reads it back. Versions trained before
references were stored have none, and monitor says so. This module builds it (pure).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from commuter_badge.errors import CommuterError
from commuter_badge.features.definitions import FEATURE_NAMES

SAMPLE_CAP = 5_000  # values kept per feature and of the scores, for the KS test
QUANTILES = np.linspace(0, 1, 11)[1:-1]  # decile edges; ties merge bins of discrete features
SCORE_BINS = 50  # equal-width score bins on [0, 1] for the overlaid histograms
VERSION = 1


class NoReferenceError(CommuterError, LookupError):
    """The model version carries no training reference."""


def bin_edges(values: np.ndarray) -> list[float]:
    """Inner bin edges: the distinct deciles of the finite values (empty: one bin)."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return []
    return sorted({float(x) for x in np.quantile(finite, QUANTILES)})


def bin_counts(values: np.ndarray, edges: list[float]) -> list[int]:
    """Counts in (-inf, e1], (e1, e2], ..., (ek, inf), and missing values last."""
    values = np.asarray(values, dtype="float64")
    missing = ~np.isfinite(values)
    index = np.searchsorted(np.asarray(edges, dtype="float64"), values[~missing], side="left")
    counts = np.bincount(index, minlength=len(edges) + 1)
    return [int(c) for c in counts] + [int(missing.sum())]


def capped_sample(values: np.ndarray, rng: np.random.Generator, cap: int = SAMPLE_CAP) -> list:
    finite = np.asarray(values, dtype="float64")
    finite = finite[np.isfinite(finite)]
    if len(finite) > cap:
        finite = rng.choice(finite, cap, replace=False)
    return [float(x) for x in np.sort(finite)]


def score_histogram(proba: np.ndarray) -> list[int]:
    counts, _ = np.histogram(np.asarray(proba, dtype="float64"), SCORE_BINS, range=(0.0, 1.0))
    return [int(c) for c in counts]


def label_rate_curve(proba: np.ndarray, y: np.ndarray) -> dict[str, list[float]]:
    """Isotonic map from the model's score to the rate of commuter labels at that score.

    CBPE (models/core/monitor.py) needs probabilities that are right where the badge is decided; Platt's
    two-parameter curve is not, in the top tail (label noise flattens it), so, as NannyML's CBPE
    does, the estimate uses its own calibration fitted on reference data with labels."""
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True)
    iso.fit(np.asarray(proba, dtype="float64"), np.asarray(y, dtype="float64"))
    return {"x": [float(v) for v in iso.X_thresholds_], "y": [float(v) for v in iso.y_thresholds_]}


def build_reference(
    val: pd.DataFrame, threshold: float, calendar: dict[str, int] | None = None, seed: int = 0
) -> dict:
    """The reference of the validation persons `val` (features, `proba`, `badge`) whose window's
    calendar is `calendar` (None: unknown, as in references stored before it was); pure."""
    rng = np.random.default_rng(seed)
    features = {}
    for name in FEATURE_NAMES:
        values = val[name].to_numpy(dtype="float64")
        edges = bin_edges(values)
        features[name] = {
            "edges": edges,
            "counts": bin_counts(values, edges),
            "sample": capped_sample(values, rng),
        }
    proba = val["proba"].to_numpy(dtype="float64")
    score_edges = bin_edges(proba)
    return {
        "version": VERSION,
        "n": len(val),
        "threshold": float(threshold),
        "badge_share": float(np.mean(proba >= threshold)) if len(val) else float("nan"),
        "calendar": calendar,
        "features": features,
        "label_rate": label_rate_curve(proba, val["is_commuter"].to_numpy()),
        "scores": {
            "edges": score_edges,
            "counts": bin_counts(proba, score_edges),
            "sample": capped_sample(proba, rng),
            "histogram": score_histogram(proba),
        },
    }
