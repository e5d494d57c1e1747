"""`commuter score --engine spark` end to end: a real local Spark session, a champion trained by
`commuter train`, CSV and Parquet outputs, and the decision store `/badge` reads."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from commuter_badge.cli.main import app
from commuter_badge.settings import load_settings
from commuter_badge.stores.decisions import DecisionStore, read_scores
from tests.spark.conftest import AS_OF

pytestmark = pytest.mark.spark


@pytest.fixture
def champion(world_dir):
    # A 1,500-person world has too few calibration negatives for 1%; 5% needs only 59.
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--trips",
            str(world_dir / "trips.parquet"),
            "--labels",
            str(world_dir / "labels.csv"),
        ]
        + ["--as-of", AS_OF.isoformat(), "--target-fpr", "0.05"],
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_spark_scores_are_written_and_published(spark, world_dir, champion, tmp_path, monkeypatch):
    # given a champion and the month's trips (one champion and one DuckDB run for both formats:
    # training and the DuckDB scoring are the same for both)
    trips = str(world_dir / "trips.parquet")
    duck_out = tmp_path / "duck.parquet"
    # when the month is scored by both engines through the command line
    duck = CliRunner().invoke(
        app,
        ["score", "--trips", trips, "--as-of", AS_OF.isoformat(), "--out", str(duck_out)]
        + ["--no-publish"],
    )
    assert duck.exit_code == 0, duck.output
    duck_scores = read_scores(duck_out).sort_values("person_id", ignore_index=True)
    for suffix in (".csv", ".parquet"):
        # each format publishes into a decision store of its own, so neither hides the other
        monkeypatch.setenv("COMMUTER_DECISIONS", str(tmp_path / f"decisions{suffix}.duckdb"))
        _spark_scores_match_and_are_published(trips, tmp_path / f"spark{suffix}", duck_scores)


def _spark_scores_match_and_are_published(trips: str, out, duck_scores) -> None:
    result = CliRunner().invoke(
        app,
        ["score", "--engine", "spark", "--trips", trips, "--as-of", AS_OF.isoformat()]
        + ["--out", str(out), "--publish"],
    )
    # then the Spark run succeeds, writes its output directory and publishes every person
    assert result.exit_code == 0, f"{out.name}: {result.output}"
    assert out.is_dir(), "Spark writes a directory of part files"
    assert "published to" in result.output, result.output
    spark_scores = read_scores(out).sort_values("person_id", ignore_index=True)
    assert spark_scores["person_id"].tolist() == duck_scores["person_id"].tolist()
    np.testing.assert_allclose(
        spark_scores["commuter_probability"], duck_scores["commuter_probability"], atol=1e-6
    )
    store = DecisionStore(load_settings().decisions_path)
    try:
        hits = store.lookup(spark_scores["person_id"].tolist())
    finally:
        store.close()
    assert set(hits) == set(spark_scores["person_id"]), "every scored person is published"
    published = {pid: bool(h["badge"]) for pid, h in hits.items()}
    assert published == dict(zip(spark_scores["person_id"], spark_scores["badge"], strict=True))
    assert {str(h["as_of"]) for h in hits.values()} == {AS_OF.isoformat()}
