"""The review store: the manual route's decisions (docs/contract.md §5), append-only and hash-chained.

A review is one reviewer's `grant` (a commuter the data missed) or `revoke` (a badge holder found
not to commute) for one pseudonymous person, with a reason, evidence *codes* (never documents) and
a `valid_until`. `/badge` lets the latest review still in force win over the batch decision;
`commuter reviews export` turns the latest review per person into a label.

Nothing is updated or deleted in place: a correction is a new review, and the latest one wins.
Every review stores `prev_hash` (the hash of the review before it) and `hash`, the sha256 of its
canonical content including `seq` and `prev_hash`; the `chain_head` row holds the last seq and
hash. `verify()` recomputes the chain and names the first broken record, so an UPDATE or DELETE
made with `sqlite3` or `psql` behind the project's back shows, unless the editor recomputes every
later hash and the head as well (no chain kept inside the database it protects can stop that:
copy `commuter reviews verify`'s head hash somewhere else to anchor it). Triggers refuse UPDATE
and DELETE on `reviews` as well, so only a deliberate edit gets that far.

Appends are serialised, so concurrent writers (service workers, replicas, the CLI) never fork the
chain: SQLite takes its write lock first (`BEGIN IMMEDIATE`, WAL mode so readers never wait),
PostgreSQL locks the head row (`SELECT ... FOR UPDATE`). The schema is created and evolved by
Alembic migrations (serving/migrations), run when the store is opened. SQLite files are created
readable by their owner only (their -wal and -shm files take the same mode).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from sqlalchemy.engine import URL, Engine, make_url

from commuter_badge.errors import CommuterError
from commuter_badge.serving.schemas import PersonId

LOCAL = ZoneInfo("Asia/Shanghai")
DECISIONS = ("grant", "revoke")
# The evidence a reviewer may cite, as codes: the store never holds the documents themselves.
EVIDENCE_CODES: dict[str, str] = {
    "residence_permit": "residence permit or household register outside Beijing seen",
    "employment_contract": "employment contract with a Beijing employer seen",
    "social_insurance": "social insurance paid in Beijing (or not) checked",
    "employer_letter": "letter from the employer confirming attendance",
    "rail_pass": "commuter rail pass or ticket history checked",
    "vehicle_pass": "vehicle entry permit or checkpoint record checked",
    "other": "other evidence, described in the reason",
}
MAX_REASON = 500
MAX_REVIEWER = 128
GENESIS = "0" * 64  # prev_hash of the first review
# `commuter reviews export`: labels (person_id, is_commuter, as_of) plus where each came from; a
# label file with a case_id column is counted as labels from reviews by `commuter train`.
REVIEW_LABEL_COLUMNS = ("person_id", "is_commuter", "as_of", "case_id", "valid_until")
_MIGRATIONS = Path(__file__).with_name("migrations")
_PG_PARAMS = 5_000  # ids per IN (...) query


class ReviewStoreError(CommuterError, ValueError):
    """The review store cannot be opened or written."""


def local_today() -> dt.date:
    """Today in Beijing: a review is in force through its valid_until day, local time."""
    return dt.datetime.now(LOCAL).date()


def a_year_after(day: dt.date) -> dt.date:
    try:
        return day.replace(year=day.year + 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year + 1, day=28)


Evidence = Literal[tuple(EVIDENCE_CODES)]


class ReviewRequest(BaseModel):
    """A manual decision as a reviewer submits it (POST /reviews, `commuter reviews add`)."""

    model_config = ConfigDict(hide_input_in_errors=True, extra="forbid")

    person_id: PersonId
    decision: Annotated[
        Literal[DECISIONS],
        Field(
            description="grant (a commuter the data missed) or revoke (a badge holder who is not)"
        ),
    ]
    reason: Annotated[
        str,
        StringConstraints(strict=True, min_length=1, max_length=MAX_REASON, pattern=r"\S"),
        Field(description=f"why, in at most {MAX_REASON} characters; no personal data"),
    ]
    evidence: Annotated[
        list[Evidence],
        Field(
            min_length=1,
            max_length=len(EVIDENCE_CODES),
            description="evidence codes: " + ", ".join(EVIDENCE_CODES),
        ),
    ]
    reviewer: Annotated[
        str,
        StringConstraints(strict=True, min_length=1, max_length=MAX_REVIEWER, pattern=r"\S"),
        Field(
            description="who decided, e.g. xianghe-community-07", examples=["xianghe-community-07"]
        ),
    ]
    valid_until: Annotated[
        dt.date, Field(strict=True, description="last day the review is in force (YYYY-MM-DD)")
    ]
    as_of: Annotated[
        dt.date | None,
        Field(strict=True, description="the month's as_of the decision is about (default: today)"),
    ] = None

    @field_validator("evidence")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("evidence codes repeat; list each once")
        return value

    @field_validator("valid_until")
    @classmethod
    def _in_range(cls, value: dt.date) -> dt.date:
        today = local_today()
        if value < today:
            raise ValueError(f"valid_until {value} is in the past (today is {today} in Beijing)")
        if value > a_year_after(today):
            raise ValueError(
                f"valid_until {value} is more than a year ahead (at most {a_year_after(today)})"
            )
        return value


@dataclass(frozen=True)
class Review:
    """One stored review, as recorded (dates as ISO text, exactly as hashed)."""

    seq: int
    case_id: str
    person_id: str
    decision: str
    reason: str
    evidence: tuple[str, ...]
    reviewer: str
    valid_until: str
    as_of: str
    recorded_at: str
    prev_hash: str
    hash: str

    def in_force(self, today: dt.date) -> bool:
        return dt.date.fromisoformat(self.valid_until) >= today

    @property
    def is_commuter(self) -> int:
        return 1 if self.decision == "grant" else 0

    def public(self, today: dt.date) -> dict[str, Any]:
        """What GET /reviews/{person_id} and `commuter reviews list` show."""
        return {
            "case_id": self.case_id,
            "person_id": self.person_id,
            "decision": self.decision,
            "reason": self.reason,
            "evidence": list(self.evidence),
            "reviewer": self.reviewer,
            "valid_until": self.valid_until,
            "as_of": self.as_of,
            "recorded_at": self.recorded_at,
            "in_force": self.in_force(today),
        }


HASHED = (
    "seq",
    "case_id",
    "person_id",
    "decision",
    "reason",
    "evidence",
    "reviewer",
    "valid_until",
    "as_of",
    "recorded_at",
    "prev_hash",
)


def chain_hash(record: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a review's content and the hash before it."""
    content = {k: record[k] for k in HASHED}
    content["evidence"] = list(content["evidence"])
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    n_reviews: int
    head_hash: str
    problem: str = ""  # the first broken record, in words


