"""Synthetic worlds of Beijing boundary crossings, for demos, tests, training and benchmarks.

A world is a population of people, each drawn from one archetype (below), their observed crossings in
the contract's trip format (contract section 1), noisy labels, and the ground truth behind them. Days
from ``as_of - window_days - 7`` up to ``as_of + 2`` (exclusive) are simulated, so some trips fall
before the feature window and some at/after ``as_of`` (point-in-time tests need both). Behaviour is
defined on Asia/Shanghai local days and clock times; instants are stored in UTC.

Archetypes (share of persons, true commuter?; parameters live in ``ARCHETYPES``):

    commuters (42%)
    daily_rail          10%  yes  intercity train (mostly Wuqing): in ~07:00, out ~18:30, 95% of working days
    daily_car_dawn      10%  yes  Xianghe driver via CK-G1-XIJI: in ~06:30, out ~19:00, 93% of working days
    weekly_fri_sun       3%  yes  works in Tianjin, home in Beijing: in Fri 18-22h, out Sun 14-20h, 90% of weeks
    hybrid               5%  yes  2-3 fixed office weekdays, 90% attendance, morning in / evening out
    shift_24_48          3%  yes  24h on / 48h off: in ~07:30, out ~08:30 next day, every 3rd day, holidays too
    night_shift          2%  yes  in ~21:30 on working days, out ~06:30 the next morning
    new_job              2%  yes  daily commuter who started 8-18 days before as_of; nothing before
    partially_observed   4%  yes  daily commuter on mostly unmonitored roads: 35-60% of crossings observed
    bus_commuter         3%  yes  daily coach from Yanjiao/Zhuozhou, mode bus
    non-commuters (58%)
    truck_driver         6%  no   60% of all days, 1-4 round trips at any hour, many checkpoints
    ride_hail            4%  no   70% of all days, 1-3 short round trips between 06 and 23h, many checkpoints
    shuttle_driver       2%  no   fixed timetable of 4 or 6 crossings a day on 85% of all days, mode bus
    business_traveller   8%  no   1-3 rail trips a month, each a stay of 1-3 days
    weekend_visitor      8%  no   in Saturday morning, out Sunday evening, on 2-4 weekends
    hospital_carer       3%  no   daily in 08-11h / out 17-21h for a block of 10-20 days in the window
    stopped_commuting    4%  no   daily commuter whose last commute was 21-30 days before as_of
    occasional_visitor  23%  no   1-4 visits: short round trips or single crossings

Messiness applied to everyone: missing crossings (MISSING_LEG_RATE), scanner double reads a few seconds
apart (DOUBLE_READ_RATE), empty regions (EMPTY_REGION_RATE), rows in random order, and labels flipped
with probability LABEL_NOISE in each class.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import pathlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.schema import DIRECTIONS, MODES, TRIP_COLUMNS
from features.workdays import SHANGHAI_OFFSET_SECONDS, day_number, is_workday

MISSING_LEG_RATE = 0.03  # each crossing independently unobserved (scanner down, ticket not linked)
DOUBLE_READ_RATE = 0.02  # crossings read twice, 1-30 s apart, identical otherwise
EMPTY_REGION_RATE = 0.05  # rows whose region field the feed left empty
LABEL_NOISE = 0.01  # probability a label is wrong, separately in each class
HABIT_SD_H = 0.25  # sd (hours) of a person's own usual time around the archetype's mean
DAYS_BEFORE_WINDOW = 7
DAYS_AFTER_AS_OF = 2
_DAY = 86_400
_MIN_STAY_S = 1_800  # an "out" never comes less than 30 minutes after its "in"


@dataclass(frozen=True)
class Site:
    site_id: str
    region: str

    @property
    def is_rail(self) -> bool:
        return self.site_id.startswith("RL-")


# Stations (RL-) and road checkpoints (CK-), with the region outside Beijing each one connects to.
SITES: tuple[Site, ...] = (
    Site("RL-WUQING", "tianjin-wuqing"),
    Site("RL-LANGFANG", "langfang-guangyang"),
    Site("RL-ZHUOZHOU", "baoding-zhuozhou"),
    Site("RL-TIANJIN-SOUTH", "tianjin-xiqing"),
    Site("RL-TIANJIN", "tianjin-hedong"),
    Site("RL-BAODING-EAST", "baoding-lianchi"),
    Site("CK-G1-XIJI", "langfang-xianghe"),
    Site("CK-G102-BAIMIAO", "langfang-sanhe"),
    Site("CK-YANJIAO-CHAOBAI", "langfang-sanhe"),
    Site("CK-G4-DUDIAN", "baoding-zhuozhou"),
    Site("CK-G107-LIULIHE", "baoding-zhuozhou"),
    Site("CK-G2-CAIYU", "tianjin-wuqing"),
    Site("CK-G1N-BAODI", "tianjin-baodi"),
    Site("CK-G45-YUFA", "langfang-guan"),
    Site("CK-G95-LANGFANG", "langfang-guangyang"),
    Site("CK-G3-DACHANG", "langfang-dachang"),
    Site("CK-G6-KANGZHUANG", "zhangjiakou-huailai"),
)
_SITE_INDEX = {s.site_id: i for i, s in enumerate(SITES)}
_IS_RAIL = np.array([s.is_rail for s in SITES])
_RAIL_SITES = np.flatnonzero(_IS_RAIL)
_ROAD_SITES = np.flatnonzero(~_IS_RAIL)
_REGIONS = tuple(sorted({s.region for s in SITES})) + ("",)  # last entry: the empty region
_SITE_REGION = np.array([_REGIONS.index(s.region) for s in SITES], dtype=np.int8)


def _even(*site_ids: str) -> tuple[tuple[str, float], ...]:
    return tuple((s, 1.0) for s in site_ids)


_ALL_ROAD = _even(*(s.site_id for s in SITES if not s.is_rail))
_ALL_RAIL = _even(*(s.site_id for s in SITES if s.is_rail))


@dataclass(frozen=True)
class Archetype:
    """One kind of person. ``kind`` names the generator; ``params`` are that generator's knobs."""

    name: str
    share: float
    is_commuter: bool
    description: str
    kind: str  # commuter | weekly | irregular | shuttle | visits
    routes: tuple[tuple[str, float], ...]  # home site and weight; mode is rail for RL- sites
    params: Mapping[str, Any]
    road_mode: str = "car"  # mode at road checkpoints
    p_alt: float = 0.05  # share of crossings through the person's second (fixed) site of that kind
    p_any: float = 0.0  # share of crossings through any site of that kind
    # Frozen mapping so ARCHETYPES is truly read-only.
    def __post_init__(self) -> None:
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))


