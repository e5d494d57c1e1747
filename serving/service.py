"""The badge issuer's HTTP service (contract section 3): `/score` from trips, `/badge` from batch.

Run it with `commuter serve` (or `bentoml serve serving.service:CommuterBadge`). Each worker
process loads the champion model once, reads the decision store's publication into memory
(stores/decisions.py), opens the review store, and scores on one DuckDB connection in one thread
(serving/scoring.py), so workers scale with cores.

The routes are a FastAPI application mounted on the BentoML service (`@bentoml.asgi_app`):
their signatures are the request and response models, roles are dependencies and errors come
from exception handlers (serving/web.py). `/score` and `/badge`, the roles and the service lookup
are coroutines: FastAPI runs a plain function in a worker thread, a trip each that cost more than
the work it wrapped;
blocking work goes to a thread once per request (`/badge`'s two store lookups) or to the
scorer's thread (`/score`); the OpenAPI document at /docs.json is FastAPI's,
generated from these declarations, /readyz included (its JSON names the calendar, the stores,
the publication and what is missing). `/score`'s `include` adds the person's side and `lang` (or
Accept-Language, a declared header) picks the language (models/core/recourse.py). BentoML runs
the workers, /livez, /healthz and /metrics. Two ASGI middlewares stay, both kept because
measurement justified them: keep-alive connections are recycled so a client's pool spreads over
the workers (serving/connections.py), and a worker refuses (503) bodies beyond its in-flight
byte budget (serving/admission.py).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Annotated, Any, Literal

import anyio.to_thread
import bentoml
from fastapi import APIRouter, Depends, FastAPI, Header, Response
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError

from commuter_badge.features.messages import LANGS, from_accept_language
from commuter_badge.features.workdays import open_calendar
from commuter_badge.serving import access_log
from commuter_badge.serving.admission import InflightLimit, calm_garbage_collector
from commuter_badge.serving.bento import bundled_model
from commuter_badge.serving.connections import RecycleConnections
from commuter_badge.serving.http_errors import json_protocol_errors
from commuter_badge.serving.metrics import METRICS_PATH, TrafficMetrics, metrics_text
from commuter_badge.serving.precedence import badge_answers
from commuter_badge.serving.readiness import (
    ReadyzFromApi,
    StorePing,
    stores_and_publication,
    stores_in_use,
)
from commuter_badge.serving.review_routes import reviews_router, show_counts
from commuter_badge.serving.schemas import (
    BadgeRequest,
    BadgeResponse,
    ScoreRequest,
    ScoreResponse,
)
from commuter_badge.serving.scoring import BatchScorer, person_answer, scored_with_side
from commuter_badge.serving.web import (
    API_ERRORS,
    ISSUER,
    ApiError,
    JsonBodyRoute,
    current_service,
    docs_page,
    error_responses,
    install_error_handlers,
    no_such_route,
    role,
)
from commuter_badge.serving.workers import die_with_server
from commuter_badge.settings import MODEL_NAME, export_for_workers, load_settings
from commuter_badge.stores.decisions import DecisionStoreError, open_store
from commuter_badge.stores.reviews import ReviewStore, ReviewStoreError

logger = logging.getLogger(__name__)

SERVICE_NAME = "commuter_badge"
MODEL_RETRY_SECONDS = 5.0  # how often a worker without a champion looks for one again
REVIEWS_RETRY_SECONDS = 5.0  # how often a worker without its review store tries to open it again
DESCRIPTION = (
    "Who is a regular cross-city commuter into Beijing. `POST /score` scores persons "
    "from their recent crossings; `POST /badge` looks up the latest batch decisions. "
    "Both need `Authorization: Bearer <token>`. Every error has the `ErrorBody` shape."
)


def package_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("commuter-badge")
    except metadata.PackageNotFoundError:
        return "dev"


app = FastAPI(
    title="commuter-badge",
    version=package_version(),
    description=DESCRIPTION,
    openapi_url="/docs.json",
    docs_url=None,
    redoc_url=None,
)
install_error_handlers(app)
api = APIRouter(route_class=JsonBodyRoute)


def model_to_serve(pinned: str | None) -> tuple[str | None, str | None]:
    """(model URI, registry version) a worker loads: inside a Bento its bundled version; else the
    version `commuter serve` pinned at start (COMMUTER_MODEL_VERSION), so every worker, restarted
    or not, serves the same one; else (a bare `bentoml serve`, no champion at start) the champion."""
    if (bundled := bundled_model()) is not None:
        return bundled
    if pinned:
        return f"models:/{MODEL_NAME}/{pinned}", pinned
    return None, None


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


@bentoml.asgi_app(app, path="/")
@bentoml.service(
    name=SERVICE_NAME,
    workers=1,  # `commuter serve --workers N` overrides this (serving/run.py)
    threads=1,
    traffic={"timeout": 60},
    # BentoML's traffic metrics label raw paths; serving/metrics.py counts with fixed labels
    metrics={"enabled": False},
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
        access_log.sample_unauthorized()
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


# --- routes -------------------------------------------------------------------------------------

Service = Annotated[Any, Depends(current_service)]
AcceptLanguage = Annotated[
    str | None,
    Header(description="zh or en preferred (RFC 9110 q-values); the body's `lang` wins"),
]


def side_response(model: Any, results: list[dict], include: bool) -> ScoreResponse:
    """The /score answer with the person's side (`PersonScoreWithSide` when it was asked for)."""
    return ScoreResponse.model_construct(
        model_version=str(model.version),
        threshold=float(model.threshold),
        target_fpr=float(model.target_fpr),
        results=[person_answer(r, include) for r in results],
    )


