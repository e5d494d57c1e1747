"""MLflow plumbing: tracking set-up, the pyfunc wrapper, loading by URI, and the champion alias."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import sys
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from commuter_badge.models.bundle import CommuterModel, ModelError
from commuter_badge.models.packaging import (
    ARTIFACT_KEY,
    ENTRY_FILE,
    PyfuncCommuterModel,
    model_code,
    runtime_requirements,
)
from commuter_badge.models.provenance import code_provenance
from commuter_badge.settings import CHAMPION_ALIAS, EXPERIMENT, MODEL_NAME, load_settings


def configure(tracking_uri: str | None = None) -> str:
    """Point MLflow tracking and registry at the configured store (default sqlite:///mlflow.db)."""
    uri = tracking_uri or load_settings().tracking_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    # Alembic and MLflow chatter on every SQLite open would drown the CLI's own output.
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.tracking"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    return uri


def resolve_version(uri: str) -> str:
    """The registry version a `models:/` URI points at ('' for run or path URIs)."""
    client = MlflowClient()
    if m := re.fullmatch(r"models:/([^/@]+)@(.+)", uri):
        try:
            return str(client.get_model_version_by_alias(m.group(1), m.group(2)).version)
        except MlflowException:
            raise ModelError(
                f"no model version has alias '{m.group(2)}' in registered model '{m.group(1)}'; "
                "train one first (`commuter train ...`)"
            ) from None
    if m := re.fullmatch(r"models:/([^/@]+)/(\d+)", uri):
        return m.group(2)
    return ""


def load_model(uri: str | None = None, *, version: str | None = None) -> CommuterModel:
    """Load the model at `uri` (default: the champion) with its registry version.

    `uri` is a `models:/` or run URI, or a local MLflow model directory (a Bento's bundled
    champion), for which `version` names the registry version. An alias is resolved to a version
    first and that version is read, so an alias moving meanwhile cannot mix two versions.
    """
    uri = uri or f"models:/{MODEL_NAME}@{CHAMPION_ALIAS}"
    if "://" not in uri and Path(uri).is_dir():
        return CommuterModel.load(Path(uri) / "artifacts" / ARTIFACT_KEY, version=version or "")
    if version is None:
        version = resolve_version(uri)
    if version and (m := re.fullmatch(r"models:/([^/@]+)@(.+)", uri)):
        uri = f"models:/{m.group(1)}/{version}"
    with tempfile.TemporaryDirectory(prefix="commuter-model-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=uri.rstrip("/") + f"/artifacts/{ARTIFACT_KEY}", dst_path=tmp
            )
        except (MlflowException, OSError) as exc:
            raise ModelError(f"cannot load model {uri}: {str(exc).splitlines()[0]}") from None
        return CommuterModel.load(Path(local), version=version)  # fully read into memory


def champion_version() -> str | None:
    try:
        return str(MlflowClient().get_model_version_by_alias(MODEL_NAME, CHAMPION_ALIAS).version)
    except MlflowException:
        return None


def experiment_id() -> str:
    exp = mlflow.set_experiment(EXPERIMENT)
    return exp.experiment_id


def log_model(model: CommuterModel, example: pd.DataFrame) -> mlflow.models.model.ModelInfo:
    """Log `model` in the active run with signature and input example, registered as MODEL_NAME.

    The version is self-contained (models/packaging.py): it carries its package code, its pinned
    runtime requirements and the code it was trained with (feature names, feature SQL digest,
    package version, git commit; in `model.json` and in the MLmodel metadata).
    """
    from mlflow.models import infer_signature

    from commuter_badge.features.definitions import FEATURE_NAMES

    recorded = code_provenance(model.meta.window_days)
    meta = dataclasses.replace(model.meta, extra={**model.meta.extra, "code": recorded})
    stamped = CommuterModel(model.booster, meta, version=model.version)
    inputs = example[list(FEATURE_NAMES)].astype("float64")
    outputs = PyfuncCommuterModel()
    outputs.model = stamped
    signature = infer_signature(inputs, outputs.predict(None, inputs))
    mlflow.set_tag("mlflow.source.git.commit", recorded["git_commit"])
    search_path = list(sys.path)  # MLflow puts the logged code first on it to check the example
    try:
        with tempfile.TemporaryDirectory() as tmp:
            stamped.save(Path(tmp) / ARTIFACT_KEY)
            return mlflow.pyfunc.log_model(
                name="model",
                python_model=str(ENTRY_FILE),
                artifacts={ARTIFACT_KEY: str(Path(tmp) / ARTIFACT_KEY)},
                code_paths=[str(model_code(Path(tmp) / "code"))],
                pip_requirements=runtime_requirements(),
                metadata={"code": recorded},
                signature=signature,
                input_example=inputs.head(5),
                registered_model_name=MODEL_NAME,
            )
    finally:
        sys.path[:] = search_path


def set_champion(version: str) -> None:
    MlflowClient().set_registered_model_alias(MODEL_NAME, CHAMPION_ALIAS, str(version))