def _arch(name, share, is_commuter, description, kind, routes, road_mode="car", p_alt=0.05,
          p_any=0.0, **params) -> Archetype:
    return Archetype(name, share, is_commuter, description, kind, routes, params, road_mode, p_alt, p_any)


# Commuter params: days (workday|all|every3|office), attend, in/out clock (mean h, sd h), out_next_day,
# plus optional office_days, start_ago, stop_ago, block, observe (ranges in days or probabilities).
ARCHETYPES: tuple[Archetype, ...] = (
    _arch("daily_rail", 0.10, True, "intercity train to Beijing every working day", "commuter",
          (("RL-WUQING", 0.5), ("RL-LANGFANG", 0.2), ("RL-TIANJIN-SOUTH", 0.15), ("RL-ZHUOZHOU", 0.15)),
          days="workday", attend=0.95, in_h=7.0, in_sd=0.33, out_h=18.5, out_sd=0.67),
    _arch("daily_car_dawn", 0.10, True, "drives in at dawn every working day", "commuter",
          (("CK-G1-XIJI", 0.5), ("CK-G2-CAIYU", 0.15), ("CK-G102-BAIMIAO", 0.15), ("CK-G4-DUDIAN", 0.1),
           ("CK-G45-YUFA", 0.1)),
          days="workday", attend=0.93, in_h=6.5, in_sd=0.33, out_h=19.0, out_sd=0.75),
    _arch("weekly_fri_sun", 0.03, True, "works in Tianjin, home in Beijing at weekends", "weekly",
          (("RL-TIANJIN-SOUTH", 0.3), ("RL-TIANJIN", 0.2), ("CK-G2-CAIYU", 0.3), ("CK-G1N-BAODI", 0.2)),
          in_dow=4, in_h=(18, 22), stay_days=2, out_h=(14, 20), attend=0.9),
    _arch("hybrid", 0.05, True, "2-3 fixed office weekdays a week", "commuter",
          (("RL-WUQING", 0.3), ("RL-LANGFANG", 0.2), ("CK-G1-XIJI", 0.2), ("CK-G102-BAIMIAO", 0.15),
           ("CK-G95-LANGFANG", 0.15)),
          days="office", office_days=(2, 3), attend=0.9, in_h=8.5, in_sd=0.5, out_h=18.0, out_sd=0.75),
    _arch("shift_24_48", 0.03, True, "24 hours on, 48 hours off, whatever the calendar", "commuter",
          (("CK-G102-BAIMIAO", 0.3), ("CK-YANJIAO-CHAOBAI", 0.2), ("CK-G4-DUDIAN", 0.2),
           ("RL-ZHUOZHOU", 0.15), ("CK-G3-DACHANG", 0.15)),
          days="every3", attend=0.97, in_h=7.5, in_sd=0.25, out_h=8.5, out_sd=0.33, out_next_day=1),
    _arch("night_shift", 0.02, True, "night shift on working days, home next morning", "commuter",
          (("CK-G1-XIJI", 0.3), ("CK-G102-BAIMIAO", 0.3), ("CK-G95-LANGFANG", 0.2), ("CK-G45-YUFA", 0.2)),
          days="workday", attend=0.93, in_h=21.5, in_sd=0.33, out_h=6.5, out_sd=0.33, out_next_day=1),
    _arch("new_job", 0.02, True, "daily commuter since 8-18 days before as_of", "commuter",
          (("RL-WUQING", 0.3), ("RL-LANGFANG", 0.2), ("CK-G1-XIJI", 0.3), ("CK-G102-BAIMIAO", 0.2)),
          days="workday", attend=0.95, in_h=7.2, in_sd=0.4, out_h=18.5, out_sd=0.7, start_ago=(8, 18)),
    _arch("partially_observed", 0.04, True, "daily commuter mostly on roads without checkpoints",
          "commuter", _even("CK-G3-DACHANG", "CK-YANJIAO-CHAOBAI", "CK-G107-LIULIHE", "CK-G6-KANGZHUANG"),
          days="workday", attend=0.93, in_h=7.3, in_sd=0.4, out_h=18.7, out_sd=0.7, observe=(0.35, 0.6)),
    _arch("bus_commuter", 0.03, True, "daily coach from Yanjiao or Zhuozhou", "commuter",
          (("CK-G102-BAIMIAO", 0.5), ("CK-YANJIAO-CHAOBAI", 0.2), ("CK-G4-DUDIAN", 0.2),
           ("CK-G107-LIULIHE", 0.1)), road_mode="bus",
          days="workday", attend=0.92, in_h=6.8, in_sd=0.33, out_h=19.0, out_sd=0.67),
    _arch("truck_driver", 0.06, False, "irregular freight runs day and night", "irregular",
          _ALL_ROAD, p_alt=0.2, p_any=0.4,
          p_day=0.6, trips_per_day=(0.55, 0.25, 0.12, 0.08), hours=(0, 24), stay_h=(1, 9)),
    _arch("ride_hail", 0.04, False, "intercity ride-hail driver", "irregular", _ALL_ROAD, p_alt=0.2,
          p_any=0.5, p_day=0.7, trips_per_day=(0.4, 0.4, 0.2), hours=(6, 21), stay_h=(0.5, 2)),
    _arch("shuttle_driver", 0.02, False, "scheduled shuttle bus, weekends too", "shuttle",
          (("CK-G102-BAIMIAO", 0.3), ("CK-G4-DUDIAN", 0.2), ("CK-G1-XIJI", 0.2), ("CK-G95-LANGFANG", 0.15),
           ("CK-G45-YUFA", 0.15)), road_mode="bus", p_alt=0.0,
          p_day=0.85, legs=((4, 0.6), (6, 0.4)), first_h=(6.5, 8.0), gap_h=(1.5, 3.0), jitter_h=0.15),
    _arch("business_traveller", 0.08, False, "a few rail trips a month, staying 1-3 days", "visits",
          _ALL_RAIL, p_alt=0.1, p_any=0.2,
          visits=(1, 3), per_month=True, in_h=(7, 12), stay_days=(0, 2), out_h=(15, 21), p_single=0.0),
    _arch("weekend_visitor", 0.08, False, "visits family on some weekends", "weekly",
          _even("CK-G1-XIJI", "CK-G2-CAIYU", "CK-G4-DUDIAN", "CK-G6-KANGZHUANG", "CK-G45-YUFA",
                "CK-G1N-BAODI"),
          in_dow=5, in_h=(8, 11), stay_days=1, out_h=(16, 21), weeks=(2, 4)),
    _arch("hospital_carer", 0.03, False, "daily visits to a Beijing hospital for 10-20 days", "commuter",
          (("CK-G102-BAIMIAO", 0.2), ("CK-G1-XIJI", 0.2), ("CK-G4-DUDIAN", 0.2), ("RL-LANGFANG", 0.2),
           ("RL-TIANJIN-SOUTH", 0.2)),
          days="all", attend=0.95, in_h=9.5, in_sd=0.8, out_h=19.0, out_sd=1.0, block=(10, 20)),
    _arch("stopped_commuting", 0.04, False, "daily commuter until 21-30 days before as_of", "commuter",
          (("RL-WUQING", 0.3), ("CK-G1-XIJI", 0.3), ("CK-G102-BAIMIAO", 0.2), ("RL-LANGFANG", 0.2)),
          days="workday", attend=0.94, in_h=7.0, in_sd=0.4, out_h=18.7, out_sd=0.7, stop_ago=(21, 30)),
    _arch("occasional_visitor", 0.23, False, "a few visits or single crossings", "visits",
          _ALL_ROAD + _ALL_RAIL, p_alt=0.0, p_any=0.1,
          visits=(1, 4), per_month=False, in_h=(8, 14), stay_days=(0, 1), out_h=(15, 22), p_single=0.4),
)
if abs(sum(a.share for a in ARCHETYPES) - 1.0) > 1e-9:
    raise RuntimeError("archetype shares must sum to 1")


