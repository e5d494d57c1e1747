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
import functools
from dataclasses import dataclass

import pyarrow as pa

from features.definitions import CONTEXT_COLUMNS, FEATURES
from features.schema import DEFAULT_WINDOW_DAYS, DOUBLE_READ_SECONDS
from features.workdays import SHANGHAI_OFFSET_SECONDS, calendar_table, day_number

_CTES = """
WITH w AS{not_materialized} (
  SELECT {hash}(person_id) AS pk, {hash}(site_id, mode, region) AS sk,
         {hash}(person_id, direction, site_id) AS rk,
         person_id, t, direction, mode, site_id, region
  FROM {trips}
  WHERE t >= {start_t} - {double_read_seconds} AND t < {end_t}
),
m AS (
  SELECT pk, sk, t, CASE WHEN direction = 'in' THEN 1 ELSE 0 END AS is_in,
         LAG(t) OVER (PARTITION BY rk ORDER BY t, sk) AS prev_t
  FROM w
),
x AS (
  SELECT pk, sk, t, is_in,
         CAST(floor(CAST(t + {offset} AS DOUBLE) / 86400) AS BIGINT) AS day,
         (t + {offset}) % 86400 AS sec
  FROM m WHERE (prev_t IS NULL OR t - prev_t > {double_read_seconds}) AND t >= {start_t}
),
names AS (
  SELECT pk, sk, any_value(site_id) AS site_id, any_value(mode) AS mode,
         any_value(region) AS region, any_value(person_id) AS person_id,
         min({hash}('check:' || person_id)) AS check_min, max({hash}('check:' || person_id)) AS check_max
  FROM w WHERE t >= {start_t} GROUP BY pk, sk
),
gd AS{materialized} (
  SELECT pk, day, sk, count(*) AS n,
         sum(CASE WHEN sec >= 79200 OR sec < 18000 THEN 1 ELSE 0 END) AS n_night,
         sum(is_in) AS n_in,
         min(CASE WHEN is_in = 1 THEN t END) AS first_in_t,
         max(CASE WHEN is_in = 0 THEN t END) AS last_out_t
  FROM x GROUP BY pk, day, sk
),
psm AS{materialized} (
  SELECT c.pk, c.sk, nm.site_id, nm.mode, nm.region, nm.person_id, nm.check_min, nm.check_max,
         c.n, c.n_night, c.n_in
  FROM (
    SELECT pk, sk, sum(n) AS n, sum(n_night) AS n_night, sum(n_in) AS n_in
    FROM gd GROUP BY pk, sk
  ) c JOIN names nm ON nm.pk = c.pk AND nm.sk = c.sk
),
a AS (
  SELECT pk, any_value(person_id) AS person_id,
         CASE WHEN min(check_min) = max(check_max) THEN 1 ELSE 0 END AS key_ok,
         sum(n) AS crossings,
         count(DISTINCT CASE WHEN region <> '' THEN region END) AS n_regions,
         count(DISTINCT mode) AS n_modes,
         sum(CASE WHEN mode = 'rail' THEN n ELSE 0 END) AS n_rail,
         sum(CASE WHEN mode = 'bus' THEN n ELSE 0 END) AS n_bus,
         sum(n_night) AS n_night,
         sum(n_in) AS n_in,
         sum(n) - sum(n_in) AS n_out
  FROM psm GROUP BY pk
),
pdr AS (
  SELECT pk, day, min(first_in_t) AS first_in_t, max(last_out_t) AS last_out_t
  FROM gd GROUP BY pk, day
),
pd AS{materialized} (
  SELECT p.pk, p.day, c.is_workday, c.dow, c.week, p.first_in_t, p.last_out_t,
         CAST((p.first_in_t + {offset}) % 86400 AS DOUBLE) / 3600 AS first_in_hour,
         CAST((p.last_out_t + {offset}) % 86400 AS DOUBLE) / 3600 AS last_out_hour
  FROM pdr p JOIN {calendar} c ON c.day = p.day
),
d AS (
  SELECT pk, count(*) AS active_days,
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
  FROM pd GROUP BY pk
),
ed AS (
  SELECT pk, day - LAG(day) OVER (PARTITION BY pk ORDER BY day) AS gap
  FROM pd WHERE first_in_t IS NOT NULL
),
gc AS (SELECT pk, gap, count(*) AS n FROM ed WHERE gap IS NOT NULL GROUP BY pk, gap),
gr AS (
  SELECT pk, gap, n, sum(n) OVER (PARTITION BY pk) AS n_gaps,
         ROW_NUMBER() OVER (PARTITION BY pk ORDER BY n DESC, gap) AS rn
  FROM gc
),
g AS (SELECT pk, gap AS gap_mode, n AS gap_mode_n, n_gaps FROM gr WHERE rn = 1),
wdc AS (SELECT pk, dow, count(*) AS n FROM pd GROUP BY pk, dow),
wd AS (SELECT pk, max(n) AS top_weekday_days FROM wdc GROUP BY pk),
wkc AS (
  SELECT pk, week,
         max(CASE WHEN dow = 4 AND first_in_t IS NOT NULL THEN 1 ELSE 0 END) AS fri_in,
         max(CASE WHEN dow = 6 AND last_out_t IS NOT NULL THEN 1 ELSE 0 END) AS sun_out
  FROM pd GROUP BY pk, week
),
wk AS (SELECT pk, sum(fri_in * sun_out) AS cycles FROM wkc GROUP BY pk),
sc AS (SELECT pk, site_id, sum(n) AS n FROM psm GROUP BY pk, site_id),
s AS (SELECT pk, count(*) AS n_sites, max(n) AS top_site_n FROM sc GROUP BY pk),
mc AS (SELECT pk, mode, sum(n) AS n FROM psm GROUP BY pk, mode),
mm AS (
  SELECT pk, mode,
         ROW_NUMBER() OVER (PARTITION BY pk ORDER BY n DESC, mode) AS rn
  FROM mc
),
rc AS (SELECT pk, region, sum(n) AS n FROM psm WHERE region <> '' GROUP BY pk, region),
rr AS (
  SELECT pk, region,
         ROW_NUMBER() OVER (PARTITION BY pk ORDER BY n DESC, region) AS rn
  FROM rc
)
"""

