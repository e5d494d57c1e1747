"""Who decides a person's badge in `/badge`: a review in force, else the latest batch decision.

Contract §5: the latest review whose `valid_until` has not passed wins over the model, whether the
person is in the batch or not (a missed commuter may have crossed too little to be scored). The
batch decision's probability, as_of and model stay in the answer beside the review's case_id, so
the issuer sees both what the model said and who overrode it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from commuter_badge.serving.schemas import BadgeFound, BadgeMissing, BadgeReviewed
from commuter_badge.stores.reviews import Review

BadgeAnswer = BadgeFound | BadgeReviewed | BadgeMissing


def badge_answers(
    person_ids: Iterable[str],
    decisions: Mapping[str, Mapping[str, Any]],
    reviews: Mapping[str, Review],
) -> list[BadgeAnswer]:
    """One answer per id, in order: `decisions` from the decision store, `reviews` in force."""
    out: list[BadgeAnswer] = []
    for pid in person_ids:
        row, review = decisions.get(pid), reviews.get(pid)
        if review is not None:
            out.append(
                BadgeReviewed.model_construct(
                    person_id=pid,
                    badge=review.decision == "grant",
                    case_id=review.case_id,
                    valid_until=dt.date.fromisoformat(review.valid_until),
                    as_of=row["as_of"] if row else dt.date.fromisoformat(review.as_of),
                    commuter_probability=row["commuter_probability"] if row else None,
                    model_version=row["model_version"] if row else None,
                )
            )
        elif row is not None:
            out.append(
                BadgeFound.model_construct(
                    person_id=pid,
                    badge=row["badge"],
                    commuter_probability=row["commuter_probability"],
                    as_of=row["as_of"],
                    model_version=row["model_version"],
                )
            )
        else:
            out.append(BadgeMissing.model_construct(person_id=pid))
    return out