@dataclass(frozen=True, eq=False)  # eq on DataFrames is ambiguous; compare the tables themselves
class World:
    trips: pa.Table  # the 6 contract columns, rows in random order
    labels: pd.DataFrame  # person_id, is_commuter (0/1, noisy)
    persons: pd.DataFrame  # person_id, archetype, true_commuter, label_flipped, home_region, main_mode


@dataclass(frozen=True)
class _Calendar:
    n_days: int
    workday: np.ndarray  # bool per simulated local day
    dow: np.ndarray  # 0 = Monday
    as_of: int  # index of as_of among the simulated days
    window_start: int


# --- generators: (archetype, persons n, calendar, rng) -> (person 0..n-1, local seconds, direction) ---

def _secs(hours: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(hours) * 3600).astype(np.int64)


def _round_trips(p: np.ndarray, t_in: np.ndarray, t_out: np.ndarray):
    t_out = np.maximum(t_out, t_in + _MIN_STAY_S)
    direction = np.repeat(np.array([0, 1], dtype=np.int8), len(p))
    return np.concatenate([p, p]), np.concatenate([t_in, t_out]), direction


def _pick_k(rng, n: int, k: int, count: np.ndarray) -> np.ndarray:
    """(n, k) bool with count[i] randomly chosen True per row (random ranks below count)."""
    ranks = rng.random((n, k)).argsort(axis=1).argsort(axis=1)
    return ranks < count[:, None]


