"""`commuter reviews add / list / export / verify` on a SQLite store in the test's directory."""

from __future__ import annotations

import datetime as dt
import json
import subprocess

import pandas as pd
import pytest
from typer.testing import CliRunner

from commuter_badge.cli.main import app
from commuter_badge.stores.reviews import local_today

UNTIL = (local_today() + dt.timedelta(days=20)).isoformat()


@pytest.fixture
def reviews_url(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'reviews.db'}"
    monkeypatch.setenv("COMMUTER_REVIEWS", url)
    return tmp_path / "reviews.db"


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def add(person: str, decision: str, *extra: str):
    return cli(
        "reviews", "add", "--person-id", person, "--decision", decision, "--reason", "checked",
        "--evidence", "rail_pass", "--reviewer", "office-1", "--valid-until", UNTIL, *extra,
    )  # fmt: skip


def test_add_list_export_verify(reviews_url, tmp_path):
    assert add("p1", "grant").exit_code == 0
    assert add("p1", "revoke", "--as-of", "2021-10-20").exit_code == 0
    assert add("p2", "grant").exit_code == 0
    listed = cli("reviews", "list", "--person-id", "p1")
    assert listed.exit_code == 0, listed.output
    assert listed.output.index("grant") < listed.output.index("revoke"), "oldest first"
    out = tmp_path / "reviews.csv"
    exported = cli("reviews", "export", "--out", str(out))
    assert exported.exit_code == 0, exported.output
    labels = pd.read_csv(out, dtype=str).set_index("person_id")
    assert labels.loc["p1", "is_commuter"] == "0", "the latest review (revoke) wins"
    assert labels.loc["p1", "as_of"] == "2021-10-20"
    assert labels.loc["p2", "is_commuter"] == "1"
    assert "weight" not in labels.columns, "reviews are unweighted labels: each stands for itself"
    verified = cli("reviews", "verify")
    assert verified.exit_code == 0
    assert "chain intact: 3 reviews" in verified.output


