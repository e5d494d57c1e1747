"""What the badge issuer sends and gets back (contract section 3), and how bad input is reported.

The request models are the single definition of valid input: FastAPI builds the OpenAPI schema from
them, and each body is validated against its route's model once, from its bytes (serving/web.py),
so a malformed field gets one JSON answer naming the field instead of a stack trace.
Errors never echo the submitted values (`hide_input_in_errors`): trips must not reach any log.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)
from pydantic.json_schema import SkipJsonSchema

from commuter_badge.features.ids import (  # noqa: F401 (the request types use them)
    NO_CONTROLS,
    PersonId,
    no_controls,
)
from commuter_badge.features.schema import (
    COLUMNS_BY_NAME,
    DIRECTIONS,
    MAX_ID_LENGTH,
    MODES,
    TS_EXAMPLE,
    TS_RULE,
)

MAX_PERSONS = 1_000  # per /score request
MAX_TRIPS = 2_000  # per person
MAX_BADGE_IDS = 10_000  # per /badge request
MAX_BODY_BYTES = 16 * 1024 * 1024  # any request body
REASONS_PER_PERSON = 3

# The trip contract's enumerations and length rule (features/schema.py), as request types.
Direction = Literal[DIRECTIONS]
Mode = Literal[MODES]

AsOf = Annotated[
    dt.date,
    Field(
        strict=True,
        description="scoring date YYYY-MM-DD; features use the 28 days before it (local time)",
        examples=["2021-11-26"],
    ),
]


class _Request(BaseModel):
    model_config = ConfigDict(hide_input_in_errors=True, str_strip_whitespace=False)


class Trip(_Request):
    """One observed crossing of the Beijing boundary."""

    ts: Annotated[
        AwareDatetime,
        Field(
            strict=True,
            description=f"{TS_RULE}, e.g. {TS_EXAMPLE}",
            examples=[TS_EXAMPLE],
        ),
    ]
    direction: Annotated[Direction, Field(description="entering (in) or leaving (out) Beijing")]
    mode: Annotated[Mode, Field(description=COLUMNS_BY_NAME["mode"].expected)]
    site_id: Annotated[
        str,
        StringConstraints(
            strict=True, strip_whitespace=True, min_length=1, max_length=MAX_ID_LENGTH
        ),
        Field(description="station or checkpoint code", examples=["CK-G1-XIJI"]),
    ]
    region: Annotated[
        Annotated[
            str, StringConstraints(strict=True, strip_whitespace=True, max_length=MAX_ID_LENGTH)
        ]
        | None,
        Field(description="outside region the crossing connects to; may be empty or null"),
    ] = ""


class PersonTrips(_Request):
    person_id: PersonId
    trips: Annotated[
        list[Trip],
        Field(max_length=MAX_TRIPS, description=f"the person's crossings, at most {MAX_TRIPS:,}"),
    ]


Persons = Annotated[
    list[PersonTrips],
    Field(
        max_length=MAX_PERSONS, description=f"people to score, at most {MAX_PERSONS:,}, ids unique"
    ),
]
PersonIds = Annotated[
    list[PersonId],
    Field(max_length=MAX_BADGE_IDS, description=f"ids to look up, at most {MAX_BADGE_IDS:,}"),
]


# The person's side (docs/contract.md §3; models/core/recourse.py), asked for per request.
Include = Literal["badge_expected_on", "recourse"]
Includes = Annotated[
    list[Include],
    Field(
        max_length=2,
        description="optional answers per person: badge_expected_on (the first date a person "
        "without a badge would hold it if they keep commuting as observed), recourse (the "
        "smallest change in behaviour that flips the decision); off by default",
    ),
]
RequestLang = Annotated[
    Literal["zh", "en"] | None,
    Field(
        description="language of reasons and the person's side: zh (简体中文) or en; default "
        "from Accept-Language, else COMMUTER_LANG",
    ),
]


class ScoreRequest(_Request):
    as_of: AsOf
    persons: Persons
    include: Includes = []
    lang: RequestLang = None


class PersonViewRequest(PersonTrips):
    """A reviewer's view of one person: their crossings, and the person's side asked for."""

    as_of: AsOf
    include: Includes = ["badge_expected_on", "recourse"]  # both unless fewer are asked for
    lang: RequestLang = None


class BadgeRequest(_Request):
    person_ids: PersonIds


class Reason(BaseModel):
    feature: str
    description: str = Field(description="what the feature measures, in words")
    value: int | float | None = Field(description="the person's value of the feature")
    contribution: float = Field(description="push toward (+) or away from (-) the badge, log-odds")


class PersonScore(BaseModel):
    person_id: str
    commuter_probability: float
    badge: bool
    reasons: list[Reason]


class Change(BaseModel):
    text: str = Field(description="the change, in words, in the language asked")
    kind: Literal["add", "remove"] = Field(
        description="add: round trips in the person's usual pattern on working days without a "
        "crossing; remove: the crossings of working days taken away (for a badge holder)"
    )
    working_days: int = Field(description="how many working days change")
    within_days: int = Field(description="all of them within this many days before as_of")
    commuter_probability: float = Field(description="the probability with the change made")
    badge: bool = Field(description="the decision with the change made")


class PersonScoreWithSide(PersonScore):
    """A person's score with the person's side a request asked for (`include`)."""

    badge_expected_on: dt.date | None = Field(
        None,
        description="first date they would hold the badge if they keep commuting; null "
        "for a holder, or when no date within the window length would do",
    )
    recourse: list[Change] | None = Field(
        None, description="the smallest change that flips the decision; empty when none would"
    )


class ScoreResponse(BaseModel):
    model_version: str
    threshold: float
    target_fpr: float
    results: list[PersonScore | PersonScoreWithSide] = Field(
        description="one per requested person, in request order"
    )


class BadgeFound(BaseModel):
    person_id: str
    found: Literal[True] = True
    badge: bool
    commuter_probability: float
    as_of: dt.date
    model_version: str
    source: Literal["model"] = Field("model", description="the batch decision stands")


class BadgeReviewed(BaseModel):
    """A review in force decided (docs/contract.md §5): it wins over the batch decision, if any."""

    person_id: str
    found: Literal[True] = True
    badge: bool = Field(description="true for a grant, false for a revoke")
    source: Literal["review"] = "review"
    case_id: str = Field(description="the review that decided (GET /reviews/{person_id})")
    valid_until: dt.date = Field(description="last day the review is in force")
    as_of: dt.date = Field(description="the batch decision's as_of, else the review's")
    commuter_probability: float | None = Field(
        description="the batch decision's probability; null when the person has none"
    )
    model_version: str | None = Field(description="the batch decision's model; null without one")


class BadgeMissing(BaseModel):
    person_id: str
    found: Literal[False] = False


class BadgeResponse(BaseModel):
    results: list[BadgeFound | BadgeReviewed | BadgeMissing] = Field(
        description="one per requested id, in request order"
    )


# --- errors -------------------------------------------------------------------------------------


class FieldError(BaseModel):
    field: str = Field(description="a field path with list indices, e.g. persons[0].trips[3].ts")
    message: str


class ErrorBody(BaseModel):
    """The one body of every error the service answers (4xx and 5xx), as docs/contract.md §3 and docs/guide/issuer.md (Errors) say.

    `field` names the offending field of an input error (`body` for the body as a whole); a 422
    also lists up to 20 failing fields in `errors` and counts them all in `n_errors`. Absent keys
    are omitted, never null. Submitted values are never echoed.
    """

    model_config = ConfigDict(extra="allow")

    error: str = Field(description="the kind of problem, e.g. 'invalid request', 'unauthorized'")
    message: str = Field(description="what went wrong and what to do, in one line")
    field: str | SkipJsonSchema[None] = Field(
        None, description="the offending field of an input error, e.g. as_of, persons[2].person_id"
    )
    errors: list[FieldError] | SkipJsonSchema[None] = Field(
        None, description="422 only: the failing fields, at most 20"
    )
    n_errors: int | SkipJsonSchema[None] = Field(
        None, description="422 only: how many fields failed in all"
    )


# A list over one of the request-size limits (MAX_PERSONS, MAX_TRIPS, MAX_BADGE_IDS) is "too
# much" rather than "malformed": answered 413, not 422. Any other list too long (a review's
# evidence codes, at most one of each) is an invalid body, 422 naming the field.
_TOO_LARGE = {"too_long"}
_SIZE_LIMITED = {"persons", "trips", "person_ids"}
_MAX_LISTED = 20


def field_path(loc: tuple[Any, ...]) -> str:
    """('persons', 0, 'trips', 3, 'direction') -> 'persons[0].trips[3].direction'; () -> 'body'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def problem(error: str, field: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": error, "field": field, "message": message, **extra}


def validation_problem(exc: ValidationError) -> tuple[int, dict[str, Any]]:
    """Status and JSON body for a failed validation: 400 not JSON, 413 over a limit, else 422."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    listed = [{"field": field_path(e["loc"]), "message": e["msg"]} for e in errors[:_MAX_LISTED]]
    first, first_type = listed[0], errors[0]["type"]
    if first_type == "json_invalid":
        return 400, problem("invalid JSON", "body", f"the body is not JSON: {first['message']}")
    too_large = [
        e for e in errors if e["type"] in _TOO_LARGE and e["loc"] and e["loc"][-1] in _SIZE_LIMITED
    ]
    if too_large:
        e = too_large[0]
        return 413, problem("request too large", field_path(e["loc"]), e["msg"])
    return 422, problem(
        "invalid request", first["field"], first["message"], errors=listed, n_errors=len(errors)
    )