def _gen_commuter(a: Archetype, n: int, cal: _Calendar, rng):
    q, days = a.params, np.arange(cal.n_days)
    if q["days"] == "workday":  # statutory calendar: off on holidays, in on make-up weekends
        allowed = np.broadcast_to(cal.workday, (n, cal.n_days))
    elif q["days"] == "all":
        allowed = np.ones((n, cal.n_days), dtype=bool)
    elif q["days"] == "every3":  # shift rota ignores the calendar entirely
        allowed = (days[None, :] + rng.integers(0, 3, n)[:, None]) % 3 == 0
    else:  # "office": the same 2-3 weekdays every week, only when they are working days
        lo, hi = q["office_days"]
        office = _pick_k(rng, n, 5, rng.integers(lo, hi + 1, n))
        allowed = np.zeros((n, cal.n_days), dtype=bool)
        weekday = cal.dow < 5
        allowed[:, weekday] = office[:, cal.dow[weekday]]
        allowed &= cal.workday
    active = allowed & (rng.random((n, cal.n_days)) < q["attend"])
    if "start_ago" in q:
        first = cal.as_of - rng.integers(q["start_ago"][0], q["start_ago"][1] + 1, n)
        active &= days[None, :] >= first[:, None]
    if "stop_ago" in q:
        last = cal.as_of - rng.integers(q["stop_ago"][0], q["stop_ago"][1] + 1, n)
        active &= days[None, :] <= last[:, None]
    if "block" in q:  # contiguous block placed inside the feature window where it fits
        length = rng.integers(q["block"][0], q["block"][1] + 1, n)
        room = np.maximum(cal.as_of - length - cal.window_start + 1, 1)
        first = cal.window_start + (rng.random(n) * room).astype(np.int64)
        active &= (days[None, :] >= first[:, None]) & (days[None, :] < (first + length)[:, None])
    p, d = np.nonzero(active)
    m = len(p)
    habit_in, habit_out = rng.normal(0, HABIT_SD_H, n), rng.normal(0, HABIT_SD_H, n)
    t_in = d * _DAY + _secs(q["in_h"] + habit_in[p] + rng.normal(0, q["in_sd"], m))
    out_day = d + q.get("out_next_day", 0)
    t_out = out_day * _DAY + _secs(q["out_h"] + habit_out[p] + rng.normal(0, q["out_sd"], m))
    p, t, direction = _round_trips(p, t_in, t_out)
    if "observe" in q:  # each crossing seen with a person-specific probability
        rate = rng.uniform(q["observe"][0], q["observe"][1], n)
        seen = rng.random(len(p)) < rate[p]
        p, t, direction = p[seen], t[seen], direction[seen]
    return p, t, direction


