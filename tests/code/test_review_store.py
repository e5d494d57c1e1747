"""The review store on SQLite and on a real PostgreSQL: append-only, chained, serialised, private.

Tampering is done the way an operator would do it behind the project's back: the `sqlite3` shell
and `psql`, dropping the append-only triggers first, then UPDATE or DELETE.
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from commuter_badge.features.workdays import LIBRARY_YEARS
from commuter_badge.stores.reviews import (
    _MIGRATIONS,
    EARLIEST_AS_OF,
    EVIDENCE_CODES,
    GENESIS,
    HASHED,
    IdempotencyConflict,
    ReviewRequest,
    ReviewStore,
    ReviewStoreDamaged,
    a_year_after,
    chain_hash,
    latest_as_of,
    local_today,
    store_url,
)
from tests.needs import missing_server
from tests.postgres import fresh_database

TODAY = local_today()


def request(person_id: str = "p1", decision: str = "grant", **extra) -> ReviewRequest:
    body = {
        "person_id": person_id,
        "decision": decision,
        "reason": "residence and employment proof checked",
        "evidence": ["residence_permit", "employment_contract"],
        "reviewer": "xianghe-community-07",
        "valid_until": (TODAY + dt.timedelta(days=30)).isoformat(),
        **extra,
    }
    return ReviewRequest.model_validate_json(json.dumps(body))


@pytest.fixture(scope="module")
def pg(shared_postgres):
    return shared_postgres


class Backend:
    """A fresh store URL and a way to run SQL on it behind the project's back."""

    def __init__(self, kind: str, tmp_path: Path, pg=None, name: str = "") -> None:
        self.kind = kind
        if kind == "sqlite":
            self.path = tmp_path / "reviews.db"
            self.url = f"sqlite:///{self.path}"
        else:
            self.pg = pg
            self.url = fresh_database(pg, name)
            self.db = name

    def sql(self, statement: str) -> str:
        if self.kind == "sqlite":
            done = subprocess.run(
                ["sqlite3", str(self.path), statement], capture_output=True, text=True, check=False
            )
            if done.returncode != 0:
                raise RuntimeError(done.stderr.strip())
            return done.stdout.strip()
        db_pg = type(self.pg)(url=self.url, bin=self.pg.bin, port=self.pg.port)
        return _psql_on(db_pg, self.db, statement)

    def drop_triggers(self) -> None:
        if self.kind == "sqlite":
            self.sql("DROP TRIGGER reviews_no_update; DROP TRIGGER reviews_no_delete;")
        else:
            self.sql("DROP TRIGGER reviews_no_update_delete ON reviews")


def _psql_on(pg, db: str, statement: str) -> str:
    psql = pg.bin / "psql" if (pg.bin / "psql").exists() else Path(shutil.which("psql"))
    done = subprocess.run(
        [str(psql), "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", "-d", db,
         "-v", "ON_ERROR_STOP=1", "-qAt", "-c", statement],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip())
    return done.stdout.strip()


_counter = iter(range(10**6))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.servers)])
def backend(request, tmp_path):
    if request.param == "sqlite":
        if shutil.which("sqlite3") is None:
            missing_server("the sqlite3 shell is not installed (apt-get install sqlite3)")
        return Backend("sqlite", tmp_path)
    pg = request.getfixturevalue("pg")
    return Backend("postgresql", tmp_path, pg, name=f"reviews_{next(_counter)}")


def filled(backend: Backend, n: int = 5) -> ReviewStore:
    store = ReviewStore(backend.url)
    for i in range(n):
        store.add(request(f"p{i % 3}", "grant" if i % 2 == 0 else "revoke"))
    return store


# --- behaviour on both backends -----------------------------------------------------------------


def test_appends_chain_and_latest_in_force_wins(backend):
    store = filled(backend, 5)
    report = store.verify()
    assert report.ok, report.problem
    assert report.n_reviews == 5
    history = store.history("p0")
    assert [r.seq for r in history] == sorted(r.seq for r in history), "oldest first"
    assert [r.decision for r in history] == ["grant", "revoke"], "p0 got reviews #1 and #4"
    found = store.in_force(["p0", "p1", "nobody"])
    assert found["p0"].decision == "revoke", "the latest review wins"
    assert "nobody" not in found
    assert store.counts()["grant"] == 3
    assert store.counts()["revoke"] == 2


