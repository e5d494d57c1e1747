"""The request guard: bearer-token check, body size cap and input validation, before BentoML runs.

One ASGI middleware, installed with `add_asgi_middleware`, so that every route, including ones
BentoML adds itself, goes through the same door:

1. health, readiness, metrics and the OpenAPI page/JSON are open; everything else needs
   one `Authorization: Bearer <token>` header (two or more are a 400: none of them is picked)
   with a token from COMMUTER_API_TOKENS (else 401); /reviews
   takes reviewer tokens from COMMUTER_REVIEWER_TOKENS instead, and each role's token gets 403
   on the other role's endpoints;
2. an API body larger than the cap is refused (413) without reading the rest of it;
3. an API body is validated against its request model (serving/schemas.py): not JSON 400, over a
   limit 413, any malformed field 422, each with a JSON body naming the field;
4. every error answered behind it (Starlette's 404 and 405, BentoML's 500 and readiness 503) is
   rewritten into the one error body (`schemas.ErrorBody`), so every error is JSON;
5. `/docs.json` and `/` are answered from serving/openapi.py: the document with auth and every
   status declared, and a page that loads nothing from outside.

Only valid requests reach BentoML, whose own validation path would log the failing input. Tokens
are compared in constant time and never logged; neither are bodies.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any

import anyio.to_thread
from pydantic import BaseModel, ValidationError
from starlette.responses import HTMLResponse, JSONResponse
from starlette.types import Message, Receive, Scope, Send

from commuter_badge.serving import access_log, openapi
from commuter_badge.serving.admission import PARSED_STATE_KEY, replay_body, validate_in_pieces
from commuter_badge.serving.schemas import MAX_BODY_BYTES, problem, validation_problem
from commuter_badge.settings import Settings

logger = logging.getLogger(__name__)


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
        settings: Callable[[], Settings] | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        openapi_spec: Callable[[], Mapping[str, Any]] | None = None,
        readiness: Callable[[], list[str]] | None = None,
    ) -> None:
        # Tokens not given come from the worker's settings, which the service resolves (`settings`
        # is its function, called once here as the worker builds its middleware).
        if tokens is None or reviewer_tokens is None:
            resolved = settings() if settings is not None else None
            if tokens is None:
                tokens = resolved.api_tokens if resolved is not None else ()
            if reviewer_tokens is None:
                reviewer_tokens = resolved.reviewer_tokens if resolved is not None else ()
        self.app = app
        self.validators = dict(validators)
        self.tokens = tuple(tokens)
        self.reviewer_tokens = tuple(reviewer_tokens)
        self.max_body_bytes = max_body_bytes
        self.openapi_spec = openapi_spec
        self.readiness = readiness
        self._document: bytes | None = None
        access_log.sample_unauthorized()
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
        send = _JsonErrors(scope, send, self.readiness)
        if scope["method"] in ("GET", "HEAD") and path in openapi.OPEN_DOC_PATHS:
            await self._docs(scope, receive, send)
            return
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        n_auth = sum(1 for name, _ in scope["headers"] if name == b"authorization")
        if n_auth > 1:
            await self._reply(
                scope,
                receive,
                send,
                400,
                problem(
                    "invalid request",
                    "Authorization",
                    f"the request has {n_auth} Authorization headers; send exactly one",
                ),
            )
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
                # In pieces, so the event loop gets the GIL between persons; the parsed request is
                # kept for the service, which then need not parse it again (serving/admission.py).
                parsed = await anyio.to_thread.run_sync(validate_in_pieces, model, body)
                scope.setdefault("state", {})[PARSED_STATE_KEY] = parsed
            else:
                model.model_validate_json(body)
        except ValidationError as exc:
            status, detail = validation_problem(exc)
            await self._reply(scope, receive, send, status, detail)
            return
        await self.app(_as_json(scope), replay_body(body, receive), send)

    def _roles(self, token: str | None) -> set[str]:
        """Which roles a token has; both lists are always compared (no early exit)."""
        if token is None:
            return set()
        issuer = token_matches(token, self.tokens)
        reviewer = token_matches(token, self.reviewer_tokens)
        return {r for r, ok in ((ISSUER, issuer), (REVIEWER, reviewer)) if ok}

    async def _docs(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/":
            await HTMLResponse(openapi.INDEX_PAGE)(scope, receive, send)
            return
        if self.openapi_spec is None:
            await self.app(scope, receive, send)
            return
        if self._document is None:  # built once per worker: the routes never change at runtime
            doc = openapi.document(self.openapi_spec(), protected=self.validators)
            self._document = json.dumps(doc).encode()
        await _RawJSON(self._document)(scope, receive, send)

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


class _RawJSON(JSONResponse):
    """A JSON response from bytes already serialised."""

    def render(self, content: Any) -> bytes:
        return content


def _json_error(
    status: int, content: bytes, content_type: str, missing: list[str] | None
) -> dict[str, Any] | None:
    """The project's error body for an error answered behind the guard, or None to keep it.

    `missing` is what readiness lacks, for a 503 from /readyz (else None).
    """
    if missing is not None:
        return {
            "error": "not ready",
            "message": "; ".join(missing) or "the service is starting",
            "missing": missing,
        }
    phrase = HTTPStatus(status).phrase.lower() if status in HTTPStatus._value2member_map_ else ""
    found: Any = None
    if content_type.startswith("application/json"):
        try:
            found = json.loads(content)
        except ValueError:
            found = None
        if isinstance(found, dict) and isinstance(found.get("error"), str):
            if isinstance(found.get("message"), str):
                return None  # already ours
            return {**found, "message": found["error"]} if status < 500 else _hidden(phrase)
    if status >= 500:
        return _hidden(phrase)  # BentoML's text can carry exception details: never show them
    if status == 404:
        return {"error": "not found", "message": "no such path; the API is listed at /docs.json"}
    if status == 405:
        return {"error": "method not allowed", "message": "see the Allow header for this path"}
    text = content.decode("utf-8", "replace").strip()
    return {"error": phrase or "error", "message": text[:200] or phrase or "error"}


def _hidden(phrase: str) -> dict[str, str]:
    return {"error": phrase or "server error", "message": "the server log has the details"}


class _JsonErrors:
    """Wraps `send`: an error response that is not the project's error body is rewritten into it.

    Error bodies are small, so the whole body is held until the last chunk and then replaced;
    headers the client needs (Allow, Retry-After, WWW-Authenticate) are kept.
    """

    _DROP = (b"content-length", b"content-type")

    def __init__(self, scope: Scope, send: Send, readiness: Callable[[], list[str]] | None) -> None:
        self.scope, self.send, self.readiness = scope, send, readiness
        self.start: Message | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            if message["status"] >= 400 and self.scope.get("method") != "HEAD":
                self.start = message
                return
        elif message["type"] == "http.response.body" and self.start is not None:
            self.chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            await self._finish()
            return
        await self.send(message)

    async def _finish(self) -> None:
        start, content = self.start, b"".join(self.chunks)
        headers = start.get("headers", [])
        content_type = next((v for k, v in headers if k == b"content-type"), b"").decode("latin-1")
        missing = None
        if self.scope["path"] == "/readyz" and start["status"] == 503:
            # The model lookup behind it may touch the registry: keep it off the event loop.
            missing = await anyio.to_thread.run_sync(self.readiness) if self.readiness else []
        body = _json_error(start["status"], content, content_type, missing)
        if body is None:
            await self.send(start)
            await self.send({"type": "http.response.body", "body": content})
            return
        kept = [(k, v) for k, v in headers if k not in self._DROP]
        payload = json.dumps(body).encode()
        kept += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]
        if start["status"] == 503 and not any(k == b"retry-after" for k, _ in kept):
            kept.append((b"retry-after", b"10"))
        await self.send({**start, "headers": kept})
        await self.send({"type": "http.response.body", "body": payload})


def _as_json(scope: Scope) -> Scope:
    """The body was validated as JSON: say so, whatever Content-Type the client sent."""
    headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
    headers.append((b"content-type", b"application/json"))
    return {**scope, "headers": headers}