@api.post(
    "/score",
    operation_id="score",
    summary="Score persons from their crossings / 根据出入记录评分",
    dependencies=[Depends(role(ISSUER))],
    responses=error_responses(*API_ERRORS),
)
async def score(
    body: ScoreRequest, svc: Service, accept_language: AcceptLanguage = None
) -> ScoreResponse:
    """Commuter probability, badge decision and top reasons for each person, in request order.

    Features use the person's crossings in the 28 days before `as_of` (Asia/Shanghai time).
    A person without crossings in that window gets probability 0.0 and no badge. `include`
    adds the person's side (the expected badge date, recourse); `lang` (or Accept-Language)
    picks the language of reasons and recourse.
    """
    seen: dict[str, int] = {}
    for i, p in enumerate(body.persons):
        if p.person_id in seen:
            raise ApiError.invalid(
                f"persons[{i}].person_id",
                f"person_id repeats persons[{seen[p.person_id]}].person_id; send each person once",
            )
        seen[p.person_id] = i
    lang = body.lang or from_accept_language(accept_language) or svc.lang
    model, results = await scored_with_side(svc, body.as_of, body.persons, body.include, lang)
    return side_response(model, results, bool(body.include))


@api.post(
    "/badge",
    operation_id="badge",
    summary="Published badge decisions by id / 按编号查询通勤标识",
    dependencies=[Depends(role(ISSUER))],
    responses=error_responses(*API_ERRORS),
)
async def badge(body: BadgeRequest, svc: Service) -> BadgeResponse:
    """Per id, in request order: a review in force (`source: review`), else the latest batch
    decision (`source: model`), else `found: false`."""
    # Both stores in one trip to a thread (a review store may be a database server away);
    # the answer is then checked and serialised on the loop.
    return await anyio.to_thread.run_sync(badge_answer, svc, body.person_ids)


def badge_answer(svc: Any, ids: list[str]) -> BadgeResponse:
    store = svc.store
    if not store.ready:
        raise ApiError.unavailable("decision store not available", store.problem)
    try:
        found = store.lookup(list(ids))
    except DecisionStoreError as exc:  # replaced by an unreadable file since `ready`
        raise ApiError.unavailable("decision store not available", str(exc)) from None
    if (reviews := svc.reviews) is None:
        raise ApiError.unavailable("review store not available", svc.reviews_problem)
    try:  # a review in force wins over the batch decision (serving/precedence.py)
        reviewed = reviews.in_force(ids)
    except SQLAlchemyError as exc:
        logger.warning("review store lookup failed: %s", exc.__class__.__name__)
        raise ApiError.unavailable(
            "review store not available", "the review store did not answer"
        ) from None
    return BadgeResponse.model_construct(results=badge_answers(ids, found, reviewed))


class Ready(BaseModel):
    status: Literal["ready"] = "ready"
    model_version: str | None = Field(description="the registry version this worker serves")
    calendar: dict[str, Any] = Field(
        description="the working-day calendar this worker decides with"
    )
    stores: dict[str, dict[str, str]] | None = Field(
        description="kind and location of the decision, review and model stores (no credentials)"
    )
    publication: dict[str, Any] = Field(
        description="the decision publication /badge answers from: as_of, version, "
        "model_version, rows (null before one is published)"
    )


@api.get(
    "/readyz",
    operation_id="readyz",
    summary="Ready for traffic: model, stores, calendar / 就绪检查",
    responses={
        503: {
            **error_responses(503)[503],
            "description": "Not ready; `message` and "
            "`missing` say what is missing (model, decision store, review store)",
        }
    },
)
async def readyz(svc: Service) -> Ready:
    """Ready for traffic: the model, the decision store and the review store are there."""
    # the model lookup behind it may touch the registry: off the event loop
    missing = await anyio.to_thread.run_sync(svc.readiness_problems)
    if missing:
        raise ApiError(
            503, {"error": "not ready", "message": "; ".join(missing), "missing": missing}
        )
    return Ready(
        model_version=svc.model_version, calendar=svc.calendar.info(), **stores_and_publication(svc)
    )


@app.get(METRICS_PATH, include_in_schema=False)
def prometheus_metrics() -> Response:
    """Every worker's metrics in Prometheus' text format (open, like the probes)."""
    body, media_type = metrics_text()
    return Response(body, media_type=media_type)


app.include_router(api)
app.include_router(reviews_router)
docs_page(app)
no_such_route(app, api, reviews_router)

# Before BentoML builds its app: requests uvicorn cannot parse are refused in JSON too
# (serving/http_errors.py says why this one reaches inside uvicorn).
json_protocol_errors()
# Outermost of ours: every request counted under a fixed endpoint label (serving/metrics.py).
CommuterBadge.add_asgi_middleware(TrafficMetrics)
# Outermost: keep-alive connections are recycled so that the load spreads over the workers
# (serving/connections.py); then a worker refuses (503) bodies beyond its in-flight budget.
CommuterBadge.add_asgi_middleware(RecycleConnections)
CommuterBadge.add_asgi_middleware(InflightLimit)
# /readyz is answered by the API's route above, not BentoML's plain one (serving/readiness.py).
CommuterBadge.add_asgi_middleware(ReadyzFromApi, api=app)
