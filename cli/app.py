"""The `commuter` application and what every command shares: options, dates, errors, progress.

Commands live in their own modules (`data`, `modelling`, `serve`, ...), registered on `app` by
`cli/main.py`. Heavy imports happen inside commands, so `--help` is fast.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperCommand

from commuter_badge.errors import CommuterError, UserError
from commuter_badge.settings import (
    MAX_WINDOW_DAYS,
    MIN_WINDOW_DAYS,
    load_settings,
)

if TYPE_CHECKING:
    from commuter_badge.features.context import RunContext

app = typer.Typer(
    help="Who is a regular cross-city commuter into Beijing, with a certified false-positive rate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True)
out = Console(soft_wrap=True, highlight=False)

AsOf = Annotated[
    str, typer.Option("--as-of", help="Scoring date YYYY-MM-DD; features use the days before it.")
]
Trips = Annotated[
    Path, typer.Option("--trips", help="Trip file (.csv/.parquet) or a directory of them.")
]
Labels = Annotated[
    Path, typer.Option("--labels", help="Labels file: person_id, is_commuter (CSV or Parquet).")
]
Window = Annotated[
    int,
    typer.Option(
        "--window-days",
        help="Days of history before --as-of.",
        min=MIN_WINDOW_DAYS,
        max=MAX_WINDOW_DAYS,
    ),
]
ModelUri = Annotated[str, typer.Option("--model", help="MLflow model URI.", show_default=True)]
# Every command takes it (contract §1): add `calendar: CalendarFile = None` to the command and call
# `run_context(calendar)` and pass `context.calendar` down before anything reads working days.
CalendarFile = Annotated[
    Path | None,
    typer.Option(
        "--calendar",
        help="Holiday schedule CSV (date,kind,name) for years chinesecalendar lacks; "
        "default: COMMUTER_CALENDAR.",
        dir_okay=False,
        show_default=False,
    ),
]

# Commands that print words a person reads take it (contract §2): `lang: Lang = None`, then
# `person_lang(lang, settings)`.
Lang = Annotated[
    str | None,
    typer.Option(
        "--lang",
        help="Language of person-facing text: zh (简体中文) or en; default: COMMUTER_LANG, else en.",
        show_default=False,
    ),
]


def person_lang(lang: str | None, settings: Any) -> str:
    """--lang, else COMMUTER_LANG, checked to be zh or en (a UserError saying which there are)."""
    from commuter_badge.features.messages import check_lang

    if lang is None:
        try:
            return check_lang(settings.lang)
        except UserError as exc:
            raise UserError(f"COMMUTER_LANG: {exc}") from None
    return check_lang(lang)


def checked_calendar(path: Path | None) -> str | None:
    """`--calendar FILE` (else COMMUTER_CALENDAR, else none), opened once to check it.

    Validates the file (a CalendarFileError names the line) and returns the path used, or None,
    for `commuter serve`, whose workers each open it at their start.
    """
    from commuter_badge.features.workdays import open_calendar

    chosen = str(path) if path is not None else load_settings().calendar
    open_calendar(chosen)
    return chosen


def run_context(path: Path | None) -> RunContext:
    """The settings, read once, and the calendar (`--calendar FILE`, else COMMUTER_CALENDAR, else
    none) a command passes to its job: the one place a command opens them."""
    from commuter_badge.features.context import RunContext
    from commuter_badge.features.workdays import open_calendar

    settings = load_settings()
    chosen = str(path) if path is not None else settings.calendar
    return RunContext(settings, open_calendar(chosen))


# Dates the day arithmetic handles (epoch day numbers, windows of up to 62 days); the calendar
# then says which of these years it has working-day data for.
FIRST_DATE = dt.date(1970, 3, 1)
LAST_DATE = dt.date(9998, 12, 31)


def parse_date(text: str, option: str = "--as-of") -> dt.date:
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise UserError(f"{option} {text!r} is not a date (expected YYYY-MM-DD)") from None
    if not FIRST_DATE <= day <= LAST_DATE:
        raise UserError(
            f"{option} {text} is outside the supported range {FIRST_DATE} to {LAST_DATE}"
        )
    return day


def clean_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn any failure into one clear line on stderr and a non-zero exit (traceback with COMMUTER_DEBUG=1)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None
        except Exception as exc:  # noqa: BLE001 - the whole point is one line instead of a traceback
            if load_settings().debug:
                raise
            known = isinstance(exc, CommuterError)
            prefix = "error" if known else f"error ({exc.__class__.__name__})"
            message = " ".join(str(exc).split()) or exc.__class__.__name__
            print(f"{prefix}: {message}", file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper


# MLflow's own, documented switches: no tqdm bar per artifact download, no INFO lines (e.g.
# "Validating input example against model signature"). Defaults only: an operator who sets them
# gets MLflow's chatter back.
QUIET_LIBRARY_ENV = {
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
}


def quiet_libraries() -> None:
    """Before every command: stderr carries our own lines (errors, warnings, progress on a
    terminal), not the libraries' bars and INFO logs. Imports nothing heavy."""
    for name, value in QUIET_LIBRARY_ENV.items():
        os.environ.setdefault(name, value)
    if "mlflow" in sys.modules:  # imported already (in-process use): MLflow read the level then
        logging.getLogger("mlflow").setLevel(os.environ["MLFLOW_LOGGING_LEVEL"].upper())


def status(text: str):
    """A spinner on a terminal, nothing when piped."""
    return err.status(text) if err.is_terminal else _NullStatus()


class _NullStatus:
    def __enter__(self) -> _NullStatus:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def update_status(status: Any, text: str) -> None:
    if hasattr(status, "update"):
        status.update(text)


class MonthCommand(TyperCommand):
    """A command whose `--month` takes three values (TRIPS LABELS AS_OF) and repeats: click can,
    this typer cannot declare it, so the option's arity is set on the click object."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if param.name == "month":
                param.nargs = 3


MonthOption = Annotated[
    list[str] | None,
    typer.Option(
        "--month",
        metavar="TRIPS LABELS AS_OF",
        help="A labelled month: its trips, its labels (an audit's weighted labels for the newest "
        "month) and its as_of; repeat for several months, the newest certifying the threshold "
        "(instead of --trips/--labels/--as-of).",
        show_default=False,
    ),
]


def parse_months(values: list[str] | None, trips, labels, as_of: str) -> list:
    """`--month` values (or the single --trips/--labels/--as-of month) as models' Months."""
    import ast

    single = [trips is not None, bool(labels), bool(as_of)]
    if values and any(single):
        raise UserError("give either --month (repeatable) or --trips/--labels/--as-of, not both")
    if not values:
        if not all(single):
            raise UserError("give --trips, --labels and --as-of, or one --month per month")
        parsed = [(Path(trips), tuple(Path(p) for p in labels), parse_date(as_of))]
    else:
        parsed = []
        for value in values:  # typer hands each three-value tuple over as its text
            m_trips, m_labels, m_day = ast.literal_eval(value) if value.startswith("(") else value
            parsed.append((Path(m_trips), (Path(m_labels),), parse_date(m_day, "--month")))
    # Every option is checked before the models (and DuckDB, which they import) load.
    from commuter_badge.models.core.months import Month

    return [Month(*month) for month in parsed]
