"""The person's side: when the badge would come, and what change in behaviour would change it.

Both answers come from trips, never from edited features: the person's own observed pattern (their
usual mode, site and region, the median hour of their day's first entry and last exit) is turned
into added crossings, or their crossings of some days are taken away, and the result goes through
the same feature SQL (`features.build.features_from_rows`) and the same model as any score. So a
proposed change, made as trips, really gives the decision it promises (tests/model/test_recourse.py).

- `expected_badge_dates`: for each coming day D = as_of + 1, ..., as_of + window_days, the person's
  pattern is added on every working day (of the active calendar) in [as_of, D), and the person is
  scored as of D; the first D that gives the badge is the expected date, or None within the window
  length (by then the whole window is projected, so later dates would not change the answer).
- `recourse`: for a person without the badge, the fewest working days without any crossing, most
  recent first, that a round trip in their pattern would have to fill for the model to give the
  badge on the same as_of; for a badge holder, the fewest working days of crossing, most recent
  first, whose crossings taken away would lose it. Counts, not features: what a person can act on.

Assumptions (docs/guide/person.md): the person keeps their pattern exactly (one round trip a
working day, same hours, site and mode); nothing else changes; the calendar covers the days
projected (a day it does not cover ends the projection); the model and threshold stay as they are.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import duckdb

from commuter_badge.features.build import features_from_rows, trip_rows
from commuter_badge.features.messages import MODE_WORDS, Lang, localize_reasons, say
from commuter_badge.features.workdays import (
    EPOCH,
    LIBRARY_CALENDAR,
    SHANGHAI_OFFSET_SECONDS,
    CalendarRangeError,
    WorkingCalendar,
    day_number,
)

# A trip as the feature SQL takes it, without the person: (t, direction, mode, site_id, region).
Row = tuple[int, str, str, str, str]
# Hours used when a person has crossed only one way: a day's usual entry and exit.
DEFAULT_ENTRY_HOUR = 7.5
DEFAULT_EXIT_HOUR = 18.5
# Persons scored in one feature query (each with up to ~20 variants of their trips).
CHUNK_PERSONS = 200


def local_day(t: int) -> dt.date:
    return EPOCH + dt.timedelta(days=(t + SHANGHAI_OFFSET_SECONDS) // 86400)


def local_hour(t: int) -> float:
    return ((t + SHANGHAI_OFFSET_SECONDS) % 86400) / 3600


def _at(day: dt.date, hour: float) -> int:
    return day_number(day) * 86400 - SHANGHAI_OFFSET_SECONDS + round(hour * 3600)


def _clock(hour: float) -> str:
    minutes = round(hour * 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True)
class Pattern:
    """A person's usual commuting day: one entry and one exit at their usual hours and place."""

    mode: str
    site_id: str
    region: str
    entry_hour: float
    exit_hour: float

    def day(self, day: dt.date) -> list[Row]:
        return [
            (_at(day, self.entry_hour), "in", self.mode, self.site_id, self.region),
            (_at(day, self.exit_hour), "out", self.mode, self.site_id, self.region),
        ]

    def words(self, lang: Lang) -> dict[str, str]:
        return {
            "mode": MODE_WORDS[self.mode](lang),
            "site": self.site_id,
            "entry": _clock(self.entry_hour),
            "exit": _clock(self.exit_hour),
        }


def _most_common(values: Iterable[str]) -> str:
    counts = Counter(values)
    return min(counts, key=lambda v: (-counts[v], v))  # ties: the earlier name


def usual_pattern(rows: Sequence[Row], as_of: dt.date, window_days: int) -> Pattern | None:
    """The person's pattern from their crossings in the window before `as_of`; None without any."""
    start = _at(as_of - dt.timedelta(days=window_days), 0)
    seen = [r for r in rows if start <= r[0] < _at(as_of, 0)]
    if not seen:
        return None
    mode = _most_common(r[2] for r in seen)
    site = _most_common(r[3] for r in seen if r[2] == mode)
    region = _most_common(r[4] for r in seen if r[2] == mode and r[3] == site)
    first_in: dict[dt.date, int] = {}
    last_out: dict[dt.date, int] = {}
    for t, direction, *_ in sorted(seen):
        if direction == "in":
            first_in.setdefault(local_day(t), t)
        else:
            last_out[local_day(t)] = t
    entry = statistics.median(local_hour(t) for t in first_in.values()) if first_in else None
    exit_ = statistics.median(local_hour(t) for t in last_out.values()) if last_out else None
    return Pattern(
        mode,
        site,
        region,
        DEFAULT_ENTRY_HOUR if entry is None else entry,
        DEFAULT_EXIT_HOUR if exit_ is None else exit_,
    )