def test_expired_review_is_not_in_force(backend):
    store = ReviewStore(backend.url)
    store.add(request("p1", "grant", valid_until=TODAY.isoformat()))
    assert "p1" in store.in_force(["p1"], TODAY), "in force through its valid_until day"
    assert "p1" not in store.in_force(["p1"], TODAY + dt.timedelta(days=1)), "expired next day"


def test_triggers_refuse_update_and_delete(backend):
    filled(backend, 2)
    with pytest.raises(RuntimeError, match="append-only"):
        backend.sql("UPDATE reviews SET decision = 'revoke' WHERE seq = 1")
    with pytest.raises(RuntimeError, match="append-only"):
        backend.sql("DELETE FROM reviews WHERE seq = 2")


def test_update_behind_the_back_is_named(backend):
    store = filled(backend, 5)
    backend.drop_triggers()
    backend.sql("UPDATE reviews SET decision = 'grant' WHERE seq = 4")
    report = store.verify()
    assert not report.ok
    assert "review #4" in report.problem, report.problem
    assert "edited" in report.problem, report.problem


def test_update_with_recomputed_hash_breaks_the_next_link(backend):
    store = filled(backend, 5)
    third = store.history("p2")[0]
    assert third.seq == 3
    record = {k: getattr(third, k) for k in HASHED} | {"reason": "forged"}
    forged = chain_hash(record)
    backend.drop_triggers()
    backend.sql(f"UPDATE reviews SET reason = 'forged', hash = '{forged}' WHERE seq = 3")
    report = store.verify()
    assert not report.ok
    assert "review #4" in report.problem, report.problem
    assert "#3 was altered" in report.problem, report.problem


def test_delete_in_the_middle_is_named(backend):
    store = filled(backend, 5)
    backend.drop_triggers()
    backend.sql("DELETE FROM reviews WHERE seq = 2")
    report = store.verify()
    assert not report.ok
    assert "review #2 is missing" in report.problem, report.problem


def test_delete_of_the_last_review_is_detected(backend):
    store = filled(backend, 5)
    backend.drop_triggers()
    backend.sql("DELETE FROM reviews WHERE seq = 5")
    report = store.verify()
    assert not report.ok
    assert "ends at review #4" in report.problem, report.problem


def _append_many(url: str, worker: int, n: int) -> None:
    store = ReviewStore(url)
    for i in range(n):
        store.add(request(f"w{worker}-{i}"))
    store.close()


def test_concurrent_writers_never_fork_the_chain(backend):
    ReviewStore(backend.url).close()  # migrated once; the writers race on appends
    workers, each = 4, 25
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(backend.url, w, each)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    store = ReviewStore(backend.url)
    report = store.verify()
    assert report.ok, report.problem
    assert report.n_reviews == workers * each, "no review lost"
    ids = {r.person_id for r in store.all()}
    assert len(ids) == workers * each, "no review duplicated"


def _hold_open(url: str, opened, go, done) -> None:
    store = ReviewStore(url)  # opened (and migrated) while another process holds the store open
    store.add(request("holder-0"))
    opened.set()
    go.wait(60)
    for i in range(1, 20):
        store.add(request(f"holder-{i}"))
    done.set()
    store.close()


def test_a_store_closed_elsewhere_leaves_an_open_stores_wal_alone(tmp_path):
    # CI once found review #45 chained to a review that was not #44. Cause: opening the store
    # re-opened the database file to chmod it, and closing that descriptor dropped SQLite's own
    # locks in that process; a store closing in another process then took itself for the last one
    # and deleted the WAL and -shm under the open store, and a later store got a WAL of its own.
    path = tmp_path / "reviews.db"
    url = f"sqlite:///{path}"
    ReviewStore(url).close()
    ctx = multiprocessing.get_context("spawn")
    opened, go, done = ctx.Event(), ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_open, args=(url, opened, go, done))
    holder.start()
    try:
        assert opened.wait(60), "the holder did not open the store"
        other = ReviewStore(url)
        other.add(request("other"))
        other.close()
        wal = {p.name for p in tmp_path.iterdir()} & {"reviews.db-wal", "reviews.db-shm"}
        assert wal == {"reviews.db-wal", "reviews.db-shm"}, "a store still open lost its WAL"
        late = ReviewStore(url)  # joins while the holder appends
        go.set()
        n = 0
        while not done.is_set() and n < 200:
            late.add(request(f"late-{n}"))
            n += 1
        holder.join(60)
        assert holder.exitcode == 0
        report = late.verify()
        assert report.ok, report.problem
        assert report.n_reviews == 1 + 20 + n, "every append is in the chain"
    finally:
        go.set()
        holder.join(60)


