"""Evaluating a registered model on other labelled data, as its own MLflow run.

Beside the eval_* metrics: the deltas against the version's own validation metrics at training
(`delta_vs_training.<metric>`, eval minus val), the FPR against simulated truth when the labels
come with persons.parquet (`eval_true_fpr`, `eval_true_recall`), and whether the FPR is above the
target: tags `evaluation.fpr_breach` (eval_fpr_against_truth > target_fpr), `evaluation.run_id`,
`evaluation.as_of`, `evaluation.fpr` on the version (`commuter evaluate --fail-on-breach` exits 3).
A version certified under label noise rho is judged as it was certified: `eval_fpr_against_truth`
takes the commuters labelled 0 off as the certificate does (models/threshold.py `against_truth`),
and that figure is the one compared with the target (with rho = 0 it equals eval_fpr).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from commuter_badge.features.workdays import calendar_params
from commuter_badge.models import registry
from commuter_badge.models.calendar_check import warn_calendar_mismatch
from commuter_badge.models.data import labelled_features
from commuter_badge.models.metrics import at_threshold
from commuter_badge.models.promotion import version_label_noise
from commuter_badge.models.report import log_review
from commuter_badge.models.threshold import against_truth
from commuter_badge.settings import MODEL_NAME

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


def _tag_version(version: str, tags: dict[str, str]) -> None:
    try:
        for key, value in tags.items():
            MlflowClient().set_model_version_tag(MODEL_NAME, version, key, value)
    except MlflowException:
        pass  # a model given by run or path URI: the run holds the outcome


def evaluate(trips: str | Path, labels: str | Path, as_of: dt.date, model_uri: str | None) -> dict:
    registry.configure()
    registry.experiment_id()
    model = registry.load_model(model_uri)
    labelled = labelled_features(trips, labels, as_of, model.meta.window_days)
    frame = labelled.frame.copy()
    frame["proba"] = model.predict_proba(frame)
    with mlflow.start_run(run_name=f"evaluate v{model.version or '?'} as_of={as_of}") as run:
        mlflow.set_tags(
            {
                "kind": "evaluation",
                "as_of": as_of.isoformat(),
                "model_uri": model_uri or "",
                "model_version": model.version,
                "input_digest": labelled.digest,
                **calendar_params(),
            }
        )
        warn_calendar_mismatch(model.meta)  # stderr line and a calendar_mismatch tag
        mlflow.log_params(
            {
                "trips": str(trips),
                "labels": str(labels),
                "as_of": as_of.isoformat(),
                "n_persons": len(frame),
                "labels_without_trips": labelled.labels_without_trips,
            }
        )
        registry.log_input(
            registry.dataset(
                frame[["person_id", "is_commuter"]].astype({"person_id": "object"}),
                source=trips,
                name=f"evaluation-{as_of}",
                targets="is_commuter",
            ),
            context="evaluation",
        )
        metrics = log_review("eval_", frame, model.threshold, model.target_fpr)
        if "true_commuter" in frame and frame["true_commuter"].notna().all():
            m = at_threshold(frame["true_commuter"], frame["proba"], model.threshold)
            truth = {"eval_true_fpr": m["fpr"], "eval_true_recall": m["recall"]}
            mlflow.log_metrics(truth)
            metrics.update(truth)
        deltas = training_deltas(model.meta.run_id, metrics)
        mlflow.log_metrics(deltas)
        noise = version_label_noise(model.version)
        fp, negatives = against_truth(
            metrics["eval_false_positives"],
            metrics["eval_n_neg"],
            metrics["eval_n_pos"] - metrics["eval_false_negatives"],
            metrics["eval_n_pos"],
            noise,
        )
        policy_fpr = {
            "eval_fpr_against_truth": fp / negatives if negatives else float("nan"),
            "eval_label_noise": noise,
        }
        mlflow.log_metrics(policy_fpr)
        metrics.update(policy_fpr)
        breach = bool(metrics["eval_fpr_against_truth"] > model.target_fpr)
        mlflow.set_tag("fpr_breach", str(breach))
    if model.version:
        _tag_version(
            model.version,
            {
                "evaluation.fpr_breach": str(breach),
                "evaluation.run_id": run.info.run_id,
                "evaluation.as_of": as_of.isoformat(),
                "evaluation.fpr": f"{metrics['eval_fpr_against_truth']:.6g}",
            },
        )
    return {
        "deltas": deltas,
        "breach": breach,
        "target_fpr": model.target_fpr,
        "run_id": run.info.run_id,
        "metrics": metrics,
        "version": model.version,
        "n": len(frame),
    }
