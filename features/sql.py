"""The feature query: one SQL text, run unchanged by DuckDB (batch), SQLite (request time) and Spark.

Input is a normalised trips relation `(person_id, t, direction, mode, site_id, region)` with `t` in
epoch seconds. The SQL sticks to the common subset of the dialects (CASE instead of FILTER,
explicit CASTs, no `//`, no dialect date functions): local day and hour come from integer
arithmetic on seconds since the window's first local midnight, because Asia/Shanghai is a fixed
UTC+8 offset.

A person's days in the window are kept as 64-bit masks (bit i = i-th day of the window): active
days, entry days, exit days. Working days, weekdays, calendar weeks and the last week are constant
masks from the calendar, so every count by kind of day is one `bit_count`, and gaps between entry days and Friday-in/Sunday-out weeks are shifts. This
keeps the per-day work to one aggregation.

Point-in-time rule: only crossings with as_of - window_days <= local time < as_of are counted
(reads up to DOUBLE_READ_SECONDS before the window are looked at only to spot double reads).
Double-read rule: a read of the same person, direction, site, mode and region within
DOUBLE_READ_SECONDS of the previous such read is the same crossing scanned twice and is dropped.
Reads that agree on all of these and on the second are interchangeable, so every engine keeps the
same rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa

from commuter_badge.features.definitions import CONTEXT_COLUMNS, FEATURES
from commuter_badge.features.schema import DOUBLE_READ_SECONDS
from commuter_badge.features.workdays import (
    LIBRARY_CALENDAR,
    SHANGHAI_OFFSET_SECONDS,
    WorkingCalendar,
    day_number,
)
from commuter_badge.settings import DEFAULT_WINDOW_DAYS

# What callers say when the query returns a NULL person_id (CTE `names`: two ids, one key).
HASH_CLASH = "two person ids share a 64-bit hash; features cannot be told apart (report this)"
# Region ranks are packed below crossing counts in one BIGINT key; far more than any feed has.
RANK_SPAN = 1 << 20
# A person's crossings, entries and night crossings are summed as three 21-bit fields of one
# BIGINT: up to 2,097,151 each in a window, a read every 3 s for 62 days.
COUNT_BITS = 21
MIN_WINDOW_DAYS = 8
# Day sets are BIGINT masks; bit 62 would make 1 << i overflow a signed 64-bit integer.
MAX_WINDOW_DAYS = 62
# Clock-time habits (mean and spread of entry and exit hours, stay length) need this many days:
# the spread of one day is 0, which would read as the most regular person there is (festival
# visitors, one entry and one exit, were badged at 50% for it). Two, not three, on the
# development worlds: weekly commuters seen on two Fridays keep their evening habit.
MIN_HABIT_DAYS = 2

_CTES = """
WITH w AS{not_materialized} (
  -- s: seconds since the window's first local midnight (an INTEGER keeps the sort narrow)
  SELECT {hash}(person_id) AS pk, {hash}(site_id, mode, region) AS sk,
         {hash}(person_id, direction, site_id, mode, region) AS rk,
         CAST(t - {start_t} AS INTEGER) AS s,
         CASE WHEN direction = 'in' THEN 1 ELSE 0 END AS is_in
  FROM {trips}
  WHERE t >= {start_t} - {double_read_seconds} AND t < {end_t}
),
m AS (
  -- Partitioned by person, not by rk: the rows come out grouped by person, which makes the
  -- aggregations below about twice as fast. Reads that tie on rk and s agree on every column
  -- used below, so no tie-break is needed.
  SELECT pk, sk, s, is_in, rk,
         LAG(rk) OVER (PARTITION BY pk ORDER BY rk, s) AS prev_rk,
         LAG(s) OVER (PARTITION BY pk ORDER BY rk, s) AS prev_s
  FROM w
),
x AS{materialized} (
  SELECT pk, sk, s, is_in
  FROM m
  WHERE (prev_rk IS NULL OR prev_rk <> rk OR s - prev_s > {double_read_seconds}) AND s >= 0
),
xd AS (
  SELECT pk, s, is_in, s % 86400 AS sec, CAST(floor(CAST(s AS DOUBLE) / 86400) AS BIGINT) AS i
  FROM x
),
pdr AS (
  SELECT pk, i,
         -- crossings, entries and night crossings in one sum of {count_bits}-bit fields
         CAST(sum((CAST(1 AS BIGINT) << {crossings_shift}) + (CAST(is_in AS BIGINT) << {entries_shift})
                  + CASE WHEN sec >= 79200 OR sec < 18000 THEN 1 ELSE 0 END) AS BIGINT) AS counts,
         min(CASE WHEN is_in = 1 THEN s END) AS first_in_s,
         max(CASE WHEN is_in = 0 THEN s END) AS last_out_s
  FROM xd GROUP BY pk, i
),
pd AS (
  SELECT pk, i, counts, first_in_s, last_out_s, (CAST(1 AS BIGINT) << i) AS bit,
         first_in_s % 86400 AS in_sec, last_out_s % 86400 AS out_sec
  FROM pdr
),
d AS (
  SELECT pk, CAST(sum(counts) AS BIGINT) AS counts, max(i) AS last_i,
         CAST(sum(CASE WHEN first_in_s IS NOT NULL THEN bit ELSE 0 END) AS BIGINT) AS entry_bits,
         CAST(sum(CASE WHEN last_out_s IS NOT NULL THEN bit ELSE 0 END) AS BIGINT) AS exit_bits,
         CAST(sum(CASE WHEN in_sec >= 18000 AND in_sec < 36000 THEN bit ELSE 0 END)
              AS BIGINT) AS morning_bits,
         CAST(sum(CASE WHEN out_sec >= 57600 AND out_sec < 79200 THEN bit ELSE 0 END)
              AS BIGINT) AS evening_bits,
         CAST(sum(CASE WHEN first_in_s < last_out_s THEN bit ELSE 0 END) AS BIGINT)
             AS round_trip_bits,
         CAST(sum(CASE WHEN first_in_s < last_out_s THEN last_out_s - first_in_s ELSE 0 END)
              AS BIGINT) AS stay_sum,
         -- seconds of day of the first entry and the last exit: sums and sums of squares,
         -- exact in integers, so every engine and every run gets the same mean and spread
         CAST(sum(in_sec) AS BIGINT) AS in_sum,
         CAST(sum(CAST(in_sec AS BIGINT) * in_sec) AS BIGINT) AS in_sq,
         CAST(sum(out_sec) AS BIGINT) AS out_sum,
         CAST(sum(CAST(out_sec AS BIGINT) * out_sec) AS BIGINT) AS out_sq
  FROM pd GROUP BY pk
),
dc AS (
  SELECT pk, bit_count(active_bits) AS active_days, counts >> {crossings_shift} AS crossings,
         counts & {count_mask} AS n_night, (counts >> {entries_shift}) & {count_mask} AS n_in,
         (counts >> {crossings_shift}) - ((counts >> {entries_shift}) & {count_mask}) AS n_out,
         -- the lowest set bit's index: the bits below it, counted
         bit_count((active_bits & -active_bits) - 1) AS first_i, last_i,
         CASE WHEN bit_count(entry_bits) >= {min_habit_days}
              THEN CAST(in_sum AS DOUBLE) / bit_count(entry_bits) / 3600 END AS entry_hour_mean,
         -- population standard deviation, sqrt(n * sum(x^2) - sum(x)^2) / n, in hours
         CASE WHEN bit_count(entry_bits) >= {min_habit_days}
              THEN sqrt(CAST(bit_count(entry_bits) * in_sq - in_sum * in_sum AS DOUBLE))
                   / bit_count(entry_bits) / 3600 END AS entry_hour_std,
         CASE WHEN bit_count(exit_bits) >= {min_habit_days}
              THEN CAST(out_sum AS DOUBLE) / bit_count(exit_bits) / 3600 END AS exit_hour_mean,
         CASE WHEN bit_count(round_trip_bits) >= {min_habit_days}
              THEN CAST(stay_sum AS DOUBLE) / bit_count(round_trip_bits) / 3600 END
              AS stay_hours_mean,
         CASE WHEN bit_count(exit_bits) >= {min_habit_days}
              THEN sqrt(CAST(bit_count(exit_bits) * out_sq - out_sum * out_sum AS DOUBLE))
                   / bit_count(exit_bits) / 3600 END AS exit_hour_std,
         bit_count(active_bits & {workday_bits}) AS workdays_active,
         bit_count(active_bits & ~{workday_bits}) AS offdays_active,
         bit_count(morning_bits & {workday_bits}) AS morning_entry_workdays,
         bit_count(evening_bits & {workday_bits}) AS evening_exit_workdays,
         {active_weeks} AS active_weeks,
         -- working days of the weeks with a crossing: a week of leave does not count against
         bit_count(({active_week_bits}) & {workday_bits}) AS active_week_workdays,
         bit_count(entry_bits & {workday_bits}) AS workday_entries,
         bit_count(round_trip_bits & {workday_bits}) AS workday_round_trips,
         bit_count(active_bits & {recent_bits}) AS recent_active_days,
         greatest({weekday_counts}) AS top_weekday_days,
         bit_count(entry_bits & {friday_bits} & (exit_bits >> 2)) AS cycles,
         CASE WHEN entry_bits = 0 THEN 0 ELSE bit_count(entry_bits) - 1 END AS n_gaps,
         greatest({gap_keys}) AS gap_key
  -- every active day has an entry or an exit
  FROM (SELECT d.*, entry_bits | exit_bits AS active_bits FROM d) da
),
p AS (
  SELECT dc.*, CASE WHEN gap_key >= 64 THEN 63 - gap_key % 64 END AS gap_mode,
         CASE WHEN gap_key >= 64 THEN (gap_key - gap_key % 64) / 64 END AS gap_mode_n,
         -- working days from the person's first to last active day (bits first_i .. last_i)
         bit_count({workday_bits} & ((CAST(1 AS BIGINT) << (last_i + 1))
                                     - (CAST(1 AS BIGINT) << first_i))) AS span_workdays
  FROM dc
),
names AS (
  -- exact: two ids sharing a 64-bit key get no name, and callers reject the row
  SELECT pk, CASE WHEN count(*) = 1 THEN any_value(person_id) END AS person_id
  FROM (SELECT person_id, {hash}(person_id) AS pk FROM {ids} GROUP BY person_id) ids
  GROUP BY pk
),
sites AS{materialized} (
  SELECT sk, site_id, mode, region,
         DENSE_RANK() OVER (ORDER BY site_id) AS site_rank,
         CASE WHEN region = '' THEN 0 ELSE DENSE_RANK() OVER (ORDER BY region) END AS region_rank
  FROM (
    SELECT {hash}(site_id, mode, region) AS sk, any_value(site_id) AS site_id,
           any_value(mode) AS mode, any_value(region) AS region
    FROM {sites} GROUP BY {hash}(site_id, mode, region)
  ) sd
),
ps AS{materialized} (
  SELECT c.pk, c.n, st.site_rank, st.region_rank, st.mode
  FROM (SELECT pk, sk, count(*) AS n FROM x GROUP BY pk, sk) c JOIN sites st ON st.sk = c.sk
),
sr AS (
  -- per person and site (kind 0) or region (kind 1): one grouping pass for both
  SELECT pk, kind, CASE WHEN kind = 0 THEN site_rank ELSE region_rank END AS key_rank,
         CAST(sum(n) AS BIGINT) AS n,
         CAST(sum(CASE WHEN mode = 'rail' THEN n ELSE 0 END) AS BIGINT) AS n_rail,
         CAST(sum(CASE WHEN mode = 'car' THEN n ELSE 0 END) AS BIGINT) AS n_car,
         CAST(sum(CASE WHEN mode = 'bus' THEN n ELSE 0 END) AS BIGINT) AS n_bus
  FROM ps CROSS JOIN (SELECT 0 AS kind UNION ALL SELECT 1 AS kind) k
  WHERE kind = 0 OR region_rank > 0
  GROUP BY pk, kind, CASE WHEN kind = 0 THEN site_rank ELSE region_rank END
),
a AS (
  SELECT pk, n_sites, top_site_n, n_rail, n_bus, n_regions, region_key,
         CASE WHEN n_rail > 0 THEN 1 ELSE 0 END + CASE WHEN n_car > 0 THEN 1 ELSE 0 END
           + CASE WHEN n_bus > 0 THEN 1 ELSE 0 END AS n_modes,
         -- the most used mode; ties go to the earlier name (bus, car, rail)
         CASE WHEN n_bus >= n_car AND n_bus >= n_rail THEN 'bus'
              WHEN n_car >= n_rail THEN 'car' ELSE 'rail' END AS main_mode
  FROM (
    SELECT pk,
           sum(1 - kind) AS n_sites,
           max(CASE WHEN kind = 0 THEN n END) AS top_site_n,
           CAST(sum(CASE WHEN kind = 0 THEN n_rail ELSE 0 END) AS BIGINT) AS n_rail,
           CAST(sum(CASE WHEN kind = 0 THEN n_car ELSE 0 END) AS BIGINT) AS n_car,
           CAST(sum(CASE WHEN kind = 0 THEN n_bus ELSE 0 END) AS BIGINT) AS n_bus,
           sum(kind) AS n_regions,
           -- most used region: greatest (crossings, earlier name) packed into one key, as for gaps
           max(CASE WHEN kind = 1 THEN n * {rank_span} + {rank_span} - 1 - key_rank END) AS region_key
    FROM sr GROUP BY pk
  ) am
),
rn AS (SELECT DISTINCT region_rank, region FROM sites)
"""

_FROM = """
FROM p
JOIN names nm ON nm.pk = p.pk
JOIN a ON a.pk = p.pk
LEFT JOIN rn ON rn.region_rank = {rank_span} - 1 - a.region_key % {rank_span}
"""


@dataclass(frozen=True)
class Window:
    """The days a feature row for `as_of` may look at under `calendar`, and what the SQL needs to
    know of them."""

    as_of: dt.date
    window_days: int = DEFAULT_WINDOW_DAYS
    calendar: WorkingCalendar = LIBRARY_CALENDAR

    def __post_init__(self) -> None:
        if not MIN_WINDOW_DAYS <= self.window_days <= MAX_WINDOW_DAYS:
            raise ValueError(
                f"window_days must be between {MIN_WINDOW_DAYS} and {MAX_WINDOW_DAYS} "
                f"(got {self.window_days})"
            )

    @property
    def start(self) -> dt.date:
        return self.as_of - dt.timedelta(days=self.window_days)

    def days(self) -> pa.Table:
        """Calendar rows (day number, weekday, working-day flag) for the window's days."""
        return self.calendar.table(self.start, self.as_of)

    def params(self) -> dict[str, int]:
        """The window's numbers as the SQL uses them; day sets are bit masks, bit i = start + i."""
        cal = self.days()
        work = cal.column("is_workday").to_pylist()
        dows = cal.column("dow").to_pylist()
        as_of_day = day_number(self.as_of)
        params = {
            "start_t": day_number(self.start) * 86400 - SHANGHAI_OFFSET_SECONDS,
            "end_t": as_of_day * 86400 - SHANGHAI_OFFSET_SECONDS,
            "double_read_seconds": DOUBLE_READ_SECONDS,
            "window_days": self.window_days,
            "n_workdays": sum(work),
            "n_offdays": self.window_days - sum(work),
            "workday_bits": _bits(i for i, w in enumerate(work) if w),
            "recent_bits": _bits(range(self.window_days - 7, self.window_days)),
            "friday_bits": _bits(i for i, d in enumerate(dows) if d == 4),
        }
        for k, days in enumerate(calendar_weeks(dows)):
            params[f"week{k}_bits"] = _bits(days)
        # 7-day blocks back from as_of: as many whatever the weekday of as_of, so a count of them
        # keeps its meaning from month to month (calendar weeks touched vary from 4 to 5)
        for k in range(self.window_days // 7):
            params[f"block{k}_bits"] = _bits(
                range(self.window_days - 7 * (k + 1), self.window_days - 7 * k)
            )
        for dow in range(7):
            params[f"dow{dow}_bits"] = _bits(i for i, d in enumerate(dows) if d == dow)
        return params


def _bits(days: Iterable[int]) -> int:
    return sum(1 << i for i in days)


def calendar_weeks(dows: list[int]) -> list[list[int]]:
    """Day indices of each Monday-to-Sunday week the window touches (the first and last may be
    short): leave is taken by the calendar week, so a week away empties one of these."""
    weeks: list[list[int]] = []
    for i, dow in enumerate(dows):
        if dow == 0 or not weeks:
            weeks.append([])
        weeks[-1].append(i)
    return weeks


def _n_weeks(params: dict[str, int], kind: str = "week") -> int:
    return sum(1 for k in params if k.startswith(kind) and k.endswith("_bits"))


def _active_blocks(n_blocks: int) -> str:
    return " + ".join(
        f"CASE WHEN active_bits & {{block{k}_bits}} <> 0 THEN 1 ELSE 0 END" for k in range(n_blocks)
    )


def _active_week_bits(n_weeks: int) -> str:
    return " + ".join(
        f"CASE WHEN active_bits & {{week{k}_bits}} <> 0 THEN {{week{k}_bits}} ELSE 0 END"
        for k in range(n_weeks)
    )


def _weekday_counts() -> str:
    """Active days on each weekday: seven counts for `greatest`."""
    return ", ".join(f"bit_count(active_bits & {{dow{k}_bits}})" for k in range(7))


def _gap_keys(window_days: int) -> str:
    """For each gap g, a key that sorts by (number of gaps equal to g, smaller g first).

    Entry day i is followed by the next entry day exactly g days later when bit i and bit i+g of
    `entry_bits` are set and the bits between are clear. Key = count * 64 + (63 - g), so the
    greatest key names the most common gap (ties: the shorter one) and its count.
    """
    keys = []
    for g in range(1, window_days):
        between = " | ".join(f"(entry_bits >> {k})" for k in range(1, g))
        clear = f" & ~({between})" if between else ""
        keys.append(
            f"CAST(bit_count(entry_bits & (entry_bits >> {g}){clear}) AS BIGINT) * 64 + {63 - g}"
        )
    return ",\n           ".join(keys)


def feature_sql(
    trips: str,
    params: dict[str, int],
    *,
    materialize: bool = False,
    hash_fn: str = "hash",
    ids: str | None = None,
    sites: str | None = None,
) -> str:
    """The full feature query for the relation named `trips` and the window's numbers.

    Three dialect switches change how the query runs, never what it computes: `materialize` asks
    DuckDB to compute each shared intermediate once (`AS MATERIALIZED`) but to re-read the input
    rather than hold it (`NOT MATERIALIZED`; Spark decides both by itself); `hash_fn` names the
    engine's 64-bit hash (DuckDB `hash`, Spark `xxhash64`), used only as a grouping key; `ids` and
    `sites` may name relations holding the trips' ids and (site_id, mode, region) triples,
    repeats allowed, to read instead of `trips` (`features.read.register_trips` makes such
    lists for trip files, normalised and checked once per distinct value).
    """
    select = ",\n  ".join(
        f"CAST({f.sql} AS {'BIGINT' if f.kind == 'int' else 'DOUBLE'}) AS {f.name}"
        for f in FEATURES
    )
    context = "a.main_mode, coalesce(rn.region, '') AS main_region"
    assert CONTEXT_COLUMNS == ("main_mode", "main_region")
    # Grouping runs on a 64-bit hash of the id (integer keys sort and hash several times faster
    # than strings); two ids sharing a hash come out with person_id NULL (CTE `names`), which
    # callers reject.
    person = "nm.person_id"
    days = params["window_days"]
    ctes = (
        _CTES.replace("{weekday_counts}", _weekday_counts())
        .replace("{gap_keys}", _gap_keys(days))
        .replace("{active_weeks}", _active_blocks(_n_weeks(params, "block")))
        .replace("{active_week_bits}", _active_week_bits(_n_weeks(params)))
    )
    text = f"{ctes}\nSELECT {person},\n  {select},\n  {context}\n{_FROM}\nORDER BY 1"
    return text.format(
        trips=trips,
        materialized=" MATERIALIZED" if materialize else "",
        # Re-reading the input is cheaper than holding every windowed crossing in memory.
        not_materialized=" NOT MATERIALIZED" if materialize else "",
        hash=hash_fn,
        ids=ids or trips,
        sites=sites or trips,
        rank_span=RANK_SPAN,
        count_bits=COUNT_BITS,
        entries_shift=COUNT_BITS,
        crossings_shift=2 * COUNT_BITS,
        count_mask=(1 << COUNT_BITS) - 1,
        min_habit_days=MIN_HABIT_DAYS,
        **params,
    )
