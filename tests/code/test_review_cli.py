"""`commuter reviews add / list / export / verify` on a SQLite store in the test's directory."""

from __future__ import annotations

import datetime as dt
import subprocess

import pandas as pd
import pytest
from typer.testing import CliRunner

from commuter_badge.cli.main import app
from commuter_badge.serving.reviews import local_today

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
