"""Metrics of scores against (noisy) labels: overall, at a threshold, per slice, and the set a run
logs for review (`review_metrics`; models/reporting/report.py logs it). Pure functions.

Weighted labels (a labels file's `weight` column: how many persons of the month each row stands
for, e.g. an audit's inverse inclusion probabilities) give weighted point estimates: counts are
sums of weights (estimates of the month's counts) and rates are ratios of them (Horvitz–Thompson /
Hájek). No Clopper–Pearson bound is given for them (`fpr_upper95` is NaN): the bound is exact for
k events among n persons counted once, not for a sum of weights, and the usual repair, Kish's
effective sample size (sum w)^2 / sum w^2, assumes the weights are unrelated to the outcome, which
an audit's strata break by design (they are the badge decision itself: every false positive sits
in the holder stratum, drawn at a different rate from the rest), so its "bound" could cover less
than 95%. The exact design-based bound for an audit is `commuter audit certify`'s.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from commuter_badge.models.core.threshold import clopper_pearson_upper

SLICE_COLUMNS = ("main_mode", "main_region", "archetype")
MIN_SLICE_CLASS = 30  # fewest negatives (positives) behind a logged slice FPR (recall)
PER_10K = ("fpr", "fpr_upper95", "recall", "precision", "suspected_noise_rate")


def weighted(weight: np.ndarray | None) -> bool:
    """True when `weight` is given and not all 1 (unit weights are plain counts)."""
    return weight is not None and not bool(np.all(np.asarray(weight) == 1))


def at_threshold(
    y: np.ndarray, proba: np.ndarray, threshold: float, weight: np.ndarray | None = None
) -> dict[str, float]:
    """FPR with its 95% Clopper–Pearson upper bound, recall and precision at `threshold`; with
    weights not all 1, weighted point estimates and no bound (module docstring)."""
    y = np.asarray(y).astype(int)
    badge = np.asarray(proba) >= threshold
    neg, pos = y == 0, y == 1
    if weighted(weight):
        w = np.asarray(weight, dtype="float64")
        fp, tp = float(w[badge & neg].sum()), float(w[badge & pos].sum())
        n_neg, n_pos, held = float(w[neg].sum()), float(w[pos].sum()), float(w[badge].sum())
        return {
            "fpr": fp / n_neg if n_neg else float("nan"),
            "fpr_upper95": float("nan"),
            "recall": tp / n_pos if n_pos else float("nan"),
            "precision": tp / held if held else float("nan"),
            "n_pos": n_pos,
            "n_neg": n_neg,
            "false_positives": fp,
            "false_negatives": n_pos - tp,
        }
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


def truth_metrics(
    prefix: str, frame: pd.DataFrame, threshold: float, weight: np.ndarray | None = None
) -> dict[str, float]:
    """`{prefix}true_fpr` and `{prefix}true_recall` against the simulated truth (`true_commuter`,
    from a simulated world's persons.parquet) at `threshold`; {} when the truth is not known for
    every person."""
    if "true_commuter" not in frame or not frame["true_commuter"].notna().all():
        return {}
    m = at_threshold(
        frame["true_commuter"].to_numpy(), frame["proba"].to_numpy(), threshold, weight
    )
    return {f"{prefix}true_fpr": m["fpr"], f"{prefix}true_recall": m["recall"]}


def summary(
    y: np.ndarray, proba: np.ndarray, threshold: float, weight: np.ndarray | None = None
) -> dict[str, float]:
    """Ranking, calibration and threshold metrics together (the docs/contract.md §4 set,
    unprefixed); with weights, each person counts as its weight."""
    y = np.asarray(y).astype(int)
    both = len(np.unique(y)) == 2
    w = np.asarray(weight, dtype="float64") if weighted(weight) else None
    out = {
        "auc": float(roc_auc_score(y, proba, sample_weight=w)) if both else float("nan"),
        "pr_auc": (
            float(average_precision_score(y, proba, sample_weight=w)) if both else float("nan")
        ),
        "brier": float(brier_score_loss(y, proba, sample_weight=w)),
        "threshold": float(threshold),
    }
    out.update(at_threshold(y, proba, threshold, w))
    return out


def by_slice(
    frame: pd.DataFrame, column: str, threshold: float, min_size: int = 20
) -> pd.DataFrame:
    """FPR and recall per value of `column` (frame has is_commuter, proba); tiny slices skipped."""
    rows = []
    is_weighted = weighted(frame["weight"].to_numpy() if "weight" in frame else None)
    for value, part in frame.groupby(column, sort=True):
        if len(part) < min_size:
            continue
        w = part["weight"].to_numpy() if "weight" in part else None
        m = at_threshold(part["is_commuter"].to_numpy(), part["proba"].to_numpy(), threshold, w)
        if is_weighted:  # weighted counts; how many persons they rest on beside them
            m["persons_neg"] = int((part["is_commuter"] == 0).sum())
            m["persons_pos"] = int((part["is_commuter"] == 1).sum())
        rows.append({"slice": column, "value": str(value) or "(empty)", "n": len(part), **m})
    return pd.DataFrame(rows)


def suspected_label_noise(
    y: np.ndarray, proba: np.ndarray, confident: float = 0.02, weight: np.ndarray | None = None
) -> dict[str, float]:
    """Share of labels the model contradicts with high confidence: a rough label-noise estimate
    (weighted counts with weights not all 1)."""
    y = np.asarray(y).astype(int)
    proba = np.asarray(proba)
    w = np.asarray(weight, dtype="float64") if weighted(weight) else np.ones(len(y))
    neg_hi = w[(y == 0) & (proba >= 1 - confident)].sum()
    pos_lo = w[(y == 1) & (proba <= confident)].sum()
    neg_hi, pos_lo = (neg_hi, pos_lo) if weighted(weight) else (int(neg_hi), int(pos_lo))
    total = w.sum()
    return {
        "suspected_noise_rate": (neg_hi + pos_lo) / total if total else float("nan"),
        "suspected_false_negatives_labels": neg_hi,
        "suspected_false_positive_labels": pos_lo,
    }


def _metric_key(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z_\-./ ]", "_", text)


def per10k(metrics: dict[str, float], names=PER_10K, prefix: str = "") -> dict[str, float]:
    """`{prefix}{name}_per10k` for each rate present: the same number times 10,000."""
    return {
        f"{prefix}{k}_per10k": float(metrics[f"{prefix}{k}"]) * 1e4
        for k in names
        if f"{prefix}{k}" in metrics and np.isfinite(metrics[f"{prefix}{k}"])
    }


def slice_table(frame: pd.DataFrame, threshold: float) -> pd.DataFrame:
    parts = [by_slice(frame, c, threshold) for c in SLICE_COLUMNS if c in frame.columns]
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def review_metrics(
    prefix: str,
    frame: pd.DataFrame,
    threshold: float,
    target_fpr: float,
    certificate: dict | None = None,
) -> tuple[dict[str, float], pd.DataFrame]:
    """What `log_review` logs, computed without MLflow: the metrics and the slice table (pure)."""
    y = frame["is_commuter"].to_numpy().astype(int)
    proba = frame["proba"].to_numpy()
    w = frame["weight"].to_numpy() if "weight" in frame else None  # weighted labels
    m = summary(y, proba, threshold, w)
    m.update(suspected_label_noise(y, proba, weight=w))
    metrics = {f"{prefix}{k}": float(v) for k, v in m.items() if k != "threshold"}
    metrics["threshold"] = float(threshold)
    metrics["target_fpr"] = float(target_fpr)
    metrics.update(per10k(metrics, prefix=prefix))
    metrics["target_fpr_per10k"] = float(target_fpr) * 1e4
    if certificate:
        metrics.update(per10k(certificate, ("fpr", "fpr_upper95"), prefix="cal_"))
    slices = slice_table(frame, threshold)
    for row in slices.itertuples():
        # A rate on a handful of persons is noise (a commuter archetype's "FPR" counts only its
        # mislabelled members); those stay in the slice table with their counts, not in metrics.
        key = _metric_key(f"{prefix}{row.slice}.{row.value}")
        # Persons, not weights: a slice's rate rests on how many persons were labelled in it.
        n_neg, n_pos = (
            getattr(row, "persons_neg", row.n_neg),
            getattr(row, "persons_pos", row.n_pos),
        )
        if n_neg >= MIN_SLICE_CLASS:
            metrics[f"{key}.fpr"] = float(row.fpr)
            metrics[f"{key}.fpr_upper95"] = float(row.fpr_upper95)
            metrics[f"{key}.fpr_per10k"] = float(row.fpr) * 1e4
        if n_pos >= MIN_SLICE_CLASS:
            metrics[f"{key}.recall"] = float(row.recall)
        metrics[f"{key}.n"] = float(row.n)
    return metrics, slices


def missed_commuters(proba: np.ndarray, badge: np.ndarray) -> dict[str, float]:
    """The commuters a month's decisions leave without a badge, estimated from calibrated
    probabilities alone (CBPE, as `models.core.monitor.cbpe`): expected commuters = sum of p,
    estimated recall = sum of p over badge holders / that, missed = expected x (1 - recall) = sum
    of p over persons without a badge. Assumes the calibration holds for the month."""
    p, held = np.asarray(proba, dtype="float64"), np.asarray(badge, dtype=bool)
    expected = float(p.sum())
    return {
        "expected_commuters": expected,
        "estimated_recall": float(p[held].sum()) / expected if expected else float("nan"),
        "estimated_missed_commuters": float(p[~held].sum()),
    }
