"""One trained model for the model tests: a simulated month, trained through the real pipeline."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.conftest import AS_OF
from tests.model.stores import own_store


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """Train once on 20,000 simulated persons with its own MLflow store; yield what the tests need."""
    from commuter_badge.models.mlflow_edge import registry
    from commuter_badge.models.runs.train import TrainConfig, train
    from commuter_badge.simulate.world import simulate_world, write_world

    root = tmp_path_factory.mktemp("trained")
    world_dir = root / "world"
    write_world(simulate_world(20_000, AS_OF, seed=101), world_dir)
    with own_store(root) as uri:
        result = train(
            world_dir / "trips.parquet",
            world_dir / "labels.csv",
            AS_OF,
            TrainConfig(target_fpr=0.01, seed=0),
        )
        model = registry.load_model(None)
    return {"result": result, "model": model, "uri": uri, "world": world_dir, "as_of": AS_OF}


SHANGHAI = dt.timezone(dt.timedelta(hours=8))


def trip(
    day: dt.date,
    hour: float,
    direction: str,
    mode: str = "car",
    site: str = "CK-G1-XIJI",
    region: str = "langfang-xianghe",
) -> dict:
    start = dt.datetime(day.year, day.month, day.day, tzinfo=SHANGHAI)
    return {
        "ts": start + dt.timedelta(seconds=round(hour * 3600)),
        "direction": direction,
        "mode": mode,
        "site_id": site,
        "region": region,
    }
