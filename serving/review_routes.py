"""`POST /reviews` and `GET /reviews/{person_id}`: the reviewers' side of the service (docs/contract.md §3).

An ASGI middleware inside the request guard (serving/auth.py), which has already checked that the
token is a reviewer's (COMMUTER_REVIEWER_TOKENS; issuer tokens get 403) and validated a POST body
against `ReviewRequest`, answering 4xx naming the field. BentoML's `@bentoml.api` routes take no
path parameters and answer 200 only, so these two are answered here: 201 with the case id, and a
person's reviews oldest first. The store calls run in a thread (an append may wait for SQLite's
write lock). Neither bodies nor tokens are logged; /metrics counts recorded reviews by decision.

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
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread
import bentoml
import sqlalchemy as sa
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from commuter_badge.features.ids import CONTROL_CHARACTERS, NO_CONTROLS, json_printable
from commuter_badge.features.schema import MAX_ID_LENGTH
from commuter_badge.serving.auth import REVIEW_PATH, is_review_path
from commuter_badge.serving.schemas import problem
from commuter_badge.stores.reviews import (
    DECISIONS,
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


def _store() -> ReviewStore | None:
    return getattr(bentoml.get_current_service(), "reviews", None)


class ReviewRoutes:
    """ASGI middleware answering /reviews and /reviews/{person_id}; other paths pass through."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_review_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        response = await self._answer(scope, receive)
        await response(scope, receive, send)

    async def _answer(self, scope: Scope, receive: Receive) -> JSONResponse:
        path, method = scope["path"], scope["method"]
        store = _store()
        if store is None:
            why = getattr(bentoml.get_current_service(), "reviews_problem", "not opened")
            return _unavailable(why)
        try:
            if path == REVIEW_PATH:
                if method != "POST":
                    return _not_allowed("POST")
                return await self._record(store, scope, await _body(receive))
            if method not in ("GET", "HEAD"):
                return _not_allowed("GET")
            return await self._history(store, path[len(REVIEW_PATH) + 1 :])
        except sa.exc.SQLAlchemyError as exc:
            logger.warning("review store error: %s", exc.__class__.__name__)
            return _unavailable("the review store did not answer; try again")

    @staticmethod
    async def _record(store: ReviewStore, scope: Scope, body: bytes) -> JSONResponse:
        keys = [v for k, v in scope["headers"] if k == IDEMPOTENCY_HEADER.lower().encode()]
        if len(keys) > 1:
            return _invalid(400, IDEMPOTENCY_HEADER, f"send one {IDEMPOTENCY_HEADER} header")
        key = keys[0].decode("latin-1") if keys else None
        if key is not None and (why := idempotency_key_problem(key)):
            return _invalid(422, IDEMPOTENCY_HEADER, why)
        review = ReviewRequest.model_validate_json(body)  # the guard validated it already
        try:
            done = await anyio.to_thread.run_sync(lambda: store.record(review, idempotency_key=key))
        except IdempotencyConflict as exc:
            return _invalid(422, IDEMPOTENCY_HEADER, str(exc))
        stored = done.review
        if not done.replayed:
            RECORDED.labels(decision=stored.decision).inc()
            await anyio.to_thread.run_sync(show_counts, store)
        return JSONResponse(
            {"case_id": stored.case_id, "recorded_at": stored.recorded_at},
            status_code=201,
            headers={REPLAYED_HEADER: "true"} if done.replayed else None,
        )

    @staticmethod
    async def _history(store: ReviewStore, person_id: str) -> JSONResponse:
        if not person_id.strip() or len(person_id) > MAX_ID_LENGTH:
            return _invalid(
                422, "person_id", f"the path needs a person_id of 1 to {MAX_ID_LENGTH} characters"
            )
        if CONTROL_CHARACTERS.search(person_id):
            return _invalid(
                422,
                "person_id",
                f"the path's person_id holds a control character; {NO_CONTROLS} allowed",
            )
        history = await anyio.to_thread.run_sync(store.history, person_id)
        today = local_today()
        return _PrintableJSON(
            {"person_id": person_id, "reviews": [r.public(today) for r in history]}
        )


class _PrintableJSON(JSONResponse):
    """JSON with every control character escaped (json.dumps leaves C1 and bidi controls raw)."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return json_printable(text).encode("utf-8")


def _invalid(status: int, field: str, message: str) -> JSONResponse:
    return JSONResponse(problem("invalid request", field, message), status_code=status)


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _not_allowed(allow: str) -> JSONResponse:
    return JSONResponse(
        {"error": "method not allowed", "message": f"use {allow} on this path"},
        status_code=405,
        headers={"Allow": allow},
    )


def _unavailable(why: str) -> JSONResponse:
    return JSONResponse(
        {"error": "review store not available", "message": why},
        status_code=503,
        headers={"Retry-After": "10"},
    )
