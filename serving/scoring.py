"""Scoring persons from their trips inside the service: one feature query for many requests.

`/score` computes features with the same SQL that batch scoring runs (`request_features`, read
straight into the booster's matrix), so a person gets the same probability here as from
`commuter score`. Requests arriving while a batch is being scored are queued and scored together
in one feature query and one booster call by `BatchScorer` (each has a per-call cost beside its
per-person one; kept because it measured 1.02x BentoML's adaptive batching for one person a
request and 1.77x for 50, benchmarks/results; see benchmarks/batchable_service.py).

A person without crossings in the window gets probability 0.0, no badge and one reason saying so:
the model is never asked about someone it has nothing to go on.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import bentoml
import duckdb

from commuter_badge.features.read import connect
from commuter_badge.features.sql import Window
from commuter_badge.features.workdays import (
    LIBRARY_CALENDAR,
    CalendarRangeError,
    WorkingCalendar,
)
from commuter_badge.models.core.recourse import with_person_side
from commuter_badge.serving.request_features import request_features
from commuter_badge.serving.schemas import (
    REASONS_PER_PERSON,
    Change,
    PersonScore,
    PersonScoreWithSide,
    PersonTrips,
    Reason,
)
from commuter_badge.serving.web import ApiError

logger = logging.getLogger(__name__)

MAX_BATCH_PERSONS = 2_000  # persons the scorer puts into one feature query
# Under load (the last batch held several requests), the scorer waits for more requests while
# they keep coming, each within BATCH_GAP of the last and BATCH_MAX_WAIT in all, so a burst shares
# one feature query instead of queueing behind many. A lone client never waits.
BATCH_GAP_SECONDS = 0.002
BATCH_MAX_WAIT_SECONDS = 0.012

BATCH_PERSONS = bentoml.metrics.Histogram(
    name="commuter_score_batch_persons",
    documentation="Persons scored together in one feature query (requests queued meanwhile)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048),
)


def no_crossings_reason(window_days: int) -> dict[str, Any]:
    return {
        "feature": "crossings",
        "description": f"no boundary crossings in the {window_days} days before as_of, so no badge",
        "value": 0,
        "contribution": 0.0,
    }


@functools.lru_cache(maxsize=256)
def calendar_problem(as_of: dt.date, window_days: int, calendar: WorkingCalendar) -> str | None:
    """Why the worker's working-day calendar cannot cover this window, or None when it can."""
    try:
        Window(as_of, window_days, calendar).days()
    except CalendarRangeError as exc:
        return str(exc)
    except OverflowError:  # as_of - window_days before year 1
        return f"as_of {as_of.isoformat()} leaves no {window_days}-day window before it"
    return None


def score_persons(
    model: Any,
    as_of: dt.date,
    persons: Sequence[PersonTrips],
    con: duckdb.DuckDBPyConnection,
    calendar: WorkingCalendar = LIBRARY_CALENDAR,
) -> list[dict[str, Any]]:
    """Probability, badge and reasons per person, in order; one feature query for all of them,
    under the worker's working-day `calendar`.

    Persons are keyed by position inside the query, so equal ids from different requests in one
    batch stay apart; nothing in the feature SQL depends on the id's value.
    """
    window_days = model.meta.window_days
    keys = [f"{i:07d}" for i in range(len(persons))]
    ids, frame = request_features(
        [(k, [vars(t) for t in p.trips]) for k, p in zip(keys, persons, strict=True)],
        as_of,
        window_days,
        con,
        calendar,
    )
    row_of = {key: i for i, key in enumerate(ids)}
    proba, reasons = model.explain(frame, REASONS_PER_PERSON)
    badge = model.decide(proba)
    out = []
    for key, person in zip(keys, persons, strict=True):
        i = row_of.get(key)
        if i is None:
            out.append(
                {
                    "person_id": person.person_id,
                    "commuter_probability": 0.0,
                    "badge": False,
                    "reasons": [no_crossings_reason(window_days)],
                }
            )
        else:
            out.append(
                {
                    "person_id": person.person_id,
                    "commuter_probability": float(proba[i]),
                    "badge": bool(badge[i]),
                    "reasons": reasons[i],
                }
            )
    return out


@dataclass
class _Job:
    model: Any
    as_of: dt.date
    persons: Sequence[PersonTrips]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future


