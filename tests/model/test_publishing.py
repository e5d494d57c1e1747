"""Publishing without the command line: `stores.publishing.score_and_publish` holds the rule.

Analysis (no store) writes the scores and leaves the live decisions alone; publishing replaces them
first and writes the file second; a refused publication (an older month) writes nothing.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing

import pandas as pd
import pytest

from commuter_badge.stores.decisions import PublicationRefused, check_store_location
from commuter_badge.stores.publishing import score_and_publish

pytestmark = pytest.mark.slow


def publication(path):
    """The live publication, read in a process of its own (as `current_publication` asks)."""
    from commuter_badge.stores.decisions import current_publication

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(current_publication, (str(path),))


def test_analysis_writes_the_scores_and_leaves_the_live_decisions_alone(trained, tmp_path):
    out = tmp_path / "scores.csv"
    result = score_and_publish(
        trained["world"] / "trips.parquet", trained["as_of"], trained["model"], out
    )
    assert result.published is None
    assert not any(tmp_path.glob("*.duckdb")), "analysis created a store"
    written = pd.read_csv(out)
    assert len(written) == len(result.table) > 1_000
    assert written["badge"].sum() == result.table["badge"].sum()


def test_publishing_replaces_the_store_and_an_older_month_is_refused_before_any_write(
    trained, tmp_path
):
    store = check_store_location(tmp_path / "decisions.duckdb")
    trips, as_of, model = trained["world"] / "trips.parquet", trained["as_of"], trained["model"]
    result = score_and_publish(trips, as_of, model, tmp_path / "now.csv", store=store)
    assert result.published == store
    live = publication(store)
    assert live["rows"] == len(result.table)
    assert live["badges"] == int(result.table["badge"].sum())
    assert live["as_of"] == as_of

    older = as_of - dt.timedelta(days=1)
    with pytest.raises(PublicationRefused, match="--allow-older"):
        score_and_publish(trips, older, model, tmp_path / "older.csv", store=store)
    assert not (tmp_path / "older.csv").exists(), "a refused publication wrote its file"
    assert publication(store)["as_of"] == as_of, "a refused publication touched the store"