_FROM = """
FROM a
JOIN d ON d.pk = a.pk
JOIN s ON s.pk = a.pk
JOIN wd ON wd.pk = a.pk
LEFT JOIN g ON g.pk = a.pk
LEFT JOIN wk ON wk.pk = a.pk
LEFT JOIN mm ON mm.pk = a.pk AND mm.rn = 1
LEFT JOIN rr ON rr.pk = a.pk AND rr.rn = 1
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
        return _window_calendar(self.start, self.as_of)

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


@functools.lru_cache(maxsize=64)
def _window_calendar(start: dt.date, end: dt.date) -> pa.Table:
    table = calendar_table(start, end)
    days = table.column("day").to_pylist()
    # Day 0 (1970-01-01) was a Thursday, so (day + 3) // 7 changes on Mondays.
    return table.append_column("week", pa.array([(d + 3) // 7 for d in days], pa.int64()))


def feature_sql(
    trips: str,
    calendar: str,
    params: dict[str, int],
    *,
    materialize: bool = False,
    hash_fn: str = "hash",
) -> str:
    """The full feature query for relation names `trips` and `calendar` and the window's numbers.

    Two dialect switches change how the query runs, never what it computes: `materialize` asks
    DuckDB to compute each shared intermediate once (`AS MATERIALIZED`) but to re-read the input
    rather than hold it (`NOT MATERIALIZED`; Spark decides both by itself), and `hash_fn` names
    the engine's 64-bit hash (DuckDB `hash`, Spark `xxhash64`), used only as a grouping key.
    """
    select = ",\n  ".join(
        f"CAST({f.sql} AS {'BIGINT' if f.kind == 'int' else 'DOUBLE'}) AS {f.name}"
        for f in FEATURES
    )
    context = "coalesce(mm.mode, '') AS main_mode, coalesce(rr.region, '') AS main_region"
    assert CONTEXT_COLUMNS == ("main_mode", "main_region")
    # Grouping runs on a 64-bit hash of the id (integer keys sort and hash several times faster
    # than strings); two ids sharing a hash would come out with person_id NULL, which callers reject.
    person = "CASE WHEN a.key_ok = 1 THEN a.person_id END AS person_id"
    text = f"{_CTES}\nSELECT {person},\n  {select},\n  {context}\n{_FROM}\nORDER BY 1"
    return text.format(
        trips=trips,
        calendar=calendar,
        materialized=" MATERIALIZED" if materialize else "",
        # Re-reading the input is cheaper than holding every windowed crossing in memory.
        not_materialized=" NOT MATERIALIZED" if materialize else "",
        hash=hash_fn,
        **params,
    )
