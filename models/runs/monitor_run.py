"""`commuter monitor` as an MLflow run of kind `monitor`, its outcome as tags on the judged version.

The judging itself is pure (models/core/monitor.py); this shell loads the model and its reference,
builds the month's features, logs metrics (each check's value, band and margins both ways), the
report and two figures (PSI per feature; the month's score histogram over the reference's), and
tags the version: `monitor.alarm`, `monitor.run_id`, `monitor.as_of`, `monitor.estimated_fpr`,
`monitor.closest_check` (the check nearest its limit, with its margin).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import mlflow
import numpy as np
from matplotlib.figure import Figure
from mlflow.tracking import MlflowClient

from commuter_badge.features.build import build_features, model_matrix
from commuter_badge.features.context import RunContext
from commuter_badge.features.coverage import check_coverage
from commuter_badge.models.core.bundle import CommuterModel
from commuter_badge.models.core.monitor import (
    MIN_PERSONS,
    MonitorError,
    MonitorResult,
    Thresholds,
    monitor,
)
from commuter_badge.models.core.reference import SCORE_BINS
from commuter_badge.models.mlflow_edge import registry
from commuter_badge.models.mlflow_edge.reference_log import load_reference
from commuter_badge.models.runs.promotion import version_label_noise
from commuter_badge.models.runs.shell import logged_run, open_store, tag_version
from commuter_badge.settings import MODEL_NAME


def drift_figure(result: MonitorResult, limit: float) -> Figure:
    """PSI per feature as its alarm compares it (per working day for day counts across calendars),
    largest first, with the alarm lines. Built on Figure, never pyplot, so it renders with Agg on a
    server without display (as models/reporting/figures.py does)."""
    rows = sorted(result.features, key=lambda f: f["psi_compared"])
    fig = Figure(figsize=(7, 0.25 * len(rows) + 1.5))
    ax = fig.subplots()
    values = [f["psi_compared"] for f in rows]
    # red: beyond its limit, alarms; grey: reported only (calendar phase or weekly pattern across
    # calendars: models/core/calendar_drift.py); blue: within its limit
    colours = [
        "tab:gray" if not f["alarms"] else "tab:red" if f["margin"] < 0 else "tab:blue"
        for f in rows
    ]
    ax.barh([f["name"] for f in rows], values, color=colours)
    ax.axvline(limit, ls="--", color="grey", label=f"alarm above PSI {limit:g}")
    per_day = {f["limit"] for f in rows if f["compared_as"] == "per_day"}
    for other in sorted(per_day - {limit}):
        ax.axvline(other, ls=":", color="grey", label=f"per working day: alarm above {other:g}")
    ax.set(xlabel="PSI against the training reference")
    ax.tick_params(axis="y", labelsize=7)
    same = result.calendar.get("same", True)
    ax.set_title(
        f"Feature drift · v{result.model_version or '?'} · as_of {result.as_of} · "
        f"n = {result.n:,} persons"
        + ("" if same else "\nanother calendar than training: day counts per working day"),
        fontsize=10,
    )
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def score_figure(result: MonitorResult) -> Figure:
    """The month's score histogram over the reference's (shares, log scale), threshold marked."""
    edges = np.linspace(0, 1, SCORE_BINS + 1)
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    for counts, label in (
        (result.reference_score_histogram, f"training reference (n = {result.reference_n:,})"),
        (result.score_histogram, f"as_of {result.as_of} (n = {result.n:,})"),
    ):
        c = np.asarray(counts, dtype="float64")
        share = c / c.sum() if c.sum() else c
        ax.stairs(np.maximum(share, 1e-5), edges, label=label, fill=False, linewidth=1.5)
    ax.axvline(result.threshold, color="red", ls="--", label=f"threshold {result.threshold:.3f}")
    ax.set(yscale="log", xlabel="commuter probability", ylabel="share of persons (log)")
    ax.set_title(
        f"Scores: month against reference · v{result.model_version or '?'} · PSI "
        f"{result.score_psi:.3f}",
        fontsize=10,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def month_scores(model: CommuterModel, features) -> np.ndarray:
    """The month's calibrated probabilities, as `predict_proba` gives them, on every core (the
    model's own path keeps LightGBM to one thread for the service's sake)."""
    if len(features) == 0:
        return np.zeros(0)
    margin = model.booster.predict(model_matrix(features), raw_score=True)
    return model.calibrator.predict(margin)


def missed_commuters(result: MonitorResult) -> float:
    """Estimated commuters of the month without a badge: expected commuters x (1 - estimated
    recall), both CBPE (models/core/metrics.py `missed_commuters`)."""
    expected = result.estimates.get("expected_commuters", float("nan"))
    return float(expected) * (1 - result.estimated_recall)


def closest_check(result: MonitorResult) -> str:
    """The check nearest its limit (or furthest past it), with its margin: how close the month came."""
    margins = [(c["band_margin"] / c["limit"], c["check"], c["band_margin"]) for c in result.checks]
    margins += [
        (f["margin"] / f["limit"], f"feature {f['name']}", f["margin"])
        for f in result.features
        if f["alarms"] and np.isfinite(f["margin"])
    ]
    if not margins:
        return "none"
    _, name, margin = min(margins)
    return f"{name} margin {margin:+.4g}"


def version_tags(result: MonitorResult, run_id: str) -> dict[str, str]:
    """The monitor's outcome as tags on the judged version."""
    return {
        "monitor.alarm": str(result.alarm),
        "monitor.run_id": run_id,
        "monitor.as_of": result.as_of,
        "monitor.estimated_fpr": f"{result.estimated_fpr:.6g}",
        "monitor.estimated_recall": f"{result.estimated_recall:.6g}",
        "monitor.alarm_reasons": "; ".join(result.alarm_reasons)[:4900] or "none",
        "monitor.closest_check": closest_check(result),
    }


