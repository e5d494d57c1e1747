"""An audit as an MLflow run of kind `audit`, and its outcome as tags on the version it judged."""

from __future__ import annotations

import mlflow

from commuter_badge.features.context import RunContext
from commuter_badge.models.core.audit import AuditResult
from commuter_badge.models.runs.shell import logged_run, open_store, tag_version


def log_audit(
    result: AuditResult,
    as_of: str,
    sample_path: str,
    verdicts_path: str,
    context: RunContext | None = None,
) -> str:
    """Log the audit's figures (same names as the report) and tag the judged version(s)."""
    context = context or RunContext.defaults()
    open_store(context)
    figures = {k: v for k, v in result.as_dict().items() if isinstance(v, int | float)}
    with logged_run(
        "audit",
        f"audit v{result.model_version or '?'} as_of={as_of}",
        calendar=context.calendar,
        as_of=as_of,
        tags={"model_version": result.model_version},
        params={
            "sample": sample_path,
            "verdicts": verdicts_path,
            "assumptions": result.assumptions,
        },
    ) as run:
        mlflow.log_metrics({k: float(v) for k, v in figures.items()})
        # Per 10,000, so MLflow's three-decimal tables still tell 0.98% from 1%.
        mlflow.log_metrics(
            {
                "fpr_upper95_per10k": result.fpr_upper95 * 1e4,
                "badge_holders_noncommuter_share_upper95_per10k": (
                    result.badge_holders_noncommuter_share_upper95 * 1e4
                ),
            }
        )
        mlflow.log_dict(result.as_dict(), "audit.json")
    tags = {
        "audit.run_id": run.info.run_id,
        "audit.as_of": as_of,
        "audit.fpr_upper95": f"{result.fpr_upper95:.6g}",
        "audit.badge_holders_noncommuter_share_upper95": (
            f"{result.badge_holders_noncommuter_share_upper95:.6g}"
        ),
        "audit.n_verified": str(result.n_verified),
    }
    # Scores of a version from another store: the run still holds the audit.
    for version in filter(None, result.model_version.split(",")):
        tag_version(version, tags)
    return run.info.run_id
