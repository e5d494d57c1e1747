"""`commuter score` refuses publications that would lose the current decisions (issue 15.2).

The real command against the real service's store: an empty window (a header-only trips file, or an
as_of after the data), an older as_of. Each must exit non-zero naming the cause, leave the store
file byte-for-byte and inode-for-inode as it was, write no scores file, and leave `/badge`'s
answers unchanged.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.service.conftest import BIN

pytestmark = pytest.mark.service

HEADER = "person_id,ts,direction,mode,site_id,region\n"


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
        ("header-only", "2021-10-20", "refusing to publish 0 decisions"),
        ("after-the-data", "2021-12-20", "refusing to publish 0 decisions"),
        ("older", "2021-10-13", "which is newer"),
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
        ],
        env=world.env,
        cwd=world.root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0, "writing under a file cannot succeed"
    assert world.decisions_path.stat().st_ino != before, "published before writing the output"
