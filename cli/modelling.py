"""`commuter train`, `evaluate` and `score`: models from labelled months, decisions from trips."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from commuter_badge.cli.app import (
    AsOf,
    CalendarFile,
    Labels,
    Lang,
    ModelUri,
    MonthCommand,
    MonthOption,
    Trips,
    app,
    clean_errors,
    err,
    out,
    parse_date,
    parse_months,
    person_lang,
    run_context,
    status,
    update_status,
)
from commuter_badge.errors import UserError
from commuter_badge.settings import (
    CHAMPION_URI,
    DEFAULT_WINDOW_DAYS,
    MAX_WINDOW_DAYS,
    MIN_WINDOW_DAYS,
)

OptionalTrips = Annotated[
    Path | None,
    typer.Option("--trips", help="Trip file (.csv/.parquet) or a directory of them (one month)."),
]
OptionalLabels = Annotated[
    list[Path] | None,
    typer.Option(
        "--labels",
        help="Labels file(s) of that month: person_id, is_commuter [, weight]; repeat for several, "
        "later files overriding earlier ones for the same person.",
    ),
]
OptionalAsOf = Annotated[
    str, typer.Option("--as-of", help="That month's as_of YYYY-MM-DD.", show_default=False)
]


@app.command(cls=MonthCommand)
@clean_errors
def train(
    trips: OptionalTrips = None,
    labels: OptionalLabels = None,
    as_of: OptionalAsOf = "",
    month: MonthOption = None,
    target_fpr: Annotated[
        float | None,
        typer.Option(
            "--target-fpr",
            help="False-positive rate to certify (default 0.01, or the config file's).",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option("--seed", help="Seed for the person split and LightGBM (default 0)."),
    ] = None,
    window_days: Annotated[
        int | None,
        typer.Option(
            "--window-days",
            help=f"Days of history before --as-of (default {DEFAULT_WINDOW_DAYS}).",
            min=MIN_WINDOW_DAYS,
            max=MAX_WINDOW_DAYS,
        ),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="TOML file of training settings (see models/core/config.py).",
            dir_okay=False,
        ),
    ] = None,
    params: Annotated[
        list[str] | None,
        typer.Option("--param", help="KEY=VALUE setting, repeatable; overrides --config."),
    ] = None,
    tune: Annotated[
        int,
        typer.Option(
            "--tune", help="Optuna trials on the fit and early-stopping persons first.", min=0
        ),
    ] = 0,
    promote: Annotated[
        bool,
        typer.Option(
            "--promote/--no-promote", help="--no-promote registers without touching the alias."
        ),
    ] = True,
    calendar: CalendarFile = None,
) -> None:
    """Train, calibrate, certify the threshold, log to MLflow, register; promote if the gates pass.

    Settings: defaults, then --config FILE, then --param KEY=VALUE, then --target-fpr, --seed and
    --window-days; every value is logged. Exits 0 whether or not the version was promoted: the
    output's `promotion` line and the version's tags say which and why.
    """
    # Every option and setting is checked before MLflow and LightGBM load or any data is read.
    config = _train_config(config_file, params or [], target_fpr, seed, window_days)
    months = parse_months(month, trips, labels, as_of)
    context = run_context(calendar)  # the calendar is recorded on the run and the model version
    from commuter_badge.models.runs.train import train_months

    source = " + ".join(
        x for x in (str(config_file) if config_file else "", "--param" if params else "") if x
    )
    with status("training") as spinner:
        result = train_months(
            months,
            config,
            progress=lambda s: update_status(spinner, s),
            promote=promote,
            tune=tune,
            config_source=source,
            context=context,
        )
    _print_training(result, config)


def _train_config(config_file, params, target_fpr, seed, window_days):
    """Defaults, then the file, then --param, then the options; the target FPR in its range."""
    from commuter_badge.models.core.config import load_config
    from commuter_badge.models.core.threshold import MAX_TARGET_FPR, MIN_TARGET_FPR

    config = load_config(
        config_file, params, target_fpr=target_fpr, seed=seed, window_days=window_days
    )
    if not MIN_TARGET_FPR <= config.target_fpr <= MAX_TARGET_FPR:
        raise UserError(
            f"target FPR {config.target_fpr:g} is outside the allowed range {MIN_TARGET_FPR:g} "
            f"to {MAX_TARGET_FPR:g} (0.01 certifies 1 non-commuter in 100)"
        )
    return config


def _print_training(result, config) -> None:
    """`commuter train`'s report: warnings on stderr, the outcome on stdout."""
    for text in result.warnings:
        err.print(f"warning: {text}", soft_wrap=True)
    m, b = result.metrics, result.baseline_metrics
    out.print(f"run id            {result.run_id}")
    out.print(
        f"model version     {result.version} ({'promoted to champion' if result.promoted else 'NOT promoted'})"
    )
    out.print(f"promotion         {result.decision}")
    out.print(f"threshold         {result.threshold:.6f}")
    out.print(f"FPR bound         {result.certificate} (target {config.target_fpr:.2%})")
    out.print(
        f"validation        AUC {m['val_auc']:.4f}  recall {m['val_recall']:.4f}  "
        f"FPR {m['val_fpr']:.4%} (upper95 {m['val_fpr_upper95']:.4%})"
    )
    out.print(
        f"rule baseline     recall {b['val_recall']:.4f}  FPR {b['val_fpr']:.4%}  "
        f"(run {result.baseline_run_id})"
    )
    out.print("gates             " + ", ".join(f"{k} {v}" for k, v in result.gates.items()))
    out.print(
        f"labels w/o trips  {result.labels_without_trips:,} "
        f"({result.labels_without_trips_share:.1%} of labels: no crossing in the window, not used)"
    )
    if len(result.labels_by_file) > 1 or result.labels_from_reviews:
        out.print(
            f"labels by file    {', '.join(f'{Path(f).name} {n:,}' for f, n in result.labels_by_file)} "
            f"({result.labels_from_reviews:,} from reviews)"
        )
    if result.tuned:
        out.print("tuned             " + ", ".join(f"{k}={v:.4g}" for k, v in result.tuned.items()))
    failed = [k for k, v in result.gates.items() if str(v) == "False"]
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
    fail_on_breach: Annotated[
        bool,
        typer.Option("--fail-on-breach", help="Exit 3 when the FPR here is above the target."),
    ] = False,
) -> None:
    """Metrics of a registered model on other labelled data, logged to MLflow as an evaluation run.

    Also compared with the version's own training metrics (printed and logged as deltas), and
    flagged on the version (`evaluation.fpr_breach`) when the FPR is above the target."""
    day = parse_date(as_of)
    context = run_context(calendar)
    from commuter_badge.models.runs.evaluate import evaluate as run_evaluation

    with status("evaluating"):
        result = run_evaluation(trips, labels, day, model, context)
    m = result.metrics
    out.print(f"run id     {result.run_id}  (model {model}, version {result.version})")
    if result.weighted:
        out.print(
            f"eval       AUC {m['eval_auc']:.4f}  recall {m['eval_recall']:.4f}  "
            f"FPR {m['eval_fpr']:.4%}  n={result.n:,} (weights sum to "
            f"{m['eval_weight_sum']:,.0f})"
        )
        out.print(
            "weighted   labels with weights: weighted point estimates for the persons they stand "
            "for; no exact FPR bound on weighted counts (for an audit's bound: "
            "`commuter audit certify`)"
        )
    else:
        out.print(
            f"eval       AUC {m['eval_auc']:.4f}  recall {m['eval_recall']:.4f}  "
            f"FPR {m['eval_fpr']:.4%} (upper95 {m['eval_fpr_upper95']:.4%})  n={result.n:,}"
        )
    if m["eval_label_noise"] > 0:
        out.print(
            f"policy     FPR {m['eval_fpr_against_truth']:.4%} against the truth at the version's "
            f"label noise {m['eval_label_noise']:g} (what the target is compared with)"
        )
    if "eval_true_fpr" in m:
        out.print(
            f"vs truth   recall {m['eval_true_recall']:.4f}  FPR {m['eval_true_fpr']:.4%} "
            "(simulated world)"
        )
    if result.deltas:
        out.print(
            "vs training "
            + "  ".join(f"{k.split('.', 1)[1]} {v:+.4g}" for k, v in result.deltas.items())
            + "  (eval - validation at training)"
        )
    if result.breach:
        from commuter_badge.models.runs.evaluate import breach_lines

        for line in breach_lines(m, result.target_fpr):
            err.print(line, soft_wrap=True)
        if fail_on_breach:
            raise typer.Exit(3)


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
        typer.Option(
            "--publish/--no-publish",
            help="Also replace the live decisions /badge answers (COMMUTER_DECISIONS) with these; "
            "off by default: scoring for analysis never touches them.",
        ),
    ] = False,
    allow_shrink: Annotated[
        bool,
        typer.Option(
            "--allow-shrink",
            help="With --publish: publish even an empty result, one with over 50% fewer persons or "
            "badges than the live one, or a window running past the trips.",
        ),
    ] = False,
    allow_older: Annotated[
        bool,
        typer.Option(
            "--allow-older",
            help="With --publish: replace the live decisions even with an older as_of.",
        ),
    ] = False,
    include: Annotated[
        str,
        typer.Option(
            "--include",
            help="Optional columns, comma-separated: badge_expected_on (the first date a person "
            "without a badge would hold it if they keep commuting), recourse (the smallest change "
            "that flips the decision); DuckDB engine only.",
        ),
    ] = "",
    lang: Lang = None,
) -> None:
    """Score everyone in TRIPS: person_id, commuter_probability, badge, threshold, model_version,
    days_since_first (and the --include columns).

    Only with --publish are the decisions also published to the store /badge reads. DuckDB engine:
    published first and the output file written second, so a refused publication writes nothing,
    and after a kill the store is never older than the file. Spark engine: the output directory
    is written first, then read back and published.
    """
    import time

    # The options first: refused before MLflow loads or data is read.
    day = _check_score_options(as_of, engine, out_file, publish, allow_shrink, allow_older)
    context = run_context(calendar)
    settings = context.settings
    language, wanted = _person_side_options(include, lang, engine, settings)
    from commuter_badge.stores.publishing import score_and_publish

    start = time.perf_counter()
    store, loaded = _store_and_model(settings, publish, model)
    result = score_and_publish(
        trips,
        day,
        loaded,
        out_file,
        store=store,
        engine=engine,
        allow_shrink=allow_shrink,
        allow_older=allow_older,
        status=status,
        include=wanted,
        lang=language,
        **_run_options(context),
    )
    _print_scores(result, loaded, engine, out_file, store, time.perf_counter() - start)
    if result.table is not None:
        report_missed(result.table)
        report_overrides(result.table, settings.reviews_url)


