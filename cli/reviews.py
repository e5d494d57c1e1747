"""`commuter reviews add / list / export / verify`: the manual route from the command line (§2, §5).

The same review store and the same validation as `POST /reviews` (stores/reviews.py), for an
operator at the community office or a script: `add` records a decision, `list` shows a person's
reviews (or all of them), `export` writes the latest review per person as labels for
`commuter train --labels`, and `verify` recomputes the hash chain and names the first broken
record (exit 1). The store is COMMUTER_REVIEWS (default sqlite:///reviews.db). Review bodies are
printed only when asked for with `list`, and never logged.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from commuter_badge.cli.app import app, clean_errors, err, out
from commuter_badge.errors import UserError
from commuter_badge.settings import load_settings

reviews = typer.Typer(
    help="The manual route: record, list, export and verify reviews.", no_args_is_help=True
)
app.add_typer(reviews, name="reviews")

OPTION_OF = {
    "person_id": "--person-id",
    "decision": "--decision",
    "reason": "--reason",
    "evidence": "--evidence",
    "reviewer": "--reviewer",
    "valid_until": "--valid-until",
    "as_of": "--as-of",
}


def _store(*, create: bool = False):
    from commuter_badge.stores.reviews import ReviewStore, open_existing

    url = load_settings().reviews_url
    return ReviewStore(url) if create else open_existing(url)


@reviews.command()
@clean_errors
def add(
    person_id: Annotated[str, typer.Option("--person-id", help="Pseudonymous person id.")],
    decision: Annotated[str, typer.Option("--decision", help="grant or revoke.")],
    reason: Annotated[str, typer.Option("--reason", help="Why, at most 500 characters.")],
    evidence: Annotated[
        list[str],
        typer.Option("--evidence", help="Evidence code, repeatable (docs/guide/manual-route.md)."),
    ],
    reviewer: Annotated[str, typer.Option("--reviewer", help="Who decided.")],
    valid_until: Annotated[
        str, typer.Option("--valid-until", help="Last day in force, YYYY-MM-DD (within a year).")
    ],
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="The month's as_of it is about (default today; from 2004-01-01 to a month ahead).",
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            help="A key of your choosing (e.g. a UUID): rerunning with the same key and the same "
            "review records nothing new and prints the first case.",
        ),
    ] = None,
) -> None:
    """Record one review; prints its case id. Corrections are new reviews: the latest wins."""
    from pydantic import ValidationError

    from commuter_badge.stores.reviews import (
        IdempotencyConflict,
        ReviewRequest,
        idempotency_key_problem,
    )

    body = {
        "person_id": person_id,
        "decision": decision,
        "reason": reason,
        "evidence": evidence,
        "reviewer": reviewer,
        "valid_until": valid_until,
        **({"as_of": as_of} if as_of is not None else {}),
    }
    try:
        request = ReviewRequest.model_validate_json(json.dumps(body))
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        field = str(first["loc"][0]) if first["loc"] else "body"
        raise UserError(f"{OPTION_OF.get(field, field)}: {first['msg']}") from None
    if idempotency_key is not None and (why := idempotency_key_problem(idempotency_key)):
        raise UserError(f"--idempotency-key: {why}")
    store = _store(create=True)
    try:
        done = store.record(request, idempotency_key=idempotency_key)
    except IdempotencyConflict as exc:
        raise UserError(f"--idempotency-key: {exc}") from None
    finally:
        store.close()
    stored = done.review
    if done.replayed:
        out.print(
            f"case {stored.case_id} was already recorded at {stored.recorded_at} "
            f"(review #{stored.seq}) with this idempotency key; nothing new recorded"
        )
        return
    out.print(f"case {stored.case_id} recorded at {stored.recorded_at} (review #{stored.seq})")


@reviews.command("list")
@clean_errors
def list_reviews(
    person_id: Annotated[
        str | None, typer.Option("--person-id", help="Only this person's reviews.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Reviews oldest first (one person's with --person-id), and the counts by decision.

    Control characters a stored row may hold (ESC, CR/LF, U+202E...) are printed escaped."""
    from commuter_badge.features.ids import json_printable, printable
    from commuter_badge.stores.reviews import local_today

    store = _store()
    if store is None:
        out.print("no reviews (no review store yet)")
        return
    today = local_today()
    rows = store.history(person_id) if person_id is not None else store.all()
    for r in rows:
        if as_json:
            print(json_printable(json.dumps(r.public(today), ensure_ascii=False)))
        else:
            state = "in force" if r.in_force(today) else "expired"
            out.print(
                printable(
                    f"{r.seq:>6}  {r.case_id}  {r.person_id}  {r.decision:<6}  until "
                    f"{r.valid_until} ({state})  by {r.reviewer}  at {r.recorded_at}  "
                    f"[{', '.join(r.evidence)}]"
                ),
                markup=False,
                highlight=False,
            )
    counts = store.counts(today)
    err.print(
        f"{counts['grant']:,} grants, {counts['revoke']:,} revokes in the store; "
        f"{counts['persons_in_force']:,} persons with a review in force"
    )
    store.close()


