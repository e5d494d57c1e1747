"""Option errors name the option and the allowed range (issue 15 item 7), through the real CLI."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from commuter_badge.cli.main import app
from commuter_badge.models.core.threshold import negatives_needed


@pytest.mark.parametrize("value", ["1e-300", "0.9"])
def test_target_fpr_outside_the_range_is_named(tmp_path, value):
    result = CliRunner().invoke(
        app,
        ["train", "--trips", str(tmp_path), "--labels", "x.csv", "--as-of", "2021-10-20"]
        + ["--target-fpr", value],
    )
    assert result.exit_code == 2, result.output
    text = result.output.lower()
    assert "target fpr" in text, result.output
    assert "allowed range 0.0001 to 0.5" in result.output, result.output
    assert "Traceback" not in result.output
    assert "ZeroDivision" not in result.output


@pytest.mark.parametrize("day", ["0001-01-05", "9999-12-31"])
def test_as_of_outside_the_supported_range_is_named(tmp_path, day):
    result = CliRunner().invoke(
        app, ["features", "--trips", str(tmp_path), "--as-of", day, "--out", "f.csv"]
    )
    assert result.exit_code == 2, result.output
    assert f"--as-of {day} is outside the supported range" in result.output, result.output
    assert "OverflowError" not in result.output


def test_negatives_needed_is_finite_for_tiny_targets():
    # log(1 - 1e-300) is 0 in floating point; log1p keeps the count finite and monotone
    assert negatives_needed(0.01) == 299
    assert negatives_needed(1e-12) > negatives_needed(1e-6) > negatives_needed(1e-4)


@pytest.mark.parametrize("args", [["promote", "latest"], ["rollback", "--to", "1.0"]])
def test_a_version_that_is_not_a_number_is_refused_in_one_line(tmp_path, monkeypatch, args):
    # Given an empty store, when a version is named by anything but its number,
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    result = CliRunner().invoke(app, args)
    # then one line says what a version is (before, `promote latest` asked the registry for it).
    assert result.exit_code == 2, result.output
    assert "is not a model version; pass its number" in result.output, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "env", "said"),
    [
        (["--include", "badge_expected_on,foo"], {}, "'foo' cannot be included; choose from"),
        (["--include", "foo", "--lang", "zh"], {}, "不能包含 'foo'"),
        (["--lang", "fr"], {}, "language 'fr' is not one of zh, en"),
        ([], {"COMMUTER_LANG": "de"}, "COMMUTER_LANG: language 'de' is not one of zh, en"),
        (["--include", "recourse", "--engine", "spark"], {}, "duckdb engine only"),
    ],
)
def test_score_person_side_options_are_checked_first(tmp_path, args, env, said):
    # Refused before any model or trips are read (neither exists here).
    result = CliRunner().invoke(
        app,
        ["score", "--trips", str(tmp_path / "none"), "--as-of", "2021-10-20"]
        + ["--out", str(tmp_path / "s.csv"), *args],
        env=env,
    )
    assert result.exit_code == 2, result.output
    assert said in result.output, result.output
    assert not (tmp_path / "s.csv").exists()