def _run_options(context) -> dict:
    """What scoring takes from the run's context: the engines' limits and the calendar."""
    settings = context.settings
    return {
        "memory": settings.duckdb_memory,
        "master": settings.spark_master,
        "calendar": context.calendar,
    }


def _person_side_options(include: str, lang, engine: str, settings):
    """`--lang` (else the setting) and the `--include` columns, checked before any data is read."""
    from commuter_badge.models.runs.score import check_include

    language = person_lang(lang, settings)
    wanted = check_include([x.strip() for x in include.split(",") if x.strip()], language)
    if wanted and engine != "duckdb":
        raise UserError("--include works with the duckdb engine only")
    return language, wanted


def _store_and_model(settings, publish: bool, model: str):
    """The checked decision store (None without --publish), then the model to score with."""
    from commuter_badge.models.mlflow_edge import registry
    from commuter_badge.stores.decisions import check_store_location

    store = check_store_location(settings.decisions_path) if publish else None
    registry.configure(settings.tracking_uri)
    return store, registry.load_model(model)


def _check_score_options(as_of, engine, out_file, publish, allow_shrink, allow_older):
    """`commuter score`'s options checked together; returns the as_of date."""
    day = parse_date(as_of)
    if engine not in ("duckdb", "spark"):
        raise UserError(f"--engine {engine!r} is not one of duckdb, spark")
    if engine == "duckdb" and Path(out_file).suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise UserError(f"--out {out_file}: unsupported output type; use .csv or .parquet")
    if (allow_shrink or allow_older) and not publish:
        flag = "--allow-shrink" if allow_shrink else "--allow-older"
        raise UserError(
            f"{flag} only applies with --publish (without it the live decisions are not touched)"
        )
    return day


