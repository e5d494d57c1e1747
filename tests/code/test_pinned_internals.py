"""The one framework internal the service still replaces (serving/http_errors.py), held in place.

uvicorn's HTTP/1.1 protocol answers a request it cannot parse with `send_400_response(msg)`; the
service replaces that method so the answer is JSON. If uvicorn renames or reshapes it, or stops
calling it for a malformed Content-Length, these fail here, before any dashboard or client does.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import socket
import tomllib
from pathlib import Path

import uvicorn
from packaging.requirements import Requirement
from packaging.version import Version
from uvicorn.protocols.http import h11_impl

from commuter_badge.serving import http_errors

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _pinned(name: str) -> Requirement:
    for line in tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]:
        req = Requirement(line)
        if req.name == name:
            return req
    raise AssertionError(f"{name} is not a dependency in {PYPROJECT}")


def test_uvicorn_is_within_the_pinned_range():
    req = _pinned("uvicorn")
    assert req.specifier, "uvicorn needs an upper bound: serving/http_errors.py reaches inside it"
    assert Version(uvicorn.__version__) in req.specifier, (uvicorn.__version__, str(req))


def test_the_replaced_method_has_the_shape_the_service_expects():
    method = h11_impl.H11Protocol.send_400_response
    assert list(inspect.signature(method).parameters) == ["self", "msg"]
    assert "self.send_400_response(" in inspect.getsource(h11_impl.H11Protocol)


async def _app(scope, receive, send):  # never reached: the parser refuses the request first
    raise AssertionError("the app saw a request the parser should have refused")


async def _malformed_request_answer() -> bytes:
    config = uvicorn.Config(_app, http="h11", log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /badge HTTP/1.1\r\nHost: t\r\nContent-Length: -5\r\n\r\n{}")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    server.should_exit = True
    await task
    return answer


def test_a_malformed_request_on_a_real_uvicorn_gets_the_json_400():
    original = h11_impl.H11Protocol.send_400_response
    try:
        http_errors.json_protocol_errors()
        answer = asyncio.run(_malformed_request_answer())
    finally:
        h11_impl.H11Protocol.send_400_response = original
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"content-type: application/json" in head.lower(), head
    assert json.loads(body)["field"] == "request", body
