"""`commuter score --publish` refuses publications that would lose the current decisions.

The real command against the real service's store: an empty window (a header-only trips file, or an
as_of after the data), an older as_of (issue 15.2), a window running past the data and a partial
window that loses the badges (issue 27). Each must exit non-zero naming the cause, leave the store
file byte-for-byte and inode-for-inode as it was, write no scores file, and leave `/badge`'s
answers unchanged. Without `--publish` scoring never touches the store (issue 27).
"""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.service.conftest import BIN

pytestmark = pytest.mark.service

HEADER = "person_id,ts,direction,mode,site_id,region\n"
AS_OF = dt.date(2021, 10, 20)


def fingerprint(path):
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, path.read_bytes()


def badge_answers(client, ids):
    r = client.post("/badge", json={"person_ids": ids})
    assert r.status_code == 200, r.text
    return r.json()["results"]


@pytest.mark.parametrize(
    ("case", "as_of", "match"),
    [
        ("header-only", "2021-10-20", "no crossing in the window"),
        ("after-the-data", "2021-12-20", "no crossing in the window"),
        ("older", "2021-10-13", "which is newer"),
        # the case: a window holding a few days of the data badged nobody, exit 0
        ("past-the-data", "2021-11-11", "20 days after the last crossing (2021-10-21)"),
    ],
)
def test_refused_score_leaves_store_and_badge_answers_untouched(
    world, client, tmp_path, case, as_of, match
):
    ids = world.batch["person_id"].head(50).tolist()
    time.sleep(1.2)  # let both workers settle on whatever publication an earlier test left
    before_answers = badge_answers(client, ids)
    assert all(a["found"] for a in before_answers), "the world's decisions are being served"
    before = fingerprint(world.decisions_path)
    trips = world.root / "world" / "trips.parquet"
    if case == "header-only":
        trips = tmp_path / "empty.csv"
        trips.write_text(HEADER)
    out = tmp_path / "scores.parquet"
    done = subprocess.run(
        [
            str(BIN / "commuter"),
            "score",
            "--trips",
            str(trips),
            "--as-of",
            as_of,
            "--out",
            str(out),
            "--publish",
        ],
        env=world.env,
        cwd=world.root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0, f"published anyway:\n{done.stdout}"
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), "one error line"
    assert match in last, "naming the cause"
    if case in ("older", "past-the-data"):
        assert "leave out --publish" in last, "analysis is pointed away from the overrides"
    assert fingerprint(world.decisions_path) == before, "the refused publication changed the store"
    assert not out.exists(), "no scores file written for a refused publication"
    time.sleep(1.2)  # past the store's recheck interval: a change would be visible now
    assert badge_answers(client, ids) == before_answers, "/badge answers changed"


def test_score_publishes_before_it_writes_the_output(world, tmp_path):
    """DuckDB engine: the store is replaced first, the scores file second, so when writing the
    output fails (here: its directory is a file) the store is already the new publication."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    before = world.decisions_path.stat().st_ino
    done = subprocess.run(
        [
            str(BIN / "commuter"),
            "score",
            "--trips",
            str(world.root / "world" / "trips.parquet"),
            "--as-of",
            "2021-10-20",
            "--out",
            str(blocker / "scores.parquet"),
            "--publish",
        ],
        env=world.env,
        cwd=world.root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0, "writing under a file cannot succeed"
    assert world.decisions_path.stat().st_ino != before, "published before writing the output"


def commuter_score(world, *args, env=None):
    return subprocess.run(
        [str(BIN / "commuter"), "score", *args],
        env=env or world.env,
        cwd=world.root,
        capture_output=True,
        text=True,
        check=False,
    )


def test_scoring_without_publish_leaves_the_live_decisions_alone(world, client, tmp_path):
    """Issue 27, newcomer 1: scoring a moved month for analysis replaced the live decisions, and
    scoring the older month afterwards was refused with advice to pass --allow-older."""
    ids = world.batch["person_id"].head(50).tolist()
    time.sleep(1.2)
    before_answers = badge_answers(client, ids)
    before = fingerprint(world.decisions_path)
    trips = str(world.root / "world" / "trips.parquet")
    for as_of, flags in (("2021-10-27", ()), ("2021-10-13", ()), ("2021-10-20", ("--no-publish",))):
        out = tmp_path / f"analysis-{as_of}.parquet"
        done = commuter_score(world, "--trips", trips, "--as-of", as_of, "--out", str(out), *flags)
        assert done.returncode == 0, done.stderr
        assert "not published" in done.stdout, done.stdout
        assert out.exists(), "the analysis file is written"
        assert fingerprint(world.decisions_path) == before, f"scoring {as_of} touched the store"
    time.sleep(1.2)
    assert badge_answers(client, ids) == before_answers, "/badge answers changed"


def own_store(world, tmp_path):
    """The world's environment with a decision store of the test's own, holding the world's batch."""
    from commuter_badge.stores.decisions import publish

    env = {**world.env, "COMMUTER_DECISIONS": str(tmp_path / "decisions.duckdb")}
    publish(world.batch, AS_OF, env["COMMUTER_DECISIONS"])
    return env, Path(env["COMMUTER_DECISIONS"])


