"""The OpenAPI document tells the whole truth (issue 19), and a client generated from it works.

The document is read from a real `commuter serve` (/docs.json). Given it, an issuer must learn
that /score and /badge need a bearer token, which statuses each can answer, and the one error
body; and a client generated from it alone (datamodel-code-generator for the types, the paths and
statuses from the document for the calls) must get typed results and typed errors.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import httpx
import jsonschema
import pytest

from .conftest import BIN, TOKENS, World

pytestmark = pytest.mark.service

PROTECTED = ("/score", "/badge")
OPEN = ("/healthz", "/livez", "/readyz", "/metrics")
API_STATUSES = {"200", "400", "401", "403", "413", "422", "500", "503"}


@pytest.fixture(scope="module")
def doc(server) -> dict:
    r = httpx.get(server.url + "/docs.json", timeout=30)
    assert r.status_code == 200, r.text[:300]
    return r.json()


def ref_name(schema: dict) -> str:
    return schema["$ref"].rsplit("/", 1)[-1]


def test_bearer_scheme_is_declared_on_every_protected_operation_and_no_open_one(doc):
    schemes = doc["components"]["securitySchemes"]
    assert len(schemes) == 1, f"one security scheme expected: {schemes}"
    ((name, scheme),) = schemes.items()
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer"), scheme
    for path in PROTECTED:
        assert doc["paths"][path]["post"]["security"] == [{name: []}], f"{path} needs the token"
    for path, method in (
        ("/reviews", "post"),
        ("/reviews/{person_id}", "get"),
        ("/reviews/person", "post"),
    ):
        assert doc["paths"][path][method]["security"] == [{name: []}], f"{path} needs the token"
    for path in OPEN:  # /livez, /healthz, /metrics are BentoML's, outside the API's document
        assert "security" not in doc["paths"].get(path, {}).get("get", {}), f"{path} stays open"
    assert not doc.get("security"), "no global requirement: health and metrics stay open"


def test_every_operation_has_a_written_summary_in_english_and_chinese(doc):
    """Not FastAPI's default (the function's name title-cased, e.g. "Record Review"): a reader of
    the API page sees what the operation is for, in both languages the service answers in."""
    operations = [
        (path, method, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in ("get", "post")
    ]
    assert len(operations) >= 6, operations
    for path, method, op in operations:
        summary = op.get("summary", "")
        default = op.get("operationId", "").replace("_", " ").title()
        assert summary, f"{method} {path} has no summary"
        assert summary != default, f"{method} {path}: FastAPI's default summary {summary!r}"
        english, _, chinese = summary.partition(" / ")
        assert english, f"{path}: English half missing in {summary!r}"
        assert english.isascii(), f"{path}: English half missing in {summary!r}"
        assert any("\u4e00" <= ch <= "\u9fff" for ch in chinese), f"{path}: no Chinese half"


def test_every_status_of_the_api_is_documented_with_the_one_error_schema(doc):
    for path in PROTECTED:
        responses = doc["paths"][path]["post"]["responses"]
        assert set(responses) == API_STATUSES, f"{path}: {sorted(responses)}"
        for status, response in responses.items():
            schema = response["content"]["application/json"]["schema"]
            if status != "200":
                assert ref_name(schema) == "ErrorBody", f"{path} {status}: {schema}"
        assert responses["503"]["headers"]["Retry-After"]["required"] is True
    readyz = doc["paths"]["/readyz"]["get"]["responses"]
    assert ref_name(readyz["503"]["content"]["application/json"]["schema"]) == "ErrorBody"
    error = doc["components"]["schemas"]["ErrorBody"]
    assert set(error["required"]) == {"error", "message"}, error
    assert {"field", "errors", "n_errors"} <= set(error["properties"]), error
    names = set(doc["components"]["schemas"])
    assert not names & {"InvalidArgument", "NotFound", "InternalServerError"}, names


def error_validator(doc: dict) -> jsonschema.Draft4Validator:
    schema = {"$ref": "#/components/schemas/ErrorBody", "components": doc["components"]}
    return jsonschema.Draft4Validator(schema)


def test_the_real_error_bodies_match_the_documented_schema(server, doc):
    """Each error docs/guide/issuer.md lists, provoked for real, validates against the document."""
    good = {"Authorization": f"Bearer {TOKENS[0]}"}
    answers = {
        401: httpx.post(server.url + "/badge", json={"person_ids": ["x"]}, timeout=30),
        400: httpx.post(server.url + "/badge", content=b"{", headers=good, timeout=30),
        413: httpx.post(
            server.url + "/badge", json={"person_ids": ["p"] * 10_001}, headers=good, timeout=30
        ),
        422: httpx.post(server.url + "/score", json={"as_of": "x"}, headers=good, timeout=30),
        404: httpx.get(server.url + "/no-such-path", headers=good, timeout=30),
        405: httpx.get(server.url + "/score", headers=good, timeout=30),
    }
    validator = error_validator(doc)
    for status, r in answers.items():
        assert r.status_code == status, f"expected {status}: {r.status_code} {r.text[:200]}"
        assert r.headers["content-type"].startswith("application/json"), r.headers
        errors = list(validator.iter_errors(r.json()))
        assert not errors, f"{status} body {r.text[:200]} breaks ErrorBody: {errors[0].message}"
    assert answers[422].json()["n_errors"] >= 1, answers[422].text
    assert answers[405].headers["allow"] == "POST", "405 keeps its Allow header"


def test_readyz_503_names_what_is_missing_in_json(empty_server, doc):
    r = httpx.get(empty_server.url + "/readyz", timeout=30)
    assert r.status_code == 503
    assert r.headers["content-type"].startswith("application/json"), r.text[:200]
    assert r.headers["retry-after"], "503 says when to ask again"
    body = r.json()
    assert not list(error_validator(doc).iter_errors(body)), body
    assert "model" in body["message"], body
    assert "decision store" in body["message"], body
    assert len(body["missing"]) == 2, body


def test_the_page_loads_nothing_from_outside(server):
    page = httpx.get(server.url + "/", timeout=30)
    assert page.status_code == 200
    assert "googletagmanager" not in page.text
    assert "http://" not in page.text, "only relative resources"
    assert "https://" not in page.text, "only relative resources"
    assert "validatorUrl: null" in page.text, "Swagger UI's outside validator is off"
    for resource in ("static_content/swagger-ui-bundle.js", "static_content/swagger-ui.css"):
        assert resource in page.text
        assert httpx.get(f"{server.url}/{resource}", timeout=30).status_code == 200, resource
    document = httpx.get(server.url + "/docs.json", timeout=30).text
    assert "https://" not in document, "no outside images or links in the document either"


# --- a client generated from the document -------------------------------------------------------


class ApiError(Exception):
    """A typed error: the status and the body as the generated `ErrorBody`."""

    def __init__(self, status: int, body) -> None:
        super().__init__(f"{status}: {body}")
        self.status, self.body = status, body


class GeneratedClient:
    """Calls built from the document alone: each operation's path, and a model per status."""

    def __init__(self, doc: dict, models, base_url: str, token: str | None) -> None:
        self.models, self.base_url = models, base_url
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.operations = {}
        for path, ops in doc["paths"].items():
            for method, op in ops.items():
                if "requestBody" not in op:  # health and metrics: nothing to generate
                    continue
                by_status = {
                    int(status): ref_name(r["content"]["application/json"]["schema"])
                    for status, r in op["responses"].items()
                    if "$ref" in r.get("content", {}).get("application/json", {}).get("schema", {})
                }
                request = ref_name(op["requestBody"]["content"]["application/json"]["schema"])
                self.operations[op["operationId"]] = (method, path, request, by_status)

    def __getattr__(self, name: str):
        method, path, request, by_status = self.operations[name]
        request_model = getattr(self.models, request)

        def call(body):
            payload = request_model.model_validate(body).model_dump(mode="json")
            r = httpx.request(
                method, self.base_url + path, json=payload, headers=self.headers, timeout=60
            )
            model = getattr(self.models, by_status[r.status_code])  # KeyError: undocumented
            parsed = model.model_validate(r.json())
            if r.status_code >= 400:
                raise ApiError(r.status_code, parsed)
            return parsed

        return call


