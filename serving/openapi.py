"""The OpenAPI document at /docs.json and the page at /: BentoML's, told the whole truth, offline.

BentoML 1.4 builds the document from the API signatures (`Service.openapi_spec`, i.e.
`_bentoml_sdk.service.openapi.generate_spec`): request and 200 bodies are right, but it declares no
authentication and lists only 400, 404 and 500 with BentoML's generic bodies, while the request
guard (serving/auth.py) answers 401, 413, 422 and 503 with the project's own error body. This
module rewrites that document in one place, and the guard serves the result:

- a bearer `securitySchemes` entry, required on every protected operation (not on health,
  metrics or the docs themselves);
- for each operation exactly the statuses it can answer, each error with the one `ErrorBody`
  schema (serving/schemas.py), and `Retry-After` on 503;
- BentoML's info block (with badge images from outside hosts) replaced by our own.

The page BentoML serves at / loads Google Tag Manager from outside; ours loads only Swagger UI's
files that ship inside BentoML (`/static_content/`), with the outside validator switched off, so a
closed network never calls out.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any

from commuter_badge.features.schema import MAX_ID_LENGTH
from commuter_badge.serving.schemas import ErrorBody
from commuter_badge.stores.reviews import IDEMPOTENCY_PARAMETER, ReviewRequest

SECURITY_SCHEME = "bearerAuth"
ERROR_SCHEMA = "ErrorBody"
OPEN_DOC_PATHS = ("/", "/docs.json")

_REASONS = {
    400: "The body is not JSON (also empty or invalid UTF-8); `field` is `body`",
    401: "Missing, malformed or unknown bearer token",
    403: "A valid token of the other role (issuer tokens for /score and /badge, reviewer "
    "tokens for /reviews)",
    404: "Unknown path",
    405: "Method not allowed on this path",
    413: "Over a limit: body size, persons, trips per person or ids; `field` names it",
    422: "Malformed input; `field` names the first offending field, `errors` lists them",
    500: "A bug; the message carries no detail, the server log has the traceback",
    503: "Not ready (no champion model, no decision store) or busy; retry after `Retry-After` s",
}
# What each protected API operation can answer besides 200.
API_ERRORS = (400, 401, 403, 413, 422, 500, 503)
REVIEW_PATH = "/reviews"  # answered by serving/review_routes.py, not by a BentoML API
_BENTOML_ERRORS = ("InvalidArgument", "NotFound", "InternalServerError", "TaskStatusResponse")


def error_schemas() -> dict[str, Any]:
    """`ErrorBody` and what it refers to, as OpenAPI 3.0 components (no null defaults)."""
    schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    for prop in schema["properties"].values():
        if prop.get("default", 0) is None:
            del prop["default"]
    return {ERROR_SCHEMA: schema, **defs}


def error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _REASONS[status],
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}}
        },
    }
    if status == 503:
        response["headers"] = {
            "Retry-After": {
                "description": "seconds to wait before asking again",
                "required": True,
                "schema": {"type": "integer"},
            }
        }
    return response


def _text(description: str, media: str = "text/plain") -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": {"type": "string"}}}}


# The open operations, described by hand: BentoML's text is about Kubernetes, and says no body.
_OPEN_RESPONSES: dict[str, dict[str, Any]] = {
    "/healthz": {"200": _text("The process is alive (deprecated alias of /livez)")},
    "/livez": {"200": _text("The process is alive")},
    "/readyz": {
        "200": {
            "description": "Model and decision store loaded: ready for traffic; the body names "
            "the working-day calendar in use",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "status": {"type": "string", "enum": ["ready"]},
                            "calendar": {"type": "object"},
                        },
                    }
                }
            },
        },
        "503": {
            **error_response(503),
            "description": "Not ready; `message` says what is missing (model, decision store)",
        },
    },
    "/metrics": {"200": _text("Prometheus text exposition", "text/plain; version=0.0.4")},
}


def package_version() -> str:
    try:
        return metadata.version("commuter-badge")
    except metadata.PackageNotFoundError:
        return "dev"


def document(spec: Mapping[str, Any], protected: Iterable[str]) -> dict[str, Any]:
    """BentoML's generated `spec` with auth, every status and the one error schema declared."""
    doc = copy.deepcopy(dict(spec))
    protected = set(protected)
    doc["info"] = {
        "title": "commuter-badge",
        "version": package_version(),
        "description": (
            "Who is a regular cross-city commuter into Beijing. `POST /score` scores persons "
            "from their recent crossings; `POST /badge` looks up the latest batch decisions. "
            "Both need `Authorization: Bearer <token>`. Every error has the `ErrorBody` shape."
        ),
    }
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in _BENTOML_ERRORS:
        schemas.pop(name, None)
    schemas.update(error_schemas())
    components["securitySchemes"] = {
        SECURITY_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "description": "one of the tokens in COMMUTER_API_TOKENS",
        }
    }
    if REVIEW_PATH in protected:
        schemas.update(_as_openapi30(_components(ReviewRequest)))
        doc.setdefault("paths", {}).update(_review_paths())
    for path, operations in doc.get("paths", {}).items():
        if path.startswith(REVIEW_PATH):
            continue  # described whole by _review_paths
        for operation in operations.values():
            if path in protected:
                operation["security"] = [{SECURITY_SCHEME: []}]
                responses = operation.get("responses", {})
                # BentoML keys responses by int; JSON turns them into strings anyway.
                ok = _by_reference(responses.get(200) or responses.get("200"), schemas)
                operation["responses"] = {
                    "200": ok or {"description": "Successful Response"},
                    **{str(s): error_response(s) for s in API_ERRORS},
                }
                _request_by_reference(operation, schemas)
            elif path in _OPEN_RESPONSES:
                operation["security"] = []
                operation["responses"] = copy.deepcopy(_OPEN_RESPONSES[path])
    return _named_as_ours(doc)


