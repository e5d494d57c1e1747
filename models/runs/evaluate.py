"""Evaluating a registered model on other labelled data, as its own MLflow run.

Beside the eval_* metrics: the deltas against the version's own validation metrics at training
(`delta_vs_training.<metric>`, eval minus val), the FPR against simulated truth when the labels
come with persons.parquet (`eval_true_fpr`, `eval_true_recall`), and whether the FPR is above the
target: tags `evaluation.fpr_breach` (eval_fpr_against_truth > target_fpr), `evaluation.run_id`,
`evaluation.as_of`, `evaluation.fpr` on the version (`commuter evaluate --fail-on-breach` exits 3).
A version certified under label noise rho is judged as it was certified: `eval_fpr_against_truth`
takes the commuters labelled 0 off as the certificate does (models/core/threshold.py `against_truth`),
and that figure is the one compared with the target (with rho = 0 it equals eval_fpr).

How much of a breach label noise can explain (`breach_lines`): each commuter labelled 0 who gets a
badge is a false positive against labels. At the month's own estimate of the noise rate
(`eval_label_noise_estimate`, models/core/threshold.py `label_noise_estimate`, as training's
`cal_label_noise_estimate`) the same restatement gives `eval_fpr_at_estimated_noise`. It is
reported, never compared: a version certified against labels (rho = 0) breaches its policy when
eval_fpr is above the target, whatever the estimate says (exit 3 with --fail-on-breach), because
an estimate read off the month's own scores could excuse a real breach. Being judged against the
truth is a policy, chosen at certification (`--param label_noise=RATE`).

Weighted labels (a `weight` column, e.g. `commuter audit certify --labels-out`): every figure is a
weighted point estimate for the persons the rows stand for (models/metrics.py), `eval_fpr_upper95`
is not given (NaN: a Clopper–Pearson bound on weighted counts is not valid, and Kish's effective
sample size assumes weights unrelated to the outcome, which an audit's badge strata are not; the
exact bound for an audit is `commuter audit certify`'s), the breach is judged on the point estimate,
the label-noise estimate (read off persons counted once) is not made, and the figures are not
drawn. The run is tagged `weighted_labels` and logs `eval_weight_sum`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from commuter_badge.features.context import RunContext
from commuter_badge.models.core.data import labelled_features
from commuter_badge.models.core.metrics import truth_metrics, weighted
from commuter_badge.models.core.threshold import (
    label_noise_estimate,
    metrics_against_truth,
)
from commuter_badge.models.mlflow_edge import registry
from commuter_badge.models.reporting.report import log_review
from commuter_badge.models.runs.promotion import version_label_noise
from commuter_badge.models.runs.shell import RunInput, logged_run, open_store, tag_version

# The FPR as the version's label-noise policy judges it; a NaN of these is not logged.
POLICY = (
    "eval_fpr_against_truth",
    "eval_label_noise",
    "eval_label_noise_estimate",
    "eval_fpr_at_estimated_noise",
)
COMPARED = ("auc", "pr_auc", "brier", "fpr", "fpr_upper95", "recall", "precision")


def training_deltas(run_id: str, metrics: dict[str, float]) -> dict[str, float]:
    """eval_<m> minus the training run's val_<m>, for the metrics both have ({} without a run)."""
    try:
        trained = MlflowClient().get_run(run_id).data.metrics if run_id else {}
    except MlflowException:
        trained = {}
    return {
        f"delta_vs_training.{k}": metrics[f"eval_{k}"] - trained[f"val_{k}"]
        for k in COMPARED
        if f"eval_{k}" in metrics and f"val_{k}" in trained
    }


def restated_fpr(metrics: dict, label_noise: float, prefix: str = "eval_") -> float:
    """The FPR with `label_noise` of the persons labelled 1 counted as commuters labelled 0
    (models/core/threshold.py `against_truth`); NaN without negatives or a rate."""
    if label_noise != label_noise:
        return float("nan")
    fp, negatives = metrics_against_truth(metrics, label_noise, prefix)
    return fp / negatives if metrics[f"{prefix}n_neg"] else float("nan")


def breach_lines(metrics: dict, target: float) -> list[str]:
    """What `commuter evaluate` prints on a breach: the breach, how much of it label noise can
    explain (in persons and points), and the figure or the policy that judges against the truth."""
    noise, rate = metrics["eval_label_noise"], metrics.get("eval_label_noise_estimate", np.nan)
    labels, judged = metrics["eval_fpr"], metrics["eval_fpr_against_truth"]
    n_neg, n_pos = int(metrics["eval_n_neg"]), int(metrics["eval_n_pos"])
    above = n_pos - int(metrics["eval_false_negatives"])
    if noise > 0:
        lines = [
            f"FPR BREACH: {judged:.4%} against the truth at the version's label noise {noise:g} "
            f"({labels:.4%} on these labels, {noise * above:.1f} of its "
            f"{int(metrics['eval_false_positives']):,} false positives taken off as commuters "
            f"labelled 0) is above the target {target:.2%} (tagged evaluation.fpr_breach on the "
            "version)"
        ]
    else:
        lines = [
            f"FPR BREACH: {labels:.4%} on these labels is above the target {target:.2%} (tagged "
            "evaluation.fpr_breach on the version)"
        ]
    if rate == rate and rate > noise:
        at_rate = metrics["eval_fpr_at_estimated_noise"]
        added = labels - at_rate
        within = at_rate <= target
        lines.append(
            f"label noise {'can explain' if within else 'explains only part of'} a breach this "
            f"size: these labels look wrong for about {rate:.2%} of persons (estimate, "
            f"eval_label_noise_estimate), so about {rate * above:.1f} of the {above:,} persons "
            f"labelled 1 with a badge are matched by commuters labelled 0 with one, counted as "
            f"false positives among the {n_neg:,} labelled negatives: +{added:.2%} of FPR. "
            f"Without them the FPR against the truth would be about {at_rate:.4%} "
            f"({'within' if within else 'still above'} the target)"
        )
    elif rate == rate:
        lines.append(
            f"label noise does not explain it: these labels look wrong for about {rate:.2%} of "
            "persons (estimate, eval_label_noise_estimate), no more than the version was "
            f"certified under ({noise:g})"
        )
    if noise == 0:
        lines.append(
            "this version was certified against labels (label_noise 0), so the breach stands "
            "(exit 3 with --fail-on-breach); to be judged against the truth, certify under the "
            "labels' error rate from an audit: `commuter train ... --param label_noise=RATE` "
            "(docs/guide/training.md, Label noise)"
        )
    return lines


