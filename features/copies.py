"""Weekday copies: a person's crossings on two or three of the weekdays they come, as a new person.

With `copy_weight` > 0 (off by default) training reads them as extra fit persons with the
original's label (models/core/fitting.py `split`): a
commuter who comes on fewer weekdays, at the same hours, is still a commuter (issue 14: the
commuters missed on independent worlds were people seen one to three days a week), and a
non-commuter's copy stays a non-commuter, so sparse visitors are not left to the commuters' copies
alone. Measured in docs/guide/training.md (weekday copies, `benchmarks/features_bench.py --copies`).

A visit starts at each entry (crossings before a person's first entry are a visit of their own)
and belongs to the weekday of its first crossing, so a night shift or a weekend stay is kept or
dropped whole. Of a person's distinct visit weekdays (at least three are needed), two or three are
kept, picked by a hash of the id: the same input always gives the same copies. A copy needs three
visits. Copies are named `COPY_PREFIX` + id and go through the one feature query unchanged.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow as pa

from commuter_badge.features.build import (
    BatchPlan,
    batch_connection,
    batch_errors,
    run_feature_query,
    to_frame,
)
from commuter_badge.features.read import register_trips
from commuter_badge.features.schema import DOUBLE_READ_SECONDS
from commuter_badge.features.sql import Window
from commuter_badge.features.workdays import (
    LIBRARY_CALENDAR,
    SHANGHAI_OFFSET_SECONDS,
    WorkingCalendar,
)
from commuter_badge.settings import DEFAULT_WINDOW_DAYS

COPY_PREFIX = "copy:"
KEPT_WEEKDAYS = (2, 3)  # how many of a person's weekdays a copy keeps (fewer if they use fewer)
MIN_WEEKDAYS = 3  # a person seen on fewer weekdays has no copy (it would be the person again)
MIN_VISITS = 3  # a copy with fewer visits shows no pattern to learn from
_KEY = 14  # hash key of the weekday draw, apart from any other use of the id's hash


def copies_sql(trips: str, window: Window, ids: str) -> str:
    """The copies' crossings, as a relation of the normalised trips columns."""
    p = window.params()
    first_day = f"CAST(floor((min(t) + {SHANGHAI_OFFSET_SECONDS}) / 86400) AS BIGINT)"
    lo, hi = KEPT_WEEKDAYS
    return f"""
WITH c AS (
  SELECT person_id, t, direction, mode, site_id, region,
         sum(CASE WHEN direction = 'in' THEN 1 ELSE 0 END) OVER (
           PARTITION BY person_id ORDER BY t, direction ROWS UNBOUNDED PRECEDING) AS visit
  FROM {trips}
  WHERE t >= {p["start_t"]} - {DOUBLE_READ_SECONDS} AND t < {p["end_t"]}
    AND person_id IN (SELECT person_id FROM {ids})
),
visits AS (  -- 1970-01-01 was a Thursday: (day + 3) % 7 is 0 on Mondays
  SELECT person_id, visit, ({first_day} + 3) % 7 AS weekday
  FROM c GROUP BY person_id, visit
),
weekdays AS (
  SELECT person_id, weekday,
         row_number() OVER (PARTITION BY person_id ORDER BY hash(person_id, weekday, {_KEY}))
           AS pick,
         count(*) OVER (PARTITION BY person_id) AS n
  FROM (SELECT DISTINCT person_id, weekday FROM visits)
),
kept AS (
  SELECT v.person_id, v.visit
  FROM visits v JOIN weekdays w ON v.person_id = w.person_id AND v.weekday = w.weekday
  WHERE w.n >= {MIN_WEEKDAYS}
    AND w.pick <= least(w.n - 1, {lo} + CAST(hash(w.person_id, {_KEY}) % {hi - lo + 1} AS BIGINT))
),
enough AS (SELECT person_id FROM kept GROUP BY person_id HAVING count(*) >= {MIN_VISITS})
SELECT '{COPY_PREFIX}' || c.person_id AS person_id, c.t, c.direction, c.mode, c.site_id, c.region
FROM c JOIN kept ON c.person_id = kept.person_id AND c.visit = kept.visit
WHERE c.person_id IN (SELECT person_id FROM enough)
"""


def weekday_copies(
    path: str | Path,
    as_of: dt.date,
    ids: pd.Series,
    window_days: int = DEFAULT_WINDOW_DAYS,
    memory: str | None = None,
    calendar: WorkingCalendar = LIBRARY_CALENDAR,
) -> pd.DataFrame:
    """Features of the weekday copies of the persons `ids` at `path`, with `copy_of` (the
    original's id), in id order. Runs under the same memory cap and partitions as the features."""
    plan = BatchPlan.for_path(path, memory=memory)
    window = Window(as_of, window_days, calendar)
    wanted = pa.table({"person_id": pa.array(ids.astype(str).unique(), pa.string())})
    tables = []
    with batch_connection(plan) as (con, spill):
        con.register("copy_ids", wanted)
        for part in plan.parts():
            files = register_trips(con, path, "trips", part)
            copies = copies_sql("trips", window, "copy_ids")
            with batch_errors(con, files, plan, spill):
                # a table, not a view: the feature query reads its input three times
                con.execute(f"CREATE OR REPLACE TEMP TABLE copies AS {copies}")
                tables.append(run_feature_query(con, "copies", window))
    table = pa.concat_tables(tables)
    frame = to_frame(table.sort_by("person_id") if len(tables) > 1 else table)
    frame["copy_of"] = frame["person_id"].str.removeprefix(COPY_PREFIX)
    return frame
