"""`commuter promote` and `commuter rollback`: moving the champion alias on purpose.

`train` promotes only through the gates; these two commands are the deliberate moves: promoting a
version registered with --no-promote (or one whose policy differs from the champion's, with the
reason on record), and putting back the version served before. Both are recorded on the versions
involved (models/runs/promotion.py); a running service picks the new champion up on restart.
"""

from __future__ import annotations

from typing import Annotated

import typer

from commuter_badge.cli.app import app, clean_errors, out
from commuter_badge.errors import UserError
from commuter_badge.settings import load_settings


@app.command()
@clean_errors
def promote(
    version: Annotated[str, typer.Argument(help="Registered model version to promote.")],
    policy_change: Annotated[
        str | None,
        typer.Option(
            "--policy-change",
            help="Reason for promoting a version whose target FPR, confidence or window differs "
            "from the champion's; recorded on the version.",
        ),
    ] = None,
) -> None:
    """Move `champion` to VERSION if its gates pass against today's champion (exit 2 if not)."""
    from commuter_badge.models.mlflow_edge import registry
    from commuter_badge.models.runs import promotion

    if policy_change is not None and not policy_change.strip():
        raise UserError("--policy-change needs a reason in words, e.g. 'board decision 2026-11'")
    version = promotion.canonical_version(version)  # `01` and `v1` are version 1
    registry.configure(load_settings().tracking_uri)
    move = promotion.promote(version, policy_change)
    gates = ", ".join(f"{k} {v}" for k, v in move.decision.gates.items())
    if not move.moved:
        raise UserError(f"version {version} {move.summary()} (gates: {gates})")
    out.print(f"version {version} {move.summary()}")
    out.print(f"gates   {gates}")
    if move.decision.policy_change:
        out.print(f"policy change recorded: {move.decision.policy_change}")
    out.print("restart (or rolling-restart) the service to serve it")


@app.command()
@clean_errors
def rollback(
    to: Annotated[
        str | None,
        typer.Option("--to", help="Version to restore (default: the previous champion)."),
    ] = None,
) -> None:
    """Move `champion` back to the previous champion (or --to VERSION), recorded on both versions."""
    from commuter_badge.models.mlflow_edge import registry
    from commuter_badge.models.runs import promotion

    registry.configure(load_settings().tracking_uri)
    left, restored = promotion.rollback(to)
    out.print(f"champion moved back from version {left} to version {restored}")
    out.print("restart (or rolling-restart) the service to serve it")