def _components(model: type) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    return {model.__name__: schema, **schema.pop("$defs", {})}


def _as_openapi30(schema: Any) -> Any:
    """JSON Schema's `anyOf [X, {type: null}]` as OpenAPI 3.0's `X` with `nullable: true`."""
    if isinstance(schema, list):
        return [_as_openapi30(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _as_openapi30(v) for k, v in schema.items()}
    options = out.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        del out["anyOf"]
        out.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
        out["nullable"] = True
        if out.get("default", 0) is None:
            del out["default"]
    return out


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _review_paths() -> dict[str, Any]:
    """POST /reviews and GET /reviews/{person_id}, which BentoML does not know about."""
    security = [{SECURITY_SCHEME: []}]
    recorded = {
        "type": "object",
        "required": ["case_id", "recorded_at"],
        "properties": {"case_id": {"type": "string"}, "recorded_at": {"type": "string"}},
    }
    history = {
        "type": "object",
        "required": ["person_id", "reviews"],
        "properties": {
            "person_id": {"type": "string"},
            "reviews": {"type": "array", "items": {"type": "object"}},
        },
    }
    return {
        REVIEW_PATH: {
            "post": {
                "operationId": "commuter_badge__reviews",
                "x-bentoml-name": "reviews",
                "description": "Record a manual decision (reviewer tokens only).",
                "security": security,
                "parameters": [IDEMPOTENCY_PARAMETER],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/ReviewRequest"}
                        }
                    },
                },
                "responses": {
                    "201": _json("Recorded: the case id and when", recorded),
                    **{str(s): error_response(s) for s in API_ERRORS},
                },
            }
        },
        REVIEW_PATH + "/{person_id}": {
            "get": {
                "operationId": "commuter_badge__review_history",
                "description": "A person's reviews, oldest first (reviewer tokens only).",
                "security": security,
                "parameters": [
                    {
                        "name": "person_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH},
                    }
                ],
                "responses": {
                    "200": _json("The person's reviews, oldest first", history),
                    **{str(s): error_response(s) for s in (401, 403, 422, 500, 503)},
                },
            }
        },
    }


def _request_by_reference(operation: dict[str, Any], schemas: dict[str, Any]) -> None:
    """The inline request body of API `x` refers to its component `x__Input` instead, and is
    required (BentoML leaves that out; an empty body is answered 400 or 422)."""
    component = f"{operation.get('x-bentoml-name')}__Input"
    if "requestBody" in operation:
        operation["requestBody"]["required"] = True
    for media in operation.get("requestBody", {}).get("content", {}).values():
        if component in schemas:
            media["schema"] = {"$ref": f"#/components/schemas/{component}"}


def _named_as_ours(doc: dict[str, Any]) -> dict[str, Any]:
    """BentoML's component names (`score__Input`, `ScoreResponseIODescriptor`) made ours."""
    schemas = doc["components"]["schemas"]
    renames = {}
    for name in list(schemas):
        if name.endswith("__Input"):
            renames[name] = name.removesuffix("__Input").title() + "Request"
        elif name.endswith("IODescriptor"):
            renames[name] = name.removesuffix("IODescriptor")
    text = json.dumps(doc)
    for old, new in renames.items():
        text = text.replace(f'"#/components/schemas/{old}"', f'"#/components/schemas/{new}"')
    doc = json.loads(text)
    schemas = doc["components"]["schemas"]
    for old, new in renames.items():
        schemas[new] = {**schemas.pop(old), "title": new}
    return doc


def _by_reference(response: dict[str, Any] | None, schemas: dict[str, Any]) -> dict | None:
    """A 200 whose inline schema is also a component (same title) refers to it instead.

    BentoML writes the response model inline and again under components; a generated client
    then has one class per place. One reference gives it one class, named after our model.
    """
    if not response:
        return response
    for media in response.get("content", {}).values():
        title = media.get("schema", {}).get("title")
        if title in schemas and "$ref" not in media["schema"]:
            media["schema"] = {"$ref": f"#/components/schemas/{title}"}
    return response


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
