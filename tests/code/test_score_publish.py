"""`commuter score` publishing is deliberate, and a store path that cannot hold a store is one line.

Issue 27: newcomer 1 (`--publish` is needed to touch the live decisions; the overrides need it
too), adversarial 10 (a mistyped `COMMUTER_DECISIONS` grew directories or crashed), adversarial 12
(a killed writer's temp file beside the output stayed for good). Real `commuter` processes; each
refusal here comes before any model or data is read, so no model is needed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.code.test_cli_features import assert_one_error_line, trips_file
from tests.code.tripdata import NOV_AS_OF
from tests.service.test_decisions import read_only

COMMUTER = Path(sys.executable).with_name("commuter")


def score(tmp_path: Path, decisions: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "COMMUTER_DECISIONS": str(decisions),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    trips = trips_file(tmp_path)
    return subprocess.run(
        [str(COMMUTER), "score", "--trips", str(trips), "--as-of", NOV_AS_OF.isoformat()]
        + ["--out", str(tmp_path / "scores.csv"), *extra],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_missing_store_directory_is_one_line_and_is_not_created(tmp_path):
    decisions = tmp_path / "nonexistent" / "dir" / "decisions.duckdb"
    done = score(tmp_path, decisions, "--publish")
    assert_one_error_line(
        done.stderr, done.returncode, f"COMMUTER_DECISIONS={decisions}", "does not exist"
    )
    assert not (tmp_path / "nonexistent").exists(), "the mistyped directory was created"
    assert not (tmp_path / "mlflow.db").exists(), "refused before any store was opened"
    assert not (tmp_path / "scores.csv").exists()


def test_a_store_directory_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("")
    decisions = tmp_path / "afile" / "sub" / "decisions.duckdb"
    done = score(tmp_path, decisions, "--publish")
    assert_one_error_line(
        done.stderr, done.returncode, "COMMUTER_DECISIONS=", f"{tmp_path / 'afile'} is a file"
    )


def test_a_read_only_store_directory_is_one_line(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    with read_only(locked):
        done = score(tmp_path, locked / "decisions.duckdb", "--publish")
    assert_one_error_line(done.stderr, done.returncode, "COMMUTER_DECISIONS=", "permission denied")
    assert not list(locked.iterdir()), "nothing written in the read-only directory"


@pytest.mark.parametrize("flag", ["--allow-older", "--allow-shrink"])
def test_overrides_without_publish_are_refused(tmp_path, flag):
    """They replace live decisions on purpose; without --publish nothing is replaced."""
    done = score(tmp_path, tmp_path / "decisions.duckdb", flag)
    assert_one_error_line(done.stderr, done.returncode, flag, "only applies with --publish")


_KILLED_WRITER = """
import sys, time
from pathlib import Path
from commuter_badge.atomic import atomic_write
def write(tmp):
    Path(tmp).write_text("half a file")
    print(tmp.name, flush=True)
    time.sleep(120)
atomic_write(sys.argv[1], write)
"""


def writer_of(target: Path) -> tuple[subprocess.Popen, str]:
    """A real process writing `target` through atomic_write, stopped inside its write."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True
    )
    return proc, proc.stdout.readline().strip()


def test_a_killed_writers_temp_file_is_removed_by_the_next_write(tmp_path):
    """Issue 27, adversarial 12: a killed writer's `.tmp` beside the output stayed for good."""
    out = tmp_path / "features.csv"
    killed, name = writer_of(out)
    live, live_name = writer_of(out)
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=10)
        assert (tmp_path / name).exists(), "the kill left its temp file"
        trips = trips_file(tmp_path)
        done = subprocess.run(
            [str(COMMUTER), "features", "--trips", str(trips), "--as-of", NOV_AS_OF.isoformat()]
            + ["--out", str(out)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert not (tmp_path / name).exists(), "the next write removed the killed one's temp file"
        assert (tmp_path / live_name).exists(), "a live writer's temp file is left alone"
    finally:
        live.kill()
        live.wait(timeout=10)
    assert out.read_text().startswith("person_id,")
