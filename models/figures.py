"""Review figures: ROC, precision–recall, calibration, FPR and recall against threshold."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from commuter_badge.models.threshold import clopper_pearson_upper  # noqa: E402


def roc(y, proba, threshold: float, target_fpr: float):
    fig, ax = plt.subplots(figsize=(5, 4.5))
    fpr, tpr, _ = roc_curve(y, proba)
    ax.plot(fpr, tpr, label="model")
    at = proba >= threshold
    ax.scatter(
        [at[y == 0].mean()], [at[y == 1].mean()], color="red", zorder=3, label="operating point"
    )
    ax.axvline(target_fpr, ls="--", color="grey", label=f"target FPR {target_fpr:g}")
    ax.set(
        xscale="log",
        xlim=(1e-4, 1),
        xlabel="false-positive rate (log)",
        ylabel="recall",
        title="ROC",
    )
    ax.legend(loc="lower right")
    return fig


def precision_recall(y, proba, threshold: float):
    fig, ax = plt.subplots(figsize=(5, 4.5))
    precision, recall, _ = precision_recall_curve(y, proba)
    ax.plot(recall, precision)
    at = proba >= threshold
    ax.scatter([at[y == 1].mean()], [y[at].mean() if at.any() else 0], color="red", zorder=3)
    ax.set(xlabel="recall", ylabel="precision", title="Precision–recall", ylim=(0, 1.01))
    return fig


def calibration(y, proba, raw_proba=None):
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.plot([0, 1], [0, 1], ls="--", color="grey")
    frac, mean = calibration_curve(y, proba, n_bins=15, strategy="quantile")
    ax.plot(mean, frac, marker="o", label="calibrated")
    if raw_proba is not None:
        frac, mean = calibration_curve(y, raw_proba, n_bins=15, strategy="quantile")
        ax.plot(mean, frac, marker=".", alpha=0.6, label="booster before calibration")
    ax.set(
        xlabel="predicted probability", ylabel="observed share of commuters", title="Calibration"
    )
    ax.legend(loc="upper left")
    return fig


def threshold_tradeoff(y, proba, threshold: float, target_fpr: float):
    """FPR (with its 95% upper bound) and recall as the threshold moves."""
    grid = np.linspace(0.0, 1.0, 201)
    neg, pos = proba[y == 0], proba[y == 1]
    fp = np.array([(neg >= t).sum() for t in grid])
    fpr = fp / max(len(neg), 1)
    upper = clopper_pearson_upper(fp, max(len(neg), 1))
    recall = np.array([(pos >= t).mean() if len(pos) else np.nan for t in grid])
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot(grid, fpr, label="FPR")
    ax.plot(grid, upper, ls=":", label="FPR 95% upper bound")
    ax.axhline(target_fpr, ls="--", color="grey", label=f"target {target_fpr:g}")
    ax.axvline(threshold, color="red", lw=1, label=f"threshold {threshold:.3f}")
    ax.set(yscale="log", ylim=(1e-4, 1), xlabel="threshold", ylabel="false-positive rate (log)")
    ax2 = ax.twinx()
    ax2.plot(grid, recall, color="green", label="recall")
    ax2.set(ylabel="recall", ylim=(0, 1.01))
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [h.get_label() for h in lines], loc="lower left", fontsize=8)
    ax.set_title("FPR and recall against threshold")
    return fig


def importance(names, gains):
    order = np.argsort(gains)
    fig, ax = plt.subplots(figsize=(6, 7))
    ax.barh(np.array(names)[order], np.asarray(gains)[order])
    ax.set(xlabel="total gain", title="Feature importance")
    fig.tight_layout()
    return fig
