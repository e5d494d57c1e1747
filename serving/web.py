"""The HTTP side of the service on FastAPI's own parts: roles, bodies, errors, the docs page.

The service (serving/service.py) mounts one FastAPI application on BentoML
(`@bentoml.asgi_app`, as BentoML's documentation recommends for custom routes and
authentication). Everything here is a FastAPI or Starlette extension point:

- roles are dependencies (`role(ISSUER)`, `role(REVIEWER)`) that check one `Authorization: Bearer <token>`
  header (two or more: 400, none of them picked) against COMMUTER_API_TOKENS or
  COMMUTER_REVIEWER_TOKENS, in constant time and against both lists always; no valid token 401,
  a valid token of the other role 403. `HTTPBearer` declares the scheme in the OpenAPI document.
  A route with a body checks its role before the body is read (`JsonBodyRoute`), as FastAPI
  would only after parsing it: an anonymous caller never gets a 16 MiB body parsed;
- bodies are parsed once, by pydantic's JSON parser with the route's own model
  (`JsonBodyRoute`): FastAPI's own path (`json.loads`, then `validate_python`) would refuse
  the strict JSON types of serving/schemas.py (dates and timestamps as strings). A body over
  1 MiB is validated in a thread, one person at a time (`admission.validate_in_pieces`), so the
  event loop keeps answering probes (measured: one call held the GIL ~3 s for 11 MiB). Whatever
  its Content-Type says, an API body is read as JSON, as before;
- every error is the one `ErrorBody` (schemas.py), from exception handlers: validation 400 /
  413 / 422 naming the field, 404 / 405 (Allow kept), 500 without detail;
- paths the API does not have answer 401 without a token and 404 (or 405) with one, so an
  unauthenticated caller learns nothing about which paths exist.

The page at / loads only Swagger UI's files that ship inside BentoML (served here at
/static_content/), with the outside validator off, so a closed network never calls out.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Annotated, Any

import anyio.to_thread
import bentoml
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive

from commuter_badge.serving.admission import OFF_LOOP_BYTES, validate_in_pieces
from commuter_badge.serving.schemas import (
    MAX_BODY_BYTES,
    ErrorBody,
    field_path,
    problem,
    validation_problem,
)

logger = logging.getLogger(__name__)

ISSUER, REVIEWER = "issuer", "reviewer"
ROLE_HINTS = {
    ISSUER: "issuer tokens (COMMUTER_API_TOKENS) are for /score and /badge",
    REVIEWER: "reviewer tokens (COMMUTER_REVIEWER_TOKENS) are for /reviews",
}
RETRY_AFTER_SECONDS = 10

_REASONS = {
    400: "The body is not JSON (also empty or invalid UTF-8); `field` is `body`",
    401: "Missing, malformed or unknown bearer token",
    403: "A valid token of the other role (issuer tokens for /score and /badge, reviewer "
    "tokens for /reviews)",
    413: "Over a limit: body size, persons, trips per person or ids; `field` names it",
    422: "Malformed input; `field` names the first offending field, `errors` lists them",
    500: "A bug; the message carries no detail, the server log has the traceback",
    503: "Not ready (no champion model, no store) or busy; retry after `Retry-After` s",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before asking again",
        "required": True,
        "schema": {"type": "integer"},
    }
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: each error status with the one `ErrorBody`."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        out[status] = {"model": ErrorBody, "description": _REASONS[status]}
        if status == 503:
            out[status]["headers"] = _RETRY_AFTER
    return out


API_ERRORS = (400, 401, 403, 413, 422, 500, 503)


class ApiError(Exception):
    """An answer other than success, in the `ErrorBody` shape (the handler below sends it)."""

    def __init__(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(body.get("message", ""))
        self.status, self.body, self.headers = status, body, headers

    @classmethod
    def invalid(cls, field: str, message: str, status: int = 422) -> ApiError:
        return cls(status, problem("invalid request", field, message))

    @classmethod
    def unavailable(cls, what: str, message: str) -> ApiError:
        return cls(
            503,
            {"error": what, "message": message},
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


# --- roles --------------------------------------------------------------------------------------


def token_matches(presented: str, tokens: Iterable[str]) -> bool:
    """Constant-time comparison against every configured token (no early exit on a match)."""
    given = presented.encode("utf-8", "surrogateescape")
    found = False
    for token in tokens:
        found |= hmac.compare_digest(given, token.encode("utf-8", "surrogateescape"))
    return found


class Tokens:
    """The tokens of both roles, read once per worker from the settings."""

    def __init__(self, issuer: Iterable[str], reviewer: Iterable[str]) -> None:
        self.issuer, self.reviewer = tuple(issuer), tuple(reviewer)
        if not self.issuer:
            logger.warning(
                "COMMUTER_API_TOKENS is empty: every authenticated endpoint will answer 401 "
                "until the service is restarted with at least one token"
            )

    def roles(self, token: str | None) -> set[str]:
        """Which roles a token has; both lists are always compared (no early exit)."""
        if token is None:
            return set()
        issuer = token_matches(token, self.issuer)
        reviewer = token_matches(token, self.reviewer)
        return {r for r, ok in ((ISSUER, issuer), (REVIEWER, reviewer)) if ok}


_bearer = HTTPBearer(
    scheme_name="bearerAuth",
    description="a token from COMMUTER_API_TOKENS (/score, /badge) or COMMUTER_REVIEWER_TOKENS "
    "(/reviews)",
    auto_error=False,
)
_tokens: Tokens | None = None


def tokens() -> Tokens:
    global _tokens
    if _tokens is None:
        from commuter_badge.settings import load_settings

        settings = load_settings()
        _tokens = Tokens(settings.api_tokens, settings.reviewer_tokens)
    return _tokens


def caller_roles(request: Request) -> set[str]:
    """The roles of the request's one bearer token; 400 for two headers, 401 for no valid token."""
    headers = request.headers.getlist("authorization")
    if len(headers) > 1:
        raise ApiError.invalid(
            "Authorization",
            f"the request has {len(headers)} Authorization headers; send exactly one",
            status=400,
        )
    scheme, token = get_authorization_scheme_param(headers[0] if headers else None)
    roles = tokens().roles(token.strip() or None if scheme.lower() == "bearer" else None)
    if not roles:
        raise ApiError(
            401,
            {
                "error": "unauthorized",
                "message": "send Authorization: Bearer <token> with a valid token",
            },
            headers={"WWW-Authenticate": "Bearer"},
        )
    return roles


