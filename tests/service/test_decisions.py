"""The decision store on its own: atomic publications, read-only lookups, newer files picked up."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys

import duckdb
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commuter_badge.stores.decisions import (
    MAX_SHRINK,
    DecisionStore,
    DecisionStoreError,
    DecisionStoreLocationError,
    PublicationRefused,
    deliver,
    publish,
)

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


# --- publications that would lose the current one (issue 15.2) ---------------------------------


def fingerprint(path):
    """What a refused publication must leave exactly as it was: inode, mtime and bytes."""
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, path.read_bytes()


def many(n, version="7"):
    ids = [f"p{i}" for i in range(n)]
    return decisions(ids=ids, proba=[(i % 10) / 10 for i in range(n)], version=version)


@pytest.mark.parametrize(
    ("frame", "as_of", "match"),
    [
        (many(0), AS_OF, "refusing to publish 0 decisions"),
        (many(49), AS_OF, r"drop of 51% \(more than 50%\)"),
        (many(100), AS_OF - dt.timedelta(days=1), "which is newer"),
    ],
    ids=["empty", "shrinks-by-51%", "older-as-of"],
)
def test_publication_that_loses_the_current_one_is_refused_untouched(tmp_path, frame, as_of, match):
    path = tmp_path / "d.duckdb"
    publish(many(100), AS_OF, path)
    before = fingerprint(path)
    with pytest.raises(PublicationRefused, match=match):
        publish(frame, as_of, path)
    assert fingerprint(path) == before, "the refused publication changed the store file"
    assert DecisionStore(path).publication["rows"] == 100, "current publication still served"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.duckdb"], "no temp files left behind"


def test_refusals_can_be_overridden_on_purpose(tmp_path):
    path = tmp_path / "d.duckdb"
    publish(many(100), AS_OF, path)
    assert publish(many(49), AS_OF, path, allow_shrink=True) == 49
    assert publish(many(0), AS_OF, path, allow_shrink=True) == 0
    assert publish(many(10), AS_OF - dt.timedelta(days=3), path, allow_older=True) == 10
    assert DecisionStore(path).publication["as_of"] == AS_OF - dt.timedelta(days=3)


def test_half_the_persons_same_or_newer_as_of_publish_without_flags(tmp_path):
    path = tmp_path / "d.duckdb"
    publish(many(100), AS_OF, path)
    assert publish(many(50, version="8"), AS_OF, path) == 50, "a 50% drop is within the limit"
    assert publish(many(80), AS_OF + dt.timedelta(days=30), path) == 80


def with_badges(n, badges, version="7"):
    """n persons, the first `badges` of them holding a badge."""
    return decisions(
        ids=[f"p{i}" for i in range(n)],
        proba=[0.9 if i < badges else 0.1 for i in range(n)],
        version=version,
    )


def test_a_publication_that_loses_most_badges_is_refused_untouched(tmp_path):
    """Issue 27, adversarial 3: 0 badges among as many persons replaced 2,370 badges."""
    path = tmp_path / "d.duckdb"
    publish(with_badges(100, 40), AS_OF, path)
    before = fingerprint(path)
    for badges, drop in ((0, "100%"), (19, "52%")):
        with pytest.raises(PublicationRefused, match=f"a drop in badges of {drop}") as refused:
            publish(with_badges(100, badges, version="8"), AS_OF, path)
        assert "(40 badges)" in str(refused.value), "names the live publication's badges"
        assert "leave out --publish" in str(refused.value), "analysis needs no override"
        assert fingerprint(path) == before, "the refused publication changed the store"
    assert publish(with_badges(100, 20, version="8"), AS_OF, path) == 100, "half is within"
    assert publish(with_badges(100, 0, version="9"), AS_OF, path, allow_shrink=True) == 100
    assert DecisionStore(path).lookup(["p0"])["p0"]["model_version"] == "9", "on purpose"
    assert publish(with_badges(100, 0, version="10"), AS_OF, path) == 100, "0 of 0 is no drop"


def test_older_month_refusal_points_analysis_away_from_the_override(tmp_path):
    """Issue 27, newcomer 1: the refusal used to advise --allow-older, replacing live decisions."""
    path = tmp_path / "d.duckdb"
    publish(many(100), AS_OF, path)
    with pytest.raises(PublicationRefused) as refused:
        publish(many(100), AS_OF - dt.timedelta(days=30), path)
    text = str(refused.value)
    assert "leave out --publish" in text, text
    assert text.index("leave out --publish") < text.index("--allow-older"), "analysis first"


def test_deliver_without_a_store_writes_the_scores_and_leaves_the_store_alone(tmp_path):
    """Publishing is deliberate: the function below `commuter score` publishes only when told."""
    path = tmp_path / "d.duckdb"
    publish(many(100), AS_OF, path)
    before = fingerprint(path)
    out = tmp_path / "analysis.parquet"
    older = AS_OF - dt.timedelta(days=30)
    assert deliver(many(3, version="8"), older, out=out, store=None) is None
    assert fingerprint(path) == before, "analysis scoring touched the live decisions"
    assert pd.read_parquet(out)["person_id"].tolist() == ["p0", "p1", "p2"]
    assert deliver(many(100, version="8"), AS_OF, out=out, store=path) == path
    assert DecisionStore(path).lookup(["p1"])["p1"]["model_version"] == "8", "published"


@pytest.mark.parametrize("case", ["missing-dir", "parent-is-a-file", "read-only-dir", "a-dir"])
def test_a_store_path_that_cannot_hold_a_store_is_one_error_and_creates_nothing(tmp_path, case):
    """Issue 27, adversarial 10: a mistyped COMMUTER_DECISIONS grew directories, or crashed."""
    with read_only_or_blocked(tmp_path, case) as path:
        listing = sorted(tmp_path.rglob("*"))
        with pytest.raises(DecisionStoreLocationError, match="COMMUTER_DECISIONS=") as refused:
            publish(many(10), AS_OF, path)
        assert "\n" not in str(refused.value)
        assert sorted(tmp_path.rglob("*")) == listing, "nothing created"
        store = DecisionStore(path)  # the service's side only ever reads
        assert not store.ready
        assert "COMMUTER_DECISIONS" in store.problem
        assert sorted(tmp_path.rglob("*")) == listing, "the reading side creates nothing either"


@contextlib.contextmanager
def read_only_or_blocked(root, case):
    """A store path under `root` that cannot be published to, for each way a setting goes wrong."""
    if case == "missing-dir":
        yield root / "nonexistent" / "dir" / "decisions.duckdb"
    elif case == "parent-is-a-file":
        (root / "afile").write_text("")
        yield root / "afile" / "decisions.duckdb"
    elif case == "a-dir":
        (root / "adir").mkdir()
        yield root / "adir"
    else:
        locked = root / "locked"
        locked.mkdir()
        with read_only(locked):
            yield locked / "decisions.duckdb"


@contextlib.contextmanager
def read_only(directory):
    """`directory` unwritable even for root (which ignores modes): immutable via chattr."""
    if os.geteuid() != 0:
        directory.chmod(0o500)
        try:
            yield
        finally:
            directory.chmod(0o700)
        return
    if subprocess.run(["chattr", "+i", str(directory)], check=False).returncode != 0:
        pytest.skip("running as root without chattr +i: no directory is read-only to root")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)


def test_first_publication_may_not_be_empty_either(tmp_path):
    path = tmp_path / "d.duckdb"
    with pytest.raises(PublicationRefused, match="there is no live publication"):
        publish(many(0), AS_OF, path)
    assert not path.exists(), "no store created for an empty result"


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    current=st.integers(1, 40),
    new=st.integers(0, 60),
    days=st.integers(-3, 3),
    allow_shrink=st.booleans(),
    allow_older=st.booleans(),
)
def test_store_is_replaced_exactly_when_the_rule_allows(
    tmp_path_factory, current, new, days, allow_shrink, allow_older
):
    path = tmp_path_factory.mktemp("rule") / "d.duckdb"
    publish(many(current), AS_OF, path)
    before = fingerprint(path)
    badges_now, badges_new = many(current)["badge"].sum(), many(new)["badge"].sum()
    allowed = (
        (new > 0 or allow_shrink)
        and (days >= 0 or allow_older)
        and (new >= current * (1 - MAX_SHRINK) or allow_shrink)
        and (badges_new >= badges_now * (1 - MAX_SHRINK) or allow_shrink)
    )
    as_of = AS_OF + dt.timedelta(days=days)
    try:
        publish(many(new), as_of, path, allow_shrink=allow_shrink, allow_older=allow_older)
        replaced = True
    except PublicationRefused:
        replaced = False
    assert replaced == allowed, "refused or published against the documented rule"
    if replaced:
        assert DecisionStore(path).publication == {
            **DecisionStore(path).publication,
            "rows": new,
            "as_of": as_of,
        }
    else:
        assert fingerprint(path) == before, "a refused publication changed the store"


_KILLED_PUBLISHER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("CREATE TABLE decisions AS SELECT range AS i FROM range(1000)")
print("writing", flush=True)
time.sleep(60)
"""


