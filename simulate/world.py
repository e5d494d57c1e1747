"""Synthetic worlds of Beijing boundary crossings, for demos, tests, training and benchmarks.

A world is a population drawn from the archetypes below, their observed crossings in the contract's
trip format (contract section 1), noisy labels, and the ground truth behind them. Local days from
``as_of - window_days - 7`` up to ``as_of + 2`` (exclusive) are simulated, so some trips fall before
the feature window and some at/after ``as_of`` (point-in-time tests need both). Behaviour is defined
on Asia/Shanghai local days and clock times; instants are stored in UTC.

Archetypes (share, true commuter?, behaviour; the parameters live in ``ARCHETYPES`` only):

    daily_rail          10%  yes  intercity train, mostly Wuqing: in ~07:00, out ~18:30, workdays
    daily_car_dawn      10%  yes  Xianghe driver via CK-G1-XIJI: in ~06:30, out ~19:00, workdays
    weekly_fri_sun       3%  yes  works in Tianjin, home in Beijing: in Friday evening, out Sunday
    hybrid               5%  yes  2-3 fixed office weekdays, morning in / evening out
    shift_24_48          3%  yes  24h on / 48h off: in ~07:30, out ~08:30 next day, holidays too
    night_shift          2%  yes  in ~21:30 on working days, out ~06:30 the next morning
    new_job              2%  yes  daily commuter who started 8-18 days before as_of
    partially_observed   4%  yes  daily commuter on roads mostly without checkpoints (35-60% seen)
    bus_commuter         3%  yes  daily coach from Yanjiao or Zhuozhou
    truck_driver         6%  no   60% of all days, 1-4 round trips at any hour, many checkpoints
    ride_hail            4%  no   70% of all days, 1-3 short round trips 06-23h, many checkpoints
    shuttle_driver       2%  no   fixed timetable of 4 or 6 crossings on 85% of all days, bus
    business_traveller   8%  no   1-3 rail trips a month, each a stay of 1-3 days
    weekend_visitor      8%  no   in Saturday morning, out Sunday evening, on 2-4 weekends
    hospital_carer       3%  no   daily in 08-11h / out 17-21h for 10-20 days in the window
    stopped_commuting    4%  no   daily commuter whose last commute was 21-30 days before as_of
    occasional_visitor  23%  no   1-4 visits: short round trips or single crossings

Messiness for everyone: missing crossings (MISSING_LEG_RATE), scanner double reads 1-30 s apart
(DOUBLE_READ_RATE), empty regions (EMPTY_REGION_RATE), rows in random order, and labels flipped with
probability LABEL_NOISE within each class.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import pathlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from commuter_badge.atomic import atomic_write
from commuter_badge.features.schema import DIRECTIONS, MODES, TRIP_COLUMNS
from commuter_badge.features.workdays import SHANGHAI_OFFSET_SECONDS, day_number, is_workday
from commuter_badge.settings import DEFAULT_WINDOW_DAYS

MISSING_LEG_RATE = 0.03  # each crossing independently unobserved (scanner down, ticket not linked)
DOUBLE_READ_RATE = 0.02  # crossings read twice, 1-30 s apart, identical otherwise
EMPTY_REGION_RATE = 0.05  # rows whose region field the feed left empty
# Probability a label is wrong, separately in each class. The certified FPR is measured against
# labels, so commuters labelled 0 put a floor under it: about share * LABEL_NOISE / (1 - share),
# 0.36% here. At 1% noise that floor is 0.72% and a 1% target leaves almost no room for the model.
LABEL_NOISE = 0.005
HABIT_SD_H = 0.25  # sd (hours) of a person's own usual time around the archetype's mean
DAYS_BEFORE_WINDOW = 7
DAYS_AFTER_AS_OF = 2
_DAY = 86_400
_MIN_STAY_S = 1_800  # an "out" never comes less than 30 minutes after its "in"


# Stations (RL-) and road checkpoints (CK-) -> the region outside Beijing each one connects to.
SITES: Mapping[str, str] = MappingProxyType(
    {
        "RL-WUQING": "tianjin-wuqing",
        "RL-LANGFANG": "langfang-guangyang",
        "RL-ZHUOZHOU": "baoding-zhuozhou",
        "RL-TIANJIN-SOUTH": "tianjin-xiqing",
        "RL-TIANJIN": "tianjin-hedong",
        "RL-BAODING-EAST": "baoding-lianchi",
        "CK-G1-XIJI": "langfang-xianghe",
        "CK-G102-BAIMIAO": "langfang-sanhe",
        "CK-YANJIAO-CHAOBAI": "langfang-sanhe",
        "CK-G4-DUDIAN": "baoding-zhuozhou",
        "CK-G107-LIULIHE": "baoding-zhuozhou",
        "CK-G2-CAIYU": "tianjin-wuqing",
        "CK-G1N-BAODI": "tianjin-baodi",
        "CK-G45-YUFA": "langfang-guan",
        "CK-G95-LANGFANG": "langfang-guangyang",
        "CK-G3-DACHANG": "langfang-dachang",
        "CK-G6-KANGZHUANG": "zhangjiakou-huailai",
    }
)
_SITE_IDS = tuple(SITES)
_SITE_INDEX = {site: i for i, site in enumerate(_SITE_IDS)}
_IS_RAIL = np.array([site.startswith("RL-") for site in _SITE_IDS])
_RAIL_SITES = np.flatnonzero(_IS_RAIL)
_ROAD_SITES = np.flatnonzero(~_IS_RAIL)
_REGIONS = (*sorted(set(SITES.values())), "")  # last entry: the empty region
_SITE_REGION = np.array([_REGIONS.index(SITES[site]) for site in _SITE_IDS], dtype=np.int8)
_ALL_ROAD = {site: 1.0 for site in _SITE_IDS if not site.startswith("RL-")}
_ALL_RAIL = {site: 1.0 for site in _SITE_IDS if site.startswith("RL-")}


@dataclass(frozen=True)
class Archetype:
    """One kind of person. ``kind`` names its generator; ``params`` are that generator's knobs.

    commuter: days (workday | all | every3 | office), attend, in_h/in_sd and out_h/out_sd (clock
    mean and sd, hours), out_next_day, and optionally office_days, start_ago / stop_ago (days before
    as_of), block (days), observe (probability range). weekly: in_dow, in_h, stay_days, out_h and
    attend or weeks. irregular: p_day, trips_per_day (weights of 1, 2, ... round trips), hours,
    stay_h. shuttle: p_day, legs, first_h, gap_h, jitter_h. visits: visits, per_month, in_h,
    stay_days, out_h, p_single. Pairs (lo, hi) are ranges drawn uniformly.
    """

    name: str
    share: float
    is_commuter: bool
    description: str
    kind: str
    routes: Mapping[str, float]  # home site -> weight; mode is rail at RL- sites, else road_mode
    params: Mapping[str, Any]
    road_mode: str = "car"
    p_alt: float = 0.05  # share of crossings through the person's fixed second site of that kind
    p_any: float = 0.0  # share of crossings through any site of that kind (drivers roam)

    def __post_init__(self) -> None:  # read-only mappings, so ARCHETYPES cannot drift at runtime
        object.__setattr__(self, "routes", MappingProxyType(dict(self.routes)))
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))


def _arch(
    name,
    share,
    commuter,
    description,
    kind,
    routes,
    *,
    road_mode="car",
    p_alt=0.05,
    p_any=0.0,
    **params,
) -> Archetype:
    return Archetype(
        name, share, commuter, description, kind, routes, params, road_mode, p_alt, p_any
    )


ARCHETYPES: tuple[Archetype, ...] = (
    _arch(
        "daily_rail",
        0.10,
        True,
        "intercity train every working day",
        "commuter",
        {"RL-WUQING": 0.5, "RL-LANGFANG": 0.2, "RL-TIANJIN-SOUTH": 0.15, "RL-ZHUOZHOU": 0.15},
        days="workday",
        attend=0.95,
        in_h=7.0,
        in_sd=0.33,
        out_h=18.5,
        out_sd=0.67,
    ),
    _arch(
        "daily_car_dawn",
        0.10,
        True,
        "drives in at dawn every working day",
        "commuter",
        {
            "CK-G1-XIJI": 0.5,
            "CK-G2-CAIYU": 0.15,
            "CK-G102-BAIMIAO": 0.15,
            "CK-G4-DUDIAN": 0.1,
            "CK-G45-YUFA": 0.1,
        },
        days="workday",
        attend=0.93,
        in_h=6.5,
        in_sd=0.33,
        out_h=19.0,
        out_sd=0.75,
    ),
    _arch(
        "weekly_fri_sun",
        0.03,
        True,
        "works in Tianjin, home in Beijing at weekends",
        "weekly",
        {"RL-TIANJIN-SOUTH": 0.3, "RL-TIANJIN": 0.2, "CK-G2-CAIYU": 0.3, "CK-G1N-BAODI": 0.2},
        in_dow=4,
        in_h=(18, 22),
        stay_days=2,
        out_h=(14, 20),
        attend=0.9,
    ),
    _arch(
        "hybrid",
        0.05,
        True,
        "2-3 fixed office weekdays a week",
        "commuter",
        {
            "RL-WUQING": 0.3,
            "RL-LANGFANG": 0.2,
            "CK-G1-XIJI": 0.2,
            "CK-G102-BAIMIAO": 0.15,
            "CK-G95-LANGFANG": 0.15,
        },
        days="office",
        office_days=(2, 3),
        attend=0.9,
        in_h=8.5,
        in_sd=0.5,
        out_h=18.0,
        out_sd=0.75,
    ),
    _arch(
        "shift_24_48",
        0.03,
        True,
        "24 hours on, 48 hours off, whatever the calendar",
        "commuter",
        {
            "CK-G102-BAIMIAO": 0.3,
            "CK-YANJIAO-CHAOBAI": 0.2,
            "CK-G4-DUDIAN": 0.2,
            "RL-ZHUOZHOU": 0.15,
            "CK-G3-DACHANG": 0.15,
        },
        days="every3",
        attend=0.97,
        in_h=7.5,
        in_sd=0.25,
        out_h=8.5,
        out_sd=0.33,
        out_next_day=1,
    ),
    _arch(
        "night_shift",
        0.02,
        True,
        "night shift on working days, home next morning",
        "commuter",
        {"CK-G1-XIJI": 0.3, "CK-G102-BAIMIAO": 0.3, "CK-G95-LANGFANG": 0.2, "CK-G45-YUFA": 0.2},
        days="workday",
        attend=0.93,
        in_h=21.5,
        in_sd=0.33,
        out_h=6.5,
        out_sd=0.33,
        out_next_day=1,
    ),
    _arch(
        "new_job",
        0.02,
        True,
        "daily commuter since 8-18 days before as_of",
        "commuter",
        {"RL-WUQING": 0.3, "RL-LANGFANG": 0.2, "CK-G1-XIJI": 0.3, "CK-G102-BAIMIAO": 0.2},
        days="workday",
        attend=0.95,
        in_h=7.2,
        in_sd=0.4,
        out_h=18.5,
        out_sd=0.7,
        start_ago=(8, 18),
    ),
    _arch(
        "partially_observed",
        0.04,
        True,
        "daily commuter, roads mostly without checkpoints",
        "commuter",
        {"CK-G3-DACHANG": 1, "CK-YANJIAO-CHAOBAI": 1, "CK-G107-LIULIHE": 1, "CK-G6-KANGZHUANG": 1},
        days="workday",
        attend=0.93,
        in_h=7.3,
        in_sd=0.4,
        out_h=18.7,
        out_sd=0.7,
        observe=(0.35, 0.6),
    ),
    _arch(
        "bus_commuter",
        0.03,
        True,
        "daily coach from Yanjiao or Zhuozhou",
        "commuter",
        {
            "CK-G102-BAIMIAO": 0.5,
            "CK-YANJIAO-CHAOBAI": 0.2,
            "CK-G4-DUDIAN": 0.2,
            "CK-G107-LIULIHE": 0.1,
        },
        road_mode="bus",
        days="workday",
        attend=0.92,
        in_h=6.8,
        in_sd=0.33,
        out_h=19.0,
        out_sd=0.67,
    ),
    _arch(
        "truck_driver",
        0.06,
        False,
        "irregular freight runs day and night",
        "irregular",
        _ALL_ROAD,
        p_alt=0.2,
        p_any=0.4,
        p_day=0.6,
        trips_per_day=(0.55, 0.25, 0.12, 0.08),
        hours=(0, 24),
        stay_h=(1, 9),
    ),
    _arch(
        "ride_hail",
        0.04,
        False,
        "intercity ride-hail driver",
        "irregular",
        _ALL_ROAD,
        p_alt=0.2,
        p_any=0.5,
        p_day=0.7,
        trips_per_day=(0.4, 0.4, 0.2),
        hours=(6, 21),
        stay_h=(0.5, 2),
    ),
    _arch(
        "shuttle_driver",
        0.02,
        False,
        "scheduled shuttle bus, weekends too",
        "shuttle",
        {
            "CK-G102-BAIMIAO": 0.3,
            "CK-G4-DUDIAN": 0.2,
            "CK-G1-XIJI": 0.2,
            "CK-G95-LANGFANG": 0.15,
            "CK-G45-YUFA": 0.15,
        },
        road_mode="bus",
        p_alt=0.0,
        p_day=0.85,
        legs={4: 0.6, 6: 0.4},
        first_h=(6.5, 8.0),
        gap_h=(1.5, 3.0),
        jitter_h=0.15,
    ),
    _arch(
        "business_traveller",
        0.08,
        False,
        "a few rail trips a month, 1-3 days each",
        "visits",
        _ALL_RAIL,
        p_alt=0.1,
        p_any=0.2,
        visits=(1, 3),
        per_month=True,
        in_h=(7, 12),
        stay_days=(0, 2),
        out_h=(15, 21),
        p_single=0.0,
    ),
    _arch(
        "weekend_visitor",
        0.08,
        False,
        "visits family on some weekends",
        "weekly",
        {
            "CK-G1-XIJI": 1,
            "CK-G2-CAIYU": 1,
            "CK-G4-DUDIAN": 1,
            "CK-G6-KANGZHUANG": 1,
            "CK-G45-YUFA": 1,
            "CK-G1N-BAODI": 1,
        },
        in_dow=5,
        in_h=(8, 11),
        stay_days=1,
        out_h=(16, 21),
        weeks=(2, 4),
    ),
    _arch(
        "hospital_carer",
        0.03,
        False,
        "visits a Beijing hospital daily for 10-20 days",
        "commuter",
        {
            "CK-G102-BAIMIAO": 1,
            "CK-G1-XIJI": 1,
            "CK-G4-DUDIAN": 1,
            "RL-LANGFANG": 1,
            "RL-TIANJIN-SOUTH": 1,
        },
        days="all",
        attend=0.95,
        in_h=9.5,
        in_sd=0.8,
        out_h=19.0,
        out_sd=1.0,
        block=(10, 20),
    ),
    _arch(
        "stopped_commuting",
        0.04,
        False,
        "daily commuter until 21-30 days before as_of",
        "commuter",
        {"RL-WUQING": 0.3, "CK-G1-XIJI": 0.3, "CK-G102-BAIMIAO": 0.2, "RL-LANGFANG": 0.2},
        days="workday",
        attend=0.94,
        in_h=7.0,
        in_sd=0.4,
        out_h=18.7,
        out_sd=0.7,
        stop_ago=(21, 30),
    ),
    _arch(
        "occasional_visitor",
        0.23,
        False,
        "a few visits or single crossings",
        "visits",
        {**_ALL_ROAD, **_ALL_RAIL},
        p_alt=0.0,
        p_any=0.1,
        visits=(1, 4),
        per_month=False,
        in_h=(8, 14),
        stay_days=(0, 1),
        out_h=(15, 22),
        p_single=0.4,
    ),
)
if abs(sum(a.share for a in ARCHETYPES) - 1.0) > 1e-9:
    raise RuntimeError("archetype shares must sum to 1")


@dataclass(frozen=True, eq=False)  # == on DataFrames is ambiguous; compare the tables themselves
class World:
    trips: pa.Table  # the 6 contract columns, rows in random order
    labels: pd.DataFrame  # person_id, is_commuter (0/1, noisy)
    persons: pd.DataFrame  # person_id, archetype, true_commuter, label_flipped, home_region,
    #                        main_mode


@dataclass(frozen=True)
class _Calendar:
    n_days: int
    workday: np.ndarray  # bool per simulated local day
    dow: np.ndarray  # 0 = Monday
    as_of: int  # index of as_of among the simulated days
    window_start: int


# --- generators: (archetype, n persons, calendar, rng) -> (person 0..n-1, t, direction) ----------
# t is in local seconds since midnight of the first simulated day; direction 0 = in, 1 = out.


def _secs(hours: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(hours) * 3600).astype(np.int64)


def _between(rng: np.random.Generator, bounds: tuple[int, int], size) -> np.ndarray:
    return rng.integers(bounds[0], bounds[1] + 1, size)


def _round_trips(p: np.ndarray, t_in: np.ndarray, t_out: np.ndarray):
    t_out = np.maximum(t_out, t_in + _MIN_STAY_S)
    direction = np.repeat(np.array([0, 1], dtype=np.int8), len(p))
    return np.concatenate([p, p]), np.concatenate([t_in, t_out]), direction


def _pick_k(rng, n: int, k: int, count: np.ndarray) -> np.ndarray:
    """(n, k) bool with count[i] randomly chosen True per row (random ranks below count)."""
    ranks = rng.random((n, k)).argsort(axis=1).argsort(axis=1)
    return ranks < count[:, None]


def _gen_commuter(a: Archetype, n: int, cal: _Calendar, rng):
    q, days = a.params, np.arange(cal.n_days)[None, :]
    if q["days"] == "workday":  # statutory calendar: off on holidays, in on make-up weekends
        allowed = np.broadcast_to(cal.workday, (n, cal.n_days))
    elif q["days"] == "all":
        allowed = np.ones((n, cal.n_days), dtype=bool)
    elif q["days"] == "every3":  # a shift rota ignores the calendar entirely
        allowed = (days + rng.integers(0, 3, n)[:, None]) % 3 == 0
    else:  # "office": the same 2-3 weekdays every week, when they are working days
        office = _pick_k(rng, n, 5, _between(rng, q["office_days"], n))
        allowed = np.zeros((n, cal.n_days), dtype=bool)
        weekday = cal.dow < 5
        allowed[:, weekday] = office[:, cal.dow[weekday]]
        allowed &= cal.workday
    active = allowed & (rng.random((n, cal.n_days)) < q["attend"])
    if "start_ago" in q:
        active &= days >= (cal.as_of - _between(rng, q["start_ago"], n))[:, None]
    if "stop_ago" in q:
        active &= days <= (cal.as_of - _between(rng, q["stop_ago"], n))[:, None]
    if "block" in q:  # a contiguous block placed inside the feature window (where it fits)
        length = _between(rng, q["block"], n)
        room = np.maximum(cal.as_of - length - cal.window_start + 1, 1)
        first = cal.window_start + (rng.random(n) * room).astype(np.int64)
        active &= (days >= first[:, None]) & (days < (first + length)[:, None])
    p, d = np.nonzero(active)
    habit_in, habit_out = rng.normal(0, HABIT_SD_H, n), rng.normal(0, HABIT_SD_H, n)
    t_in = d * _DAY + _secs(q["in_h"] + habit_in[p] + rng.normal(0, q["in_sd"], len(p)))
    out_day = d + q.get("out_next_day", 0)
    t_out = out_day * _DAY + _secs(q["out_h"] + habit_out[p] + rng.normal(0, q["out_sd"], len(p)))
    p, t, direction = _round_trips(p, t_in, t_out)
    if "observe" in q:  # each crossing seen with a person-specific probability
        seen = rng.random(len(p)) < rng.uniform(*q["observe"], n)[p]
        p, t, direction = p[seen], t[seen], direction[seen]
    return p, t, direction


def _gen_weekly(a: Archetype, n: int, cal: _Calendar, rng):
    q = a.params
    start_days = np.flatnonzero(cal.dow == q["in_dow"])
    if "weeks" in q:  # a fixed number of the available weeks
        chosen = _pick_k(rng, n, len(start_days), _between(rng, q["weeks"], n))
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
    options = np.array(list(q["legs"]))
    legs = rng.choice(options, size=n, p=np.array(list(q["legs"].values())))
    most = int(options.max())
    # A fixed personal timetable: first departure, then gaps, jittered a little each day.
    first = rng.uniform(*q["first_h"], n)[:, None]
    gaps = np.cumsum(rng.uniform(*q["gap_h"], (n, most - 1)), axis=1)
    timetable = np.hstack([first, first + gaps])
    p, d = np.nonzero(rng.random((n, cal.n_days)) < q["p_day"])
    leg = np.tile(np.arange(most), len(p))
    p, d = np.repeat(p, most), np.repeat(d, most)
    keep = leg < legs[p]
    p, d, leg = p[keep], d[keep], leg[keep]
    t = d * _DAY + _secs(timetable[p, leg] + rng.normal(0, q["jitter_h"], len(p)))
    return p, t, (leg % 2).astype(np.int8)  # in, out, in, out, ...


def _gen_visits(a: Archetype, n: int, cal: _Calendar, rng):
    q = a.params
    count = _between(rng, q["visits"], n)
    if q["per_month"]:  # a rate per 30 days, scaled to the simulated span
        count = rng.poisson(count * cal.n_days / 30)
    p = np.repeat(np.arange(n), count)
    d = rng.integers(0, cal.n_days, len(p))
    t_in = d * _DAY + _secs(rng.uniform(*q["in_h"], len(p)))
    stay = _between(rng, q["stay_days"], len(p))
    t_out = (d + stay) * _DAY + _secs(rng.uniform(*q["out_h"], len(p)))
    p2, t, direction = _round_trips(p, t_in, t_out)
    # A "single" visit keeps one leg only (the other went by an unobserved route).
    single = rng.random(len(p)) < q["p_single"]
    drop_in = rng.random(len(p)) < 0.5
    keep = ~np.concatenate([single & drop_in, single & ~drop_in])
    return p2[keep], t[keep], direction[keep]


_GENERATORS = {
    "commuter": _gen_commuter,
    "weekly": _gen_weekly,
    "irregular": _gen_irregular,
    "shuttle": _gen_shuttle,
    "visits": _gen_visits,
}


def _calendar(as_of: dt.date, window_days: int) -> tuple[dt.date, _Calendar]:
    start = as_of - dt.timedelta(days=window_days + DAYS_BEFORE_WINDOW)
    n_days = window_days + DAYS_BEFORE_WINDOW + DAYS_AFTER_AS_OF
    days = [start + dt.timedelta(days=i) for i in range(n_days)]
    cal = _Calendar(
        n_days=n_days,
        workday=np.array([is_workday(x) for x in days]),
        dow=np.array([x.weekday() for x in days]),
        as_of=window_days + DAYS_BEFORE_WINDOW,
        window_start=DAYS_BEFORE_WINDOW,
    )
    return start, cal


def _person_ids(n: int, seed: int) -> pa.StringArray:
    """16-hex-char pseudonyms from seed and index that never collide and never look numeric.

    A keyed splitmix-style mix restricted to 60 bits (xor-shifts and odd multiplications mod 2**60
    are bijections) gives 15 unique hex digits; a leading letter a-f keeps CSV readers from
    taking an all-digit id such as "1234..." or "12e4..." for a number.
    """
    mask = np.uint64((1 << 60) - 1)
    digest = hashlib.blake2b(f"commuter-sim:{seed}".encode(), digest_size=16).digest()
    key = np.frombuffer(digest, dtype="<u8")
    z = (np.arange(n, dtype=np.uint64) ^ key[0]) & mask
    for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
        z ^= z >> np.uint64(shift)
        z = (z * np.uint64(mult)) & mask  # uint64 arrays wrap modulo 2**64, then mod 2**60
    z ^= z >> np.uint64(31)
    digits = np.empty((n, 16), dtype=np.uint8)
    digits[:, 0] = 10 + (z ^ key[1]) % np.uint64(6)  # a-f
    digits[:, 1:] = (z[:, None] >> np.arange(56, -1, -4, dtype=np.uint64)) & np.uint64(15)
    chars = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)[digits]
    offsets = np.arange(0, 16 * (n + 1), 16, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(chars.tobytes()))


def _counts(persons: int) -> np.ndarray:
    """Persons per archetype: largest-remainder rounding, so counts sum exactly to `persons`."""
    exact = np.array([a.share for a in ARCHETYPES]) * persons
    counts = np.floor(exact).astype(np.int64)
    counts[np.argsort(-(exact - counts), kind="stable")[: persons - counts.sum()]] += 1
    return counts


def simulate_world(
    persons: int,
    as_of: dt.date,
    seed: int,
    window_days: int = DEFAULT_WINDOW_DAYS,
    label_noise: float = LABEL_NOISE,
    progress: Callable[[int, int], None] | None = None,
) -> World:
    """Simulate `persons` people around `as_of`; the same arguments give identical tables.

    `progress(done, total)` is called after each archetype and once more when the tables are
    assembled (total = len(ARCHETYPES) + 1). Raises CalendarRangeError outside 2004-2026.
    """
    if persons < 0 or window_days < 1 or seed < 0 or not 0 <= label_noise <= 0.5:
        raise ValueError("need persons >= 0, window_days >= 1, seed >= 0, 0 <= label_noise <= 0.5")
    if isinstance(as_of, dt.datetime):
        as_of = as_of.date()
    start, cal = _calendar(as_of, window_days)
    # Independent streams: changing one archetype leaves the others, the noise and the labels alone.
    assign_ss, noise_ss, label_ss, *arch_ss = np.random.SeedSequence(seed).spawn(
        3 + len(ARCHETYPES)
    )
    archetype = np.repeat(np.arange(len(ARCHETYPES)), _counts(persons))
    archetype = archetype[np.random.default_rng(assign_ss).permutation(persons)]
    home = np.zeros(persons, dtype=np.int8)
    main_mode = np.zeros(persons, dtype=np.int8)
    parts: list[tuple[np.ndarray, ...]] = []
    total_steps = len(ARCHETYPES) + 1
    for k, (a, ss) in enumerate(zip(ARCHETYPES, arch_ss, strict=True)):
        rng = np.random.default_rng(ss)
        members = np.flatnonzero(archetype == k)
        n = len(members)
        route = np.array([_SITE_INDEX[s] for s in a.routes])
        weights = np.array(list(a.routes.values()), dtype=float)
        my_home = route[rng.choice(len(route), size=n, p=weights / weights.sum())]
        rail = _IS_RAIL[my_home]
        my_alt = np.where(rail, rng.choice(_RAIL_SITES, n), rng.choice(_ROAD_SITES, n))
        road = MODES.index(a.road_mode)
        my_mode = np.where(rail, MODES.index("rail"), road).astype(np.int8)
        p, t, direction = _GENERATORS[a.kind](a, n, cal, rng)
        # Site per crossing: mostly the home route, sometimes the second site, or any of its kind.
        u = rng.random(len(p))
        anywhere = np.where(
            rail[p], rng.choice(_RAIL_SITES, len(p)), rng.choice(_ROAD_SITES, len(p))
        )
        site = np.where(
            u < a.p_any, anywhere, np.where(u < a.p_any + a.p_alt, my_alt[p], my_home[p])
        )
        parts.append(
            (
                members[p].astype(np.int32),
                t.astype(np.int64),
                direction.astype(np.int8),
                site.astype(np.int8),
                my_mode[p],
            )
        )
        home[members], main_mode[members] = my_home, my_mode
        if progress:
            progress(k + 1, total_steps)

    names = ("person", "t", "direction", "site", "mode")
    columns = {name: np.concatenate([part[i] for part in parts]) for i, name in enumerate(names)}
    del parts
    ids = _person_ids(persons, seed)
    utc_start = day_number(start) * _DAY - SHANGHAI_OFFSET_SECONDS
    trips = _messy_trips(columns, cal.n_days, utc_start, ids, np.random.default_rng(noise_ss))

    true_commuter = np.array([a.is_commuter for a in ARCHETYPES], dtype=np.int64)[archetype]
    flipped = np.random.default_rng(label_ss).random(persons) < label_noise
    person_id = ids.to_pandas()

    def text(values, codes: np.ndarray) -> pd.api.extensions.ExtensionArray:
        return pd.array(np.array(values, dtype=object)[codes], dtype="str")

    labels = pd.DataFrame({"person_id": person_id, "is_commuter": true_commuter ^ flipped})
    persons_df = pd.DataFrame(
        {
            "person_id": person_id,
            "archetype": text([a.name for a in ARCHETYPES], archetype),
            "true_commuter": true_commuter,
            "label_flipped": flipped,
            "home_region": text(list(SITES.values()), home),
            "main_mode": text(MODES, main_mode),
        }
    )
    if progress:
        progress(total_steps, total_steps)
    return World(trips=trips, labels=labels, persons=persons_df)


def _messy_trips(
    columns: dict[str, np.ndarray],
    n_days: int,
    utc_start: int,
    ids: pa.StringArray,
    rng: np.random.Generator,
) -> pa.Table:
    """Apply the feed's messiness to clean crossings and build the contract table.

    Consumes `columns` (person, t, direction, site, mode): each array is dropped as soon as its
    column is built, which keeps a 1M-person world (~28M rows) near 3 GB peak.
    """
    t = columns["t"]
    # Drop what falls outside the simulated days (overnight outs, multi-day stays) and lost legs.
    keep = (t >= 0) & (t < n_days * _DAY) & (rng.random(len(t)) >= MISSING_LEG_RATE)
    del t
    for name in list(columns):
        columns[name] = columns[name][keep]
    n = int(keep.sum())
    del keep
    empty = rng.random(n) < EMPTY_REGION_RATE
    region = np.where(empty, len(_REGIONS) - 1, _SITE_REGION[columns["site"]])
    columns["region"] = region.astype(np.int8)
    del empty, region
    # Double reads copy a row (region included) 1-30 s later; then shuffle the whole table.
    doubled = np.flatnonzero(rng.random(n) < DOUBLE_READ_RATE).astype(np.int32)
    rows = np.concatenate([np.arange(n, dtype=np.int32), doubled])
    delay = np.zeros(len(rows), dtype=np.int8)
    delay[n:] = rng.integers(1, 31, len(doubled))
    order = rng.permutation(len(rows))
    rows, delay = rows[order], delay[order]
    del order, doubled

    ts = columns.pop("t")[rows]  # in-place arithmetic: no extra 8-byte-per-row temporaries
    ts += delay
    ts += utc_start
    ts *= 1_000_000
    del delay
    table = {"ts": pa.array(ts, pa.timestamp("us", tz="UTC"))}
    del ts
    table["person_id"] = pc.take(ids, pa.array(columns.pop("person")[rows]))
    for name, source, values in (
        ("direction", "direction", DIRECTIONS),
        ("mode", "mode", MODES),
        ("site_id", "site", _SITE_IDS),
        ("region", "region", _REGIONS),
    ):
        codes = pa.array(columns.pop(source)[rows])
        table[name] = pc.take(pa.array(values, pa.string()), codes)
    return pa.table({name: table[name] for name in TRIP_COLUMNS})


def write_world(world: World, out_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    """Write trips.parquet, labels.csv and persons.parquet into `out_dir`; return their paths."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "trips": out_dir / "trips.parquet",
        "labels": out_dir / "labels.csv",
        "persons": out_dir / "persons.parquet",
    }
    atomic_write(paths["trips"], lambda p: pq.write_table(world.trips, p))
    atomic_write(paths["labels"], lambda p: world.labels.to_csv(p, index=False))
    persons = pa.Table.from_pandas(world.persons, preserve_index=False)
    atomic_write(paths["persons"], lambda p: pq.write_table(persons, p))
    return paths
