"""The request guard: bearer-token check, body size cap and input validation, before BentoML runs.

One ASGI middleware, installed with `add_asgi_middleware`, so that every route, including ones
BentoML adds itself, goes through the same door:

1. health, readiness, metrics and the OpenAPI page/JSON are open; everything else needs
   `Authorization: Bearer <token>` with a token from COMMUTER_API_TOKENS (else 401); /reviews
   takes reviewer tokens from COMMUTER_REVIEWER_TOKENS instead, and each role's token gets 403
   on the other role's endpoints;
2. an API body larger than the cap is refused (413) without reading the rest of it;
3. an API body is validated against its request model (serving/schemas.py): not JSON 400, over a
   limit 413, any malformed field 422, each with a JSON body naming the field.

Only valid requests reach BentoML, whose own validation path would log the failing input. Tokens
are compared in constant time and never logged; neither are bodies.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import anyio.to_thread
from pydantic import BaseModel, ValidationError
from starlette.responses import JSONResponse

from commuter_badge.serving.schemas import MAX_BODY_BYTES, problem, validation_problem

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

OPEN_PATHS = frozenset(
    {"/healthz", "/readyz", "/livez", "/metrics", "/", "/docs.json", "/schema.json"}
)
OPEN_PREFIXES = ("/static_content/", "/assets/")
# Two roles: the badge issuer (COMMUTER_API_TOKENS) on /score and /badge, reviewers
# (COMMUTER_REVIEWER_TOKENS) on /reviews and /reviews/{person_id}; the other role's token gets 403.
ISSUER, REVIEWER = "issuer", "reviewer"
REVIEW_PATH = "/reviews"
ROLE_PATHS = {
    ISSUER: "issuer tokens (COMMUTER_API_TOKENS) are for /score and /badge",
    REVIEWER: "reviewer tokens (COMMUTER_REVIEWER_TOKENS) are for /reviews",
}
# Bodies above this size are validated in a worker thread so the event loop keeps answering probes.
_THREAD_VALIDATION_BYTES = 1024 * 1024


def token_matches(presented: str, tokens: Iterable[str]) -> bool:
    """Constant-time comparison against every configured token (no early exit on a match)."""
    given = presented.encode("utf-8", "surrogateescape")
    found = False
    for token in tokens:
        found |= hmac.compare_digest(given, token.encode("utf-8", "surrogateescape"))
    return found


def is_review_path(path: str) -> bool:
    return path == REVIEW_PATH or path.startswith(REVIEW_PATH + "/")


def bearer_token(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


class RequestGuard:
    """ASGI middleware: authenticate, cap and validate API requests (see the module docstring)."""

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        *,
        validators: Mapping[str, type[BaseModel]],
        tokens: Iterable[str] | None = None,
        reviewer_tokens: Iterable[str] | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        if tokens is None:
            from commuter_badge.settings import load_settings

            tokens = load_settings().api_tokens
        self.app = app
        self.validators = dict(validators)
        self.tokens = tuple(tokens)
        if reviewer_tokens is None:
            from commuter_badge.settings import load_settings

            reviewer_tokens = load_settings().reviewer_tokens
        self.reviewer_tokens = tuple(reviewer_tokens)
        self.max_body_bytes = max_body_bytes
        if not self.tokens:
            logger.warning(
                "COMMUTER_API_TOKENS is empty: every authenticated endpoint will answer 401 "
                "until the service is restarted with at least one token"
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope["headers"])
        roles = self._roles(token)
        if not roles:
            await self._reply(
                scope,
                receive,
                send,
                401,
                {
                    "error": "unauthorized",
                    "message": "send Authorization: Bearer <token> with a valid token",
                },
                headers={"WWW-Authenticate": "Bearer"},
            )
            return
        needed = REVIEWER if is_review_path(path) else ISSUER
        if needed not in roles:
            await self._reply(
                scope,
                receive,
                send,
                403,
                {
                    "error": "forbidden",
                    "message": f"this token is not a {needed} token; {ROLE_PATHS[needed]}",
                },
            )
            return
        model = self.validators.get(path) if scope["method"] == "POST" else None
        if model is None:
            await self.app(scope, receive, send)
            return
        body = await self._read_body(scope, receive, send)
        if body is None:
            return
        try:
            if len(body) > _THREAD_VALIDATION_BYTES:
                await anyio.to_thread.run_sync(model.model_validate_json, body)
            else:
                model.model_validate_json(body)
        except ValidationError as exc:
            status, detail = validation_problem(exc)
            await self._reply(scope, receive, send, status, detail)
            return
        await self.app(_as_json(scope), _replay(body, receive), send)

    def _roles(self, token: str | None) -> set[str]:
        """Which roles a token has; both lists are always compared (no early exit)."""
        if token is None:
            return set()
        issuer = token_matches(token, self.tokens)
        reviewer = token_matches(token, self.reviewer_tokens)
        return {r for r, ok in ((ISSUER, issuer), (REVIEWER, reviewer)) if ok}

    async def _read_body(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None after answering 400/413 (bad or too large Content-Length)."""
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._reply(
                        scope,
                        receive,
                        send,
                        400,
                        problem("invalid request", "Content-Length", "not an integer"),
                    )
                    return None
                if declared > self.max_body_bytes:
                    await self._too_large(scope, receive, send)
                    return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._too_large(scope, receive, send)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = f"{self.max_body_bytes / 1024 / 1024:g} MiB"
        await self._reply(
            scope,
            receive,
            send,
            413,
            problem("request too large", "body", f"request bodies are limited to {limit}"),
        )

    @staticmethod
    async def _reply(
        scope: Scope,
        receive: Receive,
        send: Send,
        status: int,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        await JSONResponse(body, status_code=status, headers=headers)(scope, receive, send)


def _as_json(scope: Scope) -> Scope:
    """The body was validated as JSON: say so, whatever Content-Type the client sent."""
    headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
    headers.append((b"content-type", b"application/json"))
    return {**scope, "headers": headers}


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
