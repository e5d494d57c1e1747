"""`/readyz` says which working-day calendar the worker decides with, not just that it is ready.

A model certified under one holiday calendar is a different model from one certified under
another, so whoever checks readiness (an operator after adding next year's schedule, a deploy
script) should see the calendar in the same answer. The API's `/readyz` route (serving/service.py)
answers in JSON: ready, `{"status": "ready", "model_version": "7", "calendar": {library_version,
file_digest, years, ...}}` (features/workdays.py `WorkingCalendar.info`; the model version is the one this
worker serves, pinned when the service started). It also names the stores the worker uses, kind
and location without user, password or query (`stores`: decisions, reviews, models), and the
decision publication it answers from (`publication`: as_of, version, model_version, rows): on
several replicas an operator sees at once whether they share one store and one publication.
Not ready, 503 with the one error body naming what is missing (the same checks as BentoML's
`__is_ready__`).

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
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool
from starlette.types import ASGIApp, Receive, Scope, Send

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


class ReadyzFromApi:
    """ASGI middleware: `/readyz` answered by the API's own route (serving/service.py `readyz`).

    BentoML's system routes come before a mounted app, so its plain-text `/readyz` would shadow
    the API's; this sends that one path to the API, whose route declares (and so documents) the
    JSON it answers. Every other path goes on to BentoML.
    """

    def __init__(
        self, app: Callable[[Scope, Receive, Send], Awaitable[None]], *, api: ASGIApp
    ) -> None:
        self.app = app
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = self.api if scope["type"] == "http" and scope["path"] == READY_PATH else self.app
        await target(scope, receive, send)


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


def stores_and_publication(service: Any) -> dict[str, Any]:
    """What /readyz says about the stores in use and the decision publication it answers from."""
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
