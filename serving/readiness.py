"""`/readyz` says which working-day calendar the worker decides with, not just that it is ready.

A model certified under one holiday calendar is a different model from one certified under
another, so whoever checks readiness (an operator after adding next year's schedule, a deploy
script) should see the calendar in the same answer. BentoML's own `/readyz` (driven by
`__is_ready__`) stays in charge of the verdict; this ASGI middleware only replaces the body of a
ready answer with JSON: `{"status": "ready", "model_version": "7", "calendar": {library_version,
file_digest, years, ...}}` (features/workdays.py `calendar_info`; the model version is the one this
worker serves, pinned when the service started). A not-ready answer passes through unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import bentoml
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

from commuter_badge.features.workdays import calendar_info

READY_PATH = "/readyz"


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
                "calendar": calendar_info(),
            }
            await JSONResponse(body)(scope, receive, send)


def _served_version() -> str | None:
    """The model version this worker's service instance serves (None before it has one)."""
    return getattr(bentoml.get_current_service(), "model_version", None)
