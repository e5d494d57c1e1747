"""Reading trip and label files: good files are read whole, bad ones are named precisely."""

from __future__ import annotations

import datetime as dt
import re

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from commuter_badge.features.build import build_features, features_from_trips, write_features
from commuter_badge.features.read import connect, discover, read_labels, register_trips
from commuter_badge.features.schema import TripDataError
from tests.code.tripdata import (
    NOV_AS_OF,
    SH,
    assert_same_features,
    flat_rows,
    trip,
    write_csv,
    write_parquet,
)


def good_rows() -> list[dict]:
    return flat_rows(
        [
            ("p1", [trip("2021-11-22", 7), trip("2021-11-22", 18, direction="out")]),
            ("p2", [trip("2021-11-23", 8, mode="rail", site_id="RL-WUQING", region="")]),
        ]
    )


def write(fmt: str, path_stem, rows, **kw):
    return (write_csv if fmt == "csv" else write_parquet)(
        path_stem.with_suffix(f".{fmt}"), rows, **kw
    )


def where(fmt: str, data_row: int) -> str:
    """How a message names a 1-based data row: CSV 'line N' (header is line 1), Parquet 'row N'."""
    return f"line {data_row + 1}" if fmt == "csv" else f"row {data_row}"


# ---------------------------------------------------------------- good files


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_good_file_matches_in_memory_features(tmp_path, fmt):
    # given a well-formed file
    rows = good_rows()
    path = write(fmt, tmp_path / "trips", rows)
    # when it is read
    got = build_features(path, NOV_AS_OF)
    # then it gives the same features as the same trips in memory
    want = features_from_trips([("p1", rows[:2]), ("p2", rows[2:])], NOV_AS_OF)
    assert_same_features(got, want, f"{fmt} file")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_extra_columns_and_column_order_are_ignored(tmp_path, fmt):
    # given a file with an unknown column and the contract columns in another order
    rows = [{**r, "operator": "X", "speed_kmh": "88"} for r in good_rows()]
    columns = ["speed_kmh", "region", "site_id", "operator", "mode", "direction", "ts", "person_id"]
    path = write(fmt, tmp_path / "trips", rows, columns=columns)
    plain = write(fmt, tmp_path / "plain", good_rows())
    # when both are read / then the features are the same
    assert_same_features(
        build_features(path, NOV_AS_OF), build_features(plain, NOV_AS_OF), "extra columns"
    )


def test_parquet_in_any_time_zone(tmp_path):
    # given the same instants stored as timestamp[us, tz=Asia/Shanghai] and as UTC
    rows = good_rows()
    local = write_parquet(
        tmp_path / "local.parquet", rows, ts_type=pa.timestamp("us", tz="Asia/Shanghai")
    )
    utc = write_parquet(tmp_path / "utc.parquet", rows)
    # when / then
    assert_same_features(
        build_features(local, NOV_AS_OF), build_features(utc, NOV_AS_OF), "tz of parquet"
    )


def test_parquet_nanosecond_timestamp_with_time_zone_is_accepted(tmp_path):
    # given a Parquet file whose ts is timestamp[ns, tz=UTC] (a timestamp with time zone)
    rows = good_rows()
    ns = write_parquet(tmp_path / "ns.parquet", rows, ts_type=pa.timestamp("ns", tz="UTC"))
    us = write_parquet(tmp_path / "us.parquet", rows)
    # when / then it reads like the microsecond file
    assert_same_features(
        build_features(ns, NOV_AS_OF), build_features(us, NOV_AS_OF), "ns timestamps"
    )


def test_csv_offsets_and_empty_region(tmp_path):
    # given the same instants written with Z, -05:00 and +09:30 offsets, and an empty region
    p = tmp_path / "t.csv"
    p.write_text(
        "person_id,ts,direction,mode,site_id,region\n"
        "p1,2021-11-21T23:00:00Z,in,car,S,\n"  # 2021-11-22 07:00 local
        "p1,2021-11-22T05:00:00-05:00,out,car,S,r1\n"  # 2021-11-22 18:00 local
        "p1,2021-11-23T09:30:00+09:30,in,car,S,r1\n"  # 2021-11-23 08:00 local
        "p1,2021-11-24T07:30:00+08:00,in,car,S,r1\n"  # 2021-11-24 07:30 local (a 3rd entry day)
    )
    # when
    row = build_features(p, NOV_AS_OF).iloc[0]
    # then local hours are 7, 8 and 7.5 (first entries), the empty region is not a region
    assert row["entry_hour_mean"] == 7.5, f"entry_hour_mean {row['entry_hour_mean']}"
    assert row["workday_round_trip_share"] == 1 / 20, (
        f"round trip share {row['workday_round_trip_share']}"
    )
    assert row["n_regions"] == 1, f"n_regions {row['n_regions']}"
    assert row["main_region"] == "r1", f"regions {row['n_regions']}, {row['main_region']}"


