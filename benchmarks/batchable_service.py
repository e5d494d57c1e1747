"""BentoML's adaptive batching in place of the hand-written `BatchScorer`, for the side-by-side bench.

The same feature SQL and model call (`serving.scoring.score_persons`), no token check, but
requests are merged by BentoML's dispatcher (`@bentoml.api(batchable=True)`) instead of our queue.
A batchable API takes one list, so each item carries its own as_of: the body is
`{"persons": [{"as_of": ..., "person_id": ..., "trips": [...]}, ...]}`. Served only by
benchmarks/service_bench.py (`bentoml serve batchable_service:Batchable --working-dir benchmarks`).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import bentoml
from pydantic import BaseModel, Field

from commuter_badge.features.read import connect
from commuter_badge.models.mlflow_edge import registry
from commuter_badge.serving.schemas import MAX_PERSONS, AsOf, PersonTrips
from commuter_badge.serving.scoring import MAX_BATCH_PERSONS, score_persons
from commuter_badge.settings import load_settings

# The dispatcher's latency goal: it answers 503 ("process is overloaded") to requests it expects to
# miss it. At 1,000 ms it refused part of the 32-client load; 10 s lets it take all of it, as ours.
MAX_LATENCY_MS = 10_000


class BatchItem(PersonTrips):
    as_of: AsOf


class BatchRequest(BaseModel):
    persons: Annotated[list[BatchItem], Field(max_length=MAX_PERSONS)]


@bentoml.service(name="commuter_badge_batchable", workers=2, threads=1, traffic={"timeout": 60})
class Batchable:
    def __init__(self) -> None:
        registry.configure(load_settings().tracking_uri)
        self.model = registry.load_model(None)
        self.con = connect(threads=1)

    @bentoml.api(
        route="/score",
        batchable=True,
        max_batch_size=MAX_BATCH_PERSONS,
        max_latency_ms=MAX_LATENCY_MS,
    )
    def score(self, persons: list[BatchItem]) -> list[dict[str, Any]]:
        out: list[dict[str, Any] | None] = [None] * len(persons)
        by_day: dict[dt.date, list[int]] = {}
        for i, p in enumerate(persons):
            by_day.setdefault(p.as_of, []).append(i)
        for day, idx in by_day.items():
            scored = score_persons(self.model, day, [persons[i] for i in idx], self.con)
            for i, r in zip(idx, scored, strict=True):
                out[i] = r
        return out
