"""A missing server skips a test in the edit loop and fails it under `make test`."""

from __future__ import annotations

import pytest

from tests.needs import missing_server


def test_missing_server_skips_in_the_edit_loop(monkeypatch):
    monkeypatch.delenv("COMMUTER_TESTS_REQUIRE_SERVERS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no java"):
        missing_server("no java")


def test_missing_server_fails_under_make_test(monkeypatch):
    monkeypatch.setenv("COMMUTER_TESTS_REQUIRE_SERVERS", "1")
    with pytest.raises(pytest.fail.Exception, match=r"no java \(make test requires it\)"):
        missing_server("no java")


def test_make_test_requires_the_servers():
    from pathlib import Path

    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    test_rule = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "COMMUTER_TESTS_REQUIRE_SERVERS=1" in test_rule, (
        "make test must fail on a missing server"
    )