def authorize(request: Request, needed: str) -> None:
    if needed not in caller_roles(request):
        raise ApiError(
            403,
            {
                "error": "forbidden",
                "message": f"this token is not a {needed} token; {ROLE_HINTS[needed]}",
            },
        )


def role(needed: str) -> Callable[..., None]:
    """A dependency that lets only callers holding `needed` through; `HTTPBearer` declares the
    scheme on the route in the OpenAPI document."""

    async def check(  # async: FastAPI runs a plain function's dependency in a thread
        request: Request,
        _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        authorize(request, needed)

    check.role = needed  # type: ignore[attr-defined]  # JsonBodyRoute checks it before the body
    return check


async def current_service() -> Any:
    """The BentoML service instance of this worker (its model and stores); async, so that
    FastAPI calls it on the event loop instead of sending it to a thread."""
    return bentoml.get_current_service()


# --- bodies -------------------------------------------------------------------------------------


class _ModelRequest(Request):
    """A request whose JSON body is the route's model, validated from the bytes in one pass."""

    model: type[BaseModel]

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                if len(body) > OFF_LOOP_BYTES:
                    parsed = await anyio.to_thread.run_sync(validate_in_pieces, self.model, body)
                else:
                    parsed = self.model.model_validate_json(body)
            except ValidationError as exc:
                status, detail = validation_problem(exc)
                # FastAPI lets an HTTPException raised while reading the body through as it is
                raise HTTPException(status, detail=detail) from None
            self._json = parsed
        return self._json


class JsonBodyRoute(APIRoute):
    """FastAPI's route, with the body parsed by `_ModelRequest` (module docstring).

    FastAPI then checks the parsed model against the declared body type, which for an instance
    of that very model is a pass-through (pydantic does not revalidate instances).
    """

    def get_route_handler(self) -> Callable[..., Any]:
        handler = super().get_route_handler()
        model = self.body_field.field_info.annotation if self.body_field is not None else None
        roles = [getattr(d.dependency, "role", None) for d in self.dependencies]
        needed = [r for r in roles if r is not None]

        async def route_handler(request: Request) -> Any:
            if model is None:
                return await handler(request)
            for r in needed:  # before the body is read: no anonymous caller gets a body parsed
                authorize(request, r)
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
                raise _too_large()  # refused before reading any of it
            headers = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"]
            headers.append((b"content-type", b"application/json"))
            receive = _capped(request.receive)
            as_json = _ModelRequest({**request.scope, "headers": headers}, receive)
            as_json.model = model
            return await handler(as_json)

        return route_handler


def _too_large() -> HTTPException:
    # An HTTPException: FastAPI lets it through from reading the body (others become a 400).
    limit = f"{MAX_BODY_BYTES / 1024 / 1024:g} MiB"
    return HTTPException(
        413, detail=problem("request too large", "body", f"request bodies are limited to {limit}")
    )


def _capped(receive: Receive) -> Receive:
    """`receive` that refuses (413) a body growing past MAX_BODY_BYTES (one without a length).

    Not Starlette's body-limit middleware: it answers its 413 in plain text, not `ErrorBody`."""
    size = 0

    async def capped() -> Message:
        nonlocal size
        message = await receive()
        size += len(message.get("body", b""))
        if size > MAX_BODY_BYTES:
            raise _too_large()
        return message

    return capped


# --- errors -------------------------------------------------------------------------------------


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    headers = dict(headers or {})
    if status == 503:
        headers.setdefault("Retry-After", str(RETRY_AFTER_SECONDS))
    return JSONResponse(body, status_code=status, headers=headers or None)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _json(exc.status, exc.body, exc.headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status, detail = exc.status_code, exc.detail
    if isinstance(detail, dict):
        return _json(status, detail, exc.headers)
    if status == 404:
        body = {"error": "not found", "message": "no such path; the API is listed at /docs.json"}
    elif status == 405:
        body = {"error": "method not allowed", "message": "see the Allow header for this path"}
    elif status >= 500:
        body = {
            "error": HTTPStatus(status).phrase.lower(),
            "message": "the server log has the details",
        }
    else:
        phrase = (
            HTTPStatus(status).phrase.lower()
            if status in HTTPStatus._value2member_map_
            else "error"
        )
        body = {"error": phrase, "message": str(detail)[:200] or phrase}
    return _json(status, body, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """A path or header that fails its declared type; an empty body (FastAPI never parses it)."""
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    first = errors[0] if errors else {"loc": ("body",), "type": "missing", "msg": "missing"}
    loc = tuple(first.get("loc", ()))
    if loc == ("body",) and first.get("type") == "missing":
        return _json(400, problem("invalid JSON", "body", "the body is empty; send a JSON object"))
    listed = [
        {"field": field_path(tuple(e.get("loc", ()))[1:]), "message": e.get("msg", "")}
        for e in errors[:20]
    ]
    body = problem(
        "invalid request",
        listed[0]["field"],
        listed[0]["message"],
        errors=listed,
        n_errors=len(errors),
    )
    return _json(422, body)


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _json(
        500, {"error": "internal server error", "message": "the server log has the details"}
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _server_error)


def no_such_route(app: FastAPI, *routers: APIRouter) -> None:
    """The last route: any other path (401 without a token; else 405 with the methods the path
    has among `routers`' routes, or 404)."""

    @app.api_route(
        "/{path:path}",
        methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        include_in_schema=False,
    )
    def elsewhere(
        request: Request,
        _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        caller_roles(request)
        allowed = sorted(
            method
            for router in routers
            for route in router.routes
            if isinstance(route, APIRoute) and route.matches(request.scope)[0] == Match.PARTIAL
            for method in route.methods
        )
        if allowed:
            raise StarletteHTTPException(405, headers={"Allow": ", ".join(allowed)})
        raise StarletteHTTPException(404)


# --- the page at / ------------------------------------------------------------------------------


def docs_page(app: FastAPI) -> None:
    """/ (Swagger UI on /docs.json) and its files from BentoML's package, nothing from outside."""
    app.mount(
        "/static_content",
        StaticFiles(packages=[("bentoml._internal.server", "static_content")]),
        name="static_content",
    )

    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(INDEX_PAGE)


INDEX_PAGE = """<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>commuter-badge API</title>
    <link rel="stylesheet" type="text/css" href="./static_content/swagger-ui.css" />
    <link rel="stylesheet" type="text/css" href="./static_content/index.css" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="./static_content/swagger-ui-bundle.js" charset="UTF-8"></script>
    <script src="./static_content/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
    <script>
      window.onload = function () {
        window.ui = SwaggerUIBundle({
          url: "./docs.json",
          dom_id: "#swagger-ui",
          deepLinking: true,
          validatorUrl: null,
          presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
          layout: "StandaloneLayout",
        });
      };
    </script>
  </body>
</html>
"""
