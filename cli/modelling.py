"""`commuter train`, `evaluate` and `score`: models from labelled months, decisions from trips."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from commuter_badge.cli.app import (
    AsOf,
    CalendarFile,
    Labels,
    ModelUri,
    Trips,
    Window,
    app,
    apply_calendar,
    clean_errors,
    out,
    parse_date,
    status,
    update_status,
)
from commuter_badge.errors import UserError
from commuter_badge.settings import CHAMPION_URI, DEFAULT_WINDOW_DAYS, load_settings


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
    calendar: CalendarFile = None,
) -> None:
    """Train, calibrate, certify the threshold, log to MLflow, register; promote if the gates pass."""
    from commuter_badge.models.train import TrainConfig
    from commuter_badge.models.train import train as run_training

    if not 0 < target_fpr < 1:
        raise UserError(f"--target-fpr {target_fpr} must be between 0 and 1")
    day = parse_date(as_of)
    apply_calendar(calendar)  # recorded on the run and the model version
    config = TrainConfig(target_fpr=target_fpr, seed=seed, window_days=window_days)
    with status("training") as spinner:
        result = run_training(
            trips, labels, day, config, progress=lambda s: update_status(spinner, s)
        )
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
    calendar: CalendarFile = None,
) -> None:
    """Metrics of a registered model on other labelled data, logged to MLflow as an evaluation run."""
    from commuter_badge.models.evaluate import evaluate as run_evaluation

    day = parse_date(as_of)
    apply_calendar(calendar)
    with status("evaluating"):
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
    calendar: CalendarFile = None,
    engine: Annotated[
        str, typer.Option("--engine", help="duckdb (in-process) or spark.")
    ] = "duckdb",
    publish: Annotated[
        bool,
        typer.Option("--publish/--no-publish", help="Publish decisions to the store /badge reads."),
    ] = True,
    allow_shrink: Annotated[
        bool,
        typer.Option(
            "--allow-shrink",
            help="Publish even an empty result, or one over 50% smaller than the current one.",
        ),
    ] = False,
    allow_older: Annotated[
        bool,
        typer.Option(
            "--allow-older", help="Publish even an as_of older than the current publication's."
        ),
    ] = False,
) -> None:
    """Score everyone in TRIPS: person_id, commuter_probability, badge, threshold, model_version.

    DuckDB engine: the decisions are published first and the output file written second, so a
    refused publication writes nothing, and after a kill the store is never older than the file.
    Spark engine: the output directory is written first, then read back and published.
    """
    import time

    from commuter_badge.models import registry
    from commuter_badge.serving.decisions import publish as publish_decisions
    from commuter_badge.serving.decisions import read_scores

    day = parse_date(as_of)
    apply_calendar(calendar)
    settings = load_settings()
    registry.configure(settings.tracking_uri)
    start = time.perf_counter()
    if engine not in ("duckdb", "spark"):
        raise UserError(f"--engine {engine!r} is not one of duckdb, spark")
    loaded = registry.load_model(model)
    if engine == "spark":
        from commuter_badge.models.spark_score import write_spark_scores

        with status("scoring on Spark"):
            write_spark_scores(str(trips), day, str(out_file), model=loaded)
        # Spark writes a directory of part files; a local one is read back and published like the
        # DuckDB path's. Cluster outputs are left to the job that copies them next to the service.
        remote = "://" in str(out_file) and not str(out_file).startswith("file:")
        scored = None if remote else read_scores(out_file)
    else:
        from commuter_badge.models.score import score_path

        if Path(out_file).suffix.lower() not in (".csv", ".parquet", ".pq"):
            raise UserError(f"--out {out_file}: unsupported output type; use .csv or .parquet")
        with status("scoring"):
            scored = score_path(trips, day, loaded)
    published = ""
    if publish and scored is not None:
        with status("publishing"):
            publish_decisions(
                scored,
                day,
                settings.decisions_path,
                allow_shrink=allow_shrink,
                allow_older=allow_older,
            )
        published = f", published to {settings.decisions_path}"
    if engine != "spark":  # written after publishing: see the docstring
        from commuter_badge.models.score import write_scores

        write_scores(scored, out_file)
    counts = (
        f"{len(scored):,} persons scored, {int(scored['badge'].sum()):,} badges"
        if scored is not None
        else "scored"
    )
    out.print(
        f"{counts} (model v{loaded.version or '?'}, threshold {loaded.threshold:.4f}, {engine}) "
        f"-> {out_file}{published} ({time.perf_counter() - start:.1f} s)"
    )
