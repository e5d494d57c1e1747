"""What a reviewer finds in an MLflow run: metrics, per-slice tables and figures for one scored set.

Rates are logged twice: as a fraction (`val_fpr`) and per 10,000 persons (`val_fpr_per10k`),
because MLflow's compare page rounds to three decimals and would show a certificate of 0.9849%
and the 1% target both as "0.01"; per 10,000 they read 98.49 and 100.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd

from commuter_badge.features.build import model_matrix
from commuter_badge.features.definitions import FEATURE_NAMES
from commuter_badge.models.core.metrics import review_metrics, slice_table, weighted
from commuter_badge.models.reporting import figures
from commuter_badge.models.reporting.figures import Caption

SHAP_SAMPLE = 10_000  # persons behind the global SHAP view: TreeSHAP costs ~0.5 ms a person at 1M


def run_caption(n: int, population: str = "validation persons") -> Caption:
    """Caption from the active run: its registered version when tagged, else its short id."""
    run = mlflow.active_run()
    if run is None:
        return Caption(n=n, population=population)
    tags = mlflow.get_run(run.info.run_id).data.tags
    version = tags.get("registered_version") or tags.get("model_version")
    model = f"v{version}" if version else f"run {run.info.run_id[:8]}"
    if tags.get("kind") == "baseline":
        model = f"rule baseline, {model}"
    return Caption(model=model, as_of=tags.get("as_of", ""), n=n, population=population)


def log_review(
    prefix: str,
    frame: pd.DataFrame,
    threshold: float,
    target_fpr: float,
    *,
    raw_proba: np.ndarray | None = None,
    figures_too: bool = True,
    caption: Caption | None = None,
    certificate: dict | None = None,
) -> dict[str, float]:
    """Log `review_metrics` (models/core/metrics.py), the slice table `{prefix}slices.json` and the
    figures for `frame` (is_commuter, proba); `caption` titles the figures (default: from the
    active run)."""
    metrics, slices = review_metrics(prefix, frame, threshold, target_fpr, certificate)
    mlflow.log_metrics(metrics)
    if len(slices):
        mlflow.log_table(slices, artifact_file=f"{prefix}slices.json")
    if figures_too and weighted(frame.get("weight", None)):
        # The figures count persons once each; drawn on weighted labels they would mislead.
        mlflow.set_tag(
            f"{prefix}figures",
            "not drawn: weighted labels (the figures count each person once); the weighted "
            "figures are the metrics",
        )
    elif figures_too:
        log_figures(
            prefix,
            frame,
            threshold,
            target_fpr,
            caption=caption or run_caption(len(frame)),
            raw_proba=raw_proba,
            certificate=certificate,
            slices=slices,
        )
    return metrics


def log_figures(
    prefix: str,
    frame: pd.DataFrame,
    threshold: float,
    target_fpr: float,
    *,
    caption: Caption,
    raw_proba: np.ndarray | None = None,
    certificate: dict | None = None,
    slices: pd.DataFrame | None = None,
) -> list[str]:
    """The review figures of one scored set under `figures/{prefix}*.png`; returns their paths."""
    y = frame["is_commuter"].to_numpy().astype(int)
    proba = frame["proba"].to_numpy()
    slices = slice_table(frame, threshold) if slices is None else slices
    drawn = {
        "roc": figures.roc(y, proba, threshold, target_fpr, caption),
        "precision_recall": figures.precision_recall(y, proba, threshold, caption),
        "calibration": figures.calibration(y, proba, raw_proba, caption),
        "fpr_recall_vs_threshold": figures.threshold_tradeoff(
            y, proba, threshold, target_fpr, caption, certificate
        ),
    }
    if len(slices):
        drawn["slices"] = figures.slices(slices, target_fpr, caption)
    paths = []
    for name, fig in drawn.items():
        path = f"figures/{prefix}{name}.png"
        mlflow.log_figure(fig, path)
        paths.append(path)
    return paths


def contributions(
    booster, frame: pd.DataFrame, limit: int = SHAP_SAMPLE, seed: int = 0, threads: int = 1
):
    """TreeSHAP contributions (log-odds, bias column dropped) and feature values of up to `limit`
    persons of `frame`, drawn at random with `seed` when there are more. Each person's
    contributions are computed by one thread alone, so `threads` changes no value."""
    if len(frame) > limit:
        frame = frame.sample(limit, random_state=seed)
    x = model_matrix(frame)
    contrib = booster.predict(x, pred_contrib=True, num_threads=threads)[:, :-1]
    return contrib, x


def log_drivers(
    booster, frame: pd.DataFrame, caption: Caption, prefix: str = "val_", threads: int = 1
) -> dict:
    """Feature importance (gain) and the global SHAP view of `frame`'s persons, as figures and JSON."""
    gains = booster.feature_importance("gain")
    contrib, x = contributions(booster, frame, threads=threads)
    mean_abs = dict(zip(FEATURE_NAMES, map(float, np.abs(contrib).mean(axis=0)), strict=True))
    mlflow.log_dict(mean_abs, f"{prefix}shap_mean_abs.json")
    # Split gain is a property of the trees, not of any persons: its title carries no n.
    mlflow.log_figure(
        figures.importance(FEATURE_NAMES, gains, Caption(caption.model, caption.as_of)),
        "figures/feature_importance.png",
    )
    shap_caption = Caption(caption.model, caption.as_of, len(x), caption.population)
    mlflow.log_figure(
        figures.shap_summary(FEATURE_NAMES, contrib, x, shap_caption),
        f"figures/{prefix}shap_summary.png",
    )
    return mean_abs
