"""`commuter compare --log`: a comparison (models/reporting/compare.py) as a run of kind `comparison`."""

from __future__ import annotations

import datetime as dt

import mlflow

from commuter_badge.features.context import RunContext
from commuter_badge.models.reporting.compare import Comparison, to_html, to_markdown
from commuter_badge.models.runs.shell import logged_run, open_store


def log_comparison(
    cmp: Comparison,
    as_of: dt.date | None = None,
    scored_on=None,
    context: RunContext | None = None,
) -> str:
    """Log the comparison's Markdown and HTML in a run of kind `comparison`; returns its id.

    `as_of` and `scored_on` name the labelled month both versions were scored on, if any."""
    context = context or RunContext.defaults()
    open_store(context)
    tags = {"run_a": cmp.a.run_id, "run_b": cmp.b.run_id}
    if as_of is not None:
        tags["scored_on"] = str(scored_on)
    name = f"compare {cmp.a.label} vs {cmp.b.label}"
    with logged_run("comparison", name, calendar=context.calendar, as_of=as_of, tags=tags) as run:
        mlflow.log_text(to_markdown(cmp), "comparison.md")
        mlflow.log_text(to_html(cmp), "comparison.html")
    return run.info.run_id
