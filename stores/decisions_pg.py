"""The decision store on PostgreSQL, for a service running as replicas on several hosts.

COMMUTER_DECISIONS=postgresql://user@host/db selects it (stores/decisions.py `is_database`). A
publication is one transaction: the decisions are copied into a new table `commuter_decisions_vN`,
then the view `commuter_decisions` is pointed at it, a row is added to `commuter_publications`
(version N, as_of, rows, badges, model versions) and the tables of older publications are dropped.
Until the commit no reader sees any of it; a publisher killed before the commit leaves nothing (the
server rolls its transaction back). Publishers take a transaction-scoped advisory lock first, so two
at once are judged one after the other by the same guards as the DuckDB file (`check_replacement`:
empty, shrink, older), each against the publication it would replace.

Readers query the view on every lookup, so every replica answers from the new publication as soon
as it commits; each answer's rows come from one statement, so from one publication. The switch
(`CREATE OR REPLACE VIEW`) holds the view's lock only from the switch to the commit, after the
copy: lookups wait that long, not for the copy.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

import pandas as pd
import psycopg

from commuter_badge.errors import CommuterError
from commuter_badge.stores.rechecked import RecheckedStore

logger = logging.getLogger(__name__)

VIEW = "commuter_decisions"
PUBLICATIONS = "commuter_publications"
# Any fixed 64-bit number, the same in every publisher: pg_advisory_xact_lock's key.
PUBLISH_LOCK = 0x636F6D6D75746572
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {PUBLICATIONS} (
    version BIGINT PRIMARY KEY,
    published_at TIMESTAMPTZ NOT NULL,
    rows BIGINT NOT NULL,
    badges BIGINT NOT NULL,
    as_of DATE NOT NULL,
    model_version TEXT NOT NULL
)"""
_COLUMNS = "person_id, commuter_probability, badge, threshold, model_version, as_of"


class DecisionDatabaseError(CommuterError):
    """The decision database cannot be reached or read; the message says which and why."""


def connection_url(url: str) -> str:
    """A SQLAlchemy-style `postgresql+psycopg://` URL as libpq takes it."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+')[0]}{sep}{rest}"


def shown(url: str) -> str:
    """`url` without its user, password or query: scheme://host:port/database."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2].split('?')[0]}"


def _latest(cur: psycopg.Cursor) -> dict[str, Any] | None:
    cur.execute(f"SELECT to_regclass('{PUBLICATIONS}') IS NOT NULL")
    if not cur.fetchone()[0]:
        return None
    cur.execute(
        f"SELECT version, published_at, rows, badges, as_of, model_version FROM {PUBLICATIONS} "
        "ORDER BY version DESC LIMIT 1"
    )
    row = cur.fetchone()
    if row is None:
        return None
    keys = ("version", "published_at", "rows", "badges", "as_of", "model_version")
    return dict(zip(keys, row, strict=True))


def current_publication(url: str) -> dict[str, Any] | None:
    """rows, badges, as_of, model_version (and version) of the live publication; None without."""
    try:
        with psycopg.connect(connection_url(url), connect_timeout=10) as con, con.cursor() as cur:
            return _latest(cur)
    except psycopg.Error as exc:
        raise DecisionDatabaseError(_why(url, exc)) from None


def _why(url: str, exc: Exception) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"decision database {shown(url)} (COMMUTER_DECISIONS): {first}"


