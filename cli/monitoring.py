"""`commuter monitor` and `commuter recertify`: guarding the FPR promise between months.

monitor judges an unlabelled month against the model's training reference (models/core/monitor.py);
recertify chooses calibration and threshold again on a newer labelled month
(models/runs/recertify.py). Both log to MLflow and leave their outcome on the model version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from commuter_badge.atomic import atomic_write
from commuter_badge.cli.app import (
    AsOf,
    CalendarFile,
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
    run_context,
    status,
    update_status,
)
from commuter_badge.cli.modelling import OptionalAsOf, OptionalLabels, OptionalTrips
from commuter_badge.settings import CHAMPION_URI

ALARM_EXIT = 3  # contract §2: `monitor --fail-on-alarm` on alarm


@app.command()
@clean_errors
def monitor(
    trips: Trips,
    as_of: AsOf,
    model: ModelUri = CHAMPION_URI,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="Write the report as JSON (contract §5).", dir_okay=False),
    ] = None,
    fail_on_alarm: Annotated[
        bool, typer.Option("--fail-on-alarm", help=f"Exit {ALARM_EXIT} when the monitor alarms.")
    ] = False,
    calendar: CalendarFile = None,
) -> None:
    """An unlabelled month against the model's training reference: drift per feature, score
    shift, badge share, estimated FPR and recall; logged as a `monitor` run."""
    day = parse_date(as_of)
    context = run_context(calendar)
    from commuter_badge.models.runs.monitor_run import missed_commuters, run_monitor

    with status("monitoring"):
        result, run_id = run_monitor(trips, day, model, context=context)
    if report is not None:
        text = json.dumps(result.report(), indent=2, allow_nan=False)
        atomic_write(report, lambda p: Path(p).write_text(text))
    out.print(f"run id          {run_id}  (model {model}, version {result.model_version})")
    out.print(
        f"estimated       FPR {result.estimated_fpr:.3%} (target {result.target_fpr:.2%})  "
        f"recall {result.estimated_recall:.3f}  (assumes calibration intact; docs/guide/between-months.md)"
    )
    out.print(
        f"missed          about {missed_commuters(result):,.0f} commuters without a badge this "
        "month (expected commuters x (1 - estimated recall))"
    )
    out.print(
        f"badge share     {result.badge_share:.2%} (reference {result.reference_badge_share:.2%})"
        f"  score PSI {result.score_psi:.3f}  n={result.n:,}"
    )
    for line in check_lines(result):
        out.print(line)
    compared = [f for f in result.features if f["alarms"]]
    top = sorted(compared, key=lambda f: f["margin"])[:3]
    out.print(
        "closest drift   "
        + ", ".join(
            f"{f['name']} PSI {f['psi_compared']:.3f}"
            f"{' per working day' if f['compared_as'] == 'per_day' else ''}"
            f" (limit {f['limit']:g}, margin {f['margin']:+.3f})"
            for f in top
        ),
        soft_wrap=True,
    )
    if "note" in result.calendar:
        out.print(f"calendar        {result.calendar['note']}", soft_wrap=True)
    if result.alarm:
        err.print(f"ALARM: {len(result.alarm_reasons)} reason(s)")
        for reason in result.alarm_reasons:
            err.print(f"  - {reason}")
        if fail_on_alarm:
            raise typer.Exit(ALARM_EXIT)
    else:
        out.print("alarm           none")


def check_lines(result) -> list[str]:
    """One line per alarm check: value, band, limit and margin (positive: room left before the
    limit; negative: how far beyond it)."""
    lines = []
    for c in result.checks:
        low, high = c["band"]
        limit = f"x{1 / c['limit']:.3g}..x{c['limit']:g}" if c["two_sided"] else f"{c['limit']:.4g}"
        band = f" band {low:.4g}..{high:.4g}" if high > low else ""
        lines.append(
            f"check           {c['check']:<26} {c['value']:.4g}{band}  limit {limit}  "
            f"margin {c['band_margin']:+.4g}{'  ALARM' if c['alarm'] else ''}"
        )
    return lines


@app.command(cls=MonthCommand)
@clean_errors
def recertify(
    trips: OptionalTrips = None,
    labels: OptionalLabels = None,
    as_of: OptionalAsOf = "",
    month: MonthOption = None,
    model: ModelUri = CHAMPION_URI,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the month's person split.")] = 0,
    promote: Annotated[
        bool,
        typer.Option(
            "--promote/--no-promote", help="--no-promote registers without touching the alias."
        ),
    ] = True,
    calendar: CalendarFile = None,
) -> None:
    """The model's trees, calibration and threshold chosen again on a newer labelled month;
    registered as a new version and promoted only if the gates pass."""
    months = parse_months(month, trips, labels, as_of)
    context = run_context(calendar)
    from commuter_badge.models.runs.recertify import recertify as run_recertify

    with status("recertifying") as spinner:
        result = run_recertify(
            months[-1].trips,
            list(months[-1].labels),
            months[-1].as_of,
            model,
            months=months,
            seed=seed,
            promote=promote,
            progress=lambda s: update_status(spinner, s),
            context=context,
        )
    for text in result.warnings:
        err.print(f"warning: {text}", soft_wrap=True)
    m = result.metrics
    out.print(f"run id            {result.run_id}")
    out.print(
        f"model version     {result.version} (recertified from v{result.from_version}; "
        f"{'promoted to champion' if result.promoted else 'NOT promoted'})"
    )
    out.print(f"promotion         {result.decision}")
    out.print(f"threshold         {result.threshold:.6f} (was {result.previous_threshold:.6f})")
    out.print(f"FPR bound         {result.certified_fpr_upper:.4%} certified")
    out.print(
        f"validation        recall {m['val_recall']:.4f}  FPR {m['val_fpr']:.4%} "
        f"(upper95 {m['val_fpr_upper95']:.4%})"
    )
    out.print("gates             " + ", ".join(f"{k} {v}" for k, v in result.gates.items()))
