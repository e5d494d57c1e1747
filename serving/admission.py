"""What one worker accepts at a time, and how large request bodies are parsed without stalling it.

- `InflightLimit` (outermost) bounds the request bodies one worker holds at a time. Work per
  request grows with its body (about 120 bytes a trip, and parsing, features and reasons all scale
  with trips), so the budget is in bytes, charged by `Content-Length` before anything is read (a
  body without one is charged the full body cap). A request that would take the worker over its
  budget is answered 503 at once, with `Retry-After` and the project's error JSON, instead of
  queueing behind the others: a few of the largest requests at once used to hold one worker at
  over a gigabyte.
  Bodiless requests (probes, `/metrics`, GETs) are never counted or refused.
- `validate_in_pieces` validates a large `/score` body one person at a time. pydantic-core holds
  the GIL for a whole `model_validate_json` call, seconds for the largest bodies, so validating
  in a thread does not free the event loop: `/readyz` waited that long. Between two
  persons the GIL can change hands, so the loop answers within a few milliseconds. Errors are the
  same as one call's (the same types, messages and `persons[i]...` paths); a body that is not a
  plain JSON object with a `persons` list falls back to one call, whose error is exact and cheap.
- `calm_garbage_collector` makes CPython's full collections rare. A full collection walks every
  live object holding the GIL: with two large requests in flight (millions of objects) one took
  over a second, during which no probe was answered, and they doubled the CPU time of parsing
  (figures in docs/guide/operations.md, Performance).

All three are kept because measurement justified them (tests/service/test_admission.py holds the
probes and the memory bound). `validate_in_pieces` is the one parse of a large body
(serving/web.py `JsonBodyRoute` calls it), not a second one.
"""

from __future__ import annotations

import gc
import json
import logging
import re
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from commuter_badge.serving.schemas import (
    MAX_BODY_BYTES,
    MAX_PERSONS,
    PersonTrips,
    ScoreRequest,
    problem,
)

logger = logging.getLogger(__name__)


# One body at the cap plus as much again of other requests: a burst of small requests keeps
# flowing past one large one, while two large ones per worker are the most memory holds at once.
INFLIGHT_BUDGET_BYTES = 2 * MAX_BODY_BYTES
RETRY_AFTER_SECONDS = 2
# Bodies above this are validated in pieces in a thread (a 1 MiB body takes tens of milliseconds).
OFF_LOOP_BYTES = 1024 * 1024
# Models validated one list item at a time: list field, item model, most items allowed.
PIECEWISE: dict[type[BaseModel], tuple[str, type[BaseModel], int]] = {
    ScoreRequest: ("persons", PersonTrips, MAX_PERSONS)
}
# Young generations still collect the short-lived cycles (every 50,000 allocations); a full
# collection waits for 2,000 young ones instead of 100.
GC_THRESHOLDS = (50_000, 20, 100)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def calm_garbage_collector() -> None:
    """Call once per worker after start-up: what exists now (libraries, the model) is never
    scanned again, and full collections become rare (see GC_THRESHOLDS)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def declared_length(scope: Scope) -> int | None:
    """The request's Content-Length, or None when it has none or an unusable one."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return max(int(value), 0)
            except ValueError:
                return None
    return None


class InflightLimit:
    """ASGI middleware: refuse (503) a body that would take the worker's bodies in flight over budget."""

    def __init__(self, app: ASGIApp, *, budget_bytes: int = INFLIGHT_BUDGET_BYTES) -> None:
        self.app = app
        self.budget_bytes = budget_bytes
        self.in_flight = 0  # one event loop per worker: no lock needed between awaits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope)
        cost = MAX_BODY_BYTES if declared is None else min(declared, MAX_BODY_BYTES)
        if cost and self.in_flight + cost > self.budget_bytes:
            await self._busy(scope, receive, send)
            return
        self.in_flight += cost
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= cost

    async def _busy(self, scope: Scope, receive: Receive, send: Send) -> None:
        budget = f"{self.budget_bytes / 1024 / 1024:g} MiB"
        body = problem(
            "busy",
            "body",
            f"this worker already holds its {budget} of request bodies in flight; "
            f"retry after {RETRY_AFTER_SECONDS} s, or send smaller requests",
        )
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        await JSONResponse(body, status_code=503, headers=headers)(scope, receive, send)


def validate_in_pieces(model: type[BaseModel], body: bytes) -> BaseModel:
    """`model.model_validate_json(body)`, one list item at a time for the models in PIECEWISE.

    Same result and same errors as one call; the GIL is free between items (module docstring).
    """
    spec = PIECEWISE.get(model)
    if spec is None:
        return model.model_validate_json(body)
    field, item_model, max_items = spec
    try:
        found = _split(body.decode("utf-8"), field)
    except (UnicodeDecodeError, ValueError):  # not JSON: one call says exactly why
        found = None
    if found is None or len(found[1]) > max_items:
        return model.model_validate_json(body)
    head_members, items = found
    errors: list[dict[str, Any]] = []
    head = None
    try:
        head = model.model_validate_json(json.dumps({**head_members, field: []}))
    except ValidationError as exc:
        errors += _line_errors(exc, ())
    parsed = []
    for i, item in enumerate(items):
        try:
            parsed.append(item_model.model_validate_json(item))
        except ValidationError as exc:
            errors += _line_errors(exc, (field, i))
    if errors:
        try:
            raise ValidationError.from_exception_data(
                model.__name__, errors, input_type="json", hide_input=True
            )
        except (KeyError, TypeError):  # an error type pydantic cannot rebuild: one call instead
            return model.model_validate_json(body)
    assert head is not None
    return head.model_copy(update={field: parsed})


def _line_errors(exc: ValidationError, prefix: tuple[Any, ...]) -> list[dict[str, Any]]:
    out = []
    for e in exc.errors(include_url=False):
        line = {"type": e["type"], "loc": (*prefix, *e["loc"]), "input": e.get("input")}
        if "ctx" in e:
            line["ctx"] = e["ctx"]
        out.append(line)
    return out


_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def _split(text: str, field: str) -> tuple[dict[str, Any], list[str]] | None:
    """The members of a top-level JSON object other than `field`, and the JSON text of each
    element of the list under `field`; None for any other shape (or a repeated member)."""

    def ws(i: int) -> int:
        return _WS.match(text, i).end()  # type: ignore[union-attr]

    head: dict[str, Any] = {}
    items: list[str] | None = None
    i = ws(0)
    if text[i : i + 1] != "{":
        return None
    i = ws(i + 1)
    while True:
        if text[i : i + 1] != '"':
            return None
        key, i = _DECODER.raw_decode(text, i)
        if key in head or (key == field and items is not None):
            return None
        i = ws(i)
        if text[i : i + 1] != ":":
            return None
        i = ws(i + 1)
        if key != field:
            head[key], i = _DECODER.raw_decode(text, i)
        elif text[i : i + 1] != "[":
            return None
        else:
            items, i = [], ws(i + 1)
            if text[i : i + 1] == "]":
                i += 1
            else:
                while True:
                    start = i
                    _, i = _DECODER.raw_decode(text, i)
                    items.append(text[start:i])
                    i = ws(i)
                    sep, i = text[i : i + 1], i + 1
                    if sep == "]":
                        break
                    if sep != ",":
                        return None
                    i = ws(i)
        i = ws(i)
        sep, i = text[i : i + 1], i + 1
        if sep == "}":
            break
        if sep != ",":
            return None
        i = ws(i)
    if items is None or text[ws(i) :]:
        return None
    return head, items
