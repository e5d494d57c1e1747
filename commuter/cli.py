"""The `commuter` command line (contract §2). Heavy imports happen inside commands, so `--help` is fast."""

from __future__ import annotations

import datetime as dt
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

app = typer.Typer(
    help="Who is a regular cross-city commuter into Beijing, with a certified false-positive rate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True)
out = Console()

AsOf = Annotated[str, typer.Option("--as-of", help="Scoring date YYYY-MM-DD; features use the days before it.")]
Trips = Annotated[Path, typer.Option("--trips", help="Trip file (.csv/.parquet) or a directory of them.")]
Labels = Annotated[Path, typer.Option("--labels", help="Labels file: person_id, is_commuter (CSV or Parquet).")]
Window = Annotated[int, typer.Option("--window-days", help="Days of history before --as-of.", min=8)]
ModelUri = Annotated[
    str, typer.Option("--model", help="MLflow model URI.", show_default=True)
]


class UserError(Exception):
    """A problem the user can fix; printed as one line, no traceback."""


def _parse_date(text: str, option: str = "--as-of") -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise UserError(f"{option} {text!r} is not a date (expected YYYY-MM-DD)") from None


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
            if os.environ.get("COMMUTER_DEBUG"):
                raise
            known = exc.__class__.__name__ in {
                "UserError", "TripDataError", "CalendarRangeError", "ModelError", "NotEnoughNegativesError",
            }
            prefix = "error" if known else f"error ({exc.__class__.__name__})"
            message = " ".join(str(exc).split()) or exc.__class__.__name__
            print(f"{prefix}: {message}", file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper


def _status(text: str):
    """A spinner on a terminal, nothing when piped."""
    return err.status(text) if err.is_terminal else _NullStatus()


class _NullStatus:
    def __enter__(self) -> _NullStatus:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


@app.command()
@clean_errors
def simulate(
    persons: Annotated[int, typer.Option("--persons", help="Number of persons.", min=1)] = 10_000,
    as_of: AsOf = "2021-10-20",
    seed: Annotated[int, typer.Option("--seed", help="Random seed; same seed, same world.")] = 0,
    out_dir: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("world"),
    window_days: Window = 28,
) -> None:
    """Write a synthetic month: OUT/trips.parquet, OUT/labels.csv (noisy) and OUT/persons.parquet (truth)."""
    from rich.progress import Progress

    from features.simulate import simulate_world, write_world

    day = _parse_date(as_of)
    with Progress(console=err, disable=not err.is_terminal, transient=True) as progress:
        task = progress.add_task("simulating", total=None)

        def tick(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        world = simulate_world(persons, day, seed, window_days=window_days, progress=tick)
        progress.update(task, description="writing")
        paths = write_world(world, out_dir)
    n_pos = int(world.labels["is_commuter"].sum())
    out.print(
        f"simulated {persons:,} persons, {world.trips.num_rows:,} crossings, "
        f"{n_pos:,} labelled commuters -> {paths['trips']}, {paths['labels']}"
    )


@app.command()
@clean_errors
def features(
    trips: Trips,
    as_of: AsOf,
    out_file: Annotated[Path, typer.Option("--out", help="Output file (.csv or .parquet).")],
    window_days: Window = 28,
    engine: Annotated[str, typer.Option("--engine", help="duckdb (in-process) or spark.")] = "duckdb",
) -> None:
    """One row per person: person_id, every model feature, and the main mode and region."""
    import time

    from features.output import write_frame

    day = _parse_date(as_of)
    start = time.perf_counter()
    if engine == "duckdb":
        from features.build import build_features

        with _status("building features"):
            frame = build_features(trips, day, window_days)
        write_frame(frame, out_file)
    elif engine == "spark":
        from features.spark import write_spark_features

        with _status("building features on Spark"):
            n = write_spark_features(str(trips), day, str(out_file), window_days)
        out.print(f"{n:,} persons -> {out_file} ({time.perf_counter() - start:.1f} s, spark)")
        return
    else:
        raise UserError(f"--engine {engine!r} is not one of duckdb, spark")
    out.print(f"{len(frame):,} persons -> {out_file} ({time.perf_counter() - start:.1f} s)")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