def test_fresh_store_opened_by_several_workers_at_once_migrates_once(backend):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(backend.url, w, 2)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    report = ReviewStore(backend.url).verify()
    assert report.ok, report.problem
    assert report.n_reviews == 6


def test_migrations_are_recorded_and_idempotent(backend):
    ReviewStore(backend.url).close()
    ReviewStore(backend.url).close()
    assert backend.sql("SELECT version_num FROM alembic_version") == "0002"
    assert backend.sql("SELECT seq FROM chain_head") == "0"


# --- SQLite specifics, validation, the hash ---------------------------------------------------


def test_sqlite_files_are_owner_only_and_wal(tmp_path):
    path = tmp_path / "private" / "reviews.db"
    store = ReviewStore(f"sqlite:///{path}")
    store.add(request())
    files = [p for p in path.parent.iterdir() if p.name.startswith("reviews.db")]
    assert {p.name for p in files} >= {"reviews.db", "reviews.db-wal", "reviews.db-shm"}
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, f"{p.name} is readable by others"
    mode = subprocess.run(
        ["sqlite3", str(path), "PRAGMA journal_mode"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert mode == "wal"


def test_store_holds_nothing_but_the_review_fields(tmp_path):
    store = ReviewStore(f"sqlite:///{tmp_path / 'r.db'}")
    store.add(request())
    columns = subprocess.run(
        ["sqlite3", str(tmp_path / "r.db"), "SELECT name FROM pragma_table_info('reviews')"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    # The client's Idempotency-Key is an opaque token of printable ASCII (a UUID, say).
    assert set(columns) == set(HASHED) | {"hash", "idempotency_key"}, "no document column"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"decision": "maybe"}, "decision"),
        ({"evidence": ["passport_scan"]}, "evidence"),
        ({"evidence": []}, "evidence"),
        ({"evidence": ["rail_pass", "rail_pass"]}, "evidence"),
        ({"reason": "x" * 501}, "reason"),
        ({"reason": ""}, "reason"),
        ({"reviewer": ""}, "reviewer"),
        ({"reviewer": "   "}, "reviewer"),
        ({"valid_until": (TODAY - dt.timedelta(days=1)).isoformat()}, "valid_until"),
        ({"valid_until": (a_year_after(TODAY) + dt.timedelta(days=1)).isoformat()}, "valid_until"),
        ({"valid_until": "next week"}, "valid_until"),
        ({"person_id": ""}, "person_id"),
        ({"document": "base64..."}, "document"),
        # issue 27: control characters reach an operator's terminal; label dates out of range
        ({"reason": "checked\x1b[8m hidden"}, "reason"),
        ({"reason": "line one\r\nline two"}, "reason"),
        ({"reason": "abc\u202edef"}, "reason"),
        ({"reviewer": "office\x00"}, "reviewer"),
        ({"reviewer": "office\u2066-7"}, "reviewer"),
        ({"person_id": "p1\x1b[2J"}, "person_id"),
        ({"person_id": "p\u202e1"}, "person_id"),
        ({"person_id": "p\x9b1"}, "person_id"),
        ({"person_id": "p\t1"}, "person_id"),
        ({"as_of": "1900-01-01"}, "as_of"),
        ({"as_of": "9999-12-31"}, "as_of"),
        ({"as_of": (EARLIEST_AS_OF - dt.timedelta(days=1)).isoformat()}, "as_of"),
        ({"as_of": (latest_as_of(TODAY) + dt.timedelta(days=1)).isoformat()}, "as_of"),
        (
            {
                "as_of": (TODAY + dt.timedelta(days=20)).isoformat(),
                "valid_until": (TODAY + dt.timedelta(days=10)).isoformat(),
            },
            "valid_until",
        ),
    ],
)
def test_validation_names_the_field(change, field):
    with pytest.raises(ValidationError) as info:
        request(**change)
    assert info.value.errors()[0]["loc"][0] == field, info.value.errors()


