"""`POST /reviews`, `GET /reviews/{person_id}` and `POST /reviews/person`: the reviewers' side of
the service (docs/contract.md §3).

FastAPI routes for reviewer tokens only (COMMUTER_REVIEWER_TOKENS; issuer tokens get 403): 201
with the case id, a person's reviews oldest first, and a reviewer's view of a person: their
reviews with the model's answer from their crossings and the person's side (the expected badge
date, recourse: models/core/recourse.py, as /score's `include` and `lang`). The store calls run in
a thread (an append may wait for SQLite's write lock). Neither bodies nor tokens are logged;
/metrics counts recorded reviews by decision.

A POST may carry an `Idempotency-Key` header (e.g. a UUID): a replay with the same key and the
same body is answered with the first result, 201 with the same case_id and recorded_at, marked by
`Idempotent-Replayed: true`, and stores nothing; the same key with another body is a 422 naming
the header; the header given twice is a 400. History answers escape control characters a stored
row may hold (rows older than the rule) as JSON \\u escapes, so a terminal showing them runs nothing.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Annotated, Any

import anyio.to_thread
import bentoml
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Header, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from commuter_badge.features.ids import CONTROL_CHARACTERS, NO_CONTROLS, json_printable
from commuter_badge.features.messages import from_accept_language
from commuter_badge.features.schema import MAX_ID_LENGTH
from commuter_badge.serving.schemas import PersonScoreWithSide, PersonViewRequest
from commuter_badge.serving.scoring import person_answer, scored_with_side
from commuter_badge.serving.web import (
    API_ERRORS,
    REVIEWER,
    ApiError,
    JsonBodyRoute,
    current_service,
    error_responses,
    role,
)
from commuter_badge.stores.reviews import (
    DECISIONS,
    IDEMPOTENCY_PARAMETER,
    IdempotencyConflict,
    ReviewRequest,
    ReviewStore,
    idempotency_key_problem,
    local_today,
)

logger = logging.getLogger(__name__)


IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"

RECORDED = bentoml.metrics.Counter(
    name="commuter_reviews_recorded",
    documentation="Reviews recorded through POST /reviews, by decision",
    labelnames=["decision"],
)
# Reviews in the store by decision, as each worker last saw it (at start and after each POST);
# the largest over workers is the latest count.
STORED = bentoml.metrics.Gauge(
    name="commuter_reviews_stored",
    documentation="Reviews in the review store by decision (latest count a worker saw)",
    labelnames=["decision"],
    multiprocess_mode="max",
)


COUNTS_EVERY_SECONDS = 5.0  # the stored-reviews gauge is refreshed at most this often
_counted_at = float("-inf")


def show_counts(store: ReviewStore) -> None:
    """Refresh the stored-reviews gauge (at most every COUNTS_EVERY_SECONDS; never fails)."""
    global _counted_at
    if time.monotonic() - _counted_at < COUNTS_EVERY_SECONDS:
        return
    _counted_at = time.monotonic()
    try:
        counts = store.counts()
    except sa.exc.SQLAlchemyError as exc:  # a gauge must never fail a recorded review
        logger.warning("counting reviews failed: %s", exc.__class__.__name__)
        return
    for decision in DECISIONS:
        STORED.labels(decision=decision).set(counts[decision])


class Recorded(BaseModel):
    case_id: str
    recorded_at: str


class ReviewHistory(BaseModel):
    person_id: str
    reviews: list[dict[str, Any]]


class PersonView(BaseModel):
    person_id: str
    model_version: str
    threshold: float
    target_fpr: float
    score: PersonScoreWithSide = Field(
        description="the model's answer from the crossings sent, with the person's side asked for"
    )
    reviews: list[dict[str, Any]] = Field(description="the person's reviews, oldest first")


class PrintableJSON(JSONResponse):
    """JSON with every control character escaped (json.dumps leaves C1 and bidi controls raw)."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return json_printable(text).encode("utf-8")


def review_store(svc: Annotated[Any, Depends(current_service)]) -> ReviewStore:
    if (store := svc.reviews) is None:
        raise ApiError.unavailable("review store not available", svc.reviews_problem)
    return store


Store = Annotated[ReviewStore, Depends(review_store)]
reviews_router = APIRouter(route_class=JsonBodyRoute, dependencies=[Depends(role(REVIEWER))])


