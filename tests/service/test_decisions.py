"""The decision store on its own: atomic publications, read-only lookups, newer files picked up."""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd
import pytest

from commuter_badge.serving.decisions import DecisionStore, DecisionStoreError, publish

pytestmark = pytest.mark.service

AS_OF = dt.date(2021, 10, 20)


def decisions(ids=("a", "b", "c"), proba=(0.9, 0.2, 0.6), version="7") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "person_id": list(ids),
            "commuter_probability": list(proba),
            "badge": [p >= 0.5 for p in proba],
            "threshold": 0.5,
            "model_version": version,
        }
    )


def test_publish_writes_decisions_and_publication(tmp_path):
    path = tmp_path / "d.duckdb"
    n = publish(decisions(), AS_OF, path)
    assert n == 3
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute("SELECT person_id, badge, as_of FROM decisions ORDER BY 1").fetchall()
        pub = con.execute("SELECT rows, as_of, model_version FROM publication").fetchall()
    assert rows == [("a", True, AS_OF), ("b", False, AS_OF), ("c", True, AS_OF)]
    assert pub == [(3, AS_OF, "7")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.duckdb"], "no temp files left behind"


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (decisions().drop(columns="badge"), "lack column"),
        (decisions(ids=("a", "a", "b")), "appears twice"),
        (decisions(ids=("a", "", "b")), "empty person_id"),
        (decisions(proba=(0.1, 1.5, 0.2)), r"not in \[0, 1\]"),
    ],
)
def test_bad_publication_is_refused_and_leaves_the_old_store(tmp_path, frame, match):
    path = tmp_path / "d.duckdb"
    publish(decisions(), AS_OF, path)
    with pytest.raises(DecisionStoreError, match=match):
        publish(frame, AS_OF, path)
    assert DecisionStore(path).lookup(["a"])["a"]["model_version"] == "7", "old publication intact"
    assert len(list(tmp_path.iterdir())) == 1, "no temp files left behind"


def test_store_without_a_file_is_not_ready_and_says_how_to_fix_it(tmp_path):
    store = DecisionStore(tmp_path / "missing.duckdb")
    assert not store.ready
    assert "commuter score" in store.problem
    with pytest.raises(DecisionStoreError, match="no decision store"):
        store.lookup(["a"])


def test_store_looks_up_hits_and_leaves_out_misses(tmp_path):
    path = tmp_path / "d.duckdb"
    publish(decisions(), AS_OF, path)
    found = DecisionStore(path).lookup(["c", "zz", "a", "a"])
    assert set(found) == {"a", "c"}
    assert found["a"] == {
        "commuter_probability": 0.9,
        "badge": True,
        "threshold": 0.5,
        "model_version": "7",
        "as_of": AS_OF,
    }


def test_store_sees_a_newer_publication_and_a_late_first_one(tmp_path):
    path = tmp_path / "d.duckdb"
    store = DecisionStore(path, recheck_seconds=0.0)
    assert not store.ready, "nothing published yet"
    publish(decisions(), AS_OF, path)
    assert store.ready
    assert store.lookup(["a"])["a"]["model_version"] == "7"
    publish(
        decisions(ids=("a", "d"), proba=(0.1, 0.8), version="8"), AS_OF + dt.timedelta(days=1), path
    )
    found = store.lookup(["a", "b", "d"])
    assert set(found) == {"a", "d"}, "reopened on the new file"
    assert found["a"]["model_version"] == "8", "reopened on the new file"
    assert store.publication["as_of"] == AS_OF + dt.timedelta(days=1)


def test_store_rechecks_the_file_at_most_every_interval(tmp_path):
    path = tmp_path / "d.duckdb"
    publish(decisions(), AS_OF, path)
    store = DecisionStore(path, recheck_seconds=3600)
    assert store.lookup(["a"])["a"]["model_version"] == "7"
    publish(decisions(version="9"), AS_OF, path)
    assert store.lookup(["a"])["a"]["model_version"] == "7", (
        "no stat per lookup within the interval"
    )


def test_reader_does_not_block_the_writer(tmp_path):
    path = tmp_path / "d.duckdb"
    publish(decisions(), AS_OF, path)
    store = DecisionStore(path)
    assert store.ready  # holds the file open read-only
    assert publish(decisions(version="10"), AS_OF, path) == 3, (
        "publishing while a reader holds the file"
    )
