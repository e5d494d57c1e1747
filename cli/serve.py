"""`commuter serve`: the BentoML service for the badge issuer."""

from __future__ import annotations

from typing import Annotated

import typer

from commuter_badge.cli.app import (
    CalendarFile,
    app,
    checked_calendar,
    clean_errors,
)


@app.command()
@clean_errors
def serve(
    port: Annotated[int, typer.Option("--port", help="HTTP port.", min=1, max=65535)] = 3000,
    workers: Annotated[int, typer.Option("--workers", help="Worker processes.", min=1)] = 2,
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            help="Interface to bind; default COMMUTER_HOST, else 127.0.0.1 (loopback only).",
            show_default=False,
        ),
    ] = None,
    calendar: CalendarFile = None,
) -> None:
    """Start the BentoML service on the champion model and the latest published decisions."""
    from commuter_badge.serving.run import serve as run_service

    # Checked here, so a bad file is one line now rather than workers failing to start.
    run_service(port=port, workers=workers, host=host, calendar=checked_calendar(calendar))
