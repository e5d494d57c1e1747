"""Score a month and, when asked, publish it: the rule `commuter score` follows, callable without the CLI.

DuckDB engine: the window's coverage is checked first (a window past the trips is refused before any
scoring when publishing), then the store is replaced and the output file written second, so a refused
publication writes nothing and after a kill the store is never older than the file (`deliver`).
Spark engine: its output directory is written first, then read back and published; a cluster output
is left to the job that copies it next to the service.
"""

from __future__ import annotations

import datetime as dt
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from commuter_badge.features.workdays import LIBRARY_CALENDAR, WorkingCalendar
from commuter_badge.stores.decisions import check_window_coverage, deliver, read_scores

if TYPE_CHECKING:
    import pandas as pd

    from commuter_badge.models.core.bundle import CommuterModel

ENGINES = ("duckdb", "spark")


@dataclass(frozen=True)
class Scored:
    """What one scoring produced: the table (None for a cluster output), where it was published."""

    table: pd.DataFrame | None
    published: Path | str | None  # a file, or a database URL without its secrets
    warnings: tuple[str, ...]


def score_and_publish(
    trips: str | Path,
    as_of: dt.date,
    model: CommuterModel,
    out: str | Path,
    *,
    store: Path | str | None = None,
    engine: str = "duckdb",
    allow_shrink: bool = False,
    allow_older: bool = False,
    status=None,
    memory: str | None = None,
    master: str | None = None,
    include: tuple[str, ...] = (),
    lang: str = "en",
    calendar: WorkingCalendar = LIBRARY_CALENDAR,
) -> Scored:
    """Score everyone in `trips` at `as_of` into `out`; with a `store`, also publish the decisions.

    `store` is a checked location (`check_store_location`); None scores for analysis only and never
    touches the live decisions. `status(text)` (a context manager) names each long step.
    `memory` (DuckDB's cap), `master` (Spark's) and the working-day `calendar` are the caller's,
    passed down.
    `include` asks for the person's side (`models.runs.score.INCLUDE_CHOICES`, DuckDB engine
    only), its sentences in `lang`.
    """
    step = status or (lambda _text: nullcontext())
    if engine == "spark":
        table, warnings = _score_spark(trips, as_of, model, out, step, master, calendar)
    else:
        person_side = {"include": include, "lang": lang, "calendar": calendar}
        table, warnings = _score_duckdb(
            trips, as_of, model, step, store, allow_shrink, memory, person_side
        )
    published = None
    if table is not None:
        with step("publishing" if store is not None else "writing"):
            published = deliver(
                table,
                as_of,
                out=out if engine != "spark" else None,  # Spark's is written already
                store=store,
                allow_shrink=allow_shrink,
                allow_older=allow_older,
            )
    return Scored(table, published, warnings)


def _score_duckdb(trips, as_of, model, step, store, allow_shrink, memory, person_side):
    from commuter_badge.features.coverage import check_coverage
    from commuter_badge.models.runs.score import score_path

    with step("checking coverage"):  # no crossing in the window: error
        coverage = check_coverage(trips, as_of, model.meta.window_days, person_side["calendar"])
    if store is not None:  # a window past the trips is refused before any scoring
        check_window_coverage(coverage, allow_shrink=allow_shrink)
    with step("scoring"):
        return score_path(trips, as_of, model, memory, **person_side), coverage.warnings


def _score_spark(trips, as_of, model, out, step, master, calendar):
    from commuter_badge.models.runs.spark_score import write_spark_scores

    with step("scoring on Spark"):
        write_spark_scores(
            str(trips), as_of, str(out), model=model, master=master, calendar=calendar
        )
    remote = "://" in str(out) and not str(out).startswith("file:")
    return (None if remote else read_scores(out)), ()