@reviews.command()
@clean_errors
def export(
    out_file: Annotated[Path, typer.Option("--out", help="Labels file to write (.csv/.parquet).")],
) -> None:
    """Latest review per person as labels: person_id, is_commuter (grant 1, revoke 0), as_of.

    Pass it after the month's labels: `commuter train --labels base.csv --labels reviews.csv`;
    later files override earlier ones for the same person, and the run logs how many labels came
    from reviews (files with a case_id column).
    """
    import pandas as pd

    from commuter_badge.atomic import write_frame
    from commuter_badge.stores.reviews import REVIEW_LABEL_COLUMNS

    store = _store()
    latest = store.latest_per_person() if store is not None else []
    if not latest:
        raise UserError("no reviews to export; record some with `commuter reviews add`")
    frame = pd.DataFrame(
        [(r.person_id, r.is_commuter, r.as_of, r.case_id, r.valid_until) for r in latest],
        columns=list(REVIEW_LABEL_COLUMNS),
    )
    write_frame(frame, out_file)
    store.close()
    grants = int(frame["is_commuter"].sum())
    out.print(
        f"{len(frame):,} persons exported ({grants:,} grants as 1, {len(frame) - grants:,} "
        f"revokes as 0) -> {out_file}"
    )


@reviews.command()
@clean_errors
def verify(
    restore_triggers: Annotated[
        bool,
        typer.Option(
            "--restore-triggers",
            help="Re-create missing append-only triggers (says so); the chain is checked after.",
        ),
    ] = False,
) -> None:
    """Recompute the hash chain; exit 1 naming the first broken record (inserted, deleted or
    edited), a dropped table, or append-only triggers that are missing."""
    from commuter_badge.features.ids import printable
    from commuter_badge.stores.reviews import ReviewStoreDamaged

    try:
        store = _store()
    except ReviewStoreDamaged as exc:
        print(f"error: chain broken: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    if store is None:
        out.print("chain intact: 0 reviews (no review store yet)")
        return
    report = store.verify(restore_triggers=restore_triggers)
    store.close()
    if report.restored_triggers:
        err.print(
            "restored append-only triggers that were missing: "
            + ", ".join(report.restored_triggers),
            markup=False,
        )
    if report.missing_triggers:
        print(
            "error: append-only triggers missing (dropped or disabled outside the project): "
            f"{', '.join(report.missing_triggers)}; UPDATE and DELETE are no longer refused; "
            "`commuter reviews verify --restore-triggers` re-creates them",
            file=sys.stderr,
        )
    if not report.ok:
        print(
            f"error: chain broken after {report.n_reviews:,} intact reviews: "
            + printable(report.problem),
            file=sys.stderr,
        )
        raise typer.Exit(1)
    out.print(f"chain intact: {report.n_reviews:,} reviews, head {report.head_hash}")
    if report.missing_triggers:
        raise typer.Exit(1)
