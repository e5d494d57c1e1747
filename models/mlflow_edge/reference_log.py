"""The training reference (models/core/reference.py) stored on and read back from a model's run."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from commuter_badge.models.core.reference import NoReferenceError, build_reference

REFERENCE_ARTIFACT = "monitor/reference.json"


def log_reference(val: pd.DataFrame, threshold: float, calendar: dict[str, int]) -> dict:
    """Build the reference and log it on the active run."""
    reference = build_reference(val, threshold, calendar)
    mlflow.log_dict(reference, REFERENCE_ARTIFACT)
    return reference


def load_reference(run_id: str, version: str) -> dict:
    """The reference logged with the run of model `version`, or a NoReferenceError saying why."""
    with tempfile.TemporaryDirectory(prefix="commuter-ref-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=REFERENCE_ARTIFACT, dst_path=tmp
            )
            return json.loads(Path(local).read_text())
        except (MlflowException, OSError, json.JSONDecodeError):
            raise NoReferenceError(
                f"model version {version or '?'} has no training reference ({REFERENCE_ARTIFACT} "
                f"in run {run_id or '?'}): it was trained before references were stored; "
                "retrain or recertify it to monitor it"
            ) from None
