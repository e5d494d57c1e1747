"""Generators: one per archetype type, each turning n people of that kind into clean crossings.

``crossings(archetype, n, line, rng, leave)`` returns ``(person, t, direction)``: person 0..n-1,
``t`` in local seconds since midnight of the first simulated day, direction 0 = in, 1 = out. The
feed's messiness (lost legs, double reads, empty regions, order) is added later, apart
(``messiness.py``). ``leave`` is an optional (n, n_days) bool mask of days each person takes off;
only kinds that follow the statutory calendar (``takes_leave``) honour it. Random draws come in a
fixed order per type, so a world is a pure function of its seed.
"""

from __future__ import annotations

from functools import singledispatch

import numpy as np

from commuter_badge.simulate.archetypes import (
    Archetype,
    CareVisits,
    DailyCommuter,
    FestivalVisitor,
    FormerCommuter,
    IrregularDriver,
    NewStarter,
    OfficeDays,
    ShiftRota,
    ShuttleDriver,
    Visitor,
    WeekendVisits,
    WeeklyStay,
    _OneRoundTripADay,
    _WeeklyTrip,
)
from commuter_badge.simulate.timeline import Timeline

HABIT_SD_H = 0.25  # sd (hours) of a person's own usual time around the archetype's mean
DAY = 86_400
MIN_STAY_S = 1_800  # an "out" never comes less than 30 minutes after its "in"

Crossings = tuple[np.ndarray, np.ndarray, np.ndarray]


def _secs(hours: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(hours) * 3600).astype(np.int64)


def _between(rng: np.random.Generator, bounds: tuple[int, int], size) -> np.ndarray:
    return rng.integers(bounds[0], bounds[1] + 1, size)


def _round_trips(p: np.ndarray, t_in: np.ndarray, t_out: np.ndarray) -> Crossings:
    t_out = np.maximum(t_out, t_in + MIN_STAY_S)
    direction = np.repeat(np.array([0, 1], dtype=np.int8), len(p))
    return np.concatenate([p, p]), np.concatenate([t_in, t_out]), direction


def _pick_k(rng, n: int, k: int, count: np.ndarray) -> np.ndarray:
    """(n, k) bool with count[i] randomly chosen True per row (random ranks below count)."""
    ranks = rng.random((n, k)).argsort(axis=1).argsort(axis=1)
    return ranks < count[:, None]


@singledispatch
def crossings(
    a: Archetype, n: int, line: Timeline, rng: np.random.Generator, leave=None
) -> Crossings:
    raise TypeError(f"no generator for archetype type {type(a).__name__} ({a.name})")


# --- one round trip on each of a person's days -----------------------------------------------


def _daily(a: _OneRoundTripADay, n, line, rng, allowed, leave, restrict=None) -> Crossings:
    """Attend the allowed days, narrowed by `restrict(rng, days)`; in and out at habitual times."""
    days = np.arange(line.n_days)[None, :]
    active = allowed & (rng.random((n, line.n_days)) < a.attend)
    if restrict is not None:
        active &= restrict(rng, days)
    if leave is not None and a.takes_leave:
        active &= ~leave
    p, d = np.nonzero(active)
    habit_in, habit_out = rng.normal(0, HABIT_SD_H, n), rng.normal(0, HABIT_SD_H, n)
    t_in = d * DAY + _secs(a.in_h + habit_in[p] + rng.normal(0, a.in_sd, len(p)))
    out_day = d + a.out_next_day
    t_out = out_day * DAY + _secs(a.out_h + habit_out[p] + rng.normal(0, a.out_sd, len(p)))
    p, t, direction = _round_trips(p, t_in, t_out)
    if a.observe is not None:  # each crossing seen with a person-specific probability
        seen = rng.random(len(p)) < rng.uniform(*a.observe, n)[p]
        p, t, direction = p[seen], t[seen], direction[seen]
    return p, t, direction


def _workdays(n: int, line: Timeline) -> np.ndarray:
    # statutory calendar: off on holidays, in on make-up weekends
    return np.broadcast_to(line.workday, (n, line.n_days))


@crossings.register
def _(a: DailyCommuter, n, line, rng, leave=None) -> Crossings:
    return _daily(a, n, line, rng, _workdays(n, line), leave)


@crossings.register
def _(a: NewStarter, n, line, rng, leave=None) -> Crossings:
    def since(rng, days):
        return days >= (line.as_of - _between(rng, a.start_ago, n))[:, None]

    return _daily(a, n, line, rng, _workdays(n, line), leave, since)


@crossings.register
def _(a: FormerCommuter, n, line, rng, leave=None) -> Crossings:
    def until(rng, days):
        return days <= (line.as_of - _between(rng, a.stop_ago, n))[:, None]

    return _daily(a, n, line, rng, _workdays(n, line), leave, until)


@crossings.register
def _(a: OfficeDays, n, line, rng, leave=None) -> Crossings:
    office = _pick_k(rng, n, 5, _between(rng, a.office_days, n))
    allowed = np.zeros((n, line.n_days), dtype=bool)
    weekday = line.dow < 5
    allowed[:, weekday] = office[:, line.dow[weekday]]
    allowed &= line.workday
    return _daily(a, n, line, rng, allowed, leave)


