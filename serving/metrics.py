"""HTTP metrics labelled from a fixed set of endpoints, so random paths cannot grow /metrics.

BentoML 1.4's traffic-metrics middleware (`bentoml._internal.server.http.instruments.
RunnerTrafficMetricsMiddleware`) labels every request with its raw path. Each new path is a new
label set: in the worker's memory and in the Prometheus multiprocess files, forever, so
unauthenticated requests to random paths grew /metrics without bound.

That middleware is the outermost one, so nothing installed with `add_asgi_middleware` runs before
it. The one seam is the name the app factory imports when it builds the middleware stack
(`_bentoml_impl.server.app.ServiceAppFactory.middlewares`): `bound_endpoint_labels()` replaces it
with a subclass that shows the middleware a path from a fixed set (the API's routes, the
system routes, "/static_content" for the page's files, `OTHER` for anything else) and gives the
real path back to the app behind it. Call it before the app is built, i.e. when the service
module is imported. tests/service/test_hardening.py holds /metrics flat under random paths, so a
BentoML upgrade that moves the seam fails the tests instead of the dashboards.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bentoml._internal.server.http import instruments

OTHER = "other"
API_ROUTES = ("/score", "/badge", "/reviews")
REVIEW_HISTORY = "/reviews/{person_id}"
SYSTEM_ROUTES = ("/healthz", "/livez", "/readyz", "/metrics", "/", "/docs.json", "/schema.json")
STATIC_PREFIX = "/static_content"
_REAL_PATH = "commuter.real_path"


def endpoint_label(path: str, routes: Iterable[str]) -> str:
    """The metrics label of a request path: itself when it is a known route, else a fixed one."""
    if path in routes or path in SYSTEM_ROUTES:
        return path
    if "/reviews" in routes and path.startswith("/reviews/"):
        return REVIEW_HISTORY
    if path.startswith(STATIC_PREFIX + "/"):
        return STATIC_PREFIX
    return OTHER


class _RealPath:
    """Behind the metrics middleware: the request continues with its real path."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if _REAL_PATH in scope:
            scope = {**scope, "path": scope[_REAL_PATH]}
        await self.app(scope, receive, send)


class RouteLabelledTrafficMetrics(instruments.RunnerTrafficMetricsMiddleware):
    """BentoML's traffic metrics, with the endpoint label taken from a fixed set."""

    def __init__(self, app: Any, **options: Any) -> None:
        super().__init__(_RealPath(app), **options)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            label = endpoint_label(scope["path"], API_ROUTES)
            if label != scope["path"]:
                scope = {**scope, "path": label, _REAL_PATH: scope["path"]}
        await super().__call__(scope, receive, send)


def bound_endpoint_labels() -> None:
    """Make BentoML build its traffic metrics with `RouteLabelledTrafficMetrics` (idempotent)."""
    instruments.RunnerTrafficMetricsMiddleware = RouteLabelledTrafficMetrics