def test_score_with_publish_publishes(world, tmp_path):
    env, store = own_store(world, tmp_path)
    before = store.stat().st_ino
    out = tmp_path / "scores.csv"
    trips = str(world.root / "world" / "trips.parquet")
    done = commuter_score(
        world, "--trips", trips, "--as-of", "2021-10-21", "--out", str(out), "--publish", env=env
    )
    assert done.returncode == 0, done.stderr
    assert f"published to {store}" in done.stdout, done.stdout
    assert store.stat().st_ino != before, "the store was replaced"
    from commuter_badge.stores.decisions import current_publication

    assert str(current_publication(store)["as_of"]) == "2021-10-21"


def test_score_warns_once_when_the_window_runs_past_the_data(world, tmp_path):
    """Issue 27, adversarial 3: a window past the data scored silently. Two days past may still be
    published (a late feed); the warning says so either way."""
    env, store = own_store(world, tmp_path)
    trips = str(world.root / "world" / "trips.parquet")
    out = tmp_path / "scores.parquet"
    done = commuter_score(
        world, "--trips", trips, "--as-of", "2021-10-24", "--out", str(out), "--publish", env=env
    )
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, done.stderr
    assert "the window ends 2021-10-23 but the last crossing" in warnings[0]
    assert "2 day(s) at the end of the window have no data" in warnings[0]


def test_a_publication_that_loses_most_badges_is_refused(world, tmp_path):
    """Issue 27, adversarial 3: the guard counted persons, not badges, so a publication badging
    nobody replaced a good one. Here the live publication badges everyone (as a lenient model
    would), including 1,000 persons since moved away: the month's real decisions keep three
    quarters of the persons but lose more than half the badges, which only the badge count shows."""
    from commuter_badge.stores.decisions import publish

    env = {**world.env, "COMMUTER_DECISIONS": str(tmp_path / "decisions.duckdb")}
    store = Path(env["COMMUTER_DECISIONS"])
    gone = world.batch.head(1000).assign(person_id=lambda f: "moved-away-" + f["person_id"])
    lenient = pd.concat([world.batch, gone]).assign(badge=True, commuter_probability=1.0)
    publish(lenient, AS_OF, store)
    before = fingerprint(store)
    out = tmp_path / "scores.parquet"
    trips = str(world.root / "world" / "trips.parquet")
    args = ("--trips", trips, "--as-of", "2021-10-20", "--out", str(out), "--publish")
    done = commuter_score(world, *args, env=env)
    assert done.returncode != 0, f"published anyway:\n{done.stdout}"
    last = done.stderr.strip().splitlines()[-1]
    assert f"the live publication holds {len(lenient):,} persons ({len(lenient):,} badges)" in last
    assert "a drop in badges of" in last, last
    assert fingerprint(store) == before, "the refused publication changed the store"
    assert not out.exists()
    done = commuter_score(world, *args, "--allow-shrink", env=env)
    assert done.returncode == 0, done.stderr
    assert fingerprint(store) != before, "published on purpose"


_KILLED_WRITER = """
import sys, time
from pathlib import Path
from commuter_badge.atomic import atomic_write
def write(tmp):
    Path(tmp).write_bytes(b"PAR1 half a file")
    print(tmp.name, flush=True)
    time.sleep(120)
atomic_write(sys.argv[1], write)
"""


def test_a_killed_scores_temp_file_is_removed_by_the_next_score(world, tmp_path):
    """Issue 27, adversarial 12: a killed `score` left a `.tmp` beside the output for good."""
    out = tmp_path / "scores.parquet"
    killed = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(out)], stdout=subprocess.PIPE, text=True
    )
    name = killed.stdout.readline().strip()
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=10)
    assert (tmp_path / name).exists(), "the kill left its temp file"
    trips = str(world.root / "world" / "trips.parquet")
    done = commuter_score(world, "--trips", trips, "--as-of", "2021-10-20", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.parquet"], "no temp file left"