@crossings.register
def _(a: ShiftRota, n, line, rng, leave=None) -> Crossings:
    # a shift rota ignores the calendar entirely
    days = np.arange(line.n_days)[None, :]
    allowed = (days + rng.integers(0, a.cycle, n)[:, None]) % a.cycle == 0
    return _daily(a, n, line, rng, allowed, leave)


@crossings.register
def _(a: CareVisits, n, line, rng, leave=None) -> Crossings:
    every_day = np.ones((n, line.n_days), dtype=bool)
    allowed = _workdays(n, line) if a.days == "workday" else every_day

    def block(rng, days):  # a contiguous block placed inside the feature window (where it fits)
        length = _between(rng, a.block, n)
        room = np.maximum(line.as_of - length - line.window_start + 1, 1)
        first = line.window_start + (rng.random(n) * room).astype(np.int64)
        return (days >= first[:, None]) & (days < (first + length)[:, None])

    return _daily(a, n, line, rng, allowed, leave, block)


# --- weekly trips ------------------------------------------------------------------------------


def _weekly(a: _WeeklyTrip, line: Timeline, rng, chosen: np.ndarray) -> Crossings:
    start_days = np.flatnonzero(line.dow == a.in_dow)
    p, j = np.nonzero(chosen)
    d = start_days[j]
    t_in = d * DAY + _secs(rng.uniform(*a.in_h, len(p)))
    t_out = (d + a.stay_days) * DAY + _secs(rng.uniform(*a.out_h, len(p)))
    return _round_trips(p, t_in, t_out)


@crossings.register
def _(a: WeeklyStay, n, line, rng, leave=None) -> Crossings:
    weeks = int((line.dow == a.in_dow).sum())
    return _weekly(a, line, rng, rng.random((n, weeks)) < a.attend)


@crossings.register
def _(a: WeekendVisits, n, line, rng, leave=None) -> Crossings:
    weeks = int((line.dow == a.in_dow).sum())  # a fixed number of the available weeks
    return _weekly(a, line, rng, _pick_k(rng, n, weeks, _between(rng, a.weeks, n)))


# --- drivers and visitors ----------------------------------------------------------------------


@crossings.register
def _(a: IrregularDriver, n, line, rng, leave=None) -> Crossings:
    p, d = np.nonzero(rng.random((n, line.n_days)) < a.p_day)
    weights = np.asarray(a.trips_per_day, dtype=float)
    trips = rng.choice(len(weights), size=len(p), p=weights / weights.sum()) + 1
    p, d = np.repeat(p, trips), np.repeat(d, trips)
    t_in = d * DAY + _secs(rng.uniform(*a.hours, len(p)))
    return _round_trips(p, t_in, t_in + _secs(rng.uniform(*a.stay_h, len(p))))


@crossings.register
def _(a: ShuttleDriver, n, line, rng, leave=None) -> Crossings:
    options = np.array(list(a.legs))
    legs = rng.choice(options, size=n, p=np.array(list(a.legs.values())))
    most = int(options.max())
    # A fixed personal timetable: first departure, then gaps, jittered a little each day.
    first = rng.uniform(*a.first_h, n)[:, None]
    gaps = np.cumsum(rng.uniform(*a.gap_h, (n, most - 1)), axis=1)
    timetable = np.hstack([first, first + gaps])
    p, d = np.nonzero(rng.random((n, line.n_days)) < a.p_day)
    leg = np.tile(np.arange(most), len(p))
    p, d = np.repeat(p, most), np.repeat(d, most)
    keep = leg < legs[p]
    p, d, leg = p[keep], d[keep], leg[keep]
    t = d * DAY + _secs(timetable[p, leg] + rng.normal(0, a.jitter_h, len(p)))
    return p, t, (leg % 2).astype(np.int8)  # in, out, in, out, ...


@crossings.register
def _(a: Visitor, n, line, rng, leave=None) -> Crossings:
    count = _between(rng, a.visits, n)
    if a.per_month:  # a rate per 30 days, scaled to the simulated span
        count = rng.poisson(count * line.n_days / 30)
    p = np.repeat(np.arange(n), count)
    d = rng.integers(0, line.n_days, len(p))
    t_in = d * DAY + _secs(rng.uniform(*a.in_h, len(p)))
    stay = _between(rng, a.stay_days, len(p))
    t_out = (d + stay) * DAY + _secs(rng.uniform(*a.out_h, len(p)))
    p2, t, direction = _round_trips(p, t_in, t_out)
    # A "single" visit keeps one leg only (the other went by an unobserved route).
    single = rng.random(len(p)) < a.p_single
    drop_in = rng.random(len(p)) < 0.5
    keep = ~np.concatenate([single & drop_in, single & ~drop_in])
    return p2[keep], t[keep], direction[keep]


@crossings.register
def _(a: FestivalVisitor, n, line, rng, leave=None) -> Crossings:
    parts = []
    for first, last in line.long_holidays:
        arrive = first - _between(rng, a.arrive_before, n)
        depart = last + _between(rng, a.leave_after, n)
        t_in = arrive * DAY + _secs(rng.uniform(*a.in_h, n))
        t_out = depart * DAY + _secs(rng.uniform(*a.out_h, n))
        p, t, direction = _round_trips(np.arange(n), t_in, t_out)
        # Beijing people visiting family outside: out at the start, back in at the end.
        reverse = np.tile(rng.random(n) < a.p_reverse, 2)
        parts.append((p, t, np.where(reverse, 1 - direction, direction).astype(np.int8)))
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty.astype(np.int8)
    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))
