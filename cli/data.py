"""`commuter simulate` and `commuter features`: data in, features out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from commuter_badge.cli.app import (
    AsOf,
    CalendarFile,
    Trips,
    Window,
    app,
    clean_errors,
    err,
    out,
    parse_date,
    run_context,
    status,
)
from commuter_badge.errors import UserError
from commuter_badge.settings import DEFAULT_WINDOW_DAYS


@app.command()
@clean_errors
def simulate(
    persons: Annotated[int, typer.Option("--persons", help="Number of persons.", min=1)] = 10_000,
    as_of: AsOf = "2021-10-20",
    seed: Annotated[int, typer.Option("--seed", help="Random seed; same seed, same world.")] = 0,
    out_dir: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("world"),
    window_days: Window = DEFAULT_WINDOW_DAYS,
    calendar: CalendarFile = None,
    months: Annotated[
        int,
        typer.Option(
            "--months",
            min=1,
            help="Months of the same persons (as-of, then the same day of each next month); "
            "above 1, each goes to OUT/<as_of>/.",
        ),
    ] = 1,
) -> None:
    """Write a synthetic month: OUT/trips.parquet, OUT/labels.csv (noisy) and OUT/persons.parquet (truth)."""
    # commuters in the simulated world keep the statutory calendar
    world_calendar = run_context(calendar).calendar
    from rich.progress import Progress

    from commuter_badge.simulate import monthly_as_ofs, simulate_months, write_months
    from commuter_badge.simulate.variation import WorldSettings
    from commuter_badge.simulate.world import simulate_world, write_world

    settings = WorldSettings(calendar=world_calendar)

    day = parse_date(as_of)
    with Progress(console=err, disable=not err.is_terminal, transient=True) as progress:
        task = progress.add_task("simulating", total=None)

        def tick(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        if months == 1:
            world = simulate_world(
                persons, day, seed, window_days=window_days, settings=settings, progress=tick
            )
            worlds = {day: world}
            progress.update(task, description="writing")
            written = {day: write_world(world, out_dir)}
        else:
            days = monthly_as_ofs(day, months)
            worlds = simulate_months(
                persons, days, seed, settings=settings, window_days=window_days, progress=tick
            )
            progress.update(task, description="writing")
            written = write_months(worlds, out_dir)
    for month, world in worlds.items():
        paths = written[month]
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
    window_days: Window = DEFAULT_WINDOW_DAYS,
    engine: Annotated[
        str, typer.Option("--engine", help="duckdb (in-process) or spark.")
    ] = "duckdb",
    calendar: CalendarFile = None,
) -> None:
    """One row per person: person_id, every model feature, and the main mode and region."""
    import time

    if engine not in ("duckdb", "spark"):
        raise UserError(f"--engine {engine!r} is not one of duckdb, spark")
    suffix = Path(out_file).suffix.lower()
    if engine == "duckdb" and suffix not in (".csv", ".parquet", ".pq"):
        raise UserError(
            f"--out {out_file}: unsupported output type {suffix!r}; use .csv or .parquet"
        )
    context = run_context(calendar)
    day = parse_date(as_of)
    start = time.perf_counter()
    if engine == "duckdb":
        from commuter_badge.features.build import BatchPlan, write_features
        from commuter_badge.features.coverage import check_coverage

        with status("checking coverage"):
            # no crossing in the window: error
            coverage = check_coverage(trips, day, window_days, context.calendar)
        # the memory cap and person partitions, said below
        plan = BatchPlan.for_path(trips, memory=context.settings.duckdb_memory)
        with status("building features"):
            n = write_features(trips, day, out_file, window_days, plan, context.calendar)
        # After the build: a file with a bad row fails with its one error line, no warnings first.
        for text in coverage.warnings:
            err.print(f"warning: {text}", soft_wrap=True)
    elif engine == "spark":
        from commuter_badge.features.spark import write_spark_features

        with status("building features on Spark"):
            master = context.settings.spark_master
            n = write_spark_features(
                str(trips), day, str(out_file), window_days, master, context.calendar
            )
        out.print(f"{n:,} persons -> {out_file} ({time.perf_counter() - start:.1f} s, spark)")
        return
    else:
        raise UserError(f"--engine {engine!r} is not one of duckdb, spark")
    out.print(
        f"{n:,} persons -> {out_file} ({time.perf_counter() - start:.1f} s, {plan.describe()})"
    )
