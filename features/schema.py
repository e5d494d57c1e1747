"""The trip and label contract (docs/contract.md §1), declared once.

Columns, types, allowed values, the timestamp rule and the error texts live here. The DuckDB reader
(`read.py`), the Spark reader (`spark.py`), the service's request types (`serving/schemas.py`) and
the simulator all derive from these declarations, so a rule changes in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from commuter_badge.errors import CommuterError

DIRECTIONS = ("in", "out")
MODES = ("rail", "car", "bus")
# One length rule for ids everywhere: batch publishes only ids the service can look up.
MAX_ID_LENGTH = 256

# A second read of the same person at the same site in the same direction within this many seconds
# is the scanner reading one crossing twice, not a new crossing (see features/sql.py).
DOUBLE_READ_SECONDS = 120

TS_RULE = "an ISO 8601 instant with a UTC offset"
TS_EXAMPLE = "2021-11-22T07:04:51+08:00"
# A clock time followed by a UTC offset at the end: "...T07:04:51+08:00", "... 07:04:51.5Z".
TS_OFFSET_PATTERN = (
    r"[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.,][0-9]+)?)?(Z|z|[+-][0-9]{2}(:?[0-9]{2})?)$"
)


@dataclass(frozen=True)
class TripColumn:
    """One column of the trip contract and the rule a value must meet after normalisation
    (text trimmed; direction and mode lower-cased)."""

    name: str
    expected: str  # the words an error uses: "... is not <expected>"
    values: tuple[str, ...] = ()  # allowed values, for enumerations
    required: bool = True  # null or empty is an error
    max_length: int | None = None
    text: bool = True  # stored as text (Parquet string); `ts` is the one instant


TRIP_SCHEMA = (
    TripColumn(
        "person_id",
        f"a non-empty id of at most {MAX_ID_LENGTH} characters",
        max_length=MAX_ID_LENGTH,
    ),
    TripColumn("ts", TS_RULE, text=False),
    TripColumn("direction", "one of " + ", ".join(DIRECTIONS), values=DIRECTIONS),
    TripColumn("mode", "one of " + ", ".join(MODES), values=MODES),
    TripColumn(
        "site_id",
        f"a non-empty site code of at most {MAX_ID_LENGTH} characters",
        max_length=MAX_ID_LENGTH,
    ),
    TripColumn("region", "text or empty", required=False, max_length=MAX_ID_LENGTH),
)
TRIP_COLUMNS = tuple(c.name for c in TRIP_SCHEMA)
COLUMNS_BY_NAME = {c.name: c for c in TRIP_SCHEMA}

LABEL_COLUMNS = ("person_id", "is_commuter")
LABEL_VALUES = ("0", "1")


class TripDataError(CommuterError, ValueError):
    """Input data breaks the contract; the message names file, column and the first bad row."""


def missing_columns(label: str, missing: list[str], found: list[str]) -> TripDataError:
    return TripDataError(
        f"{label}: missing required column(s) {', '.join(missing)}; "
        f"expected {', '.join(TRIP_COLUMNS)} (found {', '.join(found) or 'none'})"
    )


def wrong_type(label: str, column: str, found: str) -> TripDataError:
    if column == "ts":
        return TripDataError(
            f"{label}: column 'ts' has type {found}; expected a timestamp with time zone "
            f"(or ISO 8601 text with an offset such as {TS_EXAMPLE})"
        )
    return TripDataError(
        f"{label}: column '{column}' has type {found}; expected text (a string column), "
        f"{COLUMNS_BY_NAME[column].expected}"
    )


def bad_value(where: str, column: str, value: object, n_bad: int, scope: str) -> TripDataError:
    """`where` is e.g. "trips.csv line 4"; `scope` e.g. "this file"."""
    return TripDataError(
        f"{where}: column '{column}' value {value!r} is not {COLUMNS_BY_NAME[column].expected} "
        f"({n_bad} bad row{'s' if n_bad > 1 else ''} in {scope})"
    )