def _settle(future: asyncio.Future, result: Any = None, error: BaseException | None = None) -> None:
    if future.done():  # the client went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class BatchScorer:
    """A thread that scores queued requests, together, on the worker's one DuckDB connection."""

    def __init__(
        self,
        *,
        max_batch_persons: int = MAX_BATCH_PERSONS,
        gap: float = BATCH_GAP_SECONDS,
        max_wait: float = BATCH_MAX_WAIT_SECONDS,
        calendar: WorkingCalendar = LIBRARY_CALENDAR,
    ) -> None:
        self.calendar = calendar  # the worker's, for every request it scores
        self.max_batch_persons = max_batch_persons
        self.gap = gap
        self.max_wait = max_wait
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        # Used only for requests above features.build.SQLITE_MAX_TRIPS; smaller ones run on SQLite.
        self._con = connect(threads=1)
        self._thread = threading.Thread(target=self._run, name="commuter-scorer", daemon=True)
        self._thread.start()

    async def score(self, model: Any, as_of: dt.date, persons: Sequence[PersonTrips]) -> list[dict]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put(_Job(model, as_of, persons, loop, future))
        return await future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)
        self._con.close()

    def _run(self) -> None:
        busy = False
        while (job := self._queue.get()) is not None:
            jobs, n = [job], len(job.persons)
            deadline = time.monotonic() + (self.max_wait if busy else 0.0)
            stop = False
            while n < self.max_batch_persons:
                wait = min(self.gap, deadline - time.monotonic())
                try:
                    more = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                jobs.append(more)
                n += len(more.persons)
            groups: dict[tuple[int, dt.date], list[_Job]] = {}
            for j in jobs:
                groups.setdefault((id(j.model), j.as_of), []).append(j)
            for group in groups.values():
                self._score_group(group)
            busy = len(jobs) > 1 or not self._queue.empty()
            if stop:
                return

    def _score_group(self, jobs: list[_Job]) -> None:
        persons = [p for j in jobs for p in j.persons]
        BATCH_PERSONS.observe(len(persons))
        try:
            model, as_of = jobs[0].model, jobs[0].as_of
            results = (
                score_persons(model, as_of, persons, self._con, self.calendar) if persons else []
            )
        except Exception as exc:  # noqa: BLE001 - every waiting request must hear about it
            if len(jobs) > 1:  # one request's failure must not fail the others batched with it
                for j in jobs:
                    self._score_group([j])
                return
            logger.exception("scoring a request of %d person(s) failed", len(persons))
            for j in jobs:
                j.loop.call_soon_threadsafe(_settle, j.future, None, exc)
            return
        start = 0
        for j in jobs:
            part = results[start : start + len(j.persons)]
            start += len(j.persons)
            j.loop.call_soon_threadsafe(_settle, j.future, part)


async def scored_with_side(
    svc: Any, as_of: dt.date, persons: Sequence[PersonTrips], include: Sequence[str], lang: str
) -> tuple[Any, list[dict[str, Any]]]:
    """The worker's model and its answers for `persons`, with the person's side asked for
    (`include`; reasons in `lang`): what /score and the reviewers' view of a person share."""
    model = svc._model or await anyio.to_thread.run_sync(svc._load_model)
    if model is None:
        raise ApiError.unavailable("model not loaded", svc._model_problem)
    if (why := calendar_problem(as_of, model.meta.window_days, svc.calendar)) is not None:
        raise ApiError.invalid("as_of", why)
    results = await svc.scorer.score(model, as_of, persons) if persons else []
    if include or lang != "en":  # the person's side (models/core/recourse.py), off the loop
        trips = [(p.person_id, [vars(t) for t in p.trips]) for p in persons]
        side = functools.partial(
            with_person_side, model, as_of, trips, results, list(include), lang, svc.calendar
        )
        results = await anyio.to_thread.run_sync(side)
    return model, results


def person_answer(r: dict[str, Any], include: bool) -> PersonScore:
    """One person's answer (`PersonScoreWithSide` when the person's side was asked for)."""
    kind = PersonScoreWithSide if include else PersonScore
    fields = {**r, "reasons": [Reason.model_construct(**x) for x in r["reasons"]]}
    if r.get("recourse") is not None:
        fields["recourse"] = [Change.model_construct(**c) for c in r["recourse"]]
    return kind.model_construct(**fields)
