"""Metrics of scores against (noisy) labels: overall, at a threshold, per slice. Pure functions."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from commuter_badge.models.threshold import clopper_pearson_upper


def at_threshold(y: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, float]:
    """FPR with its 95% Clopper–Pearson upper bound, recall and precision at `threshold`."""
    y = np.asarray(y).astype(int)
    badge = np.asarray(proba) >= threshold
    neg, pos = y == 0, y == 1
    fp, tp = int((badge & neg).sum()), int((badge & pos).sum())
    n_neg, n_pos = int(neg.sum()), int(pos.sum())
    return {
        "fpr": fp / n_neg if n_neg else float("nan"),
        "fpr_upper95": clopper_pearson_upper(fp, n_neg) if n_neg else float("nan"),
        "recall": tp / n_pos if n_pos else float("nan"),
        "precision": tp / int(badge.sum()) if badge.any() else float("nan"),
        "n_pos": n_pos,
        "n_neg": n_neg,
        "false_positives": fp,
        "false_negatives": n_pos - tp,
    }


def summary(y: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, float]:
    """Ranking, calibration and threshold metrics together (the docs/contract.md §4 set, unprefixed)."""
    y = np.asarray(y).astype(int)
    both = len(np.unique(y)) == 2
    out = {
        "auc": float(roc_auc_score(y, proba)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, proba)) if both else float("nan"),
        "brier": float(brier_score_loss(y, proba)),
        "threshold": float(threshold),
    }
    out.update(at_threshold(y, proba, threshold))
    return out


def by_slice(
    frame: pd.DataFrame, column: str, threshold: float, min_size: int = 20
) -> pd.DataFrame:
    """FPR and recall per value of `column` (frame has is_commuter, proba); tiny slices skipped."""
    rows = []
    for value, part in frame.groupby(column, sort=True):
        if len(part) < min_size:
            continue
        m = at_threshold(part["is_commuter"].to_numpy(), part["proba"].to_numpy(), threshold)
        rows.append({"slice": column, "value": str(value) or "(empty)", "n": len(part), **m})
    return pd.DataFrame(rows)


def suspected_label_noise(
    y: np.ndarray, proba: np.ndarray, confident: float = 0.02
) -> dict[str, float]:
    """Share of labels the model contradicts with high confidence: a rough label-noise estimate."""
    y = np.asarray(y).astype(int)
    proba = np.asarray(proba)
    neg_hi = int(((y == 0) & (proba >= 1 - confident)).sum())
    pos_lo = int(((y == 1) & (proba <= confident)).sum())
    return {
        "suspected_noise_rate": (neg_hi + pos_lo) / len(y) if len(y) else float("nan"),
        "suspected_false_negatives_labels": neg_hi,
        "suspected_false_positive_labels": pos_lo,
    }