def test_temp_files_of_a_killed_publisher_are_removed_by_the_next_publish(tmp_path):
    path = tmp_path / "d.duckdb"
    publish(many(10), AS_OF, path)
    tmp = tmp_path / ".d.duckdb.k1ll3d.tmp"
    writer = subprocess.Popen(
        [sys.executable, "-c", _KILLED_PUBLISHER, str(tmp)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout.readline().strip() == "writing"
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=10)
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.endswith((".tmp", ".tmp.wal")))
    assert left == [".d.duckdb.k1ll3d.tmp", ".d.duckdb.k1ll3d.tmp.wal"], "the kill left both"
    publish(many(10, version="8"), AS_OF, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.duckdb"], (
        "the next publication removed what the killed one left"
    )
    assert DecisionStore(path).lookup(["p1"])["p1"]["model_version"] == "8"


_ids = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12).filter(
    lambda s: s.strip() != ""
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    published=st.lists(_ids, min_size=1, max_size=30, unique=True),
    asked=st.lists(_ids, max_size=10),
    versions=st.lists(st.sampled_from(["7", "8"]), min_size=30, max_size=30),
)
def test_lookups_from_memory_answer_what_the_file_holds(
    tmp_path_factory, published, asked, versions
):
    """The store reads a publication into memory (a search, not a query per request): for any
    ids, published, not published, prefixes or extensions of published ones (`a` and `a\\x00`),
    it answers exactly the rows DuckDB holds for them."""
    path = tmp_path_factory.mktemp("mem") / "d.duckdb"
    proba = [(i % 10) / 10 for i in range(len(published))]
    frame = decisions(published, proba).assign(model_version=versions[: len(published)])
    publish(frame, AS_OF, path)
    probes = [
        *asked,
        *published[:3],
        *(p + "\x00" for p in published[:2]),
        *(p[:-1] for p in published[:2]),
    ]
    found = DecisionStore(path).lookup(probes)
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute(
            "SELECT person_id, commuter_probability, badge, threshold, model_version, as_of "
            "FROM decisions WHERE person_id IN (SELECT unnest(CAST(? AS VARCHAR[])))",
            [sorted(set(probes))],
        ).fetchall()
    expected = {
        r[0]: dict(
            zip(
                ("commuter_probability", "badge", "threshold", "model_version", "as_of"),
                r[1:],
                strict=True,
            )
        )
        for r in rows
    }
    assert found == expected
