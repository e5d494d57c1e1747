"""Features across New Year 2027, which chinesecalendar 1.11.0 does not cover: with an operator's
schedule file (`--calendar FILE` or COMMUTER_CALENDAR) they work, without one the error says how."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from commuter_badge.cli.main import app
from commuter_badge.features.build import build_features, features_from_trips
from commuter_badge.features.definitions import FEATURE_NAMES
from commuter_badge.simulate.variation import WorldSettings
from commuter_badge.simulate.world import simulate_world, write_world
from tests.code.test_cli_features import assert_one_error_line
from tests.conftest import AS_OF_2027, CALENDAR_2027

runner = CliRunner()


@pytest.fixture
def world_2027(tmp_path, calendar_2027):
    """400 simulated persons as of 2027-01-20 (the simulator needs the calendar too)."""
    settings = WorldSettings(calendar=calendar_2027)
    paths = write_world(
        simulate_world(400, AS_OF_2027, seed=7, settings=settings), tmp_path / "world"
    )
    return paths["trips"]


def features_cmd(trips, out, *extra: str, env: dict | None = None):
    args = ["features", "--trips", str(trips), "--as-of", AS_OF_2027.isoformat(), "--out", str(out)]
    return runner.invoke(app, [*args, *extra], env=env)


def test_features_across_new_year_2027_with_the_schedule_file(tmp_path, world_2027):
    # given a 2027 world and the 2027 schedule / when `commuter features --calendar FILE` runs
    out = tmp_path / "features.parquet"
    result = features_cmd(world_2027, out, "--calendar", str(CALENDAR_2027))
    # then it writes every feature, and commuters are seen on the file's working days only
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr}"
    frame = pd.read_parquet(out)
    assert len(frame) > 300, f"{len(frame)} persons"
    assert frame["workdays_active"].max() <= 19, "the window has 19 working days (file + library)"
    assert (frame["workday_coverage"] > 0.8).sum() > 50, "daily commuters cover their workdays"


def test_the_calendar_comes_from_the_environment_too(tmp_path, world_2027):
    # given COMMUTER_CALENDAR instead of the option / when / then the same features
    by_option = tmp_path / "a.csv"
    by_env = tmp_path / "b.csv"
    assert features_cmd(world_2027, by_option, "--calendar", str(CALENDAR_2027)).exit_code == 0
    result = features_cmd(world_2027, by_env, env={"COMMUTER_CALENDAR": str(CALENDAR_2027)})
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr}"
    pd.testing.assert_frame_equal(pd.read_csv(by_option), pd.read_csv(by_env))


def test_without_a_schedule_2027_is_one_error_saying_how(tmp_path, world_2027):
    # given no schedule file (the world was simulated with one) / when features are asked for
    result = features_cmd(world_2027, tmp_path / "f.csv", env={"COMMUTER_CALENDAR": ""})
    # then one line names the year and how to supply its schedule
    assert_one_error_line(
        result.stderr,
        result.exit_code,
        "no Chinese working-day calendar for 2027",
        "--calendar FILE",
        "COMMUTER_CALENDAR",
        "date,kind,name",
    )


def test_request_and_batch_engines_agree_across_new_year(world_2027, calendar_2027):
    # given 40 persons' 2027 trips / when SQLite (request path) and DuckDB (batch) build features
    trips = pd.read_parquet(world_2027)
    ids = sorted(trips["person_id"].unique())[:40]
    persons = [
        (pid, trips[trips["person_id"] == pid].to_dict("records"))
        for pid in ids
    ]  # fmt: skip
    for _, rows in persons:
        for r in rows:
            r["ts"] = r["ts"].to_pydatetime()
    sqlite = features_from_trips(persons, AS_OF_2027, engine="sqlite", calendar=calendar_2027)
    sqlite = sqlite.set_index("person_id")
    batch = build_features(world_2027, AS_OF_2027, calendar=calendar_2027)
    batch = batch.set_index("person_id").loc[sqlite.index]
    # then every feature is identical
    pd.testing.assert_frame_equal(
        sqlite[list(FEATURE_NAMES)], batch[list(FEATURE_NAMES)], check_dtype=False
    )


BAD = "date,kind,name\n2027-01-01,holiday,元旦\n2027-01-04,workday,元旦\n"


@pytest.mark.parametrize(
    "command",
    [
        ["simulate", "--persons", "10", "--out", "w"],
        ["features", "--trips", "t.csv", "--as-of", "2027-01-20", "--out", "f.csv"],
        ["train", "--trips", "t.csv", "--labels", "l.csv", "--as-of", "2027-01-20"],
        ["evaluate", "--trips", "t.csv", "--labels", "l.csv", "--as-of", "2027-01-20"],
        ["score", "--trips", "t.csv", "--as-of", "2027-01-20", "--out", "s.csv"],
        ["serve", "--port", "1"],
    ],
    ids=lambda c: c[0],
)
def test_every_command_checks_the_calendar_file_first(tmp_path, command):
    # given a schedule file with a make-up "workday" on a Monday (line 3)
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD, encoding="utf-8")
    # when any command runs with it
    result = runner.invoke(app, [*command, "--calendar", str(bad)])
    # then it stops with one line naming the file and the line, before doing anything else
    assert_one_error_line(
        result.stderr, result.exit_code, f"calendar file {bad} line 3", "Saturday or Sunday"
    )
