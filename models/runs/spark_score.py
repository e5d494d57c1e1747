"""Scoring on Spark: the same features (`features/spark.py`) and the very batch scoring code.

The booster travels to the executors as its LightGBM text (broadcast once, parsed once per Python
worker) with the calibration and threshold beside it; each Arrow batch becomes the batch feature
frame by `features.build.to_frame` and is scored by `models.runs.score.score_frame`. Publishing the
result to the decision store is the command line's step, the same for both engines.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from commuter_badge.features.build import to_frame
from commuter_badge.features.definitions import CONTEXT_COLUMNS, FEATURES
from commuter_badge.features.spark import _quiet_pandas3, _session, _write, spark_features
from commuter_badge.features.workdays import LIBRARY_CALENDAR, WorkingCalendar
from commuter_badge.models.core.bundle import CommuterModel
from commuter_badge.models.mlflow_edge.registry import load_model
from commuter_badge.models.runs.score import OUTPUT_SCHEMA, SCORE_DDL, score_frame
from commuter_badge.settings import DEFAULT_WINDOW_DAYS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


_WORKER_MODELS: dict[str, CommuterModel] = {}


def _worker_model(key: str, model_text, meta, version: str) -> CommuterModel:
    """The model on an executor, built once per Python worker from the broadcast booster text."""
    model = _WORKER_MODELS.get(key)
    if model is None:
        import lightgbm as lgb

        model = CommuterModel(lgb.Booster(model_str=model_text.value), meta, version=version)
        if len(_WORKER_MODELS) >= 4:
            _WORKER_MODELS.clear()
        _WORKER_MODELS[key] = model
    return model


def _score_batches(batches, key: str, model_text, meta, version: str):
    """mapInArrow body: feature batches -> to_frame (batch dtypes) -> the batch scorer's rows."""
    model = _worker_model(key, model_text, meta, version)
    for batch in batches:
        scored = score_frame(to_frame(pa.Table.from_batches([batch])), model)
        yield pa.RecordBatch.from_pandas(scored, schema=OUTPUT_SCHEMA, preserve_index=False)


def score_features(features: DataFrame, model: CommuterModel) -> DataFrame:
    """Scores for a feature DataFrame from `spark_features`: person_id, commuter_probability, badge,
    threshold, model_version, days_since_first.

    Each Arrow batch becomes the batch feature frame by `features.build.to_frame` and is scored by
    `CommuterModel.predict_proba` on the executors; the booster travels as its LightGBM text
    (broadcast once, parsed once per Python worker) with the calibration and threshold beside it.
    """
    expected = ["person_id", *(f.name for f in FEATURES), *CONTEXT_COLUMNS]
    if features.columns != expected:  # to_frame reads these by name; fail on the driver, not later
        raise ValueError(
            f"not a spark_features table: columns {features.columns} are not {expected}"
        )
    text = model.booster.model_to_string()
    key = hashlib.sha256(text.encode()).hexdigest()
    broadcast = features.sparkSession.sparkContext.broadcast(text)
    body = functools.partial(
        _score_batches, key=key, model_text=broadcast, meta=model.meta, version=str(model.version)
    )
    with _quiet_pandas3():
        return features.mapInArrow(body, SCORE_DDL)


def spark_score(
    spark: SparkSession,
    path: str | Path | DataFrame,
    as_of: dt.date | str,
    model: CommuterModel,
    window_days: int = DEFAULT_WINDOW_DAYS,
    calendar: WorkingCalendar = LIBRARY_CALENDAR,
) -> DataFrame:
    """Scores on Spark for the trips at `path` (or a trips DataFrame, as for `spark_features`):
    person_id, commuter_probability (double), badge (boolean), threshold (double), model_version
    (string); the same maths as batch scoring (see `score_features`)."""
    return score_features(spark_features(spark, path, as_of, window_days, calendar), model)


def write_spark_scores(
    path: str | Path,
    as_of: dt.date | str,
    out: str | Path,
    model_uri: str | None = None,
    window_days: int = DEFAULT_WINDOW_DAYS,
    model: CommuterModel | None = None,
    master: str | None = None,
    calendar: WorkingCalendar = LIBRARY_CALENDAR,
) -> int:
    """`commuter score --engine spark`: scores written to `out` (a Spark Parquet directory, or CSV
    if `out` ends in .csv); returns persons scored. The model is `model`, else the one at
    `model_uri` (default: the champion) loaded with `models.mlflow_edge.registry.load_model`; MLflow tracking is
    configured by the caller (the CLI does), which passes the Spark `master` setting too."""
    if model is None:
        model = load_model(model_uri)
    with _session(master) as spark:
        scores = spark_score(spark, str(path), as_of, model, window_days, calendar)
        return _write(scores, str(out))