def _gen_weekly(a: Archetype, n: int, cal: _Calendar, rng):
    q = a.params
    start_days = np.flatnonzero(cal.dow == q["in_dow"])
    if "weeks" in q:  # a fixed number of the available weeks
        chosen = _pick_k(rng, n, len(start_days), rng.integers(q["weeks"][0], q["weeks"][1] + 1, n))
    else:
        chosen = rng.random((n, len(start_days))) < q["attend"]
    p, j = np.nonzero(chosen)
    d = start_days[j]
    t_in = d * _DAY + _secs(rng.uniform(*q["in_h"], len(p)))
    t_out = (d + q["stay_days"]) * _DAY + _secs(rng.uniform(*q["out_h"], len(p)))
    return _round_trips(p, t_in, t_out)


def _gen_irregular(a: Archetype, n: int, cal: _Calendar, rng):
    q = a.params
    p, d = np.nonzero(rng.random((n, cal.n_days)) < q["p_day"])
    weights = np.asarray(q["trips_per_day"], dtype=float)
    trips = rng.choice(len(weights), size=len(p), p=weights / weights.sum()) + 1
    p, d = np.repeat(p, trips), np.repeat(d, trips)
    t_in = d * _DAY + _secs(rng.uniform(*q["hours"], len(p)))
    return _round_trips(p, t_in, t_in + _secs(rng.uniform(*q["stay_h"], len(p))))


