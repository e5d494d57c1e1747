"""The badge issuer's HTTP service (contract section 3): `/score` from trips, `/badge` from batch.

Run it with `commuter serve` (or `bentoml serve serving.service:CommuterBadge`). Each worker
process loads the champion model once, opens the decision store read-only and keeps one DuckDB
connection and one LightGBM call at a time, single-threaded, so workers scale with cores.

`/score` computes features with the same SQL that batch scoring runs (`request_features`, read
straight into the booster's matrix), so a person gets the same probability here as from
`commuter score`. Requests arriving while a batch is being scored are queued and scored together
in one feature query and one booster call (each has a per-call cost beside its per-person one;
why this BatchScorer and not BentoML's adaptive batching: docs/architecture.md, figures:
docs/guide/operations.md, Performance, from benchmarks/batchable_service.py).

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
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import JSONResponse

from commuter_badge.features.messages import LANGS, from_accept_language
from commuter_badge.features.read import connect
from commuter_badge.features.sql import Window
from commuter_badge.features.workdays import (
    LIBRARY_CALENDAR,
    CalendarRangeError,
    WorkingCalendar,
    open_calendar,
)
from commuter_badge.models.core.recourse import with_person_side
from commuter_badge.serving.admission import (
    InflightLimit,
    ParseOffLoop,
    calm_garbage_collector,
    parsed_request,
)
from commuter_badge.serving.auth import RequestGuard
from commuter_badge.serving.bento import bundled_model
from commuter_badge.serving.connections import RecycleConnections
from commuter_badge.serving.http_errors import json_protocol_errors
from commuter_badge.serving.metrics import bound_endpoint_labels
from commuter_badge.serving.precedence import badge_answers
from commuter_badge.serving.readiness import ReadyzCalendar, StorePing, stores_in_use
from commuter_badge.serving.request_features import request_features
from commuter_badge.serving.review_routes import ReviewRoutes, show_counts
from commuter_badge.serving.schemas import (
    REASONS_PER_PERSON,
    AsOf,
    BadgeRequest,
    BadgeResponse,
    Change,
    Includes,
    PersonIds,
    Persons,
    PersonScore,
    PersonScoreWithSide,
    PersonTrips,
    Reason,
    RequestLang,
    ScoreRequest,
    ScoreResponse,
    problem,
)
from commuter_badge.serving.workers import die_with_server
from commuter_badge.settings import MODEL_NAME, export_for_workers, load_settings
from commuter_badge.stores.decisions import DecisionStoreError, open_store
from commuter_badge.stores.reviews import ReviewRequest, ReviewStore, ReviewStoreError

logger = logging.getLogger(__name__)

SERVICE_NAME = "commuter_badge"
MODEL_RETRY_SECONDS = 5.0  # how often a worker without a champion looks for one again
REVIEWS_RETRY_SECONDS = 5.0  # how often a worker without its review store tries to open it again
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


def side_response(model: Any, results: list[dict], include: bool) -> ScoreResponse:
    """The /score answer with the person's side (`PersonScoreWithSide` when it was asked for)."""
    kind = PersonScoreWithSide if include else PersonScore
    people = []
    for r in results:
        fields = {**r, "reasons": [Reason.model_construct(**x) for x in r["reasons"]]}
        if r.get("recourse") is not None:
            fields["recourse"] = [Change.model_construct(**c) for c in r["recourse"]]
        people.append(kind.model_construct(**fields))
    return ScoreResponse.model_construct(
        model_version=str(model.version),
        threshold=float(model.threshold),
        target_fpr=float(model.target_fpr),
        results=people,
    )


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


def model_to_serve(pinned: str | None) -> tuple[str | None, str | None]:
    """(model URI, registry version) a worker loads: inside a Bento its bundled version; else the
    version `commuter serve` pinned at start (COMMUTER_MODEL_VERSION), so every worker, restarted
    or not, serves the same one; else (a bare `bentoml serve`, no champion at start) the champion."""
    if (bundled := bundled_model()) is not None:
        return bundled
    if pinned:
        return f"models:/{MODEL_NAME}/{pinned}", pinned
    return None, None


def _refused(ctx: bentoml.Context, response: JSONResponse) -> JSONResponse:
    """An error answer from an API that takes `ctx`: BentoML then sets the status from
    `ctx.response` (200 unless told), so tell it ours."""
    ctx.response.status_code = response.status_code
    return response


def _open_reviews(url: str) -> tuple[ReviewStore | None, str]:
    """The review store (migrated on open), or None and why; /readyz says why."""
    try:
        store = ReviewStore(url)
        show_counts(store)
    except (ReviewStoreError, SQLAlchemyError) as exc:
        problem_text = str(exc).splitlines()[0]
        logger.warning("review store not available: %s", problem_text)
        return None, problem_text
    return store, ""


def _unavailable(what: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": what, "message": message}, status_code=503, headers={"Retry-After": "10"}
    )