def test_validation_accepts_the_edges():
    assert request(valid_until=TODAY.isoformat()).valid_until == TODAY
    assert request(valid_until=a_year_after(TODAY).isoformat()).valid_until == a_year_after(TODAY)
    assert request(reason="x" * 500, evidence=list(EVIDENCE_CODES)).reason == "x" * 500
    assert request(as_of=EARLIEST_AS_OF.isoformat()).as_of == EARLIEST_AS_OF
    assert request(as_of="2021-10-20").as_of == dt.date(2021, 10, 20), "the simulated months"
    ahead = latest_as_of(TODAY)
    assert request(as_of=ahead.isoformat(), valid_until=ahead.isoformat()).as_of == ahead
    text = "居住证和劳动合同已核对 — Zeugnis geprüft; \"quoted\" 'ok' \\ back"
    assert request(reason=text, reviewer="香河社区-07", person_id="p 北京 ü").reason == text


def test_earliest_as_of_is_the_calendars_first_year():
    assert dt.date(min(LIBRARY_YEARS), 1, 1) == EARLIEST_AS_OF


def test_control_character_errors_name_the_character_not_the_text():
    with pytest.raises(ValidationError) as info:
        request(reason="secret\x1bname")
    message = info.value.errors()[0]["msg"]
    assert "U+001B" in message, message
    assert "secret" not in message, message


# --- Idempotency-Key (issue 27) ------------------------------------------------------------------


def test_a_replayed_key_answers_the_first_review_and_stores_nothing(backend):
    store = ReviewStore(backend.url)
    first = store.record(request("p1"), idempotency_key="key-0000-aaaa")
    again = store.record(request("p1"), idempotency_key="key-0000-aaaa")
    assert not first.replayed
    assert again.replayed
    assert again.review == first.review, "the first result: same case_id, recorded_at, seq"
    as_of = first.review.as_of  # the default (today) recorded with it
    assert store.record(request("p1", as_of=as_of), idempotency_key="key-0000-aaaa").replayed
    assert store.verify().n_reviews == 1
    store.add(request("p1"))
    store.add(request("p1"))
    assert store.verify().n_reviews == 3, "without a key, each request is a review"
    for changed in (
        request("p2"),
        request("p1", "revoke"),
        request("p1", reason="another reason"),
        request("p1", evidence=["rail_pass"]),
        request("p1", valid_until=(TODAY + dt.timedelta(days=31)).isoformat()),
        request("p1", as_of="2021-10-20"),
    ):
        with pytest.raises(IdempotencyConflict, match="different review"):
            store.record(changed, idempotency_key="key-0000-aaaa")
    assert store.verify().ok
    assert store.verify().n_reviews == 3
    assert backend.sql("SELECT count(*) FROM reviews WHERE idempotency_key IS NOT NULL") == "1"


def _replay_many(url: str, worker: int, n: int) -> None:
    store = ReviewStore(url)
    for i in range(n):
        store.record(request("p-retry"), idempotency_key="retry-key-0001")
        store.record(request(f"w{worker}-{i}"), idempotency_key=f"own-key-{worker}-{i}")
    store.close()


def test_concurrent_replays_of_one_key_store_it_once(backend):
    ReviewStore(backend.url).close()
    workers, each = 4, 10
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_replay_many, args=(backend.url, w, each)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    store = ReviewStore(backend.url)
    report = store.verify()
    assert report.ok, report.problem
    assert report.n_reviews == 1 + workers * each
    assert len(store.history("p-retry")) == 1