def coming_workdays(
    as_of: dt.date, days: int, calendar: WorkingCalendar
) -> tuple[list[dt.date], int]:
    """Working days in [as_of, as_of + days), and how many of those days `calendar` covers
    (the projection ends at the first day it does not cover)."""
    out = []
    for k in range(days):
        day = as_of + dt.timedelta(days=k)
        try:
            if calendar.is_workday(day):
                out.append(day)
        except CalendarRangeError:
            return out, k
    return out, days


def decisions(
    model,
    persons: Mapping[str, Sequence[Row]],
    as_of: dt.date,
    con=None,
    calendar: WorkingCalendar = LIBRARY_CALENDAR,
) -> dict[str, tuple[float, bool]]:
    """(probability, badge) per person with crossings in the window, through the feature SQL
    under `calendar`."""
    rows = [(pid, *r) for pid, trips in persons.items() for r in trips]
    frame = features_from_rows(rows, as_of, model.meta.window_days, con, calendar=calendar)
    if len(frame) == 0:
        return {}
    proba = model.predict_proba(frame)
    badge = model.decide(proba)
    return {
        pid: (float(p), bool(b)) for pid, p, b in zip(frame["person_id"], proba, badge, strict=True)
    }


def expected_badge_dates(
    model,
    persons: Mapping[str, Sequence[Row]],
    as_of: dt.date,
    *,
    horizon: int | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
    calendar: WorkingCalendar = LIBRARY_CALENDAR,
) -> dict[str, dt.date | None]:
    """The first date after `as_of` on which each person would hold the badge if they kept their
    pattern on every coming working day; None without a pattern or within `horizon` days
    (default: the model's window length)."""
    window_days = model.meta.window_days
    horizon = window_days if horizon is None else horizon
    patterns = {pid: usual_pattern(rows, as_of, window_days) for pid, rows in persons.items()}
    out: dict[str, dt.date | None] = dict.fromkeys(persons)
    waiting = [pid for pid, p in patterns.items() if p is not None]
    workdays, covered = coming_workdays(as_of, horizon, calendar)
    for d in range(1, covered + 1):
        day = as_of + dt.timedelta(days=d)
        if not waiting:
            break
        added = [w for w in workdays if w < day]
        projected = {
            pid: [*persons[pid], *(r for w in added for r in patterns[pid].day(w))]
            for pid in waiting
        }
        got = decisions(model, projected, day, con, calendar)
        for pid in list(waiting):
            if got.get(pid, (0.0, False))[1]:
                out[pid] = day
                waiting.remove(pid)
    return out


@dataclass(frozen=True)
class Change:
    """Round trips added on `days` (`kind` "add"), or the crossings of `days` taken away
    ("remove"), and the decision the model gives the person's trips so changed."""

    kind: Literal["add", "remove"]
    days: tuple[dt.date, ...]
    pattern: Pattern
    as_of: dt.date
    probability: float
    badge: bool

    @property
    def count(self) -> int:
        return len(self.days)

    @property
    def span_days(self) -> int:
        """The last N days before as_of that the changed days fall in."""
        return (self.as_of - min(self.days)).days

    def apply(self, rows: Sequence[Row]) -> list[Row]:
        """The person's trips with this change made."""
        return apply_change(self.kind, self.days, self.pattern, rows)

    def text(self, lang: Lang) -> str:
        if self.kind == "add":
            return say(
                "recourse_add",
                lang,
                count=self.count,
                days=self.span_days,
                **self.pattern.words(lang),
            )
        return say("recourse_remove", lang, count=self.count, days=self.span_days)


def apply_change(
    kind: str, days: Sequence[dt.date], pattern: Pattern, rows: Sequence[Row]
) -> list[Row]:
    if kind == "add":
        return [*rows, *(r for d in days for r in pattern.day(d))]
    gone = set(days)
    return [r for r in rows if local_day(r[0]) not in gone]


def _candidate_days(
    rows: Sequence[Row], as_of: dt.date, window_days: int, holder: bool, calendar: WorkingCalendar
):
    """Working days of the window, most recent first: those with a crossing (for a holder, to
    take away), else those without any (to fill)."""
    active = {local_day(r[0]) for r in rows}
    days = [as_of - dt.timedelta(days=k) for k in range(1, window_days + 1)]
    return [d for d in days if calendar.is_workday(d) and ((d in active) == holder)]


