"""The team setup for real: every command against a shared `mlflow server` (PostgreSQL backend,
proxied artifacts), the service loading its champion from it, and promotions racing from
processes that share nothing but the server's URL."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import AS_OF
from tests.mlflow_server import MlflowServer, mlflow_server

pytestmark = [pytest.mark.servers, pytest.mark.slow]
NEXT = AS_OF + dt.timedelta(days=28)
COMMUTER = str(Path(sys.executable).with_name("commuter"))
MODEL = "commuter-badge"
RACES = 8  # each race is two `commuter promote` processes (~17 s); 20 races took 350 s of make test


@dataclass
class Team:
    server: MlflowServer
    worlds: Path

    def env(self, home: Path) -> dict[str, str]:
        """A data scientist's machine: the server's URL, its own directory and temp directory
        (so no file lock can be shared with another 'machine')."""
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "COMMUTER_"))}
        env.update(
            MLFLOW_TRACKING_URI=self.server.url,
            COMMUTER_DECISIONS=str(home / "decisions.duckdb"),
            TMPDIR=str(home / "tmp"),
            OMP_NUM_THREADS="1",
            PYTHONUNBUFFERED="1",
        )
        return env

    def month(self, name: str) -> list[str]:
        as_of = AS_OF if name == "m1" else NEXT
        return ["--trips", str(self.worlds / name / "trips.parquet"), "--as-of", str(as_of)]

    def labels(self, name: str) -> list[str]:
        return ["--labels", str(self.worlds / name / "labels.csv")]

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.server.url, registry_uri=self.server.url)


@pytest.fixture(scope="module")
def team(tmp_path_factory, shared_postgres) -> Iterator[Team]:
    from commuter_badge.simulate.world import simulate_world, write_world

    root = tmp_path_factory.mktemp("team")
    write_world(simulate_world(3_000, AS_OF, seed=41, label_noise=0.0), root / "m1")
    write_world(simulate_world(3_000, NEXT, seed=42, label_noise=0.0), root / "m2")
    with mlflow_server(shared_postgres) as server:
        yield Team(server, root)


def commuter(team: Team, home: Path, *args: str, code: int = 0) -> str:
    home.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [COMMUTER, *args], env=team.env(home), cwd=home, capture_output=True, text=True,
        check=False, timeout=900,
    )  # fmt: skip  # noqa: S603
    assert done.returncode == code, f"commuter {' '.join(args)}: {done.stderr[-3000:]}"
    return done.stdout


def champion(client: MlflowClient) -> str:
    return str(client.get_model_version_by_alias(MODEL, "champion").version)


def history(client: MlflowClient) -> list[str]:
    return [x for x in client.get_registered_model(MODEL).tags["champion_history"].split(",") if x]


def train(team: Team, home: Path, month: str, *extra: str) -> str:
    out = commuter(
        team, home, "train", *team.month(month), *team.labels(month),
        "--param", "max_rounds=150", *extra,
    )  # fmt: skip
    return out


def test_every_command_works_against_a_shared_server(team, tmp_path):
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    client = team.client()
    # Given a first month trained on Alice's machine and a second on Bob's, both on the server,
    train(team, alice, "m1")
    first = champion(client)
    train(team, bob, "m2")
    second = champion(client)
    assert second != first, "the newer month was not promoted"
    # no model file lands on either machine: the server keeps them (proxied artifacts),
    assert not (alice / "mlruns").exists()
    assert not (bob / "mlruns").exists()
    assert any(team.server.artifacts.rglob("booster.txt")), "no model in the server's artifacts"
    assert client.get_model_version(MODEL, second).source.startswith(
        ("models:/", "mlflow-artifacts:")
    )
    # Alice rolls back and promotes again, judged against the champion Bob made,
    commuter(team, alice, "rollback")
    assert champion(client) == first
    out = commuter(team, alice, "promote", second)
    assert "promoted to champion" in out, out
    assert history(client)[-3:] == [f"{second}:train", f"{first}:rollback", f"{second}:promote"]
    # monitors, recertifies, compares and audits through the same server,
    commuter(team, bob, "monitor", *team.month("m2"), "--report", str(bob / "monitor.json"))
    out = commuter(team, bob, "recertify", *team.month("m2"), *team.labels("m2"), "--no-promote")
    commuter(team, bob, "compare", first, second, "--out", str(bob / "compare.md"))
    assert (bob / "compare.md").read_text().strip()
    scores = bob / "scores.csv"
    commuter(team, bob, "score", *team.month("m2"), "--out", str(scores), "--publish")
    sample, verdicts = bob / "sample.csv", bob / "verdicts.csv"
    commuter(team, bob, "audit", "draw", "--scores", str(scores), "--n", "40", "--seed", "1",
             "--out", str(sample))  # fmt: skip
    drawn = pd.read_csv(sample, dtype={"person_id": str})
    labels = pd.read_csv(team.worlds / "m2" / "labels.csv", dtype={"person_id": str})
    drawn[["person_id"]].merge(labels, on="person_id").to_csv(verdicts, index=False)
    commuter(team, bob, "audit", "certify", "--sample", str(sample), "--verdicts", str(verdicts),
             "--as-of", str(NEXT))  # fmt: skip
    # and every one of them left its run on the server.
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    kinds = {r.data.tags.get("kind") for r in runs}
    assert {"monitor", "audit"} <= kinds, kinds
    # `commuter serve` on a third machine loads the champion from the server.
    _serve_loads_champion(team, tmp_path / "carol", bob / "decisions.duckdb", second)


def _serve_loads_champion(team: Team, home: Path, decisions: Path, version: str) -> None:
    from tests.service.conftest import free_port

    home.mkdir()
    env = {**team.env(home), "COMMUTER_DECISIONS": str(decisions), "COMMUTER_API_TOKENS": "t0k"}
    env["BENTOML_HOME"] = str(home / "bentoml")
    port = free_port()
    with (home / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            [COMMUTER, "serve", "--port", str(port), "--workers", "1"], env=env, cwd=home,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip  # noqa: S603
    from tests.service.conftest import Server, stop_server, wait_until

    server = Server(f"http://127.0.0.1:{port}", proc, home / "serve.log", env)
    try:
        wait_until(server, "/readyz", 200, timeout=180)
        ready = httpx.get(server.url + "/readyz", timeout=10).json()
        assert str(ready.get("model_version")) == version, ready
    finally:
        stop_server(server)


def _promote_racers(team: Team, root: Path, versions: tuple[str, str]) -> list[tuple[int, str]]:
    """Two `commuter promote` processes started together, each on its own 'machine'."""
    procs = []
    for i, version in enumerate(versions):
        home = root / f"machine{i}"
        home.mkdir(parents=True, exist_ok=True)
        procs.append(
            subprocess.Popen(
                [COMMUTER, "promote", version],
                env=team.env(home),
                cwd=home,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )  # fmt: skip  # noqa: S603
        )
    return [(p.wait(timeout=900), p.stdout.read()) for p in procs]


def test_racing_promotions_from_two_machines_move_the_champion_once(team, tmp_path, monkeypatch):
    from commuter_badge.models.runs import promotion

    client = team.client()
    home = tmp_path / "setup"
    # Given an older champion A and two identical candidates B and C of a newer month (each
    # passes against A; against each other they tie on the same data and are refused),
    before = {v.version for v in client.search_model_versions(f"name='{MODEL}'")}
    train(team, home, "m1", "--no-promote")
    train(team, home, "m2", "--no-promote")
    train(team, home, "m2", "--no-promote")
    new = sorted(
        {v.version for v in client.search_model_versions(f"name='{MODEL}'")} - before, key=int
    )
    a, b, c = new
    monkeypatch.setenv("MLFLOW_TRACKING_URI", team.server.url)
    import mlflow

    mlflow.set_tracking_uri(team.server.url)
    mlflow.set_registry_uri(team.server.url)
    winners = []
    for race in range(RACES):
        # when A is champion again and B and C are promoted at once from two machines,
        try:
            promotion.rollback(to=a)
        except promotion.PromotionError:
            client.set_registered_model_alias(MODEL, "champion", a)  # no champion yet
        assert champion(client) == a
        moves = len(history(client)) if "champion_history" in _model_tags(client) else 0
        (rc_b, out_b), (rc_c, out_c) = _promote_racers(team, tmp_path / f"race{race}", (b, c))
        # then exactly one moves the champion, judged against A,
        moved = [v for v, rc, out in ((b, rc_b, out_b), (c, rc_c, out_c)) if rc == 0]
        assert len(moved) == 1, f"race {race}: {out_b[-800:]}\n---\n{out_c[-800:]}"
        winner = moved[0]
        loser = c if winner == b else b
        assert champion(client) == winner
        assert f"promoted to champion (was v{a})" in (out_b if winner == b else out_c)
        # the other is refused with its reason, judged against the new champion,
        lost = out_c if winner == b else out_b
        assert "NOT promoted" in lost, lost[-800:]
        assert "newer_data_on_tie False" in lost, lost[-800:]
        tags = client.get_model_version(MODEL, loser).tags
        assert tags["judged_against"] == winner, (race, tags)
        assert client.get_model_version(MODEL, winner).tags["previous_champion"] == a
        # and the champion history records that one move.
        assert len(history(client)) == min(moves + 1, 200)
        assert history(client)[-1] == f"{winner}:promote"
        winners.append(winner)
    # No lock is left behind on the server.
    assert not [m for m in client.search_registered_models() if m.name != MODEL], "lock left"
    print(f"{RACES} races, winners: {winners}")


def _model_tags(client: MlflowClient) -> dict:
    return client.get_registered_model(MODEL).tags


def test_a_dead_holders_lock_is_broken_after_its_lease_and_the_late_holder_moves_nothing(team):
    import time

    from commuter_badge.models.mlflow_edge import server_lock

    client = team.client()
    # Given a lock taken by a holder that then stalled past its lease,
    with server_lock.server_lock(client) as stalled:
        server_lock.still_held(client, stalled)  # its own lock, held
        time.sleep(1.5)  # the server stamps creation in milliseconds
        # when another process waits for the lock with a lease already run out,
        with server_lock.server_lock(client, lease=1.0) as fresh:
            # then it breaks the stale lock and holds it,
            server_lock.still_held(client, fresh)
            # and the stalled holder learns it before it moves anything.
            with pytest.raises(server_lock.LockLost, match="run the command again"):
                server_lock.still_held(client, stalled)
    # Both done: no lock, and nothing renamed aside left behind.
    names = [m.name for m in client.search_registered_models()]
    assert not [n for n in names if n.startswith(server_lock.LOCK_MODEL)], names
