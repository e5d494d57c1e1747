"""Batch scoring: features for a trips path, calibrated probability, badge, written and published."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa

from commuter_badge.atomic import write_frame
from commuter_badge.errors import UserError
from commuter_badge.features.build import build_features, trips_by_person
from commuter_badge.features.messages import Lang, say
from commuter_badge.features.workdays import LIBRARY_CALENDAR, WorkingCalendar
from commuter_badge.models.core import recourse
from commuter_badge.models.core.bundle import CommuterModel

# The score table (contract §2), declared once: batch, Spark and the decision store derive from it.
SCORE_SCHEMA = pa.schema(
    [
        ("person_id", pa.string()),
        ("commuter_probability", pa.float64()),
        ("badge", pa.bool_()),
        ("threshold", pa.float64()),
        ("model_version", pa.string()),
    ]
)
SCORE_COLUMNS = tuple(SCORE_SCHEMA.names)
# What a score file holds beside them, always: days from the person's first crossing in the window
# to as_of, so how new a person is can be read from outputs (issue 31). The decision store keeps
# only SCORE_COLUMNS.
OUTPUT_SCHEMA = SCORE_SCHEMA.append(pa.field("days_since_first", pa.int64()))
# Columns on request (`commuter score --include`): the person's side (models/core/recourse.py).
PERSON_SIDE_SCHEMA = pa.schema([("badge_expected_on", pa.date32()), ("recourse", pa.string())])
INCLUDE_CHOICES = tuple(PERSON_SIDE_SCHEMA.names)
_SPARK_TYPES = {
    pa.string(): "string",
    pa.float64(): "double",
    pa.bool_(): "boolean",
    pa.int64(): "bigint",
}
SCORE_DDL = ", ".join(f"{f.name} {_SPARK_TYPES[f.type]}" for f in OUTPUT_SCHEMA)


def score_frame(features: pd.DataFrame, model: CommuterModel) -> pd.DataFrame:
    """The score table's columns (OUTPUT_SCHEMA) for every row of a feature table."""
    proba = model.predict_proba(features)
    return pd.DataFrame(
        {
            "person_id": features["person_id"].astype("str").to_numpy(),
            "commuter_probability": proba,
            "badge": model.decide(proba),
            "threshold": model.threshold,
            "model_version": str(model.version),
            "days_since_first": features["days_since_first"].astype("Int64").to_numpy(),
        }
    )


def check_include(include: Sequence[str], lang: Lang = "en") -> tuple[str, ...]:
    """The opt-in columns asked for, each one of INCLUDE_CHOICES (a UserError in `lang` if not)."""
    for name in include:
        if name not in INCLUDE_CHOICES:
            raise UserError(
                say("unknown_include", lang, value=name, choices=", ".join(INCLUDE_CHOICES))
            )
    return tuple(dict.fromkeys(include))


def score_path(
    trips: str | Path,
    as_of: dt.date,
    model: CommuterModel,
    memory: str | None = None,
    *,
    include: Sequence[str] = (),
    lang: Lang = "en",
    calendar: WorkingCalendar = LIBRARY_CALENDAR,
) -> pd.DataFrame:
    """Score everyone seen at `trips` as of `as_of` (features under the DuckDB `memory` setting
    and the working-day `calendar`); with `include`, the person's side too."""
    window = model.meta.window_days
    features = build_features(trips, as_of, window, memory=memory, calendar=calendar)
    scored = score_frame(features, model)
    if include:
        rows = trips_by_person(trips, as_of, window, calendar)
        wanted = check_include(include, lang)
        scored = add_person_side(scored, rows, as_of, model, wanted, lang, calendar)
    return scored


def add_person_side(
    scored: pd.DataFrame,
    rows: dict[str, list[tuple]],
    as_of: dt.date,
    model: CommuterModel,
    include: tuple[str, ...],
    lang: Lang,
    calendar: WorkingCalendar = LIBRARY_CALENDAR,
) -> pd.DataFrame:
    """`badge_expected_on` (persons without a badge; null for holders and when no date within
    the window would do) and `recourse` (in `lang`: the smallest change that flips the decision)."""
    out = scored.copy()
    ids = out["person_id"].tolist()
    if "badge_expected_on" in include:
        denied = {p: rows.get(p, []) for p, b in zip(ids, out["badge"], strict=True) if not b}
        dates = recourse.expected_badge_dates(model, denied, as_of, calendar=calendar)
        out["badge_expected_on"] = pd.array([dates.get(p) for p in ids], dtype="object")
    if "recourse" in include:
        persons = {p: rows.get(p, []) for p in ids}
        changes = recourse.recourse(model, persons, as_of, calendar=calendar)
        none = say("recourse_none", lang, window_days=model.meta.window_days)
        out["recourse"] = [c.text(lang) if c is not None else none for c in map(changes.get, ids)]
    return out


def write_scores(scored: pd.DataFrame, out: str | Path) -> Path:
    """Write a score table atomically as CSV or Parquet (by extension)."""
    return write_frame(scored, out)
