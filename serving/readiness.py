"""`/readyz` says which working-day calendar the worker decides with, not just that it is ready.

A model certified under one holiday calendar is a different model from one certified under
another, so whoever checks readiness (an operator after adding next year's schedule, a deploy
script) should see the calendar in the same answer. BentoML's own `/readyz` (driven by
`__is_ready__`) stays in charge of the verdict; this ASGI middleware only replaces the body of a
ready answer with JSON: `{"status": "ready", "model_version": "7", "calendar": {library_version,
file_digest, years, ...}}` (features/workdays.py `WorkingCalendar.info`; the model version is the one this
worker serves, pinned when the service started). It also names the stores the worker uses, kind
and location without user, password or query (`stores`: decisions, reviews, models), and the
decision publication it answers from (`publication`: as_of, version, model_version, rows): on
several replicas an operator sees at once whether they share one store and one publication.
A not-ready answer passes through unchanged.

A review store on a database server (PostgreSQL) can go away after the worker opened it; while it
is away `/reviews` and `/badge` answer 503, so `/readyz` must too. `StorePing` asks it `SELECT 1`
on a connection of its own (2 s to connect or answer), at most once a second per worker. A SQLite
store is a local file the worker holds open: it is not pinged (opening a second connection to it
and closing it would drop the worker's SQLite locks, stores/reviews.py `_owner_only`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import bentoml
import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

from commuter_badge.settings import Settings

READY_PATH = "/readyz"
PING_TIMEOUT_SECONDS = 2  # libpq's connect_timeout takes whole seconds, at least 2
PING_EVERY_SECONDS = 1.0


class StorePing:
    """Whether a database server behind a store answers now: None when it does (or when the store
    is a local SQLite file), else one line saying why not. Answers are reused for
    PING_EVERY_SECONDS, and one ping at a time runs (other callers get the last answer)."""

    def __init__(self, url: URL, every: float = PING_EVERY_SECONDS) -> None:
        self.every = every
        self._engine = None
        if url.get_backend_name() != "sqlite":
            args = {}
            if url.get_backend_name() == "postgresql":
                ms = PING_TIMEOUT_SECONDS * 1000
                args = {
                    "connect_timeout": PING_TIMEOUT_SECONDS,
                    "options": f"-c statement_timeout={ms}",
                }
            self._engine = sa.create_engine(url, poolclass=NullPool, connect_args=args)
        self._lock = threading.Lock()
        self._checked = -float("inf")
        self._problem: str | None = None

    def problem(self) -> str | None:
        if self._engine is None:
            return None
        if time.monotonic() - self._checked < self.every or not self._lock.acquire(blocking=False):
            return self._problem
        try:
            try:
                with self._engine.connect() as con:
                    con.execute(sa.text("SELECT 1"))
                self._problem = None
            except sa.exc.SQLAlchemyError as exc:
                self._problem = f"the server did not answer ({exc.__class__.__name__})"
            self._checked = time.monotonic()
        finally:
            self._lock.release()
        return self._problem

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


class ReadyzCalendar:
    """ASGI middleware: a ready `/readyz` answers JSON with the calendar in use."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != READY_PATH:
            await self.app(scope, receive, send)
            return
        ready = False

        async def relay(message: Message) -> None:
            nonlocal ready
            if message["type"] == "http.response.start":
                ready = message["status"] == 200
            if not ready:
                await send(message)

        await self.app(scope, receive, relay)
        if ready:
            body = {
                "status": "ready",
                "model_version": _served_version(),
                "calendar": _served_calendar(),
                **_stores_and_publication(),
            }
            await JSONResponse(body)(scope, receive, send)


def _served_calendar() -> dict | None:
    """The working-day calendar this worker decides with (its service instance opened it)."""
    calendar = getattr(bentoml.get_current_service(), "calendar", None)
    return calendar.info() if calendar is not None else None


def _served_version() -> str | None:
    """The model version this worker's service instance serves (None before it has one)."""
    return getattr(bentoml.get_current_service(), "model_version", None)


def _location(url: str) -> dict[str, str]:
    """A store URL's kind and location, with no user, password or query."""
    if "://" not in url:
        return {"kind": "duckdb", "location": str(Path(url).absolute())}
    parsed = urlsplit(url)
    kind = parsed.scheme.split("+")[0]
    if kind == "sqlite":
        return {"kind": kind, "location": parsed.path.removeprefix("/") or ":memory:"}
    if kind in ("http", "https"):
        kind = "mlflow-server"
    host = parsed.hostname or ""
    port = f":{parsed.port}" if parsed.port else ""
    return {"kind": kind, "location": f"{host}{port}{parsed.path}"}


def stores_in_use(settings: Settings) -> dict[str, dict[str, str]]:
    """What /readyz says about the stores: the decisions, the reviews and the model registry."""
    return {
        "decisions": _location(settings.decisions_path),
        "reviews": _location(settings.reviews_url),
        "models": _location(settings.tracking_uri),
    }


def _stores_and_publication() -> dict:
    service = bentoml.get_current_service()
    publication = getattr(getattr(service, "store", None), "publication", None) or {}
    version = publication.get("version", publication.get("published_at"))
    return {
        "stores": getattr(service, "stores", None),
        "publication": {
            "as_of": str(publication["as_of"]) if "as_of" in publication else None,
            "version": str(version) if version is not None else None,
            "model_version": publication.get("model_version"),
            "rows": publication.get("rows"),
        },
    }
