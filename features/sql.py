"""The feature query: one SQL text, run unchanged by DuckDB (batch and request time) and by Spark.

Input is a normalised trips relation `(person_id, t, direction, mode, site_id, region)` with `t` in
epoch seconds, and a calendar relation `(day, dow, week, is_workday)` covering the window. The SQL
sticks to the common subset of both dialects (CASE instead of FILTER, explicit CASTs, no `//`, no
dialect date functions): local day and hour come from integer arithmetic on `t` because
Asia/Shanghai is a fixed UTC+8 offset.

Point-in-time rule: only crossings with as_of - window_days <= local time < as_of are counted
(reads up to DOUBLE_READ_SECONDS before the window are looked at only to spot double reads).
Double-read rule: a read of the same person, direction and site within DOUBLE_READ_SECONDS of the
previous such read is the same crossing scanned twice and is dropped.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pyarrow as pa

from features.definitions import CONTEXT_COLUMNS, FEATURES
from features.schema import DEFAULT_WINDOW_DAYS, DOUBLE_READ_SECONDS
from features.workdays import SHANGHAI_OFFSET_SECONDS, calendar_table, day_number

_CTES = """
WITH w AS (
  SELECT person_id, t, direction, mode, site_id, region FROM {trips}
  WHERE t >= {start_t} - {double_read_seconds} AND t < {end_t}
),
m AS (
  SELECT person_id, t, direction, mode, site_id, region,
         LAG(t) OVER (PARTITION BY person_id, direction, site_id ORDER BY t, mode, region) AS prev_t
  FROM w
),
x AS{materialized} (
  SELECT person_id, t, direction, mode, site_id, region,
         CAST(floor(CAST(t + {offset} AS DOUBLE) / 86400) AS BIGINT) AS day,
         CAST((t + {offset}) % 86400 AS DOUBLE) / 3600 AS hour
  FROM m WHERE (prev_t IS NULL OR t - prev_t > {double_read_seconds}) AND t >= {start_t}
),
psm AS{materialized} (
  SELECT person_id, site_id, mode, region, count(*) AS n,
         sum(CASE WHEN hour >= 22 OR hour < 5 THEN 1 ELSE 0 END) AS n_night,
         sum(CASE WHEN direction = 'in' THEN 1 ELSE 0 END) AS n_in
  FROM x GROUP BY person_id, site_id, mode, region
),
a AS (
  SELECT person_id, sum(n) AS crossings,
         count(DISTINCT CASE WHEN region <> '' THEN region END) AS n_regions,
         count(DISTINCT mode) AS n_modes,
         sum(CASE WHEN mode = 'rail' THEN n ELSE 0 END) AS n_rail,
         sum(CASE WHEN mode = 'bus' THEN n ELSE 0 END) AS n_bus,
         sum(n_night) AS n_night,
         sum(n_in) AS n_in,
         sum(n) - sum(n_in) AS n_out
  FROM psm GROUP BY person_id
),
pd AS{materialized} (
  SELECT x.person_id, x.day, max(c.is_workday) AS is_workday, max(c.dow) AS dow, max(c.week) AS week,
         min(CASE WHEN x.direction = 'in' THEN x.t END) AS first_in_t,
         max(CASE WHEN x.direction = 'out' THEN x.t END) AS last_out_t,
         min(CASE WHEN x.direction = 'in' THEN x.hour END) AS first_in_hour,
         max(CASE WHEN x.direction = 'out' THEN x.hour END) AS last_out_hour
  FROM x JOIN {calendar} c ON c.day = x.day
  GROUP BY x.person_id, x.day
),
d AS (
  SELECT person_id, count(*) AS active_days,
         sum(is_workday) AS workdays_active,
         sum(CASE WHEN is_workday = 0 THEN 1 ELSE 0 END) AS offdays_active,
         sum(CASE WHEN is_workday = 1 AND first_in_hour >= 5 AND first_in_hour < 10
                  THEN 1 ELSE 0 END) AS morning_entry_workdays,
         sum(CASE WHEN is_workday = 1 AND first_in_t IS NOT NULL THEN 1 ELSE 0 END) AS workday_entries,
         sum(CASE WHEN is_workday = 1 AND first_in_t < last_out_t THEN 1 ELSE 0 END)
             AS workday_round_trips,
         avg(first_in_hour) AS entry_hour_mean,
         stddev_pop(first_in_hour) AS entry_hour_std,
         stddev_pop(last_out_hour) AS exit_hour_std,
         min(day) AS first_day, max(day) AS last_day,
         sum(CASE WHEN day >= {recent_start_day} THEN 1 ELSE 0 END) AS recent_active_days
  FROM pd GROUP BY person_id
),
ed AS (
  SELECT person_id, day - LAG(day) OVER (PARTITION BY person_id ORDER BY day) AS gap
  FROM pd WHERE first_in_t IS NOT NULL
),
gc AS (SELECT person_id, gap, count(*) AS n FROM ed WHERE gap IS NOT NULL GROUP BY person_id, gap),
gr AS (
  SELECT person_id, gap, n, sum(n) OVER (PARTITION BY person_id) AS n_gaps,
         ROW_NUMBER() OVER (PARTITION BY person_id ORDER BY n DESC, gap) AS rn
  FROM gc
),
g AS (SELECT person_id, gap AS gap_mode, n AS gap_mode_n, n_gaps FROM gr WHERE rn = 1),
wdc AS (SELECT person_id, dow, count(*) AS n FROM pd GROUP BY person_id, dow),
wd AS (SELECT person_id, max(n) AS top_weekday_days FROM wdc GROUP BY person_id),
wkc AS (
  SELECT person_id, week,
         max(CASE WHEN dow = 4 AND first_in_t IS NOT NULL THEN 1 ELSE 0 END) AS fri_in,
         max(CASE WHEN dow = 6 AND last_out_t IS NOT NULL THEN 1 ELSE 0 END) AS sun_out
  FROM pd GROUP BY person_id, week
),
wk AS (SELECT person_id, sum(fri_in * sun_out) AS cycles FROM wkc GROUP BY person_id),
sc AS (SELECT person_id, site_id, sum(n) AS n FROM psm GROUP BY person_id, site_id),
s AS (SELECT person_id, count(*) AS n_sites, max(n) AS top_site_n FROM sc GROUP BY person_id),
mc AS (SELECT person_id, mode, sum(n) AS n FROM psm GROUP BY person_id, mode),
mm AS (
  SELECT person_id, mode,
         ROW_NUMBER() OVER (PARTITION BY person_id ORDER BY n DESC, mode) AS rn
  FROM mc
),
rc AS (SELECT person_id, region, sum(n) AS n FROM psm WHERE region <> '' GROUP BY person_id, region),
rr AS (
  SELECT person_id, region,
         ROW_NUMBER() OVER (PARTITION BY person_id ORDER BY n DESC, region) AS rn
  FROM rc
)
"""

_FROM = """
FROM a
JOIN d ON d.person_id = a.person_id
JOIN s ON s.person_id = a.person_id
JOIN wd ON wd.person_id = a.person_id
LEFT JOIN g ON g.person_id = a.person_id
LEFT JOIN wk ON wk.person_id = a.person_id
LEFT JOIN mm ON mm.person_id = a.person_id AND mm.rn = 1
LEFT JOIN rr ON rr.person_id = a.person_id AND rr.rn = 1
"""


@dataclass(frozen=True)
class Window:
    """The days a feature row for `as_of` may look at, and what the SQL needs to know of them."""

    as_of: dt.date
    window_days: int = DEFAULT_WINDOW_DAYS

    def __post_init__(self) -> None:
        if self.window_days < 8:
            raise ValueError(f"window_days must be at least 8 (got {self.window_days})")

    @property
    def start(self) -> dt.date:
        return self.as_of - dt.timedelta(days=self.window_days)

    def calendar(self) -> pa.Table:
        """Calendar rows for the window's days, with a Monday-based week number."""
        table = calendar_table(self.start, self.as_of)
        days = table.column("day").to_pylist()
        # Day 0 (1970-01-01) was a Thursday, so (day + 3) // 7 changes on Mondays.
        return table.append_column("week", pa.array([(d + 3) // 7 for d in days], pa.int64()))

    def params(self, calendar: pa.Table) -> dict[str, int]:
        n_workdays = sum(calendar.column("is_workday").to_pylist())
        as_of_day = day_number(self.as_of)
        return {
            "start_t": day_number(self.start) * 86400 - SHANGHAI_OFFSET_SECONDS,
            "end_t": as_of_day * 86400 - SHANGHAI_OFFSET_SECONDS,
            "offset": SHANGHAI_OFFSET_SECONDS,
            "double_read_seconds": DOUBLE_READ_SECONDS,
            "as_of_day": as_of_day,
            "recent_start_day": as_of_day - 7,
            "window_days": self.window_days,
            "n_workdays": n_workdays,
            "n_offdays": self.window_days - n_workdays,
        }


def feature_sql(trips: str, calendar: str, params: dict[str, int], *, materialize: bool = False) -> str:
    """The full feature query for relation names `trips` and `calendar` and the window's numbers.

    `materialize` asks DuckDB to compute each shared intermediate once (`AS MATERIALIZED`); it is
    the only dialect switch, and changes how the query runs, not what it computes. Spark reuses
    the shared sub-plans by itself.
    """
    select = ",\n  ".join(
        f"CAST({f.sql} AS {'BIGINT' if f.kind == 'int' else 'DOUBLE'}) AS {f.name}" for f in FEATURES
    )
    context = "coalesce(mm.mode, '') AS main_mode, coalesce(rr.region, '') AS main_region"
    assert CONTEXT_COLUMNS == ("main_mode", "main_region")
    text = f"{_CTES}\nSELECT a.person_id,\n  {select},\n  {context}\n{_FROM}\nORDER BY a.person_id"
    return text.format(
        trips=trips, calendar=calendar, materialized=" MATERIALIZED" if materialize else "", **params
    )
