"""The floor for benchmarks/service_bench.py: a trivial BentoML service around a small LightGBM model.

Two workers (set by the bench), one thread each, one booster call per request, no feature SQL, no
store, no auth: what BentoML and the load generator cost on this machine when our code costs
nothing. It reads the same JSON bodies as `/score` (loosely typed) and answers one probability per
person. Served only by the bench: `bentoml serve floor_service:Floor --working-dir benchmarks`.

With FLOOR_RECYCLE_CONNECTIONS=1 it also recycles keep-alive connections as our service does
(serving/connections.py), so that a pool opened in a burst spreads over both workers: the floor
our service is compared with like for like.
"""

from __future__ import annotations

import os
from typing import Any

import bentoml
import lightgbm as lgb
import numpy as np

from commuter_badge.features.definitions import FEATURE_NAMES
from commuter_badge.serving.connections import RecycleConnections

N_FEATURES = len(FEATURE_NAMES)  # as many as the real model


@bentoml.service(name="floor", workers=2, threads=1, traffic={"timeout": 60})
class Floor:
    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(2000, N_FEATURES))
        y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(size=2000) > 0).astype(int)
        params = {"objective": "binary", "num_leaves": 15, "verbose": -1, "num_threads": 1}
        self.booster = lgb.train(params, lgb.Dataset(x, y), 60)
        self.row = x[:1]

    @bentoml.api(route="/score")
    def score(self, as_of: str, persons: list[dict[str, Any]]) -> dict[str, Any]:
        proba = self.booster.predict(np.repeat(self.row, len(persons), axis=0), num_threads=1)
        return {
            "results": [
                {"person_id": p.get("person_id"), "commuter_probability": float(q)}
                for p, q in zip(persons, proba, strict=True)
            ]
        }


if os.environ.get("FLOOR_RECYCLE_CONNECTIONS") == "1":
    Floor.add_asgi_middleware(RecycleConnections)