def _print_scores(result, loaded, engine, out_file, store, seconds: float) -> None:
    """`commuter score`'s report: warnings on stderr, counts and where they went on stdout."""
    scored, published = result.table, result.published
    for text in result.warnings:
        err.print(f"warning: {text}", soft_wrap=True)
    counts = (
        f"{len(scored):,} persons scored, {int(scored['badge'].sum()):,} badges"
        if scored is not None
        else "scored"
    )
    if published:
        where = f", published to {published}"
    elif store is not None:  # a cluster output: published by the job that copies it
        where = ", not published (a cluster output; publish a local copy)"
    else:
        where = ", not published (no --publish)"
    out.print(
        f"{counts} (model v{loaded.version or '?'}, threshold {loaded.threshold:.4f}, {engine}) "
        f"-> {out_file}{where} ({seconds:.1f} s)"
    )


def report_missed(scored) -> None:
    """The cost of the certificate's strictness as a count (models/core/metrics.py)."""
    from commuter_badge.models.core.metrics import missed_commuters

    m = missed_commuters(scored["commuter_probability"], scored["badge"])
    out.print(
        f"about {m['estimated_missed_commuters']:,.0f} of an estimated "
        f"{m['expected_commuters']:,.0f} commuters have no badge this month (estimated recall "
        f"{m['estimated_recall']:.3f}, from the calibrated probabilities; assumes the calibration "
        "holds)"
    )


def report_overrides(scored, reviews_url: str) -> None:
    """How many of the batch's decisions /badge answers from a review instead (contract §5)."""
    from commuter_badge.stores.reviews import open_existing, overridden

    store = open_existing(reviews_url)
    if store is None:
        out.print("0 decisions overridden by reviews in force (no review store)")
        return
    try:
        n, flipped = overridden(dict(zip(scored["person_id"], scored["badge"], strict=True)), store)
    finally:
        store.close()
    out.print(
        f"{n:,} decision{'s' if n != 1 else ''} overridden by reviews in force "
        f"({flipped:,} with the other answer); /badge answers them from the review"
    )