def test_header_only_csv_is_no_persons(tmp_path):
    # given a CSV with only the header
    p = tmp_path / "t.csv"
    p.write_text("person_id,ts,direction,mode,site_id,region\n")
    # when / then it is read as no rows, not an error
    assert build_features(p, NOV_AS_OF).empty, "a header-only file has no persons"


def test_directory_of_mixed_nested_files_is_read_whole(tmp_path):
    # given trips split over a CSV, a nested Parquet, a deeper .pq and an upper-case .CSV,
    # plus a file that is not trip data
    persons = [
        ("p1", [trip(f"2021-11-{d}", 7) for d in (15, 16, 17, 18)]),
        (
            "p2",
            [
                trip(f"2021-11-{d}", 19, direction="out", mode="bus", site_id="CK-B")
                for d in (19, 22)
            ],
        ),
    ]
    rows = flat_rows(persons)
    root = tmp_path / "trips"
    write_csv(root / "a.csv", rows[0:2])
    write_parquet(root / "sub" / "b.parquet", rows[2:4])
    write_parquet(root / "sub" / "deeper" / "c.pq", rows[4:5])
    write_csv(root / "D.CSV", rows[5:6])
    (root / "README.txt").write_text("not trips")
    # when the directory is read
    files = discover(root)
    got = build_features(root, NOV_AS_OF)
    # then every trip file is found and every row counts
    assert [f.name for f in files] == ["D.CSV", "a.csv", "b.parquet", "c.pq"], f"found {files}"
    assert_same_features(got, features_from_trips(persons, NOV_AS_OF), "directory")


def test_register_trips_creates_normalised_views(tmp_path):
    # given a CSV with upper-case values and padding
    p = tmp_path / "t.csv"
    p.write_text(
        "person_id,ts,direction,mode,site_id,region\n p1 ,2021-11-22T07:00:00+08:00, IN ,Car, S ,\n"
    )
    con = connect()
    # when
    files = register_trips(con, p)
    row = con.execute("SELECT * FROM trips").fetchall()
    # then the view holds trimmed, lower-case values and epoch seconds
    t = int(dt.datetime(2021, 11, 22, 7, tzinfo=SH).timestamp())
    assert files == [p], f"files {files}"
    assert row == [("p1", t, "in", "car", "S", "")], f"normalised row {row}"
    # and the id and site lists hold the same values, normalised after grouping
    ids = con.execute("SELECT * FROM trips_ids").fetchall()
    sites = con.execute("SELECT * FROM trips_sites").fetchall()
    assert ids == [("p1",)], f"id list {ids}"
    assert sites == [("S", "car", "")], f"site list {sites}"


# ---------------------------------------------------------------- bad files


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_missing_column_is_named(tmp_path, fmt):
    # given a file without the `mode` column
    path = write(
        fmt,
        tmp_path / "trips",
        good_rows(),
        columns=["person_id", "ts", "direction", "site_id", "region"],
    )
    # when / then the error names the file and the column
    with pytest.raises(TripDataError, match=re.escape(f"{path}: missing required column(s) mode;")):
        build_features(path, NOV_AS_OF)


BAD_VALUES = [
    # (column, bad value, expected message tail)
    ("direction", "sideways", "column 'direction' value 'sideways' is not one of in, out"),
    ("mode", "plane", "column 'mode' value 'plane' is not one of rail, car, bus"),
    ("person_id", "", "column 'person_id' value '' is not a non-empty id"),
    ("person_id", "   ", "column 'person_id' value '   ' is not a non-empty id"),
    ("site_id", "", "column 'site_id' value '' is not a non-empty site code"),
]


