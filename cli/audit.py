"""`commuter audit draw` and `commuter audit certify`: a month's badges checked by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from commuter_badge.atomic import atomic_write
from commuter_badge.cli.app import app, clean_errors, out, run_context
from commuter_badge.errors import UserError

audit = typer.Typer(
    help="Audit a month's decisions: draw persons to verify by hand, then certify bounds.",
    no_args_is_help=True,
)
app.add_typer(audit, name="audit")


def _read_table(path: Path):
    import pandas as pd

    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path, dtype={"person_id": str, "model_version": str})
    return pd.read_parquet(path)


@audit.command("draw")
@clean_errors
def draw_command(
    scores: Annotated[Path, typer.Option("--scores", help="Score file `commuter score` wrote.")],
    n: Annotated[int, typer.Option("--n", help="Persons to verify by hand.", min=2)],
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same sample.")],
    out_file: Annotated[Path, typer.Option("--out", help="Sample file (.csv or .parquet).")],
    holder_share: Annotated[
        float, typer.Option("--holder-share", help="Share of the sample drawn from badge holders.")
    ] = 0.5,
) -> None:
    """A random, reproducible sample in two strata: badge holders and non-holders."""
    from commuter_badge.atomic import write_frame
    from commuter_badge.models.core.audit import draw
    from commuter_badge.stores.decisions import read_scores

    if not scores.exists():
        raise UserError(f"{scores}: no such score file")
    sample = draw(read_scores(scores), n, seed, holder_share)
    write_frame(sample, out_file)
    sizes = sample.groupby("stratum")[["stratum_size", "stratum_sampled"]].first()
    parts = ", ".join(
        f"{row.stratum_sampled:,} of {row.stratum_size:,} {name.replace('_', ' ')}s"
        for name, row in sizes.iterrows()
    )
    out.print(f"drew {len(sample):,} persons ({parts}) -> {out_file}")


@audit.command("certify")
@clean_errors
def certify_command(
    sample: Annotated[Path, typer.Option("--sample", help="The file `audit draw` wrote.")],
    verdicts: Annotated[
        Path, typer.Option("--verdicts", help="Verified persons: person_id, is_commuter.")
    ],
    report: Annotated[
        Path | None, typer.Option("--report", help="Write the figures as JSON here.")
    ] = None,
    as_of: Annotated[str, typer.Option("--as-of", help="The month's as_of, for the run.")] = "",
    labels_out: Annotated[
        Path | None,
        typer.Option(
            "--labels-out",
            help="Also write the verdicts as weighted labels for the audited month "
            "(person_id, is_commuter, weight; .csv or .parquet): each weight is the inverse of the "
            "person's inclusion probability, so the weights sum to the month's population.",
        ),
    ] = None,
) -> None:
    """One-sided 95% upper bounds for the whole month, logged to MLflow as an `audit` run."""
    from commuter_badge.atomic import write_frame
    from commuter_badge.features.read import read_labels
    from commuter_badge.models.core.audit import certify, design_labels
    from commuter_badge.models.runs.audit_run import log_audit

    if labels_out is not None and labels_out.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise UserError(f"--labels-out {labels_out}: use a .csv or .parquet file")
    found = read_labels(verdicts)
    if "weight" in found.columns:
        raise UserError(
            f"{verdicts}: verdicts carry no weights (the sample file gives them); drop the "
            "'weight' column"
        )
    drawn = _read_table(sample)
    result = certify(drawn, found)
    run_id = log_audit(result, as_of, str(sample), str(verdicts), run_context(None))
    if report is not None:
        text = json.dumps({**result.as_dict(), "run_id": run_id}, indent=2)
        atomic_write(report, lambda tmp: tmp.write_text(text + "\n"))
    out.print(
        f"verified {result.n_verified:,} of {result.n_sampled:,} sampled "
        f"({result.n_badge_holders:,} holders, {result.n_non_holders:,} non-holders this month)"
    )
    out.print(
        f"holders who are not commuters  {result.badge_holders_noncommuter_share:.4%} "
        f"(95% upper bound {result.badge_holders_noncommuter_share_upper95:.4%})"
    )
    out.print(
        f"false-positive rate            {result.fpr_estimate:.4%} "
        f"(95% upper bound {result.fpr_upper95:.4%})"
    )
    out.print(f"run id                         {run_id}")
    if labels_out is not None:
        labels = design_labels(drawn, found)
        write_frame(labels, labels_out)
        missing = result.n_sampled - result.n_verified
        note = (
            f"; {missing:,} sampled person(s) without a verdict left out, their stratum's weight "
            "spread over its verified persons (assumes they are missing at random)"
            if missing
            else ""
        )
        out.print(
            f"labels                         {len(labels):,} weighted labels standing for "
            f"{labels['weight'].sum():,.0f} persons -> {labels_out}{note}"
        )
