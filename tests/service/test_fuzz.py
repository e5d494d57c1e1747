"""Schemathesis against the service's own OpenAPI schema: valid and invalid bodies, never a 5xx,
and every answer as the document says (issue 19): its status is documented for the operation, its
content type and body match the documented ones, and documented headers (Retry-After) are there.
An undocumented status or body fails the test.

Operations are driven with `APIOperation.as_strategy` under plain Hypothesis: schemathesis's
lazy pytest loader (`schemathesis.pytest.from_fixture`) does not work with pytest 9 (it reads
`request.node._nodeid`), and the schema only exists once the server fixture is up.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import TOKENS

pytestmark = pytest.mark.service

# The review routes answer 403 to the issuer token used here: their conformance, not their logic,
# is fuzzed.
API = [
    ("POST", "/score"),
    ("POST", "/badge"),
    ("POST", "/reviews"),
    ("POST", "/reviews/person"),
    ("GET", "/reviews/{person_id}"),
]
# /livez, /healthz and /metrics are BentoML's own routes, not the API's (FastAPI's), so the document
# generated from the API's routes does not list them; /readyz is the API's (serving/service.py).
PROBES = [("GET", "/readyz")]
MODES = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture(scope="session")
def openapi_schema(server):
    return schemathesis.openapi.from_url(server.url + "/docs.json")


def test_schema_lists_exactly_the_operations_fuzzed_here(openapi_schema):
    found = {(r.ok().method.upper(), r.ok().path) for r in openapi_schema.get_all_operations()}
    assert found == set(API + PROBES), "a new operation must be added to the fuzz list"


CASES = [(m, p, mode) for m, p in API for mode in MODES] + [(m, p, MODES[0]) for m, p in PROBES]


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=lambda x: str(x))
def test_no_server_errors(openapi_schema, server, method, path, mode):
    operation = openapi_schema[path][method]
    headers = {"Authorization": f"Bearer {TOKENS[0]}"}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case):
        response = case.call(base_url=server.url, headers=headers, timeout=60)
        # Raises on the first check that fails, naming it and the response.
        checks = CONFORMANCE + ([ignored_auth] if (method, path) in API else [])
        case.validate_response(response, checks=checks, headers=headers)
        assert response.status_code < 500, (
            f"{method} {path} ({mode}) -> {response.status_code}: {response.text[:500]}\n"
            f"body: {str(case.body)[:500]}"
        )
        if response.status_code >= 400 and (method, path) in API:
            content_type = response.headers.get("content-type") or response.headers.get(
                "Content-Type"
            )
            content_type = content_type[0] if isinstance(content_type, list) else content_type
            assert content_type.startswith("application/json"), response.text[:200]
            if response.status_code in (400, 413, 422):  # input errors name the field
                assert "field" in response.json(), response.text[:300]

    check()