def publish_table(
    rows: pd.DataFrame, as_of: dt.date, url: str, *, check, badges: int, versions: list[str]
) -> int:
    """Publish checked `rows` (person_id .. model_version) for `as_of` in one transaction.

    `check(current)` raises to refuse, before anything is written."""
    try:
        with psycopg.connect(connection_url(url), connect_timeout=10) as con, con.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [PUBLISH_LOCK])
            cur.execute(_SCHEMA)
            current = _latest(cur)
            check(current)
            version = (current["version"] if current else 0) + 1
            _copy(cur, f"commuter_decisions_v{version}", rows, as_of)
            # The switch: from here to the commit, lookups wait for the view's lock.
            cur.execute(
                f"CREATE OR REPLACE VIEW {VIEW} AS SELECT {_COLUMNS} "
                f"FROM commuter_decisions_v{version}"
            )
            cur.execute(
                f"INSERT INTO {PUBLICATIONS} VALUES (%s, %s, %s, %s, %s, %s)",
                [
                    version,
                    dt.datetime.now(dt.UTC),
                    len(rows),
                    badges,
                    as_of,
                    ",".join(versions),
                ],
            )
            if current:
                cur.execute(f"DROP TABLE IF EXISTS commuter_decisions_v{current['version']}")
    except psycopg.Error as exc:
        raise DecisionDatabaseError(_why(url, exc)) from None
    return len(rows)


def _copy(cur: psycopg.Cursor, table: str, rows: pd.DataFrame, as_of: dt.date) -> None:
    cur.execute(
        f"CREATE TABLE {table} (person_id TEXT NOT NULL, commuter_probability DOUBLE PRECISION "
        "NOT NULL, badge BOOLEAN NOT NULL, threshold DOUBLE PRECISION NOT NULL, "
        "model_version TEXT NOT NULL, as_of DATE NOT NULL)"
    )
    columns = ["person_id", "commuter_probability", "badge", "threshold", "model_version"]
    with cur.copy(f"COPY {table} ({_COLUMNS}) FROM STDIN") as copy:
        for row in rows[columns].itertuples(index=False, name=None):
            copy.write_row((*row, as_of))
    cur.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (person_id)")


class PgDecisionStore(RecheckedStore):
    """DecisionStore's interface (ready, problem, publication, lookup, close) over the view; its
    publication holds version, published_at, rows, badges, as_of and model_version."""

    def __init__(self, url: str, *, recheck_seconds: float = 1.0) -> None:
        super().__init__(recheck_seconds)
        self.url = url
        self._con: psycopg.Connection | None = None

    def _serving(self) -> bool:
        return self._publication is not None

    def lookup(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Decisions of the ids the live publication holds (absent ids are left out)."""
        if not ids:
            return {}
        with self._lock:
            try:
                rows = self._query(sorted(set(ids)))
            except psycopg.Error as exc:
                from commuter_badge.stores.decisions import (
                    DecisionStoreError,
                )  # (its module imports this one)

                self._drop(_why(self.url, exc))
                raise DecisionStoreError(self.problem) from None
        keys = ("commuter_probability", "badge", "threshold", "model_version", "as_of")
        return {r[0]: dict(zip(keys, r[1:], strict=True)) for r in rows}

    def close(self) -> None:
        with self._lock:
            self._drop("closed")

    def _query(self, ids: list[str]) -> list[tuple]:
        if self._con is None or self._con.closed:
            self._connect()
        with self._con.cursor() as cur:
            cur.execute(f"SELECT {_COLUMNS} FROM {VIEW} WHERE person_id = ANY(%s)", [ids])
            return cur.fetchall()

    def _connect(self) -> None:
        self._con = psycopg.connect(
            connection_url(self.url), autocommit=True, connect_timeout=5, prepare_threshold=1
        )

    def _drop(self, problem: str) -> None:
        if self._con is not None:
            self._con.close()
        self._con, self._publication, self.problem = None, None, problem
        self._checked_at = float("-inf")

    def _refresh(self) -> None:
        if not self._due():
            return
        try:
            if self._con is None or self._con.closed:
                self._connect()
            with self._con.cursor() as cur:
                self._publication = _latest(cur)
        except psycopg.Error as exc:
            self._drop(_why(self.url, exc))
            self._checked_at = time.monotonic()
            logger.warning("%s", self.problem)
            return
        self.problem = (
            ""
            if self._publication
            else f"no publication in {shown(self.url)} yet; publish one with `commuter score "
            "--publish` (COMMUTER_DECISIONS names the store)"
        )