def recourse(
    model,
    persons: Mapping[str, Sequence[Row]],
    as_of: dt.date,
    *,
    con: duckdb.DuckDBPyConnection | None = None,
    calendar: WorkingCalendar = LIBRARY_CALENDAR,
) -> dict[str, Change | None]:
    """Per person, the smallest change in days (module docstring) that flips the decision at
    `as_of`, or None when none of the candidate changes does (or there is no pattern)."""
    out: dict[str, Change | None] = dict.fromkeys(persons)
    ids = list(persons)
    for start in range(0, len(ids), CHUNK_PERSONS):
        out.update(
            _recourse_chunk(
                model,
                {p: persons[p] for p in ids[start : start + CHUNK_PERSONS]},
                as_of,
                con,
                calendar,
            )
        )
    return out


def _recourse_chunk(model, persons, as_of, con, calendar) -> dict[str, Change | None]:
    window_days = model.meta.window_days
    now = decisions(
        model, {f"{i:07d}": rows for i, rows in enumerate(persons.values())}, as_of, con, calendar
    )
    plans = {}
    variants: dict[str, list[Row]] = {}
    for i, (pid, rows) in enumerate(persons.items()):
        pattern = usual_pattern(rows, as_of, window_days)
        if pattern is None:
            continue
        holder = now.get(f"{i:07d}", (0.0, False))[1]
        days = _candidate_days(rows, as_of, window_days, holder, calendar)
        kind = "remove" if holder else "add"
        plans[pid] = (i, kind, days, pattern, holder)
        for k in range(1, len(days) + 1):
            variants[f"{i:07d}:{k:02d}"] = apply_change(kind, days[:k], pattern, rows)
    got = decisions(model, variants, as_of, con, calendar) if variants else {}
    out: dict[str, Change | None] = {}
    for pid, (i, kind, days, pattern, holder) in plans.items():
        out[pid] = None
        for k in range(1, len(days) + 1):
            proba, badge = got.get(f"{i:07d}:{k:02d}", (0.0, False))
            if badge != holder:
                out[pid] = Change(kind, tuple(days[:k]), pattern, as_of, proba, badge)
                break
    return out


def expected_text(
    day: dt.date | None, pattern: Pattern | None, window_days: int, lang: Lang
) -> str:
    """The expected date as a person reads it (`expected_badge_dates`' answer for them)."""
    if pattern is None:
        return say("no_pattern", lang)
    if day is None:
        return say("expected_none", lang, window_days=window_days)
    return say("expected_on", lang, date=day.isoformat(), **pattern.words(lang))


def change_item(change: Change, lang: Lang) -> dict:
    """A change as an answer field: its sentence and the counts it rests on."""
    return {
        "text": change.text(lang),
        "kind": change.kind,
        "working_days": change.count,
        "within_days": change.span_days,
        "commuter_probability": change.probability,
        "badge": change.badge,
    }


def person_side(
    model,
    as_of: dt.date,
    persons: Sequence[tuple[str, Sequence[Mapping[str, object]]]],
    badges: Sequence[bool],
    include: Sequence[str],
    lang: Lang,
    calendar: WorkingCalendar = LIBRARY_CALENDAR,
) -> list[dict]:
    """Per person (trip mappings as `/score` takes them, and their badge now): the fields
    `include` asks for, `badge_expected_on` (null for a holder or when no date would do) and
    `recourse` (a list of `change_item`s, empty when no change would do)."""
    rows = {str(i): [r[1:] for r in trip_rows([(str(i), t)])] for i, (_, t) in enumerate(persons)}
    out: list[dict] = [{} for _ in persons]
    if "badge_expected_on" in include:
        denied = {k: v for k, v in rows.items() if not badges[int(k)]}
        dates = expected_badge_dates(model, denied, as_of, calendar=calendar)
        for i, answer in enumerate(out):
            answer["badge_expected_on"] = dates.get(str(i))
    if "recourse" in include:
        changes = recourse(model, rows, as_of, calendar=calendar)
        for i, answer in enumerate(out):
            change = changes[str(i)]
            answer["recourse"] = [] if change is None else [change_item(change, lang)]
    return out


def with_person_side(
    model,
    as_of: dt.date,
    persons: Sequence[tuple[str, Sequence[Mapping[str, object]]]],
    results: Sequence[dict],
    include: Sequence[str],
    lang: Lang,
    calendar: WorkingCalendar = LIBRARY_CALENDAR,
) -> list[dict]:
    """`/score`'s answers (dicts in request order, from `persons`' trips) with their reasons in
    `lang` and the fields of the person's side `include` asks for (`person_side`)."""
    badges = [bool(r["badge"]) for r in results]
    side = person_side(model, as_of, persons, badges, include, lang, calendar) if include else None
    return [
        {
            **r,
            "reasons": localize_reasons(r["reasons"], lang, model.meta.window_days),
            **(side[i] if side else {}),
        }
        for i, r in enumerate(results)
    ]
