"""`commuter compare A B`: two trainings side by side, at full precision and per 10,000 persons."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from commuter_badge.cli.app import (
    CalendarFile,
    app,
    clean_errors,
    err,
    out,
    parse_date,
    run_context,
)
from commuter_badge.errors import UserError


def _table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False)
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i < 2 else "right", overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


@app.command()
@clean_errors
def compare(
    first: Annotated[
        str,
        typer.Argument(
            metavar="RUN_OR_VERSION",
            help="Run id, or model version: 3, v3, models:/commuter-badge/3.",
        ),
    ],
    second: Annotated[
        str, typer.Argument(metavar="RUN_OR_VERSION", help="The other run id or model version.")
    ],
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Also write the comparison (.md or .html).")
    ] = None,
    log: Annotated[
        bool,
        typer.Option("--log/--no-log", help="Log it to MLflow as a run of kind `comparison`."),
    ] = False,
    trips: Annotated[
        Path | None,
        typer.Option(
            "--trips", help="With --labels and --as-of: score both versions on this month."
        ),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option("--labels", help="Labels of that month: person_id, is_commuter."),
    ] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="That month's as_of, YYYY-MM-DD.")
    ] = None,
    calendar: CalendarFile = None,
) -> None:
    """Headline metrics (full precision, rates per 10,000), slice deltas and gates of two runs.

    Each run's figures are on its own persons (a training's validation persons, an evaluation's
    month); a warning says when those differ. With --trips, --labels and --as-of both versions
    are scored on that one labelled month instead, so the differences are the models' alone."""
    from commuter_badge.atomic import atomic_write
    from commuter_badge.models.mlflow_edge import registry
    from commuter_badge.models.reporting import compare as cmp_module

    month = [x is not None for x in (trips, labels, as_of)]
    if any(month) and not all(month):
        raise UserError("comparing on a labelled month needs all of --trips, --labels and --as-of")
    day = parse_date(as_of) if as_of is not None else None
    context = run_context(calendar)
    registry.configure(context.tracking_uri)
    if out_file is not None:
        cmp_module.output_format(out_file)
    if day is not None:
        cmp = cmp_module.compare_on_month(
            first, second, trips, labels, day, calendar=context.calendar
        )
    else:
        cmp = cmp_module.compare(first, second)
    _show(cmp)
    if out_file is not None:
        text = cmp_module.render(cmp, out_file)
        atomic_write(out_file, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        out.print(f"written to {out_file}")
    if log:
        from commuter_badge.models.runs.compare_run import log_comparison

        run_id = log_comparison(cmp, day, labels, context)
        out.print(f"logged as run {run_id} (kind comparison)")


def _show(cmp) -> None:
    """The comparison's tables and notes on stdout, its persons caveat on stderr."""
    from commuter_badge.models.reporting import compare as cmp_module

    # Piped, rich would fold the tables to 80 columns; a file or pager can take the full width.
    show = out if out.is_terminal else Console(width=240, soft_wrap=False, highlight=False)
    for line in cmp_module.sides_text(cmp):
        show.print(line)
    if caveat := cmp_module.persons_caveat(cmp):
        err.print(f"warning: {caveat}", soft_wrap=True)
    show.print(
        _table("headline metrics", cmp_module.headline_columns(cmp), cmp_module.headline_rows(cmp))
    )
    show.print(textwrap.fill(cmp_module.HEADLINE_NOTE, 100), soft_wrap=True)
    show.print(_table("gates", ["gate", cmp.a.label, cmp.b.label], cmp_module.gate_rows(cmp)))
    for line in cmp_module.decision_lines(cmp):
        show.print(line, soft_wrap=True)
    if not cmp.slices.empty:
        show.print(textwrap.fill(cmp_module.NOTE, 100), soft_wrap=True)
        show.print(_table("slices", cmp_module.slice_columns(cmp), cmp_module.slice_rows(cmp)))
