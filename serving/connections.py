"""Keep-alive connections spread over the workers, not stuck on the one that accepted them first.

Every worker accepts from one shared listening socket, and asyncio accepts every pending connection
in one go: a client that opens its pool in a burst (32 connections at once, as a badge issuer's
HTTP pool does) lands it all on whichever worker woke first, and keep-alive keeps it there: one
worker did nearly all the work while the other idled (seen with py-spy).

`RecycleConnections` answers the `MAX_REQUESTS_PER_CONNECTION`-th request of a connection with
`Connection: close` (nginx's `keepalive_requests` in spirit). The client opens a new one, and the
worker with time to spare is the one that accepts it, so a busy pool evens out within a few dozen
requests per connection, at the cost of one local TCP handshake per that many requests (TLS ends in
front of the service, so it is a plain one). benchmarks/service_bench.py measures the throughput
with and without it (docs/guide/operations.md, Performance).
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_REQUESTS_PER_CONNECTION = 20
# Connections the client closed itself leave their count behind; beyond this many, start over.
MAX_TRACKED_CONNECTIONS = 4096


class RecycleConnections:
    """ASGI middleware: close a keep-alive connection after `max_requests` answers on it."""

    def __init__(self, app: ASGIApp, max_requests: int = MAX_REQUESTS_PER_CONNECTION) -> None:
        self.app = app
        self.max_requests = max_requests
        self._served: dict[tuple[Any, ...], int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client") if scope["type"] == "http" else None
        if not client:  # no peer address (a Unix socket, a test client): nothing to key it by
            await self.app(scope, receive, send)
            return
        key = tuple(client)
        served = self._served.pop(key, 0) + 1
        if served < self.max_requests:
            if len(self._served) >= MAX_TRACKED_CONNECTIONS:
                self._served.clear()
            self._served[key] = served
            await self.app(scope, receive, send)
            return

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"
                ]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, closing_send)