metadata = sa.MetaData()
reviews_table = sa.Table(
    "reviews",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("case_id", sa.String(36), nullable=False, unique=True),
    sa.Column("person_id", sa.String(256), nullable=False),
    sa.Column("decision", sa.String(8), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("evidence", sa.Text, nullable=False),
    sa.Column("reviewer", sa.String(128), nullable=False),
    sa.Column("valid_until", sa.String(10), nullable=False),
    sa.Column("as_of", sa.String(10), nullable=False),
    sa.Column("recorded_at", sa.String(32), nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)
head_table = sa.Table(
    "chain_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)


def store_url(url: str) -> URL:
    """The SQLAlchemy URL; a bare postgresql:// uses psycopg 3 (the driver we install)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _sqlite_file(url: URL) -> Path | None:
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).absolute()


def _owner_only(path: Path) -> None:
    """Create the SQLite file 0600 before SQLite does, so its -wal and -shm get that mode too.

    An existing file is only chmod-ed, never opened: closing any descriptor of a file drops every
    POSIX lock this process holds on it, SQLite's included. A store whose locks were dropped looks
    closed to the others, and the next one to close deletes the WAL and -shm under it (a forked
    chain on CI, reproduced in tests/code/test_review_store.py).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        with contextlib.suppress(FileNotFoundError):  # -wal/-shm come and go with connections
            os.chmod(p, 0o600)


def _row(r: Any) -> Review:
    return Review(
        seq=r.seq,
        case_id=r.case_id,
        person_id=r.person_id,
        decision=r.decision,
        reason=r.reason,
        evidence=tuple(json.loads(r.evidence)),
        reviewer=r.reviewer,
        valid_until=r.valid_until,
        as_of=r.as_of,
        recorded_at=r.recorded_at,
        prev_hash=r.prev_hash,
        hash=r.hash,
    )


class ReviewStore:
    """The review store at a SQLAlchemy URL (SQLite file or PostgreSQL), migrated on open."""

    def __init__(self, url: str) -> None:
        self.url = store_url(url)
        self.backend = self.url.get_backend_name()
        self.path = _sqlite_file(self.url)
        self._lock = threading.Lock()
        try:
            if self.path is not None:
                _owner_only(self.path)
            self._writer = self._engine(write=True)
            self._reader = self._engine(write=False) if self.backend == "sqlite" else self._writer
            self._migrate()
            if self.path is not None:
                _owner_only(self.path)  # the -wal and -shm files exist now
        except (sa.exc.SQLAlchemyError, CommandError, OSError) as exc:
            raise ReviewStoreError(
                f"review store {self.url.render_as_string(hide_password=True)} cannot be opened: "
                f"{str(exc).splitlines()[0]} (COMMUTER_REVIEWS sets it)"
            ) from None

    def _engine(self, *, write: bool) -> Engine:
        if self.backend != "sqlite":
            return sa.create_engine(
                self.url, pool_pre_ping=True, pool_size=4, max_overflow=16, pool_timeout=60
            )
        engine = sa.create_engine(
            self.url,
            connect_args={"timeout": 60, "check_same_thread": False},
            # Readers: one per request thread; the writer needs one (appends are serialised).
            pool_size=2 if write else 8,
            max_overflow=2 if write else 32,
            pool_timeout=60,
        )

        @sa.event.listens_for(engine, "connect")
        def _connect(dbapi_con: Any, _record: Any) -> None:
            dbapi_con.isolation_level = None  # transactions are ours, below
            dbapi_con.execute("PRAGMA journal_mode=WAL")
            dbapi_con.execute("PRAGMA busy_timeout=60000")

        if write:

            @sa.event.listens_for(engine, "begin")
            def _begin(con: sa.Connection) -> None:
                # The write lock first: two appenders never read the same head.
                con.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    def _migrate(self) -> None:
        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        with self._writer.begin() as con:
            if self.backend == "postgresql":  # several replicas may open a fresh store at once
                con.execute(sa.text("SELECT pg_advisory_xact_lock(727211)"))
            config.attributes["connection"] = con
            command.upgrade(config, "head")

    def close(self) -> None:
        self._writer.dispose()
        if self._reader is not self._writer:
            self._reader.dispose()

    # --- writing ----------------------------------------------------------------------------

    def add(self, review: ReviewRequest, *, now: dt.datetime | None = None) -> Review:
        """Append one review at the head of the chain; returns it as stored."""
        now = now or dt.datetime.now(dt.UTC)
        # One appender per process at a time: the others wait here, in order, instead of polling
        # SQLite's busy handler (which made 50 concurrent appenders slow and some time out).
        with self._lock, self._writer.begin() as con:
            head = con.execute(
                sa.select(head_table.c.seq, head_table.c.hash)
                .where(head_table.c.id == 1)
                .with_for_update()
            ).one()
            record = {
                "seq": head.seq + 1,
                "case_id": str(uuid.uuid4()),
                "person_id": review.person_id,
                "decision": review.decision,
                "reason": review.reason,
                "evidence": list(review.evidence),
                "reviewer": review.reviewer,
                "valid_until": review.valid_until.isoformat(),
                "as_of": (review.as_of or now.astimezone(LOCAL).date()).isoformat(),
                "recorded_at": now.astimezone(dt.UTC).isoformat(timespec="microseconds"),
                "prev_hash": head.hash,
            }
            record["hash"] = chain_hash(record)
            con.execute(
                sa.insert(reviews_table).values(
                    **{**record, "evidence": json.dumps(record["evidence"])}
                )
            )
            con.execute(
                sa.update(head_table)
                .where(head_table.c.id == 1)
                .values(seq=record["seq"], hash=record["hash"])
            )
        return Review(**{**record, "evidence": tuple(record["evidence"])})

    # --- reading ----------------------------------------------------------------------------

    def history(self, person_id: str) -> list[Review]:
        """The person's reviews, oldest first."""
        query = (
            sa.select(reviews_table)
            .where(reviews_table.c.person_id == person_id)
            .order_by(reviews_table.c.seq)
        )
        with self._reader.connect() as con:
            return [_row(r) for r in con.execute(query)]

    def in_force(self, ids: Iterable[str], today: dt.date | None = None) -> dict[str, Review]:
        """Per id, the latest review whose valid_until has not passed (ids without one left out)."""
        today = (today or local_today()).isoformat()
        wanted = sorted(set(ids))
        found: dict[str, Review] = {}
        with self._reader.connect() as con:
            for start in range(0, len(wanted), _PG_PARAMS):
                part = wanted[start : start + _PG_PARAMS]
                query = (
                    sa.select(reviews_table)
                    .where(reviews_table.c.person_id.in_(part))
                    .where(reviews_table.c.valid_until >= today)
                    .order_by(reviews_table.c.seq)
                )
                for r in con.execute(query):
                    found[r.person_id] = _row(r)  # later seq overwrites: the latest wins
        return found

    def latest_per_person(self) -> list[Review]:
        """The latest review of every reviewed person, whether in force or not (for labels)."""
        latest: dict[str, Review] = {}
        for review in self.all():
            latest[review.person_id] = review
        return sorted(latest.values(), key=lambda r: r.seq)

    def all(self) -> Iterator[Review]:
        """Every review in chain order, streamed."""
        with self._reader.connect() as con:
            result = con.execution_options(yield_per=2_000).execute(
                sa.select(reviews_table).order_by(reviews_table.c.seq)
            )
            for r in result:
                yield _row(r)

    def counts(self, today: dt.date | None = None) -> dict[str, int]:
        """Reviews in the store by decision, and how many persons have one in force."""
        today = today or local_today()
        with self._reader.connect() as con:
            rows = con.execute(
                sa.select(reviews_table.c.decision, sa.func.count()).group_by(
                    reviews_table.c.decision
                )
            ).all()
            persons = con.execute(
                sa.select(sa.func.count(sa.distinct(reviews_table.c.person_id))).where(
                    reviews_table.c.valid_until >= today.isoformat()
                )
            ).scalar_one()
        counts = {d: 0 for d in DECISIONS} | {d: int(n) for d, n in rows}
        return {**counts, "persons_in_force": int(persons)}

    def verify(self) -> ChainReport:
        """Recompute the chain; the first record that does not hold is named."""
        expected_prev, expected_seq, n = GENESIS, 1, 0
        with self._reader.connect() as con:
            head = con.execute(
                sa.select(head_table.c.seq, head_table.c.hash).where(head_table.c.id == 1)
            ).one_or_none()
            result = con.execution_options(yield_per=2_000).execute(
                sa.select(reviews_table).order_by(reviews_table.c.seq)
            )
            for r in result:
                record = dict(r._mapping)
                record["evidence"] = json.loads(record["evidence"])
                where = f"review #{r.seq} (case {r.case_id})"
                if r.seq != expected_seq:
                    return self._broken(
                        n, f"review #{expected_seq} is missing before {where}: it was deleted"
                    )
                if r.prev_hash != expected_prev:
                    return self._broken(
                        n,
                        f"{where} does not chain to the review before it: "
                        f"review #{r.seq - 1} was altered or replaced",
                    )
                if chain_hash(record) != r.hash:
                    return self._broken(n, f"{where}: its content does not match its hash (edited)")
                expected_prev, expected_seq, n = r.hash, r.seq + 1, n + 1
        if head is None:
            return self._broken(n, "the chain head row is missing (deleted)")
        if head.seq != n or head.hash != expected_prev:
            return self._broken(
                n,
                f"the chain ends at review #{n} but its head records #{head.seq}: "
                f"review(s) after #{n} were deleted or the head was altered",
            )
        return ChainReport(ok=True, n_reviews=n, head_hash=expected_prev)

    @staticmethod
    def _broken(n: int, problem: str) -> ChainReport:
        return ChainReport(ok=False, n_reviews=n, head_hash="", problem=problem)


def open_existing(url: str) -> ReviewStore | None:
    """The store for reading, or None when it is a SQLite file that does not exist (no reviews):
    commands that only read never create one."""
    path = _sqlite_file(store_url(url))
    if path is not None and not path.exists():
        return None
    return ReviewStore(url)


def overridden(
    scored: Mapping[str, bool], store: ReviewStore, today: dt.date | None = None
) -> tuple[int, int]:
    """Of a batch's persons (id -> badge): how many a review in force overrides in /badge, and
    how many of those it turns the other way."""
    found = store.in_force(scored, today)
    flipped = sum((r.decision == "grant") != bool(scored[pid]) for pid, r in found.items())
    return len(found), flipped
