"""Month sequences: the same persons over several months, some starting or stopping commuting.

``simulate_months(persons, as_ofs, seed)`` returns one world per as_of. The first month is exactly
``simulate_world(persons, as_ofs[0], seed, settings=settings)``. Person ids persist across months
(the same pseudonym is the same person), and so do home and second sites while a person's kind
still uses that site. Behaviour, the feed's noise and label noise are drawn afresh each month;
months whose simulated days overlap are generated independently (the same person's crossings on a
shared day need not agree between two months' worlds).

Between two months, in this order:

1. Last month's new starters (``NewStarter``) are now settled: they join the ``DailyCommuter``
   kind whose routes hold their home site (the first such kind, else the first of their mode).
2. Last month's former commuters (``FormerCommuter``) now visit only now and then: they join the
   largest ``Visitor`` kind.
3. Stoppers: as many commuters of calendar-following kinds as the month's ``FormerCommuter`` share
   asks for (times ``churn``) stop, and become that kind this month (truth 1 -> 0).
4. Starters: as many ``Visitor`` persons as the ``NewStarter`` share asks for (times ``churn``)
   start a job, and become that kind this month (truth 0 -> 1).
5. Everyone else is rebalanced to the month's mix: randomly chosen persons of kinds above their
   target count move to kinds below it (such a move is a change of habits with no start or stop
   inside the window). The default catalogue has more former commuters (4%) than new starters
   (2%), so about 2.6% of persons move so each month, 2% of them from non-commuter kinds into
   established commuter kinds (measured at 20,000 persons).

So with no drift the mix stays the catalogue's exactly, and with the default catalogue about 8% of
persons change truth each month (4% stop, 2% start, 2% rebalanced).
``DriftSettings`` shifts the months after the first: ``mix`` multiplies archetype shares (by name),
``new_kinds`` adds kinds (e.g. ``UNSEEN_KINDS``: accompanying a relative's daily hospital
treatment, patient carers, drive-for-hire) at their shares, and ``churn`` scales steps 3-4.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import pandas as pd

from commuter_badge.settings import DEFAULT_WINDOW_DAYS
from commuter_badge.simulate.archetypes import (
    Archetype,
    DailyCommuter,
    FormerCommuter,
    NewStarter,
    Visitor,
)
from commuter_badge.simulate.messiness import LABEL_NOISE
from commuter_badge.simulate.sites import IS_RAIL, SITE_IDS, SITE_INDEX
from commuter_badge.simulate.variation import WorldSettings
from commuter_badge.simulate.world import (
    Homes,
    World,
    as_date,
    check_arguments,
    counts,
    person_ids,
    populate,
)

_MONTH_KEY = 0x4D0_17_45  # keeps the month streams apart from the first month's (the seed itself)


@dataclass(frozen=True, kw_only=True)
class DriftSettings:
    """How the months after the first differ from it (the default: they do not)."""

    mix: Mapping[str, float] = field(default_factory=dict)
    new_kinds: tuple[Archetype, ...] = ()
    churn: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "mix", MappingProxyType(dict(self.mix)))
        if self.churn < 0 or any(f < 0 for f in self.mix.values()):
            raise ValueError("drift: churn and mix factors must be >= 0")

    def apply(self, settings: WorldSettings) -> WorldSettings:
        drifted = settings.with_kinds(self.new_kinds) if self.new_kinds else settings
        return drifted.with_shares(self.mix) if self.mix else drifted


def simulate_months(
    persons: int,
    as_ofs: Sequence[dt.date],
    seed: int,
    drift: DriftSettings | None = None,
    settings: WorldSettings | None = None,
    window_days: int = DEFAULT_WINDOW_DAYS,
    label_noise: float = LABEL_NOISE,
    progress: Callable[[int, int], None] | None = None,
) -> dict[dt.date, World]:
    """One world per as_of (in increasing order), the same persons throughout (module docstring).

    `progress(done, total)` counts months.
    """
    settings, drift = settings or WorldSettings(), drift or DriftSettings()
    check_arguments(persons, window_days, seed, label_noise)
    days = [as_date(d) for d in as_ofs]
    if not days or any(b <= a for a, b in zip(days, days[1:], strict=False)):
        raise ValueError("simulate_months needs at least one as_of, in increasing order")
    ids = person_ids(persons, seed)  # the same pseudonyms every month: persistent persons
    later = drift.apply(settings)
    worlds: dict[dt.date, World] = {}
    names = homes = None
    for m, day in enumerate(days):
        month = settings if m == 0 else later
        streams = np.random.SeedSequence(seed if m == 0 else [_MONTH_KEY, seed, m])
        rng = np.random.default_rng(streams.spawn(1)[0])
        if m == 0:
            codes = np.repeat(np.arange(len(month.archetypes)), counts(persons, month.archetypes))
            codes, keep = codes[rng.permutation(persons)], None
        else:
            codes, stayed = _next_month(names, homes, month, drift.churn, rng)
            keep = (stayed, homes)
        world, homes = populate(
            codes, day, window_days, streams, ids, month, label_noise, None, keep
        )
        names = np.array(month.names(), dtype=object)[codes]
        worlds[day] = world
        if progress:
            progress(m + 1, len(days))
    return worlds


def monthly_as_ofs(first: dt.date, months: int) -> list[dt.date]:
    """`first` and the same day of the following months (clamped to the month's last day)."""
    days = []
    for k in range(months):
        year, month0 = divmod(first.year * 12 + first.month - 1 + k, 12)
        last_day = calendar.monthrange(year, month0 + 1)[1]
        days.append(dt.date(year, month0 + 1, min(first.day, last_day)))
    return days


def _next_month(
    names: np.ndarray, homes: Homes, month: WorldSettings, churn: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Each person's archetype index this month, and who keeps their home and second site."""
    catalogue = month.archetypes
    index = {a.name: k for k, a in enumerate(catalogue)}
    codes = pd.Series(names).map(index).fillna(-1).to_numpy(dtype=np.int64, copy=True)
    previous = codes.copy()
    kind_of = [type(a) for a in catalogue]
    moved = np.zeros(len(codes), dtype=bool)  # settled by steps 1-4; step 5 leaves them be

    def of(types) -> np.ndarray:  # who was of these types last month
        return np.isin(previous, [i for i, t in enumerate(kind_of) if issubclass(t, types)])

    daily = [
        k for k, a in enumerate(catalogue) if isinstance(a, DailyCommuter) and a.observe is None
    ]
    visitors = sorted(
        (k for k, a in enumerate(catalogue) if isinstance(a, Visitor)),
        key=lambda k: -catalogue[k].share,
    )
    if daily:  # 1. starters settle
        for i in np.flatnonzero(of(NewStarter)):
            codes[i] = _settled_kind(catalogue, daily, int(homes.home[i]))
            moved[i] = True
    if visitors:  # 2. former commuters become occasional visitors
        former = of(FormerCommuter)
        codes[former], moved[former] = visitors[0], True
    target = counts(len(codes), catalogue)
    for kind, pool in (
        (FormerCommuter, _stoppable(catalogue, previous)),
        (NewStarter, of(Visitor)),
    ):
        ks = [k for k, t in enumerate(kind_of) if t is kind]
        if not ks:
            continue
        candidates = np.flatnonzero(pool & ~moved)
        n = min(len(candidates), int(round(target[ks[0]] * churn)))
        chosen = rng.choice(candidates, n, replace=False)
        codes[chosen], moved[chosen] = ks[0], True  # 3. stoppers, 4. starters
    churn_kinds = [k for k, t in enumerate(kind_of) if t in (FormerCommuter, NewStarter)]
    _rebalance(codes, moved, target, churn_kinds, rng)  # 5.
    has_site = np.array([[site in a.routes for site in SITE_IDS] for a in catalogue], dtype=bool)
    stayed = has_site[codes, homes.home.astype(np.int64)]
    return codes, stayed


def _stoppable(catalogue, previous: np.ndarray) -> np.ndarray:
    k = [
        i
        for i, a in enumerate(catalogue)
        if a.is_commuter and a.takes_leave and not isinstance(a, NewStarter)
    ]
    return np.isin(previous, k)


def _settled_kind(catalogue, daily: list[int], home: int) -> int:
    site = SITE_IDS[home]
    for k in daily:
        if site in catalogue[k].routes:
            return k
    same_mode = [
        k
        for k in daily
        if any(IS_RAIL[SITE_INDEX[s]] == IS_RAIL[home] for s in catalogue[k].routes)
    ]
    return (same_mode or daily)[0]


def _rebalance(codes, moved, target, fixed: list[int], rng) -> None:
    """Move randomly chosen unsettled persons from kinds above target to kinds below it."""
    free = ~moved
    k_all = len(target)
    goal = target.astype(np.int64).copy()
    for k in fixed:  # the churn kinds hold what steps 3-4 gave them; the rest share the remainder
        goal[k] = int((codes == k).sum())
    others = [k for k in range(k_all) if k not in fixed]
    current = np.bincount(codes[codes >= 0], minlength=k_all)
    remaining = len(codes) - int(sum(goal[k] for k in fixed))
    shares = target[others] / max(int(target[others].sum()), 1)
    exact = shares * remaining
    goal_others = np.floor(exact).astype(np.int64)
    goal_others[
        np.argsort(-(exact - goal_others), kind="stable")[: remaining - goal_others.sum()]
    ] += 1
    goal[others] = goal_others
    pool = [np.flatnonzero(codes < 0)]  # kinds no longer in the catalogue
    for k in others:
        excess = current[k] - goal[k]
        if excess > 0:
            members = np.flatnonzero((codes == k) & free)
            pool.append(rng.choice(members, min(excess, len(members)), replace=False))
    pool = rng.permutation(np.concatenate(pool))
    deficits = np.concatenate(
        [np.full(max(goal[k] - current[k], 0), k) for k in others] or [np.zeros(0, int)]
    )
    n = min(len(pool), len(deficits))
    codes[pool[:n]] = deficits[:n]
