"""Evaluating a registered model on other labelled data, as its own MLflow run."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import mlflow

from commuter_badge.features.workdays import calendar_params
from commuter_badge.models import registry
from commuter_badge.models.calendar_check import warn_calendar_mismatch
from commuter_badge.models.data import labelled_features
from commuter_badge.models.report import log_review


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
        mlflow.log_input(
            mlflow.data.from_pandas(
                frame[["person_id", "is_commuter"]].astype({"person_id": "object"}),
                source=str(trips),
                name=f"evaluation-{as_of}",
                targets="is_commuter",
            ),
            context="evaluation",
        )
        metrics = log_review("eval_", frame, model.threshold, model.target_fpr)
    return {
        "run_id": run.info.run_id,
        "metrics": metrics,
        "version": model.version,
        "n": len(frame),
    }
