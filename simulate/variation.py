"""Settings that make worlds differ from the default one, for robustness and drift studies.

``WorldSettings()`` is the default world: ``ARCHETYPES``, the default ``Messiness``, no holiday
leave. It gives exactly the world ``simulate_world`` always gave for a seed. From it:

- ``perturbed(seed, spread)``: every archetype's parameters randomised (probabilities on the logit
  scale, clock times shifted, spreads scaled, day counts shifted) and the mix re-weighted
  (log-normal factors, renormalised). Seeded on its own, apart from the world's seed, so one
  perturbation can be simulated with many world seeds.
- ``with_kinds(kinds)``: adds kinds (e.g. ``UNSEEN_KINDS``, which no default world has), each at
  its own share; the others shrink in proportion to make room.
- ``with_shares({name: factor})``: re-weights the mix; ``without(names)`` drops kinds.
- ``for_holidays(leave, visitors)``: holiday behaviour around each long statutory holiday in the
  simulated span (see ``timeline.Timeline.long_holidays``): people whose kind follows the
  statutory calendar take working days of leave right before and after it (``HolidayLeave``),
  and family visitors come over it (``FESTIVAL_VISITORS``). Pick an as_of whose window holds the
  festival, e.g. ``SPRING_FESTIVAL_2022_AS_OF`` (window 2022-01-21 .. 2022-02-17 holds the 2022
  Spring Festival, 01-31 .. 02-06, and its make-up working weekend 01-29/30).

Every method returns a new frozen ``WorldSettings``; a catalogue's shares always sum to 1.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from commuter_badge.features.workdays import LIBRARY_CALENDAR, WorkingCalendar
from commuter_badge.simulate.archetypes import (
    ARCHETYPES,
    FESTIVAL_VISITORS,
    Archetype,
    IntRange,
    check_catalogue,
)
from commuter_badge.simulate.messiness import Messiness
from commuter_badge.simulate.timeline import Timeline

SPRING_FESTIVAL_2022_AS_OF = dt.date(2022, 2, 18)
_PERTURB_KEY = 0x5EED_0F_7A  # keeps a perturbation's stream apart from any world's seed


@dataclass(frozen=True, kw_only=True)
class HolidayLeave:
    """Leave around long holidays: with probability ``p_leave`` per person and holiday, the
    ``before`` working days right before it and the ``after`` right after it are taken off."""

    p_leave: float = 0.6
    before: IntRange = (0, 3)
    after: IntRange = (0, 3)

    def mask(self, takes_leave: np.ndarray, line: Timeline, rng: np.random.Generator) -> np.ndarray:
        """(n, n_days) bool: the days each person is on leave (only where `takes_leave`)."""
        n = len(takes_leave)
        leave = np.zeros((n, line.n_days), dtype=bool)
        work = line.workday
        for first, last in line.long_holidays:
            stretch = takes_leave & (rng.random(n) < self.p_leave)
            k_before = rng.integers(self.before[0], self.before[1] + 1, n)
            k_after = rng.integers(self.after[0], self.after[1] + 1, n)
            day, never = np.arange(line.n_days), line.n_days + 1
            # rank of each working day counted away from the holiday: 0 = the adjacent one
            rank_before = np.where(
                work & (day < first), _rank(work, day < first, reverse=True), never
            )
            rank_after = np.where(work & (day > last), _rank(work, day > last), never)
            leave |= stretch[:, None] & (
                (rank_before[None, :] < k_before[:, None])
                | (rank_after[None, :] < k_after[:, None])
            )
        return leave


def _rank(work: np.ndarray, side: np.ndarray, reverse: bool = False) -> np.ndarray:
    """Per day: how many working days on `side` lie between it and the holiday."""
    counted = (work & side).astype(np.int64)
    if reverse:
        return np.cumsum(counted[::-1])[::-1] - counted
    return np.cumsum(counted) - counted


@dataclass(frozen=True, kw_only=True)
class WorldSettings:
    """Everything about a world but its size, day, window and seed."""

    archetypes: tuple[Archetype, ...] = ARCHETYPES
    messiness: Messiness = Messiness()
    holiday_leave: HolidayLeave | None = None
    # Working days and long holidays follow it (a schedule file's years included).
    calendar: WorkingCalendar = LIBRARY_CALENDAR

    def __post_init__(self) -> None:
        check_catalogue(self.archetypes)

    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.archetypes)

    def with_shares(self, factors: Mapping[str, float]) -> WorldSettings:
        unknown = sorted(set(factors) - set(self.names()))
        if unknown:
            raise ValueError(f"no archetypes named {unknown}; known: {', '.join(self.names())}")
        weights = [a.share * factors.get(a.name, 1.0) for a in self.archetypes]
        return self._reweighted(self.archetypes, weights)

    def with_kinds(self, kinds: Iterable[Archetype]) -> WorldSettings:
        kinds = tuple(kinds)
        added = sum(k.share for k in kinds)
        if not 0.0 <= added < 1.0:
            raise ValueError(f"added kinds must take less than the whole mix, not {added}")
        kept = tuple(a for a in self.archetypes if a.name not in {k.name for k in kinds})
        scale = (1.0 - added) / sum(a.share for a in kept)
        return self._reweighted(
            (*kept, *kinds), [a.share * scale for a in kept] + [k.share for k in kinds]
        )

    def without(self, names: Iterable[str]) -> WorldSettings:
        names = set(names)
        kept = tuple(a for a in self.archetypes if a.name not in names)
        return self._reweighted(kept, [a.share for a in kept])

    def for_holidays(
        self, leave: HolidayLeave | None = None, visitors: Archetype | None = FESTIVAL_VISITORS
    ) -> WorldSettings:
        settings = self.with_kinds([visitors]) if visitors is not None else self
        return dataclasses.replace(settings, holiday_leave=leave or HolidayLeave())

    def perturbed(self, seed: int, spread: float = 1.0) -> WorldSettings:
        """Randomised parameters and mix; spread 0 changes nothing, 1 is a plausible other world."""
        rng = np.random.default_rng([_PERTURB_KEY, seed])
        archetypes = tuple(perturb(a, rng, spread) for a in self.archetypes)
        weights = [a.share * float(np.exp(rng.normal(0, 0.35 * spread))) for a in archetypes]
        return self._reweighted(archetypes, weights)

    def _reweighted(self, archetypes, weights) -> WorldSettings:
        total = float(sum(weights))
        if not archetypes or total <= 0:
            raise ValueError("a world needs at least one archetype with a positive share")
        shares = [w / total for w in weights]
        shares[-1] = 1.0 - sum(shares[:-1])  # exact sum, so check_catalogue never trips on rounding
        archetypes = tuple(
            dataclasses.replace(a, share=max(s, 0.0))
            for a, s in zip(archetypes, shares, strict=True)
        )
        return dataclasses.replace(self, archetypes=archetypes)


def perturb(a: Archetype, rng: np.random.Generator, spread: float = 1.0) -> Archetype:
    """A copy of `a` with each ``vary`` field randomised (see the module docstring)."""
    changes = {}
    for f in dataclasses.fields(a):
        kind, value = f.metadata.get("vary"), getattr(a, f.name)
        if kind is None or value is None:
            continue
        changes[f.name] = _VARY[kind](value, rng, spread, f.metadata.get("most"))
    return dataclasses.replace(a, **changes)


def _prob(value, rng, spread, _most):
    def one(x, z):
        if z == 0:  # the logit round trip would move x by an ulp
            return x
        x = min(max(float(x), 1e-3), 1 - 1e-3)
        return float(1 / (1 + np.exp(-(np.log(x / (1 - x)) + z))))

    z = rng.normal(0, 0.5 * spread)  # one shift for both ends of a range keeps lo <= hi
    if isinstance(value, tuple):
        return tuple(one(x, z) for x in value)
    return one(value, z)


def _clock(value, rng, spread, _most):
    shift = rng.normal(0, 0.5 * spread)
    if isinstance(value, tuple):  # a window of times: shifted whole, kept within the day
        lo, hi = value
        shift = min(max(shift, -lo), 24 - hi)
        return (lo + shift, hi + shift)
    return float(value + shift)


def _spread(value, rng, spread, _most):
    factor = float(np.exp(rng.normal(0, 0.3 * spread)))
    if isinstance(value, tuple):
        return tuple(float(x * factor) for x in value)
    return float(value * factor)


def _count(value, rng, spread, most):
    lo, hi = value
    shift = int(np.rint(rng.normal(0, spread * max(1.0, 0.15 * (lo + hi) / 2))))
    lo, hi = max(1, lo + shift), max(1, hi + shift)
    if most is not None:
        lo, hi = min(lo, most), min(hi, most)
    return (lo, hi)


_VARY = {"prob": _prob, "clock": _clock, "spread": _spread, "count": _count}
