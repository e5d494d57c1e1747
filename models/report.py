"""What a reviewer finds in an MLflow run: metrics, per-slice tables and figures for one scored set."""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd

from commuter_badge.models import figures
from commuter_badge.models.metrics import by_slice, summary, suspected_label_noise

SLICE_COLUMNS = ("main_mode", "main_region", "archetype")
MIN_SLICE_CLASS = 30  # fewest negatives (positives) behind a logged slice FPR (recall)


def _metric_key(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z_\-./ ]", "_", text)


def slice_table(frame: pd.DataFrame, threshold: float) -> pd.DataFrame:
    parts = [by_slice(frame, c, threshold) for c in SLICE_COLUMNS if c in frame.columns]
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def log_review(
    prefix: str,
    frame: pd.DataFrame,
    threshold: float,
    target_fpr: float,
    *,
    raw_proba: np.ndarray | None = None,
    figures_too: bool = True,
) -> dict[str, float]:
    """Log metrics named `{prefix}auc` etc., slice metrics and figures for `frame` (is_commuter, proba)."""
    y = frame["is_commuter"].to_numpy().astype(int)
    proba = frame["proba"].to_numpy()
    m = summary(y, proba, threshold)
    m.update(suspected_label_noise(y, proba))
    metrics = {f"{prefix}{k}": float(v) for k, v in m.items() if k != "threshold"}
    metrics["threshold"] = float(threshold)
    metrics["target_fpr"] = float(target_fpr)
    slices = slice_table(frame, threshold)
    for row in slices.itertuples():
        # A rate on a handful of persons is noise (a commuter archetype's "FPR" counts only its
        # mislabelled members); those stay in the slice table with their counts, not in metrics.
        key = _metric_key(f"{prefix}{row.slice}.{row.value}")
        if row.n_neg >= MIN_SLICE_CLASS:
            metrics[f"{key}.fpr"] = float(row.fpr)
            metrics[f"{key}.fpr_upper95"] = float(row.fpr_upper95)
        if row.n_pos >= MIN_SLICE_CLASS:
            metrics[f"{key}.recall"] = float(row.recall)
        metrics[f"{key}.n"] = float(row.n)
    mlflow.log_metrics(metrics)
    if len(slices):
        mlflow.log_table(slices, artifact_file=f"{prefix}slices.json")
    if figures_too:
        for name, fig in (
            ("roc", figures.roc(y, proba, threshold, target_fpr)),
            ("precision_recall", figures.precision_recall(y, proba, threshold)),
            ("calibration", figures.calibration(y, proba, raw_proba)),
            (
                "fpr_recall_vs_threshold",
                figures.threshold_tradeoff(y, proba, threshold, target_fpr),
            ),
        ):
            mlflow.log_figure(fig, f"figures/{prefix}{name}.png")
            plt.close(fig)
    return metrics
