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
Alembic migrations (stores/migrations), run when the store is opened. SQLite files are created
readable by their owner only (their -wal and -shm files take the same mode).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
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
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from sqlalchemy.engine import URL, Engine, make_url

from commuter_badge.errors import CommuterError, UserError
from commuter_badge.features.ids import NO_CONTROLS, PersonId, no_controls

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
# A review's as_of: not before the first year of the working-day calendar (chinesecalendar starts
# in 2004; no features, hence no label, exist before it) nor more than a month ahead (the next
# batch's as_of at most). 1900-01-01 and 9999-12-31 would otherwise become label dates.
EARLIEST_AS_OF = dt.date(2004, 1, 1)
AS_OF_DAYS_AHEAD = 31
# Idempotency-Key (POST /reviews, `reviews add --idempotency-key`): a client-chosen token, e.g. a
# UUID, printable ASCII without spaces; a replay with the same key answers the first review.
IDEMPOTENCY_KEY = re.compile(r"[!-~]{8,128}")
IDEMPOTENCY_KEY_RULE = "8 to 128 printable ASCII characters without spaces, e.g. a UUID"
# The header as the OpenAPI document declares it on POST /reviews (serving/review_routes.py).
IDEMPOTENCY_PARAMETER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": "^[!-~]{8,128}$"},
    "description": (
        f"{IDEMPOTENCY_KEY_RULE}. A retry with the same key and body gets the first answer "
        "(201, same case_id and recorded_at, header Idempotent-Replayed: true) and stores "
        "nothing; the same key with another body is a 422"
    ),
}
GENESIS = "0" * 64  # prev_hash of the first review
# `commuter reviews export`: labels (person_id, is_commuter, as_of) plus where each came from; a
# label file with a case_id column is counted as labels from reviews by `commuter train`.
REVIEW_LABEL_COLUMNS = ("person_id", "is_commuter", "as_of", "case_id", "valid_until")
_MIGRATIONS = Path(__file__).with_name("migrations")
# The store's tables, and what each holds (named when one was dropped).
STORE_TABLES = ("reviews", "chain_head", "alembic_version")
TABLE_ROLES = {
    "reviews": "the reviews",
    "chain_head": "the chain's last seq and hash",
    "alembic_version": "the schema version",
}
# The append-only triggers migration 0001 creates, per backend, and how verify re-creates them.
_APPEND_ONLY = "reviews are append-only: record a new review instead"
TRIGGERS = {
    "sqlite": ("reviews_no_update", "reviews_no_delete"),
    "postgresql": ("reviews_no_update_delete",),
}
RESTORE_TRIGGERS = {
    "sqlite": tuple(
        f"CREATE TRIGGER IF NOT EXISTS reviews_no_{event.lower()} BEFORE {event} ON reviews "
        f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END"
        for event in ("UPDATE", "DELETE")
    ),
    "postgresql": (
        "CREATE OR REPLACE FUNCTION reviews_append_only() RETURNS trigger AS $$ BEGIN "
        f"RAISE EXCEPTION '{_APPEND_ONLY}'; END; $$ LANGUAGE plpgsql",
        "DROP TRIGGER IF EXISTS reviews_no_update_delete ON reviews",
        "CREATE TRIGGER reviews_no_update_delete BEFORE UPDATE OR DELETE ON reviews "
        "FOR EACH ROW EXECUTE FUNCTION reviews_append_only()",
    ),
}
_PG_PARAMS = 5_000  # ids per IN (...) query


class ReviewStoreError(CommuterError, ValueError):
    """The review store cannot be opened or written."""


class ReviewStoreDamaged(ReviewStoreError):
    """A table of the store is gone (dropped behind the project's back): the trail is broken."""


class IdempotencyConflict(CommuterError, ValueError):
    """An Idempotency-Key already recorded with a different review."""


def local_today() -> dt.date:
    """Today in Beijing: a review is in force through its valid_until day, local time."""
    return dt.datetime.now(LOCAL).date()


def latest_as_of(today: dt.date) -> dt.date:
    return today + dt.timedelta(days=AS_OF_DAYS_AHEAD)


