"""`commuter features --trips PATH --as-of DATE --out FILE` (docs/contract.md §2)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import commuter_badge.features.build as fb
from commuter_badge.cli.main import app
from commuter_badge.features.build import HASH_CLASH, build_features, write_features
from commuter_badge.features.definitions import FEATURE_NAMES
from tests.code.tripdata import NOV_AS_OF, flat_rows, trip, write_csv, write_parquet

COMMUTER = Path(sys.executable).with_name("commuter")
runner = CliRunner()


def trips_file(tmp_path: Path) -> Path:
    rows = flat_rows(
        [
            ("p1", [trip("2021-11-22", 7), trip("2021-11-22", 18, direction="out")]),
            (
                "p2",
                # p2's crossings span the whole window of as_of 2021-11-26 (first and last day),
                # so the data covers it and no coverage warning fires.
                [
                    trip(day, 8, mode="rail", site_id="RL-WUQING", region="")
                    for day in ("2021-10-29", "2021-11-23", "2021-11-25")
                ],
            ),
        ]
    )
    return write_parquet(tmp_path / "trips.parquet", rows)


def run(*args: str):
    return runner.invoke(app, ["features", *args])


def assert_one_error_line(stderr: str, exit_code: int, *needles: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert exit_code != 0, "a failing command must exit non-zero"
    assert len(lines) == 1, f"expected exactly one stderr line, got {len(lines)}: {stderr!r}"
    assert lines[0].startswith("error:"), f"stderr must start with 'error:': {lines[0]!r}"
    assert "Traceback" not in stderr, f"traceback on stderr: {stderr!r}"
    for needle in needles:
        assert needle in lines[0], f"{needle!r} missing from {lines[0]!r}"
    return lines[0]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_features_writes_every_feature(tmp_path, suffix):
    # given a trips file
    trips = trips_file(tmp_path)
    out = tmp_path / "out" / f"features{suffix}"
    # when the command runs
    result = run("--trips", str(trips), "--as-of", NOV_AS_OF.isoformat(), "--out", str(out))
    # then it succeeds and writes one row per person with person_id and every feature
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr}"
    assert "2 persons" in result.stdout, f"stdout: {result.stdout!r}"
    frame = pd.read_csv(out, dtype={"person_id": str}) if suffix == ".csv" else pd.read_parquet(out)
    assert list(frame.columns)[: 1 + len(FEATURE_NAMES)] == ["person_id", *FEATURE_NAMES], (
        f"columns: {list(frame.columns)}"
    )
    assert frame["person_id"].tolist() == ["p1", "p2"], f"persons: {frame['person_id'].tolist()}"
    want = build_features(trips, NOV_AS_OF)
    assert frame["crossings"].tolist() == want["crossings"].tolist(), (
        "crossings differ from build_features"
    )
    # missing (fewer than three entry days) must stay missing, equal values equal
    pd.testing.assert_series_equal(
        frame["entry_hour_mean"].astype("float64"),
        want["entry_hour_mean"].astype("float64"),
        check_names=False,
        obj="entry hours",
    )


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_written_table_is_the_built_table(tmp_path, suffix):
    # given a small simulated world
    from commuter_badge.simulate.world import simulate_world, write_world

    write_world(simulate_world(300, NOV_AS_OF, seed=3), tmp_path / "w")
    trips = tmp_path / "w" / "trips.parquet"
    # when the command's writer and the in-memory builder both run
    out = tmp_path / f"f{suffix}"
    n = write_features(trips, NOV_AS_OF, out)
    want = build_features(trips, NOV_AS_OF)
    got = pd.read_csv(out, dtype={"person_id": str}) if suffix == ".csv" else pd.read_parquet(out)
    # then every value is the same (file dtypes aside; parallel sums may differ in the last bit)
    # and nothing else is left in the directory
    assert n == len(want) == len(got), f"rows: returned {n}, built {len(want)}, file {len(got)}"
    assert list(got.columns) == list(want.columns), f"columns: {list(got.columns)}"
    assert got["person_id"].tolist() == want["person_id"].tolist(), "persons differ"
    for c in ("main_mode", "main_region"):
        assert got[c].fillna("").tolist() == want[c].tolist(), f"{c} differs"
    features = list(FEATURE_NAMES)
    pd.testing.assert_frame_equal(
        got[features].astype("float64"), want[features].astype("float64"), rtol=1e-12, atol=1e-12
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name, "w"], "temporary file left"


def test_a_hash_clash_fails_before_anything_is_written(tmp_path, monkeypatch):
    # given a grouping key under which p1 and p2 clash (same id length)
    real = fb.feature_sql

    def clashing(*args, **kwargs):
        return real(*args, **kwargs).replace(
            "hash(person_id) AS pk", "hash(length(person_id)) AS pk"
        )

    monkeypatch.setattr(fb, "feature_sql", clashing)
    out = tmp_path / "f.parquet"
    # when / then both the writer and the in-memory builder refuse, and no file appears
    with pytest.raises(RuntimeError, match=re.escape(HASH_CLASH)):
        write_features(trips_file(tmp_path), NOV_AS_OF, out)
    with pytest.raises(RuntimeError, match=re.escape(HASH_CLASH)):
        build_features(trips_file(tmp_path), NOV_AS_OF)
    assert not out.exists(), "a half-built table must not be written"


def test_features_from_a_directory(tmp_path):
    # given a directory with a CSV and a Parquet file
    rows = flat_rows([("p1", [trip("2021-11-22", 7)]), ("p2", [trip("2021-11-22", 8)])])
    write_csv(tmp_path / "in" / "a.csv", rows[:1])
    write_parquet(tmp_path / "in" / "b.parquet", rows[1:])
    out = tmp_path / "f.parquet"
    # when
    result = run("--trips", str(tmp_path / "in"), "--as-of", "2021-11-26", "--out", str(out))
    # then both files are read
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr}"
    assert pd.read_parquet(out)["person_id"].tolist() == ["p1", "p2"], "both files must be read"


def test_bad_parquet_value_is_one_error_line(tmp_path):
    # given a Parquet file with an unknown direction in its first row
    bad = write_parquet(
        tmp_path / "bad.parquet", flat_rows([("p1", [trip("2021-11-22", 7, direction="up")])])
    )
    out = tmp_path / "f.csv"
    # when
    result = run("--trips", str(bad), "--as-of", "2021-11-26", "--out", str(out))
    # then one clear line naming file, row and column; no output written
    assert result.exit_code == 2, f"exit code {result.exit_code}"
    assert_one_error_line(result.stderr, result.exit_code, str(bad), "row 1", "'direction'", "'up'")
    assert not out.exists(), "no output file on error"


def test_bad_csv_value_is_one_error_line(tmp_path):
    # given a CSV with an unknown mode on line 2
    bad = write_csv(
        tmp_path / "bad.csv", flat_rows([("p1", [trip("2021-11-22", 7, mode="plane")])])
    )
    # when
    result = run("--trips", str(bad), "--as-of", "2021-11-26", "--out", str(tmp_path / "f.csv"))
    # then
    assert_one_error_line(result.stderr, result.exit_code, str(bad), "line 2", "'mode'", "'plane'")


def test_missing_column_csv_is_one_error_line(tmp_path):
    # given a CSV without the region column
    bad = write_csv(
        tmp_path / "bad.csv",
        flat_rows([("p1", [trip("2021-11-22", 7)])]),
        columns=["person_id", "ts", "direction", "mode", "site_id"],
    )
    # when
    result = run("--trips", str(bad), "--as-of", "2021-11-26", "--out", str(tmp_path / "f.csv"))
    # then
    assert_one_error_line(
        result.stderr, result.exit_code, str(bad), "missing required column(s) region"
    )


def test_nonexistent_trips_path(tmp_path):
    # given / when
    result = run(
        "--trips", str(tmp_path / "nope"), "--as-of", "2021-11-26", "--out", str(tmp_path / "f.csv")
    )
    # then
    assert_one_error_line(result.stderr, result.exit_code, "no such file or directory")


@pytest.mark.parametrize("as_of", ["yesterday", "2021-13-01", "26.11.2021"])
def test_bad_as_of(tmp_path, as_of):
    # given a valid trips file and an as_of that is not a date / when
    result = run(
        "--trips", str(trips_file(tmp_path)), "--as-of", as_of, "--out", str(tmp_path / "f.csv")
    )
    # then the error names the option and the expected format
    assert_one_error_line(
        result.stderr, result.exit_code, f"--as-of {as_of!r} is not a date", "YYYY-MM-DD"
    )


def test_as_of_outside_the_calendar(tmp_path):
    # given an as_of in a year the working-day calendar does not cover / when
    result = run(
        "--trips",
        str(trips_file(tmp_path)),
        "--as-of",
        "2030-03-01",
        "--out",
        str(tmp_path / "f.csv"),
    )
    # then one clear line about the calendar
    assert_one_error_line(result.stderr, result.exit_code, "no Chinese working-day calendar")


def test_unsupported_output_type(tmp_path):
    # given an --out with an unknown extension / when
    result = run(
        "--trips",
        str(trips_file(tmp_path)),
        "--as-of",
        "2021-11-26",
        "--out",
        str(tmp_path / "f.txt"),
    )
    # then one line naming the extension, nothing written
    assert result.exit_code != 0, "unsupported output must fail"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one stderr line: {result.stderr!r}"
    assert lines[0].startswith("error"), f"stderr: {result.stderr!r}"
    assert "'.txt'" in lines[0], f"extension not named: {lines[0]!r}"
    assert not (tmp_path / "f.txt").exists(), "nothing must be written"


def test_console_script_bad_file_exits_2_without_traceback(tmp_path):
    # given the installed console script and a Parquet file with an empty person_id
    bad = write_parquet(tmp_path / "bad.parquet", flat_rows([("", [trip("2021-11-22", 7)])]))
    # when it runs as a real process
    proc = subprocess.run(
        [
            str(COMMUTER),
            "features",
            "--trips",
            str(bad),
            "--as-of",
            "2021-11-26",
            "--out",
            str(tmp_path / "f.csv"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    # then exit code 2, one stderr line, nothing on stdout
    assert proc.returncode == 2, f"exit code {proc.returncode}; stderr {proc.stderr!r}"
    assert_one_error_line(proc.stderr, proc.returncode, str(bad), "'person_id'")
    assert proc.stdout.strip() == "", f"stdout should be empty: {proc.stdout!r}"


def test_console_script_writes_features(tmp_path):
    # given the installed console script and a good file / when it runs as a real process
    trips = trips_file(tmp_path)
    out = tmp_path / "f.parquet"
    proc = subprocess.run(
        [
            str(COMMUTER),
            "features",
            "--trips",
            str(trips),
            "--as-of",
            "2021-11-26",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    # then it succeeds quietly on stderr (not a terminal) and writes the table
    assert proc.returncode == 0, f"exit code {proc.returncode}; stderr {proc.stderr!r}"
    assert proc.stderr.strip() == "", f"stderr should be quiet when piped: {proc.stderr!r}"
    n = len(pd.read_parquet(out))
    assert n == 2, f"expected 2 rows, got {n}"