def test_the_key_is_unique_in_the_database_too(backend):
    filled(backend, 0).record(request("p1"), idempotency_key="unique-key-01")
    with pytest.raises(RuntimeError, match=r"(?i)unique"):
        backend.sql(
            "INSERT INTO reviews (seq, case_id, person_id, decision, reason, evidence, reviewer, "
            "valid_until, as_of, recorded_at, prev_hash, hash, idempotency_key) VALUES (2, 'c2', "
            "'p1', 'grant', 'r', '[]', 'x', '2030-01-01', '2021-10-20', 't', 'h', 'h', "
            "'unique-key-01')"
        )


def test_an_edited_or_cleared_key_breaks_the_chain(backend):
    store = filled(backend, 2)
    store.record(request("p9"), idempotency_key="edited-key-01")
    store.add(request("p9"))
    backend.drop_triggers()
    backend.sql("UPDATE reviews SET idempotency_key = NULL WHERE seq = 3")
    report = store.verify()
    assert not report.ok
    assert "review #3" in report.problem, report.problem
    assert "edited" in report.problem, report.problem


def _at_revision(url: str, revision: str) -> None:
    engine = sa.create_engine(store_url(url))
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as con:
        config.attributes["connection"] = con
        command.upgrade(config, revision)
    engine.dispose()


def test_a_store_of_migration_0001_upgrades_and_its_chain_still_verifies(backend):
    _at_revision(backend.url, "0001")
    prev = GENESIS
    for seq in (1, 2):  # reviews as the code before the key recorded them
        record = {
            "seq": seq, "case_id": f"00000000-0000-0000-0000-00000000000{seq}",
            "person_id": f"old-{seq}", "decision": "grant", "reason": "checked",
            "evidence": ["rail_pass"], "reviewer": "office-1", "valid_until": "2030-01-01",
            "as_of": "2021-10-20", "recorded_at": "2021-10-21T00:00:00.000000+00:00",
            "prev_hash": prev,
        }  # fmt: skip
        prev = chain_hash(record)
        backend.sql(
            "INSERT INTO reviews (seq, case_id, person_id, decision, reason, evidence, reviewer, "
            "valid_until, as_of, recorded_at, prev_hash, hash) VALUES "
            f"({seq}, '{record['case_id']}', '{record['person_id']}', 'grant', 'checked', "
            f"'[\"rail_pass\"]', 'office-1', '2030-01-01', '2021-10-20', "
            f"'{record['recorded_at']}', '{record['prev_hash']}', '{prev}')"
        )
        backend.sql(f"UPDATE chain_head SET seq = {seq}, hash = '{prev}' WHERE id = 1")
    store = ReviewStore(backend.url)  # migrates to 0002
    assert backend.sql("SELECT version_num FROM alembic_version") == "0002"
    assert store.verify().ok, "old reviews hash as before: the key is hashed only when set"
    store.record(request("new"), idempotency_key="after-the-upgrade")
    store.add(request("new"))
    report = store.verify()
    assert report.ok, report.problem
    assert report.n_reviews == 4


# --- tampering named (issue 27) -------------------------------------------------------------------

_INSERT = (
    "INSERT INTO reviews (seq, case_id, person_id, decision, reason, evidence, reviewer, "
    "valid_until, as_of, recorded_at, prev_hash, hash) VALUES ({seq}, 'forged-{seq}', 'p-forged', "
    "'grant', 'forged', '[\"other\"]', 'nobody', '2030-01-01', '2021-10-20', "
    "'2021-10-21T00:00:00+00:00', '{prev}', '{hash}')"
)


@pytest.mark.parametrize("seq", [6, 7, 300])
def test_an_inserted_row_after_the_head_is_named_inserted(backend, seq):
    store = filled(backend, 5)
    head = store.verify().head_hash
    # Chained properly to the last review (the forger read the head), head left alone.
    record = {
        "seq": seq, "case_id": f"forged-{seq}", "person_id": "p-forged", "decision": "grant",
        "reason": "forged", "evidence": ["other"], "reviewer": "nobody",
        "valid_until": "2030-01-01", "as_of": "2021-10-20",
        "recorded_at": "2021-10-21T00:00:00+00:00", "prev_hash": head,
    }  # fmt: skip
    backend.sql(
        _INSERT.format(seq=seq, prev=head, hash=chain_hash(record))
    )  # no trigger in the way
    report = store.verify()
    assert not report.ok
    assert f"review #{seq} (case forged-{seq})" in report.problem, report.problem
    assert "inserted" in report.problem, report.problem
    assert "deleted" not in report.problem, report.problem