def _gen_shuttle(a: Archetype, n: int, cal: _Calendar, rng):
    q = a.params
    legs_values, legs_p = zip(*q["legs"])
    legs = rng.choice(np.array(legs_values), size=n, p=np.array(legs_p))
    most = max(legs_values)
    first = rng.uniform(*q["first_h"], n)[:, None]
    timetable = np.hstack([first, first + np.cumsum(rng.uniform(*q["gap_h"], (n, most - 1)), axis=1)])
    p, d = np.nonzero(rng.random((n, cal.n_days)) < q["p_day"])
    leg = np.tile(np.arange(most), len(p))
    p, d = np.repeat(p, most), np.repeat(d, most)
    keep = leg < legs[p]
    p, d, leg = p[keep], d[keep], leg[keep]
    t = d * _DAY + _secs(timetable[p, leg] + rng.normal(0, q["jitter_h"], len(p)))
    return p, t, (leg % 2).astype(np.int8)  # in, out, in, out, ...


def _gen_visits(a: Archetype, n: int, cal: _Calendar, rng):
    q = a.params
    count = rng.integers(q["visits"][0], q["visits"][1] + 1, n)
    if q["per_month"]:  # rate per 30 days, scaled to the simulated span
        count = rng.poisson(count * cal.n_days / 30)
    p = np.repeat(np.arange(n), count)
    d = rng.integers(0, cal.n_days, len(p))
    t_in = d * _DAY + _secs(rng.uniform(*q["in_h"], len(p)))
    stay = rng.integers(q["stay_days"][0], q["stay_days"][1] + 1, len(p))
    t_out = (d + stay) * _DAY + _secs(rng.uniform(*q["out_h"], len(p)))
    p2, t, direction = _round_trips(p, t_in, t_out)
    # A "single" visit keeps only one leg (e.g. arrived by car, left by an unobserved route).
    single = rng.random(len(p)) < q["p_single"]
    drop_leg = rng.integers(0, 2, len(p))
    keep = ~np.concatenate([single & (drop_leg == 0), single & (drop_leg == 1)])
    return p2[keep], t[keep], direction[keep]


_GENERATORS = {"commuter": _gen_commuter, "weekly": _gen_weekly, "irregular": _gen_irregular,
               "shuttle": _gen_shuttle, "visits": _gen_visits}


def _calendar(as_of: dt.date, window_days: int) -> tuple[dt.date, _Calendar]:
    start = as_of - dt.timedelta(days=window_days + DAYS_BEFORE_WINDOW)
    days = [start + dt.timedelta(days=i)
            for i in range(window_days + DAYS_BEFORE_WINDOW + DAYS_AFTER_AS_OF)]
    cal = _Calendar(n_days=len(days), workday=np.array([is_workday(x) for x in days]),
                    dow=np.array([x.weekday() for x in days]),
                    as_of=window_days + DAYS_BEFORE_WINDOW, window_start=DAYS_BEFORE_WINDOW)
    return start, cal


def _person_ids(n: int, seed: int) -> pa.StringArray:
    """16-hex pseudonyms: a keyed 64-bit bijection (splitmix64) of the index, so never a collision."""
    key = np.frombuffer(hashlib.blake2b(f"commuter-sim:{seed}".encode(), digest_size=16).digest(),
                        dtype="<u8")
    z = (np.arange(n, dtype=np.uint64) ^ key[0]) + np.uint64(0x9E3779B97F4A7C15)
    for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
        z = (z ^ (z >> np.uint64(shift))) * np.uint64(mult)  # uint64 arrays wrap modulo 2**64
    z = (z ^ (z >> np.uint64(31))) ^ key[1]
    nibbles = z.astype(">u8").view(np.uint8).reshape(n, 8)
    hex_chars = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)[
        np.stack([nibbles >> 4, nibbles & 15], axis=-1).reshape(-1)]
    offsets = np.arange(0, 16 * (n + 1), 16, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(hex_chars.tobytes()))