@bentoml.service(
    name=SERVICE_NAME,
    workers=1,  # `commuter serve --workers N` overrides this (serving/run.py)
    threads=1,
    traffic={"timeout": 60},
)
class CommuterBadge:
    """Commuter probability with reasons from recent crossings, and the latest batch decisions."""

    def __init__(self) -> None:
        from commuter_badge.models.mlflow_edge import registry

        settings = load_settings()
        die_with_server(settings.server_pid)  # never outlive the server (serving/workers.py)
        registry.configure(settings.tracking_uri)
        # One calendar per worker, chosen before any request (COMMUTER_CALENDAR; a bad file stops
        # the worker: `commuter serve` checks it first); /readyz reports it.
        self.calendar = open_calendar(settings.calendar)
        logger.info("working-day calendar: %s", self.calendar.info())
        self.store = open_store(settings.decisions_path)  # a DuckDB file or a PostgreSQL URL
        self.stores = stores_in_use(settings)  # kinds and hosts, for /readyz
        self._reviews_url = settings.reviews_url
        self._reviews_lock = threading.Lock()
        self._next_reviews_attempt = 0.0
        self._reviews: ReviewStore | None = None
        self.reviews_problem = "not opened yet"
        self.reviews_ping: StorePing | None = None
        _ = self.reviews  # opened now; if its server is down, again every REVIEWS_RETRY_SECONDS
        self._model: Any = None
        self._model_problem = "the model has not been loaded yet"
        self._model_uri, self._model_version = model_to_serve(settings.model_version)
        self._model_lock = threading.Lock()
        self._next_model_attempt = 0.0
        self._load_model()
        if not self.store.ready:
            logger.warning("decision store not available: %s", self.store.problem)
        self.scorer = BatchScorer(calendar=self.calendar)
        self.lang = settings.lang if settings.lang in LANGS else "en"  # COMMUTER_LANG
        calm_garbage_collector()  # full collections stalled probes for seconds (admission.py)

    @property
    def reviews(self) -> ReviewStore | None:
        """The review store; a worker that could not open it (its database server down when the
        worker started) tries again every REVIEWS_RETRY_SECONDS instead of staying unready."""
        if self._reviews is not None:
            return self._reviews
        with self._reviews_lock:
            if self._reviews is None and time.monotonic() >= self._next_reviews_attempt:
                self._reviews, self.reviews_problem = _open_reviews(self._reviews_url)
                self._next_reviews_attempt = time.monotonic() + REVIEWS_RETRY_SECONDS
                if self._reviews is not None:
                    self.reviews_ping = StorePing(self._reviews.url)
        return self._reviews

    def _load_model(self) -> Any:
        """The pinned version (model_to_serve); without one, look again every MODEL_RETRY_SECONDS."""
        if self._model is not None:
            return self._model
        with self._model_lock:
            if self._model is not None or time.monotonic() < self._next_model_attempt:
                return self._model
            from commuter_badge.models.mlflow_edge.registry import load_model

            try:
                model = load_model(self._model_uri, version=self._model_version)
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet", not a crash
                first_line = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
                self._model_problem = f"no model to serve: {first_line}"
                self._next_model_attempt = time.monotonic() + MODEL_RETRY_SECONDS
                logger.warning(
                    "%s (retrying every %.0f s)", self._model_problem, MODEL_RETRY_SECONDS
                )
                return None
            logger.info("serving model version %s (threshold %.4f)", model.version, model.threshold)
            self._model = model
            return model

    @property
    def model_version(self) -> str | None:
        """The registry version this worker serves; /readyz and every /score answer say it."""
        return None if self._model is None else str(self._model.version)

    def readiness_problems(self) -> list[str]:
        """What keeps the worker from being ready, one line each; empty when ready."""
        problems = []
        if self._load_model() is None:
            problems.append(self._model_problem)
        if not self.store.ready:
            problems.append(f"no decision store: {self.store.problem}")
        if self.reviews is None:  # a revoke it holds must not be missed
            problems.append(f"no review store: {self.reviews_problem}")
        elif self.reviews_ping is not None and (down := self.reviews_ping.problem()) is not None:
            problems.append(
                f"no review store: {down}"
            )  # a database server gone since (readiness.py)
        return problems

    def __is_ready__(self) -> bool:
        return not self.readiness_problems()

    @bentoml.on_deployment
    def _before_workers() -> None:
        # Once, in the server process, in the directory the operator started it in (`commuter
        # serve` and `bentoml serve` of a Bento alike), before any worker: relative paths of the
        # settings made absolute there, since workers run in the project root or the Bento.
        export_for_workers()

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self.scorer.close()
        self.store.close()
        if self._reviews is not None:
            self._reviews.close()
        if self.reviews_ping is not None:
            self.reviews_ping.close()

    @bentoml.api(route="/score")
    async def score(
        self,
        as_of: AsOf,
        persons: Persons,
        ctx: bentoml.Context,
        include: Includes = [],  # noqa: B006 - pydantic copies defaults
        lang: RequestLang = None,
    ) -> ScoreResponse:
        """Commuter probability, badge decision and top reasons for each person, in request order.

        Features use the person's crossings in the 28 days before `as_of` (Asia/Shanghai time).
        A person without crossings in that window gets probability 0.0 and no badge. `include`
        adds the person's side (the expected badge date, recourse); `lang` (or Accept-Language)
        picks the language of reasons and recourse.
        """
        if (parsed := parsed_request(ctx.request.state)) is not None:
            persons = parsed.persons  # a large body, parsed off the event loop (admission.py)
        seen: dict[str, int] = {}
        for i, p in enumerate(persons):
            if p.person_id in seen:
                return _refused(
                    ctx,
                    JSONResponse(
                        problem(
                            "invalid request",
                            f"persons[{i}].person_id",
                            f"person_id repeats persons[{seen[p.person_id]}].person_id; "
                            "send each person once",
                        ),
                        status_code=422,
                    ),
                )
            seen[p.person_id] = i
        model = self._model or await anyio.to_thread.run_sync(self._load_model)
        if model is None:
            return _refused(ctx, _unavailable("model not loaded", self._model_problem))
        if (why := calendar_problem(as_of, model.meta.window_days, self.calendar)) is not None:
            return _refused(
                ctx, JSONResponse(problem("invalid request", "as_of", why), status_code=422)
            )
        results = await self.scorer.score(model, as_of, persons) if persons else []
        lang = lang or from_accept_language(ctx.request.headers.get("accept-language")) or self.lang
        if include or lang != "en":  # the person's side (models/core/recourse.py), off the loop
            trips = [(p.person_id, [vars(t) for t in p.trips]) for p in persons]
            side = functools.partial(
                with_person_side, model, as_of, trips, results, include, lang, self.calendar
            )
            return side_response(model, await anyio.to_thread.run_sync(side), bool(include))
        return ScoreResponse.model_construct(
            model_version=str(model.version),
            threshold=float(model.threshold),
            target_fpr=float(model.target_fpr),
            results=[
                PersonScore.model_construct(
                    **{**r, "reasons": [Reason.model_construct(**x) for x in r["reasons"]]}
                )
                for r in results
            ],
        )

    @bentoml.api(route="/badge")
    def badge(self, person_ids: PersonIds) -> BadgeResponse:
        """Per id, in request order: a review in force (`source: review`), else the latest batch
        decision (`source: model`), else `found: false`."""
        if not self.store.ready:
            return _unavailable("decision store not available", self.store.problem)
        try:
            found = self.store.lookup(list(person_ids))
        except DecisionStoreError as exc:  # replaced by an unreadable file since `ready`
            return _unavailable("decision store not available", str(exc))
        if self.reviews is None:
            return _unavailable("review store not available", self.reviews_problem)
        try:  # a review in force wins over the batch decision (serving/precedence.py)
            reviewed = self.reviews.in_force(person_ids)
        except SQLAlchemyError as exc:
            logger.warning("review store lookup failed: %s", exc.__class__.__name__)
            return _unavailable("review store not available", "the review store did not answer")
        return BadgeResponse.model_construct(results=badge_answers(person_ids, found, reviewed))