def idempotency_key_problem(key: str) -> str | None:
    """Why `key` is not a valid Idempotency-Key, or None when it is (the key is never echoed)."""
    if IDEMPOTENCY_KEY.fullmatch(key) is None:
        return f"must be {IDEMPOTENCY_KEY_RULE}"
    return None


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
        AfterValidator(no_controls),
        Field(
            description=f"why, in at most {MAX_REASON} characters on one line; no personal data; "
            + NO_CONTROLS
        ),
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
        AfterValidator(no_controls),
        Field(
            description=f"who decided, e.g. xianghe-community-07; {NO_CONTROLS}",
            examples=["xianghe-community-07"],
        ),
    ]
    # as_of before valid_until: valid_until's check needs it.
    as_of: Annotated[
        dt.date | None,
        Field(
            strict=True,
            description=(
                "the month's as_of the decision is about, YYYY-MM-DD (default: today); from "
                f"{EARLIEST_AS_OF} (the working-day calendar's first year) to {AS_OF_DAYS_AHEAD} "
                "days after today (Beijing date); exported as the label's as_of"
            ),
        ),
    ] = None
    valid_until: Annotated[
        dt.date,
        Field(
            strict=True,
            description=(
                "last day the review is in force, YYYY-MM-DD: from today (and not before as_of) "
                "to a year after today (Beijing date)"
            ),
        ),
    ]

    @field_validator("evidence")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("evidence codes repeat; list each once")
        return value

    @field_validator("as_of")
    @classmethod
    def _as_of_in_range(cls, value: dt.date | None) -> dt.date | None:
        if value is None:
            return value
        today = local_today()
        if value < EARLIEST_AS_OF:
            raise ValueError(
                f"as_of {value} is before {EARLIEST_AS_OF}, the working-day calendar's first year"
            )
        if value > latest_as_of(today):
            raise ValueError(
                f"as_of {value} is more than {AS_OF_DAYS_AHEAD} days ahead "
                f"(at most {latest_as_of(today)}; today is {today} in Beijing)"
            )
        return value

    @field_validator("valid_until")
    @classmethod
    def _in_range(cls, value: dt.date, info: ValidationInfo) -> dt.date:
        today = local_today()
        as_of = info.data.get("as_of")
        if as_of is not None and value < as_of:
            raise ValueError(f"valid_until {value} is before the review's as_of {as_of}")
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
    idempotency_key: str | None = None  # the client's key, when it sent one (never shown)

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
# Hashed only when set: a review recorded without a key (every review before migration 0002)
# hashes exactly as before, so old chains verify unchanged; a key that was recorded cannot be
# edited or cleared unnoticed (it decides what a replay answers).
HASHED_WHEN_SET = ("idempotency_key",)


def chain_hash(record: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a review's content and the hash before it."""
    content = {k: record[k] for k in HASHED}
    content |= {k: record[k] for k in HASHED_WHEN_SET if record.get(k) is not None}
    content["evidence"] = list(content["evidence"])
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    n_reviews: int
    head_hash: str
    problem: str = ""  # the first broken record, in words
    # Append-only triggers found missing or disabled (the chain may still be intact).
    missing_triggers: tuple[str, ...] = ()
    restored_triggers: tuple[str, ...] = ()  # re-created by verify(restore_triggers=True)


@dataclass(frozen=True)
class Recorded:
    """What `ReviewStore.record` did: the review as stored, and whether the request was a replay
    of an Idempotency-Key already recorded (then `review` is the first result, unchanged)."""

    review: Review
    replayed: bool


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
    sa.Column("idempotency_key", sa.String(128), nullable=True, unique=True),  # migration 0002
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
        idempotency_key=r.idempotency_key,
    )