def _counts(persons: int) -> np.ndarray:
    """Persons per archetype: largest-remainder rounding, so counts sum exactly to `persons`."""
    exact = np.array([a.share for a in ARCHETYPES]) * persons
    counts = np.floor(exact).astype(np.int64)
    counts[np.argsort(-(exact - counts), kind="stable")[: persons - counts.sum()]] += 1
    return counts


def simulate_world(persons: int, as_of: dt.date, seed: int, window_days: int = 28,
                   label_noise: float = LABEL_NOISE,
                   progress: Callable[[int, int], None] | None = None) -> World:
    """Simulate `persons` people around `as_of`; same arguments give identical tables.

    `progress(done, total)` is called after each archetype and once after assembling the table
    (total = len(ARCHETYPES) + 1).
    """
    if persons < 0 or window_days < 1 or seed < 0 or not 0 <= label_noise <= 0.5:
        raise ValueError("need persons >= 0, window_days >= 1, seed >= 0 and 0 <= label_noise <= 0.5")
    if isinstance(as_of, dt.datetime):
        as_of = as_of.date()
    start, cal = _calendar(as_of, window_days)
    # Independent streams: e.g. changing one archetype's parameters leaves the labels' noise unchanged.
    assign_ss, noise_ss, label_ss, *arch_ss = np.random.SeedSequence(seed).spawn(3 + len(ARCHETYPES))
    archetype = np.repeat(np.arange(len(ARCHETYPES)), _counts(persons))
    archetype = archetype[np.random.default_rng(assign_ss).permutation(persons)]
    home = np.zeros(persons, dtype=np.int8)
    main_mode = np.zeros(persons, dtype=np.int8)
    parts: list[tuple[np.ndarray, ...]] = []
    total_steps = len(ARCHETYPES) + 1
    for k, (a, ss) in enumerate(zip(ARCHETYPES, arch_ss)):
        rng = np.random.default_rng(ss)
        members = np.flatnonzero(archetype == k)
        n = len(members)
        sites, weights = zip(*a.routes)
        route = np.array([_SITE_INDEX[s] for s in sites])
        my_home = route[rng.choice(len(route), size=n, p=np.array(weights) / sum(weights))]
        rail = _IS_RAIL[my_home]
        my_alt = np.where(rail, rng.choice(_RAIL_SITES, n), rng.choice(_ROAD_SITES, n))
        my_mode = np.where(rail, MODES.index("rail"), MODES.index(a.road_mode)).astype(np.int8)
        p, t, direction = _GENERATORS[a.kind](a, n, cal, rng)
        # Sites per crossing: mostly the home route, sometimes the second site, sometimes any of its kind.
        u = rng.random(len(p))
        anywhere = np.where(rail[p], rng.choice(_RAIL_SITES, len(p)), rng.choice(_ROAD_SITES, len(p)))
        site = np.where(u < a.p_any, anywhere, np.where(u < a.p_any + a.p_alt, my_alt[p], my_home[p]))
        parts.append((members[p].astype(np.int32), t.astype(np.int64), direction.astype(np.int8),
                      site.astype(np.int8), my_mode[p]))
        home[members], main_mode[members] = my_home, my_mode
        if progress:
            progress(k + 1, total_steps)

    columns = {name: (np.concatenate([part[i] for part in parts]) if parts else np.zeros(0, np.int8))
               for i, name in enumerate(("person", "t", "direction", "site", "mode"))}
    del parts
    ids = _person_ids(persons, seed)
    utc_start = day_number(start) * _DAY - SHANGHAI_OFFSET_SECONDS
    trips = _messy_trips(columns, cal.n_days, utc_start, ids, np.random.default_rng(noise_ss))

    true_commuter = np.array([a.is_commuter for a in ARCHETYPES], dtype=np.int64)[archetype]
    flipped = np.random.default_rng(label_ss).random(persons) < label_noise
    person_id = ids.to_pandas()
    labels = pd.DataFrame({"person_id": person_id, "is_commuter": true_commuter ^ flipped})
    names = np.array([a.name for a in ARCHETYPES], dtype=object)
    persons_df = pd.DataFrame({
        "person_id": person_id,
        "archetype": pd.array(names[archetype], dtype="str"),
        "true_commuter": true_commuter,
        "label_flipped": flipped,
        "home_region": pd.array(np.array([s.region for s in SITES], dtype=object)[home], dtype="str"),
        "main_mode": pd.array(np.array(MODES, dtype=object)[main_mode], dtype="str"),
    })
    if progress:
        progress(total_steps, total_steps)
    return World(trips=trips, labels=labels, persons=persons_df)