@pytest.mark.parametrize(
    ("fmt", "column", "value", "message"),
    [
        pytest.param(fmt, c, v, m, id=f"{fmt}-{c}-{v!r}")
        for fmt in ("csv", "parquet")
        for c, v, m in BAD_VALUES
    ],
)
def test_bad_value_names_file_row_and_column(tmp_path, fmt, column, value, message):
    # given a file whose second data row has a bad value
    rows = good_rows()
    rows[1] = {**rows[1], column: value}
    path = write(fmt, tmp_path / "trips", rows)
    # when / then the message names the file, the row, the column and the value
    expected = f"{path} {where(fmt, 2)}: {message}"
    with pytest.raises(TripDataError, match=re.escape(expected)):
        build_features(path, NOV_AS_OF)


@pytest.mark.parametrize(("column", "value", "message"), BAD_VALUES)
def test_bad_value_outside_the_window_is_still_refused(tmp_path, column, value, message):
    # given a Parquet file whose only bad row is a year before the window (ids, sites and modes
    # are checked on their distinct values, time and direction on every row)
    rows = good_rows()
    rows.append({**trip("2020-11-22", 7), "person_id": "p3", column: value})
    path = write("parquet", tmp_path / "trips", rows)
    # when / then both the table build and `commuter features` refuse it, naming the row
    expected = f"{path} row 4: {message}"
    with pytest.raises(TripDataError, match=re.escape(expected)):
        build_features(path, NOV_AS_OF)
    with pytest.raises(TripDataError, match=re.escape(expected)):
        write_features(path, NOV_AS_OF, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists(), "a refused build wrote its output"


@pytest.mark.parametrize(
    ("fmt", "value", "why"),
    [
        pytest.param("csv", "yesterday", "unparseable"),
        pytest.param("csv", "2021-11-22T07:04:51", "no offset"),
        pytest.param("csv", "2021-11-22 07:04:51", "no offset"),
        pytest.param("csv", "", "empty"),
        pytest.param("parquet", "yesterday", "unparseable text"),
    ],
)
def test_bad_ts_names_file_row_and_column(tmp_path, fmt, value, why):
    # given a file whose first data row's ts is bad (parquet: ts stored as text)
    rows = good_rows()
    if fmt == "parquet":
        rows = [{**r, "ts": r["ts"].isoformat()} for r in rows]
    rows[0] = {**rows[0], "ts": value}
    path = write(fmt, tmp_path / "trips", rows)
    # when / then
    with pytest.raises(
        TripDataError, match=re.escape(f"{path} {where(fmt, 1)}: column 'ts' value")
    ):
        build_features(path, NOV_AS_OF)


def test_csv_date_without_time_or_offset_is_an_error(tmp_path):
    # given a CSV whose ts is a bare date (no time, no offset)
    rows = good_rows()
    rows[0] = {**rows[0], "ts": "2021-11-22"}
    path = write_csv(tmp_path / "trips.csv", rows)
    # when / then it is refused like any other ts without an offset
    with pytest.raises(TripDataError, match=re.escape(f"{path} line 2: column 'ts'")):
        build_features(path, NOV_AS_OF)


@pytest.mark.parametrize("fmt", [pytest.param("csv"), "parquet"])
def test_first_bad_row_is_reported_with_the_count(tmp_path, fmt):
    # given a file whose rows 2 and 3 both have unknown directions
    rows = good_rows()
    rows[1] = {**rows[1], "direction": "up"}
    rows[2] = {**rows[2], "direction": "down"}
    path = write(fmt, tmp_path / "trips", rows)
    # when / then the FIRST bad row is named, with how many are bad
    expected = (
        f"{path} {where(fmt, 2)}: column 'direction' value 'up' is not one of in, out "
        "(2 bad rows in this file)"
    )
    with pytest.raises(TripDataError, match=re.escape(expected)):
        build_features(path, NOV_AS_OF)


def test_naive_parquet_timestamp_names_the_type(tmp_path):
    # given a Parquet file with a timestamp without time zone
    path = write_parquet(tmp_path / "trips.parquet", good_rows(), ts_type=pa.timestamp("us"))
    # when / then the message names the file, the column and its type
    with pytest.raises(TripDataError, match=re.escape(f"{path}: column 'ts' has type TIMESTAMP;")):
        build_features(path, NOV_AS_OF)


def test_bad_file_in_a_directory_is_named(tmp_path):
    # given a directory with a good CSV and a Parquet file with a bad mode in its first row
    rows = good_rows()
    write_csv(tmp_path / "d" / "good.csv", rows)
    bad = write_parquet(tmp_path / "d" / "z" / "bad.parquet", [{**rows[0], "mode": "boat"}])
    # when / then the bad file is named, not the directory
    with pytest.raises(TripDataError, match=re.escape(f"{bad} row 1: column 'mode' value 'boat'")):
        build_features(tmp_path / "d", NOV_AS_OF)


def test_unsupported_extension(tmp_path):
    # given a JSON file
    p = tmp_path / "trips.json"
    p.write_text("[]")
    # when / then
    with pytest.raises(TripDataError, match=re.escape(f"{p}: unsupported file type '.json'")):
        build_features(p, NOV_AS_OF)


def test_empty_directory(tmp_path):
    # given a directory with no trip files (only a text file)
    d = tmp_path / "empty"
    d.mkdir()
    (d / "notes.txt").write_text("nothing")
    # when / then
    with pytest.raises(
        TripDataError, match=re.escape(f"{d}: directory holds no .csv or .parquet files")
    ):
        build_features(d, NOV_AS_OF)


def test_nonexistent_path(tmp_path):
    # given a path that does not exist / when / then
    p = tmp_path / "nope.csv"
    with pytest.raises(TripDataError, match=re.escape(f"{p}: no such file or directory")):
        build_features(p, NOV_AS_OF)


def test_unreadable_parquet_is_a_trip_data_error(tmp_path):
    # given a .parquet file that is not Parquet
    p = tmp_path / "trips.parquet"
    p.write_text("person_id,ts\n")
    # when / then it is a clear error naming the file, not a DuckDB exception
    with pytest.raises(TripDataError, match=re.escape(f"{p}: cannot be read")):
        build_features(p, NOV_AS_OF)


# ---------------------------------------------------------------- labels


def test_labels_good_csv_and_parquet(tmp_path):
    # given the same labels as CSV (ids that look numeric) and Parquet
    frame = pd.DataFrame({"person_id": ["007", "p2"], "is_commuter": [1, 0], "note": ["x", "y"]})
    frame.to_csv(tmp_path / "l.csv", index=False)
    frame.to_parquet(tmp_path / "l.parquet", index=False)
    for p in (tmp_path / "l.csv", tmp_path / "l.parquet"):
        # when
        got = read_labels(p)
        # then ids stay strings (leading zeros kept), labels are int64, extra columns dropped
        assert got["person_id"].tolist() == ["007", "p2"], (
            f"{p.name}: ids {got['person_id'].tolist()}"
        )
        assert got["is_commuter"].tolist() == [1, 0], (
            f"{p.name}: labels {got['is_commuter'].tolist()}"
        )
        assert str(got["is_commuter"].dtype) == "int64", (
            f"{p.name}: dtype {got['is_commuter'].dtype}"
        )
        assert list(got.columns) == ["person_id", "is_commuter"], (
            f"{p.name}: columns {list(got.columns)}"
        )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("person_id,label\np1,1\n", "missing required column(s) is_commuter"),
        ("is_commuter\n1\n", "missing required column(s) person_id"),
        pytest.param(
            "person_id,is_commuter\np1,1\np2,2\n",
            "line 3: column 'is_commuter' value 2 is not 0 or 1",
            id="value-2",
        ),
        ("person_id,is_commuter\np1,1\n,0\n", "line 3: column 'person_id' is empty"),
        ("person_id,is_commuter\np1,1\np1,0\n", "person_id 'p1' is labelled twice"),
    ],
)
def test_bad_labels(tmp_path, text, message):
    # given a labels file breaking the contract
    p = tmp_path / "labels.csv"
    p.write_text(text)
    # when / then the message names the file and the problem
    with pytest.raises(TripDataError, match=re.escape(str(p)) + ".*" + re.escape(message)):
        read_labels(p)


def test_missing_labels_file(tmp_path):
    # given / when / then
    with pytest.raises(TripDataError, match="no such labels file"):
        read_labels(tmp_path / "nope.csv")


def test_parquet_labels_with_value_two(tmp_path):
    # given a Parquet labels file with is_commuter = 2 in its first row
    p = tmp_path / "labels.parquet"
    pq.write_table(pa.table({"person_id": ["a", "b"], "is_commuter": [2, 1]}), p)
    # when / then
    with pytest.raises(TripDataError, match=re.escape(f"{p} row 1: column 'is_commuter' value")):
        read_labels(p)