def _same_request(stored: Review, review: ReviewRequest) -> bool:
    """Whether `review` asks for what `stored` records (a replay). A replay that leaves as_of out
    matches whatever as_of the first request got, given or defaulted."""
    return (
        stored.person_id == review.person_id
        and stored.decision == review.decision
        and stored.reason == review.reason
        and stored.evidence == tuple(review.evidence)
        and stored.reviewer == review.reviewer
        and stored.valid_until == review.valid_until.isoformat()
        and (review.as_of is None or stored.as_of == review.as_of.isoformat())
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
            self._check_tables(con)
            config.attributes["connection"] = con
            command.upgrade(config, "head")

    def _check_tables(self, con: sa.Connection) -> None:
        """A store whose tables were partly dropped is refused in one line, never re-created
        (migrating would raise a raw error, or start a fresh trail over the remains)."""
        present = set(sa.inspect(con).get_table_names()) & set(STORE_TABLES)
        missing = [t for t in STORE_TABLES if t not in present]
        if present and missing:
            what = TABLE_ROLES
            raise ReviewStoreDamaged(
                f"review store {self.url.render_as_string(hide_password=True)} is damaged: its "
                + " and ".join(f"{t} table ({what[t]})" for t in missing)
                + (" is" if len(missing) == 1 else " are")
                + " missing, dropped outside the project; the audit trail cannot be verified: "
                "restore the store from its backup (docs/guide/manual-route.md, Stores)"
            )

    def close(self) -> None:
        self._writer.dispose()
        if self._reader is not self._writer:
            self._reader.dispose()

    # --- writing ----------------------------------------------------------------------------

    def add(self, review: ReviewRequest, *, now: dt.datetime | None = None) -> Review:
        """Append one review at the head of the chain; returns it as stored."""
        return self.record(review, now=now).review

    def record(
        self,
        review: ReviewRequest,
        *,
        idempotency_key: str | None = None,
        now: dt.datetime | None = None,
    ) -> Recorded:
        """Append one review, or, when `idempotency_key` was recorded before with the same review,
        return that first review unchanged (a replay). The same key with a different review is an
        IdempotencyConflict. Replays are decided under the append lock, so concurrent replays of
        one key store it once (and a unique index on the key backs that up)."""
        if idempotency_key is not None and (why := idempotency_key_problem(idempotency_key)):
            raise UserError(f"Idempotency-Key {why}")
        now = now or dt.datetime.now(dt.UTC)
        # One appender per process at a time: the others wait here, in order, instead of polling
        # SQLite's busy handler (which made 50 concurrent appenders slow and some time out).
        with self._lock, self._writer.begin() as con:
            head = con.execute(
                sa.select(head_table.c.seq, head_table.c.hash)
                .where(head_table.c.id == 1)
                .with_for_update()
            ).one()
            if idempotency_key is not None:
                first = con.execute(
                    sa.select(reviews_table).where(
                        reviews_table.c.idempotency_key == idempotency_key
                    )
                ).one_or_none()
                if first is not None:
                    if not _same_request(_row(first), review):
                        raise IdempotencyConflict(
                            "this Idempotency-Key was already used for a different review; "
                            "send a new key with a new review (a retry must resend the same body)"
                        )
                    return Recorded(_row(first), replayed=True)
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
                "idempotency_key": idempotency_key,
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
        return Recorded(Review(**{**record, "evidence": tuple(record["evidence"])}), replayed=False)

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

    def verify(self, *, restore_triggers: bool = False) -> ChainReport:
        """Recompute the chain; the first record that does not hold is named (inserted, deleted or
        edited), and append-only triggers found missing or disabled are listed. With
        `restore_triggers`, missing triggers are re-created first and listed as restored."""
        missing, restored = self.missing_triggers(), ()
        if missing and restore_triggers:
            self._restore_triggers()
            restored, missing = missing, self.missing_triggers()
        report = self._verify_chain()
        return dataclasses.replace(report, missing_triggers=missing, restored_triggers=restored)

    def _verify_chain(self) -> ChainReport:
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
                if r.seq < expected_seq:  # seqs are unique and ordered: only below #1
                    return self._broken(
                        n, f"{where} is numbered below the chain's first review #1: it was inserted"
                    )
                if head is not None and r.seq > head.seq and expected_seq > head.seq:
                    return self._broken(
                        n,
                        f"{where} lies beyond the chain head (review #{head.seq}): it was inserted "
                        "(or the head was set back)",
                    )
                if r.seq > expected_seq:
                    if r.prev_hash == expected_prev:
                        return self._broken(
                            n,
                            f"{where} chains directly to the review before #{expected_seq}, "
                            f"skipping its number: it was inserted (or renumbered)",
                        )
                    gap = (
                        f"review #{expected_seq} is"
                        if r.seq == expected_seq + 1
                        else f"reviews #{expected_seq} to #{r.seq - 1} are"
                    )
                    return self._broken(n, f"{gap} missing before {where}: deleted")
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
        if head.seq != n:
            return self._broken(
                n,
                f"the chain ends at review #{n} but its head records #{head.seq}: "
                f"review(s) after #{n} were deleted (or the head was altered)",
            )
        if head.hash != expected_prev:
            return self._broken(
                n,
                f"the chain head's hash is not review #{n}'s: the head was altered "
                f"(or review #{n} replaced)",
            )
        return ChainReport(ok=True, n_reviews=n, head_hash=expected_prev)

    def missing_triggers(self) -> tuple[str, ...]:
        """The append-only triggers that are gone (or disabled, on PostgreSQL)."""
        with self._reader.connect() as con:
            if self.backend == "postgresql":
                rows = con.execute(
                    sa.text(
                        "SELECT tgname, tgenabled FROM pg_trigger "
                        "WHERE tgrelid = 'reviews'::regclass AND NOT tgisinternal"
                    )
                ).all()
                found = {name: enabled != "D" for name, enabled in rows}
            else:
                rows = con.execute(
                    sa.text(
                        "SELECT name FROM sqlite_master WHERE type = 'trigger' "
                        "AND tbl_name = 'reviews'"
                    )
                ).all()
                found = {name: True for (name,) in rows}
        return tuple(
            name if name not in found else f"{name} (disabled)"
            for name in TRIGGERS[self.backend]
            if not found.get(name, False)
        )

    def _restore_triggers(self) -> None:
        """Re-create the append-only triggers as migration 0001 creates them."""
        with self._lock, self._writer.begin() as con:
            for statement in RESTORE_TRIGGERS[self.backend]:
                con.exec_driver_sql(statement)

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
