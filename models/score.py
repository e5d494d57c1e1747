"""Batch scoring: features for a trips path, calibrated probability, badge, written and published."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from features.build import build_features
from features.output import write_frame
from models.bundle import CommuterModel

OUTPUT_COLUMNS = ("person_id", "commuter_probability", "badge", "threshold", "model_version")


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
    trips: str | Path,
    as_of: dt.date,
    model: CommuterModel,
    out: str | Path,
    publish_to: str | Path | None = None,
) -> pd.DataFrame:
    """Score everyone seen at `trips`, write `out` atomically, and publish to the decision store."""
    scored = score_frame(build_features(trips, as_of, model.meta.window_days), model)
    write_frame(scored, out)
    if publish_to is not None:
        from serving.decisions import publish

        publish(scored, as_of, publish_to)
    return scored