def test_an_inserted_row_with_its_head_moved_is_named_inserted(backend):
    store = filled(backend, 5)
    backend.sql(_INSERT.format(seq=7, prev=store.verify().head_hash, hash="f" * 64))
    backend.sql("UPDATE chain_head SET seq = 7 WHERE id = 1")
    report = store.verify()
    assert not report.ok
    assert "review #7" in report.problem, report.problem
    assert "inserted" in report.problem, report.problem


def test_an_inserted_row_below_the_first_is_named_inserted(backend):
    store = filled(backend, 3)
    backend.sql(_INSERT.format(seq=0, prev=GENESIS, hash="f" * 64))
    report = store.verify()
    assert not report.ok
    assert "review #0" in report.problem, report.problem
    assert "inserted" in report.problem, report.problem


@pytest.mark.parametrize(("table", "role"), [("reviews", "the reviews"), ("chain_head", "seq")])
def test_a_dropped_table_is_one_clear_line(backend, table, role):
    filled(backend, 3).close()
    backend.sql(f"DROP TABLE {table}")
    with pytest.raises(ReviewStoreDamaged) as info:
        ReviewStore(backend.url)
    message = str(info.value)
    assert f"{table} table" in message, message
    assert role in message, message
    assert "missing" in message, message
    assert "\n" not in message, message
    assert "sqlalchemy" not in message.lower(), message
    assert "backup" in message, message


def test_missing_triggers_are_reported_and_restored_on_request(backend):
    store = filled(backend, 2)
    assert store.verify().missing_triggers == ()
    backend.drop_triggers()
    report = store.verify()
    assert report.ok, "the chain itself is intact"
    expected = {"sqlite": ("reviews_no_update", "reviews_no_delete")}.get(
        backend.kind, ("reviews_no_update_delete",)
    )
    assert report.missing_triggers == expected
    restored = store.verify(restore_triggers=True)
    assert restored.restored_triggers == expected
    assert restored.missing_triggers == ()
    with pytest.raises(RuntimeError, match="append-only"):
        backend.sql("UPDATE reviews SET decision = 'revoke' WHERE seq = 1")
    with pytest.raises(RuntimeError, match="append-only"):
        backend.sql("DELETE FROM reviews WHERE seq = 2")


def test_a_disabled_postgresql_trigger_is_reported(backend):
    if backend.kind != "postgresql":
        pytest.skip("SQLite triggers cannot be disabled, only dropped")
    store = filled(backend, 1)
    backend.sql("ALTER TABLE reviews DISABLE TRIGGER reviews_no_update_delete")
    assert store.verify().missing_triggers == ("reviews_no_update_delete (disabled)",)
    assert store.verify(restore_triggers=True).missing_triggers == ()
    with pytest.raises(RuntimeError, match="append-only"):
        backend.sql("DELETE FROM reviews WHERE seq = 1")


_record = st.fixed_dictionaries(
    {
        "seq": st.integers(1, 10**6),
        "case_id": st.uuids().map(str),
        "person_id": st.text(min_size=1, max_size=20),
        "decision": st.sampled_from(["grant", "revoke"]),
        "reason": st.text(min_size=1, max_size=50),
        "evidence": st.lists(st.sampled_from(list(EVIDENCE_CODES)), min_size=1, unique=True),
        "reviewer": st.text(min_size=1, max_size=20),
        "valid_until": st.dates().map(dt.date.isoformat),
        "as_of": st.dates().map(dt.date.isoformat),
        "recorded_at": st.datetimes().map(dt.datetime.isoformat),
        "prev_hash": st.text("0123456789abcdef", min_size=64, max_size=64),
    }
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(record=_record, field=st.sampled_from(HASHED), data=st.data())
def test_any_change_of_a_hashed_field_changes_the_hash(record, field, data):
    other = data.draw(_record.map(lambda r: r[field]).filter(lambda v: v != record[field]))
    assert chain_hash(record) != chain_hash({**record, field: other}), field