def test_add_names_the_option_that_is_wrong(reviews_url):
    result = add("p1", "maybe")
    assert result.exit_code == 2
    assert "--decision" in result.output
    result = cli(
        "reviews", "add", "--person-id", "p1", "--decision", "grant", "--reason", "x",
        "--evidence", "passport", "--reviewer", "r", "--valid-until", UNTIL,
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--evidence" in result.output
    assert not reviews_url.exists() or cli("reviews", "verify").output.startswith("chain intact: 0")


def test_verify_exits_1_naming_the_edited_review(reviews_url):
    for i in range(3):
        assert add(f"p{i}", "grant").exit_code == 0
    subprocess.run(
        ["sqlite3", str(reviews_url), "DROP TRIGGER reviews_no_update; "
         "UPDATE reviews SET valid_until = '2099-12-31' WHERE seq = 2"],
        check=True,
    )  # fmt: skip
    result = cli("reviews", "verify")
    assert result.exit_code == 1
    assert "review #2" in result.output


def test_reading_commands_create_no_store(reviews_url):
    assert cli("reviews", "verify").exit_code == 0
    assert cli("reviews", "list").exit_code == 0
    assert not reviews_url.exists()
    assert cli("reviews", "export", "--out", "x.csv").exit_code == 2, "nothing to export"


# --- issue 27: control characters, as_of range, idempotency, tamper messages ---------------------


def test_add_refuses_control_characters_in_one_line(reviews_url):
    for option, value in (
        ("--reason", "checked\x1b[8m"),
        ("--reviewer", "office\u202e1"),
        ("--person-id", "p1\r\nfake line"),
    ):
        args = {"--person-id": "p1", "--reason": "checked", "--reviewer": "office-1"}
        args[option] = value
        result = cli(
            "reviews", "add", "--decision", "grant", "--evidence", "rail_pass",
            "--valid-until", UNTIL, *[x for kv in args.items() for x in kv],
        )  # fmt: skip
        assert result.exit_code == 2, result.output
        assert option in result.output, result.output
        assert "control character" in result.output, result.output
        assert "\x1b" not in result.output
        assert "\u202e" not in result.output
    assert not reviews_url.exists(), "nothing recorded"


def test_add_refuses_label_dates_out_of_range(reviews_url):
    for as_of in ("1900-01-01", "9999-12-31"):
        result = add("p1", "grant", "--as-of", as_of)
        assert result.exit_code == 2, result.output
        assert "--as-of" in result.output, result.output


def test_list_escapes_control_characters_of_old_rows(reviews_url):
    from commuter_badge.stores.reviews import ReviewRequest, ReviewStore

    store = ReviewStore(f"sqlite:///{reviews_url}")
    old = ReviewRequest.model_construct(  # a row recorded before the rule, bypassing validation
        person_id="p\x1b[8m1",
        decision="grant",
        reason="hidden\x1b]0;title\x07\r\nfake",
        evidence=["rail_pass"],
        reviewer="office\u202e1\x9b2J",
        valid_until=local_today(),
        as_of=None,
    )
    store.add(old)
    store.close()
    listed = cli("reviews", "list")
    assert listed.exit_code == 0, listed.output
    for raw in ("\x1b", "\u202e", "\x9b", "\r", "\x07"):
        assert raw not in listed.output, repr(listed.output)
    assert "p\\x1b[8m1" in listed.output
    assert "office\\u202e1\\x9b2J" in listed.output
    as_json = cli("reviews", "list", "--json")
    assert as_json.exit_code == 0, as_json.output
    for raw in ("\x1b", "\u202e", "\x9b", "\r", "\x07"):
        assert raw not in as_json.output, repr(as_json.output)
    row = json.loads(as_json.stdout.splitlines()[0])
    assert row["reviewer"] == "office\u202e1\x9b2J", "the JSON still decodes to what is stored"
    assert row["reason"] == old.reason


def test_add_with_an_idempotency_key_records_once(reviews_url):
    first = add("p1", "grant", "--idempotency-key", "9b2d6c1e-retry")
    assert first.exit_code == 0, first.output
    again = add("p1", "grant", "--idempotency-key", "9b2d6c1e-retry")
    assert again.exit_code == 0, again.output
    case = first.output.split()[1]
    assert f"case {case} was already recorded" in again.output, again.output
    other = add("p1", "revoke", "--idempotency-key", "9b2d6c1e-retry")
    assert other.exit_code == 2, other.output
    assert "--idempotency-key" in other.output
    assert "different review" in other.output
    short = add("p1", "grant", "--idempotency-key", "k1")
    assert short.exit_code == 2, short.output
    assert "--idempotency-key" in short.output
    assert "chain intact: 1 reviews" in cli("reviews", "verify").output


def test_verify_names_an_inserted_row(reviews_url):
    for i in range(3):
        assert add(f"p{i}", "grant").exit_code == 0
    subprocess.run(
        ["sqlite3", str(reviews_url), "INSERT INTO reviews (seq, case_id, person_id, decision, "
         "reason, evidence, reviewer, valid_until, as_of, recorded_at, prev_hash, hash) VALUES "
         "(289, 'forged', 'p9', 'grant', 'x', '[]', 'x', '2030-01-01', '2021-10-20', 't', 'h', "
         "'h')"],
        check=True,
    )  # fmt: skip
    result = cli("reviews", "verify")
    assert result.exit_code == 1
    assert "review #289 (case forged)" in result.output, result.output
    assert "inserted" in result.output, result.output
    assert "deleted" not in result.output, result.output


def test_verify_turns_a_dropped_table_into_one_line(reviews_url):
    assert add("p1", "grant").exit_code == 0
    subprocess.run(["sqlite3", str(reviews_url), "DROP TABLE reviews"], check=True)
    result = cli("reviews", "verify")
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: chain broken: review store"), lines[0]
    assert "reviews table" in lines[0]
    assert "Traceback" not in result.output
    listed = cli("reviews", "list")
    assert listed.exit_code == 2
    assert "reviews table (the reviews) is missing" in listed.output, listed.output


def test_verify_reports_missing_triggers_and_restores_them_on_request(reviews_url):
    assert add("p1", "grant").exit_code == 0
    subprocess.run(
        ["sqlite3", str(reviews_url), "DROP TRIGGER reviews_no_update; DROP TRIGGER reviews_no_delete"],
        check=True,
    )  # fmt: skip
    result = cli("reviews", "verify")
    assert result.exit_code == 1, result.output
    assert "append-only triggers missing" in result.output
    assert "reviews_no_update, reviews_no_delete" in result.output
    assert "chain intact: 1 reviews" in result.output, "the chain itself still holds"
    restored = cli("reviews", "verify", "--restore-triggers")
    assert restored.exit_code == 0, restored.output
    assert "restored append-only triggers that were missing: reviews_no_update" in restored.output
    again = cli("reviews", "verify")
    assert again.exit_code == 0, again.output
    assert "restored" not in again.output
    refused = subprocess.run(
        ["sqlite3", str(reviews_url), "DELETE FROM reviews"], capture_output=True, text=True
    )
    assert "append-only" in refused.stderr
