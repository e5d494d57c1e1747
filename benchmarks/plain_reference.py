"""Issue 14's plain reference: LightGBM on 21 simple counts, threshold by the same certificate.

The issue measured the champion against "a LightGBM on 21 simple counts: morning entries and
evening exits, Friday entries and Sunday exits, distinct active weeks, first and last active day;
400 trees, trained on 70% of the labelled persons, with the threshold chosen by the same
Neyman-Pearson rule on the rest". This is that reference, rebuilt for `quality_bench.py` so the
champion can be compared with it world by world. It reads the raw feed (double reads and all: it
is a plain reference, not a second feature pipeline) with a plain Monday-Friday week, and its
counts are a benchmark's, never the model's (the model's features live in features/definitions.py).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb
import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow as pa

from commuter_badge.features.workdays import SHANGHAI_OFFSET_SECONDS
from commuter_badge.models.core.config import TrainConfig
from commuter_badge.models.core.threshold import NeymanPearsonThreshold
from commuter_badge.settings import DEFAULT_WINDOW_DAYS

TREES = 400
SHARE_FIT = 0.7

_COUNTS = """
WITH x AS (
  SELECT person_id, direction = 'in' AS is_in, mode, site_id,
         floor(s / 86400)::INT AS day, (s % 86400) / 3600.0 AS hour,
         (isodow(DATE '{start}' + floor(s / 86400)::INT) - 1) AS dow
  FROM (
    -- seconds since the window's first local midnight
    SELECT *, epoch(ts) + {offset} - epoch(TIMESTAMP '{start}') AS s FROM trips
    -- instants from epoch seconds: independent of the session's time zone
    WHERE ts >= to_timestamp(epoch(TIMESTAMP '{start}') - {offset})
      AND ts < to_timestamp(epoch(TIMESTAMP '{end}') - {offset})
  )
),
pd AS (
  SELECT person_id, day, any_value(dow) AS dow,
         min(CASE WHEN is_in THEN hour END) AS first_in,
         max(CASE WHEN NOT is_in THEN hour END) AS last_out,
         count(*) FILTER (WHERE is_in) AS n_in, count(*) FILTER (WHERE NOT is_in) AS n_out
  FROM x GROUP BY person_id, day
),
ps AS (
  SELECT person_id, count(DISTINCT site_id) AS n_sites,
         count(*) FILTER (WHERE mode = 'rail') AS rail_crossings,
         count(*) FILTER (WHERE hour >= 22 OR hour < 5) AS night_crossings
  FROM x GROUP BY person_id
)
SELECT person_id,
  sum(n_in + n_out) AS crossings,
  sum(n_in) AS entries,
  sum(n_out) AS exits,
  count(*) AS active_days,
  count(*) FILTER (WHERE n_in > 0) AS entry_days,
  count(*) FILTER (WHERE n_out > 0) AS exit_days,
  count(*) FILTER (WHERE first_in >= 5 AND first_in < 10) AS morning_entry_days,
  count(*) FILTER (WHERE last_out >= 16 AND last_out < 22) AS evening_exit_days,
  count(*) FILTER (WHERE dow < 5) AS weekday_active_days,
  count(*) FILTER (WHERE dow >= 5) AS weekend_active_days,
  count(*) FILTER (WHERE dow = 4 AND n_in > 0) AS friday_entries,
  count(*) FILTER (WHERE dow = 6 AND n_out > 0) AS sunday_exits,
  count(*) FILTER (WHERE dow = 0 AND n_in > 0) AS monday_entries,
  count(*) FILTER (WHERE dow = 4 AND n_out > 0) AS friday_exits,
  count(DISTINCT floor((day + (isodow(DATE '{start}') - 1)) / 7)) AS active_weeks,
  min(day) AS first_active_day,
  max(day) AS last_active_day,
  count(*) FILTER (WHERE first_in < last_out) AS round_trip_days,
  any_value(n_sites) AS n_sites,
  any_value(rail_crossings) AS rail_crossings,
  any_value(night_crossings) AS night_crossings
FROM pd JOIN ps USING (person_id) GROUP BY person_id
-- in id order: the 70/30 split below must not depend on DuckDB's grouping order
ORDER BY person_id
"""


def counts(trips: pa.Table, as_of: dt.date, window_days: int = DEFAULT_WINDOW_DAYS) -> pd.DataFrame:
    """The 21 counts per person with a crossing in [as_of - window_days, as_of), local time."""
    start = as_of - dt.timedelta(days=window_days)
    con = duckdb.connect()
    con.register("trips", trips)
    sql = _COUNTS.format(start=start, end=as_of, offset=SHANGHAI_OFFSET_SECONDS)
    frame = con.sql(sql).df()
    con.close()
    return frame.astype({c: "float64" for c in frame.columns if c != "person_id"})


COLUMNS = [
    "crossings",
    "entries",
    "exits",
    "active_days",
    "entry_days",
    "exit_days",
    "morning_entry_days",
    "evening_exit_days",
    "weekday_active_days",
    "weekend_active_days",
    "friday_entries",
    "sunday_exits",
    "monday_entries",
    "friday_exits",
    "active_weeks",
    "first_active_day",
    "last_active_day",
    "round_trip_days",
    "n_sites",
    "rail_crossings",
    "night_crossings",
]
assert len(COLUMNS) == 21


def margin(booster: lgb.Booster, frame: pd.DataFrame) -> np.ndarray:
    # the margin, not the probability: 400 unregularised trees push many probabilities to 1.0
    # in floating point, and ties there would decide the threshold
    return booster.predict(frame[COLUMNS].to_numpy(), raw_score=True)


@dataclass(frozen=True)
class PlainReference:
    booster: lgb.Booster
    threshold: float

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        return margin(self.booster, frame)

    def decide(self, scores: np.ndarray) -> np.ndarray:
        return scores >= self.threshold


def train_reference(
    trips: pa.Table, labels: pd.DataFrame, as_of: dt.date, config: TrainConfig, seed: int = 0
) -> PlainReference:
    """70% of the labelled persons with a crossing fit 400 trees; the rest certify the threshold
    by `NeymanPearsonThreshold`, with the champion's target, confidence and label-noise setting."""
    frame = counts(trips, as_of).merge(
        labels.astype({"person_id": str}), on="person_id", how="inner"
    )
    rng = np.random.default_rng(seed)
    fit = rng.random(len(frame)) < SHARE_FIT
    data = lgb.Dataset(frame.loc[fit, COLUMNS].to_numpy(), frame.loc[fit, "is_commuter"])
    params = {
        "objective": "binary",
        "verbose": -1,
        "seed": seed,
        "num_threads": 2,
    }
    booster = lgb.train(params, data, num_boost_round=TREES)
    held = frame.loc[~fit]
    selector = NeymanPearsonThreshold(
        target_fpr=config.target_fpr, confidence=config.confidence, label_noise=config.label_noise
    )
    selector.fit(margin(booster, held), held["is_commuter"].to_numpy())
    return PlainReference(booster, selector.threshold_)