def _messy_trips(columns: dict[str, np.ndarray], n_days: int, utc_start: int, ids: pa.StringArray,
                 rng: np.random.Generator) -> pa.Table:
    """Apply the feed's messiness to clean crossings and build the contract table.

    Consumes `columns` (person, t = local seconds since the first simulated day, direction, site,
    mode): each array is dropped once its column is built, which keeps 1M-person worlds well
    below 4 GB.
    """
    t = columns["t"]
    # Drop what falls outside the simulated days (overnight outs, multi-day stays) and missing legs.
    keep = (t >= 0) & (t < n_days * _DAY) & (rng.random(len(t)) >= MISSING_LEG_RATE)
    for name in list(columns):
        columns[name] = columns[name][keep]
    n = int(keep.sum())
    del keep, t
    empty = rng.random(n) < EMPTY_REGION_RATE
    columns["region"] = np.where(empty, len(_REGIONS) - 1, _SITE_REGION[columns["site"]]).astype(np.int8)
    del empty
    # Double reads copy a row (region included) 1-30 s later; then shuffle the whole table.
    doubled = np.flatnonzero(rng.random(n) < DOUBLE_READ_RATE).astype(np.int32)
    rows = np.concatenate([np.arange(n, dtype=np.int32), doubled])
    delay = np.zeros(len(rows), dtype=np.int8)
    delay[n:] = rng.integers(1, 31, len(doubled))
    order = rng.permutation(len(rows))
    rows, delay = rows[order], delay[order]
    del order, doubled

    ts = columns.pop("t")[rows]
    ts += delay
    ts += utc_start
    ts *= 1_000_000
    del delay
    table = {"ts": pa.array(ts, pa.timestamp("us", tz="UTC"))}
    del ts
    table["person_id"] = pc.take(ids, pa.array(columns.pop("person")[rows]))
    for name, source, values in (("direction", "direction", DIRECTIONS), ("mode", "mode", MODES),
                                 ("site_id", "site", tuple(s.site_id for s in SITES)),
                                 ("region", "region", _REGIONS)):
        table[name] = pc.take(pa.array(values, pa.string()), pa.array(columns.pop(source)[rows]))
    return pa.table({name: table[name] for name in TRIP_COLUMNS})


def _atomic_write(path: pathlib.Path, write: Callable[[pathlib.Path], None]) -> None:
    """Write via a temp file in the same directory, then rename: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_world(world: World, out_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    """Write trips.parquet, labels.csv and persons.parquet into `out_dir`; return their paths."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"trips": out_dir / "trips.parquet", "labels": out_dir / "labels.csv",
             "persons": out_dir / "persons.parquet"}
    _atomic_write(paths["trips"], lambda p: pq.write_table(world.trips, p))
    _atomic_write(paths["labels"], lambda p: world.labels.to_csv(p, index=False))
    _atomic_write(paths["persons"], lambda p: pq.write_table(
        pa.Table.from_pandas(world.persons, preserve_index=False), p))
    return paths