@reviews_router.post(
    "/reviews",
    operation_id="reviews",
    summary="Record a review (community office) / 记录人工复核",
    status_code=201,
    responses={
        201: {"description": "Recorded: the case id and when"},
        **error_responses(*API_ERRORS),
    },
)
async def record_review(
    body: ReviewRequest,
    store: Store,
    request: Request,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=IDEMPOTENCY_HEADER,
            description=IDEMPOTENCY_PARAMETER["description"],
            json_schema_extra={"pattern": IDEMPOTENCY_PARAMETER["schema"]["pattern"]},
        ),
    ] = None,
) -> Recorded:
    """Record a manual decision (reviewer tokens only)."""
    if len(request.headers.getlist(IDEMPOTENCY_HEADER)) > 1:
        raise ApiError.invalid(IDEMPOTENCY_HEADER, f"send one {IDEMPOTENCY_HEADER} header", 400)
    if idempotency_key is not None and (why := idempotency_key_problem(idempotency_key)):
        raise ApiError.invalid(IDEMPOTENCY_HEADER, why)
    try:
        done = await anyio.to_thread.run_sync(
            lambda: store.record(body, idempotency_key=idempotency_key)
        )
    except IdempotencyConflict as exc:
        raise ApiError.invalid(IDEMPOTENCY_HEADER, str(exc)) from None
    except sa.exc.SQLAlchemyError as exc:
        raise _store_failed(exc) from None
    stored = done.review
    if done.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    else:
        RECORDED.labels(decision=stored.decision).inc()
        await anyio.to_thread.run_sync(show_counts, store)
    return Recorded(case_id=stored.case_id, recorded_at=stored.recorded_at)


@reviews_router.post(
    "/reviews/person",
    operation_id="review_person",
    summary="A reviewer's view of one person / 复核人员查看个人",
    response_class=PrintableJSON,
    responses=error_responses(*API_ERRORS),
)
async def review_person(
    body: PersonViewRequest,
    store: Store,
    svc: Annotated[Any, Depends(current_service)],
    accept_language: Annotated[
        str | None,
        Header(description="zh or en preferred (RFC 9110 q-values); the body's `lang` wins"),
    ] = None,
) -> PersonView:
    """A reviewer's view of a person: their reviews, and the model's answer from the crossings
    sent with the expected badge date and recourse (`include`, both by default; `lang` or
    Accept-Language as for /score). Reviewer tokens only."""
    lang = body.lang or from_accept_language(accept_language) or svc.lang
    model, results = await scored_with_side(svc, body.as_of, [body], body.include, lang)
    try:
        history = await anyio.to_thread.run_sync(store.history, body.person_id)
    except sa.exc.SQLAlchemyError as exc:
        raise _store_failed(exc) from None
    today = local_today()
    return PersonView.model_construct(
        person_id=body.person_id,
        model_version=str(model.version),
        threshold=float(model.threshold),
        target_fpr=float(model.target_fpr),
        score=person_answer(results[0], include=True),
        reviews=[r.public(today) for r in history],
    )


@reviews_router.get(
    "/reviews/{person_id:path}",
    operation_id="review_history",
    summary="A person's reviews, oldest first / 个人复核记录",
    response_class=PrintableJSON,
    responses=error_responses(*API_ERRORS),
)
def review_history(
    person_id: Annotated[str, Path(max_length=MAX_ID_LENGTH, description="the person's id")],
    store: Store,
) -> ReviewHistory:
    """A person's reviews, oldest first (reviewer tokens only)."""
    if not person_id.strip():
        raise ApiError.invalid(
            "person_id", f"the path needs a person_id of 1 to {MAX_ID_LENGTH} characters"
        )
    if CONTROL_CHARACTERS.search(person_id):
        raise ApiError.invalid(
            "person_id", f"the path's person_id holds a control character; {NO_CONTROLS} allowed"
        )
    try:
        history = store.history(person_id)
    except sa.exc.SQLAlchemyError as exc:
        raise _store_failed(exc) from None
    today = local_today()
    return ReviewHistory(person_id=person_id, reviews=[r.public(today) for r in history])


def _store_failed(exc: Exception) -> ApiError:
    logger.warning("review store error: %s", exc.__class__.__name__)
    return ApiError.unavailable(
        "review store not available", "the review store did not answer; try again"
    )
