"""A real PostgreSQL server for tests: a throwaway cluster in a temp directory on a free port.

`make test` installs the server from the system packages when it is missing (`make postgresql`).
As root, initdb and the server refuse to run, so they run as the `postgres` user (or `nobody`),
with the temp directory handed to that user. Only loopback is listened on, with trust auth for
the test user. The cluster is stopped and removed afterwards. Without PostgreSQL binaries the tests
skip and say where they looked; under `make test` they fail instead (tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.needs import missing_server

_SEARCH = "PATH, /usr/lib/postgresql/*/bin"


def postgres_bin() -> Path | None:
    """The directory holding initdb and pg_ctl, or None."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists():
            return Path(d)
    return None


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_user() -> tuple[list[str], str | None]:
    """Command prefix that runs as a non-root user, and that user's name (None: ourselves)."""
    if os.geteuid() != 0:
        return [], None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return ["runuser", "-u", name, "--"], name
    missing_server("running as root and no non-root user (postgres, nobody) to run PostgreSQL as")


@dataclass
class Postgres:
    url: str  # postgresql://postgres@127.0.0.1:PORT/postgres
    bin: Path
    port: int
    data: Path | None = None  # the cluster's data directory (for stop/start)
    options: str = ""  # the server options it was started with
    prefix: tuple[str, ...] = ()  # runs the server's commands as its user

    def _pg_ctl(self, *args: str) -> None:
        log = self.data.parent / "server.log"
        done = subprocess.run(
            [*self.prefix, str(self.bin / "pg_ctl"), "-D", str(self.data), *args],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"pg_ctl {args[-1]} failed: {done.stderr.strip()} {tail}")

    def stop(self) -> None:
        """Stop the server (an outage); `start` brings it back on the same port and data."""
        self._pg_ctl("-m", "fast", "-w", "stop")

    def start(self) -> None:
        log = self.data.parent / "server.log"
        self._pg_ctl("-o", self.options, "-l", str(log), "-w", "-t", "60", "start")

    def psql(self, sql: str) -> str:
        """Run SQL with psql behind the project's back (as an operator would)."""
        psql = self.bin / "psql" if (self.bin / "psql").exists() else Path(shutil.which("psql"))
        done = subprocess.run(
            [str(psql), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres",
             "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip())
        return done.stdout.strip()


@contextlib.contextmanager
def postgres_cluster(*, fsync: bool = False) -> Iterator[Postgres]:
    """Tests run without fsync (speed); benchmarks ask for it, as a real server runs."""
    bindir = postgres_bin()
    if bindir is None:
        missing_server(
            f"no PostgreSQL server binaries (initdb, pg_ctl) in {_SEARCH}; `make test` installs them"
        )
    prefix, user = _as_user()
    root = Path(tempfile.mkdtemp(prefix="commuter-pg-"))
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    if user is not None:
        ids = pwd.getpwnam(user)
        for p in (root, sockets):
            os.chown(p, ids.pw_uid, ids.pw_gid)
    port = _free_port()
    run = {"capture_output": True, "text": True, "check": False}
    done = subprocess.run(
        [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
         "-E", "UTF8", "--no-sync"], **run,
    )  # fmt: skip
    if done.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"initdb failed: {done.stderr[-2000:]}")
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1"
    if not fsync:
        options += " -c fsync=off"
    done = subprocess.run(
        [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l",
         str(root / "server.log"), "-w", "-t", "60", "start"], **run,
    )  # fmt: skip
    if done.returncode != 0:
        log = (
            (root / "server.log").read_text(errors="replace")
            if (root / "server.log").exists()
            else ""
        )
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start: {done.stderr[-1000:]} {log[-2000:]}")
    try:
        yield Postgres(
            url=f"postgresql://postgres@127.0.0.1:{port}/postgres",
            bin=bindir,
            port=port,
            data=data,
            options=options,
            prefix=tuple(prefix),
        )
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], **run
        )
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(pg: Postgres, name: str) -> str:
    """A new, empty database on the cluster; its URL."""
    pg.psql(f"CREATE DATABASE {name}")
    return pg.url.rsplit("/", 1)[0] + f"/{name}"