# Before BentoML builds the app: metrics label endpoints from a fixed set (serving/metrics.py),
# and requests uvicorn cannot parse are refused in JSON too (serving/http_errors.py).
bound_endpoint_labels()
json_protocol_errors()
# Outermost: keep-alive connections are recycled so that the load spreads over the workers
# (serving/connections.py); then a worker refuses (503) bodies beyond its in-flight budget.
CommuterBadge.add_asgi_middleware(RecycleConnections)
CommuterBadge.add_asgi_middleware(InflightLimit)
CommuterBadge.add_asgi_middleware(
    RequestGuard,
    validators={"/score": ScoreRequest, "/badge": BadgeRequest, "/reviews": ReviewRequest},
    settings=load_settings,  # the worker's tokens, read as it builds the middleware
    openapi_spec=lambda: CommuterBadge.openapi_spec.asdict(),
    readiness=lambda: bentoml.get_current_service().readiness_problems(),
)
# A ready /readyz answers JSON naming the working-day calendar (serving/readiness.py).
CommuterBadge.add_asgi_middleware(ReadyzCalendar)
# Inside the guard (reviewer tokens checked, bodies validated): /reviews and /reviews/{person_id}.
CommuterBadge.add_asgi_middleware(ReviewRoutes)
# Inside the guard: large /score bodies are parsed in a thread, not on the event loop.
CommuterBadge.add_asgi_middleware(
    ParseOffLoop,
    models={"/score": ScoreRequest},
    stub=lambda r: {
        "as_of": r.as_of.isoformat(),
        "persons": [],
        "include": list(r.include),
        "lang": r.lang,
    },
)