@dataclass(frozen=True)
class EvaluationResult:
    """An evaluation run's outcome: eval_* metrics, deltas against training, and the breach."""

    run_id: str
    version: str  # '' for a model given by run or path URI
    metrics: dict[str, float]
    deltas: dict[str, float]
    breach: bool  # eval_fpr_against_truth above the version's target
    target_fpr: float
    n: int
    weighted: bool


def judged_figures(
    frame: pd.DataFrame,
    metrics: dict[str, float],
    threshold: float,
    noise: float,
    weights: np.ndarray | None,
) -> dict[str, float]:
    """The figures beside `metrics` (eval_* from `review_metrics`): FPR and recall against the
    simulated truth, the weight sum, and the FPR as the version's label-noise policy judges it,
    at its noise and at the month's estimate (NaN where not defined). Pure."""
    is_weighted = weighted(weights)
    out = truth_metrics("eval_", frame, threshold, weights)
    if is_weighted:
        out["eval_weight_sum"] = float(weights.sum())
    estimate = (
        float("nan")  # read off persons counted once: not on weighted labels
        if is_weighted
        else label_noise_estimate(frame["proba"], frame["is_commuter"])
    )
    both = {**metrics, **out}
    out["eval_fpr_against_truth"] = restated_fpr(both, noise)
    out["eval_label_noise"] = noise
    out["eval_label_noise_estimate"] = estimate
    out["eval_fpr_at_estimated_noise"] = restated_fpr(both, estimate)
    return out


def evaluate(
    trips: str | Path,
    labels: str | Path,
    as_of: dt.date,
    model_uri: str | None,
    context: RunContext | None = None,
) -> EvaluationResult:
    """Score the labelled month with the model at `model_uri`, log an evaluation run, and tag
    the version with the outcome."""
    context = context or RunContext.defaults()
    open_store(context)
    model = registry.load_model(model_uri)
    memory = context.settings.duckdb_memory
    window = model.meta.window_days
    labelled = labelled_features(
        trips, labels, as_of, window, memory=memory, calendar=context.calendar
    )
    frame = labelled.frame.copy()
    frame["proba"] = model.predict_proba(frame)
    weights = frame["weight"].to_numpy() if "weight" in frame else None
    is_weighted = weighted(weights)
    persons = frame[["person_id", "is_commuter"]].astype({"person_id": "object"})
    with logged_run(
        "evaluation",
        f"evaluate v{model.version or '?'} as_of={as_of}",
        calendar=context.calendar,
        as_of=as_of,
        digest=labelled.digest,
        tags={
            "model_uri": model_uri or "",
            "model_version": model.version,
            "weighted_labels": str(is_weighted),
        },
        params={
            "trips": str(trips),
            "labels": str(labels),
            "as_of": as_of.isoformat(),
            "n_persons": len(frame),
            "labels_without_trips": labelled.labels_without_trips,
        },
        inputs=[RunInput(persons, trips, f"evaluation-{as_of}", "evaluation")],
        model=model.meta,
    ) as run:
        metrics = log_review("eval_", frame, model.threshold, model.target_fpr)
        noise = version_label_noise(model.version)
        figures = judged_figures(frame, metrics, model.threshold, noise, weights)
        deltas = training_deltas(model.meta.run_id, {**metrics, **figures})
        logged = {**figures, **deltas}
        mlflow.log_metrics({k: v for k, v in logged.items() if k not in POLICY or v == v})
        metrics.update(figures)
        breach = bool(metrics["eval_fpr_against_truth"] > model.target_fpr)
        mlflow.set_tag("fpr_breach", str(breach))
    if model.version:
        tag_version(
            model.version,
            {
                "evaluation.fpr_breach": str(breach),
                "evaluation.run_id": run.info.run_id,
                "evaluation.as_of": as_of.isoformat(),
                "evaluation.fpr": f"{metrics['eval_fpr_against_truth']:.6g}",
            },
        )
    return EvaluationResult(
        run_id=run.info.run_id,
        version=model.version,
        metrics=metrics,
        deltas=deltas,
        breach=breach,
        target_fpr=model.target_fpr,
        n=len(frame),
        weighted=is_weighted,
    )