def run_monitor(
    trips: str | Path,
    as_of: dt.date,
    model_uri: str | None,
    thresholds: Thresholds | None = None,
    context: RunContext | None = None,
) -> tuple[MonitorResult, str]:
    """Judge the month at `trips` for `as_of`; returns the result and the monitor run's id."""
    context = context or RunContext.defaults()
    open_store(context)
    model = registry.load_model(model_uri)
    run_id = model.meta.run_id
    if not run_id and model.version:
        run_id = MlflowClient().get_model_version(MODEL_NAME, model.version).run_id
    reference = load_reference(run_id, model.version)
    window = model.meta.window_days
    calendar = context.calendar
    check_coverage(trips, as_of, window, calendar)
    memory = context.settings.duckdb_memory
    features = build_features(trips, as_of, window, memory=memory, calendar=calendar)
    if len(features) < MIN_PERSONS:  # refused before any run or tag is written
        raise MonitorError(
            f"{trips}: {len(features):,} persons crossed in the {window} days before {as_of}; the "
            f"monitor needs at least {MIN_PERSONS:,} to tell drift from sampling noise "
            "(docs/guide/between-months.md). Judge the whole month's trips, not a sample"
        )
    proba = month_scores(model, features)
    t = thresholds or Thresholds()
    result = monitor(
        reference,
        features,
        proba,
        threshold=model.threshold,
        target_fpr=model.target_fpr,
        as_of=as_of.isoformat(),
        model_version=model.version,
        thresholds=t,
        calendar=calendar.window_calendar(as_of, window),
        label_noise=version_label_noise(model.version),
    )
    with logged_run(
        "monitor",
        f"monitor v{model.version or '?'} as_of={as_of}",
        calendar=calendar,
        as_of=as_of,
        tags={
            "model_uri": model_uri or "",
            "model_version": model.version,
            "alarm": str(result.alarm),
            "features_compared": str(result.calendar["compare_features"]),
            "calendars_same": str(result.calendar["same"]),
        },
        params={
            "trips": str(trips),
            "as_of": as_of.isoformat(),
            "window_days": window,
            "assumptions": result.assumptions,
            **{f"threshold.{k}": v for k, v in result.thresholds.items()},
        },
        model=model.meta,
    ) as run:
        metrics = {**result.metrics(), "estimated_missed_commuters": missed_commuters(result)}
        mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
        mlflow.log_dict(result.report(), "monitor/report.json")
        mlflow.log_figure(drift_figure(result, t.feature_psi), "monitor/feature_drift.png")
        mlflow.log_figure(score_figure(result), "monitor/score_histograms.png")
    if model.version:
        tag_version(model.version, version_tags(result, run.info.run_id))
    return result, run.info.run_id
