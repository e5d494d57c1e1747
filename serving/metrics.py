"""HTTP request metrics labelled from a fixed set of endpoints, so random paths cannot grow /metrics.

BentoML's own traffic metrics label every request with its raw path. Each new path is a new label
set: in the worker's memory and in the Prometheus multiprocess files, forever, so unauthenticated
requests to random paths grew /metrics without bound. They are turned off with BentoML's public
setting (`@bentoml.service(metrics={"enabled": False})`, serving/service.py), which also drops
BentoML's /metrics route; this module puts both back with public parts only:

- `TrafficMetrics`, an ASGI middleware (`add_asgi_middleware`, the first one), counts every request
  but /metrics under BentoML's names and labels (`bentoml_service_request_total`,
  `..._request_duration_seconds`, `..._request_in_progress`; `endpoint`, `service_name`,
  `service_version`, `http_response_code`, `runner_name`), with `endpoint` a known route,
  "/static_content" for the page's files, or `OTHER` for anything else;
- `metrics_text()` is the /metrics answer: every worker's metrics (ours, `commuter_*` and these)
  from the multiprocess directory BentoML sets up (PROMETHEUS_MULTIPROC_DIR), with
  prometheus_client's own collector, as prometheus_client's documentation says.

A request BentoML itself refuses before the middlewares (its concurrency limit or timeout) is not
counted here. tests/service/test_hardening.py holds /metrics flat under random paths.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterable

import bentoml
from starlette.types import ASGIApp, Message, Receive, Scope, Send

NAMESPACE = "bentoml_service"  # BentoML's, so dashboards built on its metrics keep working
OTHER = "other"
API_ROUTES = ("/score", "/badge", "/reviews")
REVIEW_HISTORY = "/reviews/{person_id}"
SYSTEM_ROUTES = ("/healthz", "/livez", "/readyz", "/metrics", "/", "/docs.json", "/schema.json")
STATIC_PREFIX = "/static_content"
METRICS_PATH = "/metrics"
# BentoML's default duration buckets (seconds), up to the service's 60 s timeout
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, float("inf"))
LABELS = ("endpoint", "service_name", "service_version", "http_response_code", "runner_name")


def endpoint_label(path: str, routes: Iterable[str]) -> str:
    """The metrics label of a request path: itself when it is a known route, else a fixed one."""
    if path in routes or path in SYSTEM_ROUTES:
        return path
    if "/reviews" in routes and path.startswith("/reviews/"):
        return REVIEW_HISTORY
    if path.startswith(STATIC_PREFIX + "/"):
        return STATIC_PREFIX
    return OTHER


class _Instruments:
    """The three metrics, made in the worker (after BentoML set PROMETHEUS_MULTIPROC_DIR)."""

    def __init__(self) -> None:
        import prometheus_client as prom

        self.duration = prom.Histogram(
            "request_duration_seconds",
            "API HTTP request duration in seconds",
            LABELS,
            namespace=NAMESPACE,
            buckets=DURATION_BUCKETS,
        )
        self.total = prom.Counter(
            "request_total", "Total number of API HTTP requests", LABELS, namespace=NAMESPACE
        )
        self.in_progress = prom.Gauge(
            "request_in_progress",
            "API HTTP requests in progress now",
            [label for label in LABELS if label != "http_response_code"],
            namespace=NAMESPACE,
            multiprocess_mode="livesum",
        )
        ctx = bentoml.server_context
        self.fixed = {
            "service_name": ctx.bento_name or "",
            "service_version": ctx.bento_version or "",
            "runner_name": ctx.service_name or "",
        }


@functools.cache
def instruments() -> _Instruments:
    """The worker's one set of instruments (prometheus_client refuses a name registered twice)."""
    return _Instruments()


class TrafficMetrics:
    """ASGI middleware: request count, duration and in-flight gauge per fixed endpoint label."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == METRICS_PATH:
            await self.app(scope, receive, send)
            return
        m = instruments()
        endpoint = endpoint_label(scope["path"], API_ROUTES)
        status = 500  # unless the app answers

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        start = time.perf_counter()
        with m.in_progress.labels(endpoint=endpoint, **m.fixed).track_inprogress():
            try:
                await self.app(scope, receive, watch)
            finally:
                labels = {"endpoint": endpoint, "http_response_code": str(status), **m.fixed}
                m.total.labels(**labels).inc()
                m.duration.labels(**labels).observe(time.perf_counter() - start)


def metrics_text() -> tuple[bytes, str]:
    """Every worker's metrics in Prometheus' text format, and its content type."""
    import prometheus_client as prom
    from prometheus_client import multiprocess

    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # one process (tests of the app alone)
        return prom.generate_latest(), prom.CONTENT_TYPE_LATEST
    registry = prom.CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return prom.generate_latest(registry), prom.CONTENT_TYPE_LATEST
