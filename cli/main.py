"""The `commuter` command line (contract §2). Heavy imports happen inside commands, so `--help` is fast."""

from __future__ import annotations

import datetime as dt
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from commuter_badge.errors import CommuterError, UserError
from commuter_badge.settings import (
    CHAMPION_URI,
    DEFAULT_WINDOW_DAYS,
    MAX_WINDOW_DAYS,
    MIN_WINDOW_DAYS,
    load_settings,
)
from rich.console import Console

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
            if load_settings().debug:
                raise
            known = isinstance(exc, CommuterError)
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
    window_days: Window = DEFAULT_WINDOW_DAYS,
) -> None:
    """Write a synthetic month: OUT/trips.parquet, OUT/labels.csv (noisy) and OUT/persons.parquet (truth)."""
    from commuter_badge.simulate.world import simulate_world, write_world
    from rich.progress import Progress

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
    window_days: Window = DEFAULT_WINDOW_DAYS,
    engine: Annotated[
        str, typer.Option("--engine", help="duckdb (in-process) or spark.")
    ] = "duckdb",
) -> None:
    """One row per person: person_id, every model feature, and the main mode and region."""
    import time

    day = _parse_date(as_of)
    start = time.perf_counter()
    if engine == "duckdb":
        from commuter_badge.features.build import write_features

        with _status("building features"):
            n = write_features(trips, day, out_file, window_days)
    elif engine == "spark":
        from commuter_badge.features.spark import write_spark_features

        with _status("building features on Spark"):
            n = write_spark_features(str(trips), day, str(out_file), window_days)
        out.print(f"{n:,} persons -> {out_file} ({time.perf_counter() - start:.1f} s, spark)")
        return
    else:
        raise UserError(f"--engine {engine!r} is not one of duckdb, spark")
    out.print(f"{n:,} persons -> {out_file} ({time.perf_counter() - start:.1f} s)")


@app.command()
@clean_errors
def train(
    trips: Trips,
    labels: Labels,
    as_of: AsOf,
    target_fpr: Annotated[
        float, typer.Option("--target-fpr", help="False-positive rate to certify (95% confidence).")
    ] = 0.01,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed for the person split and LightGBM.")
    ] = 0,
    window_days: Window = DEFAULT_WINDOW_DAYS,
) -> None:
    """Train, calibrate, certify the threshold, log to MLflow, register; promote if the gates pass."""
    from commuter_badge.models.train import TrainConfig
    from commuter_badge.models.train import train as run_training

    if not 0 < target_fpr < 1:
        raise UserError(f"--target-fpr {target_fpr} must be between 0 and 1")
    day = _parse_date(as_of)
    config = TrainConfig(target_fpr=target_fpr, seed=seed, window_days=window_days)
    with _status("training") as status:
        result = run_training(trips, labels, day, config, progress=lambda s: _update(status, s))
    m, b = result.metrics, result.baseline_metrics
    out.print(f"run id            {result.run_id}")
    out.print(
        f"model version     {result.version} ({'promoted to champion' if result.promoted else 'NOT promoted'})"
    )
    out.print(f"threshold         {result.threshold:.6f}")
    out.print(
        f"FPR bound         {result.certified_fpr_upper:.4%} certified (target {target_fpr:.2%}, 95% CP)"
    )
    out.print(
        f"validation        AUC {m['val_auc']:.4f}  recall {m['val_recall']:.4f}  "
        f"FPR {m['val_fpr']:.4%} (upper95 {m['val_fpr_upper95']:.4%})"
    )
    out.print(
        f"rule baseline     recall {b['val_recall']:.4f}  FPR {b['val_fpr']:.4%}  "
        f"(run {result.baseline_run_id})"
    )
    failed = [k for k, v in result.gates.items() if not v]
    if failed:
        out.print(f"gates failed      {', '.join(failed)}")


@app.command()
@clean_errors
def evaluate(
    trips: Trips,
    labels: Labels,
    as_of: AsOf,
    model: ModelUri = CHAMPION_URI,
) -> None:
    """Metrics of a registered model on other labelled data, logged to MLflow as an evaluation run."""
    from commuter_badge.models.evaluate import evaluate as run_evaluation

    day = _parse_date(as_of)
    with _status("evaluating"):
        result = run_evaluation(trips, labels, day, model)
    m = result["metrics"]
    out.print(f"run id     {result['run_id']}  (model {model}, version {result['version']})")
    out.print(
        f"eval       AUC {m['eval_auc']:.4f}  recall {m['eval_recall']:.4f}  "
        f"FPR {m['eval_fpr']:.4%} (upper95 {m['eval_fpr_upper95']:.4%})  n={result['n']:,}"
    )


@app.command()
@clean_errors
def score(
    trips: Trips,
    as_of: AsOf,
    out_file: Annotated[Path, typer.Option("--out", help="Output file (.csv or .parquet).")],
    model: ModelUri = CHAMPION_URI,
    engine: Annotated[
        str, typer.Option("--engine", help="duckdb (in-process) or spark.")
    ] = "duckdb",
    publish: Annotated[
        bool,
        typer.Option("--publish/--no-publish", help="Publish decisions to the store /badge reads."),
    ] = True,
) -> None:
    """Score everyone in TRIPS: person_id, commuter_probability, badge, threshold, model_version."""
    import time

    from commuter_badge.models import registry
    from commuter_badge.serving.decisions import publish as publish_decisions
    from commuter_badge.serving.decisions import read_scores

    day = _parse_date(as_of)
    settings = load_settings()
    registry.configure(settings.tracking_uri)
    start = time.perf_counter()
    if engine not in ("duckdb", "spark"):
        raise UserError(f"--engine {engine!r} is not one of duckdb, spark")
    loaded = registry.load_model(model)
    if engine == "spark":
        from commuter_badge.models.spark_score import write_spark_scores

        with _status("scoring on Spark"):
            write_spark_scores(str(trips), day, str(out_file), model=loaded)
        # Spark writes a directory of part files; a local one is read back and published like the
        # DuckDB path's. Cluster outputs are left to the job that copies them next to the service.
        remote = "://" in str(out_file) and not str(out_file).startswith("file:")
        scored = None if remote else read_scores(out_file)
    else:
        from commuter_badge.models.score import score_path, write_scores

        with _status("scoring"):
            scored = score_path(trips, day, loaded)
            write_scores(scored, out_file)
    published = ""
    if publish and scored is not None:
        with _status("publishing"):
            publish_decisions(scored, day, settings.decisions_path)
        published = f", published to {settings.decisions_path}"
    counts = (
        f"{len(scored):,} persons scored, {int(scored['badge'].sum()):,} badges"
        if scored is not None
        else "scored"
    )
    out.print(
        f"{counts} (model v{loaded.version or '?'}, threshold {loaded.threshold:.4f}, {engine}) "
        f"-> {out_file}{published} ({time.perf_counter() - start:.1f} s)"
    )


@app.command()
@clean_errors
def serve(
    port: Annotated[int, typer.Option("--port", help="HTTP port.", min=1, max=65535)] = 3000,
    workers: Annotated[int, typer.Option("--workers", help="Worker processes.", min=1)] = 2,
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "0.0.0.0",  # noqa: S104
) -> None:
    """Start the BentoML service on the champion model and the latest published decisions."""
    from commuter_badge.serving.run import serve as run_service

    run_service(port=port, workers=workers, host=host)


def _update(status: Any, text: str) -> None:
    if hasattr(status, "update"):
        status.update(text)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
