"""Requests the HTTP parser refuses (before any app code runs) get the project's JSON error too.

uvicorn answers a request it cannot parse (a negative, non-integer or repeated Content-Length, a
broken request line or header) itself, with a plain-text "Invalid HTTP request received.", before
the request reaches BentoML or the API. The contract (docs/contract.md §3) promises bad input a 4xx
with a JSON body naming the field, so `json_protocol_errors()` replaces that one answer,
`send_400_response` of uvicorn's HTTP/1.1 protocols, with a JSON 400 in the `ErrorBody` shape. The
connection is closed after it, as uvicorn does: after a framing error nothing more on it can be
trusted.

This is the one place the service still reaches inside a framework, because no public part can
do it: uvicorn's public way is its `http=` setting (a protocol class), but BentoML builds the
uvicorn `Config` in its worker with no way to pass it, and no ASGI middleware or exception handler
ever sees a request the parser refused. It is pinned: pyproject.toml holds uvicorn to the minor
version tested, and tests/code/test_pinned_internals.py fails when the method's name or signature
moves, or when a malformed request on a real uvicorn server no longer gets this JSON.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from uvicorn.protocols.http import h11_impl

from commuter_badge.serving.schemas import problem

BODY = json.dumps(
    problem(
        "invalid request",
        "request",
        "not a valid HTTP/1.1 request: malformed request line or headers "
        "(e.g. a negative, non-integer or repeated Content-Length)",
    )
).encode()
RESPONSE = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
    + f"content-length: {len(BODY)}\r\nconnection: close\r\n\r\n".encode()
    + BODY
)


def _send_json_400(self: Any, msg: str) -> None:  # noqa: ARG001 - uvicorn's text is replaced
    self.transport.write(RESPONSE)
    self.transport.close()


def json_protocol_errors() -> None:
    """Make uvicorn's own 400 answers JSON, for h11 and (when installed) httptools."""
    h11_impl.H11Protocol.send_400_response = _send_json_400
    with contextlib.suppress(ImportError):
        from uvicorn.protocols.http import httptools_impl

        httptools_impl.HttpToolsProtocol.send_400_response = _send_json_400
