"""Batch scoring: features for a trips path, calibrated probability, badge, written and published."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow as pa

from commuter_badge.atomic import write_frame
from commuter_badge.features.build import build_features
from commuter_badge.models.core.bundle import CommuterModel

# The score table (contract §2), declared once: batch, Spark and the decision store derive from it.
SCORE_SCHEMA = pa.schema(
    [
        ("person_id", pa.string()),
        ("commuter_probability", pa.float64()),
        ("badge", pa.bool_()),
        ("threshold", pa.float64()),
        ("model_version", pa.string()),
    ]
)
SCORE_COLUMNS = tuple(SCORE_SCHEMA.names)
_SPARK_TYPES = {pa.string(): "string", pa.float64(): "double", pa.bool_(): "boolean"}
SCORE_DDL = ", ".join(f"{f.name} {_SPARK_TYPES[f.type]}" for f in SCORE_SCHEMA)


def score_frame(features: pd.DataFrame, model: CommuterModel) -> pd.DataFrame:
    """Contract §2 columns for every row of a feature table."""
    proba = model.predict_proba(features)
    return pd.DataFrame(
        {
            "person_id": features["person_id"].astype("str").to_numpy(),
            "commuter_probability": proba,
            "badge": model.decide(proba),
            "threshold": model.threshold,
            "model_version": str(model.version),
        }
    )


def score_path(
    trips: str | Path, as_of: dt.date, model: CommuterModel, memory: str | None = None
) -> pd.DataFrame:
    """Score everyone seen at `trips` as of `as_of` (features under the DuckDB `memory` setting)."""
    return score_frame(build_features(trips, as_of, model.meta.window_days, memory=memory), model)


def write_scores(scored: pd.DataFrame, out: str | Path) -> Path:
    """Write a score table atomically as CSV or Parquet (by extension)."""
    return write_frame(scored, out)