@pytest.fixture(scope="module")
def models(doc, tmp_path_factory):
    out = tmp_path_factory.mktemp("client")
    spec = out / "docs.json"
    spec.write_text(json.dumps(doc))
    target = out / "issuer_models.py"
    done = subprocess.run(
        [
            str(BIN / "datamodel-codegen"),
            "--input",
            str(spec),
            "--input-file-type",
            "openapi",
            "--output",
            str(target),
            "--output-model-type",
            "pydantic_v2.BaseModel",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    module_spec = importlib.util.spec_from_file_location("issuer_models", target)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules["issuer_models"] = module
    module_spec.loader.exec_module(module)
    return module


def test_generated_client_gets_typed_results(doc, models, server, world: World):
    client = GeneratedClient(doc, models, server.url, TOKENS[0])
    person = str(world.batch["person_id"].iloc[0])
    scored = client.score(
        {"as_of": "2021-10-20", "persons": [{"person_id": person, "trips": world.trips_of(person)}]}
    )
    assert isinstance(scored, models.ScoreResponse), type(scored)
    (result,) = scored.results
    assert isinstance(result, models.PersonScore)
    assert 0.0 <= result.commuter_probability <= 1.0
    assert all(isinstance(reason, models.Reason) for reason in result.reasons)
    # Asked for the person's side, the same client reads it as its own generated type.
    sided = client.score(
        {
            "as_of": "2021-10-20",
            "persons": [{"person_id": person, "trips": world.trips_of(person)}],
            "include": ["badge_expected_on", "recourse"],
        }
    )
    (with_side,) = sided.results
    assert isinstance(with_side, models.PersonScoreWithSide), type(with_side)
    assert with_side.commuter_probability == result.commuter_probability
    assert isinstance(with_side.recourse, list), with_side
    looked_up = client.badge({"person_ids": [person, "never-seen"]})
    assert isinstance(looked_up, models.BadgeResponse), type(looked_up)
    found, missing = (r.root if hasattr(r, "root") else r for r in looked_up.results)
    assert isinstance(found, models.BadgeFound), found
    assert found.found is True, found
    assert isinstance(missing, models.BadgeMissing), missing
    assert missing.found is False, missing


def test_generated_client_gets_typed_errors(doc, models, server):
    anonymous = GeneratedClient(doc, models, server.url, token=None)
    with pytest.raises(ApiError) as refused:
        anonymous.badge({"person_ids": ["p1"]})
    assert refused.value.status == 401
    assert isinstance(refused.value.body, models.ErrorBody), type(refused.value.body)
    assert refused.value.body.error == "unauthorized"

    client = GeneratedClient(doc, models, server.url, TOKENS[0])
    duplicate = {"person_id": "p1", "trips": []}
    with pytest.raises(ApiError) as invalid:
        client.score({"as_of": "2021-10-20", "persons": [duplicate, duplicate]})
    assert invalid.value.status == 422
    assert invalid.value.body.field == "persons[1].person_id", invalid.value.body


def test_generated_types_refuse_what_the_service_refuses(models):
    """The limits travel with the document: the generated types check them client-side."""
    with pytest.raises(ValueError, match="direction"):
        models.ScoreRequest.model_validate(
            {
                "as_of": "2021-10-20",
                "persons": [
                    {
                        "person_id": "p1",
                        "trips": [
                            {
                                "ts": "2021-10-18T07:04:51+08:00",
                                "direction": "sideways",
                                "mode": "car",
                                "site_id": "S",
                            }
                        ],
                    }
                ],
            }
        )
    assert Path(models.__file__).exists()
